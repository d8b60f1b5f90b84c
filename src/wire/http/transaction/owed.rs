//! Responses still due to requests already reported without one (pushed out of a full queue,
//! or past `transaction_timeout`). A server answers in order (RFC 9112 section 9.3.2), so the
//! next responses are theirs; what each request asked decides how its response is read.

use super::super::parser::{RequestHead, Version};
use std::collections::VecDeque;

/// What a request asked, as far as reading its response goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    Plain,
    /// The response to HEAD has no body, whatever its Content-Length says.
    Head,
    /// A 2xx to CONNECT opens a tunnel.
    Connect,
    /// HTTP/0.9: the response has no head.
    Simple,
}

impl Asked {
    pub(super) fn of(request: Option<&RequestHead>) -> Asked {
        match request {
            Some(r) if r.version == Version::V09 => Asked::Simple,
            Some(r) if r.method == "HEAD" => Asked::Head,
            Some(r) if r.method == "CONNECT" => Asked::Connect,
            _ => Asked::Plain,
        }
    }
}

/// Most owed requests remembered by what they asked: a connection whose server is never seen
/// (a capture of the client's side) would otherwise hold one per request. Past it, the rest
/// are read as `Plain`.
const MAX_KNOWN: usize = 256;

/// The owed responses, oldest first: `known` then `unknown` more.
#[derive(Debug, Default)]
pub(super) struct Owed {
    known: VecDeque<Asked>,
    unknown: u64,
}

impl Owed {
    pub(super) fn push(&mut self, asked: Asked) {
        if self.unknown == 0 && self.known.len() < MAX_KNOWN {
            self.known.push_back(asked);
        } else {
            self.unknown += 1;
        }
    }

    /// The oldest owed response's request, taken: `None` when nothing is owed.
    pub(super) fn pop(&mut self) -> Option<Asked> {
        if let Some(a) = self.known.pop_front() {
            return Some(a);
        }
        if self.unknown > 0 {
            self.unknown -= 1;
            return Some(Asked::Plain);
        }
        None
    }

    pub(super) fn front(&self) -> Option<Asked> {
        match self.known.front() {
            Some(a) => Some(*a),
            None => (self.unknown > 0).then_some(Asked::Plain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_requests_come_back_in_order_and_past_the_bound_as_plain() {
        let mut o = Owed::default();
        assert_eq!(o.pop(), None);
        for i in 0..MAX_KNOWN + 3 {
            o.push(if i % 2 == 0 {
                Asked::Head
            } else {
                Asked::Connect
            });
        }
        // Taken from the front, one more pushed: it lines up behind the unknown ones.
        assert_eq!(o.pop(), Some(Asked::Head));
        o.push(Asked::Simple);
        for i in 1..MAX_KNOWN {
            let want = if i % 2 == 0 {
                Asked::Head
            } else {
                Asked::Connect
            };
            assert_eq!(o.front(), Some(want));
            assert_eq!(o.pop(), Some(want));
        }
        for _ in 0..4 {
            assert_eq!(o.pop(), Some(Asked::Plain));
        }
        assert_eq!(o.pop(), None);
        assert_eq!(o.front(), None);
    }
}
