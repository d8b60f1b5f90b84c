//! File identity: device + inode, confirmed by a fingerprint (a hash of the first bytes), so a
//! reused inode after rotation is never mistaken for the file that had it before.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Device and inode: names a file for as long as it exists, whatever its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of a file's first `len` bytes. `len` is below the configured size only while the file
/// is smaller than that; it grows with the file (`Fingerprint::upgrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of up to `max` first bytes of `file` (fewer if the file is shorter).
    pub fn read(file: &File, max: u64) -> io::Result<Fingerprint> {
        Ok(Fingerprint::of(&read_first(file, max)?))
    }

    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len() as u64,
            hash: fnv1a(bytes),
        }
    }

    /// Whether the file still starts with the bytes this fingerprint was taken from. False when
    /// it got shorter than them (truncated) or they changed (truncated and rewritten, or reused).
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let mut buf = vec![0u8; self.len as usize];
        let n = read_prefix(file, &mut buf)?;
        Ok(n as u64 == self.len && fnv1a(&buf) == self.hash)
    }
}

/// Whether `file` begins with gzip's magic bytes (RFC 1952): a compressed file, never a text
/// log to read line by line.
pub fn starts_gzip(file: &File) -> bool {
    let mut magic = [0u8; 2];
    matches!(read_at_full(file, &mut magic, 0), Ok(2)) && magic == [0x1f, 0x8b]
}

/// How many bytes before an offset are kept to check that a file still holds what was read up
/// to there: the first bytes alone do not tell a file truncated and rewritten with the same
/// header (a banner, a CSV header, a fixed preamble) past the old offset from the same file grown.
pub const END_MARK_BYTES: u64 = 256;

/// The `END_MARK_BYTES` (fewer near the start) just before `offset` in `file`; fewer when the
/// file is shorter than `offset`.
pub fn read_before(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let len = offset.min(END_MARK_BYTES);
    let mut buf = vec![0u8; len as usize];
    let n = read_at_full(file, &mut buf, offset - len)?;
    buf.truncate(n);
    Ok(buf)
}

/// Whether `file` holds `bytes` just before `offset` (trivially true for no bytes).
pub fn bytes_before_are(file: &File, offset: u64, bytes: &[u8]) -> io::Result<bool> {
    if bytes.is_empty() {
        return Ok(true);
    }
    let Some(from) = offset.checked_sub(bytes.len() as u64) else {
        return Ok(false);
    };
    let mut buf = vec![0u8; bytes.len()];
    let n = read_at_full(file, &mut buf, from)?;
    Ok(n == bytes.len() && buf == bytes)
}

/// Whether the bytes before `at` in `file` hash to `mark` (see `Tail::end_mark`); true when no
/// mark was recorded (`at == 0`, registries written before marks existed).
pub fn end_mark_matches(file: &File, at: u64, mark: u64) -> io::Result<bool> {
    if at == 0 {
        return Ok(true);
    }
    let bytes = read_before(file, at)?;
    Ok(bytes.len() as u64 == at.min(END_MARK_BYTES) && fnv1a(&bytes) == mark)
}

/// Up to `max` first bytes of `file`.
pub fn read_first(file: &File, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max as usize];
    let n = read_prefix(file, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    read_at_full(file, buf, 0)
}

/// Fills `buf` from `offset` up to the end of the file; how many bytes were read.
fn read_at_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// FNV-1a, 64 bits: stable across releases and platforms, which the on-disk registry needs
/// (std's `DefaultHasher` promises neither).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A new stream id for a file first seen now (or restarted after truncation): the id outputs
/// derive document ids from, so it must differ between two contents that reuse offsets.
pub fn new_stream_id(key: FileKey, fp: Fingerprint, salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(48);
    for v in [key.dev, key.ino, fp.len, fp.hash, salt, nanos] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fnv1a(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_detects_rewrite_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"first line\nsecond\n").unwrap();
        let f = File::open(&p).unwrap();
        let fp = Fingerprint::read(&f, 1024).unwrap();
        assert_eq!(fp.len, 18);
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"more\n").unwrap();
        assert!(fp.matches(&f).unwrap(), "appending keeps the prefix");
        std::fs::write(&p, b"other line\nsecond\n").unwrap();
        assert!(!fp.matches(&f).unwrap(), "rewritten prefix");
        std::fs::write(&p, b"first").unwrap();
        assert!(!fp.matches(&f).unwrap(), "shorter than the prefix");
    }
}
