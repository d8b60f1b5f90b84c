//! The HTTP analyzer: follows TCP connections on the configured ports, reassembles each
//! direction, pairs requests with responses and turns each transaction into one ECS event
//! (feeding the RED metrics and the service map on the way).

pub mod metrics;
pub mod parser;
pub mod transaction;

use super::decode::{tcp_flags, Packet};
use super::flows::FlowKey;
use super::tcp::{Budget, Chunk, Stream};
use super::{ns_to_time, Stats};
use crate::config::{ByteSize, Duration};
use crate::event::{Event, Map, Value};
use metrics::ServiceMap;
use parser::HeadOptions;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use transaction::{Conn, ConnStats, Limits, Transaction};

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
fn default_redact() -> Vec<String> {
    ["authorization", "proxy-authorization", "cookie", "set-cookie"].iter().map(|s| s.to_string()).collect()
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

type Endpoint = (super::decode::Addr, u16);

struct ConnEntry {
    conn: Conn,
    /// Reassembly per flow direction (0: from the key's `a`).
    streams: [Stream; 2],
    /// The flow direction the client sends in.
    client_dir: usize,
    client: Endpoint,
    server: Endpoint,
    first_ns: i64,
    last_ns: i64,
}

/// What turning transactions into events needs (apart from the connection table).
struct EventCtx {
    cfg: HttpConfig,
    real_ip: Option<String>,
    include_body_for: Vec<String>,
    send_all: bool,
    input: Arc<str>,
    map: Option<Arc<ServiceMap>>,
}

pub struct HttpAnalyzer {
    ctx: EventCtx,
    conns: FxHashMap<FlowKey, ConnEntry>,
    budget: Budget,
    stats: Arc<Stats>,
    txs: Vec<Transaction>,
    last_sweep_ns: i64,
}

impl EventCtx {
    fn limits(&self) -> Limits<'_> {
        Limits {
            head: HeadOptions { keep_headers: !self.cfg.send_headers.is_empty(), real_ip_header: self.real_ip.as_deref() },
            include_body_for: &self.include_body_for,
            max_body_bytes: self.cfg.max_body_bytes.as_usize(),
            max_head_bytes: self.cfg.max_head_bytes.as_usize(),
            max_pending: 64,
        }
    }

    fn emit(&self, txs: &mut Vec<Transaction>, client: Endpoint, server: Endpoint, out: &mut Vec<Event>) {
        for t in txs.drain(..) {
            out.push(self.event(&t, client, server));
        }
    }

    fn headers(&self, hs: &[(String, String)]) -> Option<Value> {
        if hs.is_empty() {
            return None;
        }
        let mut m = Map::new();
        for (k, v) in hs {
            if !self.send_all && !self.cfg.send_headers.iter().any(|h| h.eq_ignore_ascii_case(k)) {
                continue;
            }
            let v = if self.cfg.redact_headers.iter().any(|h| h.eq_ignore_ascii_case(k)) { "REDACTED".to_owned() } else { v.clone() };
            m.insert(k.as_str(), Value::String(v));
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }

    fn event(&self, t: &Transaction, client: Endpoint, server: Endpoint) -> Event {
        let start = if t.request.is_some() { t.req_start_ns } else { t.resp_start_ns };
        let end = t.resp_end_ns.max(t.req_end_ns).max(start);
        let mut e = Event::new(self.input.clone(), ns_to_time(start));
        e.insert("event.kind", "event");
        e.insert("event.category", Value::Array(vec![Value::from("network"), Value::from("web")]));
        e.insert("event.type", Value::Array(vec![Value::from("connection"), Value::from("protocol")]));
        e.insert("event.dataset", "http");
        e.insert("event.start", Value::Timestamp(ns_to_time(start)));
        e.insert("event.end", Value::Timestamp(ns_to_time(end)));
        e.insert("event.duration", Value::from(end - start));
        let status = t.response.as_ref().map(|r| r.status);
        let outcome = match (t.missing, status) {
            (Some(_), _) | (None, None) => "unknown",
            (None, Some(s)) if s >= 400 => "failure",
            _ => "success",
        };
        e.insert("event.outcome", outcome);
        if let Some(m) = t.missing {
            e.insert("event.reason", m.as_str());
        }
        let (cip, cport) = client;
        let (sip, sport) = server;
        e.insert("source.ip", Value::from(cip.to_string()));
        e.insert("source.port", Value::from(cport));
        e.insert("destination.ip", Value::from(sip.to_string()));
        e.insert("destination.port", Value::from(sport));
        let real = t.request.as_ref().and_then(|r| r.real_ip.clone()).filter(|s| s.parse::<std::net::IpAddr>().is_ok());
        match &real {
            Some(ip) => {
                e.insert("client.ip", Value::from(ip.clone()));
                e.insert("network.forwarded_ip", Value::from(ip.clone()));
            }
            None => {
                e.insert("client.ip", Value::from(cip.to_string()));
                e.insert("client.port", Value::from(cport));
            }
        }
        e.insert("server.ip", Value::from(sip.to_string()));
        e.insert("server.port", Value::from(sport));
        e.insert("network.transport", "tcp");
        e.insert("network.protocol", "http");
        e.insert("network.type", if cip.is_v4() { "ipv4" } else { "ipv6" });
        e.insert("network.community_id", Value::from(super::community_id::community_id(0, cip, cport, sip, sport, 6)));
        e.insert("network.bytes", Value::from(t.req_header_bytes + t.req_body_bytes + t.resp_header_bytes + t.resp_body_bytes));
        let mut method = "";
        let mut path = "";
        if let Some(r) = &t.request {
            method = &r.method;
            e.insert("http.request.method", Value::from(r.method.clone()));
            e.insert("http.version", Value::from(format!("1.{}", r.minor)));
            e.insert("http.request.bytes", Value::from(t.req_header_bytes + t.req_body_bytes));
            e.insert("http.request.header_bytes", Value::from(t.req_header_bytes));
            e.insert("http.request.body.bytes", Value::from(t.req_body_bytes));
            if let Some(ct) = &r.content_type {
                e.insert("http.request.mime_type", Value::from(mime(ct)));
            }
            if let Some(h) = self.headers(&r.headers) {
                e.insert("http.request.headers", h);
            }
            if let Some(b) = &t.req_body {
                e.insert("http.request.body.content", Value::from(String::from_utf8_lossy(b).into_owned()));
            }
            e.insert("url.original", Value::from(r.target.clone()));
            let target = r.target.as_str();
            // Absolute form (proxies): keep the path and query only.
            let rel = match target.find("://") {
                Some(i) => target[i + 3..].find('/').map(|j| &target[i + 3 + j..]).unwrap_or("/"),
                None => target,
            };
            let (p, q) = match rel.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rel, None),
            };
            path = p;
            e.insert("url.path", Value::from(p.to_owned()));
            if let Some(q) = q {
                e.insert("url.query", Value::from(q.to_owned()));
            }
            if let Some(h) = &r.host {
                let host = strip_port(h).to_ascii_lowercase();
                if !host.is_empty() {
                    e.insert("url.domain", Value::from(host));
                }
            }
            if let Some(ua) = &r.user_agent {
                e.insert("user_agent.original", Value::from(ua.clone()));
            }
        }
        if let Some(r) = &t.response {
            if t.request.is_none() {
                e.insert("http.version", Value::from(format!("1.{}", r.minor)));
            }
            e.insert("http.response.status_code", Value::from(r.status));
            e.insert("http.response.bytes", Value::from(t.resp_header_bytes + t.resp_body_bytes));
            e.insert("http.response.header_bytes", Value::from(t.resp_header_bytes));
            e.insert("http.response.body.bytes", Value::from(t.resp_body_bytes));
            if let Some(ct) = &r.content_type {
                e.insert("http.response.mime_type", Value::from(mime(ct)));
            }
            if let Some(h) = self.headers(&r.headers) {
                e.insert("http.response.headers", h);
            }
            if let Some(b) = &t.resp_body {
                e.insert("http.response.body.content", Value::from(String::from_utf8_lossy(b).into_owned()));
            }
        }
        if t.gap {
            e.add_tag("tcp_gap");
        }
        if let Some(map) = &self.map {
            let server_name = format!("{}", SockName(sip, sport));
            let client_name = real.unwrap_or_else(|| cip.to_string());
            let secs = (t.request.is_some() && t.response.is_some()).then(|| (end - start) as f64 / 1e9);
            map.record_http(&client_name, &server_name, method, path, status, secs, t.req_header_bytes + t.req_body_bytes + t.resp_header_bytes + t.resp_body_bytes);
        }
        e
    }
}

/// `ip:port`, with brackets for IPv6.
pub struct SockName(pub super::decode::Addr, pub u16);

impl std::fmt::Display for SockName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_v4() {
            write!(f, "{}:{}", self.0, self.1)
        } else {
            write!(f, "[{}]:{}", self.0, self.1)
        }
    }
}

fn mime(ct: &str) -> String {
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

impl HttpAnalyzer {
    pub fn new(cfg: HttpConfig, input: Arc<str>, stats: Arc<Stats>, map: Option<Arc<ServiceMap>>) -> HttpAnalyzer {
        let ctx = EventCtx {
            real_ip: cfg.real_ip_header.as_ref().map(|h| h.to_ascii_lowercase()),
            include_body_for: cfg.include_body_for.iter().map(|s| s.to_ascii_lowercase()).collect(),
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

    pub fn packet(&mut self, p: &Packet<'_>, ts: i64, out: &mut Vec<Event>) {
        let Some(tcp) = p.tcp else { return };
        if !(self.is_http_port(p.dport) || self.is_http_port(p.sport)) {
            return;
        }
        let (key, dir) = FlowKey::of(p);
        let syn = tcp.flags & (tcp_flags::SYN | tcp_flags::ACK);
        if let Some(e) = self.conns.get(&key) {
            // A new connection on the 4-tuple of a finished one.
            if syn == tcp_flags::SYN && e.streams[dir].started() && e.streams[dir].saw_syn {
                if let Some(e) = self.conns.remove(&key) {
                    self.close(e, ts, out);
                }
            }
        }
        if !self.conns.contains_key(&key) {
            if p.payload.is_empty() && tcp.flags & tcp_flags::SYN == 0 {
                return;
            }
            if tcp.flags & tcp_flags::RST != 0 {
                return;
            }
            if self.conns.len() >= self.ctx.cfg.max_connections {
                self.stats.http_untracked.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let ports = &self.ctx.cfg.ports;
            let client_dir = if syn == tcp_flags::SYN {
                dir
            } else if syn == tcp_flags::SYN | tcp_flags::ACK {
                dir ^ 1
            } else if !ports.is_empty() && ports.contains(&p.dport) != ports.contains(&p.sport) {
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
            let (client, server) = if client_dir == dir { ((p.src, p.sport), (p.dst, p.dport)) } else { ((p.dst, p.dport), (p.src, p.sport)) };
            self.conns.insert(key, ConnEntry { conn: Conn::new(), streams: Default::default(), client_dir, client, server, first_ns: ts, last_ns: ts });
        }
        let Some(e) = self.conns.get_mut(&key) else { return };
        e.last_ns = ts;
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        let from_client = dir == e.client_dir;
        let per_stream = self.ctx.cfg.max_buffer_per_connection.as_usize();
        let txs = &mut self.txs;
        let ConnEntry { conn, streams, client, server, .. } = e;
        {
            let mut sink = |c: Chunk<'_>| deliver(conn, from_client, c, ts, &limits, &mut cst, txs);
            streams[dir].segment_truncated(tcp.seq, tcp.flags, p.payload, p.missing, per_stream, &mut self.budget, &mut sink);
        }
        if tcp.flags & tcp_flags::ACK != 0 && tcp.flags & tcp_flags::RST == 0 {
            let mut sink = |c: Chunk<'_>| deliver(conn, !from_client, c, ts, &limits, &mut cst, txs);
            streams[dir ^ 1].acked(tcp.ack, &mut self.budget, &mut sink);
        }
        if !from_client && tcp.flags & tcp_flags::FIN != 0 {
            let mut sink = |c: Chunk<'_>| deliver(conn, false, c, ts, &limits, &mut cst, txs);
            streams[dir].flush(&mut self.budget, &mut sink);
            conn.server_closed(txs);
        }
        let closed = tcp.flags & tcp_flags::RST != 0 || (streams[0].fin && streams[1].fin);
        let (client, server) = (*client, *server);
        self.stats.http_parse_errors.fetch_add(cst.parse_errors, Ordering::Relaxed);
        self.stats.tcp_gaps.fetch_add(cst.gaps, Ordering::Relaxed);
        self.ctx.emit(&mut self.txs, client, server, out);
        if closed {
            if let Some(e) = self.conns.remove(&key) {
                self.close(e, ts, out);
            }
        }
    }

    fn close(&mut self, mut e: ConnEntry, ts: i64, out: &mut Vec<Event>) {
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        let txs = &mut self.txs;
        let ConnEntry { conn, streams, client_dir, .. } = &mut e;
        for (d, s) in streams.iter_mut().enumerate() {
            let from_client = d == *client_dir;
            let mut sink = |c: Chunk<'_>| deliver(conn, from_client, c, ts, &limits, &mut cst, txs);
            s.flush(&mut self.budget, &mut sink);
        }
        conn.close(ts, txs);
        self.stats.tcp_gaps.fetch_add(cst.gaps, Ordering::Relaxed);
        self.stats.http_parse_errors.fetch_add(cst.parse_errors, Ordering::Relaxed);
        self.ctx.emit(&mut self.txs, e.client, e.server, out);
    }

    /// Reports requests past `transaction_timeout` and closes idle connections.
    pub fn sweep(&mut self, now: i64, out: &mut Vec<Event>) {
        if now.saturating_sub(self.last_sweep_ns) < 200_000_000 {
            return;
        }
        self.last_sweep_ns = now;
        let tx_deadline = now.saturating_sub(self.ctx.cfg.transaction_timeout.millis.max(0).saturating_mul(1_000_000));
        let idle_deadline = now.saturating_sub(self.ctx.cfg.connection_timeout.millis.max(0).saturating_mul(1_000_000));
        let mut idle = Vec::new();
        for (k, e) in self.conns.iter_mut() {
            if e.last_ns < idle_deadline {
                idle.push(*k);
                continue;
            }
            e.conn.expire(tx_deadline, &mut self.txs);
            self.ctx.emit(&mut self.txs, e.client, e.server, out);
        }
        for k in idle {
            if let Some(e) = self.conns.remove(&k) {
                self.close(e, now, out);
            }
        }
        self.stats.http_connections.store(self.conns.len() as u64, Ordering::Relaxed);
    }

    /// End of capture or shutdown: every connection is closed and reported.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
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
    matches!(parser::find_message_start(payload, true), parser::Sync::At(0))
}

fn deliver(conn: &mut Conn, from_client: bool, c: Chunk<'_>, ts: i64, l: &Limits<'_>, st: &mut ConnStats, out: &mut Vec<Transaction>) {
    match (from_client, c) {
        (true, Chunk::Data(d)) => conn.client_data(d, ts, l, st, out),
        (false, Chunk::Data(d)) => conn.server_data(d, ts, l, st, out),
        (true, Chunk::Gap(n)) => conn.client_gap(n, st),
        (false, Chunk::Gap(n)) => conn.server_gap(n, st, out),
    }
}
