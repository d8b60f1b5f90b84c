//! `trawl tee --forward unix:PATH`: ships the child's lines as JSON lines to another trawl's
//! `socket` input. While the socket is down the spool keeps the lines (memory, then the spill
//! file) and the connection is retried; lines arrive once the sidecar is up.

use super::spool::{Pop, Spool, StreamKind};
use super::StreamLines;
use crate::inputs::lines::LineInfo;
use serde::Serialize;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

fn encode(out: &mut Vec<u8>, kind: StreamKind, line: &[u8], info: LineInfo) {
    let text = String::from_utf8_lossy(line);
    let now = crate::event::format_timestamp(&chrono::Utc::now());
    let rec = Record {
        timestamp: &now,
        message: &text,
        stream: kind.as_str(),
        log: info.truncated.then_some(Flags {
            flags: ["truncated"],
        }),
    };
    if serde_json::to_writer(&mut *out, &rec).is_ok() {
        out.push(b'\n');
    }
}

/// How forwarding ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardReport {
    /// Bytes of the command's output taken from the spool and not sent before giving up.
    pub unsent_bytes: u64,
}

/// Sends everything the spool yields to the Unix socket at `path`, reconnecting as needed,
/// until the spool is closed and drained, or `give_up` is set (the flush deadline passed).
pub fn run(
    spool: &Spool,
    path: PathBuf,
    max_line: usize,
    give_up: Arc<AtomicBool>,
) -> ForwardReport {
    let mut lines = StreamLines::new(max_line);
    let mut pending: Vec<u8> = Vec::new();
    // Output bytes behind `pending` (the report counts output, not its JSON encoding).
    let mut pending_raw: u64 = 0;
    let mut conn: Option<UnixStream> = None;
    let mut closed = false;
    let mut down_logged = false;
    loop {
        if pending.is_empty() {
            if closed {
                return ForwardReport::default();
            }
            match spool.pop(Duration::from_millis(200)) {
                Pop::Chunk(c) => {
                    pending_raw += c.data.len() as u64;
                    lines.push(&c, &mut |k, l, i| encode(&mut pending, k, l, i));
                }
                Pop::Empty => {}
                Pop::Closed => {
                    lines.finish(&mut |k, l, i| encode(&mut pending, k, l, i));
                    closed = true;
                }
            }
            continue;
        }
        if give_up.load(Ordering::Relaxed) {
            return ForwardReport {
                unsent_bytes: pending_raw,
            };
        }
        if conn.is_none() {
            match UnixStream::connect(&path) {
                Ok(s) => {
                    if down_logged {
                        tracing::info!(socket = %path.display(), "forward socket is up again");
                    }
                    down_logged = false;
                    conn = Some(s);
                }
                Err(e) => {
                    if !down_logged {
                        down_logged = true;
                        tracing::warn!(socket = %path.display(), error = %e, "forward socket down: spooling lines and retrying");
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
            }
        }
        if let Some(s) = conn.as_mut() {
            match s.write_all(&pending) {
                Ok(()) => {
                    pending.clear();
                    pending_raw = 0;
                }
                Err(e) => {
                    // Sent again whole after reconnecting: a sidecar may see a line twice,
                    // never miss one the spool held.
                    // A broken pipe is the sidecar closing an idle connection (or
                    // restarting): routine, so not written into the app's stderr.
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        tracing::debug!(socket = %path.display(), "forward socket closed by the sidecar: reconnecting");
                    } else {
                        tracing::warn!(socket = %path.display(), error = %e, "forward socket write failed: reconnecting");
                    }
                    conn = None;
                }
            }
        }
    }
}
