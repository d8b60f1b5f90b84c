//! At startup, what changed while trawl was stopped: files the registry knows that were
//! truncated (maybe by copytruncate) or renamed (rotated) meanwhile.

use super::Tailer;
use crate::inputs::file::discovery;
use crate::inputs::file::identity::{end_mark_matches, FileKey};
use crate::inputs::file::registry::{Entry, Truncation};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

impl Tailer {
    /// At startup: files the registry knows whose content is no longer what was read of it
    /// (shorter, other first bytes, other bytes before the offset) were truncated while trawl
    /// was stopped, maybe by copytruncate: their old content is remembered as truncated before
    /// any file of this scan is looked at, so that its copy continues the old stream at the
    /// registry's offset instead of being read again from 0 under a new one.
    pub(super) fn truncated_while_stopped(&mut self, current: &[(PathBuf, FileKey)], now: Instant) {
        let entries: Vec<(PathBuf, Entry)> = match self.shared.registry.lock() {
            Ok(r) => current
                .iter()
                .filter_map(|(p, k)| r.get(k).map(|e| (p.clone(), e.clone())))
                .collect(),
            Err(_) => return,
        };
        for (path, e) in entries {
            let Ok(f) = File::open(&path) else { continue };
            let Ok(md) = f.metadata() else { continue };
            // Offset 0 with first bytes known: lines may have been delivered that the registry
            // on disk had not committed yet at a kill -9 (one `registry_flush`); its copy must
            // continue the stream from 0, so that those lines keep their ids.
            if FileKey::of(&md) != e.key() || e.fp_len == 0 {
                continue;
            }
            let truncated = md.len() < e.offset
                || !e.fingerprint().matches(&f).unwrap_or(true)
                || !end_mark_matches(&f, e.mark_at, e.mark).unwrap_or(true);
            if truncated {
                self.remember_truncated(&e, now);
            }
        }
    }

    /// The content `e` describes is no longer in its file: kept as truncated, for its copy to
    /// continue its stream from the registry's offset.
    fn remember_truncated(&self, e: &Entry, now: Instant) {
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
                epoch: 0,
                failed_lines: 0,
                at: now,
            });
        }
    }

    /// At startup: files the registry has that are no longer under `paths` because they were
    /// renamed (rotated: `app.log` → `app.log.1`, `app.log-20261130`) while trawl was stopped.
    /// Each is looked for in its old folder by device + inode, confirmed by its first bytes, and
    /// resumed at its offset under the name it had (as a rotation seen while running keeps it).
    pub(super) fn resume_renamed_while_stopped(
        &mut self,
        seen: &HashSet<FileKey>,
        opened: &HashMap<FileKey, (PathBuf, File)>,
        keep: &mut HashMap<FileKey, (PathBuf, File)>,
        now: Instant,
    ) {
        let mut missing: HashMap<FileKey, Entry> = match self.shared.registry.lock() {
            Ok(r) => r
                .entries()
                .filter(|e| {
                    let k = e.key();
                    !seen.contains(&k) && !self.tails.contains_key(&k) && !opened.contains_key(&k)
                })
                .map(|e| (e.key(), e.clone()))
                .collect(),
            Err(_) => return,
        };
        let old_names = missing
            .iter()
            .map(|(k, e)| (*k, PathBuf::from(&e.path)))
            .collect();
        for (key, actual) in discovery::find_renamed(&old_names) {
            let Some(entry) = missing.remove(&key) else {
                continue;
            };
            let file = match File::open(&actual) {
                Ok(f) => f,
                Err(e) => {
                    self.warn_open(&actual, &e);
                    continue;
                }
            };
            if entry.fingerprint().matches(&file).unwrap_or(false) {
                tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %entry.path, offset = entry.offset, "resuming a file renamed while trawl was stopped");
            } else if born_by(&file, entry.last_seen) {
                // Same inode, other first bytes, and the file existed when trawl last saw it:
                // the file it followed, emptied (logrotate's `copytruncate`) and written again
                // before a rotation by rename. What was written since is read from its start
                // (`discovered`: other first bytes), and its old content's copy, if one shows
                // up under `paths`, continues the old stream.
                tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %entry.path, offset = entry.offset, "file truncated and renamed while trawl was stopped: reading it from its start");
                self.remember_truncated(&entry, now);
            } else {
                // Same inode, other first bytes, born since: a new file reused the inode of a
                // deleted one; history not ours.
                continue;
            }
            let name = PathBuf::from(&entry.path);
            if let Some(f) = self.discovered(key, &name, Some(file), true, now) {
                keep.insert(key, (name, f));
            }
        }
    }
}

/// Whether `file` was created no later than `secs` (Unix time): the file a registry entry last
/// seen then describes, not one that took its inode after it was deleted. False where the file
/// system keeps no birth time.
fn born_by(file: &File, secs: i64) -> bool {
    file.metadata()
        .and_then(|m| m.created())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|born| i64::try_from(born.as_secs()).is_ok_and(|b| b <= secs))
}
