//! Header blocks: HEADERS or PUSH_PROMISE with their CONTINUATIONs put together, decoded with
//! the direction's HPACK table while it is in step, and the fields a transaction keeps given to
//! its stream (request, response, gRPC trailers, promised streams).

use super::conn::{touch, Conn, ConnStats};
use super::frame::{flag, kind, Head};
use super::grpc;
use super::hpack::Decoder;
use super::transaction::{Request, Response, Trailers, Transaction};
use crate::wire::analyzer::Side;
use crate::wire::doh;

/// What a request says of a DNS-over-HTTPS exchange (RFC 8484 §4.1): a GET's `dns` parameter is
/// the query; a body of type `application/dns-message` is (its bytes come in DATA frames).
fn doh_request(r: &Request) -> Option<doh::Exchange> {
    if r.content_type.as_deref().is_some_and(doh::is_dns_message) {
        return Some(doh::Exchange {
            query: Some(doh::Body::default()),
            response: None,
        });
    }
    if r.method != "GET" {
        return None;
    }
    let query = doh::query_parameter(&r.path)?;
    Some(doh::Exchange {
        query: Some(doh::Body::whole(query)),
        response: None,
    })
}

/// A header block being put together from HEADERS or PUSH_PROMISE and its CONTINUATIONs.
pub(super) struct Block {
    pub(super) stream: u32,
    /// The stream a PUSH_PROMISE promises.
    pub(super) promised: Option<u32>,
    pub(super) end_stream: bool,
    pub(super) bytes: Vec<u8>,
    /// Too long to keep: decoded never.
    pub(super) dropped: bool,
}

/// The header fields a transaction keeps, picked from a block.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) method: Option<String>,
    pub(super) path: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) scheme: Option<String>,
    pub(super) status: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) grpc_status: Option<String>,
    pub(super) grpc_message: Option<String>,
}

impl Fields {
    pub(super) fn take(&mut self, name: &str, value: &str) {
        let slot = match name {
            ":method" => &mut self.method,
            ":path" => &mut self.path,
            ":authority" | "host" => &mut self.authority,
            ":scheme" => &mut self.scheme,
            ":status" => &mut self.status,
            "content-type" => &mut self.content_type,
            "user-agent" => &mut self.user_agent,
            "grpc-status" => &mut self.grpc_status,
            "grpc-message" => &mut self.grpc_message,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value.to_owned());
        }
    }

    pub(super) fn request(&mut self) -> Option<Request> {
        Some(Request {
            method: self.method.take()?,
            path: self.path.take().unwrap_or_default(),
            authority: self.authority.take(),
            scheme: self.scheme.take(),
            content_type: self.content_type.take(),
            user_agent: self.user_agent.take(),
        })
    }
}

impl Conn {
    /// A complete header block: decoded (while HPACK is in step) and given to its stream.
    pub(super) fn finish_block(
        &mut self,
        side: Side,
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        let Some(b) = self.dir(side).block.take() else {
            return;
        };
        let mut f = Fields::default();
        let mut decoded = false;
        if b.dropped {
            self.lose_headers(side, st);
        } else if self.dir(side).hpack_ok {
            let r = self
                .dir(side)
                .hpack
                .decode(&b.bytes, &mut |n, v| f.take(n, v));
            match r {
                Ok(()) => decoded = true,
                Err(_) => {
                    st.malformed += 1;
                    self.lose_headers(side, st);
                }
            }
        }
        if let Some(promised) = b.promised {
            // The server's promise is the request of a stream it will answer on its own.
            if promised > self.last_server_stream && self.streams.len() < self.limits.max_streams {
                self.last_server_stream = promised;
                let request = if decoded { f.request() } else { None };
                self.streams.insert(
                    promised,
                    Transaction {
                        stream_id: promised,
                        request,
                        req_start_ns: ts,
                        req_end_ns: ts,
                        client_done: true,
                        pushed: true,
                        headers_lost: !decoded,
                        ..Default::default()
                    },
                );
            }
            return;
        }
        let Some(t) = self.streams.get_mut(&b.stream) else {
            return;
        };
        touch(t, side, ts);
        if !decoded {
            t.headers_lost = true;
        } else {
            match side {
                Side::Client if t.request.is_none() => {
                    t.request = f.request();
                    t.grpc = t
                        .request
                        .as_ref()
                        .and_then(|r| r.content_type.as_deref())
                        .is_some_and(grpc::is_grpc);
                    if self.limits.dns_over_https {
                        if let Some(r) = &t.request {
                            t.doh = doh_request(r).map(Box::new);
                        }
                    }
                }
                // Trailers of a request (rare): nothing kept.
                Side::Client => {}
                Side::Server => {
                    let status: Option<u16> = f.status.as_deref().and_then(|s| s.parse().ok());
                    match status {
                        // Interim (100 Continue, 103 Early Hints): the final response follows.
                        Some(s) if s < 200 => {}
                        Some(s) if t.response.is_none() => {
                            let ct = f.content_type.take();
                            t.grpc |= ct.as_deref().is_some_and(grpc::is_grpc);
                            if self.limits.dns_over_https
                                && ct.as_deref().is_some_and(doh::is_dns_message)
                            {
                                t.doh.get_or_insert_with(Default::default).response =
                                    Some(doh::Body::default());
                            }
                            t.response = Some(Response {
                                status: Some(s),
                                content_type: ct,
                            });
                        }
                        _ => {}
                    }
                    // Trailers, or a trailers-only response.
                    if f.grpc_status.is_some() || (status.is_none() && t.response.is_some()) {
                        t.trailers = Some(Trailers {
                            grpc_status: f.grpc_status.as_deref().and_then(|s| s.parse().ok()),
                            grpc_message: f.grpc_message.as_deref().map(grpc::decode_message),
                        });
                    }
                }
            }
        }
        if b.end_stream {
            self.end_stream(side, b.stream, ts, out);
        }
    }

    /// The direction's header blocks stop being decoded (counted once per direction).
    pub(super) fn lose_headers(&mut self, side: Side, st: &mut ConnStats) {
        let dir = self.dir(side);
        if dir.hpack_ok {
            dir.hpack_ok = false;
            st.headers_lost += 1;
            // The table's contents are of no further use.
            dir.hpack = Decoder::new(0);
        }
    }
}

/// A HEADERS or PUSH_PROMISE payload without its padding and priority fields (§6.2, §6.6);
/// `None` when they do not fit. A PUSH_PROMISE's fragment still starts with the promised id.
pub(super) fn header_fragment<'a>(h: &Head, p: &'a [u8]) -> Option<&'a [u8]> {
    let mut p = p;
    let mut pad = 0usize;
    if h.has(flag::PADDED) {
        let (&n, rest) = p.split_first()?;
        pad = n as usize;
        p = rest;
    }
    if h.kind == kind::HEADERS && h.has(flag::PRIORITY) {
        p = p.get(5..)?;
    }
    if h.kind == kind::PUSH_PROMISE && p.len() < 4 {
        return None;
    }
    p.get(..p.len().checked_sub(pad)?)
}
