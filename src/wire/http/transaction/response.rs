//! The server's side of a connection: response heads, where each body ends (RFC 9112 section
//! 6.3), which request each answers, and what in its framing breaks the rules, listed on the
//! response (`http.response.anomalies`) so that the event says why its body is what it is.

use super::early::{abandon_answered_request, response_ended};
use super::owed::Asked;
use super::parser::{
    self, anomaly, Body, Framing, HeadOptions, ResponseHead, Status, Sync, Version,
};
use super::{
    keep, keep_dns, tunnel, wants_body, ConnStats, Finished, Limits, Missing, RespParts, Side,
    State, Transaction,
};
use crate::wire::doh;

/// How the body of the response `head` (status `status`, answering `asked`) is delimited, in
/// the order of RFC 9112 section 6.3: a response to HEAD, a 1xx, 204 or 304, a 101 or a
/// tunnel's 2xx have no body whatever their headers say (rules 1 and 2); of those, a 1xx, a
/// 204 and a tunnel's 2xx must not carry a Content-Length (RFC 9110 section 8.6) nor a
/// Transfer-Encoding (RFC 9112 section 6.1) at all, which is flagged. Then Transfer-Encoding
/// (3, 4), Content-Length (5, 6), and the close (8).
pub(super) fn framing(head: &mut ResponseHead, asked: Asked, tunnel: bool) -> Framing {
    let status = head.status;
    if head.version == Version::V09 {
        return Framing::UntilClose;
    }
    if status == 101
        || tunnel
        || asked == Asked::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        for name in not_allowed(head, tunnel) {
            push(&mut head.anomalies, name);
        }
        return Framing::None;
    }
    if head.transfer_coded {
        // Transfer-Encoding overrides Content-Length (3); a sender of both may be smuggling
        // a message past a hop that reads the length.
        if head.content_length.is_some() || head.length_invalid {
            push(
                &mut head.anomalies,
                anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING,
            );
        }
        // Chunked not last: the body runs until the close (4).
        return if head.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
    }
    if head.length_invalid {
        // An unrecoverable framing error (5): the client closes and discards the response.
        // Its end is unknown, so what follows on the server's side is not read as responses
        // (which would pair them with the wrong requests): it is this body, counted (never
        // buffered past `max_body_bytes`) until the close.
        push(&mut head.anomalies, anomaly::INVALID_CONTENT_LENGTH);
        return Framing::UntilClose;
    }
    match head.content_length {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    }
}

/// The framing headers `head` carries where the RFCs forbid them: on a 1xx, a 204, or a 2xx
/// answering CONNECT (`tunnel`), a Content-Length (RFC 9110 section 8.6) and a
/// Transfer-Encoding (RFC 9112 section 6.1). A 304 and a response to HEAD may carry either.
fn not_allowed(head: &ResponseHead, tunnel: bool) -> impl Iterator<Item = &'static str> {
    let status = head.status;
    let bodiless = (100..200).contains(&status) || status == 204 || tunnel;
    let length = bodiless && (head.content_length.is_some() || head.length_invalid);
    let coding = bodiless && head.transfer_coded;
    [
        (length, anomaly::CONTENT_LENGTH_NOT_ALLOWED),
        (coding, anomaly::TRANSFER_ENCODING_NOT_ALLOWED),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
}

/// Lists `name` on the response of `t`, once.
pub(super) fn flag_response(t: &mut Transaction, name: &'static str) {
    if let Some(r) = &mut t.response {
        push(&mut r.anomalies, name);
    }
}

fn push(anomalies: &mut Vec<&'static str>, name: &'static str) {
    if !anomalies.contains(&name) {
        anomalies.push(name);
    }
}

/// Reads the server's bytes: response heads and bodies, each response given the request it
/// answers (the oldest waiting, RFC 9112 section 9.3.2). Returns how many bytes were used; the
/// rest (a partial head) stays buffered.
pub(super) fn consume_responses(
    p: &mut RespParts<'_>,
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
            State::Tunnel => match tunnel(&data[at..], false) {
                Some(state) => side.state = state,
                None => return at,
            },
            // The answer to an HTTP/0.9 request has no status line to find.
            State::Sync if answers_simple_request(p) => side.state = State::Head,
            State::Sync => match parser::find_message_start(&data[at..], false) {
                Sync::At(i) => {
                    at += i;
                    side.state = State::Head;
                }
                Sync::Keep(i) => return at + i,
            },
            // Every message that ends a segment comes back here: nothing left to parse.
            State::Head if at >= data.len() => return at,
            State::Head => match response_head(p, &data[at..], &l.head) {
                Status::Partial => return at,
                Status::Error => {
                    st.parse_errors += 1;
                    at += 1;
                    side.state = State::Sync;
                }
                Status::Complete(head, n) => {
                    let start = if at == 0 { side.buf_ns.min(ts) } else { ts };
                    at += n;
                    let status = head.status;
                    if (100..200).contains(&status) && status != 101 {
                        // Interim (100 Continue): the final response follows, and lists what
                        // broke a rule here.
                        for name in not_allowed(&head, false) {
                            push(p.interim_anomalies, name);
                        }
                        continue;
                    }
                    if *p.req_answered {
                        // A second final response while the request answered early still
                        // has body to send: the server has moved on (it answers requests in
                        // order, RFC 9112 section 9.3.2, and no later request can have been
                        // sent inside this one's body), so that request is over, and this
                        // response is not its answer.
                        abandon_answered_request(p.req, p.req_answered, p.early, out);
                    }
                    // The response of a request already reported (`owed`) is reported alone.
                    let owed = p.owed.pop();
                    let next = match owed {
                        Some(_) => None,
                        None => p.pending.pop_front(),
                    };
                    let mut t = match next {
                        Some(t) => t,
                        None if owed.is_some() => Box::new(Transaction {
                            missing: Some(Missing::Request),
                            late: true,
                            ..Default::default()
                        }),
                        None => match p.req.as_ref() {
                            // Answered before the request body ended (an early error): the
                            // request's transaction is this response's, once.
                            Some(r) => {
                                *p.req_answered = true;
                                r.clone()
                            }
                            None => Box::new(Transaction {
                                missing: Some(Missing::Request),
                                ..Default::default()
                            }),
                        },
                    };
                    let asked = owed.unwrap_or_else(|| Asked::of(t.request.as_ref()));
                    let tunnel = asked == Asked::Connect && (200..300).contains(&status);
                    let upgraded = status == 101;
                    let mut head = head;
                    let framing = framing(&mut head, asked, tunnel);
                    for name in p.interim_anomalies.drain(..) {
                        push(&mut head.anomalies, name);
                    }
                    if head.length_invalid && !head.transfer_coded && framing != Framing::None {
                        st.parse_errors += 1;
                    }
                    t.resp_start_ns = start;
                    t.resp_end_ns = ts;
                    t.resp_header_bytes = n as u64;
                    t.resp_body = wants_body(l, head.content_type.as_deref()).then(Vec::new);
                    if l.dns_over_https
                        && head
                            .content_type
                            .as_deref()
                            .is_some_and(doh::is_dns_message)
                    {
                        t.doh.get_or_insert_with(Default::default).response =
                            Some(doh::Body::default());
                    }
                    t.response = Some(head);
                    *p.resp = Some(t);
                    if upgraded {
                        if let Some(t) = p.resp.take() {
                            out.push(t);
                        }
                        side.state = State::Done;
                        *p.client_state = State::Done;
                        return data.len();
                    }
                    if tunnel {
                        // The client's side went to `Tunnel` when its CONNECT ended.
                        if let Some(t) = p.resp.take() {
                            out.push(t);
                        }
                        side.state = State::Tunnel;
                        continue;
                    }
                    side.state = State::Body(Body::new(framing));
                }
            },
            State::Body(b) => {
                if !b.done {
                    if at >= data.len() {
                        return at;
                    }
                    let mut t = p.resp.take();
                    let content_before = b.content_bytes;
                    let r = b.feed(&data[at..], &mut |d| {
                        if let Some(t) = &mut t {
                            keep(&mut t.resp_body, d, l.max_body_bytes);
                            keep_dns(&mut t.doh, true, d);
                        }
                    });
                    *p.resp = t;
                    let used = match r {
                        Ok(u) => u,
                        Err(_) => {
                            // The response ends where its chunked framing broke (RFC 9112
                            // section 7.1), as a request does: reported with its status and
                            // the anomaly, and the next response is looked for after it.
                            st.parse_errors += 1;
                            if let Some(mut t) = p.resp.take() {
                                flag_response(&mut t, anomaly::INVALID_CHUNK);
                                response_ended(t, *p.req_answered, p.req, p.early, out);
                            }
                            side.state = State::Sync;
                            continue;
                        }
                    };
                    at += used;
                    let content = b.content_bytes - content_before;
                    if let Some(t) = p.resp.as_mut() {
                        t.resp_body_bytes += content;
                        t.resp_framing_bytes += used as u64 - content;
                        t.resp_end_ns = ts;
                    }
                    if !b.done {
                        return at;
                    }
                }
                side.state = State::Head;
                if let Some(t) = p.resp.take() {
                    response_ended(t, *p.req_answered, p.req, p.early, out);
                }
            }
        }
    }
}

/// A response head, or the absence of one: the answer to an HTTP/0.9 request is its body
/// alone, read until the server closes, unless the server answers with a status line anyway.
fn response_head(p: &RespParts<'_>, data: &[u8], opts: &HeadOptions<'_>) -> Status<ResponseHead> {
    if answers_simple_request(p) && !data.starts_with(b"HTTP/") {
        if b"HTTP/".starts_with(data) {
            return Status::Partial;
        }
        let head = ResponseHead {
            version: Version::V09,
            close: true,
            ..Default::default()
        };
        return Status::Complete(head, 0);
    }
    parser::parse_response(data, opts)
}

/// Whether the next response answers an HTTP/0.9 request.
fn answers_simple_request(p: &RespParts<'_>) -> bool {
    let asked = p.owed.front().unwrap_or_else(|| {
        let next = p.pending.front().or(p.req.as_ref());
        Asked::of(next.and_then(|t| t.request.as_ref()))
    });
    asked == Asked::Simple
}
