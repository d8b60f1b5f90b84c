//! Builds the file input's events and batches, and remembers for each batch the offset it
//! reaches in each file, so that its acknowledgement can move the registry.

use super::identity::FileKey;
use super::reader::{Line, TailMeta};
use crate::event::{Event, EventMeta, Map, Origin, Value};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// After delivery of a batch, `key`'s offset may move to `offset` (if still on `stream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub key: FileKey,
    pub stream: u64,
    pub offset: u64,
}

pub struct Batcher {
    input: Arc<str>,
    batch_size: usize,
    events: Vec<Event>,
    commits: Vec<Commit>,
    /// `@timestamp` of plain lines: the time of the read, taken once per chunk.
    pub now: DateTime<Utc>,
}

impl Batcher {
    pub fn new(input: Arc<str>, batch_size: usize) -> Batcher {
        Batcher {
            input,
            batch_size: batch_size.max(1),
            events: Vec::with_capacity(batch_size),
            commits: Vec::new(),
            now: Utc::now(),
        }
    }

    pub fn push(&mut self, meta: &TailMeta, line: Line) {
        let mut fields = Map::with_capacity(6);
        fields.insert(
            "@timestamp",
            Value::Timestamp(line.time.unwrap_or(self.now)),
        );
        fields.insert("message", Value::String(line.text));
        let mut file = Map::with_capacity(1);
        file.insert("path", Value::String(meta.path.clone()));
        let mut log = Map::with_capacity(3);
        log.insert("file", Value::Object(file));
        log.insert("offset", Value::Int(line.start as i64));
        if line.truncated || line.multiline {
            let mut flags = Vec::with_capacity(2);
            if line.multiline {
                flags.push(Value::from("multiline"));
            }
            if line.truncated {
                flags.push(Value::from("truncated"));
            }
            log.insert("flags", Value::Array(flags));
        }
        fields.insert("log", Value::Object(log));
        if let Some(s) = line.stream {
            fields.insert("stream", Value::from(s));
        }
        if let Some(k8s) = &meta.k8s {
            for (k, v) in k8s.iter() {
                fields.insert(k.clone(), v.clone());
            }
        }
        self.events.push(Event {
            fields,
            meta: EventMeta {
                input: self.input.clone(),
                origin: Some(Origin {
                    stream: meta.stream,
                    offset: line.start,
                }),
            },
        });
        match self.commits.last_mut() {
            Some(c) if c.key == meta.key && c.stream == meta.stream => {
                c.offset = c.offset.max(line.end)
            }
            _ => self.commits.push(Commit {
                key: meta.key,
                stream: meta.stream,
                offset: line.end,
            }),
        }
    }

    pub fn is_full(&self) -> bool {
        self.events.len() >= self.batch_size
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The batch so far and the offsets it reaches.
    pub fn take(&mut self) -> (Vec<Event>, Vec<Commit>) {
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(self.batch_size));
        let commits = std::mem::take(&mut self.commits);
        (events, commits)
    }
}
