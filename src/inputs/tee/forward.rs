//! `trawl tee --forward unix:PATH`: ships the child's lines as JSON lines to another trawl's
//! `socket` input and keeps each line until the receiver acknowledges it (its outputs have it),
//! sending again after a reconnect what was not acknowledged. The wire protocol is in `ack`.

use super::ack::{self, Link};
use super::spool::{Pop, Spool, StreamKind};
use super::StreamLines;
use crate::inputs::lines::LineInfo;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Flags<'a> {
    flags: [&'a str; 1],
}

#[derive(Serialize)]
struct Record<'a> {
    /// When tee read the line (the sidecar would otherwise stamp when it arrived).
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    message: &'a str,
    stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Flags<'a>>,
}

/// Lines encoded for the receiver, kept until it acknowledges them.
struct Block {
    data: Vec<u8>,
    /// Per line, cumulative: (end in `data`, bytes of the command's output behind the lines).
    lines: Vec<(usize, u64)>,
    /// Lines at the front already acknowledged.
    acked: usize,
    /// The connection offset of `data[0]` once written on the current connection.
    at: Option<u64>,
    /// Written on an earlier connection: sending it again may duplicate lines.
    resent: bool,
}

impl Block {
    fn new() -> Block {
        Block {
            data: Vec::new(),
            lines: Vec::new(),
            acked: 0,
            at: None,
            resent: false,
        }
    }

    /// Encodes one line; true when invalid UTF-8 in it was replaced with U+FFFD.
    fn push(&mut self, kind: StreamKind, line: &[u8], info: LineInfo) -> bool {
        let text = String::from_utf8_lossy(line);
        let replaced = matches!(text, std::borrow::Cow::Owned(_));
        let now = crate::event::format_timestamp(&chrono::Utc::now());
        let rec = Record {
            timestamp: &now,
            message: &text,
            stream: kind.as_str(),
            log: info.truncated.then_some(Flags {
                flags: ["truncated"],
            }),
        };
        if serde_json::to_writer(&mut self.data, &rec).is_ok() {
            self.data.push(b'\n');
            let raw = self.lines.last().map_or(0, |l| l.1) + (info.end - info.start);
            self.lines.push((self.data.len(), raw));
        }
        replaced
    }

    /// Where the bytes not yet acknowledged start in `data`.
    fn unacked_from(&self) -> usize {
        self.acked.checked_sub(1).map_or(0, |i| self.lines[i].0)
    }

    fn unacked_bytes(&self) -> usize {
        self.data.len() - self.unacked_from()
    }

    fn unacked_lines(&self) -> usize {
        self.lines.len() - self.acked
    }

    /// Output bytes behind the lines not yet acknowledged.
    fn unacked_raw(&self) -> u64 {
        let total = self.lines.last().map_or(0, |l| l.1);
        total - self.acked.checked_sub(1).map_or(0, |i| self.lines[i].1)
    }

    /// Marks the lines that end at or before connection offset `upto` as acknowledged; true
    /// when every line of the block is.
    fn ack(&mut self, upto: u64) -> bool {
        if let Some(at) = self.at {
            while self.acked < self.lines.len() && at + self.lines[self.acked].0 as u64 <= upto {
                self.acked += 1;
            }
        }
        self.acked == self.lines.len()
    }
}

/// How forwarding ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardReport {
    /// Bytes of the command's output taken from the spool and not acknowledged by the receiver
    /// (nor written to one that does not acknowledge) before giving up.
    pub unsent_bytes: u64,
    /// Lines whose invalid UTF-8 was replaced with U+FFFD before they were sent (the receiver
    /// cannot tell, so tee counts them).
    pub invalid_utf8_lines: u64,
}

/// Lines of the command's output whose invalid UTF-8 was replaced: the first is logged with
/// its stream and offset, all are counted for the exit.
#[derive(Default)]
struct Replaced {
    lines: u64,
}

impl Replaced {
    fn one(&mut self, kind: StreamKind, info: LineInfo) {
        self.lines += 1;
        if self.lines == 1 {
            tracing::warn!(stream = kind.as_str(), line_offset = info.start,
                "invalid UTF-8 in the command's output replaced with U+FFFD before forwarding (logged once; the count is logged when tee ends)");
        }
    }
}

/// One connection to the receiver.
struct Conn {
    stream: UnixStream,
    /// Bytes written on it so far (the hello included): the offsets its acknowledgements use.
    offset: u64,
    opened: Instant,
    link: Arc<Link>,
    /// The receiver said it acknowledges; until then, and for good once `ack::GREETING_WAIT`
    /// passed without it, lines count as shipped once written (an older trawl).
    acks: Option<bool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ends the reader thread.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Everything between the spool and the receiver.
struct Forwarder {
    path: PathBuf,
    /// Encoded lines not yet acknowledged, in order; `blocks[..written]` are written on `conn`.
    blocks: VecDeque<Block>,
    written: usize,
    /// Encoded bytes in `blocks`; no more is taken from the spool past `max_held`.
    held: usize,
    max_held: usize,
    /// Bytes of the command's output behind the lines in `blocks` not yet acknowledged.
    raw_held: u64,
    conn: Option<Conn>,
    down_logged: bool,
    unacknowledged_logged: bool,
}

/// Sends everything the spool yields to the Unix socket at `path`, reconnecting as needed,
/// until the spool is closed and every line is acknowledged, or `give_up` is set (the flush
/// deadline passed). At most `max_held` bytes of encoded lines wait for acknowledgement.
/// `unsent` always holds what the report would say now: a write to a receiver that stopped
/// reading blocks, and the caller that stops waiting must still count what was held here.
pub fn run(
    spool: &Spool,
    path: PathBuf,
    max_line: usize,
    max_held: usize,
    give_up: Arc<AtomicBool>,
    unsent: Arc<AtomicU64>,
) -> ForwardReport {
    let mut f = Forwarder {
        path,
        blocks: VecDeque::new(),
        written: 0,
        held: 0,
        max_held: max_held.max(1),
        raw_held: 0,
        conn: None,
        down_logged: false,
        unacknowledged_logged: false,
    };
    let mut lines = StreamLines::new(max_line);
    let mut replaced = Replaced::default();
    let mut closed = false;
    loop {
        unsent.store(f.raw_held + lines.pending() as u64, Ordering::Relaxed);
        if give_up.load(Ordering::Relaxed) {
            return ForwardReport {
                unsent_bytes: f.raw_held + lines.pending() as u64,
                invalid_utf8_lines: replaced.lines,
            };
        }
        f.settle();
        let to_write = f.written < f.blocks.len();
        if !closed && f.held < f.max_held {
            // With lines to write, only what is already there is taken.
            let wait = if to_write {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            match spool.pop(wait) {
                // One chunk at a time, written before the next is taken.
                Pop::Chunk(c) => {
                    let mut block = Block::new();
                    lines.push(&c, &mut |k, l, i| {
                        if block.push(k, l, i) {
                            replaced.one(k, i);
                        }
                    });
                    f.add(block);
                }
                Pop::Empty => {}
                Pop::Closed => {
                    let mut block = Block::new();
                    lines.finish(&mut |k, l, i| {
                        if block.push(k, l, i) {
                            replaced.one(k, i);
                        }
                    });
                    f.add(block);
                    closed = true;
                }
            }
        }
        if f.blocks.is_empty() {
            if closed {
                return ForwardReport {
                    unsent_bytes: 0,
                    invalid_utf8_lines: replaced.lines,
                };
            }
            continue;
        }
        if f.conn.is_none() && !f.connect() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        if f.written < f.blocks.len() {
            // Said before the write, which blocks while the receiver does not read.
            unsent.store(f.raw_held + lines.pending() as u64, Ordering::Relaxed);
            f.write();
        } else if closed || f.held >= f.max_held {
            // Everything is written: only an acknowledgement (or the connection's end, or the
            // wait for a greeting running out) changes anything now.
            if let Some(c) = &f.conn {
                c.link.wait(Duration::from_millis(200));
            }
        }
    }
}

impl Forwarder {
    fn add(&mut self, block: Block) {
        if block.lines.is_empty() {
            return;
        }
        self.held += block.data.len();
        self.raw_held += block.unacked_raw();
        self.blocks.push_back(block);
    }

    /// Applies what the connection's reader learnt: acknowledgements, the greeting, its end.
    fn settle(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let news = conn.link.take();
        if news.greeted && conn.acks != Some(true) {
            conn.acks = Some(true);
        }
        if conn.acks.is_none() && conn.opened.elapsed() >= ack::GREETING_WAIT {
            conn.acks = Some(false);
            if !self.unacknowledged_logged {
                self.unacknowledged_logged = true;
                tracing::warn!(socket = %self.path.display(), "the receiver does not acknowledge (a trawl older than this one?): lines count as shipped once written, and what it holds at a crash is lost (logged once)");
            }
        }
        let upto = match conn.acks {
            Some(true) => news.acked,
            // Written is shipped, as the receiver will never say more.
            Some(false) => Some(conn.offset),
            None => None,
        };
        if let Some(upto) = upto {
            while self.written > 0 {
                let Some(front) = self.blocks.front_mut() else {
                    break;
                };
                let before = (front.unacked_bytes(), front.unacked_raw());
                let done = front.ack(upto);
                self.held -= before.0 - front.unacked_bytes();
                self.raw_held -= before.1 - front.unacked_raw();
                if !done {
                    break;
                }
                self.blocks.pop_front();
                self.written -= 1;
            }
        }
        if news.closed {
            tracing::debug!(socket = %self.path.display(), "the receiver closed the connection: reconnecting");
            self.drop_conn();
        }
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        for b in self.blocks.iter_mut().take(self.written) {
            b.at = None;
            b.resent = true;
        }
        self.written = 0;
    }

    /// Connects and says hello; false while the socket is down.
    fn connect(&mut self) -> bool {
        let stream = match UnixStream::connect(&self.path) {
            Ok(s) => s,
            Err(e) => {
                if !self.down_logged {
                    self.down_logged = true;
                    tracing::warn!(socket = %self.path.display(), error = %e, "forward socket down: spooling lines and retrying");
                }
                return false;
            }
        };
        let link = match stream.try_clone().map(ack::read_replies) {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(socket = %self.path.display(), error = %e, "cannot read the forward socket's replies");
                return false;
            }
        };
        let mut conn = Conn {
            stream,
            offset: 0,
            opened: Instant::now(),
            link,
            acks: None,
        };
        if conn.stream.write_all(ack::HELLO).is_err() {
            return false;
        }
        conn.offset = ack::HELLO.len() as u64;
        if self.down_logged {
            tracing::info!(socket = %self.path.display(), "forward socket is up again");
        }
        self.down_logged = false;
        let again: usize = self
            .blocks
            .iter()
            .filter(|b| b.resent)
            .map(Block::unacked_lines)
            .sum();
        if again > 0 {
            tracing::info!(socket = %self.path.display(), lines = again, "sending again the lines the receiver had not acknowledged when the connection ended");
        }
        self.conn = Some(conn);
        true
    }

    /// Writes the next block not yet written on the connection.
    fn write(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(block) = self.blocks.get_mut(self.written) else {
            return;
        };
        let from = block.unacked_from();
        match conn.stream.write_all(&block.data[from..]) {
            Ok(()) => {
                block.at = Some(conn.offset - from as u64);
                conn.offset += (block.data.len() - from) as u64;
                self.written += 1;
            }
            Err(e) => {
                // Sent again whole after reconnecting: a sidecar may see a line twice, never
                // miss one. A broken pipe is the sidecar closing an idle connection (or
                // restarting): routine, so not written into the app's stderr.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    tracing::debug!(socket = %self.path.display(), "forward socket closed by the sidecar: reconnecting");
                } else {
                    tracing::warn!(socket = %self.path.display(), error = %e, "forward socket write failed: reconnecting");
                }
                self.drop_conn();
            }
        }
    }
}
