//! The `dissect` parser, as Filebeat users know it: a tokenizer such as
//! `%{date} %{time} %{pid} %{level} %{component}: %{content}` splits a line of fixed shape at
//! its literal delimiters, with no regular expression.

use super::convert::{self, Conversion, TypesConfig};
use super::{
    default_field, default_trim_chars, restore_text, take_text, target_path, Failures, FieldPath,
    Processor, Trim, Verdict,
};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Value};
use memchr::memmem::Finder;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DissectConfig {
    /// The pattern: `%{key}` fields between literal delimiters.
    pub tokenizer: String,
    /// The field to parse.
    #[serde(default = "default_field")]
    pub field: String,
    /// Object the fields go under; absent: the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// Which side of every value to trim of `trim_chars`.
    #[serde(default)]
    pub trim_values: Trim,
    /// Characters `trim_values` removes.
    #[serde(default = "default_trim_chars")]
    pub trim_chars: String,
    /// Tag added to events the tokenizer does not fit.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untouched and uncounted.
    #[serde(default)]
    pub ignore_missing: bool,
    /// Key name → type (`int`, `float`, `bool`, `ip`, `timestamp`, `string`), for the keys
    /// that do not say it inline (`%{pid|int}`).
    #[serde(default)]
    pub types: TypesConfig,
}

fn default_tag() -> String {
    "_dissect_parse_failure".to_owned()
}

#[derive(Debug, Clone, PartialEq)]
struct Key {
    /// Full event path; `None` for skipped keys (`%{}`, `%{?name}`).
    path: Option<FieldPath>,
    /// `%{+name}`: appended to the value of the same name, separated by a space.
    append: bool,
    /// `%{name->}`: repeats of the following delimiter are skipped (padding).
    right_padding: bool,
    /// The key's name as written (without modifiers), for the `types:` map.
    name: String,
    /// Whether the tokenizer gave the type inline (`%{pid|int}`); the map does not override it.
    inline: bool,
    convert: Conversion,
}

/// The compiled tokenizer: a literal prefix, then keys each followed by a delimiter (the last
/// key's delimiter is empty when the key takes the rest of the line).
#[derive(Debug, Clone)]
struct Tokenizer {
    prefix: String,
    fields: Vec<(Key, Delimiter)>,
}

/// A literal between keys, with its searcher built once.
#[derive(Debug, Clone)]
struct Delimiter {
    text: String,
    finder: Finder<'static>,
}

impl Delimiter {
    fn new(text: String) -> Delimiter {
        let finder = Finder::new(text.as_bytes()).into_owned();
        Delimiter { text, finder }
    }

    /// Offset of the first occurrence in `hay`.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self.text.as_bytes() {
            [b] => memchr::memchr(*b, hay),
            _ => self.finder.find(hay),
        }
    }
}

#[derive(Clone)]
pub struct Dissect {
    field: String,
    tokenizer: Tokenizer,
    trim: Trim,
    trim_chars: Vec<char>,
    tag_on_failure: String,
    ignore_missing: bool,
    failures: Arc<Failures>,
    /// Spans of the values of the current line (reused across events).
    spans: Vec<(usize, usize)>,
    /// Values of the current line by key index (reused across events).
    values: Vec<(usize, Value)>,
}

impl Dissect {
    pub fn new(
        config: DissectConfig,
        spec: &ComponentSpec,
        failures: Arc<Failures>,
    ) -> Result<Dissect, DeError> {
        let mut tokenizer = parse_tokenizer(&config.tokenizer, config.target.as_deref())
            .map_err(|m| DeError::new(m, spec.mark, &format!("{}.tokenizer", spec.path)))?;
        for (name, ty) in &config.types {
            let at = format!("{}.types.{name}", spec.path);
            let conversion = convert::of_entry(name, ty, spec)?;
            let mut found = false;
            for (key, _) in &mut tokenizer.fields {
                if key.path.is_some() && key.name == *name {
                    found = true;
                    if !key.inline {
                        key.convert = conversion;
                    }
                }
            }
            if !found {
                return Err(DeError::new(
                    format!("`{name}` is not a key of the tokenizer"),
                    spec.mark,
                    &at,
                ));
            }
        }
        Ok(Dissect {
            field: config.field,
            tokenizer,
            trim: config.trim_values,
            trim_chars: config.trim_chars.chars().collect(),
            tag_on_failure: config.tag_on_failure,
            ignore_missing: config.ignore_missing,
            failures,
            spans: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Splits `text` into one span per key; `false` when the line does not fit.
    fn split(&mut self, text: &str) -> bool {
        self.spans.clear();
        let Some(mut rest_at) = text
            .starts_with(&self.tokenizer.prefix)
            .then_some(self.tokenizer.prefix.len())
        else {
            return false;
        };
        for (key, delim) in &self.tokenizer.fields {
            let rest = &text[rest_at..];
            if delim.text.is_empty() {
                self.spans.push((rest_at, text.len()));
                rest_at = text.len();
                continue;
            }
            let Some(at) = delim.find(rest.as_bytes()) else {
                return false;
            };
            self.spans.push((rest_at, rest_at + at));
            rest_at += at + delim.text.len();
            if key.right_padding {
                while text[rest_at..].starts_with(delim.text.as_str()) {
                    rest_at += delim.text.len();
                }
            }
        }
        true
    }

    fn trimmed<'a>(&self, s: &'a str) -> &'a str {
        self.trim.apply(s, &self.trim_chars)
    }
}

impl Processor for Dissect {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let Some((text, from)) = take_text(event, &self.field) else {
            let (field, tag) = (&self.field, &self.tag_on_failure);
            self.failures
                .not_text(event, field, self.ignore_missing, tag);
            return Verdict::Keep;
        };
        if !self.split(&text) {
            restore_text(event, &self.field, from, text);
            self.failures.record(&format_args!(
                "the tokenizer does not fit field `{}`",
                self.field
            ));
            event.add_tag(&self.tag_on_failure);
            return Verdict::Keep;
        }
        let mut values = std::mem::take(&mut self.values);
        values.clear();
        let mut failed = false;
        for (i, ((key, _), &(s, e))) in self.tokenizer.fields.iter().zip(&self.spans).enumerate() {
            if key.path.is_none() {
                continue;
            }
            let raw = self.trimmed(&text[s..e]);
            if key.append {
                if let Some((_, Value::String(prev))) = values
                    .iter_mut()
                    .rev()
                    .find(|(j, _)| self.tokenizer.fields[*j].0.path == key.path)
                {
                    prev.push(' ');
                    prev.push_str(raw);
                    continue;
                }
            }
            let value = match key.convert.apply(raw) {
                Some(v) => v,
                None => {
                    self.failures.record(&format_args!(
                        "value `{raw}` of key `{}` is not of type {:?}; kept as text",
                        key.name, key.convert
                    ));
                    failed = true;
                    Value::String(raw.to_owned())
                }
            };
            values.push((i, value));
        }
        if failed {
            event.add_tag(convert::FAILURE_TAG);
        }
        restore_text(event, &self.field, from, text);
        for (i, value) in values.drain(..) {
            if let Some(path) = &self.tokenizer.fields[i].0.path {
                path.insert(event, value);
            }
        }
        self.values = values;
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

fn parse_tokenizer(pattern: &str, target: Option<&str>) -> Result<Tokenizer, String> {
    let mut prefix = String::new();
    let mut fields: Vec<(Key, Delimiter)> = Vec::new();
    let mut rest = pattern;
    let mut literal = String::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("%{") {
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `%{{` in tokenizer `{pattern}`"))?;
            let key = parse_key(&after[..close], target)?;
            match fields.last_mut() {
                Some((_, delim)) => {
                    if literal.is_empty() {
                        return Err(format!(
                            "two keys without a delimiter between them in tokenizer `{pattern}`"
                        ));
                    }
                    *delim = Delimiter::new(std::mem::take(&mut literal));
                }
                None => prefix = std::mem::take(&mut literal),
            }
            fields.push((key, Delimiter::new(String::new())));
            rest = &after[close + 1..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    match fields.last_mut() {
        Some((_, delim)) => *delim = Delimiter::new(literal),
        None => return Err(format!("tokenizer `{pattern}` has no `%{{key}}`")),
    }
    Ok(Tokenizer { prefix, fields })
}

fn parse_key(spec: &str, target: Option<&str>) -> Result<Key, String> {
    if spec.contains("%{") {
        // `%{a%{b}}`: keys do not nest; the first `}` ends the key.
        return Err(format!(
            "`%{{{spec}}}`: a key holds no `%{{`: close each key before the next (`%{{a}} %{{b}}`)"
        ));
    }
    let (spec, convert, inline) = match spec.split_once('|') {
        None => (spec, Conversion::String, false),
        Some((k, t)) => match Conversion::from_name(t) {
            Some(c) => (k, c, true),
            None => {
                return Err(format!(
                    "unknown conversion `{t}`, expected one of {}",
                    convert::NAMES
                ))
            }
        },
    };
    let (spec, right_padding) = match spec.strip_suffix("->") {
        Some(s) => (s, true),
        None => (spec, false),
    };
    let (name, skip, append) = if let Some(n) = spec.strip_prefix('?') {
        (n, true, false)
    } else if let Some(n) = spec.strip_prefix('+') {
        (n, false, true)
    } else if spec.starts_with('*') || spec.starts_with('&') {
        return Err(format!("reference keys (`{spec}`) are not supported"));
    } else {
        (spec, spec.is_empty(), false)
    };
    if !skip {
        super::writable_field(&target_path(target, name))?;
    }
    Ok(Key {
        path: (!skip).then(|| FieldPath::new(&target_path(target, name))),
        name: name.to_owned(),
        inline,
        append,
        right_padding,
        convert,
    })
}

#[cfg(test)]
mod tests {
    use crate::processors::test_support::{build, event, json};
    use serde_json::json;

    #[test]
    fn the_issue_tokenizer_splits_an_hdfs_line() {
        let mut p = build("{type: dissect, tokenizer: '%{date} %{time} %{pid} %{level} %{component}: %{content}'}").unwrap();
        let mut e = event("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating");
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["date"], "081109");
        assert_eq!(j["pid"], "148");
        assert_eq!(j["component"], "dfs.DataNode$PacketResponder");
        assert_eq!(
            j["content"],
            "PacketResponder 1 for block blk_38865049064139660 terminating"
        );
        assert!(j["message"].as_str().unwrap().starts_with("081109"));
    }

    #[test]
    fn modifiers_padding_skip_append_convert_and_target() {
        let mut p = build("{type: dissect, target: d, tokenizer: '[%{ts} %{+ts}] %{?skip} %{level->} %{pid|integer} %{}: %{msg}'}").unwrap();
        let mut e = event("[Dec 10] x WARN    42 y: hello: world");
        p.process(&mut e);
        assert_eq!(
            json(&e)["d"],
            json!({"ts": "Dec 10", "level": "WARN", "pid": 42, "msg": "hello: world"})
        );
    }

    #[test]
    fn typed_keys_inline_and_by_map() {
        let mut p = build("{type: dissect, types: {client.ip: ip, bytes: long, pid: string}, tokenizer: '%{client.ip} %{pid|int} %{bytes} %{ok|bool} %{at|timestamp}'}").unwrap();
        let mut e = event("::1 42 1024 false 2026-11-30T10:00:00Z");
        p.process(&mut e);
        let j = json(&e);
        // The inline `|int` wins over the map's `string`.
        assert_eq!(j["pid"], json!(42));
        assert_eq!(j["bytes"], json!(1024));
        assert_eq!(j["ok"], json!(false));
        assert_eq!(j["client"]["ip"], json!("::1"));
        assert!(matches!(
            e.get("at"),
            Some(crate::event::Value::Timestamp(_))
        ));
        assert!(!e.has_tag(crate::processors::convert::FAILURE_TAG));

        let mut e = event("nope 42 lots false 2026-11-30T10:00:00Z");
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["client"]["ip"], json!("nope"));
        assert_eq!(j["bytes"], json!("lots"));
        assert!(e.has_tag(crate::processors::convert::FAILURE_TAG));

        let err = build("{type: dissect, types: {pdi: int}, tokenizer: '%{pid}'}")
            .err()
            .unwrap();
        assert_eq!(err.path.as_deref(), Some("processors[0].types.pdi"));
        let err = build("{type: dissect, tokenizer: '%{pid|number}'}")
            .err()
            .unwrap();
        assert!(
            err.message.contains("unknown conversion `number`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn trim_values_and_message_replacement() {
        let mut p =
            build("{type: dissect, trim_values: all, tokenizer: '%{a}|%{message}'}").unwrap();
        let mut e = event(" x | rest  ");
        p.process(&mut e);
        assert_eq!(json(&e)["a"], "x");
        assert_eq!(json(&e)["message"], "rest");
    }

    #[test]
    fn a_line_that_does_not_fit_is_tagged_and_unchanged() {
        let mut p = build("{type: dissect, tokenizer: '%{a} %{b}: %{c}'}").unwrap();
        let mut e = event("no-colon-here at all");
        let before = e.clone();
        p.process(&mut e);
        assert!(e.has_tag("_dissect_parse_failure"));
        e.remove("tags");
        assert_eq!(e, before);
        let mut e = event("");
        p.process(&mut e);
        assert!(e.has_tag("_dissect_parse_failure"));
    }

    #[test]
    fn bad_tokenizers_are_config_errors() {
        for t in [
            "'no keys'",
            "'%{a}%{b}'",
            "'%{a'",
            "'%{a|hex}'",
            "'%{*a} %{&a}'",
            "'%{a%{b}} %{c}'",
            "'%{a..b} %{c}'",
            "'%{.a} %{c}'",
        ] {
            let err = build(&format!("{{type: dissect, tokenizer: {t}}}"))
                .err()
                .unwrap();
            assert_eq!(err.path.as_deref(), Some("processors[0].tokenizer"), "{t}");
        }
    }
}
