//! The spool between `trawl tee`'s copy threads and whatever ships the lines: bounded memory
//! first, then a bounded spill file, then counted drops. Pushing never waits for the shipper,
//! so the application is never slowed by the pipeline or a sidecar that is down.

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

struct State {
    memory: VecDeque<Chunk>,
    memory_bytes: usize,
    spill: Option<Spill>,
    spill_error_logged: bool,
    writers: usize,
    dropped_bytes: u64,
    spilled_bytes: u64,
}

/// Limits and place of a spool.
#[derive(Clone, Debug)]
pub struct SpoolLimits {
    pub memory_bytes: usize,
    pub spill_bytes: u64,
    /// Folder of the spill file (created on first use, removed when the spool is dropped).
    pub spill_dir: PathBuf,
}

pub struct Spool {
    state: Mutex<State>,
    ready: Condvar,
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
                spilled_bytes: 0,
            }),
            ready: Condvar::new(),
            limits,
        }
    }

    /// Queues a chunk: in memory while there is room and nothing waits on disk (order is kept),
    /// otherwise in the spill file, otherwise dropped and counted.
    pub fn push(&self, chunk: Chunk) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let spilling = st.spill.as_ref().is_some_and(|s| s.read_pos < s.write_pos);
        if !spilling && st.memory_bytes + chunk.data.len() <= self.limits.memory_bytes {
            st.memory_bytes += chunk.data.len();
            st.memory.push_back(chunk);
        } else {
            self.spill(&mut st, chunk);
        }
        drop(st);
        self.ready.notify_one();
    }

    fn spill(&self, st: &mut State, chunk: Chunk) {
        let len = chunk.data.len() as u64;
        if st.spill.is_none() {
            let path = self
                .limits
                .spill_dir
                .join(format!("trawl-tee-{}.spill", std::process::id()));
            match std::fs::create_dir_all(&self.limits.spill_dir).and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)
            }) {
                Ok(file) => {
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
                        tracing::warn!(dir = %self.limits.spill_dir.display(), error = %e, "cannot create the spill file: lines that do not fit in memory are dropped (logged once)");
                    }
                    st.dropped_bytes += len;
                    return;
                }
            }
        }
        let Some(sp) = st.spill.as_mut() else { return };
        if sp.write_pos - sp.read_pos + RECORD_HEADER + len > self.limits.spill_bytes {
            st.dropped_bytes += len;
            return;
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
            }
            Err(e) => {
                if !st.spill_error_logged {
                    st.spill_error_logged = true;
                    tracing::warn!(path = %sp.path.display(), error = %e, "cannot write the spill file: dropping what does not fit in memory (logged once)");
                }
                st.dropped_bytes += len;
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
                return Pop::Chunk(c);
            }
            if let Some(c) = Self::unspill(&mut st) {
                return Pop::Chunk(c);
            }
            if st.writers == 0 {
                return Pop::Closed;
            }
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
            if let Some(sp) = st.spill.take() {
                st.dropped_bytes += sp.data_bytes;
                let _ = std::fs::remove_file(&sp.path);
            }
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
}
