//! Turns a transaction into its ECS event (and feeds the RED metrics). Built as nested objects
//! with their sizes known, moving the parsed strings rather than copying them, and with the
//! connection's own strings (addresses, Community ID) computed once per connection.

use super::metrics::ServiceMap;
use super::parser::HeadOptions;
use super::transaction::{Finished, Limits, Transaction};
use super::HttpConfig;
use crate::wire::community_id::community_id;
use crate::wire::decode::Addr;
use crate::wire::out::{needs_escape, Cached, Fields, Fixed, Out, Report};
use std::borrow::Cow;
use std::sync::Arc;

pub type Endpoint = (Addr, u16);

/// A connection's endpoints and the strings every one of its events carries.
pub struct Peers {
    pub client: Endpoint,
    pub server: Endpoint,
    client_ip: String,
    server_ip: String,
    server_name: String,
    community_id: String,
    /// The first tunnel the connection's packets came through, and whether the packet that
    /// carried it went from the client to the server (boxed: most connections have none).
    pub tunnel: Option<Box<(crate::wire::tunnel::Tunnel, bool)>>,
    /// `source`, `destination`, `client` and `server` as JSON, the same in every event of the
    /// connection (unless `real_ip_header` names another client).
    endpoints: Cached,
}

impl Peers {
    pub fn new(client: Endpoint, server: Endpoint) -> Peers {
        let server_ip = server.0.text();
        Peers {
            client_ip: client.0.text(),
            server_name: sock_name(&server_ip, server.0.is_v4(), server.1),
            server_ip,
            community_id: community_id(0, client.0, client.1, server.0, server.1, 6),
            endpoints: Cached::new(),
            tunnel: None,
            client,
            server,
        }
    }
}

/// What turning transactions into events needs (apart from the connection table).
pub struct EventCtx {
    pub cfg: HttpConfig,
    pub real_ip: Option<String>,
    pub include_body_for: Vec<String>,
    pub send_all: bool,
    pub input: Arc<str>,
    pub map: Option<Arc<ServiceMap>>,
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
        }
    }

    pub fn emit(&self, txs: &mut Finished, peers: &Peers, out: &mut Out) {
        for t in txs.drain(..) {
            self.report(&t, peers, out);
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

    fn report(&self, t: &Transaction, peers: &Peers, out: &mut Out) {
        let start = if t.request.is_some() {
            t.req_start_ns
        } else {
            t.resp_start_ns
        };
        let end = t.resp_end_ns.max(t.req_end_ns).max(start);
        let real = t
            .request
            .as_ref()
            .and_then(|r| r.real_ip.as_deref())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok());
        out.push(
            &self.input,
            &TxReport {
                ctx: self,
                t,
                peers,
                real,
                start,
                end,
            },
        );
        if let Some(map) = &self.map {
            let status = t.response.as_ref().map(|r| r.status).filter(|s| *s != 0);
            let (method, path) = match &t.request {
                Some(r) => (r.method.as_str(), split_target(&r.target).0),
                None => ("", ""),
            };
            let client_name = real.unwrap_or(&peers.client_ip);
            let secs = (!method.is_empty() && status.is_some()).then(|| (end - start) as f64 / 1e9);
            let bytes = t.req_header_bytes
                + t.req_body_bytes
                + t.req_framing_bytes
                + t.resp_header_bytes
                + t.resp_body_bytes
                + t.resp_framing_bytes;
            map.record_http(
                client_name,
                &peers.server_name,
                method,
                path,
                status,
                secs,
                bytes,
            );
        }
    }

    #[cfg(test)]
    fn event(&self, t: Transaction, peers: &Peers) -> crate::event::Event {
        let mut out = Out::Events(Vec::new());
        self.report(&t, peers, &mut out);
        match out {
            Out::Events(mut v) => v.remove(0),
            Out::Json { .. } => unreachable!(),
        }
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
    match memchr::memchr(b'?', rel.as_bytes()) {
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

/// One transaction's event.
struct TxReport<'a> {
    ctx: &'a EventCtx,
    t: &'a Transaction,
    peers: &'a Peers,
    /// The `real_ip_header` address, when it is one.
    real: Option<&'a str>,
    start: i64,
    end: i64,
}

impl Report for TxReport<'_> {
    fn write<F: Fields>(&self, f: &mut F) {
        let TxReport {
            ctx,
            t,
            peers,
            real,
            start,
            end,
        } = *self;
        // An HTTP/0.9 response has no status line.
        let status = t.response.as_ref().map(|r| r.status).filter(|s| *s != 0);
        let req_bytes = t.req_header_bytes + t.req_body_bytes + t.req_framing_bytes;
        let resp_bytes = t.resp_header_bytes + t.resp_body_bytes + t.resp_framing_bytes;
        let (cport, sport) = (peers.client.1, peers.server.1);
        f.time("@timestamp", start);
        f.open("event");
        f.fixed(&EVENT);
        f.time("start", start);
        f.time("end", end);
        f.int("duration", end - start);
        let outcome = match (t.missing, status) {
            (Some(_), _) | (None, None) => "unknown",
            (None, Some(code)) if code >= 400 => "failure",
            _ => "success",
        };
        f.word("outcome", outcome);
        if let Some(m) = t.missing {
            f.str("reason", m.as_str());
        }
        f.close();
        let endpoint = |f: &mut dyn Fields, name: &'static str, ip: &str, port: u16| {
            f.open(name);
            f.word("ip", ip);
            f.int("port", port as i64);
            f.close();
        };
        // `real`: the `real_ip_header` client, which varies by request and so is not cached.
        let endpoints = |f: &mut dyn Fields, real: Option<&str>| {
            endpoint(f, "source", &peers.client_ip, cport);
            endpoint(f, "destination", &peers.server_ip, sport);
            match real {
                Some(ip) => {
                    f.open("client");
                    f.str("ip", ip);
                    f.close();
                }
                None => endpoint(f, "client", &peers.client_ip, cport),
            }
            endpoint(f, "server", &peers.server_ip, sport);
        };
        match real {
            Some(_) => endpoints(f, real),
            None => f.cached(&peers.endpoints, &|f| endpoints(f, None)),
        }

        f.open("network");
        f.fixed(if peers.client.0.is_v4() {
            &NETWORK_V4
        } else {
            &NETWORK_V6
        });
        f.word("community_id", &peers.community_id);
        f.int("bytes", (req_bytes + resp_bytes) as i64);
        if let Some(ip) = real {
            f.str("forwarded_ip", ip);
        }
        f.close();
        if let Some((tunnel, forward)) = peers.tunnel.as_deref() {
            crate::wire::flows::write_tunnel(f, tunnel, *forward);
        }

        let body = |f: &mut F, bytes: u64, content: &Option<Vec<u8>>| {
            f.open("body");
            f.int("bytes", bytes as i64);
            if let Some(b) = content {
                f.str("content", &String::from_utf8_lossy(b));
            }
            f.close();
        };
        let headers = |f: &mut F, hs: &[(String, String)]| {
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
            let (p, q) = split_target(&r.target);
            // A credential in the query is replaced in both the query and the original target,
            // so neither field ships it.
            let redacted = q.and_then(|q| redact_query(q, &ctx.cfg.redact_query_params));
            let (q, original) = match &redacted {
                Some(rq) => {
                    let at = r.target.len() - q.map_or(0, str::len);
                    (
                        Some(rq.as_str()),
                        Cow::Owned([&r.target[..at], rq].concat()),
                    )
                }
                None => (q, Cow::Borrowed(r.target.as_str())),
            };
            // The path and query are parts of the target: one look says whether any of the
            // three needs escaping.
            let plain = !needs_escape(original.as_bytes());
            let part = |f: &mut F, key: &'static str, v: &str| {
                if plain {
                    f.word(key, v)
                } else {
                    f.str(key, v)
                }
            };
            f.open("url");
            part(f, "path", p);
            if let Some(q) = q {
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
        let malformed = t.request.as_ref().is_some_and(|r| !r.anomalies.is_empty());
        match (t.gap, malformed) {
            (true, true) => f.strs("tags", &["tcp_gap", "http_malformed"]),
            (true, false) => f.strs("tags", &["tcp_gap"]),
            (false, true) => f.strs("tags", &["http_malformed"]),
            (false, false) => {}
        }
    }
}

/// The query with the values of the named parameters replaced by `REDACTED`; `None` (no
/// copy) when it names none of them, which is nearly every request.
fn redact_query(q: &str, names: &[String]) -> Option<String> {
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or("");
        !name.is_empty() && names.iter().any(|n| n.eq_ignore_ascii_case(name))
    };
    if names.is_empty() || !q.split('&').any(secret) {
        return None;
    }
    let mut out = String::with_capacity(q.len());
    for (i, pair) in q.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.find('=') {
            Some(eq) if secret(pair) => {
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
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `ip:port` (the service map's name for a server), with brackets for IPv6.
fn sock_name(ip: &str, v4: bool, port: u16) -> String {
    let (open, close) = if v4 { ("", ":") } else { ("[", "]:") };
    let mut digits = itoa::Buffer::new();
    [open, ip, close, digits.format(port)].concat()
}

/// The media type of a Content-Type value, lower case, without its parameters. One pass
/// over the (short) value finds both the `;` and any capital.
fn mime(ct: &str) -> Cow<'_, str> {
    let (mut end, mut upper) = (ct.len(), false);
    for (i, b) in ct.bytes().enumerate() {
        if b == b';' {
            end = i;
            break;
        }
        upper |= b.is_ascii_uppercase();
    }
    let t = ct[..end].trim_ascii();
    if upper {
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
        memchr::memrchr(b':', b).filter(|&i| !b[..i].contains(&b':'))
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

    #[test]
    fn servers_are_named_ip_colon_port() {
        let v6 = Addr(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let peers = Peers::new((Addr::v4([10, 0, 0, 1]), 5555), (v6, 8080));
        assert_eq!(peers.server_name, "[2001:db8::1]:8080");
        let peers = Peers::new((v6, 5555), (Addr::v4([10, 96, 0, 12]), 80));
        assert_eq!(peers.server_name, "10.96.0.12:80");
        assert_eq!(peers.client_ip, "2001:db8::1");
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
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::wire::http::parser::{RequestHead, ResponseHead};

    #[test]
    fn headers_are_redacted_bodies_kept_and_real_ip_used() {
        let cfg = HttpConfig {
            send_headers: vec!["*".into()],
            ..Default::default()
        };
        let ctx = EventCtx {
            cfg,
            real_ip: Some("x-forwarded-for".into()),
            include_body_for: vec!["application/json".into()],
            send_all: true,
            input: "t".into(),
            map: None,
        };
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
        let peers = Peers::new(
            (Addr::v4([10, 0, 0, 1]), 40000),
            (Addr::v4([10, 0, 0, 2]), 8443),
        );
        let e = ctx.event(t, &peers);
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
