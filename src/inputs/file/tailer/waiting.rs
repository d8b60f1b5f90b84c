//! The bookkeeping of files waiting for a `max_open_files` slot with no descriptor held: what
//! is known of their sizes, their entry in the registry, and their deletion before they got a
//! slot, which is counted and said rather than lost silently.

use super::compressed::find_compressed;
use super::copies::CopyCheck;
use super::restart::{birth, took_a_gone_files_inode, Birth};
use super::scan::link_target;
use super::Tailer;
use crate::inputs::file::discovery;
use crate::inputs::file::identity::{new_stream_id, FileKey, Fingerprint};
use crate::inputs::file::registry::Entry;
use crate::inputs::file::StartAt;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

impl Tailer {
    /// What the watcher and discovery saw of files no descriptor holds (`Written::sizes`): a
    /// closed file written to, or a new one found, while no slot was free. Noted as waiting
    /// with no descriptor, so that one deleted before this scan, which the reader (held up on
    /// a full pipeline) never saw, is counted by `skipped_while_waiting` like any other.
    pub(super) fn take_noted_sizes(&mut self) {
        let sizes = match self.written.lock() {
            Ok(mut w) => std::mem::take(&mut w.sizes),
            Err(_) => return,
        };
        for (key, (path, size)) in sizes {
            if self.ignored.contains(&key) {
                continue;
            }
            if let Some(noted) = self.waiting_unopened.get_mut(&key) {
                noted.2 = noted.2.max(size);
                continue;
            }
            let (path, read_to) = match self.tails.get(&key) {
                Some(tail) if tail.is_open() => continue,
                Some(tail) => (tail.path.clone(), tail.position()),
                None => {
                    let at = self.resumes_at(&key, &path);
                    (path, at)
                }
            };
            if size > read_to {
                self.waiting_unopened.insert(key, (path, read_to, size));
            }
        }
    }

    /// Files that waited for a slot with no descriptor held and are no longer under `paths`:
    /// deleted (not found by their inode in their folder), the bytes trawl had not read of them
    /// are gone; the risk `max_open_files` takes. Counted in `trawl_file_skipped_files_total` and
    /// said once per file with its path, so that nothing is lost silently. One renamed in its
    /// folder (or, for a symlink, in its target's) is left to rotation handling; one found
    /// compressed there (kubelet gzips a rotated file at its next rotation) waits on as its
    /// `.gz` (`wait_as_compressed`), and is not counted.
    pub(super) fn skipped_while_waiting(
        &mut self,
        seen: &HashSet<FileKey>,
        held: &HashMap<FileKey, (PathBuf, File)>,
    ) {
        let vanished: HashMap<FileKey, PathBuf> = self
            .waiting_unopened
            .iter()
            .filter(|(k, _)| {
                !seen.contains(k)
                    && !held.contains_key(k)
                    && !self.tails.get(k).is_some_and(|t| t.is_open())
            })
            // Looked for beside the file the name leads to now: a kubelet symlink's target
            // folder is where kubelet renamed it (`0.log` → `0.log.<time>`).
            .map(|(k, (p, _, _))| (*k, link_target(p)))
            .collect();
        if vanished.is_empty() {
            return;
        }
        let renamed: HashMap<FileKey, PathBuf> =
            discovery::find_renamed(&vanished).into_iter().collect();
        for key in vanished.into_keys() {
            let Some((path, read_to, size)) = self.waiting_unopened.remove(&key) else {
                continue;
            };
            let unread = size.saturating_sub(read_to);
            if unread == 0 {
                continue;
            }
            if let Some(now_at) = renamed.get(&key) {
                // Still waiting, under its new name: deleted before it gets a slot (kubelet
                // gzips `0.log.<time>` at the next rotation), it is counted then. Out of
                // `paths`, it gets a slot as a renamed file: its rename is handed to discovery,
                // which the watcher does too when it saw it (opened once all the same).
                let size = std::fs::metadata(now_at).map_or(size, |m| m.len().max(size));
                self.waiting_unopened
                    .insert(key, (now_at.clone(), read_to, size));
                self.renamed_waiting.push(discovery::Renamed {
                    to: now_at.clone(),
                    name: path,
                });
                continue;
            }
            if self.wait_as_compressed(key, &link_target(&path), read_to) {
                continue;
            }
            self.shared.stats.skipped_file();
            // `offset`: what was lost starts there (what the writer added after the last sight too).
            tracing::warn!(input = %self.ctx.name, path = %path.display(), offset = read_to, unread_bytes = unread, max_open_files = self.config.max_open_files,
                "a file waiting for a max_open_files slot was deleted before it got one: the bytes not read of it are lost (counted in trawl_file_skipped_files_total; raise max_open_files or keep rotated files longer)");
        }
    }

    /// Looks, once a second (every `poll_interval` without `watch_events`), at the files held
    /// with no descriptor that were at their end when last seen: followed files closed (idle,
    /// or to free their slot), and files waiting for one with nothing unread. Writes start no
    /// scan (only files appearing, moving or going do), so one that grows and is then deleted
    /// would be missed by every scan grown, and its new lines lost without a word. A closed
    /// file seen grown is reopened here when a slot is free, not at the next scan
    /// (`scan_interval`, 10 s by default; write events do it at once with `watch_events`, which
    /// a folder past inotify's limits goes without); with no slot free it is tried again at
    /// each look, and its deletion before it gets one is counted (`skipped_while_waiting`). A
    /// stat each, as the lag gauges take for closed files; growth and deletion between two
    /// looks still go unseen.
    pub(super) fn note_growth_unopened(&mut self, now: Instant) {
        // Without events this look is the only one before the next scan: every `poll_interval`
        // (as open files are), so that a file closed as idle just as its app wrote again is
        // taken hold of before a cleanup deletes it (campaign seed 1914 with `watch_events:
        // false`: lost the 860 lines a file got in the second between its close and deletion).
        let every = match self.config.watch_events {
            true => Duration::from_secs(1),
            false => self
                .config
                .poll_interval
                .positive()
                .unwrap_or(Duration::from_millis(250))
                .min(Duration::from_secs(1)),
        };
        if self
            .unopened_checked_at
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return;
        }
        self.unopened_checked_at = Some(now);
        let size_of = |path: &Path, key: FileKey| {
            std::fs::metadata(path)
                .ok()
                .filter(|m| FileKey::of(m) == key)
                .map(|m| m.len())
        };
        // A file opened again since (to read a failed batch again) holds a descriptor: what was
        // noted of it is stale, and it is noted afresh once closed.
        let tails = &self.tails;
        self.waiting_unopened
            .retain(|k, _| !tails.get(k).is_some_and(|t| t.is_open()));
        let mut grown = Vec::new();
        for (key, tail) in tails.iter().filter(|(_, t)| !t.is_open()) {
            if let Some(noted) = self.waiting_unopened.get_mut(key) {
                noted.1 = tail.position();
                // Noted grown while no slot was free: tried again at every look, so a slot
                // freed since (another file closed as idle) takes it before the next scan.
                if noted.2 > noted.1 {
                    grown.push((*key, tail.path.clone(), noted.1, noted.2));
                }
                continue;
            }
            if let Some(size) = size_of(&tail.path, *key).filter(|&s| s > tail.position()) {
                grown.push((*key, tail.path.clone(), tail.position(), size));
            }
        }
        let mut reopened = false;
        for (key, path, read_to, size) in grown {
            if self.open_count() < self.config.max_open_files {
                tracing::debug!(input = %self.ctx.name, path = %path.display(), offset = read_to, "closed file grew: reopening it");
                self.rediscovered(key, &path);
                if let Some(tail) = self.tails.get_mut(&key).filter(|t| t.is_open()) {
                    // It grew: not idle, or `close_idle` closes it again before it is read.
                    tail.last_growth = now;
                    reopened = true;
                    continue;
                }
            }
            self.waiting_unopened.insert(key, (path, read_to, size));
        }
        if reopened {
            self.publish_closed();
        }
        for (key, (path, read_to, size)) in self.waiting_unopened.iter_mut() {
            if *size > *read_to {
                continue;
            }
            if let Some(now_size) = size_of(path, *key) {
                *size = now_size;
            }
        }
    }

    /// A file waiting for a slot goes into the registry now (its identity, a stream id, offset
    /// 0, or its end for `start_at: end` at the very first start), unless it is there already:
    /// renamed away (kubelet's rotation) and trawl killed before it got a slot, it is resumed at
    /// the next start only because the registry knows it. The copy of a truncated file is put
    /// there as continuing that file's stream; a file that may still be such a copy is not put
    /// there yet. Written to disk at the end of the scan.
    pub(super) fn record_waiting(
        &mut self,
        key: FileKey,
        path: &Path,
        file: Option<&File>,
        first: bool,
    ) {
        if self.ignored.contains(&key)
            || self
                .shared
                .registry
                .lock()
                .map_or(true, |r| r.get(&key).is_some())
        {
            return;
        }
        let opened;
        let file = match file {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => {
                    opened = f;
                    &opened
                }
                Err(_) => return,
            },
        };
        let Ok(md) = file.metadata() else { return };
        if FileKey::of(&md) != key || !md.is_file() {
            return;
        }
        let Ok(first_bytes) = super::super::identity::read_first(file, self.fp_max) else {
            return;
        };
        let fp = Fingerprint::of(&first_bytes);
        let size = md.len();
        if size == 0 {
            // Recorded once it has bytes (see `defer_empty`); nothing to lose before.
            if std::fs::metadata(path).is_ok_and(|m| FileKey::of(&m) == key) {
                self.empty_new.insert(key, path.to_path_buf());
            }
            return;
        }
        self.check_originals(key, &first_bytes);
        let (stream, offset) = if let Some(t) = self
            .truncations()
            .iter()
            .find(|t| t.is_copy(key, file, size))
        {
            if size < t.position {
                if let Ok(mut r) = self.shared.registry.lock() {
                    r.set_copy_end(t.stream, size);
                }
            }
            (t.stream, t.committed.min(size))
        } else {
            if !matches!(
                self.may_be_copy(key, file, &first_bytes, size),
                CopyCheck::No
            ) {
                return;
            }
            if self.ignored_as_older(&md) {
                self.ignored.insert(key);
                return;
            }
            let offset = if first && self.first_start && self.config.start_at == StartAt::End {
                size
            } else {
                0
            };
            self.salt += 1;
            (new_stream_id(key, fp, self.salt), offset)
        };
        if let Ok(mut r) = self.shared.registry.lock() {
            r.put(Entry::seen_now(
                path.display().to_string(),
                key,
                fp,
                stream,
                offset,
            ));
        }
        self.waiting_recorded = true;
    }
}

impl Tailer {
    /// Files held with no descriptor (waiting for a slot, or closed to free one) whose inode a
    /// new file took since the last scan: kubelet renames `0.log` away, gzips and deletes the
    /// rotated file at its next rotation, and ext4 gives the freed inode to the next `0.log`.
    /// By inode alone the new file passes for the old one: the old one's deletion went unseen
    /// (it was not counted, nor looked for in its `.gz`) and the new one was taken for it
    /// truncated, so the old one's unread lines were lost without a word. Told apart by birth
    /// time (`took_a_gone_files_inode`, as at a start), the old content is read from its `.gz`
    /// at once (as at a start: a slot is not waited for, the `.gz` goes at the next rotation)
    /// or counted as skipped, its entry leaves the registry, and the new file is met as new.
    /// A stat per held file per scan; a file is opened only when born since it was last seen.
    pub(super) fn inode_taken_while_held(&mut self, current: &[(PathBuf, FileKey)]) {
        for (path, key) in current {
            if self.ignored.contains(key)
                || self.backing_off.contains_key(key)
                || self.tails.get(key).is_some_and(|t| t.is_open())
            {
                continue;
            }
            let Some(mut e) = self.entry(key) else {
                continue;
            };
            let Some(md) = std::fs::metadata(path)
                .ok()
                .filter(|m| FileKey::of(m) == *key)
            else {
                continue;
            };
            if e.fp_len == 0 || !matches!(birth(&e, &md), Some(Birth::Since | Birth::Unsure)) {
                continue;
            }
            if !File::open(path).is_ok_and(|f| took_a_gone_files_inode(&e, &f, path)) {
                continue;
            }
            if let Some(tail) = self.tails.remove(key) {
                // Closed with nothing in flight: read up to its position, delivered.
                e.offset = e.offset.max(tail.position());
            }
            let noted = self.waiting_unopened.remove(key);
            self.maybe_copies.remove(key);
            // Found compressed already, when it vanished from its rotated name: read from
            // there now, once.
            if let Some(w) = self.waiting_compressed.remove(key) {
                if w.entry.stream != e.stream {
                    self.waiting_compressed.insert(*key, w);
                }
            }
            tracing::info!(input = %self.ctx.name, path = %path.display(), was = %e.path, offset = e.offset,
                "a file held closed (waiting for a slot, or idle) was deleted and its inode taken by a new file: looking for its unread lines in a compressed copy; the new file is read from its start");
            let last_at = link_target(Path::new(&e.path));
            let found = find_compressed(&e, &last_at, e.offset)
                .or_else(|| find_compressed(&e, &link_target(path), e.offset));
            match found {
                Some((gz, lines)) if lines > 0 => match self.resume_compressed(&e, &gz) {
                    Ok(()) => {
                        tracing::info!(input = %self.ctx.name, path = %e.path, compressed = %gz.display(), offset = e.offset, lines,
                            "reading the unread lines of a compressed file that waited for a slot");
                        continue;
                    }
                    Err(err) => {
                        self.shared.stats.lost(lines);
                        tracing::warn!(input = %self.ctx.name, path = %e.path, compressed = %gz.display(), offset = e.offset, lines, error = %err,
                            "a file that waited for a slot was compressed meanwhile and cannot be decompressed to be read: its unread lines are counted in trawl_file_lost_lines_total");
                    }
                },
                Some(_) => {}
                None => {
                    self.shared.stats.skipped_file();
                    let unread = noted.map(|(_, read_to, size)| size.saturating_sub(read_to));
                    tracing::warn!(input = %self.ctx.name, path = %e.path, offset = e.offset, unread_bytes = ?unread, max_open_files = self.config.max_open_files,
                        "a file waiting for a max_open_files slot was deleted before it got one: the bytes not read of it are lost (counted in trawl_file_skipped_files_total; raise max_open_files or keep rotated files longer)");
                }
            }
            if let Ok(mut r) = self.shared.registry.lock() {
                r.remove_stream(key, e.stream);
            }
            self.unsaved = true;
        }
    }
}
