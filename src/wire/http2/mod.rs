//! The HTTP/2 analyzer (cleartext: prior knowledge and the h2c upgrade) with gRPC: frames per
//! direction (`frame`), HPACK per direction (`hpack`, `tables`), how a connection starts
//! (`upgrade`), header blocks (`headers`), streams paired into transactions (`conn`,
//! `transaction`), and gRPC's names, statuses and messages (`grpc`).

pub mod conn;
pub mod frame;
pub mod grpc;
mod headers;
pub mod hpack;
pub mod tables;
pub mod transaction;
mod upgrade;

#[cfg(test)]
mod tests;

use crate::config::{ByteSize, Duration};
use crate::wire::analyzer::{
    self, AnySession, Protocol, Session as _, Settings, Side, Sink, Transport,
};
use crate::wire::section::{Connection, ProtocolConfig};
use serde::Deserialize;

/// The `http2` section of a packet input (its own keys; ports, timeouts and buffers are
/// `section::Connection`'s: no ports by default, connections recognised by the HTTP/2 preface
/// or an `Upgrade: h2c` request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Most streams followed at once on one connection; more are not followed.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Longest header block (HEADERS with its CONTINUATIONs) decoded. A longer one cannot be,
    /// and the direction's later header blocks are then not trusted (HPACK state lost).
    #[serde(default = "default_max_header_block")]
    pub max_header_block: ByteSize,
    /// Largest HPACK dynamic table followed per direction; an encoder that asks for more
    /// cannot be followed.
    #[serde(default = "default_max_table")]
    pub max_table_size: ByteSize,
    /// DNS over HTTPS in the clear (RFC 8484): the DNS messages of `application/dns-message`
    /// bodies and of a GET's `dns` parameter are reported as `dns` events too.
    #[serde(default = "default_dns_over_https")]
    pub dns_over_https: bool,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_streams: default_max_streams(),
            max_header_block: default_max_header_block(),
            max_table_size: default_max_table(),
            dns_over_https: default_dns_over_https(),
        }
    }
}

impl ProtocolConfig for Http2Config {
    const NAME: &'static str = "http2";
    const SUMMARY: &'static str = "HTTP/2 and gRPC streams";
    const PORTS_HELP: &'static str =
        "TCP ports that carry cleartext HTTP/2 (default: none, recognised by the preface or an h2c upgrade); needs `--only http2`";
    /// No ports (recognised by content); streaming calls run long (120 s) and connections are
    /// long-lived (10 min).
    fn connection_defaults() -> Connection {
        Connection {
            transaction_timeout: Duration::from_secs(120),
            connection_timeout: Duration::from_secs(600),
            ..Connection::defaults(&[])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Http2::new(self, connection.settings()))
    }
}

impl Http2Config {
    pub fn limits(&self) -> conn::Limits {
        conn::Limits {
            max_streams: self.max_streams.max(1),
            max_header_block: self.max_header_block.as_usize().max(1024),
            max_table_size: self.max_table_size.as_usize(),
            dns_over_https: self.dns_over_https,
        }
    }
}

fn default_max_streams() -> usize {
    256
}
fn default_max_header_block() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_table() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_dns_over_https() -> bool {
    true
}

/// The protocol the driver runs.
pub struct Http2 {
    settings: Settings,
    limits: conn::Limits,
}

impl Http2 {
    pub fn new(cfg: &Http2Config, settings: Settings) -> Http2 {
        Http2 {
            settings,
            limits: cfg.limits(),
        }
    }
}

/// Whether a connection's first payload is a client's HTTP/2 start: the preface (or as much
/// of it as the segment holds), or an HTTP/1.1 request asking for `Upgrade: h2c`.
pub fn starts_http2(payload: &[u8]) -> bool {
    let n = payload.len().min(conn::PREFACE.len());
    if n >= 4 && payload[..n] == conn::PREFACE[..n] {
        return true;
    }
    let head = &payload[..payload.len().min(4096)];
    head.first().is_some_and(u8::is_ascii_uppercase)
        && head.windows(13).any(|w| {
            w.eq_ignore_ascii_case(b"upgrade: h2c\r") || w.eq_ignore_ascii_case(b"upgrade: h2c,")
        })
}

impl Protocol for Http2 {
    fn name(&self) -> &'static str {
        Http2Config::NAME
    }
    fn counters(&self) -> &'static [analyzer::Counter] {
        &COUNTERS
    }
    /// The web's protocol, like HTTP/1's events (`http::event`).
    fn category(&self) -> &'static [&'static str] {
        &["network", "web"]
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side> {
        (transport == Transport::Tcp && starts_http2(payload)).then_some(Side::Client)
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        Session {
            conn: conn::Conn::new(self.limits),
            stats: conn::ConnStats::default(),
            timeout_ns: self.settings.transaction_timeout_ns,
        }
        .boxed()
    }
}

/// `trawl_packet_http2_<name>_total`, moved by `Session::count`.
const COUNTERS: [analyzer::Counter; 4] = [
    analyzer::Counter {
        name: "headers_lost",
        help: "HTTP/2 directions whose header blocks stopped being decoded (HPACK state lost to a gap, an HPACK error or an oversized block).",
    },
    analyzer::Counter {
        name: "directions_lost",
        help: "HTTP/2 directions no longer followed (frame boundaries lost to a gap).",
    },
    analyzer::Counter {
        name: "streams_untracked",
        help: "HTTP/2 streams not followed because max_streams were already open on their connection.",
    },
    analyzer::Counter {
        name: "push_promises",
        help: "HTTP/2 PUSH_PROMISE frames (server pushes announced).",
    },
];
const HEADERS_LOST: usize = 0;
const DIRECTIONS_LOST: usize = 1;
const STREAMS_UNTRACKED: usize = 2;
const PUSH_PROMISES: usize = 3;

/// One connection as the driver holds it.
pub struct Session {
    conn: conn::Conn,
    stats: conn::ConnStats,
    /// `transaction_timeout`: a sweep passes its deadline, `now - timeout`.
    timeout_ns: i64,
}

impl Session {
    /// What was counted since the last call, for the driver's counters.
    fn count(&mut self, out: &mut Sink<transaction::Transaction>) {
        let st = std::mem::take(&mut self.stats);
        out.malformed += st.malformed;
        out.count(HEADERS_LOST, st.headers_lost);
        out.count(DIRECTIONS_LOST, st.directions_lost);
        out.count(STREAMS_UNTRACKED, st.streams_untracked);
        out.count(PUSH_PROMISES, st.push_promises);
    }
}

impl analyzer::Session for Session {
    type Tx = transaction::Transaction;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Self::Tx>) {
        self.conn
            .data(side, bytes, ts, &mut self.stats, &mut out.transactions);
        self.count(out);
    }
    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<Self::Tx>) {
        self.conn
            .gap(side, len, &mut self.stats, &mut out.transactions);
        self.count(out);
    }
    fn close(&mut self, _: i64, out: &mut Sink<Self::Tx>) {
        self.conn.close(&mut out.transactions);
    }
    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<Self::Tx>) {
        let now_ns = deadline_ns.saturating_add(self.timeout_ns);
        self.conn.expire(deadline_ns, now_ns, &mut out.transactions);
    }
    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn
            .expires(deadline_ns, deadline_ns.saturating_add(self.timeout_ns))
    }
}
