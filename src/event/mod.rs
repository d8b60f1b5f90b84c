//! Events: the structured, timestamped records that flow from inputs through processors to
//! outputs, with ECS field names as nested objects, and the batches that carry them.

mod ack;
mod budget;
pub mod json;
mod lines;
mod value;

pub use ack::{AckTracker, Acked, BatchAck, BatchStatus};
pub use budget::{approx_bytes, Held, InFlightBudget};
pub use lines::{BlockLine, LineBlock};
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
/// reports their delivery back to that input. A batch of lines may still be unbuilt (a
/// `LineBlock`): its events are made the first time something asks for them.
#[derive(Debug)]
pub struct Batch {
    events: Vec<Event>,
    /// Boxed: a batch moves through channels by value, and most are events.
    lines: Option<Box<LineBlock>>,
    pub ack: BatchAck,
}

impl Batch {
    pub fn new(events: Vec<Event>, ack: BatchAck) -> Batch {
        Batch {
            events,
            lines: None,
            ack,
        }
    }

    /// A batch of lines whose events are built when first needed.
    pub fn from_lines(lines: LineBlock, ack: BatchAck) -> Batch {
        Batch {
            events: Vec::new(),
            lines: Some(Box::new(lines)),
            ack,
        }
    }

    /// A batch whose input does not wait for delivery.
    pub fn unacked(events: Vec<Event>) -> Batch {
        Batch::new(events, BatchAck::none())
    }

    pub fn len(&self) -> usize {
        match &self.lines {
            Some(l) => l.len(),
            None => self.events.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input the batch came from (all its events come from one).
    pub fn input(&self) -> Option<Arc<str>> {
        match &self.lines {
            Some(l) => Some(l.input().clone()),
            None => self.events.first().map(|e| e.meta.input.clone()),
        }
    }

    /// The events, built first if the batch holds unbuilt lines.
    pub fn events_mut(&mut self) -> &mut Vec<Event> {
        if let Some(lines) = self.lines.take() {
            self.events = (*lines).into_events();
        }
        &mut self.events
    }

    /// The events (built if need be), and the batch's acknowledgement.
    pub fn into_parts(mut self) -> (Vec<Event>, BatchAck) {
        self.events_mut();
        (self.events, self.ack)
    }

    /// Gives `host` to every event without one: to the built events now, to unbuilt lines
    /// when they are built (so that a batch nobody reads fields of is never built for it).
    pub fn set_host(&mut self, host: &Value) {
        match &mut self.lines {
            Some(l) => l.set_host(host),
            None => {
                for event in self.events.iter_mut() {
                    if event.fields.get("host").is_none() {
                        event.fields.push_new("host", host.clone());
                    }
                }
            }
        }
    }

    /// The lines, while they are not built into events.
    pub fn lines(&self) -> Option<&LineBlock> {
        self.lines.as_deref()
    }

    /// A copy of the batch with its own acknowledgement (unbuilt lines stay unbuilt).
    pub fn copy_with(&self, ack: BatchAck) -> Batch {
        Batch {
            events: self.events.clone(),
            lines: self.lines.clone(),
            ack,
        }
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
