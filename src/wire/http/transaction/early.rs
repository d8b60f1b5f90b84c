//! A final response that comes before its request's body has all come (an early 401, 413 or
//! 417): the transaction waits for that body, and the request is answered once, however many
//! responses follow while its body is still due.

use super::{anomaly, Finished, Transaction};

/// The request `from`, whose body went on after its response began, gives the transaction
/// holding that response (`into`, a copy of its head) the body as it ended.
pub(super) fn take_request_body(into: &mut Transaction, from: Box<Transaction>) {
    request_body_so_far(into, &from);
    into.gap |= from.gap;
    into.req_body = from.req_body;
    if let (Some(to), Some(from)) = (&mut into.doh, from.doh) {
        to.query = from.query;
    }
}

/// The size and end of the request body `from` has read so far, for the transaction holding
/// its response.
pub(super) fn request_body_so_far(into: &mut Transaction, from: &Transaction) {
    into.req_body_bytes = from.req_body_bytes;
    into.req_framing_bytes = from.req_framing_bytes;
    into.req_end_ns = from.req_end_ns;
}

/// The request answered early (`answered`) has ended, whole or not: the held transaction gets
/// its body and is reported; a response still being read gets it and is reported when it ends.
pub(super) fn answered_request_ended(
    t: Box<Transaction>,
    early: &mut Option<Box<Transaction>>,
    resp: &mut Option<Box<Transaction>>,
    out: &mut Finished,
) {
    if let Some(mut e) = early.take() {
        take_request_body(&mut e, t);
        out.push(e);
    } else if let Some(r) = resp {
        take_request_body(r, t);
    }
}

/// Flags the request of `t` as sent with less body than its head announced.
pub(super) fn body_incomplete(t: &mut Transaction) {
    flag(t, anomaly::BODY_INCOMPLETE);
}

pub(super) fn flag(t: &mut Transaction, name: &'static str) {
    if let Some(r) = &mut t.request {
        if !r.anomalies.contains(&name) {
            r.anomalies.push(name);
        }
    }
}

/// The request answered early will not be waited for any longer (its upload stalled past the
/// timeout, or the server sent another response): its held transaction is reported with the
/// body that came, flagged incomplete, and the request is forgotten, so that no later response
/// is taken for its answer. The client's side stays in the body its head announced: what more
/// of it comes is skipped, not read as requests (an upload goes on after a 413 as often as it
/// stops, and its bytes may be anything, a request included; a client that gave the body up
/// and sent requests instead has them lost until the announced length is reached, which the
/// `request_missing` transactions of their responses show).
pub(super) fn abandon_answered_request(
    req: &mut Option<Box<Transaction>>,
    answered: &mut bool,
    early: &mut Option<Box<Transaction>>,
    out: &mut Finished,
) {
    *answered = false;
    let Some(r) = req.take() else {
        return;
    };
    if let Some(mut e) = early.take() {
        take_request_body(&mut e, r);
        body_incomplete(&mut e);
        out.push(e);
    }
}

/// A response has ended: reported, unless it answers the request still being read, whose
/// body it waits for (`Conn::early`).
pub(super) fn response_ended(
    t: Box<Transaction>,
    req_answered: bool,
    req: &Option<Box<Transaction>>,
    early: &mut Option<Box<Transaction>>,
    out: &mut Finished,
) {
    if req_answered && req.is_some() && early.is_none() {
        *early = Some(t);
    } else {
        out.push(t);
    }
}
