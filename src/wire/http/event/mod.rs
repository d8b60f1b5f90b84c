//! Turns a transaction into its ECS event (and feeds the RED metrics). Built as nested objects
//! with their sizes known, moving the parsed strings rather than copying them, and with the
//! connection's own strings (addresses, Community ID) computed once per connection.

use super::find::{find, rfind};
use super::metrics::ServiceMap;
use super::parser::{HeadOptions, RequestHead};
use super::transaction::{Limits, Missing, Transaction};
use super::HttpConfig;
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::out::{clock_text, needs_escape, Clock, Exact, Fields, Fixed, INT_MAX_LEN};
use std::borrow::Cow;
use std::sync::Arc;

mod memo;
pub use memo::{Memo, Seen};

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
    /// The parts of its Host and response Content-Type the connection's `Memo` already had.
    pub seen: Seen,
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
    fn counted_before(&self) -> bool {
        self.t.late
    }

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
    f.word("community_id", conn.community_id.as_str());
    f.int("bytes", (tx.request_bytes() + tx.response_bytes()) as i64);
    if let Some(ip) = real {
        f.str("forwarded_ip", ip);
    }
    f.close();
    conn.write_tunnel(f);
    write_http(tx, f);
    // A body cut short (an early answer, a client that gave up, the capture's end) is worth
    // listing but breaks no rule of the protocol.
    let breaks_rule = |anomalies: &[&str]| {
        anomalies
            .iter()
            .any(|a| *a != crate::wire::http::parser::anomaly::BODY_INCOMPLETE)
    };
    let malformed = t
        .request
        .as_ref()
        .is_some_and(|r| breaks_rule(&r.anomalies))
        || t.response
            .as_ref()
            .is_some_and(|r| breaks_rule(&r.anomalies));
    match (t.gap, malformed) {
        (true, true) => f.strs("tags", &["tcp_gap", "http_malformed"]),
        (true, false) => f.strs("tags", &["tcp_gap"]),
        (false, true) => f.strs("tags", &["http_malformed"]),
        (false, false) => {}
    }
}

/// What `write_json` writes at most besides its variable strings: its constant pieces (683
/// bytes with every optional one, counted over the template; 768 leaves room for a small
/// edit), three timestamps of 27 bytes, ten integers, and the outcome (7), reason (19) and
/// version (3) words. The unit tests write every optional field with the longest integers
/// and words against it (`Exact` checks each piece there).
const EVENT_FIXED: usize = 768 + 3 * 27 + 10 * INT_MAX_LEN + 32;

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
        || resp.is_some_and(|r| !r.headers.is_empty() || !r.anomalies.is_empty())
    {
        return false;
    }
    let plain = |s: &str| !needs_escape(s.as_bytes());
    let seen = &tx.seen;
    let req_mime = req.and_then(|r| r.content_type.as_deref()).map(mime);
    let resp_mime = resp
        .and_then(|r| r.content_type.as_deref())
        .map(|ct| match seen.resp_mime {
            Some(p) => Cow::Borrowed(p.of_text(ct)),
            None => mime(ct),
        });
    if !req_mime.as_deref().is_none_or(plain)
        || !(seen.resp_mime.is_some() || resp_mime.as_deref().is_none_or(plain))
    {
        return false;
    }
    let url = req.map(|r| {
        let (domain, port) = match (&r.host, seen.host) {
            (Some(h), Some((d, port))) => (Some(Cow::Borrowed(d.of_text(h))), port),
            (Some(h), None) => {
                let (host, port) = split_host(h);
                ((!host.is_empty()).then(|| lower(host)), port)
            }
            (None, _) => (None, None),
        };
        (url(r, ctx), domain, port, r.user_agent.as_deref())
    });
    if let Some((u, domain, _, ua)) = &url {
        if !u.plain
            || !(seen.host.is_some() || domain.as_deref().is_none_or(plain))
            || !ua.is_none_or(plain)
        {
            return false;
        }
    }

    let (start, end) = tx.span();
    let status = tx.status();
    let (req_bytes, resp_bytes) = (tx.request_bytes(), tx.response_bytes());
    let endpoints = conn.endpoints_json();
    let str_len = |s: Option<&str>| s.map_or(0, str::len);
    let variable = endpoints.len()
        + conn.community_id.as_bytes().len()
        + str_len(req.map(|r| r.method.as_str()))
        + str_len(req_mime.as_deref())
        + str_len(resp_mime.as_deref())
        + url.as_ref().map_or(0, |(u, domain, _, ua)| {
            u.path.len()
                + str_len(u.query.as_deref())
                + u.original.len()
                + str_len(domain.as_deref())
                + str_len(*ua)
        });
    // SAFETY: `EVENT_FIXED` bounds every constant piece below (all branches taken), the
    // three timestamps, the ten integers and our own words (outcome, reason, version);
    // `variable` is the sum of every other piece's length, each written at most once.
    let mut w = unsafe { Exact::new(buf, EVENT_FIXED + variable) };
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
        if !r.anomalies.is_empty() {
            f.strs("anomalies", &r.anomalies);
        }
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

/// The media type of a Content-Type value as sent: without its parameters, trimmed.
fn mime_part(ct: &str) -> &str {
    let end = find(ct.as_bytes(), b';').unwrap_or(ct.len());
    ct[..end].trim_ascii()
}

/// The media type of a Content-Type value, lower case, without its parameters.
fn mime(ct: &str) -> Cow<'_, str> {
    let t = mime_part(ct);
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
mod tests;
