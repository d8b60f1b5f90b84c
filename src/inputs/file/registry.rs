//! The registry: how far each file has been delivered, kept under `data_dir` and rewritten
//! crash-safely (temp file, fsync, rename, fsync of the folder). Offsets move only when the
//! acknowledgement of the events up to them arrives, so a restart resumes where delivery stopped.
//!
//! On-disk format (versioned JSON, one object):
//! ```json
//! {"version":"1","files":[{"path":"/var/log/app.log","dev":2049,"ino":131,"fp_len":1024,
//!   "fp":1234,"stream":5678,"offset":4096,"last_seen":1700000000,"seen_ms":1700000000250,
//!   "mark_at":4096,"mark":42}]}
//! ```
//! `dev`+`ino` name the file, `fp_len`/`fp` confirm it (hash of its first bytes), `stream` is the
//! id events carry in `meta.origin`, `offset` the first byte not yet delivered, `last_seen` (Unix
//! seconds) the last time the file was seen, `seen_ms` (optional) the same to the millisecond,
//! to tell the file from a new one given its inode by its birth time; entries unseen for
//! `forget_after` while trawl runs are dropped. `mark_at`/`mark` (optional) hash the bytes read
//! just before an offset, to tell a file truncated and rewritten while trawl was stopped from
//! the same file grown.
//!
//! `since_ms` (optional; Unix milliseconds) is when this registry was first written: a file
//! rotated out of `paths` that trawl never knew is read at a restart only when it was written
//! after that (created and rotated while trawl was down or before it got to the file), never
//! when it is history from before trawl first ran.
//!
//! `gone` (optional) keeps the first bytes (`fp_len`/`fp`) of entries dropped, replaced by a
//! file that took their inode, or expired, with when (`at`, Unix seconds), for `forget_after`: a
//! compressed file with those first bytes is not one trawl never saw (kubelet gzips a rotated
//! file and deletes it, and ext4 gives its inode to the next file).
//!
//! `truncated` (optional) lists contents trawl saw truncated while following them whose copy
//! (logrotate's `copytruncate`) has not been found yet: a copy found after a restart continues
//! that stream instead of being read again under a new one (see `Truncation`).

use super::identity::{FileKey, Fingerprint};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub fp_len: u64,
    pub fp: u64,
    pub stream: u64,
    pub offset: u64,
    pub last_seen: i64,
    /// `last_seen` to the millisecond (`0`: older registries), set against a file's birth time
    /// to tell the file from a new one given its inode (`tailer::restart`): seconds cannot,
    /// when trawl was killed and the file made within the second of its last scan.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen_ms: i64,
    /// An offset read up to (at or past `offset`) and the FNV-1a of the bytes before it
    /// (`identity::END_MARK_BYTES`, fewer near the start): at the next start, a file whose bytes
    /// there differ was truncated and rewritten meanwhile. `0`: no mark (older registries).
    #[serde(default)]
    pub mark_at: u64,
    #[serde(default)]
    pub mark: u64,
}

impl Entry {
    /// A file seen now, read up to `offset`, with no end mark yet. One clock read gives both
    /// `last_seen` and `seen_ms`, so they never straddle a second.
    pub fn seen_now(
        path: String,
        key: FileKey,
        fp: Fingerprint,
        stream: u64,
        offset: u64,
    ) -> Entry {
        let seen_ms = now_ms();
        Entry {
            path,
            dev: key.dev,
            ino: key.ino,
            fp_len: fp.len,
            fp: fp.hash,
            stream,
            offset,
            last_seen: seen_ms.div_euclid(1000),
            seen_ms,
            mark_at: 0,
            mark: 0,
        }
    }

    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            ino: self.ino,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            len: self.fp_len,
            hash: self.fp,
        }
    }
}

/// The content a file had when trawl saw it truncated while following it (its stream, first
/// bytes, how far it was read and delivered). A file that appears with those first bytes is its
/// copy (copytruncate) and continues the stream where reading stopped, so the copy's lines keep
/// their document ids. On disk, so that a copy found after a stop still does; kept for a
/// bounded time (`tailer::TRUNCATION_KEPT` of trawl's running time).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Truncation {
    /// The truncated file itself, which is never its own copy.
    pub dev: u64,
    pub ino: u64,
    /// Its path, for logs.
    pub path: String,
    pub fp_len: u64,
    pub fp: u64,
    pub stream: u64,
    /// Where its copy is read from: where reading stopped (the start of the line being read),
    /// moved back to `committed` by a failed batch or a restart.
    pub position: u64,
    /// Delivered up to here (acknowledgements of batches read before the truncation move it).
    pub committed: u64,
    /// The stream's retry epoch (`retry`), which the copy's reading continues.
    #[serde(default)]
    pub epoch: u32,
    /// Lines of failed batches that only the copy can give back: lost if it never appears.
    #[serde(default)]
    pub failed_lines: u64,
    /// When this run saw the truncation, or loaded it from disk.
    #[serde(skip, default = "Instant::now")]
    pub at: Instant,
}

impl Truncation {
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            ino: self.ino,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            len: self.fp_len,
            hash: self.fp,
        }
    }

    /// Whether `file` (`key`, `size` bytes) holds this content: other file, same first bytes,
    /// and either at least as long as what is still to be read from it, or shorter but ending
    /// at a line's end. The second is logrotate's `copytruncate` of a busy file: it copies,
    /// then truncates, and trawl may read lines the app wrote in between, so the copy ends
    /// before where reading stopped. Only the first bytes can be compared with what was read
    /// (the end mark covers the bytes before `position`, past the copy's end): a file of its
    /// own starting with the same fingerprinted bytes, shorter than what was read and found
    /// while the truncation is remembered, would be taken for the copy and not read. A copy
    /// `cp` is still writing and that ends mid-line is not taken (`copies::may_be_copy` waits
    /// for it); one that happens to end at a line's end is followed from there, and reading on
    /// as `cp` fills it gives the same offsets, so the same `_id`s as the lines already sent.
    pub fn is_copy(&self, key: FileKey, file: &std::fs::File, size: u64) -> bool {
        self.key() != key
            && self.fingerprint().matches(file).unwrap_or(false)
            && (self.position <= size || (self.fp_len > 0 && ends_a_line(file, size)))
    }

    /// Where reading of its copy (`size` bytes) continues: where reading of this content
    /// stopped, or the copy's end when it is shorter (see `is_copy`).
    pub fn resume_in_copy(&self, size: u64) -> u64 {
        self.position.min(size)
    }
}

/// Whether the last of `size` bytes of `file` ends a line.
fn ends_a_line(file: &std::fs::File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    size > 0 && file.read_at(&mut last, size - 1).is_ok_and(|n| n == 1) && last[0] == b'\n'
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum OnDisk {
    #[serde(rename = "1")]
    V1 {
        files: Vec<Entry>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        truncated: Vec<Truncation>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gone: Vec<Gone>,
    },
}

/// The first bytes of content the registry no longer has an entry for (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gone {
    pub fp_len: u64,
    pub fp: u64,
    pub at: i64,
}

/// Most `gone` records kept (the oldest go first): a node's kubelet deletes one file per
/// container rotation.
const MAX_GONE: usize = 4096;

/// The offsets of one `file` input, shared by its reader (which adds and resets files) and its
/// acknowledgement task (which commits offsets and writes the file).
pub struct Registry {
    path: PathBuf,
    entries: HashMap<FileKey, Entry>,
    /// Truncated contents whose copy was not found yet.
    truncations: Vec<Truncation>,
    dirty: bool,
    /// Whether a registry was there at load (trawl ran before).
    found: bool,
    /// Streams continued by a copy shorter than what was read of their truncated file, and the
    /// copy's end: acknowledgements of lines read past it, from the truncated file, commit no
    /// further (an offset past a file's end reads, at the next start, as a file truncated
    /// while trawl was stopped, and the copy would be read again from 0).
    copy_ends: HashMap<u64, u64>,
    /// When this registry was first written (Unix ms): see the module doc.
    since_ms: i64,
    /// First bytes of entries no longer kept (see the module doc), oldest first.
    gone: Vec<Gone>,
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Registry {
    /// Loads the registry at `path`; a missing file is an empty registry, an unreadable one is
    /// moved aside (`.corrupt`) with a warning, so trawl starts instead of refusing to, and its
    /// files are read from their start.
    pub fn load(path: PathBuf) -> Registry {
        let mut entries = HashMap::new();
        let mut truncations = Vec::new();
        let mut gone_fps = Vec::new();
        let mut found = false;
        // A registry written before `since_ms` existed: from now on, as the earliest time
        // known to be after its files' history.
        let mut since = None;
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(OnDisk::V1 {
                    files,
                    truncated,
                    since_ms,
                    gone,
                }) => {
                    found = true;
                    since = since_ms;
                    gone_fps = gone;
                    for e in files {
                        entries.insert(e.key(), e);
                    }
                    // What was read past `committed` and not delivered is gone with the
                    // stopped process: the copy is read from where delivery stopped.
                    truncations = truncated
                        .into_iter()
                        .map(|t| Truncation {
                            position: t.committed.min(t.position),
                            ..t
                        })
                        .collect();
                }
                Err(e) => {
                    // Not a first start: `start_at: end` would skip what was written since the
                    // last good write (lost for good), so every file is read from its start
                    // (sent again rather than lost), and rotated files written since the
                    // damaged registry's last write are read too (see `since_ms`).
                    found = true;
                    since = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64);
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(registry = %path.display(), error = %e, moved_to = %aside.display(),
                        "registry unreadable: its offsets are lost, every file is read again from its start (lines are sent again rather than lost)");
                    let _ = std::fs::rename(&path, &aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(registry = %path.display(), error = %e, "cannot read registry: starting without offsets")
            }
        }
        Registry {
            path,
            entries,
            truncations,
            dirty: since.is_none(),
            found,
            copy_ends: HashMap::new(),
            since_ms: since.unwrap_or_else(now_ms),
            gone: gone_fps,
        }
    }

    /// When this registry was first written (Unix ms), or, for one written before that was
    /// recorded, when this run loaded it.
    pub fn since_ms(&self) -> i64 {
        self.since_ms
    }

    /// Whether a registry was there at load (readable or moved aside as unreadable): false
    /// only on the very first start, where `start_at` applies.
    pub fn found(&self) -> bool {
        self.found
    }

    pub fn get(&self, key: &FileKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a file (new, or restarted after truncation): replaces any entry for its key.
    pub fn put(&mut self, entry: Entry) {
        let stream = entry.stream;
        if let Some(old) = self.entries.insert(entry.key(), entry) {
            // Another file's inode now (the old one deleted): its content may be gzipped.
            if old.stream != stream {
                self.note_gone(&old, now_secs());
            }
        }
        self.dirty = true;
    }

    /// Forgets a file (followed on under another key).
    pub fn remove(&mut self, key: &FileKey) {
        if let Some(old) = self.entries.remove(key) {
            self.note_gone(&old, now_secs());
            self.dirty = true;
        }
    }

    fn note_gone(&mut self, e: &Entry, at: i64) {
        if e.fp_len == 0 {
            return;
        }
        if self.gone.len() >= MAX_GONE {
            self.gone.remove(0);
        }
        self.gone.push(Gone {
            fp_len: e.fp_len,
            fp: e.fp,
            at,
        });
    }

    /// First bytes of entries no longer kept, for `forget_after`.
    pub fn gone(&self) -> &[Gone] {
        &self.gone
    }

    /// Forgets the entry of `key` if it still describes `stream`: a deleted file's inode may
    /// have been given to a new file since, whose own entry stays.
    pub fn remove_stream(&mut self, key: &FileKey, stream: u64) {
        if self.entries.get(key).is_some_and(|e| e.stream == stream) {
            self.remove(key);
        }
    }

    /// Notes that the file is still there (under `path`), and how its fingerprint grew, at
    /// `now_ms` (Unix ms).
    pub fn touch(&mut self, key: &FileKey, path: &str, fp: Fingerprint, now_ms: i64) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.path != path || e.fp_len != fp.len || e.fp != fp.hash {
                e.path = path.to_owned();
                e.fp_len = fp.len;
                e.fp = fp.hash;
                self.dirty = true;
            }
            e.last_seen = now_ms.div_euclid(1000);
            e.seen_ms = now_ms;
        }
    }

    /// Notes that a file the registry knows still exists (found by a scan, followed or not),
    /// at `now_ms` (Unix ms).
    pub fn seen(&mut self, key: &FileKey, now_ms: i64) {
        if let Some(e) = self.entries.get_mut(key) {
            e.last_seen = now_ms.div_euclid(1000);
            e.seen_ms = now_ms;
        }
    }

    /// Records where and what `stream` of a file was last read (see `Entry::mark_at`).
    pub fn set_mark(&mut self, key: &FileKey, stream: u64, at: u64, mark: u64) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.stream == stream && (e.mark_at != at || e.mark != mark) {
                e.mark_at = at;
                e.mark = mark;
                self.dirty = true;
            }
        }
    }

    /// Moves a stream's offset forward after delivery: in the entry of the file it was read
    /// from, or, when that file was truncated since, in the copy that continues the stream or
    /// in the truncation waiting for that copy. Ignored when the stream is nowhere (the file
    /// was replaced since those events were read).
    pub fn commit(&mut self, key: &FileKey, stream: u64, mut offset: u64) {
        let entry = match self.entries.get_mut(key) {
            Some(e) if e.stream == stream => Some(e),
            _ => {
                // Read from a truncated file: not past the end of the copy continuing it.
                if let Some(end) = self.copy_ends.get(&stream) {
                    offset = offset.min(*end);
                }
                self.entries.values_mut().find(|e| e.stream == stream)
            }
        };
        if let Some(e) = entry {
            if offset > e.offset {
                e.offset = offset;
                self.dirty = true;
            }
        } else if let Some(t) = self.truncations.iter_mut().find(|t| t.stream == stream) {
            if offset > t.committed {
                t.committed = offset;
                t.position = t.position.max(offset);
                self.dirty = true;
            }
        }
    }

    /// Where delivery of `stream` (read from the file `key`) stopped, and the path it is read
    /// from now: that file's entry, the entry of the copy continuing it after a copytruncate,
    /// or the truncation waiting for its copy. `None` when no file holds it any more.
    pub fn resume_point(&self, key: &FileKey, stream: u64) -> Option<(u64, String)> {
        let entry = match self.entries.get(key) {
            Some(e) if e.stream == stream => Some(e),
            _ => self.entries.values().find(|e| e.stream == stream),
        };
        match entry {
            Some(e) => Some((e.offset, e.path.clone())),
            None => self
                .truncations
                .iter()
                .find(|t| t.stream == stream)
                .map(|t| (t.committed, t.path.clone())),
        }
    }

    /// Whether some file, or a truncated content waiting for its copy, still holds `stream`.
    pub fn holds(&self, stream: u64) -> bool {
        self.entries.values().any(|e| e.stream == stream)
            || self.truncations.iter().any(|t| t.stream == stream)
    }

    pub fn truncations(&self) -> &[Truncation] {
        &self.truncations
    }

    /// Remembers a truncated content until its copy is found (replacing one of that stream).
    pub fn add_truncation(&mut self, t: Truncation) {
        self.truncations.retain(|x| x.stream != t.stream);
        self.truncations.push(t);
        self.dirty = true;
    }

    /// `stream` is continued by a copy that ends at `end`, before where reading of the truncated
    /// file stopped (see `copy_ends`).
    pub fn set_copy_end(&mut self, stream: u64, end: u64) {
        self.copy_ends.insert(stream, end);
    }

    /// Takes the truncation of `stream`: its copy was found and continues it.
    pub fn take_truncation(&mut self, stream: u64) -> Option<Truncation> {
        let i = self.truncations.iter().position(|t| t.stream == stream)?;
        self.dirty = true;
        Some(self.truncations.swap_remove(i))
    }

    pub fn truncation_mut(&mut self, stream: u64) -> Option<&mut Truncation> {
        self.dirty = true;
        self.truncations.iter_mut().find(|t| t.stream == stream)
    }

    /// Drops the truncations seen (or loaded) at or before `before`: no copy came. Returns them.
    pub fn expire_truncations(&mut self, before: Instant) -> Vec<Truncation> {
        let (gone, kept) = std::mem::take(&mut self.truncations)
            .into_iter()
            .partition(|t| t.at <= before);
        self.truncations = kept;
        let gone: Vec<Truncation> = gone;
        if !gone.is_empty() {
            self.dirty = true;
        }
        gone
    }

    /// Drops entries of files not seen since `before` (Unix seconds).
    pub fn expire(&mut self, before: i64) {
        let n = self.entries.len() + self.gone.len();
        self.gone.retain(|g| g.at >= before);
        let expired: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.last_seen < before)
            .cloned()
            .collect();
        let now = now_secs();
        for e in &expired {
            self.entries.remove(&e.key());
            self.note_gone(e, now);
        }
        let entries = &self.entries;
        self.copy_ends
            .retain(|stream, _| entries.values().any(|e| e.stream == *stream));
        if self.entries.len() + self.gone.len() != n || !expired.is_empty() {
            self.dirty = true;
        }
    }

    /// The bytes to write when something changed since the last save.
    pub fn snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let mut files: Vec<Entry> = self.entries.values().cloned().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let truncated = self.truncations.clone();
        serde_json::to_vec(&OnDisk::V1 {
            files,
            truncated,
            since_ms: Some(self.since_ms),
            gone: self.gone.clone(),
        })
        .ok()
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to `path` so that after a crash the file holds either the old or the new
/// content, never a mix: temp file, fsync, rename over, fsync of the folder.
/// Whether the registry can be written where it lives: checked before reading any file, because
/// tailing without saving offsets would re-send or skip lines after the next restart.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let probe = path.with_extension("json.probe");
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A disk full: the part written would hold space the logs being read need too.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, stream: u64, offset: u64) -> Entry {
        Entry {
            path: format!("/f{ino}"),
            dev: 1,
            ino,
            fp_len: 3,
            fp: 9,
            stream,
            offset,
            last_seen: 100,
            seen_ms: 0,
            mark_at: 0,
            mark: 0,
        }
    }

    #[test]
    fn round_trip_commit_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        let mut r = Registry::load(path.clone());
        assert!(r.is_empty());
        assert!(!r.found(), "no registry yet: a first start");
        r.put(entry(1, 7, 0));
        r.put(entry(2, 8, 0));
        r.commit(&FileKey { dev: 1, ino: 1 }, 7, 50);
        r.commit(&FileKey { dev: 1, ino: 1 }, 99, 500); // stale stream: ignored
        r.commit(&FileKey { dev: 1, ino: 1 }, 7, 40); // never backwards
        r.touch(
            &FileKey { dev: 1, ino: 2 },
            "/f2",
            Fingerprint { len: 3, hash: 9 },
            200_123,
        );
        r.expire(150);
        let bytes = r.snapshot().unwrap();
        assert!(r.snapshot().is_none(), "nothing changed since");
        write_atomic(&path, &bytes).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"version":"1""#), "{text}");
        let r2 = Registry::load(path);
        assert!(r2.found());
        assert_eq!(r2.len(), 1, "entry 1 was unseen since 100 and expired");
        let seen = r2.get(&FileKey { dev: 1, ino: 2 }).unwrap();
        assert_eq!((seen.last_seen, seen.seen_ms), (200, 200_123));
    }

    #[test]
    fn first_bytes_of_entries_replaced_removed_or_expired_are_kept_for_forget_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        let mut r = Registry::load(path.clone());
        let fp = |e: &Entry| (e.fp_len, e.fp);
        let with_fp = |mut e: Entry, fp: u64| {
            e.fp = fp;
            e.last_seen = 200;
            e
        };
        let (a, b) = (with_fp(entry(1, 7, 10), 11), with_fp(entry(2, 8, 20), 22));
        let c = entry(3, 9, 30);
        r.put(a.clone());
        r.put(b.clone());
        r.put(c.clone());
        // The same file moving on: nothing gone.
        r.put(with_fp(entry(1, 7, 15), 11));
        assert!(r.gone().is_empty());
        // Another file took inode 1 (another stream), inode 2 was let go, 3 not seen since 100.
        r.put(with_fp(entry(1, 70, 0), 4242));
        r.remove(&b.key());
        r.expire(150);
        let mut gone: Vec<(u64, u64)> = r.gone().iter().map(|g| (g.fp_len, g.fp)).collect();
        gone.sort_unstable();
        let mut want = vec![fp(&a), fp(&b), fp(&c)];
        want.sort_unstable();
        assert_eq!(gone, want);
        write_atomic(&path, &r.snapshot().unwrap()).unwrap();
        let mut r2 = Registry::load(path);
        assert_eq!(r2.gone().len(), 3, "kept across a restart");
        // Past forget_after they go too; the entry expiring now is kept as gone in turn.
        r2.expire(now_secs() + 1);
        let left: Vec<u64> = r2.gone().iter().map(|g| g.fp).collect();
        assert_eq!(left, vec![4242]);
    }

    #[test]
    fn a_truncation_survives_a_restart_and_its_copy_is_read_from_where_delivery_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        let mut r = Registry::load(path.clone());
        let key = FileKey { dev: 1, ino: 1 };
        r.put(entry(1, 8, 0)); // the file's new stream after the truncation
        r.add_truncation(Truncation {
            dev: 1,
            ino: 1,
            path: "/f1".into(),
            fp_len: 3,
            fp: 9,
            stream: 7,
            position: 500,
            committed: 100,
            epoch: 0,
            failed_lines: 0,
            at: Instant::now(),
        });
        // A batch read before the truncation is acknowledged: the old stream moves on.
        r.commit(&key, 7, 300);
        assert_eq!(r.resume_point(&key, 7), Some((300, "/f1".to_string())));
        assert!(r.holds(7) && r.holds(8) && !r.holds(9));
        write_atomic(&path, &r.snapshot().unwrap()).unwrap();
        let mut r2 = Registry::load(path);
        let t = r2.take_truncation(7).expect("kept across the restart");
        assert_eq!(
            (t.committed, t.position),
            (300, 300),
            "read past 300 and not delivered: gone with the process, read again from the copy"
        );
        assert!(r2.take_truncation(7).is_none());
    }

    #[test]
    fn corrupt_registry_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        std::fs::write(&path, b"{not json").unwrap();
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        let r = Registry::load(path.clone());
        assert!(r.is_empty());
        assert!(dir.path().join("reg.json.corrupt").exists());
        assert!(
            r.found(),
            "not a first start: start_at: end must not skip what it lost"
        );
        let ms = written
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(
            r.since_ms(),
            ms,
            "history since the damaged registry's last write"
        );
    }
}
