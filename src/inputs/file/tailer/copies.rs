//! Telling a new file that is the copy of a known one (logrotate's `copytruncate`) from a file
//! of its own: its first bytes are compared with what trawl read of the files it follows and
//! with the fingerprints of the files its registry knows, so that a copy continues the stream
//! of its original (same document ids) instead of being read again under a new one.

use super::Tailer;
use crate::inputs::file::identity::{
    end_mark_matches, new_stream_id, read_first, FileKey, Fingerprint,
};
use crate::inputs::file::registry::{Entry, Truncation};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

/// Whether a new file may be the copy of a followed or truncated one (copytruncate).
pub(super) enum CopyCheck {
    No,
    /// Its first bytes are those of a file still being read: decided once that one is read.
    OfTailBehind,
    /// Its first bytes match, but nothing is left to read: wait a little for a truncation.
    Maybe,
}

impl Tailer {
    /// A new file (`new`, first bytes `first`) starts like a file trawl knows and is not reading
    /// now: a followed file that is closed (idle, backing off after a failed batch, or sharing
    /// slots), or one its registry knows that waits for a slot under `max_open_files` (after a
    /// restart, no tail follows it yet). That file is looked at now, and if it was truncated
    /// since (copytruncate), its old content is recorded as truncated so that the copy
    /// continues its stream. Otherwise the copy would be taken for a new file, read from 0
    /// under another stream id, and stored again by Elasticsearch under other `_id`s.
    pub(super) fn check_originals(&mut self, new: FileKey, first: &[u8]) {
        let candidates: Vec<FileKey> = self
            .tails
            .iter()
            .filter(|(_, t)| !t.is_open() && starts_with(first, t.prefix()))
            .map(|(k, _)| *k)
            .collect();
        for key in candidates {
            let Some(tail) = self.tails.get(&key) else {
                continue;
            };
            let Ok(f) = File::open(&tail.path) else {
                continue;
            };
            let Ok(md) = f.metadata() else { continue };
            if FileKey::of(&md) != key {
                continue;
            }
            let (at, mark) = tail.end_mark().unwrap_or((0, 0));
            let truncated = md.len() < tail.position()
                || !tail.fp.matches(&f).unwrap_or(true)
                || !end_mark_matches(&f, at, mark).unwrap_or(true);
            if truncated {
                let _ = self.on_truncated(key);
            }
        }
        for e in self.known_not_followed(new, first) {
            self.truncated_while_waiting(e);
        }
    }

    /// The registry's entries of files no tail follows (waiting for a slot) whose fingerprint
    /// `first` matches, with something read (maybe delivered though not committed yet: offset
    /// 0 on disk after a kill -9), whose stream no other file continues yet.
    fn known_not_followed(&self, new: FileKey, first: &[u8]) -> Vec<Entry> {
        let Ok(r) = self.shared.registry.lock() else {
            return Vec::new();
        };
        // Fingerprints cover up to `fingerprint_bytes`, fewer for files that were short: one
        // hash of `first` per length, not one per entry.
        let mut hashes: HashMap<u64, u64> = HashMap::new();
        let candidates: Vec<Entry> = r
            .entries()
            .filter(|e| {
                e.fp_len > 0
                    && e.fp_len <= first.len() as u64
                    && *hashes
                        .entry(e.fp_len)
                        .or_insert_with(|| Fingerprint::of(&first[..e.fp_len as usize]).hash)
                        == e.fp
                    && e.key() != new
                    && !self.tails.contains_key(&e.key())
            })
            .cloned()
            .collect();
        candidates
            .into_iter()
            .filter(|e| {
                !r.entries()
                    .any(|o| o.stream == e.stream && o.key() != e.key())
                    && !r.truncations().iter().any(|t| t.stream == e.stream)
            })
            .collect()
    }

    /// A file the registry knows and no tail follows (`e`): if it was truncated since what was
    /// delivered of it (shorter, other first bytes, other bytes before the offset), its old
    /// content is remembered as truncated, to be continued by its copy from where delivery
    /// stopped, and the file gets a new stream read from 0, as `on_truncated` does for a file
    /// being read. Both reach the registry's file before the next batch leaves.
    fn truncated_while_waiting(&mut self, e: Entry) {
        let Ok(f) = File::open(&e.path) else { return };
        let Ok(md) = f.metadata() else { return };
        if FileKey::of(&md) != e.key() {
            return;
        }
        let truncated = md.len() < e.offset
            || !e.fingerprint().matches(&f).unwrap_or(true)
            || !end_mark_matches(&f, e.mark_at, e.mark).unwrap_or(true);
        if !truncated {
            return;
        }
        tracing::info!(input = %self.ctx.name, path = %e.path, offset = e.offset,
            "file truncated while waiting for a slot: its copy continues where delivery stopped");
        let fp = Fingerprint::of(&read_first(&f, self.fp_max).unwrap_or_default());
        self.salt += 1;
        let stream = new_stream_id(e.key(), fp, self.salt);
        if let Ok(mut r) = self.shared.registry.lock() {
            r.add_truncation(Truncation {
                dev: e.dev,
                ino: e.ino,
                path: e.path.clone(),
                fp_len: e.fp_len,
                fp: e.fp,
                stream: e.stream,
                position: e.offset,
                committed: e.offset,
                // No tail read it in this run, so no batch of it failed in this run.
                epoch: 0,
                failed_lines: 0,
                at: Instant::now(),
            });
            let key = e.key();
            r.put(Entry::seen_now(e.path, key, fp, stream, 0));
        }
        self.unsaved = true;
        self.waiting_recorded = true;
    }

    /// Whether a new file (`new`) could be the copy, maybe still being written, of a followed
    /// file about to be truncated, of a known file waiting for a slot, or of a truncated
    /// content: its first bytes are theirs. `first` is the file's first bytes as just read:
    /// compared in memory with every tail's and every fingerprint, as thousands of new files
    /// against thousands of tails (`max_open_files` rounds) would otherwise cost a read each.
    pub(super) fn may_be_copy(
        &self,
        new: FileKey,
        file: &File,
        first: &[u8],
        size: u64,
    ) -> CopyCheck {
        if size == 0 {
            return CopyCheck::No;
        }
        // Compared with the bytes each tail read, not its file's current content: the file may
        // already hold the next content when its copy shows up.
        let mut live = false;
        for t in self.tails.values() {
            // A file followed from 0 that nothing was read of yet (new in the same scan, or
            // decided this turn after it was found empty) has no bytes read to compare: what it
            // will read is its file's start, which the copy may hold.
            let unread;
            let prefix = if t.prefix().is_empty() && t.position() == 0 {
                unread = t
                    .file()
                    .and_then(|f| read_first(f, self.fp_max).ok())
                    .unwrap_or_default();
                &unread[..]
            } else {
                t.prefix()
            };
            if starts_with(first, prefix) {
                live = true;
                let behind = t
                    .file()
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| m.len() != t.position());
                if behind {
                    return CopyCheck::OfTailBehind;
                }
            }
        }
        // A known file waiting for a slot with these first bytes may be truncated next.
        let live = live || !self.known_not_followed(new, first).is_empty();
        let of_truncated = self.truncations().iter().any(|t| {
            size < t.fp_len || (size < t.position && t.fingerprint().matches(file).unwrap_or(false))
        });
        if live || of_truncated {
            CopyCheck::Maybe
        } else {
            CopyCheck::No
        }
    }
}

impl Tailer {
    /// Follows the copies of truncated files found beside a link's target, outside `paths`
    /// (`copies_beside_targets`), as a copy found under `paths` is (`discovered`: it continues
    /// the truncated content's stream where reading stopped), so that the lines written between
    /// the last read and the truncation are read from there. A scan's step: `seen`, `opened`
    /// and `keep` are the scan's.
    pub(super) fn follow_copies_beside_targets(
        &mut self,
        seen: &HashSet<FileKey>,
        opened: &HashMap<FileKey, (PathBuf, File)>,
        keep: &mut HashMap<FileKey, (PathBuf, File)>,
        first: bool,
        now: Instant,
    ) {
        for (name, key, actual) in self.copies_beside_targets(seen) {
            if opened.contains_key(&key) || keep.contains_key(&key) || self.ignored.contains(&key) {
                continue;
            }
            match File::open(&actual) {
                Ok(f) => {
                    tracing::info!(input = %self.ctx.name, path = %actual.display(), link = %name.display(),
                        "copy of a truncated file beside the file its link leads to: continuing where reading stopped");
                    if let Some(f) = self.discovered(key, &name, Some(f), first, now) {
                        keep.insert(key, (name, f));
                    }
                }
                Err(e) => self.warn_open(&actual, &e),
            }
        }
    }

    /// Copies of truncated files made beside the file a symlink under `paths` leads to, not
    /// under `paths` (logrotate's `copytruncate` of a container log: `app.log` → `app.log.1` in
    /// the target's folder, read through `/var/log/containers/*.log`). No scan finds them, and
    /// the lines written between the last read and the truncation are only there. Looked for,
    /// while truncated contents wait for their copy, as `<target>.<suffix>` (compressed ones
    /// left out) whose first bytes are the truncated content's; each with the link's name
    /// (the events' `log.file.path`, as for a rotated file), its identity and where it is.
    fn copies_beside_targets(
        &self,
        followed: &HashSet<FileKey>,
    ) -> Vec<(PathBuf, FileKey, PathBuf)> {
        let mut out = Vec::new();
        let mut listed = HashSet::new();
        for t in self.truncations() {
            let name = PathBuf::from(&t.path);
            let is_link =
                std::fs::symlink_metadata(&name).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                continue;
            }
            let target = super::scan::link_target(&name);
            let (Some(dir), Some(file_name)) = (target.parent(), target.file_name()) else {
                continue;
            };
            if !listed.insert(target.clone()) {
                continue;
            }
            let prefix = format!("{}.", file_name.to_string_lossy());
            let Ok(listing) = std::fs::read_dir(dir) else {
                continue;
            };
            for item in listing.flatten().take(MAX_LOOKED_AT_PER_TARGET) {
                let n = item.file_name();
                let n = n.to_string_lossy();
                if !n.starts_with(&prefix) || n.ends_with(".gz") {
                    continue;
                }
                let Ok(md) = item.metadata() else { continue };
                let key = FileKey::of(&md);
                if !md.is_file() || followed.contains(&key) || self.tails.contains_key(&key) {
                    continue;
                }
                let Ok(f) = File::open(item.path()) else {
                    continue;
                };
                if t.is_copy(key, &f, md.len()) {
                    out.push((name.clone(), key, item.path()));
                }
            }
        }
        out
    }
}

/// Most files looked at beside one link target for a copy (kubelet and logrotate keep a few).
const MAX_LOOKED_AT_PER_TARGET: usize = 64;

/// Whether a file's first bytes (`first`: all of them, up to the fingerprint size) begin like
/// `prefix`, as far as both go.
fn starts_with(first: &[u8], prefix: &[u8]) -> bool {
    let k = prefix.len().min(first.len());
    k > 0 && first[..k] == prefix[..k]
}
