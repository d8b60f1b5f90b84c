//! The HTTP/1.x analyzer on the `analyzer` trait: its settings, and a session per TCP
//! connection that parses both directions, pairs requests with responses (`transaction.rs`)
//! and turns each transaction into one ECS event and its RED metrics (`event.rs`).

mod event;
mod find;
mod head;
pub mod metrics;
pub mod parser;
pub mod transaction;

use super::analyzer::{self, AnySession, Protocol, Session, Settings, Side, Sink, Transport};
use super::http2::conn::PREFACE;
use super::section::{Connection, ProtocolConfig};
use crate::config::ByteSize;
use event::{EventCtx, HttpTx, Memo};
use serde::Deserialize;
use std::sync::Arc;
use transaction::{Conn, ConnStats, Finished};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
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
    /// Longest request or response head followed.
    #[serde(default = "default_max_head")]
    pub max_head_bytes: ByteSize,
    /// Cap on distinct label values per RED metric family and on graph edges.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// DNS over HTTPS in the clear (RFC 8484): the DNS messages of `application/dns-message`
    /// bodies and of a GET's `dns` parameter are reported as `dns` events too.
    #[serde(default = "default_dns_over_https")]
    pub dns_over_https: bool,
}

fn default_dns_over_https() -> bool {
    true
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            real_ip_header: None,
            send_headers: Vec::new(),
            redact_headers: default_redact(),
            redact_query_params: default_redact_query(),
            include_body_for: Vec::new(),
            max_body_bytes: default_max_body(),
            max_head_bytes: default_max_head(),
            max_series: default_max_series(),
            dns_over_https: default_dns_over_https(),
        }
    }
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
fn default_max_head() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_series() -> usize {
    1000
}

impl ProtocolConfig for HttpConfig {
    const NAME: &'static str = "http";
    const SUMMARY: &'static str = "HTTP/1.x requests and responses";
    const PORTS_HELP: &'static str =
        "TCP ports that carry HTTP (comma-separated); by default every TCP connection is followed and HTTP recognised by its content";
    /// The ports web apps commonly listen on. A request waits for its answer as long as the
    /// connection may stay idle (60 s, the usual proxy read timeout): blocking queries and slow
    /// reports answered after 10 s are still one transaction, with their latency.
    fn connection_defaults() -> Connection {
        Connection {
            transaction_timeout: crate::config::Duration::from_secs(60),
            ..Connection::defaults(&[80, 8080, 8000, 8008, 8888, 5000, 3000, 9000])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Http::new(self.clone(), connection.settings()))
    }
    fn max_series(&self) -> Option<usize> {
        Some(self.max_series)
    }
}

/// HTTP/1.x over TCP: the `http` section of a packet input.
pub struct Http {
    ctx: Arc<EventCtx>,
    settings: Settings,
}

impl Http {
    pub fn new(cfg: HttpConfig, settings: Settings) -> Http {
        Http {
            settings,
            ctx: Arc::new(EventCtx {
                real_ip: cfg.real_ip_header.as_ref().map(|h| h.to_ascii_lowercase()),
                include_body_for: cfg
                    .include_body_for
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
                send_all: cfg.send_headers.iter().any(|h| h == "*"),
                redact_lengths: event::name_lengths(&cfg.redact_query_params),
                cfg,
            }),
        }
    }
}

impl Protocol for Http {
    fn name(&self) -> &'static str {
        HttpConfig::NAME
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    fn recognize(&self, _: Transport, payload: &[u8]) -> Option<Side> {
        if looks_like_response(payload) {
            Some(Side::Server)
        } else if looks_like_request(payload) {
            Some(Side::Client)
        } else {
            None
        }
    }
    /// With `ports: []` every TCP connection is followed: one picked up in the middle of a
    /// message is parsed from the next message start.
    fn takes_unrecognized(&self) -> bool {
        true
    }
    fn open(&self, _: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        HttpSession {
            conn: Conn::new(),
            ctx: self.ctx.clone(),
            txs: Vec::new(),
            preface: Preface::Matched(0),
            memo: Memo::default(),
        }
        .boxed()
    }
}

/// One HTTP connection: the parsers and pairing of `transaction.rs`.
struct HttpSession {
    conn: Conn,
    ctx: Arc<EventCtx>,
    /// What the connection finished in the current call.
    txs: Finished,
    /// Whether the client opened with HTTP/2's preface (RFC 9113 3.4): h2c with prior
    /// knowledge on a port only `http` follows is not HTTP/1.x, and was reported as a
    /// malformed `PRI *` request without a response, one per connection.
    preface: Preface,
    /// The last Host and Content-Type, for the next transaction's event.
    memo: Memo,
}

/// How far the client's first bytes match the HTTP/2 connection preface.
#[derive(Clone, Copy, PartialEq)]
enum Preface {
    /// The first this many client bytes are the preface's; not passed on yet, since they are
    /// the preface's own bytes and can be replayed if the rest differs.
    Matched(usize),
    /// The whole preface: the connection is HTTP/2, nothing of it is HTTP/1.x.
    Http2,
    /// Not the preface: every byte goes to the HTTP/1.x parsers.
    Http1,
}

impl HttpSession {
    fn hand_on(&mut self, cst: ConnStats, out: &mut Sink<HttpTx>) {
        out.malformed += cst.parse_errors;
        // Half the calls finish nothing, and a drain of nothing is not free.
        if self.txs.is_empty() {
            return;
        }
        for t in self.txs.drain(..) {
            out.push(HttpTx {
                seen: self.memo.seen(&t),
                t,
                ctx: self.ctx.clone(),
            });
        }
    }
}

impl Session for HttpSession {
    type Tx = HttpTx;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<HttpTx>) {
        if self.preface == Preface::Http2 {
            return;
        }
        if side == Side::Client {
            if let Preface::Matched(n) = self.preface {
                let want = &PREFACE[n..];
                let k = want.len().min(bytes.len());
                if want[..k] == bytes[..k] {
                    self.preface = if n + k == PREFACE.len() {
                        Preface::Http2
                    } else {
                        Preface::Matched(n + k)
                    };
                    return;
                }
                self.preface = Preface::Http1;
                if n > 0 {
                    self.data(side, &PREFACE[..n], ts, out);
                }
            }
        }
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        match side {
            Side::Client => self
                .conn
                .client_data(bytes, ts, &limits, &mut cst, &mut self.txs),
            Side::Server => self
                .conn
                .server_data(bytes, ts, &limits, &mut cst, &mut self.txs),
        }
        self.hand_on(cst, out);
    }

    fn gap(&mut self, side: Side, len: u32, out: &mut Sink<HttpTx>) {
        if self.preface == Preface::Http2 {
            return;
        }
        if side == Side::Client {
            // The parsers resynchronise after a gap: a preface's first bytes before one are
            // not an HTTP/1.x message start to keep.
            if let Preface::Matched(_) = self.preface {
                self.preface = Preface::Http1;
            }
        }
        let limits = self.ctx.limits();
        let mut cst = ConnStats::default();
        match side {
            Side::Client => self.conn.client_gap(len, &limits, &mut cst, &mut self.txs),
            Side::Server => self.conn.server_gap(len, &mut cst, &mut self.txs),
        }
        self.hand_on(cst, out);
    }

    /// A response read until the connection closes ends with the server's FIN.
    fn end(&mut self, side: Side, _: i64, out: &mut Sink<HttpTx>) {
        if side == Side::Server {
            self.conn.server_closed(&mut self.txs);
            self.hand_on(ConnStats::default(), out);
        }
    }

    fn close(&mut self, ts: i64, out: &mut Sink<HttpTx>) {
        self.conn.close(ts, &mut self.txs);
        self.hand_on(ConnStats::default(), out);
    }

    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<HttpTx>) {
        self.conn.expire(deadline_ns, &mut self.txs);
        self.hand_on(ConnStats::default(), out);
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.conn.expires(deadline_ns)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> HttpSession {
        HttpSession {
            conn: Conn::new(),
            ctx: Arc::new(EventCtx {
                cfg: HttpConfig::default(),
                real_ip: None,
                include_body_for: Vec::new(),
                send_all: false,
                redact_lengths: 0,
            }),
            txs: Vec::new(),
            preface: Preface::Matched(0),
            memo: Memo::default(),
        }
    }

    /// Client segments then the server's answer, with closing: what the session reported.
    fn run(client: &[&[u8]], server: &[u8]) -> Sink<HttpTx> {
        let mut s = session();
        let mut out = Sink::default();
        for (i, seg) in client.iter().enumerate() {
            s.data(Side::Client, seg, 1_000 + i as i64, &mut out);
        }
        s.data(Side::Server, server, 2_000, &mut out);
        s.close(3_000, &mut out);
        out
    }

    #[test]
    fn a_preface_in_pieces_is_http2_and_reports_nothing() {
        // The preface cut mid-way across segments, then a SETTINGS frame; the server's own.
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        let out = run(
            &[&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..], &settings],
            &settings,
        );
        assert_eq!((out.transactions.len(), out.malformed), (0, 0));
    }

    #[test]
    fn a_request_sharing_the_prefaces_first_bytes_is_http1() {
        // "P", "R" are the preface's first bytes; the request goes on differently.
        let out = run(
            &[
                b"P",
                b"R",
                b"OPFIND /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            ],
            b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!((out.transactions.len(), out.malformed), (1, 0));
        let method = out.transactions[0]
            .t
            .request
            .as_ref()
            .map(|r| r.method.as_str());
        assert_eq!(method, Some("PROPFIND"));
    }
}
