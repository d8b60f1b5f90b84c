//! Reading again what an output failed: each failed batch's stream goes back to where its
//! delivery stopped, after a back-off, also during a stop's drain (until `shutdown_timeout`);
//! lines no file holds any more are counted as lost.

use super::Tailer;
use crate::inputs::file::identity::FileKey;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

impl Tailer {
    /// Applies the reading again of streams whose batch an output failed: each goes back to
    /// where its delivery stopped and waits out its back-off. A stream is read again where it
    /// is now: in its file, or after a copytruncate in the copy continuing it; when that copy is
    /// not found yet, it will be read from where delivery stopped once it is.
    pub(super) fn apply_rewinds(&mut self) {
        let rewinds = match self.shared.rewinds.lock() {
            Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
            _ => return,
        };
        for rw in rewinds {
            let key = if self
                .tails
                .get(&rw.key)
                .is_some_and(|t| t.meta.stream == rw.stream)
            {
                Some(rw.key)
            } else {
                self.tails
                    .iter()
                    .find(|(_, t)| t.meta.stream == rw.stream)
                    .map(|(k, _)| *k)
            };
            let Some(key) = key else {
                let waiting = self.shared.registry.lock().is_ok_and(|mut r| {
                    r.truncation_mut(rw.stream).is_some_and(|t| {
                        t.position = t.position.min(rw.offset);
                        t.epoch = t.epoch.max(rw.epoch);
                        t.failed_lines += rw.lines;
                        true
                    })
                });
                if !waiting {
                    let path = self.tails.get(&rw.key).map(|t| t.path.clone());
                    self.lost(
                        path.as_deref(),
                        &rw,
                        "the file was truncated or replaced since and no copy of it is followed",
                    );
                }
                continue;
            };
            let Some(tail) = self.tails.get_mut(&key) else {
                continue;
            };
            if !tail.is_open() {
                // Closed as inactive: the same file (inode and first bytes) is opened again.
                let same = File::open(&tail.path).ok().filter(|f| {
                    f.metadata().is_ok_and(|m| FileKey::of(&m) == key)
                        && tail.fp.matches(f).unwrap_or(false)
                });
                match same {
                    Some(f) => tail.reopen(f),
                    None => {
                        let path = tail.path.clone();
                        self.lost(Some(&path), &rw, "the file is gone since");
                        continue;
                    }
                }
            }
            let reached = tail.position();
            let from = self.rewound_from.entry(key).or_insert(reached);
            *from = (*from).max(reached);
            tail.rewind(rw.offset, rw.epoch, self.config.format, self.max_line);
            self.backing_off.insert(key, rw.not_before);
        }
        let tails = &self.tails;
        self.rewound_from.retain(|k, _| tails.contains_key(k));
    }

    /// At a stop: the batches outputs failed (before the stop or while it drains) are read
    /// again, up to where each file was read when the stop came, until every batch is
    /// delivered; nothing new is read. The shutdown deadline ends it from outside (trawl exits
    /// saying what was left), as does an output failing for good (retrying it is pointless). A
    /// reload replacing the input does not wait for it: the registry stays before the failed
    /// lines and the input that replaces it reads them again.
    pub(super) fn drain_failed(
        &mut self,
        buf: &mut [u8],
        wake: &std::sync::mpsc::Receiver<()>,
        poll: Duration,
    ) {
        self.apply_rewinds();
        let rewound_from = &self.rewound_from;
        self.stop_at = Some(
            self.tails
                .iter()
                .map(|(key, tail)| {
                    let from = rewound_from.get(key).copied().unwrap_or(0);
                    (*key, tail.position().max(from))
                })
                .collect(),
        );
        let mut said = false;
        loop {
            if !self.ctx.pipeline.retries_failed() {
                return;
            }
            self.apply_rewinds();
            if !said && !self.backing_off.is_empty() {
                said = true;
                tracing::info!(input = %self.ctx.name, files = self.backing_off.len(),
                    "stopping: reading again the batches an output failed, within the shutdown deadline");
            }
            if self.read_all(buf).is_err() || self.emit().is_err() {
                return;
            }
            if self.drained() {
                return;
            }
            if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = wake.recv_timeout(poll) {
                // The scanner is gone: nothing wakes this thread early any more.
                std::thread::sleep(poll);
            }
        }
    }

    /// Nothing in flight, nothing to read again: every batch of the stop was delivered, or
    /// failed with no file left to read it from (counted as lost).
    pub(super) fn drained(&self) -> bool {
        let Ok(f) = self.shared.in_flight.lock() else {
            return true;
        };
        // Under the in-flight lock: a failure leaves `in_flight` and enters `rewinds` in one
        // step of the acknowledgement task, which holds it.
        f.batches.is_empty()
            && self.backing_off.is_empty()
            && self.shared.rewinds.lock().is_ok_and(|r| r.is_empty())
    }

    /// Lines of a failed batch that cannot be read again: counted, and said once per stream.
    pub(super) fn lost(&self, path: Option<&Path>, rw: &super::super::retry::Rewind, why: &str) {
        self.shared.stats.lost(rw.lines);
        tracing::error!(input = %self.ctx.name, path = %path.map_or(String::from("?"), |p| p.display().to_string()),
            stream = rw.stream, offset = rw.offset, lines = rw.lines, why,
            "an output failed a batch whose lines cannot be read again: they are lost (counted in trawl_file_lost_lines_total)");
    }
}
