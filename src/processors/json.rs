//! The `json` parser: decodes a field holding a JSON object into the event's root or into a
//! target object. Invalid JSON is tagged and counted; the event goes on unchanged.

use super::{default_field, Failures, Processor, Verdict};
use crate::event::{Event, Key, Map, Value};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// The field holding the JSON text.
    #[serde(default = "default_field")]
    pub field: String,
    /// Where the decoded value goes; absent: its keys are merged into the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// When merging into the root, decoded keys replace existing fields of the same name.
    #[serde(default)]
    pub overwrite_keys: bool,
    /// Remove the source field once decoded.
    #[serde(default)]
    pub remove_field: bool,
    /// Tag added to events whose field is not valid JSON.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untouched and uncounted.
    #[serde(default)]
    pub ignore_missing: bool,
}

fn default_tag() -> String {
    "_json_parse_failure".to_owned()
}

#[derive(Clone)]
pub struct Json {
    config: JsonConfig,
    failures: Arc<Failures>,
}

impl Json {
    pub fn new(config: JsonConfig, failures: Arc<Failures>) -> Json {
        Json { config, failures }
    }

    fn fail(&self, event: &mut Event, what: &dyn fmt::Display) -> Verdict {
        self.failures.tag(event, &self.config.tag_on_failure, what);
        Verdict::Keep
    }
}

impl Processor for Json {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let c = &self.config;
        let decoded = match event.get(&c.field) {
            Some(Value::String(s)) => serde_json::from_str::<JsonValue>(s),
            _ if c.ignore_missing => return Verdict::Keep,
            _ => {
                return self.fail(
                    event,
                    &format_args!("field `{}` is missing or not text", c.field),
                )
            }
        };
        let value = match decoded {
            Ok(JsonValue(v)) => v,
            Err(e) => {
                return self.fail(
                    event,
                    &format_args!("field `{}` is not valid JSON: {e}", c.field),
                )
            }
        };
        if c.remove_field {
            event.remove(&c.field);
        }
        match (&c.target, value) {
            (Some(t), v) if !t.is_empty() => {
                event.insert(t, v);
            }
            (_, Value::Object(map)) => {
                for (k, v) in map {
                    if c.overwrite_keys || event.fields.get(&k).is_none() || k == c.field.as_str() {
                        event.fields.insert(k, v);
                    }
                }
            }
            (_, _) => {
                return self.fail(
                    event,
                    &format_args!(
                        "field `{}` holds JSON that is not an object, and no `target` is set",
                        c.field
                    ),
                )
            }
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

/// Decodes JSON straight into trawl's `Value` (no intermediate `serde_json::Value`).
pub struct JsonValue(pub Value);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(JsonValue)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u)
            .map(Value::Int)
            .unwrap_or(Value::Float(u as f64)))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(JsonValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some((k, JsonValue(v))) =
            access.next_entry::<std::borrow::Cow<'de, str>, JsonValue>()?
        {
            map.insert(Key::from(k.as_ref()), v);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::{build, event, json};
    use serde_json::json;

    #[test]
    fn decodes_into_the_root_without_overwriting_by_default() {
        let mut p = build("{type: json}").unwrap();
        let mut e = event(
            r#"{"log": {"level": "info"}, "n": 3, "f": 1.5, "ok": true, "l": [1, "a"], "host": "x"}"#,
        );
        e.insert("host", "mine");
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["log"]["level"], "info");
        assert_eq!(j["n"], 3);
        assert_eq!(j["f"], 1.5);
        assert_eq!(j["l"], json!([1, "a"]));
        assert_eq!(j["host"], "mine");
        let mut p = build("{type: json, overwrite_keys: true, remove_field: true}").unwrap();
        let mut e = event(r#"{"host": "theirs"}"#);
        e.insert("host", "mine");
        p.process(&mut e);
        assert_eq!(json(&e)["host"], "theirs");
        assert!(e.get("message").is_none());
    }

    #[test]
    fn decodes_into_a_target_from_another_field() {
        let mut p = build("{type: json, field: body, target: http.request.body}").unwrap();
        let mut e = event("m");
        e.insert("body", r#"[1,2]"#);
        p.process(&mut e);
        assert_eq!(json(&e)["http"]["request"]["body"], json!([1, 2]));
    }

    #[test]
    fn a_message_key_in_the_json_replaces_the_decoded_message() {
        let mut p = build("{type: json}").unwrap();
        let mut e = event(r#"{"message": "inner"}"#);
        p.process(&mut e);
        assert_eq!(json(&e)["message"], "inner");
    }

    #[test]
    fn invalid_json_is_flagged_not_fatal() {
        let mut p = build("{type: json}").unwrap();
        for bad in [
            "{not json",
            "",
            "[1,2]",
            "\"just text\"",
            "{\"a\":1} trailing",
        ] {
            let mut e = event(bad);
            assert_eq!(p.process(&mut e), Verdict::Keep, "{bad}");
            assert!(e.has_tag("_json_parse_failure"), "{bad}");
            assert_eq!(e.message(), Some(bad));
        }
    }
}
