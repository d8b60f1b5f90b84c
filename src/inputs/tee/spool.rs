//! The spool between `trawl tee`'s copy threads and whatever ships the lines: bounded memory
//! first, then a bounded spill file; past both, the copy thread waits for room (the command
//! then waits on its pipe) or, with `--when-full drop`, the bytes are dropped and counted.

use std::collections::VecDeque;
use std::fs::File;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Which of the child's streams a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }

    fn tag(self) -> u8 {
        match self {
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
        }
    }
}

/// Bytes as the child wrote them, in order per stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub stream: StreamKind,
    pub data: Vec<u8>,
}

/// What `Spool::pop` found.
#[derive(Debug)]
pub enum Pop {
    Chunk(Chunk),
    /// Nothing now (the timeout passed).
    Empty,
    /// Every writer is done and everything was taken.
    Closed,
}

struct Spill {
    file: File,
    path: PathBuf,
    write_pos: u64,
    read_pos: u64,
    /// Bytes of the child's output held in the file: the positions also count record headers,
    /// which must not show up in what is reported as dropped or not shipped.
    data_bytes: u64,
}

/// What a push does when memory and the spill file are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: the command waits on its full pipe, nothing is lost.
    Block,
    /// Drop the bytes and count them: the command never waits.
    Drop,
}

impl WhenFull {
    pub fn parse(s: &str) -> Result<WhenFull, String> {
        match s {
            "block" => Ok(WhenFull::Block),
            "drop" => Ok(WhenFull::Drop),
            _ => Err(format!("expected `block` or `drop`, got `{s}`")),
        }
    }
}

/// Where a chunk that does not go to memory went.
enum Spilled {
    Written,
    /// The spill file has no room for it now.
    Full,
    /// The spill file cannot be created or written.
    Failed,
}

struct State {
    memory: VecDeque<Chunk>,
    memory_bytes: usize,
    spill: Option<Spill>,
    spill_error_logged: bool,
    writers: usize,
    dropped_bytes: u64,
    drop_logged: bool,
    spilled_bytes: u64,
    /// Nothing takes chunks any more (the shipper ended): pushes drop instead of waiting.
    shipper_gone: bool,
}

/// Limits and place of a spool.
#[derive(Clone, Debug)]
pub struct SpoolLimits {
    pub memory_bytes: usize,
    pub spill_bytes: u64,
    /// Folder of the spill file (created on first use, removed when the spool is dropped).
    pub spill_dir: PathBuf,
    pub when_full: WhenFull,
}

pub struct Spool {
    state: Mutex<State>,
    ready: Condvar,
    /// Signalled when a pop makes room, for pushes waiting under `WhenFull::Block`.
    room: Condvar,
    limits: SpoolLimits,
}

const RECORD_HEADER: u64 = 5;

impl Spool {
    pub fn new(limits: SpoolLimits, writers: usize) -> Spool {
        Spool {
            state: Mutex::new(State {
                memory: VecDeque::new(),
                memory_bytes: 0,
                spill: None,
                spill_error_logged: false,
                writers,
                dropped_bytes: 0,
                drop_logged: false,
                spilled_bytes: 0,
                shipper_gone: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            limits,
        }
    }

    /// Queues a chunk: in memory while there is room and nothing waits on disk (order is kept),
    /// otherwise in the spill file; past both it waits for room (`Block`) or is dropped and
    /// counted (`Drop`, or once nothing ships any more).
    pub fn push(&self, chunk: Chunk) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        loop {
            let spilling = st.spill.as_ref().is_some_and(|s| s.read_pos < s.write_pos);
            // A chunk bigger than the whole memory budget still goes through an empty spool,
            // or it would wait forever.
            let fits = st.memory_bytes + chunk.data.len() <= self.limits.memory_bytes
                || (st.memory.is_empty() && self.limits.when_full == WhenFull::Block);
            if !spilling && fits {
                st.memory_bytes += chunk.data.len();
                st.memory.push_back(chunk);
                break;
            }
            let failed = match self.spill(&mut st, &chunk) {
                Spilled::Written => break,
                Spilled::Full => false,
                Spilled::Failed => true,
            };
            if self.limits.when_full == WhenFull::Drop || st.shipper_gone {
                self.drop_chunk(&mut st, &chunk, failed);
                break;
            }
            st = match self.room.wait(st) {
                Ok(st) => st,
                Err(_) => return,
            };
        }
        drop(st);
        self.ready.notify_one();
    }

    fn drop_chunk(&self, st: &mut State, chunk: &Chunk, spill_failed: bool) {
        st.dropped_bytes += chunk.data.len() as u64;
        if !st.drop_logged && !spill_failed {
            st.drop_logged = true;
            tracing::warn!(
                memory_buffer = self.limits.memory_bytes,
                spill_max = self.limits.spill_bytes,
                "buffers full: dropping the command's output for shipping (it still passes through; the bytes dropped are counted and reported at exit; logged once)"
            );
        }
    }

    /// Nothing takes chunks any more: pushes waiting for room drop instead, and so do later
    /// ones, so the command is never held by a shipper that ended.
    pub fn shipper_gone(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.shipper_gone = true;
        }
        self.room.notify_all();
    }

    fn spill(&self, st: &mut State, chunk: &Chunk) -> Spilled {
        let len = chunk.data.len() as u64;
        if st.spill.is_none() {
            match create_spill(&self.limits.spill_dir) {
                Ok((file, path)) => {
                    st.spill = Some(Spill {
                        file,
                        path,
                        write_pos: 0,
                        read_pos: 0,
                        data_bytes: 0,
                    })
                }
                Err(e) => {
                    if !st.spill_error_logged {
                        st.spill_error_logged = true;
                        tracing::warn!(dir = %self.limits.spill_dir.display(), error = %e, "cannot create the spill file: only memory holds what waits to be shipped (logged once)");
                    }
                    return Spilled::Failed;
                }
            }
        }
        let Some(sp) = st.spill.as_mut() else {
            return Spilled::Failed;
        };
        if sp.write_pos - sp.read_pos + RECORD_HEADER + len > self.limits.spill_bytes {
            return Spilled::Full;
        }
        let mut record = Vec::with_capacity(chunk.data.len() + RECORD_HEADER as usize);
        record.push(chunk.stream.tag());
        record.extend_from_slice(&(chunk.data.len() as u32).to_le_bytes());
        record.extend_from_slice(&chunk.data);
        match sp.file.write_all_at(&record, sp.write_pos) {
            Ok(()) => {
                sp.write_pos += record.len() as u64;
                sp.data_bytes += len;
                st.spilled_bytes += len;
                Spilled::Written
            }
            Err(e) => {
                if !st.spill_error_logged {
                    st.spill_error_logged = true;
                    tracing::warn!(path = %sp.path.display(), error = %e, "cannot write the spill file: only memory holds what waits to be shipped (logged once)");
                }
                Spilled::Failed
            }
        }
    }

    /// A writer (one per stream of the child) reached its end.
    pub fn writer_done(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.writers = st.writers.saturating_sub(1);
        }
        self.ready.notify_all();
    }

    /// The next chunk in order, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Pop {
        let Ok(mut st) = self.state.lock() else {
            return Pop::Closed;
        };
        loop {
            if let Some(c) = st.memory.pop_front() {
                st.memory_bytes -= c.data.len();
                self.room.notify_all();
                return Pop::Chunk(c);
            }
            if let Some(c) = Self::unspill(&mut st) {
                self.room.notify_all();
                return Pop::Chunk(c);
            }
            if st.writers == 0 {
                return Pop::Closed;
            }
            // A push may wait for room the spill file's reset (a read error) just made.
            self.room.notify_all();
            let (next, res) = match self.ready.wait_timeout(st, timeout) {
                Ok(r) => r,
                Err(_) => return Pop::Closed,
            };
            st = next;
            if res.timed_out()
                && st.memory.is_empty()
                && st.spill.as_ref().is_none_or(|s| s.read_pos >= s.write_pos)
            {
                return if st.writers == 0 {
                    Pop::Closed
                } else {
                    Pop::Empty
                };
            }
        }
    }

    fn unspill(st: &mut State) -> Option<Chunk> {
        let sp = st.spill.as_mut()?;
        if sp.read_pos >= sp.write_pos {
            return None;
        }
        let mut header = [0u8; RECORD_HEADER as usize];
        let read = sp
            .file
            .read_exact_at(&mut header, sp.read_pos)
            .and_then(|_| {
                let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
                let mut data = vec![0u8; len];
                sp.file
                    .read_exact_at(&mut data, sp.read_pos + RECORD_HEADER)?;
                Ok(data)
            });
        match read {
            Ok(data) => {
                sp.read_pos += RECORD_HEADER + data.len() as u64;
                sp.data_bytes = sp.data_bytes.saturating_sub(data.len() as u64);
                if sp.read_pos == sp.write_pos {
                    // Drained: start the file over so it never grows past one burst.
                    sp.read_pos = 0;
                    sp.write_pos = 0;
                    let _ = sp.file.set_len(0);
                }
                let stream = if header[0] == 2 {
                    StreamKind::Stderr
                } else {
                    StreamKind::Stdout
                };
                Some(Chunk { stream, data })
            }
            Err(e) => {
                tracing::warn!(path = %sp.path.display(), error = %e, "cannot read the spill file: its content is dropped");
                st.dropped_bytes += sp.data_bytes;
                sp.data_bytes = 0;
                sp.read_pos = 0;
                sp.write_pos = 0;
                let _ = sp.file.set_len(0);
                None
            }
        }
    }

    /// Bytes dropped because memory and the spill file were full.
    pub fn dropped_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.dropped_bytes).unwrap_or(0)
    }

    /// Bytes that went through the spill file.
    pub fn spilled_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.spilled_bytes).unwrap_or(0)
    }

    /// Bytes still queued (memory and spill file).
    pub fn queued_bytes(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.memory_bytes as u64 + s.spill.as_ref().map(|sp| sp.data_bytes).unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Spool {
    /// Removes the spill file (at exit: `process::exit` runs no destructors, and other threads
    /// may still hold the spool). What it still held is counted as dropped.
    pub fn remove_spill_file(&self) {
        if let Ok(mut st) = self.state.lock() {
            // Unlinked when created: closing it returns its space.
            if let Some(sp) = st.spill.take() {
                st.dropped_bytes += sp.data_bytes;
            }
        }
    }
}

/// Creates the spill file in `dir`: always a new file (in a shared `/tmp` another user could
/// have put a symlink at a name trawl would open, and trawl often runs as root), readable by
/// trawl's user only (the app's lines may hold secrets), and unlinked at once, so that the
/// open file alone keeps its space: a `kill -9` or the OOM killer leaves nothing behind (a
/// named file was left, up to `--spill-max`, at every such death). `path` is for the logs.
fn create_spill(dir: &std::path::Path) -> std::io::Result<(File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut attempt = 0u32;
    loop {
        let path = dir.join(format!(
            "trawl-tee-{}-{stamp:08x}-{attempt}.spill",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok((file, path));
            }
            // Someone else's file (or link) at that name: never opened, another name tried.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.remove_spill_file();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn chunk(s: &str) -> Chunk {
        Chunk {
            stream: StreamKind::Stdout,
            data: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn memory_then_spill_then_drop_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(
            SpoolLimits {
                memory_bytes: 4,
                spill_bytes: 20,
                spill_dir: dir.path().to_path_buf(),
                when_full: WhenFull::Drop,
            },
            1,
        );
        spool.push(chunk("abc")); // memory
        spool.push(chunk("de")); // memory full: spill
        spool.push(chunk("f")); // spill (keeps order even though memory would fit)
        spool.push(chunk("0123456789")); // spill full (5+2 + 5+1 + 5+10 > 20): dropped
        assert_eq!(spool.dropped_bytes(), 10);
        let mut got = Vec::new();
        spool.writer_done();
        while let Pop::Chunk(c) = spool.pop(Duration::from_millis(10)) {
            got.push(String::from_utf8(c.data).unwrap());
        }
        assert_eq!(got, vec!["abc", "de", "f"]);
        assert!(matches!(spool.pop(Duration::from_millis(1)), Pop::Closed));
    }

    fn limits(dir: &std::path::Path, when_full: WhenFull) -> SpoolLimits {
        SpoolLimits {
            memory_bytes: 4,
            spill_bytes: 0,
            spill_dir: dir.to_path_buf(),
            when_full,
        }
    }

    #[test]
    fn a_full_spool_holds_the_pusher_until_a_pop_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::new(limits(dir.path(), WhenFull::Block), 1));
        spool.push(chunk("abcd"));
        let s = spool.clone();
        // Memory is full and the spill file takes nothing: this push can only end after a pop.
        let pusher = std::thread::spawn(move || {
            s.push(chunk("ef"));
            s.writer_done();
        });
        let mut got = Vec::new();
        loop {
            match spool.pop(Duration::from_millis(50)) {
                Pop::Chunk(c) => got.push(String::from_utf8(c.data).unwrap()),
                Pop::Empty => {}
                Pop::Closed => break,
            }
        }
        pusher.join().unwrap();
        assert_eq!(got, vec!["abcd", "ef"]);
        assert_eq!(spool.dropped_bytes(), 0);
    }

    #[test]
    fn a_pusher_waiting_for_room_drops_once_the_shipper_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::new(limits(dir.path(), WhenFull::Block), 1));
        spool.push(chunk("abcd"));
        let s = spool.clone();
        let pusher = std::thread::spawn(move || s.push(chunk("ef")));
        spool.shipper_gone();
        pusher.join().unwrap();
        assert_eq!(spool.dropped_bytes(), 2);
    }
}
