//! Matching what discovery found with what is followed: a file already followed (renamed, or
//! closed and grown), one the registry knows (resumed at its offset), the copy of a truncated
//! file (continuing its stream), or a new file (files waiting for a `max_open_files` slot with
//! no descriptor are kept in `waiting`).

use super::copies::CopyCheck;
use super::restart::took_a_gone_files_inode;
use super::{entry_for, Tailer, COPY_WAIT};
use crate::inputs::file::container;
use crate::inputs::file::discovery::Found;
use crate::inputs::file::identity::{
    end_mark_matches, new_stream_id, starts_gzip, FileKey, Fingerprint,
};
use crate::inputs::file::reader::{Decoder, Tail, TailMeta};
use crate::inputs::file::registry::{now_ms, Truncation};
use crate::inputs::file::StartAt;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

impl Tailer {
    /// Matches what discovery found against what is followed.
    pub(super) fn apply_scan(&mut self, found: &Mutex<Found>, first: bool, now: Instant) {
        self.waiting = 0;
        // Files still empty put themselves back (`defer_empty`).
        self.empty_new.clear();
        let (current, mut opened, rotated, compressed) = match found.lock() {
            Ok(mut f) => {
                f.lent = f.opened.len();
                (
                    std::mem::take(&mut f.current),
                    std::mem::take(&mut f.opened),
                    std::mem::take(&mut f.rotated),
                    std::mem::take(&mut f.compressed),
                )
            }
            Err(_) => return,
        };
        self.take_noted_sizes();
        if !first {
            // At a start, `truncated_while_stopped` tells them apart.
            self.inode_taken_while_held(&current);
        }
        // Waiting longest (since before their rotation and compression): first to get a slot.
        self.resume_waiting_compressed();
        let mut seen: HashSet<FileKey> = HashSet::new();
        let mut keep: HashMap<FileKey, (PathBuf, File)> = HashMap::new();
        let wall = now_ms();
        let mut reused = if first {
            self.truncated_while_stopped(&current, now)
        } else {
            Vec::new()
        };
        for (path, key) in &current {
            if !seen.insert(*key) || self.ignored.contains(key) {
                continue;
            }
            if self.tails.contains_key(key) {
                self.rediscovered(*key, path);
            } else {
                let file = opened.remove(key).map(|(_, f)| f);
                if let Some(f) = self.discovered(*key, path, file, first, now) {
                    keep.insert(*key, (path.clone(), f));
                }
            }
        }
        // Rotated while trawl was not running: what the registry knows is resumed at its
        // offset; an unknown one is read from its start only when it was written since trawl
        // first ran (`written_since_first_run`), else it is older history, not ours to ship.
        // After the first turn, the rotated files are those beside a new link's target: a
        // container's first `0.log`, rotated before a scan found its link (a fast writer, a
        // scan every `scan_interval` without `watch_events`), is read if written since then.
        for (name, key, actual) in &rotated {
            if self.tails.contains_key(key)
                || opened.contains_key(key)
                || seen.contains(key)
                || self.ignored.contains(key)
            {
                continue;
            }
            let entry = self.entry(key);
            let mut known = entry.is_some();
            if let Some(e) = entry.filter(|_| first) {
                // kubelet deletes `0.log.<t>` once gzipped and creates files at each rotation:
                // the registry's file may be gone, its inode taken by a rotated file made while
                // trawl was stopped. That file is new, and the old one's unread lines are looked
                // for in its `.gz` (`resume_renamed_while_stopped`).
                if File::open(actual).is_ok_and(|f| took_a_gone_files_inode(&e, &f, actual)) {
                    tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %e.path, offset = e.offset,
                        "a rotated file has the inode of a file trawl was reading, deleted while trawl was stopped: looking for the old one's unread lines in a compressed copy");
                    if let Ok(mut r) = self.shared.registry.lock() {
                        r.remove(key);
                    }
                    reused.push(e);
                    known = false;
                }
            }
            let ours = if first {
                self.written_since_first_run(actual)
            } else {
                self.written_since_registry(actual)
            };
            if !known && !ours {
                continue;
            }
            match File::open(actual) {
                Ok(f) if starts_gzip(&f) => {
                    // Compressed under a plain name (a `.gz` being written, a rotation scheme's
                    // own): read as text, its bytes would be shipped as lines.
                    tracing::info!(input = %self.ctx.name, path = %actual.display(), "a rotated file is gzip-compressed under a name without .gz: not read as text");
                }
                Ok(f) => {
                    if known {
                        tracing::info!(input = %self.ctx.name, path = %actual.display(), "resuming a file rotated while trawl was stopped");
                    } else {
                        tracing::info!(input = %self.ctx.name, path = %actual.display(), "reading a rotated file trawl never saw, written since it first ran (created and rotated while trawl was stopped, or before it got to it)");
                    }
                    if let Some(f) = self.discovered(*key, name, Some(f), first, now) {
                        keep.insert(*key, (name.clone(), f));
                    }
                }
                Err(e) => self.warn_open(actual, &e),
            }
        }
        self.follow_copies_beside_targets(&seen, &opened, &mut keep, first, now);
        if first {
            self.resume_renamed_while_stopped(&seen, &opened, &mut keep, now, reused);
        }
        // After the files the registry knows were found in theirs.
        self.read_unknown_compressed(&compressed, first);
        // Opened by discovery, then renamed away or deleted before this turn: still read.
        for (key, (path, file)) in opened {
            if self.tails.contains_key(&key) || self.ignored.contains(&key) {
                continue;
            }
            if let Some(f) = self.discovered(key, &path, Some(file), first, now) {
                keep.insert(key, (path, f));
            }
        }
        for (key, tail) in self.tails.iter_mut() {
            if seen.contains(key) {
                tail.unseen_since = None;
            } else if tail.unseen_since.is_none() {
                tail.unseen_since = Some(now);
            }
        }
        if let Ok(mut r) = self.shared.registry.lock() {
            // Files waiting for an open slot (or to be told apart from a copy) exist too.
            for (_, key) in &current {
                r.seen(key, wall);
            }
        }
        self.maybe_copies.retain(|k, _| keep.contains_key(k));
        // Only after this scan's files were matched with them: a reader held up (a full pipeline
        // during an output outage) for longer than `TRUNCATION_KEPT` after seeing a truncation
        // applies its next scan late, and that scan has the copy.
        self.expire_truncations(now);
        self.skipped_while_waiting(&seen, &keep);
        if let Ok(mut f) = found.lock() {
            f.followed = self
                .tails
                .keys()
                .chain(self.ignored.iter())
                .copied()
                .collect();
            for (k, v) in keep {
                f.opened.entry(k).or_insert(v);
            }
            f.renamed_waiting.append(&mut self.renamed_waiting);
            f.lent = 0;
            if f.current.is_empty() {
                f.current = current;
            }
        }
        if let Ok(mut r) = self.shared.registry.lock() {
            for (key, tail) in &self.tails {
                r.touch(key, tail.meta.path(), tail.fp, wall);
            }
            if first {
                // Written once now, so that a restart knows trawl ran before, even with no file.
                r.mark_dirty();
            }
        }
        if first {
            self.shared
                .scanned
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.record_marks();
        // Files reopened (grown) or let go by this scan.
        self.publish_closed();
        if std::mem::take(&mut self.waiting_recorded)
            && super::super::save_blocking(&self.shared, None).is_err()
        {
            // Logged by the writer; the next batch sent tries again.
            self.unsaved = true;
        }
        if self.waiting > 0 && !self.limit_logged {
            self.limit_logged = true;
            tracing::warn!(input = %self.ctx.name, max_open_files = self.config.max_open_files, waiting = self.waiting,
                "max_open_files reached: files wait for a slot; files idle at their end are closed to let them in and reopened when they grow (logged once)");
        }
    }

    /// Where reading a file not read in this run (`key`, at `path`) resumes: the registry's
    /// offset when the entry under its inode is this file, 0 when the file there now has other
    /// first bytes or is shorter (a new file given a deleted one's inode, or a truncated one:
    /// `discovered` reads both from 0). What a file deleted while it waits for a slot loses
    /// is counted from here. A file gone already is taken at the registry's word.
    pub(super) fn resumes_at(&self, key: &FileKey, path: &Path) -> u64 {
        let Some(e) = self.entry(key) else {
            return 0;
        };
        let Some((file, len)) = File::open(path).ok().and_then(|f| {
            let md = f.metadata().ok()?;
            (FileKey::of(&md) == *key).then_some((f, md.len()))
        }) else {
            return e.offset;
        };
        if len >= e.offset && e.fingerprint().matches(&file).unwrap_or(true) {
            e.offset
        } else {
            0
        }
    }

    /// A file already followed: renamed within `paths`, or closed and grown again.
    pub(super) fn rediscovered(&mut self, key: FileKey, path: &Path) {
        let open = self.open_count();
        let max_open = self.config.max_open_files;
        let Some(tail) = self.tails.get_mut(&key) else {
            return;
        };
        // The scan may be older than this turn (a reader held up by a full pipeline, or
        // `make_room` applying it again): by now its path may name another file (this one
        // renamed away, a new one created in its place), which is not this file grown.
        // Opened as this file, the new one's lines went out under this file's stream, which
        // was then restarted as if truncated, and this file's own lines were read again
        // from 0 once found under its new name.
        let Some(md) = std::fs::metadata(path)
            .ok()
            .filter(|m| FileKey::of(m) == key)
        else {
            return;
        };
        if tail.path != path {
            tail.path = path.to_path_buf();
            tail.meta.set_path(path.display().to_string());
        }
        if tail.is_open() {
            return;
        }
        // Checked against the same file as above: the name may have moved on since.
        let Some(size) = Some(md.len()).filter(|&s| s != tail.position()) else {
            return;
        };
        if open >= max_open {
            tracing::debug!(input = %self.ctx.name, path = %path.display(), offset = tail.position(), "closed file grew: waiting for a slot");
            self.waiting += 1;
            self.waiting_unopened
                .insert(key, (path.to_path_buf(), tail.position(), size));
            return;
        }
        self.waiting_unopened.remove(&key);
        match File::open(path) {
            Ok(f) if f.metadata().is_ok_and(|m| FileKey::of(&m) == key) => {
                let same = tail.fp.matches(&f).unwrap_or(false);
                tail.reopen(f);
                if !same {
                    // Truncated and rewritten while closed (copytruncate of an idle file, or
                    // one closed while backing off): its old content may reappear as a copy,
                    // which must continue its stream, not start a new one.
                    let _ = self.on_truncated(key);
                }
            }
            // Renamed between the two looks: found under its new name by a later scan.
            Ok(_) => {}
            Err(e) => self.warn_open(path, &e),
        }
    }

    pub(super) fn warn_open(&mut self, path: &Path, e: &std::io::Error) {
        if self.warned_open.insert(path.to_path_buf()) {
            tracing::warn!(input = %self.ctx.name, path = %path.display(), error = %e, "cannot open file (logged once per file)");
            self.ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A file not followed in this run: resumed from the registry, recognised as the copy of a
    /// truncated file, or new.
    /// Gives the file back when it should be looked at again at the next scan.
    pub(super) fn discovered(
        &mut self,
        key: FileKey,
        path: &Path,
        file: Option<File>,
        first: bool,
        now: Instant,
    ) -> Option<File> {
        if self.open_count() >= self.config.max_open_files {
            self.waiting += 1;
            self.record_waiting(key, path, file.as_ref(), first);
            if file.is_none() {
                // Deleted since the scan listed it, its size is what was noted before, not 0:
                // else its deletion would be taken for one with nothing unread, and not counted.
                let noted = self.waiting_unopened.get(&key).map_or(0, |w| w.2);
                let size = std::fs::metadata(path)
                    .ok()
                    .filter(|m| FileKey::of(m) == key)
                    .map_or(noted, |m| m.len());
                let read_to = self.resumes_at(&key, path);
                self.waiting_unopened
                    .insert(key, (path.to_path_buf(), read_to, size));
            } else {
                self.waiting_unopened.remove(&key);
            }
            return file;
        }
        self.waiting_unopened.remove(&key);
        let file = match file {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    self.warn_open(path, &e);
                    return None;
                }
            },
        };
        let Ok(md) = file.metadata() else { return None };
        if FileKey::of(&md) != key {
            return None;
        }
        let Ok(first_bytes) = super::super::identity::read_first(&file, self.fp_max) else {
            return None;
        };
        let fp = Fingerprint::of(&first_bytes);
        let size = md.len();
        self.check_originals(key, &first_bytes);
        let known = self.entry(&key);
        let same_start = known
            .as_ref()
            .filter(|e| e.fingerprint().matches(&file).unwrap_or(false));
        // Put in the registry as the copy of a truncated file while it waited for a slot: it
        // continues where reading of that file stopped, as if it had had a slot at once.
        let truncations = self.truncations();
        let waited_as_copy = known.as_ref().and_then(|e| {
            truncations
                .iter()
                .find(|t| t.stream == e.stream && t.is_copy(key, &file, size))
        });
        let copy = truncations.iter().find(|t| t.is_copy(key, &file, size));
        // The epoch the stream is read under: a copy continues its original's (`retry`).
        let mut epoch = 0;
        // The truncated content this file is the copy of, taken from the registry when its
        // entry is put there (at once, so that an acknowledgement finds one or the other).
        let mut continues = None;
        let (offset, stream, committed) = if let Some(t) = waited_as_copy {
            let committed = known.as_ref().map_or(t.committed, |e| e.offset).min(size);
            epoch = t.epoch;
            continues = Some(t.stream);
            (t.resume_in_copy(size).max(committed), t.stream, committed)
        } else if let Some(e) = same_start.filter(|e| {
            e.offset <= size && end_mark_matches(&file, e.mark_at, e.mark).unwrap_or(false)
        }) {
            (e.offset, e.stream, e.offset)
        } else if let Some(e) = same_start {
            // Its first bytes are the same, but it is shorter than what was read, or the bytes
            // before where reading stopped changed: truncated and rewritten while trawl was
            // stopped. The new content is read from its start (whatever `start_at` says).
            tracing::info!(input = %self.ctx.name, path = %path.display(), offset = e.offset, "file truncated while trawl was stopped: reading it again from the start");
            self.salt += 1;
            (0, new_stream_id(key, fp, self.salt), 0)
        } else if let Some(t) = copy {
            let offset = t.resume_in_copy(size);
            if offset < t.position {
                tracing::info!(input = %self.ctx.name, path = %path.display(), was = %t.path, read_to = t.position, offset, "copy of a truncated file, shorter than what was read of it (lines written between copy and truncation): continuing at its end");
            } else {
                tracing::info!(input = %self.ctx.name, path = %path.display(), was = %t.path, offset, "copy of a truncated file: continuing where reading stopped");
            }
            self.unsaved = true;
            epoch = t.epoch;
            continues = Some(t.stream);
            (offset, t.stream, t.committed.min(offset))
        } else {
            match self.may_be_copy(key, &file, &first_bytes, size) {
                // The tail it may copy has not read its file to the end: a truncation would be
                // seen there before the next read, so wait for that, however long it takes.
                CopyCheck::OfTailBehind => return Some(file),
                CopyCheck::Maybe => {
                    let since = *self.maybe_copies.entry(key).or_insert(now);
                    if now.saturating_duration_since(since) < COPY_WAIT {
                        return Some(file);
                    }
                }
                CopyCheck::No => {}
            }
            if self.ignored_as_older(&md) {
                self.ignored.insert(key);
                return None;
            }
            if size == 0 {
                return self.defer_empty(key, path, file);
            }
            let offset = if first && self.first_start && self.config.start_at == StartAt::End {
                size
            } else {
                0
            };
            self.salt += 1;
            self.unsaved = true;
            (offset, new_stream_id(key, fp, self.salt), offset)
        };
        self.maybe_copies.remove(&key);
        let meta = TailMeta::new(
            key,
            stream,
            epoch,
            path.display().to_string(),
            container::kubernetes_metadata(path),
        );
        let decoder = Decoder::new(self.config.format, self.multiline.clone(), self.max_line)
            .with_join_wait(self.config.close_removed.std());
        // Read from 0, the fingerprint grows from the bytes read; otherwise it is what was seen.
        let prefix = if offset == 0 { Vec::new() } else { first_bytes };
        let tail = Tail::new(
            meta,
            path.to_path_buf(),
            prefix,
            file,
            offset,
            decoder,
            self.max_line,
        );
        let mut entry = entry_for(&tail, committed);
        if let Ok(mut r) = self.shared.registry.lock() {
            if let Some(t) = continues.and_then(|s| r.take_truncation(s)) {
                if offset < t.position {
                    r.set_copy_end(t.stream, offset);
                }
                // Acknowledged meanwhile; not past the copy's end (a copy shorter than what
                // was read): a restart would take the copy for a truncated file.
                entry.offset = entry.offset.max(t.committed.min(offset));
            }
            r.put(entry);
        }
        tracing::debug!(input = %self.ctx.name, path = %path.display(), offset, "following file");
        self.tails.insert(key, tail);
        None
    }

    /// A new file found empty: nothing tells yet whether it is a file of its own or a copy being
    /// written (`cp`, as logrotate's `copytruncate` does, creates the copy empty and fills it
    /// after; a scan can come between). Followed now, it would get a new stream and read its
    /// copied lines from 0 under other ids; so it is decided once it has bytes
    /// (`decide_grown_empty`). Its descriptor is kept with discovery's, so that bytes written
    /// and then deleted before that are still read.
    pub(super) fn defer_empty(&mut self, key: FileKey, path: &Path, file: File) -> Option<File> {
        self.maybe_copies.remove(&key);
        if std::fs::metadata(path).is_ok_and(|m| FileKey::of(&m) == key) {
            self.empty_new.insert(key, path.to_path_buf());
            Some(file)
        } else {
            // Renamed or deleted while empty: wherever it is now, a later scan finds it.
            None
        }
    }

    /// One file found empty, by the descriptor kept for it or one opened now (at the same
    /// file, or the next scan finds it wherever it went): followed if it has bytes now. Returns
    /// the descriptor to keep while it is still empty or waits for a slot, when `may_keep`.
    fn decide_if_grown(
        &mut self,
        key: FileKey,
        path: &Path,
        held: Option<File>,
        may_keep: bool,
        now: Instant,
    ) -> Option<File> {
        let file = match held {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => f,
                Err(_) => {
                    self.empty_new.remove(&key);
                    return None;
                }
            },
        };
        let grown = match file.metadata() {
            Ok(m) if FileKey::of(&m) == key => m.len() > 0,
            _ => {
                self.empty_new.remove(&key);
                return None;
            }
        };
        if !grown {
            return may_keep.then_some(file);
        }
        self.empty_new.remove(&key);
        if may_keep {
            self.discovered(key, path, Some(file), false, now)
        } else {
            // Waiting with no descriptor, its deletion is counted (`skipped_while_waiting`).
            drop(file);
            self.discovered(key, path, None, false, now)
        }
    }

    /// The new files found empty that have bytes now (looked at once per `poll`) are decided
    /// at once, as any new file found by a scan is (`discovered`): the copy of a truncated file
    /// continues its stream, the rest are new. Not by applying the last scan again: its other
    /// files would be decided from what it saw then.
    pub(super) fn decide_grown_empty(
        &mut self,
        found: &Mutex<Found>,
        now: Instant,
        poll: Duration,
    ) {
        if self.empty_new.is_empty()
            || self
                .empty_checked_at
                .is_some_and(|at| now.saturating_duration_since(at) < poll)
        {
            return;
        }
        self.empty_checked_at = Some(now);
        let candidates: Vec<(FileKey, PathBuf)> = self
            .empty_new
            .iter()
            .map(|(k, p)| (*k, p.clone()))
            .collect();
        for (key, path) in candidates {
            if self.tails.contains_key(&key) || self.ignored.contains(&key) {
                self.empty_new.remove(&key);
                continue;
            }
            // A descriptor taken from discovery's, or a place reserved among them for the
            // one opened to look: kept while the file waits, it must not make discovery hold
            // more than `max_open_files`.
            let max_open = self.config.max_open_files.max(1);
            let (held, lent) = found
                .lock()
                .ok()
                .map(|mut f| {
                    let held = f.opened.remove(&key).map(|(_, file)| file);
                    let lent = held.is_some() || f.opened.len() + f.lent < max_open;
                    f.lent += usize::from(lent);
                    (held, lent)
                })
                .unwrap_or((None, false));
            let back = self.decide_if_grown(key, &path, held, lent, now);
            if let Ok(mut f) = found.lock() {
                f.lent -= usize::from(lent);
                if let Some(file) = back {
                    f.opened.entry(key).or_insert((path, file));
                }
            }
        }
        if std::mem::take(&mut self.waiting_recorded)
            && super::super::save_blocking(&self.shared, None).is_err()
        {
            self.unsaved = true;
        }
    }

    /// The truncated contents waiting for their copy.
    pub(super) fn truncations(&self) -> Vec<Truncation> {
        self.shared
            .registry
            .lock()
            .map(|r| r.truncations().to_vec())
            .unwrap_or_default()
    }

    /// A rotated file beside a link's target that the registry does not know (`path`): ours
    /// when it was last written after the registry was first written, that is after trawl first
    /// ran, and within `forget_after` (an entry forgotten for being unseen that long is older
    /// than that, and was shipped). kubelet creates `0.log` and renames it away on its own
    /// schedule: one created while trawl was down, or while it waited for a slot or on a full
    /// pipeline and was then killed, is in no registry, and its lines are the user's.
    pub(super) fn written_since_first_run(&self, path: &Path) -> bool {
        !self.first_start && self.written_since_registry(path)
    }

    /// Last written after the registry was first written (at this start, when there was
    /// none) and within `forget_after`.
    pub(super) fn written_since_registry(&self, path: &Path) -> bool {
        let Some(written_ms) = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
        else {
            return false;
        };
        let Ok(since) = self.shared.registry.lock().map(|r| r.since_ms()) else {
            return false;
        };
        let forget_ms =
            i64::try_from(self.config.forget_after.std().as_millis()).unwrap_or(i64::MAX);
        written_ms > since && written_ms > now_ms().saturating_sub(forget_ms)
    }

    pub(super) fn ignored_as_older(&self, md: &std::fs::Metadata) -> bool {
        let Some(limit) = self.config.ignore_older.positive() else {
            return false;
        };
        md.modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > limit)
    }
}

/// Where `path` leads: its canonical path, or, for a link whose target is gone (kubelet renamed
/// `0.log` away and has not created the next one yet), the target it names, so that the
/// renamed file is looked for in the target's folder, not the link's.
pub(super) fn link_target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| {
            std::fs::read_link(path).map(|t| match path.parent() {
                Some(dir) if t.is_relative() => dir.join(t),
                _ => t,
            })
        })
        .unwrap_or_else(|_| path.to_path_buf())
}
