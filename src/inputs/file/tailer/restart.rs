//! At startup, what changed while trawl was stopped: files the registry knows that were
//! truncated (maybe by copytruncate), renamed (rotated), or compressed meanwhile.

use super::compressed::{find_compressed, gunzip_prefix, lines_past, MAX_COMPRESSED_PER_FOLDER};
use super::Tailer;
use crate::inputs::file::discovery;
use crate::inputs::file::identity::{end_mark_matches, starts_gzip, FileKey, Fingerprint};
use crate::inputs::file::registry::{Entry, Truncation};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

impl Tailer {
    /// At startup: files the registry knows whose content is no longer what was read of it
    /// (shorter, other first bytes, other bytes before the offset) were truncated while trawl
    /// was stopped, maybe by copytruncate: their old content is remembered as truncated before
    /// any file of this scan is looked at, so that its copy continues the old stream at the
    /// registry's offset instead of being read again from 0 under a new one.
    ///
    /// A file with other first bytes that was created after trawl last saw the entry's file is
    /// not that file truncated but a new one given the inode of the deleted one (ext4 hands a
    /// freed inode to the next file: kubelet deletes the rotated `0.log.<date>` once gzipped,
    /// then containerd creates `0.log`). Its entry is taken out of the registry, so that the
    /// new file is read from its start, and returned: its content may be in a `.gz`.
    pub(super) fn truncated_while_stopped(
        &mut self,
        current: &[(PathBuf, FileKey)],
        now: Instant,
    ) -> Vec<Entry> {
        let mut reused = Vec::new();
        let entries: Vec<(PathBuf, Entry)> = match self.shared.registry.lock() {
            Ok(r) => current
                .iter()
                .filter_map(|(p, k)| r.get(k).map(|e| (p.clone(), e.clone())))
                .collect(),
            Err(_) => return reused,
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
            let other_first_bytes = !e.fingerprint().matches(&f).unwrap_or(true);
            if other_first_bytes && took_a_gone_files_inode(&e, &f, &path) {
                tracing::info!(input = %self.ctx.name, path = %path.display(), was = %e.path, offset = e.offset,
                    "a new file has the inode of a file trawl was reading, deleted while trawl was stopped: reading the new file from its start and looking for the old one's unread lines in a compressed copy");
                if let Ok(mut r) = self.shared.registry.lock() {
                    r.remove(&e.key());
                }
                reused.push(e);
                continue;
            }
            let truncated = md.len() < e.offset
                || other_first_bytes
                || !end_mark_matches(&f, e.mark_at, e.mark).unwrap_or(true);
            if truncated {
                self.remember_truncated(&e, now);
            }
        }
        reused
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
        reused: Vec<Entry>,
    ) {
        let mut missing: HashMap<FileKey, Entry> = match self.shared.registry.lock() {
            Ok(r) => r
                .entries()
                .filter(|e| {
                    let k = e.key();
                    !seen.contains(&k)
                        && !self.tails.contains_key(&k)
                        && !opened.contains_key(&k)
                        && !keep.contains_key(&k)
                })
                .map(|e| (e.key(), e.clone()))
                .collect(),
            Err(_) => return,
        };
        let old_names = missing
            .iter()
            .map(|(k, e)| (*k, PathBuf::from(&e.path)))
            .collect();
        let mut renamed = discovery::find_renamed(&old_names);
        // A symlink re-pointed while trawl was stopped (`current.log` → `app-20261205.log`,
        // was `app-20261204.log`): the file it led to is not beside the link but, most often,
        // beside the file it leads to now. The registry keeps the link's name only.
        let beside_targets: HashMap<FileKey, PathBuf> = old_names
            .iter()
            .filter(|(k, _)| !renamed.iter().any(|(r, _)| r == *k))
            .filter(|(_, p)| is_symlink(p))
            .filter_map(|(k, p)| Some((*k, discovery::link_target(p)?)))
            .collect();
        let by_target = discovery::find_renamed(&beside_targets);
        let only_same_start: HashSet<FileKey> = by_target.iter().map(|(k, _)| *k).collect();
        renamed.extend(by_target);
        for (key, actual) in renamed {
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
            if starts_gzip(&file) {
                // A gzip with the entry's inode: kubelet's `.gz` of a rotated file, which took
                // the inode of one it deleted (with an entry known empty, no first bytes tell
                // them apart), never a text log renamed. Read as text, its compressed bytes
                // would be shipped as lines. Left to the compressed-file search.
                missing.insert(key, entry);
                continue;
            }
            let same_start = entry.fingerprint().matches(&file).unwrap_or(false);
            if !same_start && only_same_start.contains(&key) {
                // Found beside the link's target, where kubelet's rotated and compressed files
                // are: a file there with the inode and other first bytes is one that took the
                // inode after the entry's file was deleted (a `.gz` of it, made within the
                // second trawl last saw it, would pass the birth-time test below), not the
                // entry's file truncated. Left to the compressed-file search.
                missing.insert(key, entry);
                continue;
            }
            if same_start {
                tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %entry.path, offset = entry.offset, "resuming a file renamed while trawl was stopped");
            } else if file
                .metadata()
                .ok()
                .and_then(|md| birth(&entry, &md))
                .is_some_and(|b| b != Birth::Since)
            {
                // Same inode, other first bytes, and the file existed when trawl last saw it:
                // the file it followed, emptied (logrotate's `copytruncate`) and written again
                // before a rotation by rename. What was written since is read from its start
                // (`discovered`: other first bytes), and its old content's copy, if one shows
                // up under `paths`, continues the old stream.
                tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %entry.path, offset = entry.offset, "file truncated and renamed while trawl was stopped: reading it from its start");
                self.remember_truncated(&entry, now);
            } else {
                // Same inode, other first bytes, born since: a new file reused the inode of a
                // deleted one; history not ours. The entry's file may still be found compressed
                // (a `.gz` written after its deletion can be the file that took its inode).
                missing.insert(key, entry);
                continue;
            }
            let name = PathBuf::from(&entry.path);
            if let Some(f) = self.discovered(key, &name, Some(file), true, now) {
                keep.insert(key, (name, f));
            }
        }
        // Their inode is a new file's now: not looked for by inode, only as compressed.
        for e in reused {
            missing.insert(e.key(), e);
        }
        self.compressed_while_stopped(&missing);
    }

    /// At startup, after the renamed files: a file the registry was reading that is gone may
    /// have been compressed meanwhile (kubelet gzips `0.log.<date>` at its next rotation, so a
    /// stop across two rotations of a busy container does it). Found by its first bytes in a
    /// `.gz` beside its name or its link's target, it is read on from its offset in the
    /// decompressed content, under its own name and stream, as if it had only been renamed.
    /// When that cannot be done (no room for the decompressed copy), its lines past the offset
    /// are logged and counted as lost, and the entry moves to the end so that the next start
    /// does not count them again.
    fn compressed_while_stopped(&mut self, missing: &HashMap<FileKey, Entry>) {
        let mut folders: HashMap<PathBuf, Vec<&Entry>> = HashMap::new();
        for e in missing.values().filter(|e| e.fp_len > 0) {
            let name = Path::new(&e.path);
            let target = discovery::link_target(name);
            for folder in [name.parent(), target.as_deref().and_then(Path::parent)]
                .into_iter()
                .flatten()
            {
                let list = folders.entry(folder.to_path_buf()).or_default();
                if !list.iter().any(|x| x.key() == e.key()) {
                    list.push(e);
                }
            }
        }
        let mut counted = HashSet::new();
        for (folder, entries) in folders {
            let Ok(listing) = std::fs::read_dir(&folder) else {
                continue;
            };
            let compressed = listing
                .flatten()
                .map(|i| i.path())
                .filter(|p| p.extension().is_some_and(|x| x == "gz"))
                .take(MAX_COMPRESSED_PER_FOLDER);
            for gz in compressed {
                let Some(prefix) = gunzip_prefix(&gz, entries.iter().map(|e| e.fp_len).max())
                else {
                    continue;
                };
                let Some(e) = entries.iter().find(|e| {
                    !counted.contains(&e.key())
                        && prefix.len() as u64 >= e.fp_len
                        && Fingerprint::of(&prefix[..e.fp_len as usize]) == e.fingerprint()
                }) else {
                    continue;
                };
                let Some((lines, size)) = lines_past(&gz, e.offset) else {
                    tracing::warn!(input = %self.ctx.name, path = %e.path, compressed = %gz.display(), offset = e.offset,
                        "a file trawl was reading seems to have been compressed while trawl was stopped, but the compressed file cannot be read to its end: its unread lines are not read");
                    continue;
                };
                // Same first bytes, but shorter than what was read of the file: another file
                // that began alike (short fingerprints of young files can), not this one.
                if size < e.offset {
                    continue;
                }
                counted.insert(e.key());
                if lines > 0 {
                    match self.resume_compressed(e, &gz) {
                        Ok(()) => {
                            tracing::info!(input = %self.ctx.name, path = %e.path, compressed = %gz.display(), offset = e.offset, lines,
                                "a file trawl was reading was compressed while trawl was stopped: reading its unread lines from the compressed file");
                            continue;
                        }
                        Err(err) => {
                            self.shared.stats.lost(lines);
                            tracing::warn!(input = %self.ctx.name, path = %e.path, compressed = %gz.display(), offset = e.offset, lines, error = %err,
                                "a file trawl was reading was compressed while trawl was stopped and cannot be decompressed to be read: its unread lines are counted in trawl_file_lost_lines_total");
                        }
                    }
                }
                if let Ok(mut r) = self.shared.registry.lock() {
                    r.commit(&e.key(), e.stream, size);
                }
            }
        }
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// `file` (at `path`) is not the file `e` describes but one created after trawl last saw it,
/// given its inode once it was deleted: other first bytes, and born since (`birth`). When its
/// birth and trawl's last sight cannot be told apart (within a clock tick, or the same second
/// in a registry without milliseconds), only if the file `e` describes is found compressed
/// beside `path`'s target (kubelet deletes a rotated file once it is gzipped). Without a birth
/// time, false: the same file emptied and rewritten cannot be told apart.
pub(super) fn took_a_gone_files_inode(e: &Entry, file: &File, path: &Path) -> bool {
    if e.fp_len == 0 || e.fingerprint().matches(file).unwrap_or(true) {
        return false;
    }
    match file.metadata().ok().and_then(|md| birth(e, &md)) {
        Some(Birth::Since) => true,
        Some(Birth::Unsure) => {
            find_compressed(e, &super::scan::link_target(path), e.offset).is_some()
        }
        Some(Birth::Before) | None => false,
    }
}

/// When a file was created against when trawl last saw the file a registry entry describes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Birth {
    /// Created by then: it can be that file.
    Before,
    /// Created since: a new file, which took the inode of that one once it was deleted.
    Since,
    /// Too close to tell.
    Unsure,
}

/// How far apart a birth time and trawl's clock must be to be told apart: the kernel stamps
/// files with a coarse clock, behind the precise one by up to a tick (10 ms at HZ=100).
const CLOCK_TICK_MS: i64 = 10;

/// The birth of a file (`md`) against `e.seen_ms` (or `e.last_seen`'s second in a registry
/// written before milliseconds were kept). `None` where the file system keeps no birth time:
/// neither can be told.
pub(super) fn birth(e: &Entry, md: &std::fs::Metadata) -> Option<Birth> {
    let born = md.created().ok()?;
    let born_ms =
        i64::try_from(born.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    let (born, seen, slack) = if e.seen_ms > 0 {
        (born_ms, e.seen_ms, CLOCK_TICK_MS)
    } else {
        (born_ms.div_euclid(1000), e.last_seen, 0)
    };
    Some(if born > seen + slack {
        Birth::Since
    } else if born < seen - slack {
        Birth::Before
    } else {
        Birth::Unsure
    })
}
