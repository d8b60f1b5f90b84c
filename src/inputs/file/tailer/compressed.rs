//! Files trawl had not finished reading that were compressed (kubelet gzips `0.log.<time>`
//! and deletes it): found again by their first bytes in a `.gz`, and read on from there.

use super::Tailer;
use crate::inputs::file::container;
use crate::inputs::file::identity::{new_stream_id, FileKey, Fingerprint};
use crate::inputs::file::reader::{Decoder, Tail, TailMeta};
use crate::inputs::file::registry::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A file waiting for a `max_open_files` slot, no longer under its name, whose content was
/// found compressed: read from the `.gz` once it gets a slot.
pub(super) struct WaitingCompressed {
    /// The registry's entry for the file, at the offset its unread content starts.
    pub entry: Entry,
    pub gz: PathBuf,
}

impl Tailer {
    /// A file waiting for a slot (`file`, by its registry entry; `read_to`: where its unread
    /// bytes start) is gone from `last_at`, its last known path: kubelet compresses a rotated
    /// `0.log.<time>` into `0.log.<time>.gz` and deletes it at its next rotation. Looked for
    /// by its first bytes in `last_at.gz`, then in the other `.gz` files of that folder. Found,
    /// it waits as compressed (`waiting_compressed`) and true is returned: nothing of it is
    /// lost. Not found (or no first bytes known to find it by), false: the caller counts it.
    pub(super) fn wait_as_compressed(
        &mut self,
        key: FileKey,
        last_at: &Path,
        read_to: u64,
    ) -> bool {
        let Some(mut entry) = self.entry(&key).filter(|e| e.fp_len > 0) else {
            return false;
        };
        let Some((gz, lines)) = find_compressed(&entry, last_at, read_to) else {
            return false;
        };
        if lines == 0 {
            // Nothing past where reading stopped (the bytes seen unread were a last line
            // without its newline, already held): nothing to read, nothing lost.
            return true;
        }
        tracing::info!(input = %self.ctx.name, path = %last_at.display(), compressed = %gz.display(), offset = read_to, lines,
            "a file waiting for a max_open_files slot was compressed before it got one: its unread lines are read from the compressed file when it gets a slot");
        entry.offset = read_to;
        self.waiting_compressed
            .insert(key, WaitingCompressed { entry, gz });
        true
    }

    /// Gives the free slots to the files waiting as compressed, oldest first (by key: no order
    /// matters more than another between them); each is decompressed and read once
    /// (`resume_compressed`). Those left wait on (`waiting`), so that `make_room` frees slots
    /// for them too.
    pub(super) fn resume_waiting_compressed(&mut self) {
        let mut keys: Vec<FileKey> = self.waiting_compressed.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            if self.open_count() >= self.config.max_open_files {
                break;
            }
            let Some(w) = self.waiting_compressed.remove(&key) else {
                continue;
            };
            // A followed file closed to free its slot: the compressed copy takes its place.
            if self
                .tails
                .get(&key)
                .is_some_and(|t| !t.is_open() && t.meta.stream == w.entry.stream)
            {
                self.tails.remove(&key);
            }
            match self.resume_compressed(&w.entry, &w.gz) {
                Ok(()) => {
                    tracing::info!(input = %self.ctx.name, path = %w.entry.path, compressed = %w.gz.display(), offset = w.entry.offset,
                        "reading the unread lines of a compressed file that waited for a slot");
                }
                Err(err) => {
                    let (lines, size) =
                        lines_past(&w.gz, w.entry.offset).unwrap_or((0, w.entry.offset));
                    self.shared.stats.lost(lines);
                    tracing::warn!(input = %self.ctx.name, path = %w.entry.path, compressed = %w.gz.display(), offset = w.entry.offset, lines, error = %err,
                        "a file that waited for a slot was compressed meanwhile and cannot be decompressed to be read: its unread lines are counted in trawl_file_lost_lines_total");
                    if let Ok(mut r) = self.shared.registry.lock() {
                        r.commit(&key, w.entry.stream, size);
                    }
                }
            }
        }
        self.waiting += self.waiting_compressed.len();
    }
}

/// The `.gz` holding the content `e` describes (same first bytes, at least `read_to` bytes
/// long), looked for as `last_at.gz` and then among the `.gz` files beside `last_at`; with the
/// number of lines past `read_to`.
pub(super) fn find_compressed(e: &Entry, last_at: &Path, read_to: u64) -> Option<(PathBuf, u64)> {
    let folder = last_at.parent()?;
    let beside = last_at.file_name().map(|n| {
        let mut n = n.to_os_string();
        n.push(".gz");
        folder.join(n)
    });
    let others = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|i| i.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gz") && Some(p) != beside.as_ref())
        .take(MAX_COMPRESSED_PER_FOLDER);
    beside
        .clone()
        .filter(|p| p.is_file())
        .into_iter()
        .chain(others)
        .find_map(|gz| {
            let prefix = gunzip_prefix(&gz, Some(e.fp_len))?;
            if prefix.len() as u64 != e.fp_len || Fingerprint::of(&prefix) != e.fingerprint() {
                return None;
            }
            let (lines, size) = lines_past(&gz, read_to)?;
            // Same first bytes but shorter than what was read: another file that began alike.
            (size >= read_to).then_some((gz, lines))
        })
}

impl Tailer {
    /// Follows the registry's `e` again from its offset, reading the content of `gz`: it is
    /// decompressed into a file beside the registry, unlinked at once (its space is given back
    /// when the tail closes it), so that the file is read, acknowledged and retried as any
    /// rotated file trawl holds open after its deletion. It is followed under the copy's key,
    /// not the gone file's: that inode is free and a new log file may get it while the copy
    /// is read (a file trawl holds open keeps its inode; this one was let go while stopped).
    /// A later start finds the entry missing and the `.gz` again by its first bytes.
    pub(super) fn resume_compressed(&mut self, e: &Entry, gz: &Path) -> std::io::Result<()> {
        let folder = match self.shared.registry.lock() {
            Ok(r) => r.path().parent().map(Path::to_path_buf),
            Err(_) => None,
        }
        .unwrap_or_else(std::env::temp_dir);
        let scratch = folder.join(format!(".gunzip-{}-{}", e.dev, e.ino));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&scratch)?;
        let _ = std::fs::remove_file(&scratch);
        let mut content = flate2::read::GzDecoder::new(std::io::BufReader::new(File::open(gz)?))
            .take(MAX_DECOMPRESSED);
        let size = std::io::copy(&mut content, &mut file)?;
        if size < e.offset {
            return Err(std::io::Error::other("shorter than what was read of it"));
        }
        // Files followed under one path are ordered by last write (`carry`): the copy, written
        // now, would come after the files kubelet rotated since, and a line whose first part
        // it holds would not be joined to its rest in the next one. The gone file was last
        // written no later than trawl last saw it nor than its `.gz` was made.
        let seen = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(e.last_seen).unwrap_or(0));
        let written = std::fs::metadata(gz)
            .and_then(|m| m.modified())
            .map_or(seen, |m| m.min(seen));
        if let Err(err) = file.set_modified(written) {
            tracing::debug!(path = %e.path, error = %err, "cannot date the decompressed copy");
        }
        let first_bytes = crate::inputs::file::identity::read_first(&file, self.fp_max)?;
        let key = FileKey::of(&file.metadata()?);
        let path = PathBuf::from(&e.path);
        let meta = TailMeta::new(
            key,
            e.stream,
            0,
            e.path.clone(),
            container::kubernetes_metadata(&path),
        );
        let decoder = Decoder::new(self.config.format, self.multiline.clone(), self.max_line)
            .with_join_wait(self.config.close_removed.std());
        let tail = Tail::new(
            meta,
            path,
            first_bytes,
            file,
            e.offset,
            decoder,
            self.max_line,
        );
        if let Ok(mut r) = self.shared.registry.lock() {
            // The gone file's inode may be a new file's by now (kubelet creates a file at each
            // rotation), whose entry stays.
            r.remove_stream(&e.key(), e.stream);
            r.put(super::entry_for(&tail, e.offset));
        }
        self.tails.insert(key, tail);
        Ok(())
    }
}

impl Tailer {
    /// Compressed rotated files beside followed links' targets (`compressed`: link, `.gz`)
    /// whose first bytes match no registry entry: trawl never saw them. kubelet gzips
    /// `0.log.<time>` at its next rotation, so a container created and rotated twice while
    /// trawl was stopped, or one rotated three times, has lines only there. One is read from
    /// its start, under its link's name, when it was made since trawl first ran and within
    /// `forget_after` (as the plain rotated files are) and its first line was written after
    /// trawl first ran, by the container runtime's timestamp (a `.gz` is dated when kubelet
    /// made it, not when its lines were written): older history is not ours to ship. Content
    /// trawl read is known by its first bytes also once its entry is gone (`Registry::gone`).
    pub(super) fn read_unknown_compressed(
        &mut self,
        compressed: &[(PathBuf, PathBuf)],
        first: bool,
    ) {
        let Ok((since, longest)) = self.shared.registry.lock().map(|r| {
            let longest = r
                .entries()
                .map(|e| e.fp_len)
                .chain(r.gone().iter().map(|g| g.fp_len))
                .max()
                .unwrap_or(0);
            (r.since_ms(), longest.max(self.fp_max))
        }) else {
            return;
        };
        let mut looked = HashSet::new();
        for (link, gz) in compressed {
            if !looked.insert(gz) {
                continue;
            }
            let ours = if first {
                self.written_since_first_run(gz)
            } else {
                self.written_since_registry(gz)
            };
            if !ours {
                continue;
            }
            let Some(prefix) = gunzip_prefix(gz, Some(longest)).filter(|p| !p.is_empty()) else {
                continue;
            };
            if self.known_by_first_bytes(&prefix) {
                continue;
            }
            let Some(content) = ContentTimes::of(gz) else {
                tracing::warn!(input = %self.ctx.name, path = %link.display(), compressed = %gz.display(),
                    "a compressed rotated file trawl never saw cannot be read to its end: not read");
                continue;
            };
            // History from before trawl first ran is not ours. (Content trawl read has an
            // entry, or had one `gone` since: it is known above.)
            if content.first_ms.is_none_or(|t| t <= since) {
                continue;
            }
            let Ok(md) = std::fs::metadata(gz) else {
                continue;
            };
            let key = FileKey::of(&md);
            let fp_len = prefix
                .len()
                .min(usize::try_from(self.fp_max).unwrap_or(usize::MAX));
            let fp = Fingerprint::of(&prefix[..fp_len]);
            self.salt += 1;
            let mut entry = Entry {
                path: link.display().to_string(),
                dev: key.dev,
                ino: key.ino,
                fp_len: fp.len,
                fp: fp.hash,
                stream: new_stream_id(key, fp, self.salt),
                offset: 0,
                // Files followed under one name are taken in the order they were last written.
                last_seen: content.last_ms.map_or(0, |t| t / 1000),
                seen_ms: content.last_ms.unwrap_or(0),
                mark_at: 0,
                mark: 0,
            };
            match self.resume_compressed(&entry, gz) {
                Ok(()) => {
                    tracing::info!(input = %self.ctx.name, path = %link.display(), compressed = %gz.display(), lines = content.lines,
                        "reading a compressed rotated file trawl never saw, written since it first ran (created and rotated twice while trawl was stopped)");
                }
                Err(err) => {
                    self.shared.stats.lost(content.lines);
                    tracing::warn!(input = %self.ctx.name, path = %link.display(), compressed = %gz.display(), lines = content.lines, error = %err,
                        "a compressed rotated file trawl never saw cannot be decompressed to be read: its lines are counted in trawl_file_lost_lines_total");
                    // Known from now on, so that the next start does not count them again.
                    entry.offset = content.size;
                    if let Ok(mut r) = self.shared.registry.lock() {
                        r.put(entry);
                    }
                }
            }
        }
    }

    /// Some registry entry (or truncated content kept for its copy, or an entry dropped or
    /// replaced within `forget_after`) has these first bytes.
    fn known_by_first_bytes(&self, prefix: &[u8]) -> bool {
        let Ok(r) = self.shared.registry.lock() else {
            return true;
        };
        let mut hashes: HashMap<u64, Fingerprint> = HashMap::new();
        let mut matches = |fp: Fingerprint| {
            let Ok(len) = usize::try_from(fp.len) else {
                return false;
            };
            fp.len > 0
                && len <= prefix.len()
                && *hashes
                    .entry(fp.len)
                    .or_insert_with(|| Fingerprint::of(&prefix[..len]))
                    == fp
        };
        r.entries().any(|e| matches(e.fingerprint()))
            || r.truncations().iter().any(|t| {
                matches(Fingerprint {
                    len: t.fp_len,
                    hash: t.fp,
                })
            })
            || r.gone().iter().any(|g| {
                matches(Fingerprint {
                    len: g.fp_len,
                    hash: g.fp,
                })
            })
    }
}

/// When the first and last lines of a compressed container log were written (their runtime
/// timestamps, CRI or Docker json-file; `None` for other lines), how many lines it has and
/// its decompressed size.
struct ContentTimes {
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    lines: u64,
    size: u64,
}

impl ContentTimes {
    /// `None` when the file cannot be read to its end.
    fn of(path: &Path) -> Option<ContentTimes> {
        // A line's time is at its start; Docker's records are JSON, cut at 16 KiB.
        const KEPT: usize = 17 * 1024;
        let file = File::open(path).ok()?;
        let mut d =
            flate2::read::GzDecoder::new(std::io::BufReader::new(file)).take(MAX_DECOMPRESSED);
        let mut buf = vec![0u8; 64 * 1024];
        let (mut first, mut last, mut line) = (None::<Vec<u8>>, Vec::new(), Vec::new());
        let (mut lines, mut size) = (0u64, 0u64);
        loop {
            let n = d.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            size += n as u64;
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let end = memchr::memchr(b'\n', rest);
                let piece = &rest[..end.unwrap_or(rest.len())];
                line.extend_from_slice(&piece[..piece.len().min(KEPT.saturating_sub(line.len()))]);
                let Some(end) = end else { break };
                rest = &rest[end + 1..];
                lines += 1;
                if first.is_none() {
                    first = Some(line.clone());
                }
                last = std::mem::take(&mut line);
            }
        }
        if !line.is_empty() {
            lines += 1;
            if first.is_none() {
                first = Some(line.clone());
            }
            last = line;
        }
        let time = |l: &[u8]| {
            container::decode_cri(l)
                .or_else(|| container::decode_docker(l))
                .and_then(|d| d.time)
                .map(|t| t.timestamp_millis())
        };
        Some(ContentTimes {
            first_ms: first.as_deref().and_then(time),
            last_ms: time(&last),
            lines,
            size,
        })
    }
}

/// Most `.gz` files looked into per folder at a start (kubelet keeps 5 files per container).
pub(super) const MAX_COMPRESSED_PER_FOLDER: usize = 64;
/// Most bytes decompressed from one file: a bound on the work a bad file can cause.
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Up to `len` first decompressed bytes of the gzip file `path`; `None` when it is unreadable.
pub(super) fn gunzip_prefix(path: &Path, len: Option<u64>) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .take(len?)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The lines of the gzip file `path` past byte `offset` of its content (a last one without a
/// newline counts), and the size of that content; `None` when it cannot be read to its end.
pub(super) fn lines_past(path: &Path, offset: u64) -> Option<(u64, u64)> {
    let file = File::open(path).ok()?;
    let mut d = flate2::read::GzDecoder::new(std::io::BufReader::new(file)).take(MAX_DECOMPRESSED);
    let (mut at, mut lines, mut open_line) = (0u64, 0u64, false);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = d.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        let skip = offset.saturating_sub(at).min(n as u64) as usize;
        let rest = &buf[skip..n];
        if !rest.is_empty() {
            lines += rest.iter().filter(|b| **b == b'\n').count() as u64;
            open_line = rest.last() != Some(&b'\n');
        }
        at += n as u64;
    }
    Some((lines + u64::from(open_line), at))
}
