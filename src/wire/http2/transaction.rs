//! One HTTP/2 stream as reported: the request's pseudo-headers and a few headers, the response
//! status, body sizes from DATA, how the stream ended (END_STREAM, RST_STREAM, GOAWAY) and, for
//! gRPC, the service, method, status and message counts. Written with the HTTP decoder's ECS
//! names (`http.*`, `url.*`) and OpenTelemetry's `rpc.*`.

use super::grpc::{self, Messages};
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::doh::{Carried, Exchange};
use crate::wire::http::metrics::ServiceMap;
use crate::wire::out::Fields;

/// The request's fields kept (from HEADERS, an h2c upgrade request, or a PUSH_PROMISE).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: Option<u16>,
    pub content_type: Option<String>,
}

/// gRPC's trailers (or a trailers-only response's headers).
#[derive(Debug, Clone, Default)]
pub struct Trailers {
    pub grpc_status: Option<i64>,
    pub grpc_message: Option<String>,
}

/// How a stream ended other than by both END_STREAMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// RST_STREAM from this side with this error code.
    Reset { by_client: bool, code: u32 },
    /// GOAWAY whose last stream id is below this stream: never processed.
    GoAway { code: u32 },
    /// No END_STREAM within `transaction_timeout`, or before the connection or capture ended.
    Incomplete,
}

/// The error codes of RFC 9113 §7, by name.
pub fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN_ERROR",
    }
}

#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub stream_id: u32,
    pub request: Option<Request>,
    pub response: Option<Response>,
    pub trailers: Option<Trailers>,
    pub req_start_ns: i64,
    pub req_end_ns: i64,
    pub resp_start_ns: i64,
    pub resp_end_ns: i64,
    /// HPACK-coded header block bytes (all blocks of the side: headers and trailers).
    pub req_header_bytes: u64,
    pub resp_header_bytes: u64,
    /// DATA payload bytes, padding excluded.
    pub req_body_bytes: u64,
    pub resp_body_bytes: u64,
    /// Frame bytes on the wire for this stream (9-byte frame headers and padding included).
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub client_done: bool,
    pub server_done: bool,
    pub ended: Option<Ended>,
    /// gRPC: the messages of each direction.
    pub grpc: bool,
    pub req_messages: Messages,
    pub resp_messages: Messages,
    /// Some of this stream's bytes were never captured.
    pub gap: bool,
    /// The header blocks of a side could not be decoded (HPACK lost to a gap or an error).
    pub headers_lost: bool,
    /// Promised by the server (PUSH_PROMISE) rather than asked by the client.
    pub pushed: bool,
    /// The HTTP/1.1 request of an h2c upgrade and the 101 that accepted it.
    pub switched: bool,
    /// The DNS messages of a DNS-over-HTTPS exchange (RFC 8484), when either side sent one.
    pub doh: Option<Box<Exchange>>,
}

impl Transaction {
    /// The first frame of the stream (the request's, or the response's without one).
    pub fn start_ns(&self) -> i64 {
        self.req_start_ns
    }

    pub fn end_ns(&self) -> i64 {
        self.resp_end_ns.max(self.req_end_ns).max(self.start_ns())
    }

    fn status(&self) -> Option<u16> {
        self.response.as_ref().and_then(|r| r.status)
    }

    fn grpc_status(&self) -> Option<i64> {
        self.trailers.as_ref().and_then(|t| t.grpc_status)
    }

    /// Why the outcome is unknown, when it is.
    fn reason(&self) -> Option<&'static str> {
        if self.request.is_none() && !self.headers_lost {
            return Some("request_missing");
        }
        match self.ended {
            Some(Ended::Incomplete) if self.response.is_none() => Some("response_missing"),
            Some(Ended::Incomplete) => Some("response_incomplete"),
            _ if self.headers_lost && self.response.is_none() => Some("headers_unavailable"),
            _ => None,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self.ended {
            Some(Ended::Reset { code, .. }) if code != 0 || !self.server_done => {
                return Outcome::Failure
            }
            Some(Ended::GoAway { .. }) => return Outcome::Failure,
            _ => {}
        }
        if self.reason().is_some() {
            return Outcome::Unknown;
        }
        match (self.grpc_status(), self.status()) {
            (Some(0), _) => Outcome::Success,
            (Some(_), _) => Outcome::Failure,
            (None, Some(s)) if s >= 400 => Outcome::Failure,
            // A gRPC call that ended without a grpc-status is an error (the gRPC spec).
            (None, Some(_)) if self.grpc && self.server_done => Outcome::Failure,
            (None, Some(_)) => Outcome::Success,
            (None, None) => Outcome::Unknown,
        }
    }

    /// The error code of the RST_STREAM or GOAWAY that ended the stream.
    fn error_code(&self) -> Option<u32> {
        match self.ended {
            Some(Ended::Reset { code, .. }) | Some(Ended::GoAway { code }) => Some(code),
            _ => None,
        }
    }

    fn write_http2<F: Fields>(&self, f: &mut F) {
        f.open("http2");
        f.int("stream_id", self.stream_id as i64);
        if let Some(code) = self.error_code() {
            f.word("error_code", error_name(code));
            f.word(
                "ended_by",
                match self.ended {
                    Some(Ended::Reset {
                        by_client: true, ..
                    }) => "client_rst_stream",
                    Some(Ended::Reset { .. }) => "server_rst_stream",
                    _ => "goaway",
                },
            );
        }
        if self.pushed {
            f.bool("pushed", true);
        }
        f.close();
    }

    /// `url.*`, `user_agent` and, for gRPC, `rpc.*` and `grpc.*`.
    fn write_url<F: Fields>(&self, f: &mut F) {
        if let Some(r) = &self.request {
            let (path, query) = match r.path.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (r.path.as_str(), None),
            };
            f.open("url");
            f.str("path", path);
            if let Some(q) = query {
                f.str("query", q);
            }
            if let Some(a) = &r.authority {
                let (host, port) = match a.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                        (h, p.parse::<u16>().ok())
                    }
                    _ => (a.as_str(), None),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if !host.is_empty() {
                    f.str("domain", &host.to_ascii_lowercase());
                }
                if let Some(p) = port {
                    f.int("port", p as i64);
                }
            }
            // `:scheme` and `:method` are whatever the HPACK block said: escaped, not words.
            if let Some(s) = &r.scheme {
                f.str("scheme", s);
            }
            f.str("original", &r.path);
            f.close();
            if let Some(ua) = &r.user_agent {
                f.open("user_agent");
                f.str("original", ua);
                f.close();
            }
        }
        if let Some((service, method)) = self.rpc() {
            f.open("rpc");
            f.word("system", "grpc");
            f.str("service", service);
            f.str("method", method);
            if let Some(code) = self.grpc_status() {
                f.open("grpc");
                f.int("status_code", code);
                f.close();
            }
            f.close();
            f.open("grpc");
            if let Some(code) = self.grpc_status() {
                f.word("status", grpc::status_name(code));
            }
            if let Some(m) = self.trailers.as_ref().and_then(|t| t.grpc_message.as_ref()) {
                f.str("message", m);
            }
            for (key, m) in [
                ("request", &self.req_messages),
                ("response", &self.resp_messages),
            ] {
                f.open(key);
                f.int("messages", m.count as i64);
                f.int("message_bytes", m.bytes as i64);
                if m.compressed > 0 {
                    f.int("compressed", m.compressed as i64);
                }
                f.close();
            }
            f.close();
        }
    }

    fn rpc(&self) -> Option<(&str, &str)> {
        let r = self.request.as_ref()?;
        self.grpc.then(|| grpc::split_path(&r.path)).flatten()
    }
}

impl analyzer::Transaction for Transaction {
    fn record(&self) -> Record<'_> {
        let status = match (self.grpc_status(), self.status(), self.ended) {
            (Some(g), _, _) if self.grpc => grpc::status_name(g),
            (_, _, Some(Ended::Reset { code, .. })) if code != 0 => error_name(code),
            (_, _, Some(Ended::GoAway { code })) => error_name(code),
            (_, Some(s), _) => status_text(s),
            _ => "",
        };
        Record {
            start_ns: self.start_ns(),
            end_ns: self.end_ns(),
            outcome: self.outcome(),
            reason: self.reason(),
            request_bytes: self.req_bytes,
            response_bytes: self.resp_bytes,
            operation: match (self.rpc(), &self.request) {
                (Some((_, m)), _) => m,
                (None, Some(r)) => &r.method,
                (None, None) => "",
            },
            status,
            gap: self.gap,
        }
    }

    fn carried_dns(&self) -> Option<Carried> {
        let x = self.doh.as_deref()?;
        x.transaction(
            (self.req_start_ns, self.req_end_ns),
            (self.resp_start_ns, self.resp_end_ns),
        )
        .map(Carried)
    }

    /// The 101 of an h2c upgrade is not counted: its request is the same as stream 1's, which
    /// is counted when its HTTP/2 answer comes, and a request rate must see it once.
    fn observe(&self, conn: &Conn, map: &ServiceMap) {
        if self.switched {
            return;
        }
        map.record_transaction(
            conn.protocol,
            &conn.client_ip,
            &conn.server_name,
            &self.record(),
        );
    }

    fn write_fields<F: Fields>(&self, f: &mut F) {
        f.open("http");
        if let Some(r) = &self.request {
            f.open("request");
            f.str("method", &r.method);
            f.int("bytes", self.req_bytes as i64);
            f.int("header_bytes", self.req_header_bytes as i64);
            f.open("body");
            f.int("bytes", self.req_body_bytes as i64);
            f.close();
            if let Some(ct) = &r.content_type {
                f.str("mime_type", ct);
            }
            f.close();
        }
        if let Some(r) = &self.response {
            f.open("response");
            if let Some(s) = r.status {
                f.int("status_code", s as i64);
            }
            f.int("bytes", self.resp_bytes as i64);
            f.int("header_bytes", self.resp_header_bytes as i64);
            f.open("body");
            f.int("bytes", self.resp_body_bytes as i64);
            f.close();
            if let Some(ct) = &r.content_type {
                f.str("mime_type", ct);
            }
            f.close();
        }
        if self.switched {
            // The HTTP/1.1 exchange before the protocol switched: not an HTTP/2 stream.
            f.word("version", "1.1");
            f.close();
        } else {
            f.word("version", "2");
            f.close();
            self.write_http2(f);
        }
        self.write_url(f);
    }

    /// The common part, the fields, and the tags (a gap, header blocks that were lost).
    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        analyzer::write_common(conn, &self.record(), f);
        self.write_fields(f);
        match (self.gap, self.headers_lost) {
            (true, true) => f.strs("tags", &["tcp_gap", "http2_headers_lost"]),
            (true, false) => f.strs("tags", &["tcp_gap"]),
            (false, true) => f.strs("tags", &["http2_headers_lost"]),
            (false, false) => {}
        }
    }
}

/// A status code as a label without allocating: the common ones by number, else the class.
fn status_text(s: u16) -> &'static str {
    const COMMON: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, text)) = COMMON.iter().find(|(code, _)| *code == s) {
        return text;
    }
    match s / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}
