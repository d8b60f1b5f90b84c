//! The Redis analyzer: RESP2 and RESP3 read incrementally from each direction of a connection
//! (`resp`), commands named and their key found (`command`), replies paired with commands in
//! order, pushes set aside (`conn`), and each pair reported as one event (`transaction`).

pub mod command;
pub mod conn;
pub mod resp;
pub mod transaction;

#[cfg(test)]
mod fuzz;

use super::section::{Connection, ProtocolConfig};
use crate::config::Duration;
use crate::wire::analyzer::{
    self, AnySession, Protocol, Session as _, Settings, Side, Sink, Transport,
};
use serde::Deserialize;

/// The `redis` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Copy each command's arguments into `redis.args`. Off by default: arguments are the
    /// stored values. The arguments of `AUTH`, `HELLO`, `MIGRATE`, `ACL SETUSER` and
    /// `CONFIG SET` are never copied.
    #[serde(default)]
    pub include_args: bool,
    /// Most commands waiting for their replies on one connection (a pipeline deeper than this
    /// reports its oldest commands as unanswered).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

impl ProtocolConfig for RedisConfig {
    const NAME: &'static str = "redis";
    const SUMMARY: &'static str = "Redis commands and replies";
    const PORTS_HELP: &'static str =
        "TCP ports that carry Redis (default 6379); needs `--only redis`";
    /// Port 6379; clients hold connections open for long (pools), so they are kept 5 min idle.
    fn connection_defaults() -> Connection {
        Connection {
            connection_timeout: Duration::from_secs(300),
            ..Connection::defaults(&[6379])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Redis::new(self, connection.settings()))
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            include_args: false,
            max_pending: default_max_pending(),
        }
    }
}

impl RedisConfig {
    pub fn options(&self) -> conn::Options {
        conn::Options {
            include_args: self.include_args,
            max_pending: self.max_pending.max(1),
            limits: resp::Limits::default(),
        }
    }
}

fn default_max_pending() -> usize {
    1024
}

/// The protocol the driver runs: Redis on its ports, or recognised by a first command.
pub struct Redis {
    settings: Settings,
    options: conn::Options,
}

impl Redis {
    pub fn new(cfg: &RedisConfig, settings: Settings) -> Redis {
        Redis {
            settings,
            options: cfg.options(),
        }
    }
}

impl Protocol for Redis {
    fn name(&self) -> &'static str {
        RedisConfig::NAME
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
    /// A first payload that is an array of bulk strings (`*2\r\n$3\r\nGET`) is a client's
    /// command; server bytes are too short to tell from other protocols.
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side> {
        let array = match payload {
            [b'*', rest @ ..] => {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                digits > 0 && rest[digits..].starts_with(b"\r\n$")
            }
            _ => false,
        };
        (transport == Transport::Tcp && array).then_some(Side::Client)
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        // The driver does not say whether the connection's first bytes are seen: the session
        // waits for a segment that starts a command, which on a new connection is the first.
        Session {
            conn: conn::Conn::new(self.options, false),
            stats: conn::ConnStats::default(),
        }
        .boxed()
    }
}

/// `trawl_packet_redis_<name>_total`, moved by `Session::count`.
const COUNTERS: [analyzer::Counter; 4] = [
    analyzer::Counter {
        name: "gaps",
        help: "Holes in Redis streams.",
    },
    analyzer::Counter {
        name: "abandoned",
        help: "Redis connections no longer followed (command order lost to a gap or malformed bytes).",
    },
    analyzer::Counter {
        name: "late_replies",
        help: "Redis replies to commands already reported unanswered (timeout, too many pending).",
    },
    analyzer::Counter {
        name: "pushes",
        help: "Redis server messages that answer no command (pub/sub messages, MONITOR lines, RESP3 pushes).",
    },
];
const GAPS: usize = 0;
const ABANDONED: usize = 1;
const LATE_REPLIES: usize = 2;
const PUSHES: usize = 3;

/// One connection as the driver holds it.
pub struct Session {
    conn: conn::Conn,
    stats: conn::ConnStats,
}

impl Session {
    /// What was counted since the last call, for the driver's counters.
    fn count(&mut self, out: &mut Sink<transaction::Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.parse_errors);
        out.count(GAPS, std::mem::take(&mut self.stats.gaps));
        out.count(ABANDONED, std::mem::take(&mut self.stats.abandoned));
        out.count(LATE_REPLIES, std::mem::take(&mut self.stats.late_replies));
        out.count(PUSHES, std::mem::take(&mut self.stats.pushes));
    }
}

impl analyzer::Session for Session {
    type Tx = transaction::Transaction;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Self::Tx>) {
        let txs = &mut out.transactions;
        match side {
            Side::Client => self.conn.client_data(bytes, ts, &mut self.stats, txs),
            Side::Server => self.conn.server_data(bytes, ts, &mut self.stats, txs),
        }
        self.count(out);
    }
    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<Self::Tx>) {
        let txs = &mut out.transactions;
        match side {
            Side::Client => self.conn.client_gap(len as u64, &mut self.stats, txs),
            Side::Server => self.conn.server_gap(len as u64, &mut self.stats, txs),
        }
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
