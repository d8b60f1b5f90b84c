//! Turns a transaction into its ECS event (and feeds the RED metrics). Built as nested objects
//! with their sizes known, moving the parsed strings rather than copying them, and with the
//! connection's own strings (addresses, Community ID) computed once per connection.

use super::find::{find, rfind};
use super::metrics::ServiceMap;
use super::parser::{HeadOptions, RequestHead};
use super::transaction::{Limits, Missing, Transaction};
use super::HttpConfig;
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::out::{clock_text, needs_escape, Clock, Fields, Fixed, Room};
use std::borrow::Cow;
use std::sync::Arc;

/// What turning transactions into events needs: the `http` settings, prepared.
pub struct EventCtx {
    pub cfg: HttpConfig,
    pub real_ip: Option<String>,
    pub include_body_for: Vec<String>,
    pub send_all: bool,
    /// `name_lengths` of `cfg.redact_query_params`.
    pub redact_lengths: u64,
}

impl EventCtx {
    pub fn limits(&self) -> Limits<'_> {
        Limits {
            head: HeadOptions {
                keep_headers: !self.cfg.send_headers.is_empty(),
                real_ip_header: self.real_ip.as_deref(),
            },
            include_body_for: &self.include_body_for,
            max_body_bytes: self.cfg.max_body_bytes.as_usize(),
            max_head_bytes: self.cfg.max_head_bytes.as_usize(),
            max_pending: 64,
            dns_over_https: self.cfg.dns_over_https,
        }
    }

    /// The headers `send_headers` asks for, redacted; a repeated header keeps its first
    /// place and its last value (Set-Cookie...).
    fn headers<'a>(&self, hs: &'a [(String, String)]) -> Vec<(&'a str, &'a str)> {
        let mut kept: Vec<(&str, &str)> = Vec::new();
        for (k, v) in hs {
            if !self.send_all
                && !self
                    .cfg
                    .send_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(k))
            {
                continue;
            }
            let v = if self
                .cfg
                .redact_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(k))
            {
                "REDACTED"
            } else {
                v.as_str()
            };
            match kept.iter_mut().find(|(n, _)| *n == k.as_str()) {
                Some(slot) => slot.1 = v,
                None => kept.push((k, v)),
            }
        }
        kept
    }
}

/// One HTTP transaction as the analyzer reports it, with the settings its event needs.
pub struct HttpTx {
    pub t: Box<Transaction>,
    pub ctx: Arc<EventCtx>,
}

impl HttpTx {
    /// First byte of the request (of the response without one), last byte of either.
    fn span(&self) -> (i64, i64) {
        let t = &self.t;
        let start = if t.request.is_some() {
            t.req_start_ns
        } else {
            t.resp_start_ns
        };
        (start, t.resp_end_ns.max(t.req_end_ns).max(start))
    }

    /// The `real_ip_header` address, when it is one.
    fn real(&self) -> Option<&str> {
        self.t
            .request
            .as_ref()
            .and_then(|r| r.real_ip.as_deref())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
    }

    /// The status, when there is one (an HTTP/0.9 response has no status line).
    fn status(&self) -> Option<u16> {
        self.t
            .response
            .as_ref()
            .map(|r| r.status)
            .filter(|s| *s != 0)
    }

    fn request_bytes(&self) -> u64 {
        self.t.req_header_bytes + self.t.req_body_bytes + self.t.req_framing_bytes
    }

    fn response_bytes(&self) -> u64 {
        self.t.resp_header_bytes + self.t.resp_body_bytes + self.t.resp_framing_bytes
    }
}

impl analyzer::Transaction for HttpTx {
    fn carried_dns(&self) -> Option<crate::wire::doh::Carried> {
        let t = &self.t;
        t.doh
            .as_deref()?
            .transaction(
                (t.req_start_ns, t.req_end_ns),
                (t.resp_start_ns, t.resp_end_ns),
            )
            .map(crate::wire::doh::Carried)
    }

    fn record(&self) -> Record<'_> {
        let (start, end) = self.span();
        let status = self.status();
        Record {
            start_ns: start,
            end_ns: end,
            outcome: outcome(self.t.missing, status),
            reason: self.t.missing.map(Missing::as_str),
            request_bytes: self.request_bytes(),
            response_bytes: self.response_bytes(),
            operation: self.t.request.as_ref().map_or("", |r| r.method.as_str()),
            status: match status {
                Some(100..=199) => "1xx",
                Some(200..=299) => "2xx",
                Some(300..=399) => "3xx",
                Some(400..=499) => "4xx",
                Some(500..=599) => "5xx",
                _ => "",
            },
            gap: self.t.gap,
        }
    }

    /// The event as it was before the analyzer trait: `web` category, the `real_ip_header`
    /// client, `network.forwarded_ip`, `http_malformed` tag.
    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        write_event(self, conn, f);
    }

    fn write_fields<F: Fields>(&self, f: &mut F) {
        write_http(self, f);
    }

    fn write_json(&self, conn: &Conn, buf: &mut Vec<u8>, clock: &mut Clock) -> bool {
        write_json(self, conn, buf, clock)
    }

    /// HTTP's own series: status class and code, templated paths.
    fn observe(&self, conn: &Conn, map: &ServiceMap) {
        let t = &self.t;
        let (start, end) = self.span();
        let status = self.status();
        let (method, path) = match &t.request {
            Some(r) => (r.method.as_str(), split_target(&r.target).0),
            None => ("", ""),
        };
        let client_name = self.real().unwrap_or(&conn.client_ip);
        let secs = (!method.is_empty() && status.is_some()).then(|| (end - start) as f64 / 1e9);
        map.record_http(
            client_name,
            &conn.server_name,
            method,
            path,
            status,
            secs,
            self.request_bytes() + self.response_bytes(),
        );
    }
}

fn outcome(missing: Option<Missing>, status: Option<u16>) -> Outcome {
    match (missing, status) {
        (Some(_), _) | (None, None) => Outcome::Unknown,
        (None, Some(code)) if code >= 400 => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// A request target as path and query; the absolute form (proxies) keeps the path only.
fn split_target(target: &str) -> (&str, Option<&str>) {
    // The origin form (`/path?query`), nearly every request, cannot hold a scheme.
    let scheme_end = if target.starts_with('/') {
        None
    } else {
        target.find("://")
    };
    let rel = match scheme_end {
        Some(i) => target[i + 3..]
            .find('/')
            .map(|j| &target[i + 3 + j..])
            .unwrap_or("/"),
        None => target,
    };
    match find(rel.as_bytes(), b'?') {
        Some(i) => (&rel[..i], Some(&rel[i + 1..])),
        None => (rel, None),
    }
}

static EVENT: Fixed = Fixed::new(|f| {
    f.str("kind", "event");
    f.strs("category", &["network", "web"]);
    f.strs("type", &["connection", "protocol"]);
    f.str("dataset", "http");
});
static NETWORK_V4: Fixed = Fixed::new(|f| {
    f.str("transport", "tcp");
    f.str("protocol", "http");
    f.str("type", "ipv4");
});
static NETWORK_V6: Fixed = Fixed::new(|f| {
    f.str("transport", "tcp");
    f.str("protocol", "http");
    f.str("type", "ipv6");
});

/// One transaction's event: the common part as HTTP has always written it, then `http.*`,
/// `url.*`, `user_agent.*` and the tags.
fn write_event<F: Fields>(tx: &HttpTx, conn: &Conn, f: &mut F) {
    let t = &tx.t;
    let (start, end) = tx.span();
    let real = tx.real();
    let (cport, sport) = (conn.client.1, conn.server.1);
    f.time("@timestamp", start);
    f.open("event");
    f.fixed(&EVENT);
    f.time("start", start);
    f.time("end", end);
    f.int("duration", end - start);
    f.word("outcome", outcome(t.missing, tx.status()).as_str());
    if let Some(m) = t.missing {
        f.str("reason", m.as_str());
    }
    f.close();
    match real {
        Some(ip) => {
            // The `real_ip_header` client varies by request: not the connection's cached run.
            let endpoint = |f: &mut F, name: &'static str, ip: &str, port: u16| {
                f.open(name);
                f.word("ip", ip);
                f.int("port", port as i64);
                f.close();
            };
            endpoint(f, "source", &conn.client_ip, cport);
            endpoint(f, "destination", &conn.server_ip, sport);
            f.open("client");
            f.str("ip", ip);
            f.close();
            endpoint(f, "server", &conn.server_ip, sport);
        }
        None => conn.write_endpoints(f),
    }

    f.open("network");
    f.fixed(if conn.client.0.is_v4() {
        &NETWORK_V4
    } else {
        &NETWORK_V6
    });
    f.word("community_id", &conn.community_id);
    f.int("bytes", (tx.request_bytes() + tx.response_bytes()) as i64);
    if let Some(ip) = real {
        f.str("forwarded_ip", ip);
    }
    f.close();
    conn.write_tunnel(f);
    write_http(tx, f);
    let malformed = t.request.as_ref().is_some_and(|r| !r.anomalies.is_empty());
    match (t.gap, malformed) {
        (true, true) => f.strs("tags", &["tcp_gap", "http_malformed"]),
        (true, false) => f.strs("tags", &["tcp_gap"]),
        (false, true) => f.strs("tags", &["http_malformed"]),
        (false, false) => {}
    }
}

/// `write_event`'s JSON line from a template, for the event nearly every transaction makes:
/// no `real_ip_header` client, tunnel, kept headers or bodies, anomalies, and no string that
/// needs escaping. Anything else returns `false` before writing and goes through `JsonFields`,
/// so the two cannot differ there. Same bytes, in the same order, as `write_event` (a unit
/// test compares them over every optional field); a third of the instructions.
fn write_json(tx: &HttpTx, conn: &Conn, buf: &mut Vec<u8>, clock: &mut Clock) -> bool {
    let (t, ctx) = (&tx.t, &tx.ctx);
    if conn.tunnel.is_some() || t.req_body.is_some() || t.resp_body.is_some() || tx.real().is_some()
    {
        return false;
    }
    let (req, resp) = (t.request.as_ref(), t.response.as_ref());
    if req.is_some_and(|r| !r.headers.is_empty() || !r.anomalies.is_empty())
        || resp.is_some_and(|r| !r.headers.is_empty())
    {
        return false;
    }
    let plain = |s: &str| !needs_escape(s.as_bytes());
    let req_mime = req.and_then(|r| r.content_type.as_deref()).map(mime);
    let resp_mime = resp.and_then(|r| r.content_type.as_deref()).map(mime);
    if !req_mime.as_deref().is_none_or(plain) || !resp_mime.as_deref().is_none_or(plain) {
        return false;
    }
    let url = req.map(|r| {
        let (domain, port) = match &r.host {
            Some(h) => {
                let (host, port) = split_host(h);
                ((!host.is_empty()).then(|| lower(host)), port)
            }
            None => (None, None),
        };
        (url(r, ctx), domain, port, r.user_agent.as_deref())
    });
    if let Some((u, domain, _, ua)) = &url {
        if !u.plain || !domain.as_deref().is_none_or(plain) || !ua.is_none_or(plain) {
            return false;
        }
    }

    let (start, end) = tx.span();
    let status = tx.status();
    let (req_bytes, resp_bytes) = (tx.request_bytes(), tx.response_bytes());
    let endpoints = conn.endpoints_json();
    let mut w = Room::new(
        buf,
        1024 + endpoints.len() + url.as_ref().map_or(0, |(u, ..)| 3 * u.original.len()),
    );
    w.put(b"{\"@timestamp\":\"");
    w.put(clock_text(clock, start));
    w.put(
        b"\",\"event\":{\"kind\":\"event\",\"category\":[\"network\",\"web\"],\
          \"type\":[\"connection\",\"protocol\"],\"dataset\":\"http\",\"start\":\"",
    );
    w.put(clock_text(clock, start));
    w.put(b"\",\"end\":\"");
    w.put(clock_text(clock, end));
    w.put(b"\",\"duration\":");
    w.int(end - start);
    w.put(b",\"outcome\":\"");
    w.put(outcome(t.missing, status).as_str().as_bytes());
    if let Some(m) = t.missing {
        w.put(b"\",\"reason\":\"");
        w.put(m.as_str().as_bytes());
    }
    w.put(b"\"},");
    w.put(endpoints);
    w.put(if conn.client.0.is_v4() {
        b",\"network\":{\"transport\":\"tcp\",\"protocol\":\"http\",\"type\":\"ipv4\",\
          \"community_id\":\""
    } else {
        b",\"network\":{\"transport\":\"tcp\",\"protocol\":\"http\",\"type\":\"ipv6\",\
          \"community_id\":\""
    });
    w.put(conn.community_id.as_bytes());
    w.put(b"\",\"bytes\":");
    w.int((req_bytes + resp_bytes) as i64);
    w.put(b"},\"http\":{");
    if let Some(r) = req {
        w.put(b"\"request\":{\"method\":\"");
        w.put(r.method.as_bytes());
        w.put(b"\",\"bytes\":");
        w.int(req_bytes as i64);
        w.put(b",\"header_bytes\":");
        w.int(t.req_header_bytes as i64);
        w.put(b",\"body\":{\"bytes\":");
        w.int(t.req_body_bytes as i64);
        w.put(b"}");
        if let Some(m) = &req_mime {
            w.put(b",\"mime_type\":\"");
            w.put(m.as_bytes());
            w.put(b"\"");
        }
        w.put(b"}");
    }
    if resp.is_some() {
        let head: &[u8] = if req.is_some() {
            b",\"response\":{"
        } else {
            b"\"response\":{"
        };
        w.put(head);
        if let Some(code) = status {
            w.put(b"\"status_code\":");
            w.int(code as i64);
            w.put(b",\"bytes\":");
        } else {
            w.put(b"\"bytes\":");
        }
        w.int(resp_bytes as i64);
        w.put(b",\"header_bytes\":");
        w.int(t.resp_header_bytes as i64);
        w.put(b",\"body\":{\"bytes\":");
        w.int(t.resp_body_bytes as i64);
        w.put(b"}");
        if let Some(m) = &resp_mime {
            w.put(b",\"mime_type\":\"");
            w.put(m.as_bytes());
            w.put(b"\"");
        }
        w.put(b"}");
    }
    if let Some(v) = req.map(|r| r.version).or(resp.map(|r| r.version)) {
        // A version comes with a request or a response, so a field came before it.
        w.put(b",\"version\":\"");
        w.put(v.as_str().as_bytes());
        w.put(b"\"");
    }
    w.put(b"}");
    if let Some((u, domain, port, ua)) = &url {
        w.put(b",\"url\":{\"path\":\"");
        w.put(u.path.as_bytes());
        if let Some(q) = &u.query {
            w.put(b"\",\"query\":\"");
            w.put(q.as_bytes());
        }
        if let Some(d) = domain {
            w.put(b"\",\"domain\":\"");
            w.put(d.as_bytes());
        }
        if let Some(p) = port {
            w.put(b"\",\"port\":");
            w.int(*p as i64);
            w.put(b",\"original\":\"");
        } else {
            w.put(b"\",\"original\":\"");
        }
        w.put(u.original.as_bytes());
        w.put(b"\"}");
        if let Some(ua) = ua {
            w.put(b",\"user_agent\":{\"original\":\"");
            w.put(ua.as_bytes());
            w.put(b"\"}");
        }
    }
    if t.gap {
        w.put(b",\"tags\":[\"tcp_gap\"]");
    }
    w.put(b"}\n");
    w.finish();
    true
}

/// `http.request.body` or `http.response.body`: inlined, where the closure it was before
/// stayed a call (twice an event, about 200 instructions of it).
#[inline(always)]
fn body<F: Fields>(f: &mut F, bytes: u64, content: &Option<Vec<u8>>) {
    f.open("body");
    f.int("bytes", bytes as i64);
    if let Some(b) = content {
        f.str("content", &String::from_utf8_lossy(b));
    }
    f.close();
}

/// `http.*`, `url.*` and `user_agent.*`.
fn write_http<F: Fields>(tx: &HttpTx, f: &mut F) {
    let (t, ctx) = (&tx.t, &tx.ctx);
    let status = tx.status();
    let (req_bytes, resp_bytes) = (tx.request_bytes(), tx.response_bytes());
    let headers = |f: &mut F, hs: &[(String, String)]| {
        // Empty unless `send_headers` asks for some: nothing to look at.
        if hs.is_empty() {
            return;
        }
        let kept = ctx.headers(hs);
        if !kept.is_empty() {
            f.open("headers");
            for (k, v) in kept {
                f.entry(k, v);
            }
            f.close();
        }
    };
    f.open("http");
    if let Some(r) = &t.request {
        f.open("request");
        f.word("method", &r.method);
        f.int("bytes", req_bytes as i64);
        f.int("header_bytes", t.req_header_bytes as i64);
        body(f, t.req_body_bytes, &t.req_body);
        if let Some(ct) = &r.content_type {
            f.str("mime_type", &mime(ct));
        }
        headers(f, &r.headers);
        if !r.anomalies.is_empty() {
            f.strs("anomalies", &r.anomalies);
        }
        f.close();
    }
    if let Some(r) = &t.response {
        f.open("response");
        if let Some(code) = status {
            f.int("status_code", code as i64);
        }
        f.int("bytes", resp_bytes as i64);
        f.int("header_bytes", t.resp_header_bytes as i64);
        body(f, t.resp_body_bytes, &t.resp_body);
        if let Some(ct) = &r.content_type {
            f.str("mime_type", &mime(ct));
        }
        headers(f, &r.headers);
        f.close();
    }
    let version = t
        .request
        .as_ref()
        .map(|r| r.version)
        .or(t.response.as_ref().map(|r| r.version));
    if let Some(v) = version {
        f.word("version", v.as_str());
    }
    f.close();
    if let Some(r) = &t.request {
        let Url {
            path: p,
            query: q,
            original,
            plain,
        } = url(r, ctx);
        let part = |f: &mut F, key: &'static str, v: &str| {
            if plain {
                f.word(key, v)
            } else {
                f.str(key, v)
            }
        };
        f.open("url");
        part(f, "path", p);
        if let Some(q) = &q {
            part(f, "query", q);
        }
        if let Some(h) = &r.host {
            let (host, port) = split_host(h);
            if !host.is_empty() {
                f.str("domain", &lower(host));
            }
            if let Some(port) = port {
                f.int("port", port as i64);
            }
        }
        part(f, "original", &original);
        f.close();
        if let Some(ua) = &r.user_agent {
            f.open("user_agent");
            f.str("original", ua);
            f.close();
        }
    }
}

/// `url.path`, `url.query` and `url.original` of a request.
struct Url<'a> {
    path: &'a str,
    query: Option<Cow<'a, str>>,
    original: Cow<'a, str>,
    /// None of the three needs escaping in JSON.
    plain: bool,
}

fn url<'a>(r: &'a RequestHead, ctx: &EventCtx) -> Url<'a> {
    let (path, q) = split_target(&r.target);
    // A credential in the query is replaced in both the query and the original target, so
    // neither field ships it.
    let (query, original) =
        match q.and_then(|q| redact_query(q, &ctx.cfg.redact_query_params, ctx.redact_lengths)) {
            Some(rq) => {
                let at = r.target.len() - q.map_or(0, str::len);
                let original = Cow::Owned([&r.target[..at], &rq].concat());
                (Some(Cow::Owned(rq)), original)
            }
            None => (q.map(Cow::Borrowed), Cow::Borrowed(r.target.as_str())),
        };
    // The path and query are parts of the target: one look says whether any of the three
    // needs escaping.
    let plain = !needs_escape(original.as_bytes());
    Url {
        path,
        query,
        original,
        plain,
    }
}

/// The lengths of the `redact_query_params` names as a set of bits (bit `min(len, 63)`): a
/// query parameter whose name has none of these lengths is no secret, without comparing it
/// to each name (twenty-one by default).
pub fn name_lengths(names: &[String]) -> u64 {
    names.iter().fold(0, |set, n| set | 1 << n.len().min(63))
}

/// The query with the values of the named parameters (`names`, their lengths in `lengths`,
/// see `name_lengths`) replaced by `REDACTED`; `None` (no copy) when it names none of them,
/// which is nearly every request.
fn redact_query(q: &str, names: &[String], lengths: u64) -> Option<String> {
    // On bytes: a query is a few bytes (`v=7`), where splitting the text by a `char` cost more
    // than the rest of the look.
    let secret = |pair: &[u8]| {
        let name = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => &pair[..eq],
            None => pair,
        };
        !name.is_empty()
            && lengths & 1 << name.len().min(63) != 0
            && names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    if names.is_empty() || !q.as_bytes().split(|&b| b == b'&').any(secret) {
        return None;
    }
    let mut out = String::with_capacity(q.len());
    for (i, pair) in q.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.find('=') {
            Some(eq) if secret(pair.as_bytes()) => {
                out.push_str(&pair[..=eq]);
                out.push_str("REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    Some(out)
}

/// `s` in lower case, copied only when it has upper-case letters.
fn lower(s: &str) -> Cow<'_, str> {
    if has_upper(s.as_bytes()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether `s` has an ASCII capital, eight bytes at a time (the last word overlapping the one
/// before): every Host and Content-Type value is looked at, and a byte at a time was most of
/// the cost of `mime`.
fn has_upper(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if s.len() < 8 {
        return s.iter().any(u8::is_ascii_uppercase);
    }
    // With each byte's top bit set, subtracting a byte below 0x80 never borrows from the next:
    // the top bit stays set exactly where the byte was at least that value. Bytes that had
    // the top bit (not ASCII) are masked out.
    let upper = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        let x = u64::from_le_bytes(w);
        let y = x | HIGH;
        y.wrapping_sub(ONES * 0x41) & !y.wrapping_sub(ONES * 0x5b) & !x & HIGH != 0
    };
    let last = s.len() - 8;
    (0..last).step_by(8).any(upper) || upper(last)
}

/// The media type of a Content-Type value, lower case, without its parameters.
fn mime(ct: &str) -> Cow<'_, str> {
    let end = find(ct.as_bytes(), b';').unwrap_or(ct.len());
    let t = ct[..end].trim_ascii();
    if has_upper(t.as_bytes()) {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        Cow::Borrowed(t)
    }
}

/// The Host header as `url.domain` and `url.port`: an IPv6 literal keeps its brackets (as
/// ECS asks), a port is split off only when it is one (digits that fit in 16 bits).
fn split_host(host: &str) -> (&str, Option<u16>) {
    let host = host.trim_ascii();
    let b = host.as_bytes();
    let colon = if host.starts_with('[') {
        match host.find(']') {
            Some(end) if b.get(end + 1) == Some(&b':') => Some(end + 1),
            Some(end) => return (&host[..=end], None),
            None => return (host, None),
        }
    } else {
        // One colon: a port. More: a bare IPv6 address (not valid in Host, kept as sent).
        rfind(b, b':').filter(|&i| find(&b[..i], b':').is_none())
    };
    match colon {
        Some(i) if !b[i + 1..].is_empty() && b[i + 1..].iter().all(u8::is_ascii_digit) => {
            (&host[..i], host[i + 1..].parse().ok())
        }
        // `host:` with an empty port (allowed by RFC 3986).
        Some(i) if b[i + 1..].is_empty() => (&host[..i], None),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode::Addr;

    #[test]
    fn servers_are_named_ip_colon_port() {
        use crate::wire::analyzer::Transport;
        let v6 = Addr(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let conn = Conn::new(
            "http",
            Transport::Tcp,
            (Addr::v4([10, 0, 0, 1]), 5555),
            (v6, 8080),
        );
        assert_eq!(conn.server_name, "[2001:db8::1]:8080");
        let conn = Conn::new(
            "http",
            Transport::Tcp,
            (v6, 5555),
            (Addr::v4([10, 96, 0, 12]), 80),
        );
        assert_eq!(conn.server_name, "10.96.0.12:80");
        assert_eq!(conn.client_ip, "2001:db8::1");
    }

    #[test]
    fn host_ports_and_mime_parameters_are_stripped() {
        assert_eq!(split_host("Example.com:8080"), ("Example.com", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("example.com:"), ("example.com", None));
        assert_eq!(split_host("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_host("[2001:db8::1]"), ("[2001:db8::1]", None));
        assert_eq!(split_host("::1"), ("::1", None));
        assert_eq!(split_host("10.0.0.1:99999"), ("10.0.0.1", None));
        assert_eq!(mime("Text/HTML; charset=utf-8"), "text/html");
        assert_eq!(mime(" application/JSON "), "application/json");
        assert_eq!(mime("application/json;charset=UTF-8"), "application/json");
        assert_eq!(mime("text/plain"), "text/plain");
    }

    /// Word-at-a-time capital finding agrees with looking at each byte: every byte value
    /// (capitals' neighbours `@` and `[`, bytes past ASCII) at every place of every length.
    #[test]
    fn capitals_are_found_wherever_they_are() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    if at + 1 < len {
                        // A byte past ASCII next to it must not hide or fake a capital.
                        s[at + 1] = 0xc3;
                    }
                    assert_eq!(has_upper(&s), s.iter().any(u8::is_ascii_uppercase), "{s:?}");
                }
            }
        }
        assert!(!has_upper(b"svc-1.default.svc"));
        assert!(has_upper(b"svc-1.default.svC"));
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::wire::decode::Addr;
    use crate::wire::http::parser::{RequestHead, ResponseHead};

    #[test]
    fn headers_are_redacted_bodies_kept_and_real_ip_used() {
        let cfg = HttpConfig {
            send_headers: vec!["*".into()],
            ..Default::default()
        };
        let ctx = Arc::new(EventCtx {
            cfg,
            real_ip: Some("x-forwarded-for".into()),
            include_body_for: vec!["application/json".into()],
            send_all: true,
            redact_lengths: 0,
        });
        let req = RequestHead {
            method: "POST".into(),
            target: "/login?next=%2F".into(),
            version: crate::wire::http::parser::Version::V11,
            host: Some("API.example.com:8443".into()),
            real_ip: Some("203.0.113.9".into()),
            headers: vec![
                ("authorization".into(), "Bearer s3cr3t".into()),
                ("cookie".into(), "sid=1".into()),
                ("accept".into(), "*/*".into()),
            ],
            ..Default::default()
        };
        let resp = ResponseHead {
            status: 503,
            content_type: Some("Application/JSON; charset=utf-8".into()),
            headers: vec![
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            ..Default::default()
        };
        let t = Transaction {
            request: Some(req),
            response: Some(resp),
            req_start_ns: 1_000,
            resp_end_ns: 5_000,
            resp_body: Some(b"{\"ok\":false}".to_vec()),
            resp_body_bytes: 12,
            ..Default::default()
        };
        let conn = Conn::new(
            "http",
            crate::wire::analyzer::Transport::Tcp,
            (Addr::v4([10, 0, 0, 1]), 40000),
            (Addr::v4([10, 0, 0, 2]), 8443),
        );
        let mut m = crate::wire::out::MapFields::new();
        analyzer::Transaction::write(
            &HttpTx {
                t: Box::new(t),
                ctx,
            },
            &conn,
            &mut m,
        );
        let e = m.finish(&Arc::from("t"));
        let j = serde_json::to_value(&e.fields).unwrap();
        assert_eq!(j["http"]["request"]["headers"]["authorization"], "REDACTED");
        assert_eq!(j["http"]["request"]["headers"]["cookie"], "REDACTED");
        assert_eq!(j["http"]["request"]["headers"]["accept"], "*/*");
        assert_eq!(j["http"]["response"]["headers"]["set-cookie"], "REDACTED");
        assert_eq!(j["http"]["response"]["mime_type"], "application/json");
        assert_eq!(j["http"]["response"]["body"]["content"], "{\"ok\":false}");
        assert_eq!(j["client"]["ip"], "203.0.113.9");
        assert_eq!(j["source"]["ip"], "10.0.0.1");
        assert_eq!(j["url"]["domain"], "api.example.com");
        assert_eq!(j["url"]["path"], "/login");
        assert_eq!(j["url"]["query"], "next=%2F");
        assert_eq!(j["event"]["duration"], 4_000);
        assert_eq!(j["event"]["outcome"], "failure");
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;
    use crate::wire::analyzer::Transport;
    use crate::wire::decode::Addr;
    use crate::wire::http::parser::{RequestHead, ResponseHead, Version};
    use crate::wire::out::JsonFields;

    /// The event through `JsonFields` (what `trawl pcap` wrote before the template).
    fn through_fields(tx: &HttpTx, conn: &Conn, clock: &mut Clock) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut j = JsonFields::new(&mut buf, clock);
        write_event(tx, conn, &mut j);
        j.finish();
        buf
    }

    /// The template writes what `JsonFields` writes for every combination of the optional
    /// fields it covers, and declines (writing nothing) what it does not cover.
    #[test]
    fn template_writes_the_same_bytes_as_fields_or_declines() {
        let ctx = Arc::new(EventCtx {
            cfg: HttpConfig {
                redact_query_params: vec!["token".into()],
                ..Default::default()
            },
            real_ip: None,
            include_body_for: Vec::new(),
            send_all: false,
            redact_lengths: name_lengths(&["token".into()]),
        });
        let v6 = Addr(
            "2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let conns = [
            Conn::new(
                "http",
                Transport::Tcp,
                (Addr::v4([10, 0, 0, 1]), 40000),
                (Addr::v4([10, 0, 0, 2]), 80),
            ),
            Conn::new("http", Transport::Tcp, (v6, 1), (v6, 65535)),
        ];
        let targets = [
            "/",
            "/a/b?v=1",
            "/a?token=s3cret&v=2",
            "http://h:1/x?y",
            "/é?q=ü",
        ];
        let hosts = [
            None,
            Some("Svc.Example:8080"),
            Some("example.com"),
            Some(":80"),
        ];
        let (mut same, mut declined) = (0, 0);
        let mut clock = Clock::default();
        for (i, target) in targets.iter().enumerate() {
            for (h, host) in hosts.iter().enumerate() {
                for shape in 0..32u32 {
                    let bit = |b: u32| shape >> b & 1 == 1;
                    let request = (!bit(0) || bit(1)).then(|| RequestHead {
                        method: if bit(2) { "POST" } else { "GET" }.into(),
                        target: (*target).into(),
                        version: if bit(3) { Version::V10 } else { Version::V11 },
                        host: host.map(Into::into),
                        user_agent: bit(4).then(|| "curl/8.0".into()),
                        content_type: bit(2).then(|| "Application/JSON; charset=x".into()),
                        ..Default::default()
                    });
                    let response = bit(0).then(|| ResponseHead {
                        version: Version::V11,
                        status: [0, 200, 404, 503][(i + h) % 4],
                        content_type: bit(3).then(|| "text/html".into()),
                        ..Default::default()
                    });
                    let t = Transaction {
                        request,
                        response,
                        req_start_ns: 1_700_000_000_123_456_789 + i as i64,
                        req_end_ns: 1_700_000_000_200_000_000,
                        resp_start_ns: 1_700_000_000_300_000_000,
                        resp_end_ns: 1_700_000_001_000_000_000 * i64::from(bit(1)),
                        req_header_bytes: 120,
                        req_body_bytes: 7 * u64::from(bit(2)),
                        req_framing_bytes: 5,
                        resp_header_bytes: 90,
                        resp_body_bytes: 123_456,
                        gap: bit(4) && bit(1),
                        missing: [None, Some(Missing::Response), Some(Missing::Request)]
                            [(shape as usize + i) % 3],
                        ..Default::default()
                    };
                    let tx = HttpTx {
                        t: Box::new(t),
                        ctx: ctx.clone(),
                    };
                    for conn in &conns {
                        let want = through_fields(&tx, conn, &mut clock);
                        let mut got = b"before".to_vec();
                        if write_json(&tx, conn, &mut got, &mut clock) {
                            assert_eq!(
                                String::from_utf8_lossy(&got[6..]),
                                String::from_utf8_lossy(&want)
                            );
                            same += 1;
                        } else {
                            assert_eq!(got, b"before");
                            declined += 1;
                        }
                    }
                }
            }
        }
        // Declined: only what needs escaping or is not covered; everything here is plain.
        assert_eq!((same, declined), (1280, 0));

        // What the template does not cover goes to `JsonFields`, having written nothing.
        let plain = || Transaction {
            request: Some(RequestHead {
                method: "GET".into(),
                target: "/".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut quoted_ua = plain();
        quoted_ua.request.as_mut().unwrap().user_agent = Some("a\"b".into());
        let mut escaped_target = plain();
        escaped_target.request.as_mut().unwrap().target = "/a\\b".into();
        let mut anomalous = plain();
        anomalous.request.as_mut().unwrap().anomalies = vec!["bad_header"];
        let mut with_headers = plain();
        with_headers.request.as_mut().unwrap().headers = vec![("a".into(), "b".into())];
        let mut with_body = plain();
        with_body.resp_body = Some(b"x".to_vec());
        for t in [
            quoted_ua,
            escaped_target,
            anomalous,
            with_headers,
            with_body,
        ] {
            let tx = HttpTx {
                t: Box::new(t),
                ctx: ctx.clone(),
            };
            let mut got = Vec::new();
            assert!(!write_json(&tx, &conns[0], &mut got, &mut clock));
            assert!(got.is_empty());
        }
        // A kept `real_ip_header` client.
        let real = Arc::new(EventCtx {
            cfg: HttpConfig::default(),
            real_ip: Some("x-real-ip".into()),
            include_body_for: Vec::new(),
            send_all: false,
            redact_lengths: 0,
        });
        let mut t = plain();
        t.request.as_mut().unwrap().real_ip = Some("192.0.2.1".into());
        let tx = HttpTx {
            t: Box::new(t),
            ctx: real,
        };
        assert!(!write_json(&tx, &conns[0], &mut Vec::new(), &mut clock));
    }
}
