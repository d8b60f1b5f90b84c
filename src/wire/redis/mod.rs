//! The Redis analyzer: RESP2 and RESP3 read incrementally from each direction of a connection
//! (`resp`), commands named and their key found (`command`), replies paired with commands in
//! order, pushes set aside (`conn`), and each pair reported as one event (`transaction`).

pub mod command;
pub mod conn;
pub mod resp;
pub mod transaction;

#[cfg(test)]
mod fuzz;

use crate::config::{ByteSize, Duration};
use crate::wire::analyzer::{
    self, AnySession, Protocol, Session as _, Settings, Side, Sink, Transport,
};
use serde::Deserialize;

/// The `redis` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Live capture settings (`redis` input only).
    #[serde(default)]
    pub capture: Option<crate::wire::capture::CaptureConfig>,
    /// TCP ports that carry Redis (server side); an empty list turns the decoder off.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Copy each command's arguments into `redis.args`. Off by default: arguments are the
    /// stored values. The arguments of `AUTH`, `HELLO`, `MIGRATE`, `ACL SETUSER` and
    /// `CONFIG SET` are never copied.
    #[serde(default)]
    pub include_args: bool,
    /// A command without a reply for this long is reported (`event.reason: response_missing`).
    /// Blocking commands (`BLPOP` with a long timeout) may need more.
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// Most commands waiting for their replies on one connection (a pipeline deeper than this
    /// reports its oldest commands as unanswered).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// A connection without packets for this long is closed and its waiting commands reported.
    #[serde(default = "default_conn_timeout")]
    pub connection_timeout: Duration,
    /// Most connections followed at once; more are counted and not followed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a connection.
    #[serde(default = "default_per_conn")]
    pub max_buffer_per_connection: ByteSize,
    /// Out-of-order bytes buffered across all connections.
    #[serde(default = "default_total")]
    pub max_buffer_total: ByteSize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            capture: None,
            ports: default_ports(),
            include_args: false,
            transaction_timeout: default_tx_timeout(),
            max_pending: default_max_pending(),
            connection_timeout: default_conn_timeout(),
            max_connections: default_max_connections(),
            max_buffer_per_connection: default_per_conn(),
            max_buffer_total: default_total(),
        }
    }
}

impl RedisConfig {
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

    pub fn options(&self) -> conn::Options {
        conn::Options {
            include_args: self.include_args,
            max_pending: self.max_pending.max(1),
            limits: resp::Limits::default(),
        }
    }
}

fn default_ports() -> Vec<u16> {
    vec![6379]
}
fn default_tx_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_pending() -> usize {
    1024
}
fn default_conn_timeout() -> Duration {
    Duration::from_secs(300)
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

/// The protocol the driver runs: Redis on its ports, or recognised by a first command.
pub struct Redis {
    settings: Settings,
    options: conn::Options,
}

impl Redis {
    pub fn new(cfg: &RedisConfig) -> Redis {
        Redis {
            settings: cfg.settings(),
            options: cfg.options(),
        }
    }
}

impl Protocol for Redis {
    fn name(&self) -> &'static str {
        "redis"
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

/// One connection as the driver holds it.
pub struct Session {
    conn: conn::Conn,
    stats: conn::ConnStats,
}

impl Session {
    /// Streams that stopped being RESP since the last call, for the driver's counter.
    fn count(&mut self, out: &mut Sink<transaction::Transaction>) {
        out.malformed += std::mem::take(&mut self.stats.parse_errors);
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
