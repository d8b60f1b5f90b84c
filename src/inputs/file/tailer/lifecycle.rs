//! What becomes of a followed file over time: truncated (read again from 0 under a new stream),
//! closed once idle, deleted or renamed away, or closed to give its `max_open_files` slot to a
//! waiting file; and the marks and truncated contents kept for it in the registry.

use super::{entry_for, Closed, Tailer, TRUNCATION_KEPT};
use crate::inputs::file::identity::{new_stream_id, FileKey, Fingerprint};
use crate::inputs::file::registry::Truncation;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

impl Tailer {
    /// The file got shorter or its first bytes changed: what was read stays delivered, the file
    /// is read again from 0 as a new stream, and its old content may reappear as a copy.
    pub(super) fn on_truncated(&mut self, key: FileKey) -> Result<(), Closed> {
        let Some(tail) = self.tails.get_mut(&key) else {
            return Ok(());
        };
        // Also for a closed file (found truncated when reopened, or when its copy appeared):
        // the new content's fingerprint grows from what is read of it, starting now.
        let fp = Fingerprint::of(&[]);
        tracing::info!(input = %self.ctx.name, path = %tail.path.display(), offset = tail.position(), "file truncated: reading it again from the start");
        let old = Truncation {
            dev: key.dev,
            ino: key.ino,
            path: tail.meta.path().to_owned(),
            fp_len: tail.fp.len,
            fp: tail.fp.hash,
            stream: tail.meta.stream,
            position: tail.line_start(),
            committed: 0,
            epoch: tail.meta.epoch,
            failed_lines: 0,
            at: Instant::now(),
        };
        tail.flush_if_due(
            Instant::now() + Duration::from_secs(86400 * 365),
            &mut self.batcher,
        );
        self.salt += 1;
        let stream = new_stream_id(key, fp, self.salt);
        tail.restart(stream, Vec::new(), self.config.format, self.max_line);
        let entry = entry_for(tail, 0);
        // The old content and the file's new stream go to the registry together (written before
        // the next batch leaves): a copy found after a stop still continues the old stream.
        if let Ok(mut r) = self.shared.registry.lock() {
            let committed = r
                .get(&key)
                .filter(|e| e.stream == old.stream)
                .map_or(0, |e| e.offset);
            r.add_truncation(Truncation { committed, ..old });
            r.put(entry);
        }
        self.unsaved = true;
        Ok(())
    }

    /// Stops following a file for good (deleted, or renamed away and idle), once what was read
    /// of it is delivered: a failed batch is read again from the file, so until then it stays
    /// (open, even deleted). Called again at later turns until then.
    pub(super) fn drop_tail(&mut self, key: FileKey, why: &str) -> Result<(), Closed> {
        let Some(tail) = self.tails.get_mut(&key) else {
            return Ok(());
        };
        tail.flush_all(Instant::now(), &mut self.batcher);
        self.emit()?;
        if self.backing_off.contains_key(&key) || self.shared.unsettled(&key) {
            return Ok(());
        }
        if let Some(tail) = self.tails.remove(&key) {
            tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), why, "file closed");
        }
        Ok(())
    }

    /// Reopens the closed files that filesystem events say were written to, without waiting for
    /// the next scan (see `discovery::Written`): with the descriptor the watcher took when it saw
    /// the write, or else by name. A file renamed away since (its name leads to another file
    /// now) and not held is left to the scan's rename handling.
    pub(super) fn reopen_written(&mut self) {
        let (paths, overflowed, held) = match self.written.lock() {
            Ok(mut w) => {
                // Most writes are to open files (the busy ones): only closed ones are looked at.
                let w = &mut *w;
                w.paths.retain(|p| w.closed.contains_key(p));
                (
                    std::mem::take(&mut w.paths),
                    std::mem::take(&mut w.overflowed),
                    std::mem::take(&mut w.held),
                )
            }
            Err(_) => return,
        };
        if (paths.is_empty() && !overflowed && held.is_empty())
            || self.tails.values().all(|t| t.is_open())
        {
            return;
        }
        let mut reopened = false;
        for (key, file) in held {
            if self.open_count() >= self.config.max_open_files {
                break;
            }
            let Some(tail) = self.tails.get_mut(&key).filter(|t| !t.is_open()) else {
                // Opened for a file reopened or let go since: what the watcher knows is stale.
                reopened = true;
                continue;
            };
            tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), "closed file written to: reopened with the descriptor taken at the write");
            let same = tail.fp.matches(&file).unwrap_or(false);
            tail.reopen(file);
            reopened = true;
            if !same {
                // Truncated and rewritten while closed, as in `rediscovered`.
                let _ = self.on_truncated(key);
            }
        }
        let closed = |key: &FileKey| self.tails.get(key).filter(|t| !t.is_open());
        let grown: Vec<(FileKey, PathBuf)> = if overflowed {
            self.tails
                .iter()
                .filter(|(_, t)| !t.is_open())
                .map(|(k, t)| (*k, t.path.clone()))
                .collect()
        } else {
            paths
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok().map(|m| FileKey::of(&m)))
                .filter_map(|k| closed(&k).map(|t| (k, t.path.clone())))
                .collect()
        };
        for (key, path) in grown {
            tracing::debug!(input = %self.ctx.name, path = %path.display(), "closed file written to: reopening it");
            self.rediscovered(key, &path);
            reopened = true;
        }
        if reopened {
            self.publish_closed();
        }
    }

    /// Tells the watcher which files are closed and how many slots it may take for them (see
    /// `discovery::Written`). Called whenever files are closed or reopened.
    pub(super) fn publish_closed(&mut self) {
        let mut closed = HashMap::new();
        for (key, tail) in self.tails.iter().filter(|(_, t)| !t.is_open()) {
            let target = super::scan::link_target(&tail.path);
            if target != tail.path {
                closed.insert(target, *key);
            }
            closed.insert(tail.path.clone(), *key);
        }
        let spare = self.config.max_open_files.saturating_sub(self.open_count());
        if let Ok(mut w) = self.written.lock() {
            w.closed = closed;
            w.spare = spare;
            // Held for a file reopened meanwhile, or no longer followed: let go.
            let tails = &self.tails;
            w.held
                .retain(|k, _| tails.get(k).is_some_and(|t| !t.is_open()));
        }
    }

    /// Closes files idle past `close_inactive` and lets go of those deleted or out of `paths`
    /// past `close_removed`. True when a slot was freed.
    pub(super) fn close_idle(&mut self, now: Instant) -> bool {
        let close_inactive = self.config.close_inactive.positive();
        let close_removed = self.config.close_removed.std();
        let mut gone = Vec::new();
        let mut closed_some = false;
        for (key, tail) in self.tails.iter_mut() {
            let idle = now.saturating_duration_since(tail.last_growth);
            match tail.unseen_since {
                Some(since)
                    if now.saturating_duration_since(since) >= close_removed
                        && idle >= close_removed =>
                {
                    gone.push(*key)
                }
                _ => {
                    // A file whose batches are in flight or are to be read again stays open:
                    // closed, a file renamed out of `paths` meanwhile (kubelet's rotation) would
                    // never be reopened, its lines not read again until a restart, and the
                    // registry not moved past them.
                    if tail.is_open()
                        && close_inactive.is_some_and(|c| idle >= c)
                        && !self.backing_off.contains_key(key)
                        && !self.shared.unsettled(key)
                    {
                        tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), "closing inactive file");
                        tail.close();
                        closed_some = true;
                    }
                }
            }
        }
        // A deleted file with batches unsettled is kept (`drop_tail`): only those let go count.
        let followed = self.tails.len();
        for key in gone {
            let _ = self.drop_tail(key, "deleted or no longer under `paths`, and idle");
        }
        let freed = closed_some || self.tails.len() < followed;
        if closed_some {
            self.publish_closed();
        }
        freed
    }

    /// When files wait for a slot under `max_open_files`, closes as many files as wait among
    /// those read to their end (checked now, not at the last read) and idle for `min_idle`,
    /// longest idle first; they stay followed and are reopened at their offset when a scan
    /// finds them grown and a slot free. Files deleted or renamed away are kept open: closed,
    /// they could not be reopened. True when some were closed.
    pub(super) fn make_room(&mut self, now: Instant, min_idle: Duration) -> bool {
        if self.waiting == 0 {
            return false;
        }
        // Also kept open: a file deleted since the last scan (it could not be reopened) and
        // one whose batches are not all delivered (a failed one is read again from it).
        let mut idle: Vec<(Instant, FileKey)> = self
            .tails
            .iter()
            .filter(|(k, t)| {
                t.is_open()
                    && t.unseen_since.is_none()
                    && now.saturating_duration_since(t.last_growth) >= min_idle
                    && !self.backing_off.contains_key(k)
                    && !self.shared.unsettled(k)
                    && t.still_linked()
                    && t.size() == Some(t.position())
            })
            .map(|(k, t)| (t.last_growth, *k))
            .collect();
        idle.sort_unstable();
        idle.truncate(self.waiting);
        for (_, key) in &idle {
            if let Some(tail) = self.tails.get_mut(key) {
                tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), offset = tail.position(), "closing a file idle at its end: files wait for its slot");
                tail.close();
            }
        }
        if !idle.is_empty() {
            self.publish_closed();
        }
        // `waiting` stays until the scan applied next counts again: files not idle long enough
        // now may be at the next turn.
        !idle.is_empty()
    }

    /// Writes where each followed file was read up to into the registry (see `Entry::mark_at`).
    pub(super) fn record_marks(&self) {
        let Ok(mut r) = self.shared.registry.lock() else {
            return;
        };
        for (key, tail) in &self.tails {
            if let Some((at, mark)) = tail.end_mark() {
                r.set_mark(key, tail.meta.stream, at, mark);
            }
        }
    }

    /// Forgets the truncated contents whose copy did not appear within `TRUNCATION_KEPT`. The
    /// lines of failed batches that only such a copy could give back are then lost: counted,
    /// and said once per file.
    pub(super) fn expire_truncations(&mut self, now: Instant) {
        let Some(before) = now.checked_sub(TRUNCATION_KEPT) else {
            return;
        };
        let gone = match self.shared.registry.lock() {
            Ok(mut r) => r.expire_truncations(before),
            Err(_) => return,
        };
        for t in gone.iter().filter(|t| t.failed_lines > 0) {
            self.shared.stats.lost(t.failed_lines);
            tracing::error!(input = %self.ctx.name, path = %t.path, stream = t.stream, offset = t.position, lines = t.failed_lines,
                "an output failed batches of a file truncated since, and no copy of its old content appeared: those lines cannot be read again and are lost (counted in trawl_file_lost_lines_total)");
        }
    }
}
