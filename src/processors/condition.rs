//! `when:` conditions, as Beats users write them: `equals`, `contains`, `exists`, `input`, and
//! `and` / `or` / `not` to combine them.

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
    /// Every named field is present.
    Exists(Vec<String>),
    /// The event came from one of these inputs.
    Input(OneOrMany),
    And(Vec<ConditionConfig>),
    Or(Vec<ConditionConfig>),
    Not(Box<ConditionConfig>),
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
    Exists(Vec<String>),
    Input(Vec<String>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn from_node(node: &Node, path: &str) -> Result<Condition, DeError> {
        let c: ConditionConfig = from_node(node, path)?;
        Ok(Condition::from_config(c))
    }

    pub fn from_config(c: ConditionConfig) -> Condition {
        match c {
            ConditionConfig::Equals(m) => Condition::Equals(
                m.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
            ConditionConfig::Contains(m) => Condition::Contains(m.into_iter().collect()),
            ConditionConfig::Exists(v) => Condition::Exists(v),
            ConditionConfig::Input(OneOrMany::One(s)) => Condition::Input(vec![s]),
            ConditionConfig::Input(OneOrMany::Many(v)) => Condition::Input(v),
            ConditionConfig::And(v) => {
                Condition::And(v.into_iter().map(Condition::from_config).collect())
            }
            ConditionConfig::Or(v) => {
                Condition::Or(v.into_iter().map(Condition::from_config).collect())
            }
            ConditionConfig::Not(c) => Condition::Not(Box::new(Condition::from_config(*c))),
        }
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
            Condition::Exists(fields) => fields.iter().all(|f| event.get(f).is_some()),
            Condition::Input(names) => names.iter().any(|n| **n == *event.meta.input),
            Condition::And(cs) => cs.iter().all(|c| c.matches(event)),
            Condition::Or(cs) => cs.iter().any(|c| c.matches(event)),
            Condition::Not(c) => !c.matches(event),
        }
    }
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
