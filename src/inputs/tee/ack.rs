//! The acknowledgement protocol of `trawl tee --forward` (and trawl-forward) with the `socket`
//! input, and the sender's reader of the replies. Std and serde_json only: the static
//! forwarder compiles this file by path.
//!
//! The sender starts each connection with `HELLO`, two empty lines (LF, then CRLF): every
//! socket input skips empty lines, so an older trawl reads on as before and never answers. A
//! socket input that knows the protocol answers at once with `GREETING`, then, as its outputs
//! acknowledge events, with `{"ack":N}` lines: every byte of the connection before offset `N`
//! (counted from its first byte, the hello included) is delivered, or needed no delivery. A
//! sender that gets no greeting within `GREETING_WAIT` counts a line as shipped once written.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The sender's first bytes on a connection.
pub const HELLO: &[u8] = b"\n\r\n";

/// The receiver's answer to `HELLO`, before any acknowledgement.
pub const GREETING: &[u8] = b"{\"protocol\":\"trawl-socket\",\"version\":2,\"ack\":\"offset\"}\n";

/// How long a sender waits for the greeting before it takes the receiver for one that does not
/// acknowledge. A receiver that knows the protocol answers as soon as it reads the hello.
pub const GREETING_WAIT: Duration = Duration::from_secs(5);

/// One acknowledgement line.
pub fn ack_line(offset: u64) -> Vec<u8> {
    format!("{{\"ack\":{offset}}}\n").into_bytes()
}

/// What the receiver said on one connection so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct News {
    pub greeted: bool,
    /// The highest offset acknowledged.
    pub acked: Option<u64>,
    /// The connection ended (the receiver closed it, restarted or crashed).
    pub closed: bool,
}

/// What the reader thread of a connection shares with the sender.
pub struct Link {
    news: Mutex<News>,
    changed: Condvar,
}

impl Link {
    pub fn take(&self) -> News {
        self.news.lock().map(|n| *n).unwrap_or(News {
            closed: true,
            ..News::default()
        })
    }

    /// Waits up to `timeout` for the receiver to say something.
    pub fn wait(&self, timeout: Duration) {
        if let Ok(n) = self.news.lock() {
            let _ = self.changed.wait_timeout(n, timeout);
        }
    }

    fn update(&self, f: impl FnOnce(&mut News)) {
        if let Ok(mut n) = self.news.lock() {
            f(&mut n);
        }
        self.changed.notify_all();
    }
}

/// Replies longer than this are not the protocol's: skipped.
const MAX_REPLY: usize = 4096;

/// Starts the thread that reads the receiver's replies on `stream` (a clone of the sending
/// socket) until the connection ends.
pub fn read_replies(mut stream: UnixStream) -> Arc<Link> {
    let link = Arc::new(Link {
        news: Mutex::new(News::default()),
        changed: Condvar::new(),
    });
    let l = link.clone();
    let spawned = std::thread::Builder::new()
        .name("trawl-tee-acks".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut line: Vec<u8> = Vec::new();
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                for &b in &buf[..n] {
                    if b != b'\n' {
                        if line.len() <= MAX_REPLY {
                            line.push(b);
                        }
                        continue;
                    }
                    if line.len() <= MAX_REPLY {
                        let reply = parse_reply(&line);
                        l.update(|news| match reply {
                            Reply::Greeting => news.greeted = true,
                            Reply::Ack(n) => news.acked = Some(news.acked.map_or(n, |a| a.max(n))),
                            Reply::Other => {}
                        });
                    }
                    line.clear();
                }
            }
            l.update(|news| news.closed = true);
        });
    if spawned.is_err() {
        link.update(|news| news.closed = true);
    }
    link
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Greeting,
    Ack(u64),
    Other,
}

fn parse_reply(line: &[u8]) -> Reply {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(line) else {
        return Reply::Other;
    };
    if m.get("protocol").and_then(|p| p.as_str()) == Some("trawl-socket") {
        return Reply::Greeting;
    }
    match m.get("ack").and_then(|a| a.as_u64()) {
        Some(n) => Reply::Ack(n),
        None => Reply::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_the_receiver_writes_them() {
        assert_eq!(
            parse_reply(&GREETING[..GREETING.len() - 1]),
            Reply::Greeting
        );
        let ack = ack_line(1234);
        assert_eq!(parse_reply(&ack[..ack.len() - 1]), Reply::Ack(1234));
        assert_eq!(parse_reply(b"{\"ack\":-1}"), Reply::Other);
        assert_eq!(parse_reply(b"hello"), Reply::Other);
    }

    #[test]
    fn the_hello_is_only_empty_lines() {
        let mut lines = crate::inputs::lines::LineSplitter::new(1024, 0);
        let mut got = Vec::new();
        lines.push(HELLO, &mut |l, _| got.push(l.to_vec()));
        assert_eq!(got, vec![Vec::<u8>::new(), Vec::new()]);
        assert_eq!(lines.position(), HELLO.len() as u64);
    }
}
