//! Per-entry bookkeeping of the journald input: which entries are read and not yet
//! acknowledged (so the saved cursor never passes an entry that `multiline` still holds or an
//! output has not taken), and the joiners that build one event from several entries.

use super::entry::Entry;
use crate::event::{Event, Value};
use crate::inputs::multiline::{self, Line, Multiline};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Every entry read in this session and not yet committed, in journal order. The cursor that
/// may be saved is that of the last entry of the longest acknowledged prefix: an entry held by
/// a joiner, or in a batch not yet acknowledged, stops it, so a crash re-reads that whole
/// event.
#[derive(Default)]
pub struct Ledger {
    /// Sequence number of the first slot.
    base: u64,
    /// (cursor, acknowledged) of each entry from `base` on.
    slots: VecDeque<(String, bool)>,
}

impl Ledger {
    /// Records an entry read; returns its sequence number.
    pub fn push(&mut self, cursor: String) -> u64 {
        self.slots.push_back((cursor, false));
        self.base + self.slots.len() as u64 - 1
    }

    /// Marks an entry acknowledged (delivered, or rejected for good).
    pub fn done(&mut self, seq: u64) {
        if let Some(slot) = seq
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get_mut(i))
        {
            slot.1 = true;
        }
    }

    /// Drops the acknowledged prefix; returns the cursor of its last entry, if it moved.
    pub fn advance(&mut self) -> Option<String> {
        let mut last = None;
        while self.slots.front().is_some_and(|s| s.1) {
            last = self.slots.pop_front().map(|s| s.0);
            self.base += 1;
        }
        last
    }

    /// Entries read and not yet committed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

/// An event ready to send, with the sequence numbers of the entries it was built from.
pub struct Joined {
    pub event: Event,
    pub entries: Vec<u64>,
}

struct Joiner {
    multiline: Multiline,
    /// Entries the joiner holds, oldest first; only the first of an event keeps its event
    /// (its fields are the joined event's).
    held: VecDeque<(u64, Option<Event>)>,
}

/// One `multiline` joiner per source, each holding only the entries of its pending event.
pub struct Joiners {
    input: std::sync::Arc<str>,
    proto: Multiline,
    by_source: HashMap<String, Joiner>,
    /// The most sources joined at once (`max_joined_sources`); a new one beyond sends the
    /// event held longest.
    max_sources: usize,
}

impl Joiners {
    pub fn new(input: std::sync::Arc<str>, proto: Multiline, max_sources: usize) -> Joiners {
        Joiners {
            input,
            proto,
            by_source: HashMap::new(),
            max_sources,
        }
    }

    /// Feeds one entry (sequence `seq`); events it completes go to `out`.
    pub fn push(&mut self, entry: Entry, seq: u64, now: Instant, out: &mut Vec<Joined>) {
        if !self.by_source.contains_key(&entry.source) && self.by_source.len() >= self.max_sources {
            // Entries read in one chunk share one `now`, so deadlines tie; the entry sequence
            // then says which source was fed longest ago (a map's order is random: the event
            // sent was a coin toss under load).
            let oldest = self
                .by_source
                .iter()
                .min_by_key(|(_, j)| (j.multiline.deadline(), j.held.back().map(|h| h.0)))
                .map(|(k, _)| k.clone());
            if let Some(j) = oldest.and_then(|k| self.by_source.remove(&k)) {
                finish(j, &self.input, out);
            }
        }
        let source = entry.source;
        let mut event = entry.event;
        let text = match event.remove("message") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let joiner = self
            .by_source
            .entry(source.clone())
            .or_insert_with(|| Joiner {
                multiline: self.proto.clone(),
                held: VecDeque::new(),
            });
        joiner.held.push_back((seq, Some(event)));
        let line = Line {
            text,
            start: seq,
            end: seq,
            ..Line::default()
        };
        let Joiner { multiline, held } = joiner;
        let input = &self.input;
        multiline.push(line, now, &mut |l| out.push(take(held, l, input)));
        // An entry appended to the event being joined needs only its sequence number.
        if multiline.pending_start() != Some(seq) {
            if let Some(last) = held.back_mut().filter(|h| h.0 == seq) {
                last.1 = None;
            }
        }
        if held.is_empty() {
            self.by_source.remove(&source);
        }
    }

    /// Sends every event that waited `timeout` for a line.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Joined>) {
        let input = &self.input;
        self.by_source.retain(|_, j| {
            let Joiner { multiline, held } = j;
            multiline.flush_if_due(now, &mut |l| out.push(take(held, l, input)));
            !held.is_empty()
        });
    }

    /// The earliest time a held event is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.by_source
            .values()
            .filter_map(|j| j.multiline.deadline())
            .min()
    }
}

fn finish(mut j: Joiner, input: &std::sync::Arc<str>, out: &mut Vec<Joined>) {
    let Joiner { multiline, held } = &mut j;
    multiline.flush(&mut |l| out.push(take(held, l, input)));
}

/// The event the joiner completed as `line`: the fields of its first entry, the joined text.
fn take(
    held: &mut VecDeque<(u64, Option<Event>)>,
    line: Line,
    input: &std::sync::Arc<str>,
) -> Joined {
    let mut entries = Vec::new();
    let mut first: Option<Event> = None;
    while let Some((seq, event)) = held.pop_front_if(|h| h.0 <= line.end) {
        entries.push(seq);
        if first.is_none() {
            first = event;
        }
    }
    let flags = multiline::flags(&line);
    // The first entry of an event always keeps its fields; an empty event is only a guard
    // that keeps the entries' acknowledgement (and so the cursor) moving.
    let mut event = first
        .unwrap_or_else(|| Event::from_message(input.clone(), chrono::Utc::now(), String::new()));
    event.insert("message", Value::String(line.text));
    if let Some(flags) = flags {
        event.insert("log.flags", flags);
    }
    Joined { event, entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, text: &str) -> Entry {
        let mut event = Event::new("j".into(), chrono::Utc::now());
        event.insert("message", text);
        Entry {
            event,
            cursor: String::new(),
            source: source.into(),
        }
    }

    /// Traces of eight programs read in one chunk (one `now` for all): a ninth program's trace
    /// sends the one fed longest ago, the first, whatever the order the map keeps them in.
    #[test]
    fn a_source_beyond_the_limit_sends_the_one_fed_longest_ago_even_in_one_chunk() {
        let config: crate::inputs::multiline::Config =
            serde_json::from_str(r#"{"preset":"java","timeout":"1h"}"#).expect("config");
        let proto = config.compile(None, "m").expect("compiles");
        let mut j = Joiners::new("j".into(), proto, 8);
        let now = Instant::now();
        let mut out = Vec::new();
        let mut seq = 0;
        for k in 0..9 {
            for line in [format!("ERROR {k}"), "\tat x.Y.z(Y.java:1)".to_owned()] {
                j.push(entry(&format!("unit-{k}"), &line), seq, now, &mut out);
                seq += 1;
            }
        }
        let sent: Vec<String> = out
            .iter()
            .filter_map(|o| o.event.message().map(str::to_owned))
            .collect();
        assert_eq!(sent, ["ERROR 0\n\tat x.Y.z(Y.java:1)"]);
    }
}
