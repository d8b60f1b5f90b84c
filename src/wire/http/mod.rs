//! The HTTP analyzer: follows TCP connections on the configured ports, reassembles each
//! direction, pairs requests with responses and turns each transaction into one ECS event
//! (feeding the RED metrics and the service map on the way).

mod event;
pub mod metrics;
pub mod parser;
pub mod transaction;

use super::decode::{tcp_flags, Packet};
use super::flows::FlowKey;
use super::out::Out;
use super::tcp::{Budget, Chunk, Stream};
use super::Stats;
use crate::config::{ByteSize, Duration};
use event::{EventCtx, Peers};
use metrics::ServiceMap;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use transaction::{Conn, ConnStats, Finished, Limits};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Live capture settings (`http` input only).
    #[serde(default)]
    pub capture: Option<super::capture::CaptureConfig>,
    /// TCP ports that carry HTTP; an empty list follows every TCP connection.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Header whose first address becomes `client.ip` (e.g. `X-Forwarded-For`).
    #[serde(default)]
    pub real_ip_header: Option<String>,
    /// Headers copied into `http.request.headers` / `http.response.headers` (lower-case
    /// names); `["*"]` copies them all.
    #[serde(default)]
    pub send_headers: Vec<String>,
    /// Headers whose values are replaced by `REDACTED` when sent.
    #[serde(default = "default_redact")]
    pub redact_headers: Vec<String>,
    /// Query parameters whose values are replaced by `REDACTED` in `url.query` and
    /// `url.original` (names compared without regard to case).
    #[serde(default = "default_redact_query")]
    pub redact_query_params: Vec<String>,
    /// Content types (prefixes, e.g. `application/json`) whose bodies are kept in
    /// `http.*.body.content`.
    #[serde(default)]
    pub include_body_for: Vec<String>,
    /// Most body bytes kept per message.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// A request without a response for this long is reported (`event.reason: response_missing`).
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// A connection without packets for this long is closed and its open transactions reported.
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
    /// Longest request or response head followed.
    #[serde(default = "default_max_head")]
    pub max_head_bytes: ByteSize,
    /// Cap on distinct label values per RED metric family and on graph edges.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            capture: None,
            ports: default_ports(),
            real_ip_header: None,
            send_headers: Vec::new(),
            redact_headers: default_redact(),
            redact_query_params: default_redact_query(),
            include_body_for: Vec::new(),
            max_body_bytes: default_max_body(),
            transaction_timeout: default_tx_timeout(),
            connection_timeout: default_conn_timeout(),
            max_connections: default_max_connections(),
            max_buffer_per_connection: default_per_conn(),
            max_buffer_total: default_total(),
            max_head_bytes: default_max_head(),
            max_series: default_max_series(),
        }
    }
}

fn default_ports() -> Vec<u16> {
    vec![80, 8080, 8000, 8008, 8888, 5000, 3000, 9000]
}
/// Credentials that travel in headers: the standard ones and the API-key and token headers
/// of common APIs and proxies (what `send_headers: ["*"]` would otherwise ship in clear).
fn default_redact() -> Vec<String> {
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "x-csrf-token",
        "x-xsrf-token",
        "x-vault-token",
        "private-token",
        "x-gitlab-token",
        "x-hub-signature",
        "x-hub-signature-256",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Credentials that travel in query strings: OAuth tokens, API keys, signed-URL signatures
/// (S3, GCS, Azure SAS `sig`), passwords.
fn default_redact_query() -> Vec<String> {
    [
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "auth_token",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn default_max_body() -> ByteSize {
    ByteSize(10 * 1024)
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
    ByteSize(256 * 1024)
}
fn default_total() -> ByteSize {
    ByteSize(32 * 1024 * 1024)
}
fn default_max_head() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_series() -> usize {
    1000
}

struct ConnEntry {
    conn: Conn,
    /// Reassembly per flow direction (0: from the key's `a`).
    streams: [Stream; 2],
    /// The flow direction the client sends in.
    client_dir: usize,
    peers: Peers,
    first_ns: i64,
    last_ns: i64,
}

pub struct HttpAnalyzer {
    ctx: EventCtx,
    conns: FxHashMap<FlowKey, ConnEntry>,
    budget: Budget,
    stats: Arc<Stats>,
    txs: Finished,
    last_sweep_ns: i64,
}

impl HttpAnalyzer {
    pub fn new(
        cfg: HttpConfig,
        input: Arc<str>,
        stats: Arc<Stats>,
        map: Option<Arc<ServiceMap>>,
    ) -> HttpAnalyzer {
        let ctx = EventCtx {
            real_ip: cfg.real_ip_header.as_ref().map(|h| h.to_ascii_lowercase()),
            include_body_for: cfg
                .include_body_for
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            send_all: cfg.send_headers.iter().any(|h| h == "*"),
            cfg,
            input,
            map,
        };
        HttpAnalyzer {
            budget: Budget::new(ctx.cfg.max_buffer_total.as_usize()),
            ctx,
            conns: FxHashMap::default(),
            stats,
            txs: Vec::new(),
            last_sweep_ns: i64::MIN,
        }
    }

    fn is_http_port(&self, port: u16) -> bool {
        self.ctx.cfg.ports.is_empty() || self.ctx.cfg.ports.contains(&port)
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn packet(&mut self, p: &Packet<'_>, ts: i64, out: &mut Out) {
        let Some(tcp) = p.tcp else { return };
        if !(self.is_http_port(p.dport) || self.is_http_port(p.sport)) {
            return;
        }
        let (key, dir) = FlowKey::of(p);
        let syn = tcp.flags & (tcp_flags::SYN | tcp_flags::ACK);
        // A new connection on the 4-tuple of a finished one (rare: only SYNs look).
        if syn == tcp_flags::SYN
            && self
                .conns
                .get(&key)
                .is_some_and(|e| e.streams[dir].started() && e.streams[dir].saw_syn)
        {
            if let Some(e) = self.conns.remove(&key) {
                self.close(e, ts, out);
            }
        }
        // One hash lookup for packets of known connections, the common case.
        let tracked = self.conns.len();
        let e = match self.conns.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                if p.payload.is_empty() && tcp.flags & tcp_flags::SYN == 0 {
                    return;
                }
                if tcp.flags & tcp_flags::RST != 0 {
                    return;
                }
                if tracked >= self.ctx.cfg.max_connections {
                    self.stats.http_untracked.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let ports = &self.ctx.cfg.ports;
                let client_dir = if syn == tcp_flags::SYN {
                    dir
                } else if syn == tcp_flags::SYN | tcp_flags::ACK {
                    dir ^ 1
                } else if !ports.is_empty() && ports.contains(&p.dport) != ports.contains(&p.sport)
                {
                    if ports.contains(&p.dport) {
                        dir
                    } else {
                        dir ^ 1
                    }
                } else if looks_like_response(p.payload) {
                    dir ^ 1
                } else if looks_like_request(p.payload) || p.dport <= p.sport {
                    dir
                } else {
                    dir ^ 1
                };
                let (client, server) = if client_dir == dir {
                    ((p.src, p.sport), (p.dst, p.dport))
                } else {
                    ((p.dst, p.dport), (p.src, p.sport))
                };
                v.insert(ConnEntry {
                    conn: Conn::new(),
                    streams: Default::default(),
                    client_dir,
                    peers: Peers::new(client, server),
                    first_ns: ts,
                    last_ns: ts,
                })
            }
        };
        e.last_ns = ts;
        if e.peers.tunnel.is_none() {
            if let Some(t) = p.tunnel.as_deref() {
                e.peers.tunnel = Some(Box::new((*t, dir == e.client_dir)));
            }
        }
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        let from_client = dir == e.client_dir;
        let per_stream = self.ctx.cfg.max_buffer_per_connection.as_usize();
        let txs = &mut self.txs;
        let ConnEntry {
            conn,
            streams,
            peers,
            ..
        } = e;
        {
            let mut sink = |c: Chunk<'_>| deliver(conn, from_client, c, ts, &limits, &mut cst, txs);
            streams[dir].segment_truncated(
                tcp.seq,
                tcp.flags,
                p.payload,
                p.missing,
                per_stream,
                &mut self.budget,
                &mut sink,
            );
        }
        if tcp.flags & tcp_flags::ACK != 0 && tcp.flags & tcp_flags::RST == 0 {
            let mut sink =
                |c: Chunk<'_>| deliver(conn, !from_client, c, ts, &limits, &mut cst, txs);
            streams[dir ^ 1].acked(tcp.ack, &mut self.budget, &mut sink);
        }
        if !from_client && tcp.flags & tcp_flags::FIN != 0 {
            let mut sink = |c: Chunk<'_>| deliver(conn, false, c, ts, &limits, &mut cst, txs);
            streams[dir].flush(&mut self.budget, &mut sink);
            conn.server_closed(txs);
        }
        let closed = tcp.flags & tcp_flags::RST != 0 || (streams[0].fin && streams[1].fin);
        if cst.parse_errors > 0 {
            self.stats
                .http_parse_errors
                .fetch_add(cst.parse_errors, Ordering::Relaxed);
        }
        if cst.gaps > 0 {
            self.stats.tcp_gaps.fetch_add(cst.gaps, Ordering::Relaxed);
        }
        self.ctx.emit(&mut self.txs, peers, out);
        if closed {
            if let Some(e) = self.conns.remove(&key) {
                self.close(e, ts, out);
            }
        }
    }

    fn close(&mut self, mut e: ConnEntry, ts: i64, out: &mut Out) {
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        let txs = &mut self.txs;
        let ConnEntry {
            conn,
            streams,
            client_dir,
            ..
        } = &mut e;
        for (d, s) in streams.iter_mut().enumerate() {
            let from_client = d == *client_dir;
            let mut sink = |c: Chunk<'_>| deliver(conn, from_client, c, ts, &limits, &mut cst, txs);
            s.flush(&mut self.budget, &mut sink);
        }
        conn.close(ts, txs);
        if cst.gaps > 0 {
            self.stats.tcp_gaps.fetch_add(cst.gaps, Ordering::Relaxed);
        }
        if cst.parse_errors > 0 {
            self.stats
                .http_parse_errors
                .fetch_add(cst.parse_errors, Ordering::Relaxed);
        }
        self.ctx.emit(&mut self.txs, &e.peers, out);
    }

    /// Reports requests past `transaction_timeout` and closes idle connections.
    pub fn sweep(&mut self, now: i64, out: &mut Out) {
        if now.saturating_sub(self.last_sweep_ns) < 200_000_000 {
            return;
        }
        self.last_sweep_ns = now;
        let tx_deadline = now.saturating_sub(
            self.ctx
                .cfg
                .transaction_timeout
                .millis
                .max(0)
                .saturating_mul(1_000_000),
        );
        let idle_deadline = now.saturating_sub(
            self.ctx
                .cfg
                .connection_timeout
                .millis
                .max(0)
                .saturating_mul(1_000_000),
        );
        // In the order the connections started, not the table's hash order: the same capture
        // always gives the same output.
        let mut due: Vec<(i64, FlowKey, bool)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| {
                let idle = e.last_ns < idle_deadline;
                (idle || e.conn.expires(tx_deadline)).then_some((e.first_ns, *k, idle))
            })
            .collect();
        due.sort_unstable_by_key(|d| (d.0, d.1));
        for (_, k, idle) in due {
            if idle {
                if let Some(e) = self.conns.remove(&k) {
                    self.close(e, now, out);
                }
            } else if let Some(e) = self.conns.get_mut(&k) {
                e.conn.expire(tx_deadline, &mut self.txs);
                self.ctx.emit(&mut self.txs, &e.peers, out);
            }
        }
        self.stats
            .http_connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }

    /// End of capture or shutdown: every connection is closed and reported.
    pub fn flush(&mut self, out: &mut Out) {
        let mut all: Vec<(FlowKey, ConnEntry)> = self.conns.drain().collect();
        all.sort_by_key(|(_, e)| e.first_ns);
        for (_, e) in all {
            let ts = e.last_ns;
            self.close(e, ts, out);
        }
        self.stats.http_connections.store(0, Ordering::Relaxed);
    }
}

fn looks_like_response(payload: &[u8]) -> bool {
    payload.starts_with(b"HTTP/1.")
}

fn looks_like_request(payload: &[u8]) -> bool {
    matches!(
        parser::find_message_start(payload, true),
        parser::Sync::At(0)
    )
}

fn deliver(
    conn: &mut Conn,
    from_client: bool,
    c: Chunk<'_>,
    ts: i64,
    l: &Limits<'_>,
    st: &mut ConnStats,
    out: &mut Finished,
) {
    match (from_client, c) {
        (true, Chunk::Data(d)) => conn.client_data(d, ts, l, st, out),
        (false, Chunk::Data(d)) => conn.server_data(d, ts, l, st, out),
        (true, Chunk::Gap(n)) => conn.client_gap(n, st),
        (false, Chunk::Gap(n)) => conn.server_gap(n, st, out),
    }
}
