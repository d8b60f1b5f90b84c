//! Field and tag processors: `add_fields`, `add_tags`, `rename`, `remove`, and `drop`, which
//! drops the whole event (usually with `when:`).

use super::{Failures, Processor, Verdict};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTagsConfig {
    /// Tags appended to `tags` (each once).
    pub tags: Vec<String>,
}

#[derive(Clone)]
pub struct AddTags {
    tags: Vec<String>,
}

impl AddTags {
    pub fn new(config: AddTagsConfig) -> AddTags {
        AddTags { tags: config.tags }
    }
}

impl Processor for AddTags {
    fn process(&mut self, event: &mut Event) -> Verdict {
        for t in &self.tags {
            event.add_tag(t);
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFieldsConfig {
    /// Fields to set: dotted names nest; values may be text, numbers, booleans, lists or maps.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Object the fields go under; absent: the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// Replace fields that already exist (otherwise they are left as they are).
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone)]
pub struct AddFields {
    fields: Vec<(String, Value)>,
    overwrite: bool,
}

impl AddFields {
    pub fn new(config: AddFieldsConfig) -> AddFields {
        let fields = config
            .fields
            .into_iter()
            .map(|(k, v)| {
                (
                    super::target_path(config.target.as_deref(), &k),
                    Value::from_json(v),
                )
            })
            .collect();
        AddFields {
            fields,
            overwrite: config.overwrite,
        }
    }
}

impl Processor for AddFields {
    fn process(&mut self, event: &mut Event) -> Verdict {
        for (path, value) in &self.fields {
            if self.overwrite || event.get(path).is_none() {
                event.insert(path, value.clone());
            }
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Pairs `{from: a.b, to: c}`, applied in order.
    pub fields: Vec<RenamePair>,
    /// A missing `from` field is not a failure.
    #[serde(default)]
    pub ignore_missing: bool,
    /// Tag added when a `from` field is missing or a `to` field already exists.
    #[serde(default = "default_rename_tag")]
    pub tag_on_failure: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenamePair {
    pub from: String,
    pub to: String,
}

fn default_rename_tag() -> String {
    "_rename_failure".to_owned()
}

#[derive(Clone)]
pub struct Rename {
    config: RenameConfig,
    failures: Arc<Failures>,
}

impl Rename {
    pub fn new(config: RenameConfig, failures: Arc<Failures>) -> Rename {
        Rename { config, failures }
    }
}

impl Processor for Rename {
    fn process(&mut self, event: &mut Event) -> Verdict {
        for pair in &self.config.fields {
            // As in Beats, an existing destination is not overwritten: that would lose data.
            if event.get(&pair.to).is_some() {
                self.failures.record(&format_args!(
                    "cannot rename `{}`: `{}` already exists",
                    pair.from, pair.to
                ));
                event.add_tag(&self.config.tag_on_failure);
                continue;
            }
            match event.remove(&pair.from) {
                Some(v) => {
                    event.insert(&pair.to, v);
                }
                None if self.config.ignore_missing => {}
                None => {
                    self.failures.record(&format_args!(
                        "cannot rename `{}`: the field is missing",
                        pair.from
                    ));
                    event.add_tag(&self.config.tag_on_failure);
                }
            }
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    /// Fields removed (with everything under them); missing ones are skipped.
    pub fields: Vec<String>,
}

#[derive(Clone)]
pub struct Remove {
    fields: Vec<String>,
}

impl Remove {
    pub fn new(config: RemoveConfig, spec: &ComponentSpec) -> Result<Remove, DeError> {
        if config.fields.iter().any(|f| f == "@timestamp") {
            return Err(DeError::new(
                "`@timestamp` cannot be removed: every event has one",
                spec.mark,
                &format!("{}.fields", spec.path),
            ));
        }
        Ok(Remove {
            fields: config.fields,
        })
    }
}

impl Processor for Remove {
    fn process(&mut self, event: &mut Event) -> Verdict {
        for f in &self.fields {
            event.remove(f);
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

/// `drop` takes no keys (only `when:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {}

#[derive(Clone)]
pub struct Drop;

impl Drop {
    pub fn new(_config: DropConfig) -> Drop {
        Drop
    }
}

impl Processor for Drop {
    fn process(&mut self, _event: &mut Event) -> Verdict {
        Verdict::Drop
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::{build, event, json};
    use serde_json::json;

    #[test]
    fn add_fields_nests_and_respects_overwrite() {
        let mut p = build(
            "{type: add_fields, target: project, fields: {name: shop, id: 7, labels.team: web}}",
        )
        .unwrap();
        let mut e = event("m");
        p.process(&mut e);
        assert_eq!(
            json(&e)["project"],
            json!({"id": 7, "labels": {"team": "web"}, "name": "shop"})
        );
        let mut p =
            build("{type: add_fields, overwrite: false, fields: {message: other, env: prod}}")
                .unwrap();
        let mut e = event("m");
        p.process(&mut e);
        assert_eq!(json(&e)["message"], "m");
        assert_eq!(json(&e)["env"], "prod");
    }

    #[test]
    fn add_tags_appends_once() {
        let mut p = build("{type: add_tags, tags: [k8s-beat, web]}").unwrap();
        let mut e = event("m");
        e.add_tag("web");
        p.process(&mut e);
        assert_eq!(json(&e)["tags"], json!(["web", "k8s-beat"]));
    }

    #[test]
    fn rename_moves_and_refuses_to_clobber() {
        let mut p = build("{type: rename, fields: [{from: a.b, to: c.d}, {from: x, to: message}, {from: gone, to: y}]}").unwrap();
        let mut e = event("m");
        e.insert("a.b", 1i64);
        e.insert("x", 2i64);
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["c"]["d"], 1);
        assert!(j["a"].get("b").is_none());
        assert_eq!(j["x"], 2);
        assert_eq!(j["message"], "m");
        assert!(e.has_tag("_rename_failure"));
        let mut p =
            build("{type: rename, ignore_missing: true, fields: [{from: gone, to: y}]}").unwrap();
        let mut e = event("m");
        p.process(&mut e);
        assert!(!e.has_tag("_rename_failure"));
    }

    #[test]
    fn remove_and_drop() {
        let mut p = build("{type: remove, fields: [message, nope, a.b]}").unwrap();
        let mut e = event("m");
        e.insert("a.b", 1i64);
        e.insert("a.c", 2i64);
        p.process(&mut e);
        assert!(e.get("message").is_none());
        assert_eq!(json(&e)["a"], json!({"c": 2}));
        assert!(build("{type: remove, fields: ['@timestamp']}").is_err());
        let mut p = build("{type: drop}").unwrap();
        assert_eq!(p.process(&mut event("m")), Verdict::Drop);
        assert!(build("{type: drop, why: x}").is_err());
    }
}
