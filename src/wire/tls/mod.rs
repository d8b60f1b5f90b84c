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
use super::section::{Connection, ProtocolConfig};
use crate::config::ByteSize;
use serde::Deserialize;

/// The `tls` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Longest handshake message read (a certificate chain is the long one); a longer one
    /// is skipped and counted in `trawl_tls_malformed_total`.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
}

impl ProtocolConfig for TlsConfig {
    const NAME: &'static str = "tls";
    const SUMMARY: &'static str = "TLS handshakes";
    const PORTS_HELP: &'static str =
        "TCP ports that carry TLS (default 443,8443,6443,465,993,995,636); needs `--only tls`";
    /// The ports of HTTPS, the Kubernetes API, SMTPS, IMAPS, POP3S and LDAPS.
    fn connection_defaults() -> Connection {
        Connection {
            max_buffer_per_connection: ByteSize(64 * 1024),
            ..Connection::defaults(&[443, 8443, 6443, 465, 993, 995, 636])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Tls::new(self, connection.settings()))
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_message_bytes: default_max_message(),
        }
    }
}

/// HTTPS, its alternates, the Kubernetes API server, and the implicit-TLS mail and LDAP
/// ports.
fn default_max_message() -> ByteSize {
    ByteSize(64 * 1024)
}

/// `trawl_packet_tls_<name>_total`, moved by `TlsSession::hand_on`.
const COUNTERS: [analyzer::Counter; 3] = [
    analyzer::Counter {
        name: "gaps",
        help: "Holes in TLS streams that lost handshake bytes.",
    },
    analyzer::Counter {
        name: "sslv2_hellos",
        help: "SSLv2-compatible ClientHellos (skipped; the server's reply is read).",
    },
    analyzer::Counter {
        name: "oversized",
        help: "TLS handshake messages longer than max_message_bytes, skipped.",
    },
];
const GAPS: usize = 0;
const SSLV2_HELLOS: usize = 1;
const OVERSIZED: usize = 2;

/// TLS over TCP: the `tls` section of a packet input.
pub struct Tls {
    settings: Settings,
    limits: Limits,
}

impl Tls {
    pub fn new(cfg: &TlsConfig, settings: Settings) -> Tls {
        Tls {
            settings,
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes.as_usize(),
            },
        }
    }
}

impl Protocol for Tls {
    fn name(&self) -> &'static str {
        TlsConfig::NAME
    }
    fn counters(&self) -> &'static [analyzer::Counter] {
        &COUNTERS
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
        out.count(GAPS, st.gaps);
        out.count(SSLV2_HELLOS, st.sslv2_hellos);
        out.count(OVERSIZED, st.oversized);
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
        let mut st = ConnStats::default();
        self.conn.close(ts, &mut st, &mut self.txs);
        self.hand_on(st, out);
    }

    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<Handshake>) {
        self.conn.expire(deadline_ns, &mut self.txs);
        self.hand_on(ConnStats::default(), out);
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
    }
}
