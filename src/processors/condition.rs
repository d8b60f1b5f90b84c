//! `when:` conditions, as Beats users write them: `equals`, `contains`, `regexp`, `range`,
//! `exists` (`has_fields`), `input`, and `and` / `or` / `not` to combine them.

use crate::config::{from_node, DeError, Node};
use crate::event::{Event, Value};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A condition as written in the pipeline file (exactly one key per condition).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionConfig {
    /// Every field equals the given value (text, number or boolean).
    Equals(BTreeMap<String, serde_json::Value>),
    /// Every field contains the given text (or, for a list field, has it as an element).
    Contains(BTreeMap<String, String>),
    /// Every field's text matches the regular expression (anywhere in it, unless anchored).
    #[serde(alias = "regex")]
    Regexp(BTreeMap<String, String>),
    /// Numeric bounds: `{ http.response.status_code.gte: 400, event.duration.lt: 5e9 }`; every
    /// bound must hold. The key is the field followed by `.lt`, `.lte`, `.gt` or `.gte`.
    Range(BTreeMap<String, f64>),
    /// Every named field is present.
    #[serde(alias = "has_fields")]
    Exists(Vec<String>),
    /// The event came from one of these inputs.
    Input(OneOrMany),
    And(Vec<ConditionConfig>),
    Or(Vec<ConditionConfig>),
    Not(Box<ConditionConfig>),
}

/// Every input name an `input:` condition inside `node` (a `when:` as written) names, with
/// where it is written: a misspelt one would silently match nothing.
pub fn input_names(node: &Node) -> Vec<(String, crate::config::Mark)> {
    use crate::config::NodeKind;
    let mut found = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match &n.kind {
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    match (k.as_str(), &v.kind) {
                        (Some("input"), NodeKind::Scalar { value, .. }) => {
                            found.push((value.clone(), v.mark))
                        }
                        (Some("input"), NodeKind::Seq(items)) => found.extend(
                            items
                                .iter()
                                .filter_map(|i| i.as_str().map(|s| (s.to_owned(), i.mark))),
                        ),
                        (Some("and" | "or" | "not"), _) => stack.push(v),
                        _ => {}
                    }
                }
            }
            NodeKind::Seq(items) => stack.extend(items.iter()),
            NodeKind::Scalar { .. } => {}
        }
    }
    found
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum Condition {
    Equals(Vec<(String, Value)>),
    Contains(Vec<(String, String)>),
    Regexp(Vec<(String, ::regex::Regex)>),
    Range(Vec<(String, Bound, f64)>),
    Exists(Vec<String>),
    Input(Vec<String>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

/// The comparison of a `range` bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Condition {
    pub fn from_node(node: &Node, path: &str) -> Result<Condition, DeError> {
        let c: ConditionConfig = from_node(node, path)?;
        Condition::from_config(c).map_err(|m| DeError::new(m, node.mark, path))
    }

    /// Fails on an invalid regular expression or a `range` key without a bound suffix.
    pub fn from_config(c: ConditionConfig) -> Result<Condition, String> {
        let all = |v: Vec<ConditionConfig>| {
            v.into_iter()
                .map(Condition::from_config)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match c {
            ConditionConfig::Equals(m) => Condition::Equals(
                m.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
            ConditionConfig::Contains(m) => Condition::Contains(m.into_iter().collect()),
            ConditionConfig::Regexp(m) => Condition::Regexp(
                m.into_iter()
                    .map(|(k, p)| {
                        ::regex::Regex::new(&p)
                            .map(|r| (k.clone(), r))
                            .map_err(|e| format!("regexp for `{k}`: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ConditionConfig::Range(m) => Condition::Range(
                m.into_iter()
                    .map(|(k, v)| {
                        let (field, op) = k.rsplit_once('.').ok_or_else(|| range_key_error(&k))?;
                        let bound = match op {
                            "lt" => Bound::Lt,
                            "lte" => Bound::Lte,
                            "gt" => Bound::Gt,
                            "gte" => Bound::Gte,
                            _ => return Err(range_key_error(&k)),
                        };
                        Ok((field.to_owned(), bound, v))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ConditionConfig::Exists(v) => Condition::Exists(v),
            ConditionConfig::Input(OneOrMany::One(s)) => Condition::Input(vec![s]),
            ConditionConfig::Input(OneOrMany::Many(v)) => Condition::Input(v),
            ConditionConfig::And(v) => Condition::And(all(v)?),
            ConditionConfig::Or(v) => Condition::Or(all(v)?),
            ConditionConfig::Not(c) => Condition::Not(Box::new(Condition::from_config(*c)?)),
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Condition::Equals(pairs) => pairs.iter().all(|(field, want)| match event.get(field) {
                Some(have) => values_equal(have, want),
                None => false,
            }),
            Condition::Contains(pairs) => {
                pairs.iter().all(|(field, needle)| match event.get(field) {
                    Some(Value::String(s)) => s.contains(needle.as_str()),
                    Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(needle)),
                    _ => false,
                })
            }
            Condition::Regexp(pairs) => {
                pairs.iter().all(
                    |(field, re)| match event.get(field).and_then(Value::to_text) {
                        Some(text) => re.is_match(&text),
                        None => false,
                    },
                )
            }
            Condition::Range(bounds) => bounds.iter().all(|(field, bound, limit)| {
                let have = match event.get(field) {
                    Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                    Some(v) => v.as_f64(),
                    None => None,
                };
                match have {
                    Some(h) => match bound {
                        Bound::Lt => h < *limit,
                        Bound::Lte => h <= *limit,
                        Bound::Gt => h > *limit,
                        Bound::Gte => h >= *limit,
                    },
                    None => false,
                }
            }),
            Condition::Exists(fields) => fields.iter().all(|f| event.get(f).is_some()),
            Condition::Input(names) => names.iter().any(|n| **n == *event.meta.input),
            Condition::And(cs) => cs.iter().all(|c| c.matches(event)),
            Condition::Or(cs) => cs.iter().any(|c| c.matches(event)),
            Condition::Not(c) => !c.matches(event),
        }
    }
}

fn range_key_error(key: &str) -> String {
    format!("range key `{key}` must end with `.lt`, `.lte`, `.gt` or `.gte`")
}

fn values_equal(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            have.as_f64() == want.as_f64()
        }
        // `equals: { http.response.status_code: "200" }` should match the number 200.
        (Value::Int(_) | Value::Float(_), Value::String(s)) => {
            s.parse::<f64>().ok() == have.as_f64()
        }
        _ => have == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse;
    use chrono::Utc;

    fn event() -> Event {
        let mut e = Event::from_message("app".into(), Utc::now(), "GET /index 500".into());
        e.insert("http.response.status_code", 500i64);
        e.insert("log.level", "error");
        e
    }

    fn cond(yaml: &str) -> Condition {
        Condition::from_node(&parse(yaml).unwrap(), "when").unwrap()
    }

    #[test]
    fn basic_conditions() {
        let e = event();
        assert!(cond("equals: { log.level: error }").matches(&e));
        assert!(cond("equals: { http.response.status_code: 500 }").matches(&e));
        assert!(!cond("equals: { log.level: info }").matches(&e));
        assert!(cond("contains: { message: index }").matches(&e));
        assert!(cond("exists: [log.level]").matches(&e));
        assert!(!cond("exists: [nope]").matches(&e));
        assert!(cond("input: app").matches(&e));
        assert!(!cond("input: [other]").matches(&e));
        assert!(cond("and: [ {input: app}, {not: {equals: {log.level: info}}} ]").matches(&e));
        assert!(cond("or: [ {input: x}, {exists: [message]} ]").matches(&e));
    }

    #[test]
    fn regexp_and_range_as_beats_writes_them() {
        let e = event();
        assert!(cond("regexp: { message: '^GET /ind' }").matches(&e));
        assert!(cond("regex: { message: 'index \\d+$' }").matches(&e));
        assert!(!cond("regexp: { message: '^POST' }").matches(&e));
        assert!(!cond("regexp: { nope: '.*' }").matches(&e));
        // Numbers are matched through their text.
        assert!(cond("regexp: { http.response.status_code: '^5..$' }").matches(&e));
        assert!(cond(
            "range: { http.response.status_code.gte: 500, http.response.status_code.lt: 600 }"
        )
        .matches(&e));
        assert!(!cond("range: { http.response.status_code.gt: 500 }").matches(&e));
        assert!(cond("range: { http.response.status_code.lte: 500 }").matches(&e));
        assert!(!cond("range: { log.level.gte: 1 }").matches(&e));
        assert!(!cond("range: { missing.gte: 1 }").matches(&e));
        assert!(cond("has_fields: [log.level]").matches(&e));
        assert!(cond("not: { range: { http.response.status_code.lt: 400 } }").matches(&e));
    }

    #[test]
    fn bad_regexp_and_range_keys_are_errors() {
        let err = Condition::from_node(
            &parse("regexp: { message: '(' }").unwrap(),
            "processors[0].when",
        )
        .unwrap_err();
        assert!(
            err.message.contains("regexp for `message`"),
            "{}",
            err.message
        );
        let err =
            Condition::from_node(&parse("or: [ {range: { code.between: 1 }} ]").unwrap(), "w")
                .unwrap_err();
        assert!(
            err.message.contains("must end with `.lt`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_condition_is_an_error() {
        let e = Condition::from_node(&parse("equal: { a: 1 }").unwrap(), "processors[0].when")
            .unwrap_err();
        assert!(
            e.message.contains("unknown variant `equal`"),
            "{}",
            e.message
        );
        assert_eq!(e.path.as_deref(), Some("processors[0].when.equal"));
    }
}
