//! The pipeline file as a YAML tree that remembers where every node was written, so that any
//! error found later (a misspelled key, a wrong type, an unknown input) can name line and column.

use yaml_rust2::parser::{Event as YamlEvent, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column in the pipeline file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// `plain` scalars are typed by their text (`true`, `12`, `null`); quoted ones are strings.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
}

impl Node {
    pub fn scalar(value: &str, mark: Mark) -> Node {
        Node {
            kind: NodeKind::Scalar {
                value: value.to_owned(),
                plain: true,
            },
            mark,
        }
    }

    pub fn empty_map(mark: Mark) -> Node {
        Node {
            kind: NodeKind::Map(Vec::new()),
            mark,
        }
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// True for `~`, `null`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true } if is_null_text(value))
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node (for its position) of `key` in a mapping node.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// A copy of this mapping without the given keys (`type`, `when`, `inputs` are read by the
    /// pipeline; the rest belongs to the component).
    pub fn without_keys(&self, keys: &[&str]) -> Node {
        match &self.kind {
            NodeKind::Map(entries) => Node {
                kind: NodeKind::Map(
                    entries
                        .iter()
                        .filter(|(k, _)| !k.as_str().is_some_and(|k| keys.contains(&k)))
                        .cloned()
                        .collect(),
                ),
                mark: self.mark,
            },
            _ => self.clone(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

pub fn is_null_text(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// A YAML syntax error, at a position.
#[derive(Debug)]
pub struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// Most nodes aliases may add to the tree. A pipeline file has hundreds of nodes; nested
/// aliases ("billion laughs") would otherwise expand a few hundred bytes into gigabytes.
const MAX_ALIAS_NODES: usize = 100_000;

/// Parses one YAML document. An empty document is an empty mapping; a second document is an
/// error (trawl reads one pipeline per file, and silently dropping the rest would hide it).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // Editors on Windows write a byte-order mark; it is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    not_printable(text)?;
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| {
        let mark = to_mark(e.marker());
        let message = match e.info() {
            info if info.contains("unknown anchor") => unknown_alias(text, mark)
                .map_or_else(|| info.to_owned(), |alias| format!(
                    "`{alias}` is read as an alias (`*name` refers to an anchor `&name`) and no such anchor is defined: a value starting with `*`, such as a glob, must be quoted ('{alias}')"
                )),
            info => info.to_owned(),
        };
        SyntaxError { mark, message }
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Node::empty_map(Mark { line: 1, col: 1 })))
}

/// The first character YAML does not allow in a stream (control characters other than tab and
/// line ends). The parser takes a NUL for the end of the file, so that what follows one would be
/// dropped without a word: a file saved as UTF-16 is all NULs between its letters.
fn not_printable(text: &str) -> Result<(), SyntaxError> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{85}')
            || !(c.is_control() || c == '\u{fffe}' || c == '\u{ffff}')
    };
    for (i, line) in text.split('\n').enumerate() {
        if let Some(col) = line.chars().position(|c| !allowed(c)) {
            let c = line.chars().nth(col).unwrap_or_default();
            let utf16 = if c == '\0' {
                " (a file saved as UTF-16 has one before or after every letter: save it as UTF-8)"
            } else {
                ""
            };
            return Err(SyntaxError {
                mark: Mark {
                    line: i + 1,
                    col: col + 1,
                },
                message: format!(
                    "control character U+{:04X} is not allowed in a pipeline file: expected printable text{utf16}",
                    c as u32
                ),
            });
        }
    }
    Ok(())
}

/// Applies YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`), which Kubernetes and Compose
/// files use to share settings: the mapping's own keys win, then the merged mappings in order.
/// A quoted `"<<"` is an ordinary key.
fn merge_keys(map: &mut Node) -> Result<(), SyntaxError> {
    let NodeKind::Map(entries) = &mut map.kind else {
        return Ok(());
    };
    let is_merge =
        |k: &Node| matches!(&k.kind, NodeKind::Scalar { value, plain: true } if value == "<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return Ok(());
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|(k, _)| is_merge(k));
    for (key, value) in merges {
        let sources = match value.kind {
            NodeKind::Map(_) => vec![value],
            NodeKind::Seq(items) => items,
            _ => Vec::new(),
        };
        if sources.is_empty() || sources.iter().any(|m| !matches!(m.kind, NodeKind::Map(_))) {
            return Err(SyntaxError {
                mark: key.mark,
                message: "`<<` merges a mapping into this one: expected an alias of a mapping (`<<: *defaults`) or a list of them".into(),
            });
        }
        for source in sources {
            if let NodeKind::Map(from) = source.kind {
                for (k, v) in from {
                    let taken = own
                        .iter()
                        .any(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str());
                    if !taken {
                        own.push((k, v));
                    }
                }
            }
        }
    }
    *entries = own;
    Ok(())
}

/// The `*alias` that ends at or just before `mark` on its line, as written.
fn unknown_alias(text: &str, mark: Mark) -> Option<String> {
    let line = text.lines().nth(mark.line.checked_sub(1)?)?;
    let upto: String = line.chars().take(mark.col).collect();
    let start = upto.rfind('*')?;
    let alias: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '}' | ']'))
        .collect();
    (alias.len() > 1).then_some(alias)
}

fn to_mark(m: &Marker) -> Mark {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Mark {
        line: m.line(),
        col: m.col() + 1,
    }
}

enum Open {
    Seq(Node, usize),
    /// The mapping so far, its anchor, the key waiting for its value, and the keys seen (a
    /// linear search made a file of 80,000 outputs take 22 s to check for duplicates).
    Map(Node, usize, Option<Node>, std::collections::HashSet<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    /// Each anchored node with its number of nodes (what one alias of it adds).
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    /// Nodes added by aliases so far.
    alias_nodes: usize,
    documents: usize,
    error: Option<SyntaxError>,
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Seq(items) => items.iter().map(count_nodes).sum(),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Scalar,
    Seq,
    Map,
}

/// YAML's core tags as written on a node of `shape`: whether it makes a scalar a string, or
/// why the tag cannot be honoured. Other tags (`!secret`, `!env`, `!include`) belong to other
/// tools' loaders; ignoring them would run the pipeline on the tagged text itself.
fn core_tag(tag: &Tag, shape: Shape) -> Result<bool, String> {
    let full = format!("{}{}", tag.handle, tag.suffix);
    if full == "!" {
        return Ok(shape == Shape::Scalar);
    }
    let core = full.strip_prefix("tag:yaml.org,2002:");
    let shown = match core {
        Some(core) => format!("!!{core}"),
        None if tag.handle == "!" => format!("!{}", tag.suffix),
        None => format!("!<{full}>"),
    };
    let fits = match core {
        Some("str" | "int" | "float" | "bool" | "null") => shape == Shape::Scalar,
        Some("seq") => shape == Shape::Seq,
        Some("map") => shape == Shape::Map,
        _ => {
            return Err(format!(
                "the YAML tag `{shown}` is not read by trawl: expected a plain value (take values from the environment with `${{VAR}}`)"
            ))
        }
    };
    if !fits {
        return Err(format!(
            "the YAML tag `{shown}` does not fit this value (a {})",
            match shape {
                Shape::Scalar => "single value",
                Shape::Seq => "list",
                Shape::Map => "mapping",
            }
        ));
    }
    Ok(core == Some("str"))
}

impl Builder {
    /// Checks a node's tag; true when it makes a scalar a string (`!!str 12`).
    fn tagged(&mut self, tag: Option<&Tag>, shape: Shape, mark: Mark) -> bool {
        let Some(tag) = tag else { return false };
        match core_tag(tag, shape) {
            Ok(a_string) => a_string,
            Err(message) => {
                self.error.get_or_insert(SyntaxError { mark, message });
                false
            }
        }
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), count_nodes(&node)));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(seq, _)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, pending_key, seen)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let NodeKind::Map(entries) = &mut map.kind {
                        if let Some(k) = key.as_str() {
                            if !seen.insert(k.to_owned()) && self.error.is_none() {
                                self.error = Some(SyntaxError {
                                    mark: key.mark,
                                    message: format!("duplicate key `{k}`"),
                                });
                            }
                        }
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: YamlEvent, marker: Marker) {
        let mark = to_mark(&marker);
        match ev {
            YamlEvent::Scalar(value, style, anchor, tag) => {
                let a_string = self.tagged(tag.as_ref(), Shape::Scalar, mark);
                let node = Node {
                    kind: NodeKind::Scalar {
                        value,
                        plain: style == TScalarStyle::Plain && !a_string,
                    },
                    mark,
                };
                self.push_value(node, anchor);
            }
            YamlEvent::SequenceStart(anchor, tag) => {
                self.tagged(tag.as_ref(), Shape::Seq, mark);
                self.stack.push(Open::Seq(
                    Node {
                        kind: NodeKind::Seq(Vec::new()),
                        mark,
                    },
                    anchor,
                ))
            }
            YamlEvent::MappingStart(anchor, tag) => {
                self.tagged(tag.as_ref(), Shape::Map, mark);
                self.stack.push(Open::Map(
                    Node {
                        kind: NodeKind::Map(Vec::new()),
                        mark,
                    },
                    anchor,
                    None,
                    Default::default(),
                ))
            }
            YamlEvent::SequenceEnd | YamlEvent::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let (node, anchor) = match open {
                        Open::Seq(n, a) => (n, a),
                        Open::Map(mut n, a, _, _) => {
                            if let Err(e) = merge_keys(&mut n) {
                                self.error.get_or_insert(e);
                            }
                            (n, a)
                        }
                    };
                    self.push_value(node, anchor);
                }
            }
            YamlEvent::Alias(id) => {
                let empty = Node {
                    kind: NodeKind::Scalar {
                        value: String::new(),
                        plain: true,
                    },
                    mark,
                };
                let node = match self.anchors.get(&id) {
                    Some((node, size)) => {
                        self.alias_nodes = self.alias_nodes.saturating_add(*size);
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            if self.error.is_none() {
                                self.error = Some(SyntaxError {
                                    mark,
                                    message: format!(
                                        "aliases expand to more than {MAX_ALIAS_NODES} nodes: expected a pipeline file, not an alias bomb"
                                    ),
                                });
                            }
                            empty
                        } else {
                            // The value as a whole is where the alias stands (a missing key
                            // is reported there); what is inside stays where it is written.
                            let mut node = node.clone();
                            node.mark = mark;
                            node
                        }
                    }
                    None => {
                        let inside_its_anchor = self.stack.iter().any(|open| match open {
                            Open::Seq(_, a) | Open::Map(_, a, _, _) => *a == id,
                        });
                        if inside_its_anchor && self.error.is_none() {
                            self.error = Some(SyntaxError {
                                mark,
                                message: "this alias stands inside the node its anchor names (`&x [*x]`), which would never end: expected an alias after its anchor's node".into(),
                            });
                        }
                        empty
                    }
                };
                self.push_value(node, 0);
            }
            YamlEvent::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 && self.error.is_none() {
                    self.error = Some(SyntaxError {
                        mark,
                        message: "a second YAML document (after `---`): expected one pipeline per file (several files can be given with several `-c`)".into(),
                    });
                }
            }
            YamlEvent::Nothing
            | YamlEvent::StreamStart
            | YamlEvent::StreamEnd
            | YamlEvent::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("inputs:\n  app: { type: stdin }\n").unwrap();
        let app = n.get("inputs").unwrap().get("app").unwrap();
        let ty = app.get("type").unwrap();
        assert_eq!(ty.as_str(), Some("stdin"));
        assert_eq!(ty.mark, Mark { line: 2, col: 16 });
        let key = n.get("inputs").unwrap().key_node("app").unwrap();
        assert_eq!(key.mark, Mark { line: 2, col: 3 });
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_reported() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert!(e.message.contains("duplicate key"));
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.mark.line >= 1);
    }

    #[test]
    fn alias_bombs_boms_and_second_documents_are_errors() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            bomb += &format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", "));
        }
        let e = parse(&bomb).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{}", e.message);
        let n = parse("\u{feff}inputs: {}\n").unwrap();
        assert!(n.get("inputs").is_some());
        let e = parse("inputs: {}\n---\noutputs: {}\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert!(e.message.contains("second YAML document"));
        assert!(parse("---\ninputs: {}\n...\n").is_ok());
    }

    #[test]
    fn an_unquoted_glob_read_as_an_alias_is_named_with_the_fix() {
        let e = parse("exclude: *_kube-system_*\n").unwrap_err();
        assert!(
            e.message.contains("`*_kube-system_*` is read as an alias")
                && e.message.contains("('*_kube-system_*')"),
            "{}",
            e.message
        );
        let e = parse("paths: [a, *.log]\n").unwrap_err();
        assert!(
            e.message.contains("`*.log` is read as an alias"),
            "{}",
            e.message
        );
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_does_not_set() {
        let n = parse(
            "base: &b {type: stdout, format: json}\nother: &o {codec: x, format: text}\na: {<<: *b, format: text}\nb: {<<: [*o, *b]}\nc: {'<<': literal}\n",
        )
        .unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.get("type").and_then(Node::as_str), Some("stdout"));
        assert_eq!(a.get("format").and_then(Node::as_str), Some("text"));
        assert!(a.get("<<").is_none());
        let b = n.get("b").unwrap();
        assert_eq!(b.get("format").and_then(Node::as_str), Some("text"));
        assert_eq!(b.get("type").and_then(Node::as_str), Some("stdout"));
        assert_eq!(b.get("codec").and_then(Node::as_str), Some("x"));
        assert_eq!(
            n.get("c").unwrap().get("<<").and_then(Node::as_str),
            Some("literal")
        );
        let e = parse("a: {<<: 3}\n").unwrap_err();
        assert!(e.message.contains("`<<` merges a mapping"), "{}", e.message);
        assert_eq!(e.mark, Mark { line: 1, col: 5 });
    }

    #[test]
    fn an_alias_is_placed_where_it_stands_and_a_recursive_one_is_refused() {
        let n = parse("a: &x {k: v}\nb: *x\nc: &s text\nd: *s\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(b.mark, Mark { line: 2, col: 4 });
        assert_eq!(b.get("k").unwrap().mark, Mark { line: 1, col: 11 });
        assert_eq!(n.get("d").unwrap().mark, Mark { line: 4, col: 4 });
        for text in ["a: &x [*x]\n", "a: &x {k: *x}\n", "a: &x\n  - b: [*x]\n"] {
            let e = parse(text).unwrap_err();
            assert!(
                e.message.contains("would never end"),
                "{text}: {}",
                e.message
            );
        }
    }

    #[test]
    fn core_tags_are_honoured_and_other_tags_refused() {
        let n = parse("a: !!str 12\nb: !!int 12\nc: ! 12\nd: !!map {k: v}\n").unwrap();
        let plain = |k: &str| match &n.get(k).unwrap().kind {
            NodeKind::Scalar { plain, .. } => *plain,
            _ => panic!("{k} is not a scalar"),
        };
        assert!(!plain("a"));
        assert!(plain("b"));
        assert!(!plain("c"));
        assert_eq!(n.get("d").unwrap().get("k").unwrap().as_str(), Some("v"));
        for (text, says, line) in [
            ("a: !secret pw\n", "`!secret`", 1),
            ("a:\n  b: !!binary aGk=\n", "`!!binary`", 2),
            ("a: !<tag:example.com:x> 1\n", "`!<tag:example.com:x>`", 1),
            (
                "a: !!seq {k: v}\n",
                "`!!seq` does not fit this value (a mapping)",
                1,
            ),
            ("a: !!str [x]\n", "`!!str` does not fit", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
            assert_eq!(e.mark.line, line, "{text}");
        }
    }

    #[test]
    fn control_characters_are_refused_where_they_stand() {
        let e = parse("inputs:\n  a: {type: stdin}\n\0\noutputs: {}\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 3, col: 1 });
        assert!(e.message.contains("U+0000"), "{}", e.message);
        let utf16: String = "a: b\n".chars().flat_map(|c| [c, '\0']).collect();
        assert!(parse(&utf16).unwrap_err().message.contains("UTF-16"));
        let e = parse("a: 'x\u{7}y'\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 1, col: 6 });
        assert!(parse("a: \"x\ty\"\r\nc: \"\u{e9}\u{85}\"\n").is_ok());
    }

    #[test]
    fn anchors_and_quoting() {
        let n = parse("a: &x {k: v}\nb: *x\nc: '12'\nd: 12\n").unwrap();
        assert_eq!(n.get("b").unwrap().get("k").unwrap().as_str(), Some("v"));
        assert!(matches!(
            n.get("c").unwrap().kind,
            NodeKind::Scalar { plain: false, .. }
        ));
        assert!(matches!(
            n.get("d").unwrap().kind,
            NodeKind::Scalar { plain: true, .. }
        ));
    }
}
