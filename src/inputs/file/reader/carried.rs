//! Container lines split by a rotation: the rotated file hands the lines it was joining over
//! to the file replacing it at its path, which joins their rest. Both keep a shared record of
//! each such line, so that reading either file again after a failed batch sends it whole.

use super::{stream_slot, Decoder, Joining, TailMeta, STREAMS};
use crate::inputs::file::batcher::Batcher;
use crate::inputs::lines::Line;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where a line joined on from a rotated file came from. The joined event is that file's line
/// (its stream and offset, so the same `_id` whichever way it is read), and its delivery moves
/// both files' offsets: the rotated one's past the first parts, this one's past the last.
pub(super) struct Carried {
    from: TailMeta,
    /// How far the rotated file was read when the line was handed over: its other lines up to
    /// there, held back by this one's first parts, were sent before.
    from_done: u64,
    /// Bytes of `text` read from the rotated file (what is kept when this one is read again).
    from_len: usize,
    /// Where the parts read from this file begin, once there are some.
    pub(super) here_start: Option<u64>,
    /// When it was carried over: its rest is waited for `join_wait`, then it is sent as it is.
    at: Instant,
    /// The record both files share; taken out while the line is kept in it once sent.
    record: Option<Arc<Mutex<HandedLine>>>,
}

/// One line handed over, as the rotated file and the file replacing it both see it.
pub(super) struct HandedLine {
    /// The rotated file's epoch under which it was last read up to the line's start: the
    /// line's commit of that file is made under it, so it moves nothing once that file is read
    /// again after a failed batch, until the reading again reaches the line.
    read_epoch: u32,
    /// What was sent for it, once sent.
    sent: Option<Sent>,
}

/// A handed-over line as it was sent.
struct Sent {
    /// The line (its `carried` without the record).
    joining: Joining,
    /// The rotated file's offset its delivery moves to.
    from_end: u64,
    /// The replacing file's offset its delivery moves to, when its rest was read there (else it
    /// was sent flagged partial).
    here: Option<(TailMeta, u64)>,
    /// The rotated file's epoch its commit was made under.
    epoch: u32,
}

/// In the rotated file: a line handed over, on stream slot `slot`, its parts between `start`
/// and `until` (how far the file was read when it was handed over).
pub(super) struct Handed {
    slot: usize,
    pub(super) start: u64,
    until: u64,
    record: Arc<Mutex<HandedLine>>,
}

impl Decoder {
    /// Hands the lines being joined over to the file replacing this one at its path (`meta`
    /// is this file's), where the runtime writes their rest. Lines already carried into this
    /// file stay (their rest is waited for here).
    pub fn hand_over(&mut self, meta: &TailMeta, read_to: u64, now: Instant) -> Vec<Joining> {
        // Lines multiline still holds are not sent yet: their start is as far as it goes.
        let done = self
            .multiline
            .as_ref()
            .and_then(|m| m.pending_start())
            .map_or(read_to, |s| s.min(read_to));
        let mut out = Vec::new();
        for (slot_no, slot) in self.joining.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|j| j.carried.is_none()) {
                if let Some(mut j) = slot.take() {
                    let record = Arc::new(Mutex::new(HandedLine {
                        read_epoch: meta.epoch,
                        sent: None,
                    }));
                    self.handed.push(Handed {
                        slot: slot_no,
                        start: j.start,
                        until: done.max(j.end),
                        record: record.clone(),
                    });
                    j.carried = Some(Box::new(Carried {
                        from: meta.clone(),
                        from_done: done.max(j.end),
                        from_len: j.text.len(),
                        here_start: None,
                        at: now,
                        record: Some(record),
                    }));
                    out.push(j);
                }
            }
        }
        out
    }

    /// Takes over lines being joined from the file this one replaced (`hand_over`). One whose
    /// stream already has a line being joined here is sent as it is, flagged partial.
    pub fn take_over(&mut self, joins: Vec<Joining>, meta: &TailMeta, batcher: &mut Batcher) {
        for j in joins {
            if let Some(r) = j.carried.as_ref().and_then(|c| c.record.as_ref()) {
                self.taken.push(r.clone());
            }
            let slot = stream_slot(j.stream);
            if self.joining[slot].is_none() {
                self.joining[slot] = Some(j);
            } else {
                self.send_carried(j, None, meta, batcher);
            }
        }
    }

    /// Sends a line joined on from a rotated file: as that file's line, moving its offset past
    /// the parts read from it and, when the line was completed here (`here_end`), this file's
    /// offset past its last part. Without `here_end`, its rest never came: flagged partial.
    pub(super) fn send_carried(
        &mut self,
        mut j: Joining,
        here_end: Option<u64>,
        meta: &TailMeta,
        batcher: &mut Batcher,
    ) {
        let Some(mut c) = j.carried.take() else {
            return;
        };
        // Not past where another line handed over from the same file begins.
        let from_end = self
            .joining
            .iter()
            .flatten()
            .filter(|o| {
                o.carried
                    .as_ref()
                    .is_some_and(|oc| oc.from.key == c.from.key)
            })
            .map(|o| o.start)
            .fold(c.from_done, u64::min);
        let held = self.held_here();
        let also = here_end.map(|end| (meta, held.map_or(end, |h| h.min(end))));
        let line = Line {
            text: self.text(&j.text),
            start: j.start,
            end: from_end,
            truncated: j.truncated,
            multiline: false,
            partial: here_end.is_none(),
            stream: j.stream,
            time: j.time,
        };
        let record = c.record.take();
        let epoch = record
            .as_ref()
            .and_then(|r| r.lock().ok().map(|h| h.read_epoch))
            .unwrap_or(c.from.epoch);
        let mut from = c.from.clone();
        from.epoch = epoch;
        // Not through multiline: that file's events and this one's are not one sequence.
        batcher.push_also(&from, line, also);
        if let Some(r) = record {
            if let Ok(mut h) = r.lock() {
                let here = also.map(|(m, end)| (m.clone(), end));
                j.carried = Some(c);
                h.sent = Some(Sent {
                    joining: j,
                    from_end,
                    here,
                    epoch,
                });
            }
        }
    }

    /// Sends the lines carried over from a rotated file whose rest did not come within
    /// `join_wait` (the container died between the parts), flagged partial.
    pub(super) fn send_carried_due(
        &mut self,
        now: Instant,
        meta: &TailMeta,
        batcher: &mut Batcher,
    ) {
        for slot in 0..STREAMS {
            let due = self.joining[slot].as_ref().is_some_and(|j| {
                j.carried
                    .as_ref()
                    .is_some_and(|c| now.saturating_duration_since(c.at) >= self.join_wait)
            });
            if due {
                if let Some(j) = self.joining[slot].take() {
                    self.send_carried(j, None, meta, batcher);
                }
            }
        }
    }

    /// When the next line carried over from a rotated file is due (`send_carried_due`).
    pub(super) fn carried_deadline(&self) -> Option<Instant> {
        self.joining
            .iter()
            .flatten()
            .filter_map(|j| j.carried.as_ref().map(|c| c.at + self.join_wait))
            .min()
    }

    /// In the rotated file read again after a failed batch: a record of a line it handed over
    /// (on its stream, from its start up to where it was handed over) is not joined again here, where its rest
    /// never comes. At the line's start, the reading again has reached it: the line's commit
    /// of this file is made under the current epoch from now on, and if it was sent under an
    /// older one (its commit here moves nothing any more), it is sent again as it was, with the
    /// same offset (so the same document id). True when the record is skipped.
    pub(super) fn skip_handed(
        &mut self,
        slot: usize,
        start: u64,
        meta: &TailMeta,
        batcher: &mut Batcher,
    ) -> bool {
        let Some(h) = self
            .handed
            .iter()
            .find(|h| h.slot == slot && start >= h.start && start < h.until)
        else {
            return false;
        };
        if start != h.start {
            return true;
        }
        let record = h.record.clone();
        let Ok(mut rec) = record.lock() else {
            return true;
        };
        rec.read_epoch = meta.epoch;
        let Some(s) = rec.sent.as_mut().filter(|s| s.epoch != meta.epoch) else {
            return true;
        };
        s.epoch = meta.epoch;
        let j = &s.joining;
        let line = Line {
            text: crate::inputs::lines::to_text(&j.text).unwrap_or_else(|t| t),
            start: j.start,
            end: s.from_end,
            truncated: j.truncated,
            multiline: false,
            partial: s.here.is_none(),
            stream: j.stream,
            time: j.time,
        };
        let also = s.here.as_ref().map(|(m, end)| (m, *end));
        batcher.push_also(meta, line, also);
        true
    }

    /// Moves into `fresh` (this decoder's settings, for reading this file again from
    /// `offset`) what outlives the reading again: lines carried over from a rotated file, less
    /// the parts read from this file (they are read again), also those already sent whose
    /// parts here are read again; and the records of lines handed over.
    pub(super) fn rewound(&mut self, fresh: &mut Decoder, offset: u64, now: Instant) {
        for slot in self.joining.iter_mut() {
            if slot.as_ref().is_some_and(|j| j.carried.is_some()) {
                if let Some(mut j) = slot.take() {
                    if let Some(c) = j.carried.as_mut() {
                        if c.here_start.is_some_and(|h| h < offset) {
                            // Parts before the rewind point are not read again: cannot happen
                            // (this file's offset is held at their start); dropped if it does.
                            continue;
                        }
                        j.text.truncate(c.from_len);
                        c.here_start = None;
                    }
                    let at = stream_slot(j.stream);
                    fresh.joining[at] = Some(j);
                }
            }
        }
        for record in &self.taken {
            let Ok(mut rec) = record.lock() else {
                continue;
            };
            let again = rec.sent.as_ref().is_some_and(|s| {
                s.here.is_some()
                    && fresh.joining[stream_slot(s.joining.stream)].is_none()
                    && s.joining
                        .carried
                        .as_ref()
                        .and_then(|c| c.here_start)
                        .is_some_and(|h| h >= offset)
            });
            if !again {
                continue;
            }
            if let Some(s) = rec.sent.take() {
                let mut j = s.joining;
                if let Some(c) = j.carried.as_mut() {
                    j.text.truncate(c.from_len);
                    c.here_start = None;
                    c.at = now;
                    c.record = Some(record.clone());
                }
                let at = stream_slot(j.stream);
                fresh.joining[at] = Some(j);
            }
        }
        fresh.taken = std::mem::take(&mut self.taken);
        fresh.handed = std::mem::take(&mut self.handed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder, TailMeta};
    use crate::inputs::file::batcher::Batcher;
    use crate::inputs::file::container::Format;
    use crate::inputs::file::identity::FileKey;
    use crate::inputs::lines::LineInfo;
    use std::time::Instant;

    fn info(start: u64, record: &[u8]) -> LineInfo {
        LineInfo {
            start,
            end: start + record.len() as u64 + 1,
            truncated: false,
        }
    }

    /// Each event's message, with its batch's commits as (stream, offset, epoch).
    type Sent = Vec<(String, Vec<(u64, u64, u32)>)>;

    fn messages(b: &mut Batcher) -> Sent {
        let mut out = Vec::new();
        while let Some(built) = b.take_any() {
            let commits: Vec<(u64, u64, u32)> = built
                .commits
                .iter()
                .map(|c| (c.stream, c.offset, c.epoch))
                .collect();
            for e in built.lines.into_events() {
                let v: serde_json::Value = serde_json::from_str(&e.to_json_string()).expect("JSON");
                out.push((
                    v["message"].as_str().unwrap_or("").to_owned(),
                    commits.clone(),
                ));
            }
        }
        out
    }

    /// The joined line's batch failed: the new file read again joins its rest to the first
    /// part again, and the rotated file read again skips the part and, since the line's commit
    /// of it was made under the epoch now void, sends the line again whole under the new one.
    #[test]
    fn a_handed_over_line_is_sent_whole_again_when_either_file_is_read_again() {
        let mut old = TailMeta::new(FileKey { dev: 1, ino: 1 }, 11, 0, "c.log".into(), None);
        let new = TailMeta::new(FileKey { dev: 1, ino: 2 }, 22, 0, "c.log".into(), None);
        let mut b = Batcher::new("f".into(), 100);
        let now = Instant::now();
        let p = b"2026-11-23T10:00:00Z stdout P {\"a\":";
        let f = b"2026-11-23T10:00:00Z stdout F 1}";
        let mut before = Decoder::new(Format::Auto, None, 1 << 20);
        before.line(p, info(0, p), now, &old, &mut b);
        let handed = before.hand_over(&old, 37, now);
        let mut after = Decoder::new(Format::Auto, None, 1 << 20);
        after.take_over(handed, &new, &mut b);
        after.line(f, info(0, f), now, &new, &mut b);
        assert_eq!(
            messages(&mut b),
            [("{\"a\":1}".to_owned(), vec![(11, 37, 0), (22, 33, 0)])]
        );
        // The new file is read again from its start: the first part is joined again.
        let mut again = after.fresh(Format::Cri);
        after.rewound(&mut again, 0, now);
        again.line(f, info(0, f), now, &new, &mut b);
        assert_eq!(
            messages(&mut b),
            [("{\"a\":1}".to_owned(), vec![(11, 37, 0), (22, 33, 0)])]
        );
        // The rotated file is read again under epoch 1: no part alone, the line once more.
        old.epoch = 1;
        let mut re = before.fresh(Format::Cri);
        before.rewound(&mut re, 0, now);
        re.line(p, info(0, p), now, &old, &mut b);
        re.flush(now, &old, &mut b);
        assert_eq!(
            messages(&mut b),
            [("{\"a\":1}".to_owned(), vec![(11, 37, 1), (22, 33, 0)])]
        );
    }
}
