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
        fields.insert("@timestamp", Value::Timestamp(ns_to_time(start)));
        let mut e = Event {
            fields,
            meta: EventMeta {
                input: self.input.clone(),
                origin: None,
            },
        };

        let mut ev = Map::with_capacity(10);
        ev.insert("kind", s("event"));
        ev.insert("category", Value::Array(vec![s("network"), s("web")]));
        ev.insert("type", Value::Array(vec![s("connection"), s("protocol")]));
        ev.insert("dataset", s("http"));
        ev.insert("start", Value::Timestamp(ns_to_time(start)));
        ev.insert("end", Value::Timestamp(ns_to_time(end)));
        ev.insert("duration", Value::Int(end - start));
        let outcome = match (t.missing, status) {
            (Some(_), _) | (None, None) => "unknown",
            (None, Some(code)) if code >= 400 => "failure",
            _ => "success",
        };
        ev.insert("outcome", s(outcome));
        if let Some(m) = t.missing {
            ev.insert("reason", s(m.as_str()));
        }
        e.fields.insert("event", obj(ev));

        let endpoint = |ip: &str, port: u16| {
            let mut m = Map::with_capacity(2);
            m.insert("ip", s(ip));
            m.insert("port", Value::Int(port as i64));
            obj(m)
        };
        e.fields.insert("source", endpoint(&peers.client_ip, cport));
        e.fields
            .insert("destination", endpoint(&peers.server_ip, sport));
        let real = t
            .request
            .as_ref()
            .and_then(|r| r.real_ip.as_deref())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_owned);
        match &real {
            Some(ip) => {
                let mut c = Map::with_capacity(1);
                c.insert("ip", s(ip));
                e.fields.insert("client", obj(c));
            }
            None => {
                e.fields.insert("client", endpoint(&peers.client_ip, cport));
            }
        }
        e.fields.insert("server", endpoint(&peers.server_ip, sport));

        let mut net = Map::with_capacity(7);
        net.insert("transport", s("tcp"));
        net.insert("protocol", s("http"));
        net.insert(
            "type",
            s(if peers.client.0.is_v4() {
                "ipv4"
            } else {
                "ipv6"
            }),
        );
        net.insert("community_id", s(&peers.community_id));
        net.insert("bytes", Value::Int((req_bytes + resp_bytes) as i64));
        if let Some(ip) = &real {
            net.insert("forwarded_ip", s(ip));
        }
        e.fields.insert("network", obj(net));

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
            req.insert("method", s(&r.method));
            req.insert("bytes", Value::Int(req_bytes as i64));
            req.insert("header_bytes", Value::Int(t.req_header_bytes as i64));
            let mut body = Map::with_capacity(2);
            body.insert("bytes", Value::Int(t.req_body_bytes as i64));
            if let Some(b) = t.req_body {
                body.insert(
                    "content",
                    Value::String(String::from_utf8_lossy(&b).into_owned()),
                );
            }
            req.insert("body", obj(body));
            if let Some(ct) = &r.content_type {
                req.insert("mime_type", Value::String(mime(ct)));
            }
            if let Some(h) = self.headers(r.headers) {
                req.insert("headers", h);
            }
            http.insert("request", obj(req));
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
            path = p.to_owned();
            url.insert("path", s(p));
            if let Some(q) = q {
                url.insert("query", s(q));
            }
            if let Some(h) = &r.host {
                let host = strip_port(h).to_ascii_lowercase();
                if !host.is_empty() {
                    url.insert("domain", Value::String(host));
                }
            }
            url.insert("original", Value::String(r.target));
            user_agent = r.user_agent;
        }
        if let Some(r) = t.response {
            let mut resp = Map::with_capacity(6);
            resp.insert("status_code", Value::Int(r.status as i64));
            resp.insert("bytes", Value::Int(resp_bytes as i64));
            resp.insert("header_bytes", Value::Int(t.resp_header_bytes as i64));
            let mut body = Map::with_capacity(2);
            body.insert("bytes", Value::Int(t.resp_body_bytes as i64));
            if let Some(b) = t.resp_body {
                body.insert(
                    "content",
                    Value::String(String::from_utf8_lossy(&b).into_owned()),
                );
            }
            resp.insert("body", obj(body));
            if let Some(ct) = &r.content_type {
                resp.insert("mime_type", Value::String(mime(ct)));
            }
            if let Some(h) = self.headers(r.headers) {
                resp.insert("headers", h);
            }
            http.insert("response", obj(resp));
        }
        if let Some(minor) = version {
            http.insert("version", s(if minor == 0 { "1.0" } else { "1.1" }));
        }
        e.fields.insert("http", obj(http));
        if !url.is_empty() {
            e.fields.insert("url", obj(url));
        }
        if let Some(ua) = user_agent {
            let mut m = Map::with_capacity(1);
            m.insert("original", Value::String(ua));
            e.fields.insert("user_agent", obj(m));
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
