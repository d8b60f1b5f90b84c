//! The PostgreSQL analyzer: frontend/backend protocol v3 from reassembled TCP streams, one
//! transaction per statement of a simple Query and per Execute of the extended protocol, with
//! statement text (literals redacted), rows, SQLSTATE errors and response time.
//!
//! `message` frames the bytes, `conn` matches requests and answers per connection, `sql`
//! splits and redacts statements, `transaction` is the event.

pub mod conn;
pub mod message;
pub use super::sql;
pub mod transaction;

pub use conn::{Conn, ConnStats, Finished, Limits};
pub use transaction::Transaction;

use super::analyzer::{self, AnySession, Protocol, Settings, Side, Sink, Transport};
use super::section::{Connection, ProtocolConfig};
use crate::config::{ByteSize, Duration};
use serde::Deserialize;

/// The `pgsql` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgsqlConfig {
    /// Report statements with their literals (numbers, strings) as sent; by default each is
    /// replaced by `?`, as they may hold personal data or secrets.
    #[serde(default)]
    pub keep_literals: bool,
    /// Longest statement text reported (the rest is cut, tagged `pgsql_statement_truncated`).
    #[serde(default = "default_max_statement")]
    pub max_statement_bytes: ByteSize,
    /// Longest message read whole; longer ones (big COPY rows, huge statements) are read up to
    /// this and the rest skipped.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
}

impl ProtocolConfig for PgsqlConfig {
    const NAME: &'static str = "pgsql";
    const SUMMARY: &'static str = "PostgreSQL statements and results";
    const PORTS_HELP: &'static str =
        "TCP ports that carry PostgreSQL (default 5432); needs `--only pgsql`";
    /// Port 5432; pooled connections idle long (10 min). A statement is waited for as long as
    /// its connection may idle: reports and migrations run for minutes, and one reported
    /// unanswered at 30 s, then answered apart, loses the latency an SRE looks for.
    fn connection_defaults() -> Connection {
        Connection {
            transaction_timeout: Duration::from_secs(600),
            connection_timeout: Duration::from_secs(600),
            ..Connection::defaults(&[5432])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Pgsql::new(self, connection.settings()))
    }
}

impl Default for PgsqlConfig {
    fn default() -> Self {
        PgsqlConfig {
            keep_literals: false,
            max_statement_bytes: default_max_statement(),
            max_message_bytes: default_max_message(),
        }
    }
}

fn default_max_statement() -> ByteSize {
    ByteSize(8 * 1024)
}
fn default_max_message() -> ByteSize {
    ByteSize(64 * 1024)
}

/// `trawl_packet_pgsql_<name>_total`, moved by `PgsqlSession::count`.
const COUNTERS: [analyzer::Counter; 3] = [
    analyzer::Counter {
        name: "encrypted",
        help: "PostgreSQL connections that went over to TLS or GSSAPI encryption (not decoded from there).",
    },
    analyzer::Counter {
        name: "gaps",
        help: "Holes in PostgreSQL streams (that direction is no longer decoded).",
    },
    analyzer::Counter {
        name: "overflowed",
        help: "Statements reported unanswered because a pipeline grew past the pending limit.",
    },
];
const ENCRYPTED: usize = 0;
const GAPS: usize = 1;
const OVERFLOWED: usize = 2;

/// The PostgreSQL protocol, as the driver runs it.
pub struct Pgsql {
    settings: Settings,
    limits: Limits,
}

impl Pgsql {
    pub fn new(cfg: &PgsqlConfig, settings: Settings) -> Pgsql {
        Pgsql {
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

impl Protocol for Pgsql {
    fn name(&self) -> &'static str {
        PgsqlConfig::NAME
    }
    fn counters(&self) -> &'static [analyzer::Counter] {
        &COUNTERS
    }
    fn category(&self) -> &'static [&'static str] {
        &["database", "network"]
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    /// A StartupMessage or SSLRequest: the only untyped packets, sent by the client first.
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side> {
        (transport == Transport::Tcp && conn::looks_like_startup(payload)).then_some(Side::Client)
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        analyzer::Session::boxed(PgsqlSession {
            conn: Conn::new(),
            limits: self.limits.clone(),
            stats: ConnStats::default(),
        })
    }
}

/// One connection as the driver holds it.
pub struct PgsqlSession {
    conn: Conn,
    limits: Limits,
    stats: ConnStats,
}

impl PgsqlSession {
    /// What was counted since the last call goes to the driver's counters.
    fn count(&mut self, out: &mut Sink<Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.parse_errors);
        out.count(ENCRYPTED, std::mem::take(&mut self.stats.encrypted));
        out.count(GAPS, std::mem::take(&mut self.stats.gaps));
        out.count(OVERFLOWED, std::mem::take(&mut self.stats.overflowed));
    }
}

impl analyzer::Session for PgsqlSession {
    type Tx = Transaction;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Transaction>) {
        let (l, st, txs) = (&self.limits, &mut self.stats, &mut out.transactions);
        match side {
            Side::Client => self.conn.client_data(bytes, ts, l, st, txs),
            Side::Server => self.conn.server_data(bytes, ts, l, st, txs),
        }
        if self.conn.take_tls() {
            out.hand_over = Some("tls");
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
