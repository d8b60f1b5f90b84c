//! The HTTP/2 analyzer (cleartext: prior knowledge and the h2c upgrade) with gRPC: frames per
//! direction (`frame`), HPACK per direction (`hpack`, `tables`), streams paired into
//! transactions (`conn`, `transaction`), and gRPC's names, statuses and messages (`grpc`).

pub mod conn;
pub mod frame;
pub mod grpc;
pub mod hpack;
pub mod tables;
pub mod transaction;

#[cfg(test)]
mod tests;

use crate::config::{ByteSize, Duration};
use crate::wire::analyzer::{
    self, AnySession, Protocol, Session as _, Settings, Side, Sink, Transport,
};
use serde::Deserialize;

/// The `http2` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Live capture settings (`http2` input only).
    #[serde(default)]
    pub capture: Option<crate::wire::capture::CaptureConfig>,
    /// TCP ports that carry cleartext HTTP/2 (either end). Empty, the default: connections
    /// that no other protocol claims by port and that start with the HTTP/2 preface or an
    /// `Upgrade: h2c` request.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// A stream not ended for this long is reported (`event.reason: response_missing` or
    /// `response_incomplete`). Long-lived streaming calls need more.
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// A connection without packets for this long is closed and its open streams reported.
    #[serde(default = "default_conn_timeout")]
    pub connection_timeout: Duration,
    /// Most connections followed at once; more are counted and not followed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
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
    /// Out-of-order bytes buffered per direction of a connection.
    #[serde(default = "default_per_conn")]
    pub max_buffer_per_connection: ByteSize,
    /// Out-of-order bytes buffered across all connections.
    #[serde(default = "default_total")]
    pub max_buffer_total: ByteSize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            capture: None,
            ports: Vec::new(),
            transaction_timeout: default_tx_timeout(),
            connection_timeout: default_conn_timeout(),
            max_connections: default_max_connections(),
            max_streams: default_max_streams(),
            max_header_block: default_max_header_block(),
            max_table_size: default_max_table(),
            max_buffer_per_connection: default_per_conn(),
            max_buffer_total: default_total(),
        }
    }
}

impl Http2Config {
    pub fn settings(&self) -> Settings {
        let ns = |d: &Duration| d.millis.max(0).saturating_mul(1_000_000);
        Settings {
            ports: self.ports.clone(),
            transaction_timeout_ns: ns(&self.transaction_timeout),
            connection_timeout_ns: ns(&self.connection_timeout),
            max_connections: self.max_connections,
            max_buffer_per_connection: self.max_buffer_per_connection.as_usize(),
            max_buffer_total: self.max_buffer_total.as_usize(),
        }
    }

    pub fn limits(&self) -> conn::Limits {
        conn::Limits {
            max_streams: self.max_streams.max(1),
            max_header_block: self.max_header_block.as_usize().max(1024),
            max_table_size: self.max_table_size.as_usize(),
        }
    }
}

fn default_tx_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_conn_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_connections() -> usize {
    50_000
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
fn default_per_conn() -> ByteSize {
    ByteSize(256 * 1024)
}
fn default_total() -> ByteSize {
    ByteSize(32 * 1024 * 1024)
}

/// The protocol the driver runs.
pub struct Http2 {
    settings: Settings,
    limits: conn::Limits,
}

impl Http2 {
    pub fn new(cfg: &Http2Config) -> Http2 {
        Http2 {
            settings: cfg.settings(),
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
        "http2"
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
        }
        .boxed()
    }
}

/// One connection as the driver holds it.
pub struct Session {
    conn: conn::Conn,
    stats: conn::ConnStats,
}

impl Session {
    fn count(&mut self, out: &mut Sink<transaction::Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.malformed);
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
        self.conn.expire(deadline_ns, &mut out.transactions);
    }
    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
    }
}
