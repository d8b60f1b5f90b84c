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
use super::section::{Connection, ProtocolConfig};
use crate::config::{ByteSize, Duration};
use serde::Deserialize;

/// The `mysql` section of a packet input (its own keys; the connection settings are
/// `section::Connection`'s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
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
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            keep_literals: false,
            max_statement_bytes: default_max_statement(),
            max_message_bytes: default_max_message(),
        }
    }
}

impl ProtocolConfig for MysqlConfig {
    const NAME: &'static str = "mysql";
    const SUMMARY: &'static str = "MySQL/MariaDB commands and responses";
    const PORTS_HELP: &'static str =
        "TCP ports that carry MySQL/MariaDB (default 3306); needs `--only mysql`";
    /// Port 3306; pooled connections idle long (10 min). A statement is waited for as long as
    /// its connection may idle: reports and migrations run for minutes, and one reported
    /// unanswered at 30 s, then answered apart, loses the latency an SRE looks for.
    fn connection_defaults() -> Connection {
        Connection {
            transaction_timeout: Duration::from_secs(600),
            connection_timeout: Duration::from_secs(600),
            ..Connection::defaults(&[3306])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Mysql::new(self, connection.settings()))
    }
}

fn default_max_statement() -> ByteSize {
    ByteSize(8 * 1024)
}
fn default_max_message() -> ByteSize {
    ByteSize(64 * 1024)
}

/// `trawl_packet_mysql_<name>_total`, moved by `MysqlSession::count`.
const COUNTERS: [analyzer::Counter; 3] = [
    analyzer::Counter {
        name: "encrypted",
        help: "MySQL connections that went over to TLS (not decoded from there).",
    },
    analyzer::Counter {
        name: "gaps",
        help: "Holes in MySQL streams (that direction waits for a packet to resynchronise on).",
    },
    analyzer::Counter {
        name: "overflowed",
        help: "Commands reported unanswered because the pending queue grew past its limit.",
    },
];
const ENCRYPTED: usize = 0;
const GAPS: usize = 1;
const OVERFLOWED: usize = 2;

/// The MySQL protocol, as the driver runs it.
pub struct Mysql {
    settings: Settings,
    limits: Limits,
}

impl Mysql {
    pub fn new(cfg: &MysqlConfig, settings: Settings) -> Mysql {
        Mysql {
            settings,
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
        MysqlConfig::NAME
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
    fn counters(&self) -> &'static [analyzer::Counter] {
        &COUNTERS
    }
    /// A database's transactions, as ECS files them.
    fn category(&self) -> &'static [&'static str] {
        &["database", "network"]
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
    /// What was counted since the last call goes to the driver's counters (the connection's
    /// stats were computed before, but only the malformed count was published).
    fn count(&mut self, out: &mut Sink<Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.parse_errors);
        out.count(ENCRYPTED, std::mem::take(&mut self.stats.encrypted));
        out.count(GAPS, std::mem::take(&mut self.stats.gaps));
        out.count(OVERFLOWED, std::mem::take(&mut self.stats.overflowed));
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
        self.conn
            .expire(deadline_ns, &self.limits, &mut out.transactions);
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
    }
}

#[cfg(test)]
mod tests;
