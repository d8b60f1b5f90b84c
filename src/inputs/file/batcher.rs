//! Builds the file input's events and batches of at most `batch_size` events, and remembers for
//! each batch the offset it reaches in each file (so that its acknowledgement can move the
//! registry) and about how much memory its events take (so that what is in flight is capped).

use super::identity::FileKey;
use super::reader::{Line, TailMeta};
use crate::event::{BlockLine, LineBlock};
use crate::inputs::lines::LineInfo;
use chrono::{DateTime, SubsecRound, Timelike, Utc};
use std::collections::VecDeque;
use std::sync::Arc;

/// Heap bytes of an event besides its message and path: the event itself, its field vectors
/// and allocator rounding (measured: ~900 bytes for a 115-byte line with a 40-byte path, when
/// each event had its own copy of the path; it is shared now, and still counted, as the
/// README's `max_in_flight` figures say).
const EVENT_OVERHEAD: usize = 600;

/// Most text reserved ahead for a batch (see `take_current`).
const TEXT_RESERVE_MAX: usize = 1 << 20;

/// Lines ready to send (their events unbuilt), the offsets they reach, and about how much
/// memory their events will hold.
pub struct Built {
    pub lines: LineBlock,
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
    lines: LineBlock,
    commits: Vec<Commit>,
    bytes: usize,
    /// Full batches not sent yet: one read can hold more lines than a batch.
    sealed: VecDeque<Built>,
    /// The time of the current read, taken once per chunk.
    pub now: DateTime<Utc>,
    /// `now` when it was last truncated to the microsecond, and that truncation.
    now_seen: DateTime<Utc>,
    now_micros: DateTime<Utc>,
    /// The last read time given to an event.
    last_read_time: DateTime<Utc>,
    /// Lines pushed flagged partial since the reader last took the count (for `/metrics`).
    pub partial_lines: u64,
}

impl Batcher {
    pub fn new(input: Arc<str>, batch_size: usize) -> Batcher {
        Batcher {
            input: input.clone(),
            batch_size: batch_size.max(1),
            lines: LineBlock::with_capacity(input.clone(), batch_size.max(1), 0),
            commits: Vec::new(),
            bytes: 0,
            sealed: VecDeque::new(),
            now: Utc::now(),
            now_seen: DateTime::<Utc>::MIN_UTC,
            now_micros: DateTime::<Utc>::MIN_UTC,
            last_read_time: DateTime::<Utc>::MIN_UTC,
            partial_lines: 0,
        }
    }

    /// `@timestamp` of a line without a time of its own: the read time, made strictly
    /// increasing at the microsecond `@timestamp` is written with. The lines of one read share
    /// one clock reading, and ids built from fields (`id_from: fields` with `message` and
    /// `@timestamp`, Filebeat's fingerprint recipe) would give identical lines one id, and one
    /// would overwrite the other. The read time stays the read time, ordered as read; it runs
    /// ahead of the clock only while one input reads over a million lines a second.
    fn read_time(&mut self) -> DateTime<Utc> {
        // Per line only the step of one microsecond, done on the naive time within its second:
        // chrono's checked arithmetic and truncation took ~190 instructions a line.
        if self.now != self.now_seen {
            self.now_seen = self.now;
            self.now_micros = self.now.trunc_subsecs(6);
        }
        let last = self.last_read_time.naive_utc();
        let nanos = last.nanosecond();
        let next = Some(nanos)
            .filter(|n| *n < 999_999_000)
            .and_then(|n| last.with_nanosecond(n + 1000))
            .map(|t| t.and_utc())
            .unwrap_or_else(|| self.last_read_time + chrono::TimeDelta::microseconds(1));
        self.last_read_time = self.now_micros.max(next);
        self.last_read_time
    }

    pub fn push(&mut self, meta: &TailMeta, line: Line) {
        self.push_also(meta, line, None);
    }

    /// `push`, and in the same batch `also` moves another file's offset (a line joined from
    /// two files: its delivery must move both, or a restart reads a part of it alone again).
    pub fn push_also(&mut self, meta: &TailMeta, line: Line, also: Option<(&TailMeta, u64)>) {
        self.bytes += EVENT_OVERHEAD + line.text.len() + meta.path().len();
        let timestamp = match line.time {
            Some(t) => t,
            None => self.read_time(),
        };
        let mut block_line = BlockLine::new(
            line.start,
            timestamp,
            line.stream,
            line.truncated,
            line.multiline,
        );
        block_line.partial = line.partial;
        self.partial_lines += u64::from(line.partial);
        let (stream, file, k8s) = (Some(meta.stream), Some(meta.log_file()), meta.k8s.as_ref());
        self.lines.push(stream, file, k8s, &line.text, block_line);
        self.note(meta, line.end, 1);
        if let Some((other, end)) = also {
            self.note(other, end, 0);
        }
        self.seal_if_full();
    }

    /// `push` for a plain line still in bytes (no container record, nothing joined); true when
    /// invalid UTF-8 was replaced.
    pub fn push_bytes(&mut self, meta: &TailMeta, bytes: &[u8], info: LineInfo) -> bool {
        self.bytes += EVENT_OVERHEAD + bytes.len() + meta.path().len();
        let timestamp = self.read_time();
        let block_line = BlockLine::new(info.start, timestamp, None, info.truncated, false);
        let (stream, file, k8s) = (Some(meta.stream), Some(meta.log_file()), meta.k8s.as_ref());
        let replaced = self.lines.push_bytes(stream, file, k8s, bytes, block_line);
        self.note(meta, info.end, 1);
        self.seal_if_full();
        replaced
    }

    /// Moves the batch's offset for `meta`'s stream to `end`, counting `events` read up to it.
    fn note(&mut self, meta: &TailMeta, end: u64, events: u64) {
        match self.commits.last_mut() {
            Some(c) if c.key == meta.key && c.stream == meta.stream && c.epoch == meta.epoch => {
                c.offset = c.offset.max(end);
                c.events += events;
            }
            _ => self.commits.push(Commit {
                key: meta.key,
                stream: meta.stream,
                offset: end,
                epoch: meta.epoch,
                events,
            }),
        }
    }

    fn seal_if_full(&mut self) {
        if self.lines.len() >= self.batch_size {
            let full = self.take_current();
            self.sealed.push_back(full);
        }
    }

    fn take_current(&mut self) -> Built {
        // The next batch's text buffer is sized like this one's (within reason): grown line by
        // line, it was copied a dozen times over.
        let text = self.lines.text_len().min(TEXT_RESERVE_MAX);
        Built {
            lines: std::mem::replace(
                &mut self.lines,
                LineBlock::with_capacity(self.input.clone(), self.batch_size, text),
            ),
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
        if self.lines.is_empty() {
            return None;
        }
        Some(self.take_current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    #[test]
    fn one_large_read_becomes_several_batches_each_with_its_own_offsets() {
        let meta = TailMeta::new(
            FileKey { dev: 1, ino: 2 },
            7,
            0,
            "/var/log/app.log".into(),
            None,
        );
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
            [first.lines.len(), second.lines.len(), rest.lines.len()],
            [100, 100, 50]
        );
        let offsets = |x: &Built| x.commits.iter().map(|c| c.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&first), [1000]);
        assert_eq!(offsets(&second), [2000]);
        assert_eq!(offsets(&rest), [2500]);
        assert!(first.bytes > 100 * EVENT_OVERHEAD && second.bytes > 100 * EVENT_OVERHEAD);
    }

    /// Lines without a time of their own get the read time, strictly increasing at the
    /// microsecond `@timestamp` is written with: across a second's end, when the clock steps
    /// back, and back to the clock once it is ahead again.
    #[test]
    fn read_times_increase_by_the_microsecond_across_seconds_and_clock_steps() {
        let meta = TailMeta::new(
            FileKey { dev: 1, ino: 2 },
            7,
            0,
            "/var/log/app.log".into(),
            None,
        );
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let mut b = Batcher::new("f".into(), 100);
        let read = |b: &mut Batcher, now: &str, lines: usize| {
            b.now = at(now);
            for i in 0..lines {
                let line = Line {
                    text: format!("line {i}"),
                    ..Default::default()
                };
                b.push(&meta, line);
            }
        };
        read(&mut b, "2026-11-23T11:18:01.999998700Z", 3);
        read(&mut b, "2026-11-23T11:18:01.500000000Z", 1); // the clock stepped back
        read(&mut b, "2026-11-23T11:18:05.000000900Z", 2);
        let built = b.take_any().expect("a batch");
        let times: Vec<String> = built
            .lines
            .into_events()
            .iter()
            .map(|e| {
                e.fields
                    .get("@timestamp")
                    .and_then(Value::to_text)
                    .expect("time")
                    .into_owned()
            })
            .collect();
        assert_eq!(
            times,
            [
                "2026-11-23T11:18:01.999998Z",
                "2026-11-23T11:18:01.999999Z",
                "2026-11-23T11:18:02.000000Z",
                "2026-11-23T11:18:02.000001Z",
                "2026-11-23T11:18:05.000000Z",
                "2026-11-23T11:18:05.000001Z",
            ]
        );
    }
}
