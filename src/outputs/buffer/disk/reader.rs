//! The disk buffer's reading side: reads records back in order, hands them to the output,
//! and once they are delivered frees their room, deletes spent segments and saves the
//! delivered position; a damaged record loses only itself (counted).

use super::{publish, save_position, seg_path, Pos, Shared, SAVE_EVERY};
use crate::event::{AckTracker, Batch, BatchStatus, Event};
use crate::outputs::buffer::recovery::{read_range, read_record, resync};
use crate::pipeline::channel::BatchSender;
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A record handed to the output and not yet settled.
pub(super) struct Entry {
    start: Pos,
    end: Pos,
    /// Buffer bytes it holds (counted in `unacked` until settled).
    bytes: u64,
    /// Events in it (0 for a damaged record, whose count is unknown).
    events: u64,
    done: bool,
}

pub(super) struct Reader {
    pub(super) shared: Arc<Shared>,
    pub(super) out: BatchSender,
    pub(super) metrics: Arc<ComponentMetrics>,
    /// Everything before this was delivered.
    pub(super) acked: Pos,
    /// Next record to read.
    pub(super) read: Pos,
    pub(super) tracker: AckTracker,
    /// Records in flight, in buffer order, and the tracker sequence of each.
    pub(super) entries: VecDeque<(u64, Entry)>,
    pub(super) saved: Instant,
}

impl Reader {
    pub(super) fn run(mut self) {
        let mut file: Option<(u64, File)> = None;
        loop {
            self.settle();
            let (write, closed) = {
                let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                (st.write, st.closed)
            };
            if self.read.seg < write.seg {
                let len = std::fs::metadata(seg_path(&self.shared.dir, self.read.seg))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if self.read.off >= len {
                    self.read = Pos {
                        seg: self.read.seg + 1,
                        off: 0,
                    };
                    continue;
                }
            }
            // Where the written records of this segment end.
            let end = if self.read.seg < write.seg {
                std::fs::metadata(seg_path(&self.shared.dir, self.read.seg))
                    .map(|m| m.len())
                    .unwrap_or(0)
            } else {
                write.off
            };
            if self.read.off < end {
                if file.as_ref().is_none_or(|(s, _)| *s != self.read.seg) {
                    match File::open(seg_path(&self.shared.dir, self.read.seg)) {
                        Ok(f) => file = Some((self.read.seg, f)),
                        Err(e) => {
                            self.skip(&format!("cannot open segment: {e}"), end, end);
                            continue;
                        }
                    }
                }
                let Some((_, f)) = &file else { continue };
                match read_record(f, self.read.off) {
                    Ok((events, size)) => {
                        let start = self.read;
                        self.read.off += size;
                        if !self.send(events, start, self.read, size) {
                            return;
                        }
                    }
                    Err(why) => {
                        let to = read_range(f, self.read.off, end)
                            .map(|rest| self.read.off + resync(&rest) as u64)
                            .unwrap_or(end);
                        self.skip(&why, to, end);
                    }
                }
                continue;
            }
            if closed && self.entries.is_empty() {
                self.save();
                return;
            }
            let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self
                .shared
                .written
                .wait_timeout(st, Duration::from_millis(100));
        }
    }

    /// Skips a damaged record: from the read position to `to`, the next intact record of the
    /// segment (`end` when none follows: on to the next segment). Counted and logged.
    fn skip(&mut self, why: &str, to: u64, end: u64) {
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(output = %self.metrics.name, segment = self.read.seg, offset = self.read.off,
            bytes = to.saturating_sub(self.read.off), why,
            "disk buffer: damaged record; its events are lost, the records after it are replayed (counted in trawl_errors_total)");
        let write = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write;
        let next = if to >= end && self.read.seg < write.seg {
            Pos {
                seg: self.read.seg + 1,
                off: 0,
            }
        } else {
            Pos {
                seg: self.read.seg,
                off: to.max(self.read.off),
            }
        };
        let entry = Entry {
            start: self.read,
            end: next,
            bytes: to.min(end).saturating_sub(self.read.off),
            events: 0,
            done: true,
        };
        self.entries.push_back((u64::MAX, entry));
        self.read = next;
    }

    fn send(&mut self, events: Vec<Event>, start: Pos, end: Pos, bytes: u64) -> bool {
        let (seq, ack) = self.tracker.track();
        self.entries.push_back((
            seq,
            Entry {
                start,
                end,
                bytes,
                events: events.len() as u64,
                done: false,
            },
        ));
        self.out.blocking_send(Batch::new(events, ack)).is_ok()
    }

    /// Takes settled batches: marks them done, re-sends failed ones, moves the delivered
    /// position, frees room, deletes delivered segments.
    fn settle(&mut self) {
        for acked in self.tracker.drain() {
            let Some(i) = self.entries.iter().position(|(s, _)| *s == acked.seq) else {
                continue;
            };
            if acked.status == BatchStatus::Failed {
                // The output could not deliver it (it gave up, or is shutting down): read it
                // again after a pause, so it is not lost and not hammered.
                std::thread::sleep(Duration::from_millis(500));
                let start = self.entries[i].1.start;
                let f = File::open(seg_path(&self.shared.dir, start.seg));
                match f
                    .map_err(|e| e.to_string())
                    .and_then(|f| read_record(&f, start.off))
                {
                    Ok((events, _)) => {
                        let (seq, ack) = self.tracker.track();
                        self.entries[i].0 = seq;
                        if self.out.blocking_send(Batch::new(events, ack)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(output = %self.metrics.name, error = %e, "disk buffer: cannot re-read a failed batch; its events are lost (counted in trawl_errors_total)");
                        self.entries[i].1.done = true;
                    }
                }
            } else {
                self.entries[i].1.done = true;
            }
        }
        let mut freed = 0u64;
        let mut freed_events = 0u64;
        let first_held = self.acked.seg;
        while self.entries.front().is_some_and(|(_, e)| e.done) {
            let Some((_, e)) = self.entries.pop_front() else {
                break;
            };
            freed += e.bytes;
            freed_events += e.events;
            self.acked = e.end;
        }
        if self.acked.seg > first_held {
            // The position is saved past them before the segments go: a start that finds a
            // segment missing at or after the saved position then knows someone else took
            // it (`missing_segments`), with no window in which trawl's own deletion looks
            // the same.
            self.save();
            for seg in first_held..self.acked.seg {
                let _ = std::fs::remove_file(seg_path(&self.shared.dir, seg));
            }
        }
        if freed > 0 {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.unacked = st.unacked.saturating_sub(freed);
            st.unacked_events = if st.unacked == 0 {
                0
            } else {
                st.unacked_events.saturating_sub(freed_events)
            };
            publish(&self.metrics, &st);
            drop(st);
            self.shared.freed.notify_all();
        }
        if freed > 0 && self.saved.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    fn save(&mut self) {
        // A fully delivered segment that is no longer written to can go.
        let write = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write;
        if self.acked.seg < write.seg && self.acked == self.read && self.entries.is_empty() {
            for seg in self.acked.seg..self.read.seg.max(self.acked.seg) {
                let _ = std::fs::remove_file(seg_path(&self.shared.dir, seg));
            }
        }
        if let Err(e) = save_position(&self.shared.dir, self.acked) {
            tracing::warn!(error = %e, "disk buffer: cannot save the delivered position; a restart will re-send more");
        }
        self.saved = Instant::now();
    }
}
