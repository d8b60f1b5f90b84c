//! The MySQL/MariaDB analyzer: the client/server protocol from reassembled TCP streams, one
//! transaction per command (COM_QUERY, COM_STMT_PREPARE, each COM_STMT_EXECUTE...) with its
//! statement (literals redacted), rows, error code and response time.
//!
//! `packet` frames the bytes and reads the protocol's packets, `conn` follows the handshake
//! and matches commands with answers, `transaction` is the event; statements are redacted by
//! `wire::sql`, shared with PostgreSQL.

pub mod conn;
pub mod packet;
pub mod transaction;

pub use conn::{Conn, ConnStats, Finished, Limits};
pub use transaction::Transaction;

use super::analyzer::{self, AnySession, Protocol, Settings, Side, Sink, Transport};
use crate::config::{ByteSize, Duration};
use serde::Deserialize;

/// The `mysql` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// Live capture settings (`mysql` input only).
    #[serde(default)]
    pub capture: Option<crate::wire::capture::CaptureConfig>,
    /// TCP ports that carry MySQL or MariaDB (either end); empty: recognised by the server's
    /// greeting on connections no other protocol claims.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Report statements with their literals (numbers, strings) as sent; by default each is
    /// replaced by `?`, as they may hold personal data or secrets.
    #[serde(default)]
    pub keep_literals: bool,
    /// Longest statement text reported (the rest is cut, tagged `mysql_statement_truncated`).
    #[serde(default = "default_max_statement")]
    pub max_statement_bytes: ByteSize,
    /// Longest packet read whole; longer ones (big rows, huge statements, 16 MiB pieces) are
    /// read up to this and the rest skipped.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
    /// A statement without an answer for this long is reported (`event.reason: response_missing`).
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// A connection without packets for this long is closed.
    #[serde(default = "default_conn_timeout")]
    pub connection_timeout: Duration,
    /// Most connections followed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a connection.
    #[serde(default = "default_per_conn")]
    pub max_buffer_per_connection: ByteSize,
    /// Out-of-order bytes buffered across all connections.
    #[serde(default = "default_total")]
    pub max_buffer_total: ByteSize,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            capture: None,
            ports: default_ports(),
            keep_literals: false,
            max_statement_bytes: default_max_statement(),
            max_message_bytes: default_max_message(),
            transaction_timeout: default_tx_timeout(),
            connection_timeout: default_conn_timeout(),
            max_connections: default_max_connections(),
            max_buffer_per_connection: default_per_conn(),
            max_buffer_total: default_total(),
        }
    }
}

fn default_ports() -> Vec<u16> {
    vec![3306]
}
fn default_max_statement() -> ByteSize {
    ByteSize(8 * 1024)
}
fn default_max_message() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_tx_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_conn_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_connections() -> usize {
    50_000
}
fn default_per_conn() -> ByteSize {
    ByteSize(256 * 1024)
}
fn default_total() -> ByteSize {
    ByteSize(32 * 1024 * 1024)
}

/// The MySQL protocol, as the driver runs it.
pub struct Mysql {
    settings: Settings,
    limits: Limits,
}

impl Mysql {
    pub fn new(cfg: &MysqlConfig) -> Mysql {
        let ms = |d: &Duration| d.millis.max(0).saturating_mul(1_000_000);
        Mysql {
            settings: Settings {
                ports: cfg.ports.clone(),
                transaction_timeout_ns: ms(&cfg.transaction_timeout),
                connection_timeout_ns: ms(&cfg.connection_timeout),
                max_connections: cfg.max_connections,
                max_buffer_per_connection: cfg.max_buffer_per_connection.as_usize(),
                max_buffer_total: cfg.max_buffer_total.as_usize(),
            },
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes.as_usize().max(64),
                max_statement_bytes: cfg.max_statement_bytes.as_usize(),
                keep_literals: cfg.keep_literals,
                ..Limits::default()
            },
        }
    }
}

impl Protocol for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The server's greeting: the server speaks first (protocol version 10, a version).
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side> {
        (transport == Transport::Tcp && conn::looks_like_greeting(payload)).then_some(Side::Server)
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        analyzer::Session::boxed(MysqlSession {
            conn: Conn::new(),
            limits: self.limits.clone(),
            stats: ConnStats::default(),
        })
    }
}

/// One connection as the driver holds it.
pub struct MysqlSession {
    conn: Conn,
    limits: Limits,
    stats: ConnStats,
}

impl MysqlSession {
    /// Malformed messages counted since the last call go to the driver's counter.
    fn count(&mut self, out: &mut Sink<Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.parse_errors);
    }
}

impl analyzer::Session for MysqlSession {
    type Tx = Transaction;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Transaction>) {
        let (l, st, txs) = (&self.limits, &mut self.stats, &mut out.transactions);
        match side {
            Side::Client => self.conn.client_data(bytes, ts, l, st, txs),
            Side::Server => self.conn.server_data(bytes, ts, l, st, txs),
        }
        self.count(out);
    }

    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<Transaction>) {
        match side {
            Side::Client => self.conn.client_gap(len, &mut self.stats),
            Side::Server => self
                .conn
                .server_gap(len, &mut self.stats, &mut out.transactions),
        }
        self.count(out);
    }

    fn close(&mut self, ts: i64, out: &mut Sink<Transaction>) {
        self.conn.close(ts, &mut out.transactions);
        self.count(out);
    }

    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<Transaction>) {
        self.conn.expire(deadline_ns, &mut out.transactions);
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
    }
}

#[cfg(test)]
mod tests;
