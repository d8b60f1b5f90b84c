//! The registry: how far each file has been delivered, kept under `data_dir` and rewritten
//! crash-safely (temp file, fsync, rename, fsync of the folder). Offsets move only when the
//! acknowledgement of the events up to them arrives, so a restart resumes where delivery stopped.
//!
//! On-disk format (versioned JSON, one object):
//! ```json
//! {"version":"1","files":[{"path":"/var/log/app.log","dev":2049,"ino":131,"fp_len":1024,
//!   "fp":1234,"stream":5678,"offset":4096,"last_seen":1700000000,"mark_at":4096,"mark":42}]}
//! ```
//! `dev`+`ino` name the file, `fp_len`/`fp` confirm it (hash of its first bytes), `stream` is the
//! id events carry in `meta.origin`, `offset` the first byte not yet delivered, `last_seen` (Unix
//! seconds) the last time the file was seen; entries unseen for `forget_after` while trawl runs
//! are dropped. `mark_at`/`mark` (optional) hash the bytes read just before an offset, to tell
//! a file truncated and rewritten while trawl was stopped from the same file grown.

use super::identity::{FileKey, Fingerprint};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// An offset read up to (at or past `offset`) and the FNV-1a of the bytes before it
    /// (`identity::END_MARK_BYTES`, fewer near the start): at the next start, a file whose bytes
    /// there differ was truncated and rewritten meanwhile. `0`: no mark (older registries).
    #[serde(default)]
    pub mark_at: u64,
    #[serde(default)]
    pub mark: u64,
}

impl Entry {
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

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum OnDisk {
    #[serde(rename = "1")]
    V1 { files: Vec<Entry> },
}

/// The offsets of one `file` input, shared by its reader (which adds and resets files) and its
/// acknowledgement task (which commits offsets and writes the file).
pub struct Registry {
    path: PathBuf,
    entries: HashMap<FileKey, Entry>,
    dirty: bool,
    /// Whether a registry was there at load (trawl ran before).
    found: bool,
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Registry {
    /// Loads the registry at `path`; a missing file is an empty registry, an unreadable one is
    /// moved aside (`.corrupt`) with a warning, so trawl starts instead of refusing to.
    pub fn load(path: PathBuf) -> Registry {
        let mut entries = HashMap::new();
        let mut found = false;
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(OnDisk::V1 { files }) => {
                    found = true;
                    for e in files {
                        entries.insert(e.key(), e);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(registry = %path.display(), error = %e, moved_to = %aside.display(),
                        "registry unreadable: starting without offsets");
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
            dirty: false,
            found,
        }
    }

    /// Whether a readable registry was there at load: false on the very first start (and
    /// after an unreadable one was moved aside).
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
        self.entries.insert(entry.key(), entry);
        self.dirty = true;
    }

    /// Notes that the file is still there (under `path`), and how its fingerprint grew.
    pub fn touch(&mut self, key: &FileKey, path: &str, fp: Fingerprint, now: i64) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.path != path || e.fp_len != fp.len || e.fp != fp.hash {
                e.path = path.to_owned();
                e.fp_len = fp.len;
                e.fp = fp.hash;
                self.dirty = true;
            }
            e.last_seen = now;
        }
    }

    /// Notes that a file the registry knows still exists (found by a scan, followed or not).
    pub fn seen(&mut self, key: &FileKey, now: i64) {
        if let Some(e) = self.entries.get_mut(key) {
            e.last_seen = now;
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

    /// Moves a file's offset forward after delivery. Ignored when the entry now belongs to
    /// another stream (the file was truncated or replaced since those events were read).
    pub fn commit(&mut self, key: &FileKey, stream: u64, offset: u64) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.stream == stream && offset > e.offset {
                e.offset = offset;
                self.dirty = true;
            }
        }
    }

    /// Drops entries of files not seen since `before` (Unix seconds).
    pub fn expire(&mut self, before: i64) {
        let n = self.entries.len();
        self.entries.retain(|_, e| e.last_seen >= before);
        if self.entries.len() != n {
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
        serde_json::to_vec(&OnDisk::V1 { files }).ok()
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
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
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
            200,
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
        assert_eq!(r2.get(&FileKey { dev: 1, ino: 2 }).unwrap().last_seen, 200);
    }

    #[test]
    fn corrupt_registry_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        std::fs::write(&path, b"{not json").unwrap();
        let r = Registry::load(path.clone());
        assert!(r.is_empty());
        assert!(dir.path().join("reg.json.corrupt").exists());
    }
}
