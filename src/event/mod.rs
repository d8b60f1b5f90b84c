//! Events: the structured, timestamped records that flow from inputs through processors to
//! outputs, with ECS field names as nested objects, and the batches that carry them.

mod ack;
pub mod json;
mod value;

pub use ack::{AckTracker, Acked, BatchAck, BatchStatus};
pub use value::{format_timestamp, Key, Map, Value};

use chrono::{DateTime, Utc};
use std::sync::Arc;

// Keys every line event carries, built once: a `const_new` key is a pointer to static text.
const TIMESTAMP: Key = Key::const_new("@timestamp");
const MESSAGE: Key = Key::const_new("message");

/// Where an event came from, precisely enough to name it again after a restart: outputs
/// derive deterministic document ids from it so that a re-sent event overwrites itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Identity of the stream (a file's fingerprint, a capture's name hash...).
    pub stream: u64,
    /// Position of the event within that stream (byte offset, packet number...).
    pub offset: u64,
}

/// Data that travels with an event but is not part of its document.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMeta {
    /// Name of the input that produced the event (what `when: { input: ... }` and routing see).
    pub input: Arc<str>,
    pub origin: Option<Origin>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The document: `@timestamp`, `message`, `log.*`...
    pub fields: Map,
    pub meta: EventMeta,
}

impl Event {
    /// An event with `@timestamp` set to `timestamp` and no other field.
    pub fn new(input: Arc<str>, timestamp: DateTime<Utc>) -> Event {
        let mut fields = Map::with_capacity(6);
        fields.push_new(TIMESTAMP, Value::Timestamp(timestamp));
        Event {
            fields,
            meta: EventMeta {
                input,
                origin: None,
            },
        }
    }

    /// An event carrying one line of text in `message`.
    pub fn from_message(input: Arc<str>, timestamp: DateTime<Utc>, message: String) -> Event {
        let mut e = Event::new(input, timestamp);
        e.fields.push_new(MESSAGE, Value::String(message));
        e
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        self.fields.get_path(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Value> {
        self.fields.get_path_mut(path)
    }

    pub fn insert(&mut self, path: &str, value: impl Into<Value>) -> Option<Value> {
        self.fields.insert_path(path, value.into())
    }

    pub fn remove(&mut self, path: &str) -> Option<Value> {
        self.fields.remove_path(path)
    }

    pub fn message(&self) -> Option<&str> {
        self.fields.get("message").and_then(Value::as_str)
    }

    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        match self.fields.get("@timestamp") {
            Some(Value::Timestamp(t)) => Some(*t),
            _ => None,
        }
    }

    /// Adds a tag to `tags` unless it is already there.
    pub fn add_tag(&mut self, tag: &str) {
        match self.fields.get_mut("tags") {
            Some(Value::Array(tags)) => {
                if !tags.iter().any(|t| t.as_str() == Some(tag)) {
                    tags.push(Value::from(tag));
                }
            }
            _ => {
                self.fields
                    .insert("tags", Value::Array(vec![Value::from(tag)]));
            }
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        matches!(self.fields.get("tags"), Some(Value::Array(t)) if t.iter().any(|v| v.as_str() == Some(tag)))
    }

    /// The document as one line of JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.fields).unwrap_or_default()
    }
}

/// A group of events from one input moving through the pipeline together, with the handle that
/// reports their delivery back to that input.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub ack: BatchAck,
}

impl Batch {
    pub fn new(events: Vec<Event>, ack: BatchAck) -> Batch {
        Batch { events, ack }
    }

    /// A batch whose input does not wait for delivery.
    pub fn unacked(events: Vec<Event>) -> Batch {
        Batch {
            events,
            ack: BatchAck::none(),
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_and_ordered() {
        let mut e = Event::from_message("t".into(), Utc::now(), "hi".into());
        e.add_tag("a");
        e.add_tag("b");
        e.add_tag("a");
        assert_eq!(
            e.get("tags").unwrap().to_json(),
            serde_json::json!(["a", "b"])
        );
        assert!(e.has_tag("b"));
        assert!(!e.has_tag("c"));
    }
}
