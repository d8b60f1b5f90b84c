//! One HTTP connection seen from the wire: a request parser on the client's stream, a response
//! parser on the server's, and the FIFO of requests waiting for their response (pipelining).
//! Every request and every response ends up in exactly one `Transaction`, matched or not.

mod early;
mod owed;
mod response;

use super::parser::{
    self, anomaly, Body, Framing, HeadOptions, RequestHead, ResponseHead, Status, Sync,
};
use crate::wire::doh;
use early::{
    abandon_answered_request, answered_request_ended, body_incomplete, flag, response_ended,
};
use owed::{Asked, Owed};
use response::{consume_responses, flag_response};

/// Why a transaction is reported without one of its halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No response within `transaction_timeout`, or before the connection or capture ended.
    Response,
    /// A response whose request was not seen (capture started mid-connection, or a gap).
    Request,
    /// The response started but did not end before the connection or capture did.
    ResponseIncomplete,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Response => "response_missing",
            Missing::Request => "request_missing",
            Missing::ResponseIncomplete => "response_incomplete",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub request: Option<RequestHead>,
    pub response: Option<ResponseHead>,
    pub req_start_ns: i64,
    pub req_end_ns: i64,
    pub resp_start_ns: i64,
    pub resp_end_ns: i64,
    pub req_header_bytes: u64,
    /// The message body: transfer-coding (chunk framing) removed, content-coding kept.
    pub req_body_bytes: u64,
    /// Chunk-size lines, chunk ends and trailers: on the wire, not in the body.
    pub req_framing_bytes: u64,
    pub resp_header_bytes: u64,
    pub resp_body_bytes: u64,
    pub resp_framing_bytes: u64,
    pub req_body: Option<Vec<u8>>,
    pub resp_body: Option<Vec<u8>>,
    /// The DNS messages of a DNS-over-HTTPS exchange (RFC 8484), when either side sent one.
    pub doh: Option<Box<doh::Exchange>>,
    /// Some bytes of this transaction were never captured.
    pub gap: bool,
    pub missing: Option<Missing>,
    /// The response to a request already reported without one (`owed`): the request was
    /// counted in the metrics then, so this one is not.
    pub late: bool,
}

/// Transactions ready to be reported. Each is boxed from its first byte to its event: a few
/// hundred bytes, moved between the request, the pipelining queue, the response and the output.
#[allow(clippy::vec_box, reason = "boxed from the first byte, as above")]
pub type Finished = Vec<Box<Transaction>>;

/// What the connection needs from the analyzer's configuration.
pub struct Limits<'a> {
    pub head: HeadOptions<'a>,
    /// Content types (prefixes, lower-case) whose bodies are kept.
    pub include_body_for: &'a [String],
    pub max_body_bytes: usize,
    /// Longest message head buffered before giving the message up.
    pub max_head_bytes: usize,
    /// Most requests waiting for a response on one connection.
    pub max_pending: usize,
    /// DNS messages exchanged as RFC 8484 says are kept (`Transaction::doh`).
    pub dns_over_https: bool,
}

#[derive(Debug)]
enum State {
    /// Looking for the start of a message (mid-stream pick-up, after a gap or garbage).
    Sync,
    Head,
    Body(Body),
    /// After a CONNECT: the next bytes tell whether the tunnel carries HTTP (parsing goes
    /// on) or something else (TLS...: parsing stops).
    Tunnel,
    /// The connection switched protocols (101, a tunnel that is not HTTP): nothing more to
    /// parse.
    Done,
}

#[derive(Debug)]
struct Side {
    state: State,
    buf: Vec<u8>,
    buf_ns: i64,
}

impl Side {
    fn new() -> Side {
        Side {
            state: State::Sync,
            buf: Vec::new(),
            buf_ns: 0,
        }
    }
}

/// Counters the analyzer publishes.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub parse_errors: u64,
    pub gaps: u64,
}

pub struct Conn {
    client: Side,
    server: Side,
    /// The request being read.
    req: Option<Box<Transaction>>,
    /// Set when a final response arrived while the request was still being read.
    req_answered: bool,
    pending: std::collections::VecDeque<Box<Transaction>>,
    /// Responses still due to requests already reported without one (pushed out of a full
    /// queue, or past `transaction_timeout`): the next responses are theirs, reported alone,
    /// so that later ones still meet their own requests.
    owed: Owed,
    /// The response being read, with its request.
    resp: Option<Box<Transaction>>,
    /// A response that ended while its request's body was still being sent (an early 401,
    /// 413 or `return` of nginx): held until that body ends, so that the transaction counts
    /// the whole upload, not what had come when the server answered.
    early: Option<Box<Transaction>>,
    /// What interim 1xx responses carried that RFC 9110 section 8.6 and RFC 9112 section 6.1
    /// forbid (a Content-Length, a Transfer-Encoding; two names at most): listed on the final
    /// response that follows.
    interim_anomalies: Vec<&'static str>,
    pub last_ns: i64,
}

fn wants_body(limits: &Limits<'_>, content_type: Option<&str>) -> bool {
    match content_type {
        Some(ct) if limits.max_body_bytes > 0 => limits.include_body_for.iter().any(|p| {
            ct.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        }),
        _ => false,
    }
}

/// What a request says of a DNS-over-HTTPS exchange (RFC 8484 §4.1): a GET's `dns` parameter
/// is the query; a body of type `application/dns-message` is (its bytes follow the head).
fn doh_request(l: &Limits<'_>, head: &RequestHead) -> Option<Box<doh::Exchange>> {
    if !l.dns_over_https {
        return None;
    }
    let query = if head
        .content_type
        .as_deref()
        .is_some_and(doh::is_dns_message)
    {
        doh::Body::default()
    } else if head.method == "GET" {
        doh::Body::whole(doh::query_parameter(&head.target)?)
    } else {
        return None;
    };
    Some(Box::new(doh::Exchange {
        query: Some(query),
        response: None,
    }))
}

/// The body bytes `d` of a DNS-over-HTTPS message, on the side being read.
fn keep_dns(x: &mut Option<Box<doh::Exchange>>, response: bool, d: &[u8]) {
    if let Some(x) = x {
        let body = if response {
            &mut x.response
        } else {
            &mut x.query
        };
        if let Some(b) = body {
            b.feed(d);
        }
    }
}

fn keep(body: &mut Option<Vec<u8>>, data: &[u8], max: usize) {
    if let Some(b) = body {
        let room = max.saturating_sub(b.len());
        b.extend_from_slice(&data[..room.min(data.len())]);
    }
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            client: Side::new(),
            server: Side::new(),
            req: None,
            req_answered: false,
            pending: Default::default(),
            owed: Owed::default(),
            resp: None,
            early: None,
            interim_anomalies: Vec::new(),
            last_ns: 0,
        }
    }

    /// Bytes held by this connection (buffers and pending heads), for the memory bound.
    pub fn buffered(&self) -> usize {
        self.client.buf.capacity() + self.server.buf.capacity() + self.pending.len() * 256
    }

    /// In-order bytes from the client.
    pub fn client_data(
        &mut self,
        data: &[u8],
        ts: i64,
        l: &Limits<'_>,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.last_ns = ts;
        if with_buffer(
            &mut self.client,
            data,
            ts,
            l.max_head_bytes,
            |side, bytes| {
                consume_requests(
                    ReqParts {
                        req: &mut self.req,
                        answered: &mut self.req_answered,
                        pending: &mut self.pending,
                        owed: &mut self.owed,
                        resp: &mut self.resp,
                        early: &mut self.early,
                    },
                    side,
                    bytes,
                    ts,
                    l,
                    st,
                    out,
                )
            },
        ) {
            st.parse_errors += 1;
        }
    }

    /// In-order bytes from the server.
    pub fn server_data(
        &mut self,
        data: &[u8],
        ts: i64,
        l: &Limits<'_>,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.last_ns = ts;
        let mut parts = RespParts {
            pending: &mut self.pending,
            owed: &mut self.owed,
            resp: &mut self.resp,
            req: &mut self.req,
            req_answered: &mut self.req_answered,
            client_state: &mut self.client.state,
            early: &mut self.early,
            interim_anomalies: &mut self.interim_anomalies,
        };
        if with_buffer(
            &mut self.server,
            data,
            ts,
            l.max_head_bytes,
            |side, bytes| consume_responses(&mut parts, side, bytes, ts, l, st, out),
        ) {
            st.parse_errors += 1;
        }
    }

    /// Bytes the client sent that were never captured.
    pub fn client_gap(&mut self, n: u32, l: &Limits, st: &mut ConnStats, out: &mut Finished) {
        st.gaps += 1;
        // Bytes lost inside a body leave it incomplete as captured, whether the framing absorbs
        // them (its size still counts them) or not (its end was lost with them).
        let in_body = matches!(self.client.state, State::Body(ref b) if !b.done);
        if in_body {
            if let Some(t) = &mut self.req {
                body_incomplete(t);
            }
            if self.req_answered {
                for t in [&mut self.early, &mut self.resp].into_iter().flatten() {
                    body_incomplete(t);
                }
            }
        }
        if let State::Body(b) = &mut self.client.state {
            if b.skip(n as u64) {
                if let Some(t) = &mut self.req {
                    t.gap = true;
                    t.req_body_bytes += n as u64;
                }
                return;
            }
        }
        if let Some(t) = &mut self.req {
            t.gap = true;
        }
        if self.req.is_none() && matches!(self.client.state, State::Head) {
            // Bytes lost between requests held at least the start of one (a pipelined request
            // in a lost segment): its response, still to come, is its own, not the next
            // request's. What of its line was buffered names it.
            let head = parser::partial_request_line(&self.client.buf);
            let at = if head.is_some() {
                self.client.buf_ns
            } else {
                self.last_ns
            };
            // A full queue gives up its oldest, as a request that completes does.
            if self.pending.len() >= l.max_pending {
                if let Some(mut old) = self.pending.pop_front() {
                    old.missing = Some(Missing::Response);
                    self.owed.push(Asked::of(old.request.as_ref()));
                    out.push(old);
                }
            }
            self.pending.push_back(Box::new(Transaction {
                req_start_ns: at,
                req_end_ns: at,
                missing: head.is_none().then_some(Missing::Request),
                request: head,
                gap: true,
                ..Default::default()
            }));
        }
        // The request in progress cannot be finished: hand it on as it is.
        if let Some(t) = self.req.take() {
            if self.req_answered {
                answered_request_ended(t, &mut self.early, &mut self.resp, out);
            } else {
                self.pending.push_back(t);
            }
        }
        self.client.state = State::Sync;
        self.client.buf.clear();
    }

    /// Bytes the server sent that were never captured.
    pub fn server_gap(&mut self, n: u32, st: &mut ConnStats, out: &mut Finished) {
        st.gaps += 1;
        if matches!(self.server.state, State::Body(ref b) if !b.done) {
            // As for a request body: incomplete as captured, absorbed or not.
            if let Some(t) = &mut self.resp {
                flag_response(t, anomaly::BODY_INCOMPLETE);
            }
        }
        if let State::Body(b) = &mut self.server.state {
            if b.skip(n as u64) {
                if let Some(t) = &mut self.resp {
                    t.gap = true;
                    t.resp_body_bytes += n as u64;
                }
                if b.done {
                    self.server.state = State::Head;
                    if let Some(t) = self.resp.take() {
                        out.push(t);
                    }
                }
                return;
            }
        }
        if let Some(mut t) = self.resp.take() {
            t.gap = true;
            out.push(t);
        } else if matches!(self.server.state, State::Head) && !self.server.buf.is_empty() {
            // The gap cut a response head: that response is lost, its request answered
            // (already reported, when one is `owed`).
            if self.owed.pop().is_none() {
                if let Some(mut t) = self.pending.pop_front() {
                    t.gap = true;
                    t.missing = Some(Missing::Response);
                    out.push(t);
                }
            }
        } else if let Some(t) = self.pending.front_mut() {
            // The lost bytes may have held this request's response.
            t.gap = true;
        }
        self.server.state = State::Sync;
        self.server.buf.clear();
        // Whatever interim response came, its final one may be lost too.
        self.interim_anomalies.clear();
    }

    /// The server closed its side: a body read until close is complete.
    pub fn server_closed(&mut self, out: &mut Finished) {
        if let State::Body(b) = &mut self.server.state {
            b.close();
            if b.done {
                self.server.state = State::Head;
                if let Some(t) = self.resp.take() {
                    response_ended(t, self.req_answered, &self.req, &mut self.early, out);
                }
            }
        }
    }

    /// Whether `expire` has a request to report, or a response held for a request body that
    /// stopped coming.
    pub fn expires(&self, deadline_ns: i64) -> bool {
        let waiting = self.resp.is_none()
            && self
                .pending
                .front()
                .is_some_and(|t| t.req_end_ns < deadline_ns);
        waiting || self.early_expires(deadline_ns)
    }

    fn early_expires(&self, deadline_ns: i64) -> bool {
        self.early.is_some()
            && self
                .req
                .as_ref()
                .is_none_or(|r| r.req_end_ns.max(r.req_start_ns) < deadline_ns)
    }

    /// Requests without a response since before `deadline_ns`. A server answers requests in
    /// order (RFC 9112 section 9.3.2), so a response that comes later is theirs (`owed`).
    pub fn expire(&mut self, deadline_ns: i64, out: &mut Finished) {
        if self.early_expires(deadline_ns) {
            // The upload stalled: the transaction is reported with the body seen so far, and
            // what of it still comes is read as before, counted nowhere.
            abandon_answered_request(&mut self.req, &mut self.req_answered, &mut self.early, out);
        }
        while self.expires(deadline_ns) {
            if let Some(mut t) = self.pending.pop_front() {
                t.missing = Some(Missing::Response);
                self.owed.push(Asked::of(t.request.as_ref()));
                // A request lost in a gap, unanswered too, has nothing to report.
                if t.request.is_some() {
                    out.push(t);
                }
            }
        }
    }

    /// The connection ended (FIN, RST, idle, end of capture): everything still open is reported.
    pub fn close(&mut self, ts: i64, out: &mut Finished) {
        if matches!(&self.client.state, State::Body(b) if !b.done) {
            // The request is reported with the body that came, and says it is not all: in its
            // own transaction, or in its early answer's (held, or still being read; otherwise
            // `resp` answers an earlier request).
            if let Some(t) = &mut self.req {
                body_incomplete(t);
            }
            if self.req_answered {
                for t in [&mut self.early, &mut self.resp].into_iter().flatten() {
                    body_incomplete(t);
                }
            }
        }
        // A request answered early gives its response the body it sent, before either is out.
        if self.req_answered {
            if let Some(t) = self.req.take() {
                answered_request_ended(t, &mut self.early, &mut self.resp, out);
            }
        }
        if let Some(mut t) = self.resp.take() {
            let complete = match &mut self.server.state {
                State::Body(b) => {
                    b.close();
                    b.done
                }
                _ => true,
            };
            if !complete {
                t.missing = Some(Missing::ResponseIncomplete);
                // Cut short by the server's close or the capture's end: listed, as a request
                // body cut short is.
                flag_response(&mut t, anomaly::BODY_INCOMPLETE);
            } else {
                t.resp_end_ns = t.resp_end_ns.max(ts.min(self.last_ns.max(t.resp_start_ns)));
            }
            out.push(t);
        }
        if let Some(t) = self.req.take() {
            self.pending.push_back(t);
        }
        // Its request's body never ended: reported with what of it came.
        if let Some(t) = self.early.take() {
            out.push(t);
        }
        if matches!(self.client.state, State::Head) && !self.client.buf.is_empty() {
            if let Some(head) = parser::partial_request_line(&self.client.buf) {
                let n = self.client.buf.len() as u64;
                self.pending.push_back(Box::new(Transaction {
                    req_start_ns: self.client.buf_ns,
                    req_end_ns: self.client.buf_ns,
                    req_header_bytes: n,
                    request: Some(head),
                    ..Default::default()
                }));
            }
        }
        while let Some(mut t) = self.pending.pop_front() {
            t.missing = Some(Missing::Response);
            if t.request.is_some() {
                out.push(t);
            }
        }
        self.server.state = State::Done;
        self.client.state = State::Done;
    }
}

struct ReqParts<'a> {
    req: &'a mut Option<Box<Transaction>>,
    answered: &'a mut bool,
    pending: &'a mut std::collections::VecDeque<Box<Transaction>>,
    owed: &'a mut Owed,
    resp: &'a mut Option<Box<Transaction>>,
    early: &'a mut Option<Box<Transaction>>,
}

struct RespParts<'a> {
    pending: &'a mut std::collections::VecDeque<Box<Transaction>>,
    owed: &'a mut Owed,
    resp: &'a mut Option<Box<Transaction>>,
    req: &'a mut Option<Box<Transaction>>,
    req_answered: &'a mut bool,
    client_state: &'a mut State,
    early: &'a mut Option<Box<Transaction>>,
    interim_anomalies: &'a mut Vec<&'static str>,
}

/// A request has been read, as far as it goes: it waits for its response, or, answered early,
/// gives its body to the transaction of that answer.
fn request_ended(p: &mut ReqParts<'_>, t: Box<Transaction>, l: &Limits<'_>, out: &mut Finished) {
    if *p.answered {
        answered_request_ended(t, p.early, p.resp, out);
    } else {
        if p.pending.len() >= l.max_pending {
            if let Some(mut old) = p.pending.pop_front() {
                old.missing = Some(Missing::Response);
                p.owed.push(Asked::of(old.request.as_ref()));
                out.push(old);
            }
        }
        p.pending.push_back(t);
    }
    *p.answered = false;
}

/// Feeds `data` through `side`'s buffer: unconsumed bytes (a partial head) stay buffered.
/// True when the buffered head grew past `max_head` and was given up.
fn with_buffer(
    side: &mut Side,
    data: &[u8],
    ts: i64,
    max_head: usize,
    mut consume: impl FnMut(&mut Side, &[u8]) -> usize,
) -> bool {
    if side.buf.is_empty() {
        side.buf_ns = ts;
        let used = consume(side, data);
        side.buf.extend_from_slice(&data[used.min(data.len())..]);
    } else {
        let mut b = std::mem::take(&mut side.buf);
        b.extend_from_slice(data);
        let used = consume(side, &b).min(b.len());
        b.drain(..used);
        side.buf = b;
        if !side.buf.is_empty() && used > 0 {
            side.buf_ns = ts;
        }
    }
    if side.buf.len() > max_head {
        // A head this long is not HTTP we can follow: look for the next message.
        side.buf.clear();
        side.state = State::Sync;
        return true;
    }
    if side.buf.capacity() > 4 * max_head.max(1 << 16) {
        side.buf.shrink_to(max_head);
    }
    false
}

fn consume_requests(
    mut p: ReqParts<'_>,
    side: &mut Side,
    data: &[u8],
    ts: i64,
    l: &Limits<'_>,
    st: &mut ConnStats,
    out: &mut Finished,
) -> usize {
    let mut at = 0;
    loop {
        match &mut side.state {
            State::Done => return data.len(),
            State::Tunnel => match tunnel(&data[at..], true) {
                Some(state) => side.state = state,
                None => return at,
            },
            State::Sync => match parser::find_message_start(&data[at..], true) {
                Sync::At(i) => {
                    at += i;
                    side.state = State::Head;
                }
                Sync::Keep(i) => return at + i,
            },
            // Every message that ends a segment comes back here: nothing left to parse.
            State::Head if at >= data.len() => return at,
            State::Head => {
                // The head is parsed where the transaction keeps it: a partial or broken head
                // costs an allocation given back, a whole one no copies.
                let mut t = Box::<Transaction>::default();
                let head = t.request.insert(RequestHead::default());
                match parser::parse_request_into(&data[at..], &l.head, head) {
                    Status::Partial => return at,
                    Status::Error => {
                        st.parse_errors += 1;
                        at += 1;
                        side.state = State::Sync;
                    }
                    Status::Complete((), n) => {
                        let start = if at == 0 { side.buf_ns.min(ts) } else { ts };
                        at += n;
                        let framing = if head.chunked {
                            Framing::Chunked
                        } else if head.transfer_coded {
                            // No length can be read (the parser flagged it): the server
                            // answers 400 and closes, RFC 9112 section 6.3.
                            Framing::Length(0)
                        } else {
                            Framing::Length(head.content_length.unwrap_or(0))
                        };
                        let body = wants_body(l, head.content_type.as_deref()).then(Vec::new);
                        t.doh = doh_request(l, head);
                        t.req_start_ns = start;
                        t.req_end_ns = ts;
                        t.req_header_bytes = n as u64;
                        t.req_body = body;
                        let unframed = head.length_invalid && !head.transfer_coded;
                        *p.answered = false;
                        if unframed {
                            // RFC 9112 section 6.3 (5): the server answers 400 and closes, and
                            // where this request ends, and the next begins, cannot be known.
                            // Resynchronising would read its body (which may hold anything,
                            // a smuggled request too) as requests and pair them with the
                            // server's answers; so the request is reported as it is, and the
                            // rest of the client's side is not parsed: responses past its own
                            // are reported alone (`request_missing`).
                            st.parse_errors += 1;
                            request_ended(&mut p, t, l, out);
                            side.state = State::Done;
                            return data.len();
                        }
                        *p.req = Some(t);
                        side.state = State::Body(Body::new(framing));
                    }
                }
            }
            State::Body(b) => {
                if !b.done {
                    if at >= data.len() {
                        return at;
                    }
                    let mut t = p.req.take();
                    let content_before = b.content_bytes;
                    let used = match b.feed(&data[at..], &mut |d| {
                        if let Some(t) = &mut t {
                            keep(&mut t.req_body, d, l.max_body_bytes);
                            keep_dns(&mut t.doh, false, d);
                        }
                    }) {
                        Ok(u) => u,
                        Err(_) => {
                            // The request ends where its chunked framing broke: it is
                            // reported (with its answer, if one came) rather than left to be
                            // taken for the answer of each response that follows.
                            st.parse_errors += 1;
                            side.state = State::Sync;
                            if let Some(mut t) = t {
                                flag(&mut t, anomaly::INVALID_CHUNK);
                                if *p.answered {
                                    for e in [&mut *p.early, &mut *p.resp].into_iter().flatten() {
                                        flag(e, anomaly::INVALID_CHUNK);
                                    }
                                }
                                request_ended(&mut p, t, l, out);
                            }
                            continue;
                        }
                    };
                    *p.req = t;
                    at += used;
                    let content = b.content_bytes - content_before;
                    if let Some(t) = p.req.as_mut() {
                        t.req_body_bytes += content;
                        t.req_framing_bytes += used as u64 - content;
                        t.req_end_ns = ts;
                    }
                    if !b.done {
                        return at;
                    }
                }
                let connect = p
                    .req
                    .as_ref()
                    .and_then(|t| t.request.as_ref())
                    .is_some_and(|r| r.method == "CONNECT");
                side.state = if connect { State::Tunnel } else { State::Head };
                if let Some(t) = p.req.take() {
                    request_ended(&mut p, t, l, out);
                }
                *p.answered = false;
            }
        }
    }
}

/// The state after the first bytes inside a CONNECT tunnel: HTTP goes on being parsed,
/// anything else (TLS, SSH...) is left alone. `None`: too few bytes to tell.
fn tunnel(data: &[u8], request: bool) -> Option<State> {
    // Empty lines before a message are ignored (RFC 9112 section 2.2): some servers end the
    // CONNECT response with one line end too many, which the head parsers skip.
    let lead = data
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if lead == data.len() {
        return None;
    }
    match parser::find_message_start(&data[lead..], request) {
        Sync::At(0) => Some(State::Head),
        Sync::Keep(0) => None,
        _ => Some(State::Done),
    }
}

#[cfg(test)]
mod tests;
