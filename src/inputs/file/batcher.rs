//! Builds the file input's events and batches of at most `batch_size` events, and remembers for
//! each batch the offset it reaches in each file (so that its acknowledgement can move the
//! registry) and about how much memory its events take (so that what is in flight is capped).

use super::identity::FileKey;
use super::reader::{Line, TailMeta};
use crate::event::{Event, EventMeta, Map, Origin, Value};
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::VecDeque;
use std::sync::Arc;

/// Heap bytes of an event besides its message and path: the event itself, its field vectors
/// and allocator rounding (measured: ~900 bytes for a 115-byte line with a 40-byte path).
const EVENT_OVERHEAD: usize = 600;

/// Events ready to send, the offsets they reach, and about how much memory they hold.
pub struct Built {
    pub events: Vec<Event>,
    pub commits: Vec<Commit>,
    pub bytes: usize,
}

/// After delivery of a batch, `key`'s offset may move to `offset` (if still on `stream`, and
/// the stream was not read again since `epoch`: see `retry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub key: FileKey,
    pub stream: u64,
    pub offset: u64,
    pub epoch: u32,
    /// Events of the batch read from this stream up to `offset`.
    pub events: u64,
}

pub struct Batcher {
    input: Arc<str>,
    batch_size: usize,
    events: Vec<Event>,
    commits: Vec<Commit>,
    bytes: usize,
    /// Full batches not sent yet: one read can hold more lines than a batch.
    sealed: VecDeque<Built>,
    /// The time of the current read, taken once per chunk.
    pub now: DateTime<Utc>,
    /// The last read time given to an event.
    last_read_time: DateTime<Utc>,
}

impl Batcher {
    pub fn new(input: Arc<str>, batch_size: usize) -> Batcher {
        Batcher {
            input,
            batch_size: batch_size.max(1),
            events: Vec::with_capacity(batch_size),
            commits: Vec::new(),
            bytes: 0,
            sealed: VecDeque::new(),
            now: Utc::now(),
            last_read_time: DateTime::<Utc>::MIN_UTC,
        }
    }

    /// `@timestamp` of a line without a time of its own: the read time, made strictly
    /// increasing at the microsecond `@timestamp` is written with. The lines of one read share
    /// one clock reading, and ids built from fields (`id_from: fields` with `message` and
    /// `@timestamp`, Filebeat's fingerprint recipe) would give identical lines one id, and one
    /// would overwrite the other. The read time stays the read time, ordered as read; it runs
    /// ahead of the clock only while one input reads over a million lines a second.
    fn read_time(&mut self) -> DateTime<Utc> {
        let now = self.now.trunc_subsecs(6);
        let next = self.last_read_time + chrono::TimeDelta::microseconds(1);
        self.last_read_time = now.max(next);
        self.last_read_time
    }

    pub fn push(&mut self, meta: &TailMeta, line: Line) {
        // Exact capacities: spare slots in a million events in flight are megabytes.
        let k8s_fields = meta.k8s.as_ref().map_or(0, |m| m.len());
        let mut fields = Map::with_capacity(3 + usize::from(line.stream.is_some()) + k8s_fields);
        self.bytes += EVENT_OVERHEAD + line.text.len() + meta.path.len();
        let timestamp = match line.time {
            Some(t) => t,
            None => self.read_time(),
        };
        fields.insert("@timestamp", Value::Timestamp(timestamp));
        fields.insert("message", Value::String(line.text));
        let mut file = Map::with_capacity(1);
        file.insert("path", Value::String(meta.path.clone()));
        let flagged = line.truncated || line.multiline;
        let mut log = Map::with_capacity(2 + usize::from(flagged));
        log.insert("file", Value::Object(file));
        log.insert("offset", Value::Int(line.start as i64));
        if flagged {
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
            Some(c) if c.key == meta.key && c.stream == meta.stream && c.epoch == meta.epoch => {
                c.offset = c.offset.max(line.end);
                c.events += 1;
            }
            _ => self.commits.push(Commit {
                key: meta.key,
                stream: meta.stream,
                offset: line.end,
                epoch: meta.epoch,
                events: 1,
            }),
        }
        if self.events.len() >= self.batch_size {
            let full = self.take_current();
            self.sealed.push_back(full);
        }
    }

    fn take_current(&mut self) -> Built {
        Built {
            events: std::mem::replace(&mut self.events, Vec::with_capacity(self.batch_size)),
            commits: std::mem::take(&mut self.commits),
            bytes: std::mem::take(&mut self.bytes),
        }
    }

    /// The next full batch, oldest first.
    pub fn take_full(&mut self) -> Option<Built> {
        self.sealed.pop_front()
    }

    /// The next batch, full or not, oldest first.
    pub fn take_any(&mut self) -> Option<Built> {
        if let Some(b) = self.sealed.pop_front() {
            return Some(b);
        }
        if self.events.is_empty() {
            return None;
        }
        Some(self.take_current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_large_read_becomes_several_batches_each_with_its_own_offsets() {
        let meta = TailMeta {
            key: FileKey { dev: 1, ino: 2 },
            stream: 7,
            epoch: 0,
            path: "/var/log/app.log".into(),
            k8s: None,
        };
        let mut b = Batcher::new("f".into(), 100);
        for i in 0..250u64 {
            let line = Line {
                text: format!("line {i}"),
                start: i * 10,
                end: i * 10 + 10,
                ..Default::default()
            };
            b.push(&meta, line);
        }
        let first = b.take_full().expect("a full batch");
        let second = b.take_full().expect("a second full batch");
        assert!(b.take_full().is_none(), "the rest is not a full batch");
        let rest = b.take_any().expect("the partial batch");
        assert!(b.take_any().is_none());
        assert_eq!(
            [first.events.len(), second.events.len(), rest.events.len()],
            [100, 100, 50]
        );
        let offsets = |x: &Built| x.commits.iter().map(|c| c.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&first), [1000]);
        assert_eq!(offsets(&second), [2000]);
        assert_eq!(offsets(&rest), [2500]);
        assert!(first.bytes > 100 * EVENT_OVERHEAD && second.bytes > 100 * EVENT_OVERHEAD);
    }
}
