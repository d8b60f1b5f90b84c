//! Turns a transaction into its ECS event (and feeds the RED metrics). Built as nested objects
//! with their sizes known, moving the parsed strings rather than copying them, and with the
//! connection's own strings (addresses, Community ID) computed once per connection.

use super::metrics::ServiceMap;
use super::parser::HeadOptions;
use super::transaction::{Limits, Transaction};
use super::HttpConfig;
use crate::event::{Event, EventMeta, Map, Value};
use crate::inputs::packet::decode::Addr;
use crate::inputs::packet::{community_id::community_id, ns_to_time};
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
}

impl Peers {
    pub fn new(client: Endpoint, server: Endpoint) -> Peers {
        Peers {
            client_ip: client.0.to_string(),
            server_ip: server.0.to_string(),
            server_name: SockName(server.0, server.1).to_string(),
            community_id: community_id(0, client.0, client.1, server.0, server.1, 6),
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

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn obj(m: Map) -> Value {
    Value::Object(m)
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

    pub fn emit(&self, txs: &mut Vec<Transaction>, peers: &Peers, out: &mut Vec<Event>) {
        for t in txs.drain(..) {
            out.push(self.event(t, peers));
        }
    }

    fn headers(&self, hs: Vec<(String, String)>) -> Option<Value> {
        if hs.is_empty() {
            return None;
        }
        let mut m = Map::with_capacity(hs.len());
        for (k, v) in hs {
            if !self.send_all
                && !self
                    .cfg
                    .send_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&k))
            {
                continue;
            }
            let v = if self
                .cfg
                .redact_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&k))
            {
                "REDACTED".to_owned()
            } else {
                v
            };
            // Repeated headers (Set-Cookie...): the last value wins.
            m.insert(k.as_str(), Value::String(v));
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }

    fn event(&self, t: Transaction, peers: &Peers) -> Event {
        let start = if t.request.is_some() {
            t.req_start_ns
        } else {
            t.resp_start_ns
        };
        let end = t.resp_end_ns.max(t.req_end_ns).max(start);
        let status = t.response.as_ref().map(|r| r.status);
        let req_bytes = t.req_header_bytes + t.req_body_bytes;
        let resp_bytes = t.resp_header_bytes + t.resp_body_bytes;
        let (cport, sport) = (peers.client.1, peers.server.1);
        // Room for every top-level group up front: no regrowth while filling.
        let mut fields = Map::with_capacity(12);
        fields.push_new("@timestamp", Value::Timestamp(ns_to_time(start)));
        let mut e = Event {
            fields,
            meta: EventMeta {
                input: self.input.clone(),
                origin: None,
            },
        };

        let mut ev = Map::with_capacity(10);
        ev.push_new("kind", s("event"));
        ev.push_new("category", Value::Array(vec![s("network"), s("web")]));
        ev.push_new("type", Value::Array(vec![s("connection"), s("protocol")]));
        ev.push_new("dataset", s("http"));
        ev.push_new("start", Value::Timestamp(ns_to_time(start)));
        ev.push_new("end", Value::Timestamp(ns_to_time(end)));
        ev.push_new("duration", Value::Int(end - start));
        let outcome = match (t.missing, status) {
            (Some(_), _) | (None, None) => "unknown",
            (None, Some(code)) if code >= 400 => "failure",
            _ => "success",
        };
        ev.push_new("outcome", s(outcome));
        if let Some(m) = t.missing {
            ev.push_new("reason", s(m.as_str()));
        }
        e.fields.push_new("event", obj(ev));

        let endpoint = |ip: &str, port: u16| {
            let mut m = Map::with_capacity(2);
            m.push_new("ip", s(ip));
            m.push_new("port", Value::Int(port as i64));
            obj(m)
        };
        e.fields
            .push_new("source", endpoint(&peers.client_ip, cport));
        e.fields
            .push_new("destination", endpoint(&peers.server_ip, sport));
        let real = t
            .request
            .as_ref()
            .and_then(|r| r.real_ip.as_deref())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_owned);
        match &real {
            Some(ip) => {
                let mut c = Map::with_capacity(1);
                c.push_new("ip", s(ip));
                e.fields.push_new("client", obj(c));
            }
            None => {
                e.fields
                    .push_new("client", endpoint(&peers.client_ip, cport));
            }
        }
        e.fields
            .push_new("server", endpoint(&peers.server_ip, sport));

        let mut net = Map::with_capacity(7);
        net.push_new("transport", s("tcp"));
        net.push_new("protocol", s("http"));
        net.push_new(
            "type",
            s(if peers.client.0.is_v4() {
                "ipv4"
            } else {
                "ipv6"
            }),
        );
        net.push_new("community_id", s(&peers.community_id));
        net.push_new("bytes", Value::Int((req_bytes + resp_bytes) as i64));
        if let Some(ip) = &real {
            net.push_new("forwarded_ip", s(ip));
        }
        e.fields.push_new("network", obj(net));

        let mut http = Map::with_capacity(3);
        let mut method = String::new();
        let mut path = String::new();
        let mut url = Map::with_capacity(5);
        let mut user_agent = None;
        let version = t
            .request
            .as_ref()
            .map(|r| r.minor)
            .or(t.response.as_ref().map(|r| r.minor));
        if let Some(r) = t.request {
            let mut req = Map::with_capacity(6);
            req.push_new("method", s(&r.method));
            req.push_new("bytes", Value::Int(req_bytes as i64));
            req.push_new("header_bytes", Value::Int(t.req_header_bytes as i64));
            let mut body = Map::with_capacity(2);
            body.push_new("bytes", Value::Int(t.req_body_bytes as i64));
            if let Some(b) = t.req_body {
                body.push_new(
                    "content",
                    Value::String(String::from_utf8_lossy(&b).into_owned()),
                );
            }
            req.push_new("body", obj(body));
            if let Some(ct) = &r.content_type {
                req.push_new("mime_type", Value::String(mime(ct)));
            }
            if let Some(h) = self.headers(r.headers) {
                req.push_new("headers", h);
            }
            http.push_new("request", obj(req));
            method = r.method;
            let target = r.target.as_str();
            // Absolute form (proxies): keep the path and query only.
            let rel = match target.find("://") {
                Some(i) => target[i + 3..]
                    .find('/')
                    .map(|j| &target[i + 3 + j..])
                    .unwrap_or("/"),
                None => target,
            };
            let (p, q) = match rel.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rel, None),
            };
            if self.map.is_some() {
                path = p.to_owned();
            }
            url.push_new("path", s(p));
            if let Some(q) = q {
                url.push_new("query", s(q));
            }
            if let Some(h) = &r.host {
                let host = strip_port(h).to_ascii_lowercase();
                if !host.is_empty() {
                    url.push_new("domain", Value::String(host));
                }
            }
            url.push_new("original", Value::String(r.target));
            user_agent = r.user_agent;
        }
        if let Some(r) = t.response {
            let mut resp = Map::with_capacity(6);
            resp.push_new("status_code", Value::Int(r.status as i64));
            resp.push_new("bytes", Value::Int(resp_bytes as i64));
            resp.push_new("header_bytes", Value::Int(t.resp_header_bytes as i64));
            let mut body = Map::with_capacity(2);
            body.push_new("bytes", Value::Int(t.resp_body_bytes as i64));
            if let Some(b) = t.resp_body {
                body.push_new(
                    "content",
                    Value::String(String::from_utf8_lossy(&b).into_owned()),
                );
            }
            resp.push_new("body", obj(body));
            if let Some(ct) = &r.content_type {
                resp.push_new("mime_type", Value::String(mime(ct)));
            }
            if let Some(h) = self.headers(r.headers) {
                resp.push_new("headers", h);
            }
            http.push_new("response", obj(resp));
        }
        if let Some(minor) = version {
            http.push_new("version", s(if minor == 0 { "1.0" } else { "1.1" }));
        }
        e.fields.push_new("http", obj(http));
        if !url.is_empty() {
            e.fields.push_new("url", obj(url));
        }
        if let Some(ua) = user_agent {
            let mut m = Map::with_capacity(1);
            m.push_new("original", Value::String(ua));
            e.fields.push_new("user_agent", obj(m));
        }
        if t.gap {
            e.add_tag("tcp_gap");
        }
        if let Some(map) = &self.map {
            let client_name = real.as_deref().unwrap_or(&peers.client_ip);
            let secs = (!method.is_empty() && status.is_some()).then(|| (end - start) as f64 / 1e9);
            map.record_http(
                client_name,
                &peers.server_name,
                &method,
                &path,
                status,
                secs,
                req_bytes + resp_bytes,
            );
        }
        e
    }
}

/// `ip:port`, with brackets for IPv6.
pub struct SockName(pub Addr, pub u16);

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
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_and_mime_parameters_are_stripped() {
        assert_eq!(strip_port("Example.com:8080"), "Example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(mime("Text/HTML; charset=utf-8"), "text/html");
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::inputs::packet::http::parser::{RequestHead, ResponseHead};

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
            minor: 1,
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
            minor: 1,
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
