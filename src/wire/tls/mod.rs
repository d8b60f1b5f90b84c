//! The TLS handshake analyzer: ClientHello and ServerHello (with the certificate while it is
//! still in clear, TLS <= 1.2) from reassembled TCP streams, reported as one event per
//! handshake with the negotiated parameters, JA3/JA3S/JA4 fingerprints and how it ended.
//!
//! `conn` is the per-connection state machine (record layer and handshake), `hello` and
//! `x509` parse messages, `fingerprint` and `names` turn them into the event's strings,
//! `event` writes it; this file is the config section and the `analyzer` trait glue.

pub mod conn;
pub mod event;
pub mod fingerprint;
pub mod hello;
pub mod names;
pub mod x509;

#[cfg(test)]
mod tests;

pub use conn::{Conn, ConnStats, Handshake, Limits, Unfinished};

use super::analyzer::{self, AnySession, Protocol, Session, Settings, Side, Sink, Transport};
use crate::config::{ByteSize, Duration};
use serde::Deserialize;

/// The `tls` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Live capture settings (`tls` input only).
    #[serde(default)]
    pub capture: Option<super::capture::CaptureConfig>,
    /// TCP ports that carry TLS; an empty list follows connections whose first bytes are a
    /// TLS hello.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// A handshake not established after this long is reported (`event.reason:
    /// handshake_timeout`).
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// A connection without packets for this long is closed.
    #[serde(default = "default_conn_timeout")]
    pub connection_timeout: Duration,
    /// Most connections followed at once; more are counted, not followed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a connection.
    #[serde(default = "default_per_conn")]
    pub max_buffer_per_connection: ByteSize,
    /// Out-of-order bytes buffered across all TLS connections.
    #[serde(default = "default_total")]
    pub max_buffer_total: ByteSize,
    /// Longest handshake message read (a certificate chain is the long one); a longer one
    /// is skipped and counted in `trawl_tls_malformed_total`.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            capture: None,
            ports: default_ports(),
            transaction_timeout: default_tx_timeout(),
            connection_timeout: default_conn_timeout(),
            max_connections: default_max_connections(),
            max_buffer_per_connection: default_per_conn(),
            max_buffer_total: default_total(),
            max_message_bytes: default_max_message(),
        }
    }
}

/// HTTPS, its alternates, the Kubernetes API server, and the implicit-TLS mail and LDAP
/// ports.
fn default_ports() -> Vec<u16> {
    vec![443, 8443, 6443, 465, 993, 995, 636]
}
fn default_tx_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_conn_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> usize {
    50_000
}
fn default_per_conn() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_total() -> ByteSize {
    ByteSize(32 * 1024 * 1024)
}
fn default_max_message() -> ByteSize {
    ByteSize(64 * 1024)
}

/// TLS over TCP: the `tls` section of a packet input.
pub struct Tls {
    settings: Settings,
    limits: Limits,
}

impl Tls {
    pub fn new(cfg: TlsConfig) -> Tls {
        let ns = |d: &Duration| d.millis.max(0).saturating_mul(1_000_000);
        Tls {
            settings: Settings {
                ports: cfg.ports.clone(),
                transaction_timeout_ns: ns(&cfg.transaction_timeout),
                connection_timeout_ns: ns(&cfg.connection_timeout),
                max_connections: cfg.max_connections,
                max_buffer_per_connection: cfg.max_buffer_per_connection.as_usize(),
                max_buffer_total: cfg.max_buffer_total.as_usize(),
            },
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes.as_usize(),
            },
        }
    }
}

impl Protocol for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    fn recognize(&self, _: Transport, payload: &[u8]) -> Option<Side> {
        recognize(payload)
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        TlsSession {
            conn: Conn::new(self.limits),
            txs: Vec::new(),
        }
        .boxed()
    }
}

/// A handshake record holding a ClientHello (or an SSLv2-compatible one) is the client; one
/// holding a ServerHello the server.
fn recognize(p: &[u8]) -> Option<Side> {
    match p {
        [22, 3, 0..=4, _, _, 1, ..] => Some(Side::Client),
        [22, 3, 0..=4, _, _, 2, ..] => Some(Side::Server),
        [h, _, 1, 3, 0..=4, ..] if h & 0x80 != 0 => Some(Side::Client),
        _ => None,
    }
}

/// One TCP connection: the state machine of `conn.rs`.
struct TlsSession {
    conn: Conn,
    /// What the connection finished in the current call.
    txs: Vec<Handshake>,
}

impl TlsSession {
    fn hand_on(&mut self, st: ConnStats, out: &mut Sink<Handshake>) {
        out.malformed += st.parse_errors + st.oversized;
        for t in self.txs.drain(..) {
            out.push(t);
        }
    }
}

impl Session for TlsSession {
    type Tx = Handshake;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Handshake>) {
        let mut st = ConnStats::default();
        match side {
            Side::Client => self.conn.client_data(ts, bytes, &mut st, &mut self.txs),
            Side::Server => self.conn.server_data(ts, bytes, &mut st, &mut self.txs),
        }
        self.hand_on(st, out);
    }

    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<Handshake>) {
        let mut st = ConnStats::default();
        self.conn.gap(side == Side::Server, len, &mut st);
        self.hand_on(st, out);
    }

    fn close(&mut self, ts: i64, out: &mut Sink<Handshake>) {
        self.conn.close(ts, &mut self.txs);
        self.hand_on(ConnStats::default(), out);
    }

    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<Handshake>) {
        self.conn.expire(deadline_ns, &mut self.txs);
        self.hand_on(ConnStats::default(), out);
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
    }
}
