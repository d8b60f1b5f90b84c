//! A serde `Deserializer` over the positioned YAML tree. Errors take the position and key path
//! of the innermost node where they arose, so a component's `Config` struct derives `Deserialize`
//! as usual and still gets `file:line:col` messages.

use super::node::{is_null_text, Mark, Node, NodeKind};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub mark: Option<Mark>,
    pub path: Option<String>,
    /// Further mistakes found in the same component once this one's key was set aside (serde
    /// stops at the first), so `trawl validate` lists them all in one pass.
    pub also: Vec<DeError>,
}

impl DeError {
    pub fn new(message: impl Into<String>, mark: Mark, path: &str) -> DeError {
        DeError {
            message: message.into(),
            mark: Some(mark),
            path: Some(path.to_owned()),
            also: Vec::new(),
        }
    }

    fn at(mut self, mark: Mark, path: &str) -> DeError {
        if self.mark.is_none() {
            self.mark = Some(mark);
            self.path = Some(path.to_owned());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            mark: None,
            path: None,
            also: Vec::new(),
        }
    }

    // serde's own wording names Rust types (`expected usize`, `expected enum ConditionConfig`);
    // whoever reads it wrote YAML.
    fn invalid_type(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            plain_expected(&exp.to_string()),
            plain_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }
}

/// What serde expected, in the pipeline file's terms.
fn plain_expected(exp: &str) -> String {
    match exp {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more)".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        "enum ConditionConfig" => "one condition: a map with exactly one of `equals`, `contains`, `regexp`, `range`, `exists`, `input`, `and`, `or`, `not` (`not` takes one condition, `and` and `or` a list)".into(),
        e if e.starts_with("struct ") => "a map of settings".into(),
        e if e.starts_with("enum ") => "one of the forms this key takes (see the README)".into(),
        e => e.to_owned(),
    }
}

/// What the file held instead, as it is written there (a plain `3` is text to YAML's parser
/// until a type asks for a number).
fn plain_unexpected(unexp: &Unexpected) -> String {
    match unexp {
        Unexpected::Str(s) => format!("`{s}`"),
        Unexpected::Map => "a map".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Unit => "nothing (null)".into(),
        Unexpected::Float(f) => format!("`{f}`"),
        Unexpected::Signed(n) => format!("`{n}`"),
        Unexpected::Unsigned(n) => format!("`{n}`"),
        Unexpected::Bool(b) => format!("`{b}`"),
        other => other.to_string(),
    }
}

/// Deserializes `T` from `node`, whose key path in the file is `path` (`inputs.app`).
///
/// On a mistake, the key it is at is set aside and the rest tried again, so that the error
/// carries every mistake of the component (`also`), not only the one serde met first.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    let mut first = match deserialize_at::<T>(node, path) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let mut pruned = node.clone();
    let mut removed: Vec<String> = Vec::new();
    let mut last = first.clone();
    // Bounded: each round removes one entry, and a file's component has few keys.
    for _ in 0..MAX_ERRORS_PER_COMPONENT {
        let Some(at) = last.path.clone() else { break };
        if at == path {
            break;
        }
        let Some(gone) = remove_entry(&mut pruned, path, &at) else {
            break;
        };
        removed.push(gone);
        match deserialize_at::<T>(&pruned, path) {
            Ok(_) => break,
            Err(e) => {
                // A required key that was set aside is missing now: not the user's mistake.
                let set_aside = e
                    .message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                    .zip(e.path.as_deref())
                    .is_some_and(|(k, p)| removed.contains(&child_path(p, k)));
                if set_aside || (e.path == last.path && e.message == last.message) {
                    break;
                }
                // A mapping emptied by the removal (`when: {equal: ..}` left as `{}`) fails as
                // a whole: that follows from setting aside, so it is set aside in turn, unsaid.
                // A missing key is the user's (the set-aside ones were ruled out above).
                let emptied = !e.message.starts_with("missing field `")
                    && e.path
                        .as_deref()
                        .is_some_and(|p| removed.iter().any(|r| encloses(p, r)));
                if !emptied {
                    first.also.push(e.clone());
                }
                last = e;
            }
        }
    }
    Err(first)
}

const MAX_ERRORS_PER_COMPONENT: usize = 16;

/// True when key path `outer` is `inner` or one of its ancestors (`a.b` encloses `a.b[0].c`).
fn encloses(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn deserialize_at<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer {
        node,
        path: path.to_owned(),
    })
    .map_err(|e| e.at(node.mark, path))
}

/// What a bad scalar list element is replaced with when set aside: `Seq` skips it and still
/// counts it, so that later errors name the indices the file has (a NUL cannot come from a plain
/// YAML scalar, and no one writes this escaped one).
const SET_ASIDE: &str = "\u{0}trawl:set-aside";

fn is_set_aside(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar { value, plain: false } if value == SET_ASIDE)
}

/// Removes the deepest mapping entry at or above `target` (a key path built as the
/// deserializer builds it), and gives its key path. A bad scalar list element (one of several
/// `hosts`) is set aside in place, so the others are still checked under their own indices; a
/// bad list element of another kind sets its whole key aside.
fn remove_entry(node: &mut Node, path: &str, target: &str) -> Option<String> {
    let within = |p: &str| encloses(p, target);
    match &mut node.kind {
        NodeKind::Map(entries) => {
            let found = entries.iter().position(|(k, _)| {
                let key_path = child_path(path, k.as_str().unwrap_or("?"));
                within(&key_path)
            });
            let i = found?;
            let key_path = child_path(path, entries[i].0.as_str().unwrap_or("?"));
            if key_path != target {
                if let Some(deeper) = remove_entry(&mut entries[i].1, &key_path, target) {
                    return Some(deeper);
                }
            }
            entries.remove(i);
            Some(key_path)
        }
        NodeKind::Seq(items) => items.iter_mut().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            if item_path == target && matches!(item.kind, NodeKind::Scalar { .. }) {
                item.kind = NodeKind::Scalar {
                    value: SET_ASIDE.to_owned(),
                    plain: false,
                };
                return Some(item_path);
            }
            (within(&item_path) && item_path != target)
                .then(|| remove_entry(item, &item_path, target))
                .flatten()
        }),
        NodeKind::Scalar { .. } => None,
    }
}

pub struct NodeDeserializer<'a> {
    pub node: &'a Node,
    pub path: String,
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'a> NodeDeserializer<'a> {
    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            NodeKind::Scalar { value, plain } => Some((value.as_str(), *plain)),
            _ => None,
        }
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Scalar { value, .. } => Unexpected::Str(value),
            NodeKind::Seq(_) => Unexpected::Seq,
            NodeKind::Map(_) => Unexpected::Map,
        }
    }

    fn fail<T>(&self, e: DeError) -> Result<T, DeError> {
        Err(e.at(self.node.mark, &self.path))
    }

    fn parse_num<T: std::str::FromStr, V: Visitor<'a>>(&self, visitor: &V) -> Result<T, DeError> {
        match self.scalar() {
            Some((s, _)) => {
                let t = s.trim().replace('_', "");
                t.parse::<T>().or_else(|_| {
                    // A number of the wrong sign or size is a wrong value, not a wrong type:
                    // say "found `-1`" for a whole number, not the text "-1".
                    let e = if let Ok(i) = t.parse::<i64>() {
                        de::Error::invalid_value(Unexpected::Signed(i), visitor)
                    } else if let Ok(u) = t.parse::<u64>() {
                        de::Error::invalid_value(Unexpected::Unsigned(u), visitor)
                    } else if t.parse::<i128>().is_ok() {
                        de::Error::invalid_value(
                            Unexpected::Other("an integer this large"),
                            visitor,
                        )
                    } else if looks_like_float(&t) && t.parse::<f64>().is_ok() {
                        de::Error::invalid_value(Unexpected::Other("a fractional number"), visitor)
                    } else {
                        de::Error::invalid_type(Unexpected::Str(s), visitor)
                    };
                    self.fail(e)
                })
            }
            None => self.fail(de::Error::invalid_type(self.unexpected(), visitor)),
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let mark = self.node.mark;
        let path = self.path.clone();
        let r = match &self.node.kind {
            NodeKind::Scalar { value, plain } => {
                if !*plain {
                    visitor.visit_str(value)
                } else if is_null_text(value) {
                    visitor.visit_unit()
                } else if value == "true" || value == "True" || value == "TRUE" {
                    visitor.visit_bool(true)
                } else if value == "false" || value == "False" || value == "FALSE" {
                    visitor.visit_bool(false)
                } else if let Ok(i) = value.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = value.parse::<u64>() {
                    visitor.visit_u64(u)
                } else if looks_like_float(value) {
                    match value.parse::<f64>() {
                        Ok(f) => visitor.visit_f64(f),
                        Err(_) => visitor.visit_str(value),
                    }
                } else {
                    visitor.visit_str(value)
                }
            }
            NodeKind::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            NodeKind::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        r.map_err(|e| e.at(mark, &path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(("true" | "True" | "TRUE" | "yes" | "on", _)) => visitor.visit_bool(true),
            Some(("false" | "False" | "FALSE" | "no" | "off", _)) => visitor.visit_bool(false),
            _ => self.fail(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let n: i64 = self.parse_num(&visitor)?;
        visitor.visit_i64(n).or_else(|e| self.fail(e))
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let n: u64 = self.parse_num(&visitor)?;
        visitor.visit_u64(n).or_else(|e| self.fail(e))
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let n: f64 = self.parse_num(&visitor)?;
        visitor.visit_f64(n).or_else(|e| self.fail(e))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any scalar reads as text where text is expected (`topic: 2024` is the string "2024").
        match self.scalar() {
            Some((s, _)) => visitor.visit_str(s).or_else(|e| self.fail(e)),
            None => self.fail(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_unit()
        } else {
            self.fail(de::Error::invalid_type(self.unexpected(), &visitor))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(_) => self.deserialize_any(visitor),
            // An empty value where a list is expected reads as an empty list.
            _ if self.node.is_null() => visitor.visit_seq(Seq {
                items: [].iter(),
                index: 0,
                path: &self.path,
            }),
            _ => self.fail(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(_) => self.deserialize_any(visitor),
            _ if self.node.is_null() => visitor.visit_map(Map {
                entries: [].iter(),
                value: None,
                path: &self.path,
            }),
            _ => self.fail(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let mark = self.node.mark;
        let path = self.path.clone();
        let r = match &self.node.kind {
            NodeKind::Scalar { value, .. } => {
                visitor.visit_enum(value.as_str().into_deserializer())
            }
            NodeKind::Map(entries) if entries.len() == 1 => visitor.visit_enum(Enum {
                key: &entries[0].0,
                value: &entries[0].1,
                path: &self.path,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        r.map_err(|e| e.at(mark, &path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct tuple tuple_struct
    }
}

fn looks_like_float(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
        && b.iter().any(|c| c.is_ascii_digit())
}

struct Seq<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'de> SeqAccess<'de> for Seq<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        loop {
            match self.items.next() {
                None => return Ok(None),
                Some(node) => {
                    let path = format!("{}[{}]", self.path, self.index);
                    self.index += 1;
                    if is_set_aside(node) {
                        continue;
                    }
                    return seed.deserialize(NodeDeserializer { node, path }).map(Some);
                }
            }
        }
    }
}

struct Map<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'p str,
}

impl<'de> MapAccess<'de> for Map<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                let key_path = child_path(self.path, k.as_str().unwrap_or("?"));
                self.value = Some((v, key_path.clone()));
                seed.deserialize(NodeDeserializer {
                    node: k,
                    path: key_path,
                })
                .map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDeserializer { node, path }),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct Enum<'a, 'p> {
    key: &'a Node,
    value: &'a Node,
    path: &'p str,
}

impl<'de> EnumAccess<'de> for Enum<'de, '_> {
    type Error = DeError;
    type Variant = NodeDeserializer<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let path = child_path(self.path, self.key.as_str().unwrap_or("?"));
        let v = seed.deserialize(NodeDeserializer {
            node: self.key,
            path: path.clone(),
        })?;
        Ok((
            v,
            NodeDeserializer {
                node: self.value,
                path,
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse;
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        paths: Vec<String>,
        #[serde(default)]
        max: Option<u32>,
        mode: Mode,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Beginning,
        End,
    }

    #[test]
    fn reads_structs() {
        let n = parse("paths: [a, '1']\nmax: 3\nmode: end\n").unwrap();
        let c: Conf = from_node(&n, "inputs.x").unwrap();
        assert_eq!(
            c,
            Conf {
                paths: vec!["a".into(), "1".into()],
                max: Some(3),
                mode: Mode::End
            }
        );
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let n = parse("paths: [a]\nmode: end\npathz: 1\n").unwrap();
        let e = from_node::<Conf>(&n, "inputs.x").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 3, col: 1 }));
        assert_eq!(e.path.as_deref(), Some("inputs.x.pathz"));
        assert!(e.message.contains("unknown field `pathz`"), "{}", e.message);
        assert!(e.message.contains("expected one of"), "{}", e.message);
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let n = parse("paths: [a]\nmode: end\nmax: lots\n").unwrap();
        let e = from_node::<Conf>(&n, "inputs.x").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 3, col: 6 }));
        assert_eq!(e.path.as_deref(), Some("inputs.x.max"));
        assert_eq!(
            e.message,
            "expected a whole number (0 or more), found `lots`"
        );
        let n = parse("paths: [a]\nmode: sideways\n").unwrap();
        let e = from_node::<Conf>(&n, "inputs.x").unwrap_err();
        assert!(
            e.message.contains("unknown variant `sideways`"),
            "{}",
            e.message
        );
        assert_eq!(e.path.as_deref(), Some("inputs.x.mode"));
    }

    fn all(e: &DeError) -> Vec<(String, String)> {
        std::iter::once(e)
            .chain(&e.also)
            .map(|e| (e.path.clone().unwrap_or_default(), e.message.clone()))
            .collect()
    }

    #[test]
    fn every_mistake_in_a_struct_is_reported_not_only_the_first() {
        let n = parse("paths: [a]\npathz: 1\nmax: lots\nmode: sideways\n").unwrap();
        let e = from_node::<Conf>(&n, "inputs.x").unwrap_err();
        let got = all(&e);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["inputs.x.pathz", "inputs.x.max", "inputs.x.mode"],
            "{got:?}"
        );
        assert!(got[1].1.contains("found `lots`"), "{got:?}");
        assert!(got[2].1.contains("unknown variant `sideways`"), "{got:?}");
        // The later ones keep their own positions.
        assert_eq!(e.also[0].mark, Some(Mark { line: 3, col: 6 }));
        assert_eq!(e.also[1].mark, Some(Mark { line: 4, col: 7 }));
    }

    #[test]
    fn a_key_set_aside_is_not_then_reported_missing_but_a_missing_key_is() {
        // `mode` and `paths` are required: setting them aside must not add "missing field".
        let n = parse("paths: [a, {b: 1}]\nmode: sideways\n").unwrap();
        let got = all(&from_node::<Conf>(&n, "x").unwrap_err());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "x.paths[1]");
        assert_eq!(got[1].0, "x.mode");
        // A key the user did not write is missing, beside the misspelt one.
        let n = parse("pathz: [a]\nmode: end\n").unwrap();
        let got = all(&from_node::<Conf>(&n, "x").unwrap_err());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].1.contains("unknown field `pathz`"), "{got:?}");
        assert!(got[1].1.contains("missing field `paths`"), "{got:?}");
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        when: Cond,
        max: u32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Cond {
        Equals(u32),
    }

    #[test]
    fn a_mapping_emptied_by_setting_a_key_aside_is_not_a_mistake_of_its_own() {
        let n = parse("when: {equal: 1}\nmax: -1\n").unwrap();
        let got = all(&from_node::<Outer>(&n, "p").unwrap_err());
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["p.when.equal", "p.max"], "{got:?}");
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let n = parse("x:\n  mode: end\n").unwrap();
        let e = from_node::<Conf>(n.get("x").unwrap(), "x").unwrap_err();
        assert!(e.message.contains("missing field `paths`"));
        assert_eq!(e.mark.map(|m| m.line), Some(2));
    }
}
