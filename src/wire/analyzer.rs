//! The one shape every protocol analyzer has: a `Protocol` (built from its config section)
//! opens a `Session` per TCP connection or UDP flow; the session is fed reassembled bytes and
//! gaps and pushes `Transaction`s, which the driver turns into events, RED metrics and edges.
//!
//! A protocol is one folder under `src/wire/` and one line in `super::register`. The
//! driver does everything below the protocol: the connection table, TCP reassembly (gaps,
//! out-of-order, budgets), which side is the client, timeouts, and writing the events. A
//! session is a plain state machine; an incomplete message is an expected state (keep the
//! bytes, wait for more), and a malformed one is counted with `Sink::malformed`, never a panic.
//!
//! ```ignore
//! struct Echo;                                   // the protocol, from its config
//! impl Protocol for Echo {
//!     fn name(&self) -> &'static str { "echo" }
//!     fn transports(&self) -> &'static [Transport] { &[Transport::Tcp] }
//!     fn settings(&self) -> &Settings { &SETTINGS }  // ports [7], timeouts, budgets
//!     fn recognize(&self, _: Transport, first: &[u8]) -> Option<Side> {
//!         first.starts_with(b"ECHO ").then_some(Side::Client)
//!     }
//!     fn open(&self, _: Transport, _: &Conn) -> Box<dyn AnySession> {
//!         EchoSession::default().boxed()
//!     }
//! }
//! #[derive(Default)]
//! struct EchoSession { asked: Option<(i64, usize)> }
//! impl Session for EchoSession {
//!     type Tx = EchoTx;                          // implements `Transaction`
//!     fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<EchoTx>) {
//!         match (side, self.asked.take()) {
//!             (Side::Client, _) => self.asked = Some((ts, bytes.len())),
//!             (Side::Server, Some((start, n))) => out.push(EchoTx { start, end: ts, n }),
//!             (Side::Server, None) => out.malformed(),
//!         }
//!     }
//!     fn gap(&mut self, _: Side, _: u32, _: &mut Sink<EchoTx>) { self.asked = None }
//!     fn close(&mut self, _: i64, _: &mut Sink<EchoTx>) {}
//!     fn expire(&mut self, _: i64, _: &mut Sink<EchoTx>) {}
//! }
//! ```
//! (`tests` below has this example whole.)

use super::community_id::{CommunityId, IdText};
use super::decode::Addr;
use super::http::metrics::ServiceMap;
use super::out::{Cached, Clock, Fields, Out, Report, Room};
use super::tunnel::Tunnel;
use super::ProtocolStats;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The transport a session runs over: a TCP stream (reassembled) or UDP datagrams (one
/// `Session::data` call each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// `network.transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        }
    }
}

/// Which peer sent some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// How a transaction ended (`event.outcome`; errors in the RED metrics and the service map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The server answered with an error (HTTP 4xx/5xx, DNS SERVFAIL, an SQL error...).
    Failure,
    /// No answer seen (timeout, one-sided capture, connection closed first).
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What the driver needs of a protocol's settings; each protocol's config builds one (the
/// same keys and defaults as `http`'s where they mean the same thing).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Ports that carry the protocol (either end); empty: connections on any port that no
    /// other protocol claims by port, recognised by content (`Protocol::recognize`).
    pub ports: Vec<u16>,
    /// A request without an answer for this long is reported (`Session::expire`).
    pub transaction_timeout_ns: i64,
    /// A connection or UDP flow without packets for this long is closed (`Session::close`).
    pub connection_timeout_ns: i64,
    /// Most connections (and UDP flows) followed at once; more are counted, not followed.
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a TCP connection.
    pub max_buffer_per_connection: usize,
    /// Out-of-order bytes buffered across all of this protocol's connections.
    pub max_buffer_total: usize,
}

/// One protocol: its name, where it is found, and a session per connection or flow.
pub trait Protocol: Send {
    /// `network.protocol`, `event.dataset`, the config key and the `trawl_<name>_*` metric
    /// prefix: `http`, `dns`.
    fn name(&self) -> &'static str;
    /// The transports it runs over.
    fn transports(&self) -> &'static [Transport];
    fn settings(&self) -> &Settings;
    /// Whether the first payload of a connection not on a configured port looks like this
    /// protocol, and if so which side sent it (which tells the client from the server on a
    /// capture that missed the handshake). Cheap: called for every new unclaimed connection.
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side>;
    /// Whether a connection that no protocol claims by port or content may still be this
    /// protocol, picked up mid-stream (HTTP: a body, then the next request). Asked only of a
    /// protocol without `ports`; the first that says so takes such connections.
    fn takes_unrecognized(&self) -> bool {
        false
    }
    /// Counters of its own (at most `MAX_COUNTERS`), which sessions move with `Sink::count`:
    /// registered on `/metrics` once per input whether they moved or not.
    fn counters(&self) -> &'static [Counter] {
        &[]
    }
    /// `event.category` of its events (ECS): `network`, and `database` first for a database.
    fn category(&self) -> &'static [&'static str] {
        &["network"]
    }
    /// A session for a new connection or flow between the endpoints of `conn`.
    fn open(&self, transport: Transport, conn: &Conn) -> Box<dyn AnySession>;
}

/// One of a protocol's own counters (`Protocol::counters`), published once per input as
/// `trawl_packet_<protocol>_<name>_total`.
#[derive(Debug)]
pub struct Counter {
    /// The metric name's part after the protocol (`encrypted`: `trawl_packet_pgsql_encrypted_total`).
    pub name: &'static str,
    /// The metric's `# HELP`.
    pub help: &'static str,
}

/// Most counters of its own a protocol may have.
pub const MAX_COUNTERS: usize = 8;

/// Where a session puts what it finished: transactions, and counts of malformed messages
/// and of its protocol's own counters. Drained by the driver after each call.
pub struct Sink<T> {
    pub transactions: Vec<T>,
    pub malformed: u64,
    counted: [u64; MAX_COUNTERS],
    /// The rest of the connection is another protocol's (its `Protocol::name`), said once:
    /// a PostgreSQL connection upgraded by an SSLRequest is TLS from the server's `S` on.
    pub hand_over: Option<&'static str>,
}

impl<T> Default for Sink<T> {
    fn default() -> Self {
        Sink {
            transactions: Vec::new(),
            malformed: 0,
            counted: [0; MAX_COUNTERS],
            hand_over: None,
        }
    }
}

impl<T> Sink<T> {
    pub fn push(&mut self, t: T) {
        self.transactions.push(t);
    }

    /// One message that could not be decoded (the session resynchronises as it can).
    pub fn malformed(&mut self) {
        self.malformed += 1;
    }

    /// Adds `n` to the protocol's own counter at `index` in `Protocol::counters`.
    pub fn count(&mut self, index: usize, n: u64) {
        if let Some(c) = self.counted.get_mut(index) {
            *c += n;
        }
    }
}

/// The state of one connection or UDP flow. Calls come in capture order; for TCP, `data` and
/// `gap` are each direction's reassembled stream.
pub trait Session: Send + 'static {
    /// The protocol's transaction record.
    type Tx: Transaction;
    /// Bytes from `side`: a stretch of the TCP stream, or one UDP datagram's payload.
    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<Self::Tx>);
    /// `len` bytes from `side` that were never captured (TCP only).
    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<Self::Tx>);
    /// `side` closed its direction (TCP FIN; what it sent before has been handed on, holes
    /// as gaps): a message that ends with the stream is complete.
    fn end(&mut self, side: Side, ts: i64, out: &mut Sink<Self::Tx>) {
        let _ = (side, ts, out);
    }
    /// The connection is over (both FINs, RST, idle, end of capture): report everything
    /// still open, answered or not.
    fn close(&mut self, ts: i64, out: &mut Sink<Self::Tx>);
    /// Report the requests that started before `deadline_ns` and are still unanswered.
    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<Self::Tx>);
    /// Whether `expire(deadline_ns)` would report anything (so that a sweep skips sessions
    /// with nothing waiting); `true` is always correct, only slower.
    fn expires(&self, deadline_ns: i64) -> bool {
        let _ = deadline_ns;
        true
    }

    /// The session as the driver holds it (`Protocol::open` returns this).
    fn boxed(self) -> Box<dyn AnySession>
    where
        Self: Sized,
    {
        Box::new(Running {
            session: self,
            sink: Sink::default(),
        })
    }
}

/// What every transaction tells the driver: enough for the common part of its event, the
/// RED metrics and the service map.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Capture time of the first byte of the request (of the response, without a request).
    pub start_ns: i64,
    /// Capture time of the last byte of the response (of the request, without a response).
    pub end_ns: i64,
    pub outcome: Outcome,
    /// Why the outcome is unknown (`event.reason`): `response_missing`, `request_missing`...
    pub reason: Option<&'a str>,
    /// Bytes on the wire of the request and of the response (headers and framing included).
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// A low-cardinality name of what was asked: HTTP method, DNS query type, SQL verb,
    /// Redis command. A metric label.
    pub operation: &'a str,
    /// A low-cardinality result: HTTP status, DNS rcode name, SQL error class; "" without
    /// an answer. A metric label.
    pub status: &'a str,
    /// Part of the transaction fell in a TCP gap (tagged `tcp_gap`).
    pub gap: bool,
}

impl Record<'_> {
    /// Response time in seconds, when there was a request and an answer.
    pub fn seconds(&self) -> Option<f64> {
        (self.outcome != Outcome::Unknown)
            .then(|| (self.end_ns - self.start_ns).max(0) as f64 / 1e9)
    }
}

/// A protocol's transaction: the common record, and its own fields.
pub trait Transaction: Send + 'static {
    fn record(&self) -> Record<'_>;

    /// The protocol's own fields (`dns.*`), written after the common ones.
    fn write_fields<F: Fields>(&self, f: &mut F);

    /// The whole event: the common part (`write_common`), the protocol's fields, the tags.
    /// Overridden only by a protocol whose event predates this trait (HTTP).
    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        let r = self.record();
        write_common(conn, &r, f);
        self.write_fields(f);
        if r.gap {
            f.strs("tags", &["tcp_gap"]);
        }
    }

    /// The whole event as a JSON line from a template (`Report::write_json`); `false`, with
    /// nothing written, to have `write` do it. Overridden only by HTTP, the most events.
    fn write_json(&self, _conn: &Conn, _buf: &mut Vec<u8>, _clock: &mut Clock) -> bool {
        false
    }

    /// A DNS transaction this one carried (DNS over HTTPS, RFC 8484), reported as a `dns`
    /// event of its own on the same connection, after this one's.
    fn carried_dns(&self) -> Option<super::doh::Carried> {
        None
    }

    /// An answer whose request was reported (unanswered) and counted before: reported, but
    /// not counted again in the metrics and the service map.
    fn counted_before(&self) -> bool {
        false
    }

    /// Counts the transaction in the RED metrics and the service map. Overridden only by a
    /// protocol that keeps series of its own (HTTP's paths and status classes).
    fn observe(&self, conn: &Conn, map: &ServiceMap) {
        map.record_transaction(
            conn.protocol,
            &conn.client_ip,
            &conn.server_name,
            &self.record(),
        );
    }
}

/// `@timestamp`, `event.*`, `source`/`destination`/`client`/`server`, `network.*` and
/// `tunnel.*` of a transaction's event, as every protocol writes them.
pub fn write_common<F: Fields>(conn: &Conn, r: &Record<'_>, f: &mut F) {
    f.time("@timestamp", r.start_ns);
    f.open("event");
    f.word("kind", "event");
    f.strs("category", conn.category);
    f.strs("type", &["connection", "protocol"]);
    f.word("dataset", conn.protocol);
    f.time("start", r.start_ns);
    f.time("end", r.end_ns);
    f.int("duration", r.end_ns - r.start_ns);
    f.word("outcome", r.outcome.as_str());
    if let Some(reason) = r.reason {
        f.str("reason", reason);
    }
    f.close();
    conn.write_endpoints(f);
    conn.write_network(f, r.request_bytes + r.response_bytes);
    conn.write_tunnel(f);
}

pub type Endpoint = (Addr, u16);

/// A connection's (or UDP flow's) endpoints and the strings every one of its events carries,
/// computed once.
pub struct Conn {
    pub protocol: &'static str,
    /// `event.category` (`Protocol::category`).
    pub category: &'static [&'static str],
    pub transport: Transport,
    pub client: Endpoint,
    pub server: Endpoint,
    pub client_ip: String,
    pub server_ip: String,
    /// `ip:port` (`[ip]:port` for IPv6): the server's name in the RED metrics.
    pub server_name: String,
    pub community_id: IdText,
    /// The first tunnel the connection's packets came through, and whether the packet that
    /// carried it went from the client to the server (boxed: most connections have none).
    pub tunnel: Option<Box<(Tunnel, bool)>>,
    /// `source`, `destination`, `client` and `server` as JSON, the same in every event.
    endpoints: Cached,
}

impl Conn {
    pub fn new(
        protocol: &'static str,
        transport: Transport,
        client: Endpoint,
        server: Endpoint,
    ) -> Conn {
        Conn::with_community_id(protocol, transport, client, server, None)
    }

    /// `new` with the connection's Community ID when its flow has worked it out already
    /// (`None`: worked out here).
    pub fn with_community_id(
        protocol: &'static str,
        transport: Transport,
        client: Endpoint,
        server: Endpoint,
        id: Option<&CommunityId>,
    ) -> Conn {
        let server_ip = server.0.text();
        let (open, close) = if server.0.is_v4() {
            ("", ":")
        } else {
            ("[", "]:")
        };
        let server_name = [
            open,
            &server_ip,
            close,
            itoa::Buffer::new().format(server.1),
        ]
        .concat();
        Conn {
            protocol,
            category: &["network"],
            transport,
            client_ip: client.0.text(),
            server_name,
            server_ip,
            community_id: match id {
                Some(id) => *id,
                None => CommunityId::of(
                    0,
                    client.0,
                    client.1,
                    server.0,
                    server.1,
                    transport.number(),
                ),
            }
            .id_text(),
            tunnel: None,
            endpoints: Cached::new(),
            client,
            server,
        }
    }

    /// `source` and `client` are the client, `destination` and `server` the server.
    pub fn write_endpoints<F: Fields>(&self, f: &mut F) {
        f.cached(&self.endpoints, &|f| self.endpoint_fields(f));
    }

    fn endpoint_fields(&self, f: &mut dyn Fields) {
        for (name, ip, port) in [
            ("source", &self.client_ip, self.client.1),
            ("destination", &self.server_ip, self.server.1),
            ("client", &self.client_ip, self.client.1),
            ("server", &self.server_ip, self.server.1),
        ] {
            f.open(name);
            f.word("ip", ip);
            f.int("port", port as i64);
            f.close();
        }
    }

    /// `source`, `destination`, `client` and `server` as JSON (what `write_endpoints` writes),
    /// the same in every event.
    pub fn endpoints_json(&self) -> &[u8] {
        self.endpoints.get_or_init(|| self.endpoints_text())
    }

    /// `endpoint_fields` through `render`, written straight (the addresses are our own text,
    /// nothing to escape): once a connection, where the field-by-field writer was 1,300
    /// instructions of dynamic calls.
    fn endpoints_text(&self) -> Box<[u8]> {
        let (client, server) = (self.client_ip.as_bytes(), self.server_ip.as_bytes());
        let mut buf = Vec::new();
        let mut w = Room::new(&mut buf, endpoints_bound(client, server));
        for (head, ip, port) in [
            (&b"\"source\":{\"ip\":\""[..], client, self.client.1),
            (b"},\"destination\":{\"ip\":\"", server, self.server.1),
            (b"},\"client\":{\"ip\":\"", client, self.client.1),
            (b"},\"server\":{\"ip\":\"", server, self.server.1),
        ] {
            w.put(head);
            w.put(ip);
            w.put(b"\",\"port\":");
            w.int(i64::from(port));
        }
        w.put(b"}");
        w.finish();
        buf.into_boxed_slice()
    }

    /// `network.{transport,protocol,type,community_id,bytes}`.
    pub fn write_network<F: Fields>(&self, f: &mut F, bytes: u64) {
        f.open("network");
        f.word("transport", self.transport.as_str());
        f.word("protocol", self.protocol);
        f.word(
            "type",
            if self.client.0.is_v4() {
                "ipv4"
            } else {
                "ipv6"
            },
        );
        f.word("community_id", self.community_id.as_str());
        f.int("bytes", bytes as i64);
        f.close();
    }

    /// `tunnel.*`, when the connection came through one.
    pub fn write_tunnel<F: Fields>(&self, f: &mut F) {
        if let Some((tunnel, forward)) = self.tunnel.as_deref() {
            super::flows::write_tunnel(f, tunnel, *forward);
        }
    }
}

/// The most bytes `Conn::endpoints_text` writes for these addresses' texts: 112 of names and
/// punctuation and four ports of up to five digits. Sized short (128 for both), every
/// connection's text went through `Room`'s growing once more.
fn endpoints_bound(client: &[u8], server: &[u8]) -> usize {
    132 + 2 * (client.len() + server.len())
}

/// Where the driver sends a session's transactions.
pub struct Emit<'a> {
    pub conn: &'a Conn,
    pub input: &'a Arc<str>,
    pub out: &'a mut Out,
    pub map: Option<&'a ServiceMap>,
    /// `Sink::hand_over`, seen to by the driver after the call.
    pub hand_over: &'a mut Option<&'static str>,
    /// The protocol's counters: its malformed messages and its own (`Protocol::counters`),
    /// added to as the session finishes a call.
    pub stats: &'a ProtocolStats,
}

/// A session as the driver holds it, whatever its protocol: `Session` with its transaction
/// type erased. Implemented once, by `Session::boxed`; protocols do not implement it.
pub trait AnySession: Send {
    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, emit: &mut Emit<'_>);
    fn gap(&mut self, side: Side, len: u32, emit: &mut Emit<'_>);
    fn end(&mut self, side: Side, ts: i64, emit: &mut Emit<'_>);
    fn close(&mut self, ts: i64, emit: &mut Emit<'_>);
    fn expire(&mut self, deadline_ns: i64, emit: &mut Emit<'_>);
    fn expires(&self, deadline_ns: i64) -> bool;
}

/// A session and its sink (kept between calls so that its buffer is reused).
struct Running<S: Session> {
    session: S,
    sink: Sink<S::Tx>,
}

impl<S: Session> Running<S> {
    fn emit(&mut self, emit: &mut Emit<'_>) {
        let malformed = std::mem::take(&mut self.sink.malformed);
        if malformed > 0 {
            emit.stats
                .parse_errors
                .fetch_add(malformed, Ordering::Relaxed);
        }
        if let Some(to) = self.sink.hand_over.take() {
            *emit.hand_over = Some(to);
        }
        // Most calls count nothing: one test of the whole array (its OR) says so.
        if self.sink.counted.iter().fold(0, |acc, &n| acc | n) != 0 {
            for (i, n) in self.sink.counted.iter_mut().enumerate() {
                let n = std::mem::take(n);
                match emit.stats.named.get(i) {
                    Some((_, c)) if n > 0 => {
                        c.fetch_add(n, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
        // Most calls finish nothing; a drain of nothing still cost 27 instructions a packet.
        if self.sink.transactions.is_empty() {
            return;
        }
        for t in self.sink.transactions.drain(..) {
            emit.out.push(
                emit.input,
                &Event {
                    conn: emit.conn,
                    tx: &t,
                },
            );
            if let Some(map) = emit.map.filter(|_| !t.counted_before()) {
                t.observe(emit.conn, map);
            }
            if let Some(dns) = t.carried_dns() {
                let c = emit.conn;
                let mut conn = Conn::new("dns", c.transport, c.client, c.server);
                conn.tunnel = c.tunnel.clone();
                emit.out.push(
                    emit.input,
                    &Event {
                        conn: &conn,
                        tx: &dns,
                    },
                );
            }
        }
    }
}

impl<S: Session> AnySession for Running<S> {
    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, emit: &mut Emit<'_>) {
        self.session.data(side, bytes, ts, &mut self.sink);
        self.emit(emit);
    }
    fn gap(&mut self, side: Side, len: u32, emit: &mut Emit<'_>) {
        self.session.gap(side, len, &mut self.sink);
        self.emit(emit);
    }
    fn end(&mut self, side: Side, ts: i64, emit: &mut Emit<'_>) {
        self.session.end(side, ts, &mut self.sink);
        self.emit(emit);
    }
    fn close(&mut self, ts: i64, emit: &mut Emit<'_>) {
        self.session.close(ts, &mut self.sink);
        self.emit(emit);
    }
    fn expire(&mut self, deadline_ns: i64, emit: &mut Emit<'_>) {
        self.session.expire(deadline_ns, &mut self.sink);
        self.emit(emit);
    }
    fn expires(&self, deadline_ns: i64) -> bool {
        self.session.expires(deadline_ns)
    }
}

/// One transaction's event.
struct Event<'a, T> {
    conn: &'a Conn,
    tx: &'a T,
}

impl<T: Transaction> Report for Event<'_, T> {
    fn write<F: Fields>(&self, f: &mut F) {
        self.tx.write(self.conn, f);
    }
    fn write_json(&self, buf: &mut Vec<u8>, clock: &mut Clock) -> bool {
        self.tx.write_json(self.conn, buf, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    /// The module doc's example, whole: a request is answered by the next server bytes.
    struct Echo(Settings);

    impl Protocol for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn transports(&self) -> &'static [Transport] {
            &[Transport::Tcp]
        }
        fn settings(&self) -> &Settings {
            &self.0
        }
        fn recognize(&self, _: Transport, first: &[u8]) -> Option<Side> {
            first.starts_with(b"ECHO ").then_some(Side::Client)
        }
        fn open(&self, _: Transport, _: &Conn) -> Box<dyn AnySession> {
            EchoSession::default().boxed()
        }
    }

    #[derive(Default)]
    struct EchoSession {
        asked: Option<(i64, usize)>,
    }

    struct EchoTx {
        start: i64,
        end: i64,
        asked: usize,
        answered: Option<usize>,
        /// An answer to a request reported before (`LATE`).
        late: bool,
    }

    impl Transaction for EchoTx {
        fn counted_before(&self) -> bool {
            self.late
        }
        fn record(&self) -> Record<'_> {
            Record {
                start_ns: self.start,
                end_ns: self.end,
                outcome: match self.answered {
                    Some(n) if n == self.asked => Outcome::Success,
                    Some(_) => Outcome::Failure,
                    None => Outcome::Unknown,
                },
                reason: self.answered.is_none().then_some("response_missing"),
                request_bytes: self.asked as u64,
                response_bytes: self.answered.unwrap_or(0) as u64,
                operation: "ECHO",
                status: if self.answered.is_some() { "ok" } else { "" },
                gap: false,
            }
        }
        fn write_fields<F: Fields>(&self, f: &mut F) {
            f.open("echo");
            f.int("asked", self.asked as i64);
            f.close();
        }
    }

    impl Session for EchoSession {
        type Tx = EchoTx;
        fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<EchoTx>) {
            match (side, self.asked.take()) {
                (Side::Client, _) => self.asked = Some((ts, bytes.len())),
                (Side::Server, Some((start, asked))) => out.push(EchoTx {
                    start,
                    end: ts,
                    asked,
                    answered: Some(bytes.len()),
                    late: false,
                }),
                (Side::Server, None) if bytes.starts_with(b"LATE") => out.push(EchoTx {
                    start: ts,
                    end: ts,
                    asked: 0,
                    answered: Some(bytes.len()),
                    late: true,
                }),
                (Side::Server, None) => out.malformed(),
            }
        }
        fn gap(&mut self, _: Side, _: u32, _: &mut Sink<EchoTx>) {
            self.asked = None;
        }
        fn close(&mut self, ts: i64, out: &mut Sink<EchoTx>) {
            self.expire(ts, out);
        }
        fn expire(&mut self, deadline_ns: i64, out: &mut Sink<EchoTx>) {
            if let Some((start, asked)) = self.asked.filter(|a| a.0 <= deadline_ns) {
                self.asked = None;
                out.push(EchoTx {
                    start,
                    end: start,
                    asked,
                    answered: None,
                    late: false,
                });
            }
        }
    }

    #[test]
    fn a_session_reports_events_metrics_and_malformed_counts() {
        let echo = Echo(Settings {
            ports: vec![7],
            transaction_timeout_ns: 1_000,
            connection_timeout_ns: 10_000,
            max_connections: 10,
            max_buffer_per_connection: 1024,
            max_buffer_total: 4096,
        });
        assert_eq!(
            echo.recognize(Transport::Tcp, b"ECHO hi"),
            Some(Side::Client)
        );
        let conn = Conn::new(
            echo.name(),
            Transport::Tcp,
            (Addr::v4([10, 0, 0, 1]), 40000),
            (Addr::v4([10, 0, 0, 2]), 7),
        );
        let mut s = echo.open(Transport::Tcp, &conn);
        let (input, map) = (Arc::from("t"), ServiceMap::new(10));
        let mut out = Out::Events(Vec::new());
        let mut hand_over = None;
        let stats = ProtocolStats::new(echo.name(), echo.counters());
        let mut emit = Emit {
            conn: &conn,
            input: &input,
            out: &mut out,
            map: Some(&map),
            hand_over: &mut hand_over,
            stats: &stats,
        };
        s.data(Side::Client, b"ECHO hi", 1_000_000, &mut emit);
        s.data(Side::Server, b"ECHO hi", 3_000_000, &mut emit);
        s.data(Side::Server, b"unasked", 4_000_000, &mut emit);
        s.data(Side::Client, b"ECHO lost", 5_000_000, &mut emit);
        s.close(9_000_000, &mut emit);
        // The lost one's answer, late: an event, but its request was counted already.
        s.data(Side::Server, b"LATE lost", 9_500_000, &mut emit);
        assert_eq!(stats.parse_errors.load(Ordering::Relaxed), 1);
        let events = out.events();
        assert_eq!(events.len(), 3);
        let get = |i: usize, k: &str| events[i].get(k).cloned();
        assert_eq!(get(0, "event.outcome"), Some(Value::from("success")));
        assert_eq!(get(0, "event.duration"), Some(Value::Int(2_000_000)));
        assert_eq!(get(0, "network.protocol"), Some(Value::from("echo")));
        assert_eq!(get(0, "network.bytes"), Some(Value::Int(14)));
        assert_eq!(get(0, "server.port"), Some(Value::Int(7)));
        assert_eq!(get(0, "echo.asked"), Some(Value::Int(7)));
        assert_eq!(get(1, "event.outcome"), Some(Value::from("unknown")));
        assert_eq!(
            get(1, "event.reason"),
            Some(Value::from("response_missing"))
        );
        let mut text = String::new();
        map.render(&mut text);
        assert!(
            text.contains("trawl_echo_requests_total{server=\"10.0.0.2:7\",operation=\"ECHO\",status=\"ok\",outcome=\"success\"} 1"),
            "{text}"
        );
        let edges = map.edges(None);
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].1.requests, 2);
        assert_eq!(edges[0].1.errors, 1, "the unanswered request");
    }

    /// The straight rendering of a connection's endpoints is what the field-by-field JSON
    /// writer makes of them (either fills the one cache an event splices), for both address
    /// families and for ports of one to five digits; and it is JSON with the four objects.
    #[test]
    fn endpoints_written_straight_are_the_fields_rendered() {
        let v6 = Addr([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        for (client, server) in [
            (
                (Addr::v4([10, 244, 0, 1]), 30001),
                (Addr::v4([10, 96, 0, 2]), 8),
            ),
            (
                (Addr::v4([1, 2, 3, 4]), 0),
                (Addr::v4([255, 255, 255, 255]), 65535),
            ),
            ((v6, 443), (Addr::v4([127, 0, 0, 1]), 80)),
            ((v6, 65535), (v6, 65535)),
        ] {
            let conn = Conn::new("http", Transport::Tcp, client, server);
            let text = conn.endpoints_text();
            let (c, s) = (conn.client_ip.as_bytes(), conn.server_ip.as_bytes());
            assert!(text.len() <= endpoints_bound(c, s), "{}", text.len());
            let fields = crate::wire::out::render(&|f| conn.endpoint_fields(f));
            assert_eq!(
                String::from_utf8_lossy(&conn.endpoints_text()),
                String::from_utf8_lossy(&fields)
            );
            let v: serde_json::Value =
                serde_json::from_slice(&[b"{", &fields[..], b"}"].concat()).expect("JSON");
            assert_eq!(v["server"]["port"], server.1);
            assert_eq!(v["source"]["ip"], client.0.text());
            assert_eq!(v["destination"], v["server"]);
        }
    }
}
