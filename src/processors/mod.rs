//! Processors: synchronous steps applied in order to every event (or, with `when:`, to those
//! that match). A processor edits the event in place and says whether to keep it.
//! Every processor type is registered in `build` below, and nowhere else.

pub mod condition;
pub mod convert;
pub mod dissect;
pub mod fields;
pub mod json;
pub mod key_value;
pub mod kubernetes;
pub mod redact;
pub mod regex;
pub mod syslog;
pub mod throttle;
pub mod timestamp;

use crate::config::{from_node, ComponentSpec, DeError};
use crate::event::Event;
use crate::inputs::BuildContext;
use crate::telemetry::metrics::Collector;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What happens to an event after a processor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

pub trait Processor: Send {
    fn process(&mut self, event: &mut Event) -> Verdict;

    /// A copy for another worker thread of the pipeline (`pipeline.workers`), sharing this
    /// one's counters. `None` for a processor whose state spans events (a cache fed by a
    /// watcher): a chain holding one runs on a single thread.
    fn fork(&self) -> Option<Box<dyn Processor>> {
        None
    }
}

/// Builds a processor from its spec: the one place where processor types are registered.
pub fn build(spec: &ComponentSpec, ctx: &BuildContext) -> Result<Box<dyn Processor>, DeError> {
    let (node, path) = (&spec.node, spec.path.as_str());
    let failures = || Failures::register(ctx, spec);
    match spec.type_name.as_str() {
        "add_tags" => Ok(Box::new(fields::AddTags::new(from_node(node, path)?))),
        "add_fields" => {
            let config: fields::AddFieldsConfig = from_node(node, path)?;
            for k in config.fields.keys() {
                writable_field(&target_path(config.target.as_deref(), k)).map_err(|why| {
                    let at = node
                        .get("fields")
                        .and_then(|f| f.key_node(k))
                        .map_or(spec.mark, |n| n.mark);
                    DeError::new(why, at, &format!("{path}.fields"))
                })?;
            }
            Ok(Box::new(fields::AddFields::new(config)))
        }
        "rename" => {
            let config: fields::RenameConfig = from_node(node, path)?;
            for (i, pair) in config.fields.iter().enumerate() {
                for (key, field) in [("from", &pair.from), ("to", &pair.to)] {
                    writable_field(field).map_err(|why| {
                        let at = match node.get("fields").map(|f| &f.kind) {
                            Some(crate::config::NodeKind::Seq(items)) => items
                                .get(i)
                                .and_then(|n| n.get(key))
                                .map_or(spec.mark, |n| n.mark),
                            _ => spec.mark,
                        };
                        let why = if key == "from" && why.contains("`@timestamp`") {
                            "`@timestamp` cannot be moved away: every event has one; copy its value with the `timestamp` processor's target instead".to_owned()
                        } else {
                            why
                        };
                        DeError::new(why, at, &format!("{path}.fields[{i}].{key}"))
                    })?;
                }
            }
            Ok(Box::new(fields::Rename::new(config, failures())))
        }
        "remove" => Ok(Box::new(fields::Remove::new(from_node(node, path)?, spec)?)),
        "drop" => Ok(Box::new(fields::Drop::new(from_node(node, path)?))),
        "regex" => Ok(Box::new(regex::RegexParser::new(
            from_node(node, path)?,
            spec,
            failures(),
        )?)),
        "dissect" => Ok(Box::new(dissect::Dissect::new(
            from_node(node, path)?,
            spec,
            failures(),
        )?)),
        "json" => Ok(Box::new(json::Json::new(
            from_node(node, path)?,
            failures(),
        ))),
        "key_value" => Ok(Box::new(key_value::KeyValue::new(
            from_node(node, path)?,
            spec,
            failures(),
        )?)),
        "syslog" => Ok(Box::new(syslog::Syslog::new(
            from_node(node, path)?,
            spec,
            failures(),
        )?)),
        "redact" => Ok(Box::new(redact::Redact::new(
            from_node(node, path)?,
            spec,
            ctx,
        )?)),
        "throttle" => Ok(Box::new(throttle::Throttle::new(
            from_node(node, path)?,
            spec,
        )?)),
        "timestamp" => Ok(Box::new(timestamp::Timestamp::new(
            from_node(node, path)?,
            spec,
            failures(),
        )?)),
        "kubernetes" => Ok(Box::new(kubernetes::Kubernetes::new(
            from_node(node, path)?,
            spec,
            ctx,
        )?)),
        "kubernetes_parser" => Ok(Box::new(kubernetes::parser::KubernetesParser::new(
            spec, ctx,
        )?)),
        other => Err(crate::inputs::unknown_type(spec, other, TYPES)),
    }
}

/// The processor types `build` knows.
pub const TYPES: &[&str] = &[
    "add_tags",
    "add_fields",
    "rename",
    "remove",
    "drop",
    "regex",
    "dissect",
    "json",
    "key_value",
    "syslog",
    "redact",
    "throttle",
    "timestamp",
    "kubernetes",
    "kubernetes_parser",
];

/// The field parsers read unless told otherwise.
fn default_field() -> String {
    "message".to_owned()
}

/// Refuses a field path a processor would write that has an empty part (`a..b`, `.a`, `a.`:
/// the event would get a key named ``), or that is `@timestamp` or inside it: every event has
/// one, a timestamp, which outputs index by; text or an object there breaks that. The
/// `timestamp` processor is the one that sets it.
pub(crate) fn writable_field(path: &str) -> Result<(), String> {
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "`{path}` has an empty part between dots: expected a field name, or names joined by single dots (`http.request.method`)"
        ));
    }
    if path == "@timestamp" || path.starts_with("@timestamp.") {
        Err(format!(
            "`{path}` would overwrite `@timestamp`, which must stay the event's time: parse a time into it with the `timestamp` processor, or choose another field"
        ))
    } else {
        Ok(())
    }
}

/// The full path of `key` under `target` (`None`: the event's root).
pub(crate) fn target_path(target: Option<&str>, key: &str) -> String {
    match target {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    }
}

/// Which side of parsed values to trim (`trim_values`), for parsers whose patterns cannot say it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trim {
    #[default]
    None,
    Left,
    Right,
    All,
}

impl Trim {
    pub fn apply<'a>(self, s: &'a str, chars: &[char]) -> &'a str {
        match self {
            Trim::None => s,
            Trim::Left => s.trim_start_matches(chars),
            Trim::Right => s.trim_end_matches(chars),
            Trim::All => s.trim_matches(chars),
        }
    }
}

fn default_trim_chars() -> String {
    " ".to_owned()
}

/// A dotted field path split once at build time, so that writing it costs no parsing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldPath {
    parents: Vec<crate::event::Key>,
    leaf: crate::event::Key,
}

impl FieldPath {
    pub fn new(path: &str) -> FieldPath {
        let mut parts: Vec<crate::event::Key> =
            path.split('.').map(crate::event::Key::from).collect();
        let leaf = parts.pop().unwrap_or_default();
        FieldPath {
            parents: parts,
            leaf,
        }
    }

    /// Inserts like `Event::insert` (intermediate objects created, a scalar in the way replaced).
    pub fn insert(&self, event: &mut Event, value: crate::event::Value) {
        let mut map = &mut event.fields;
        for p in &self.parents {
            map = map.object_mut(p);
        }
        map.insert(self.leaf.clone(), value);
    }
}

/// A text value or a list of them, as users write either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Counts the events a processor could not handle (no match, invalid JSON...) as
/// `trawl_processor_failures_total`, and logs the first one with its context.
pub struct Failures {
    component: String,
    type_name: String,
    count: AtomicU64,
    logged: AtomicBool,
}

impl Failures {
    pub fn register(ctx: &BuildContext, spec: &ComponentSpec) -> Arc<Failures> {
        let f = Arc::new(Failures::new(&spec.name, &spec.type_name));
        ctx.registry.register(f.clone());
        f
    }

    pub fn new(component: &str, type_name: &str) -> Failures {
        Failures {
            component: component.to_owned(),
            type_name: type_name.to_owned(),
            count: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    /// Counts one failure; the first is logged (later ones only counted, to keep logs calm).
    pub fn record(&self, what: &dyn std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(processor = %self.component, r#type = %self.type_name, "{what} (further failures are only counted in trawl_processor_failures_total)");
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records one failure and tags the event, which goes on as it was.
    pub fn tag(&self, event: &mut Event, tag: &str, what: &dyn std::fmt::Display) {
        self.record(what);
        event.add_tag(tag);
    }

    /// The field a parser reads is absent or holds no text: a failure, unless the parser was
    /// told to ignore a missing field.
    pub fn not_text(&self, event: &mut Event, field: &str, ignore_missing: bool, tag: &str) {
        if !ignore_missing {
            self.tag(
                event,
                tag,
                &format_args!("field `{field}` is missing or not text"),
            );
        }
    }
}

impl Collector for Failures {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP trawl_processor_failures_total Events a processor could not handle (no match, invalid JSON...).\n# TYPE trawl_processor_failures_total counter\ntrawl_processor_failures_total{{component=\"{}\",component_type=\"{}\"}} {}",
            self.component,
            self.type_name,
            self.count()
        );
    }
}

/// Takes the text of `field` out of the event so that a parser can read it while writing
/// other fields, without copying it; `restore_text` puts it back.
pub(crate) fn take_text(event: &mut Event, field: &str) -> Option<(String, TakenFrom)> {
    // A field at the root (`message`, nearly always) is put back by its place: one look-up
    // per event rather than two.
    let at_root = (!field.contains('.'))
        .then(|| event.fields.position(field))
        .flatten();
    let value = match at_root {
        Some(i) => event.fields.value_at_mut(i),
        None => event.get_mut(field),
    };
    match value {
        Some(crate::event::Value::String(s)) => Some((std::mem::take(s), TakenFrom(at_root))),
        _ => None,
    }
}

/// Where `take_text` took a field's text from: its place at the event's root, if there. The
/// parser only adds or replaces fields until the text is back, so that place stays its own.
#[derive(Clone, Copy)]
pub(crate) struct TakenFrom(Option<usize>);

/// Puts back what `take_text` took (before the parser writes its results, which may replace it).
pub(crate) fn restore_text(event: &mut Event, field: &str, from: TakenFrom, text: String) {
    let value = match from.0 {
        Some(i) => event.fields.value_at_mut(i),
        None => event.get_mut(field),
    };
    if let Some(crate::event::Value::String(s)) = value {
        *s = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    #[test]
    fn failures_are_counted_and_rendered() {
        let f = Failures::new("parse", "regex");
        f.record(&"no pattern matches");
        f.record(&"no pattern matches");
        let mut out = String::new();
        f.render(&mut out);
        assert!(
            out.contains(
                "trawl_processor_failures_total{component=\"parse\",component_type=\"regex\"} 2"
            ),
            "{out}"
        );
    }

    #[test]
    fn field_paths_nest_like_event_insert() {
        let mut e = test_support::event("m");
        FieldPath::new("a.b.c").insert(&mut e, Value::Int(1));
        FieldPath::new("a.d").insert(&mut e, Value::Int(2));
        FieldPath::new("message").insert(&mut e, Value::from("x"));
        assert_eq!(
            test_support::json(&e)["a"],
            serde_json::json!({"b": {"c": 1}, "d": 2})
        );
        assert_eq!(e.message(), Some("x"));
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::config::{node::parse, ComponentSpec, Mark};
    use crate::event::Event;
    use crate::inputs::BuildContext;
    use chrono::Utc;

    /// Builds a processor from YAML (`type: ...` included), as the pipeline would.
    pub fn build(yaml: &str) -> Result<Box<dyn super::Processor>, crate::config::DeError> {
        let node = parse(yaml).expect("test yaml");
        let type_name = node
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_owned();
        let spec = ComponentSpec {
            file: "p.yaml".into(),
            name: "#0".into(),
            type_name,
            node: node.without_keys(&["type"]),
            path: "processors[0]".into(),
            mark: Mark { line: 1, col: 1 },
            type_mark: Mark { line: 1, col: 1 },
        };
        let ctx = BuildContext {
            data_dir: std::env::temp_dir(),
            registry: crate::telemetry::metrics::Registry::new(),
            endpoints: Default::default(),
        };
        super::build(&spec, &ctx)
    }

    pub fn event(message: &str) -> Event {
        Event::from_message("app".into(), Utc::now(), message.into())
    }

    pub fn json(e: &Event) -> serde_json::Value {
        serde_json::to_value(&e.fields).expect("serializable")
    }

    /// Asserts that `yaml` is refused at the key `at`, with a message that says `says`.
    pub fn assert_refused(yaml: &str, at: &str, says: &str) {
        let err = build(yaml).err().expect(yaml);
        assert_eq!(err.path.as_deref(), Some(at), "{yaml}: {err}");
        assert!(err.to_string().contains(says), "{yaml}: {err}");
    }
}
