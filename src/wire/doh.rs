//! DNS over HTTPS seen in the clear (RFC 8484): the DNS message of a GET's `dns` query parameter
//! (base64url) or of an `application/dns-message` body, and of the response's body, decoded by
//! the DNS analyzer's own message parser and reported as a `dns` event beside the HTTP one.

use super::analyzer::{self, Conn, Record, Transaction};
use super::dns::{message, DnsTx, Seen};
use super::out::Fields;
use base64::Engine as _;

/// A DNS message is at most 65,535 bytes (RFC 8484 §6 carries it whole; its length fits the
/// 16-bit field of DNS over TCP): a longer body is not one, and is not kept past that.
pub const MAX_MESSAGE: usize = 65_535;

/// Whether a `Content-Type` names RFC 8484's media type (parameters and case aside).
pub fn is_dns_message(content_type: &str) -> bool {
    const TYPE: &str = "application/dns-message";
    // Asked of every response (and request) with a type: one shorter than the name is told
    // apart by its length, before any search.
    if content_type.len() < TYPE.len() {
        return false;
    }
    let end = memchr::memchr(b';', content_type.as_bytes()).unwrap_or(content_type.len());
    end >= TYPE.len()
        && content_type
            .get(..end)
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(TYPE))
}

/// The DNS message a GET carries in its `dns` query parameter (RFC 8484 §4.1: base64url,
/// padding left out, though a padded one is read too).
pub fn query_parameter(target: &str) -> Option<Vec<u8>> {
    let value = dns_parameter(target)?.trim_end_matches('=');
    // A percent-encoded padding sign is padding too; base64url has no other escapes.
    let value = value.trim_end_matches("%3D").trim_end_matches("%3d");
    if value.is_empty() || value.len() > MAX_MESSAGE * 4 / 3 + 4 {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()
}

/// The value of the first `dns` parameter of `target`'s query. Every GET is asked and nearly
/// none has one: the target's `=` signs are found eight bytes at a time, and only one after
/// `dns` (a `memchr` call cost more than the whole look on a short target) is looked at.
fn dns_parameter(target: &str) -> Option<&str> {
    let b = target.as_bytes();
    let mut from = 0;
    while let Some(eq) = next_equals(b, from) {
        from = eq + 1;
        // The parameter starts the query (right after its first `?`) or follows a `&` in
        // it; its `=` is then the first after its start, so the first such `=` is the
        // first `dns` parameter's.
        if eq < 4 || &b[eq - 3..eq] != b"dns" || !matches!(b[eq - 4], b'?' | b'&') {
            continue;
        }
        let start = eq - 3;
        let query = memchr::memchr(b'?', b)? + 1;
        if start == query || (start > query && b[eq - 4] == b'&') {
            let end = memchr::memchr(b'&', &b[from..]).map_or(b.len(), |n| from + n);
            return target.get(from..end);
        }
    }
    None
}

/// The first `=` in `b` at or after `from`.
fn next_equals(b: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    while from + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[from..from + 8]);
        let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b'='));
        // The lowest byte flagged is a zero byte (borrows only flag bytes above one).
        let zero = x.wrapping_sub(ONES) & !x & (ONES << 7);
        if zero != 0 {
            return Some(from + zero.trailing_zeros() as usize / 8);
        }
        from += 8;
    }
    b.get(from..)?
        .iter()
        .position(|&c| c == b'=')
        .map(|i| from + i)
}

/// One direction's DNS message as it arrives: the bytes kept, and whether more came than a DNS
/// message can hold (then it is not one).
#[derive(Debug, Clone, Default)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub oversize: bool,
}

impl Body {
    pub fn whole(bytes: Vec<u8>) -> Body {
        Body {
            oversize: bytes.len() > MAX_MESSAGE,
            bytes,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        let room = MAX_MESSAGE.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.oversize = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// The query and response messages of one HTTP exchange that carried DNS, with their capture
/// times (first and last byte).
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub query: Option<Body>,
    pub response: Option<Body>,
}

impl Exchange {
    /// The DNS transaction, when one of the two is a DNS message: paired when both are (the
    /// HTTP exchange pairs them, RFC 8484 §4.1 lets the DNS id be 0), else alone. A body that
    /// does not decode is left out.
    pub fn transaction(&self, query_ns: (i64, i64), response_ns: (i64, i64)) -> Option<DnsTx> {
        let seen = |b: &Option<Body>, (start_ns, end_ns): (i64, i64), response: bool| {
            let b = b.as_ref().filter(|b| !b.oversize && !b.bytes.is_empty())?;
            let msg = message::parse(&b.bytes).ok()?;
            // A URL's `dns` parameter may be something else: a query has its question.
            let plausible = msg.is_response() == response
                && msg.damaged.is_none()
                && (response || msg.question.is_some());
            plausible.then_some(Seen {
                msg,
                start_ns,
                end_ns,
                bytes: b.bytes.len() as u64,
            })
        };
        match (
            seen(&self.query, query_ns, false),
            seen(&self.response, response_ns, true),
        ) {
            (Some(q), Some(r)) => Some(DnsTx::answered(q, r, false)),
            (Some(q), None) => Some(DnsTx::unanswered(q, false)),
            (None, Some(r)) => Some(DnsTx::unasked(r)),
            (None, None) => None,
        }
    }
}

/// A DNS transaction carried over HTTP: the DNS analyzer's event, tagged `dns_over_https`.
pub struct Carried(pub DnsTx);

impl Transaction for Carried {
    fn record(&self) -> Record<'_> {
        self.0.record()
    }
    fn write_fields<F: Fields>(&self, f: &mut F) {
        self.0.write_fields(f)
    }
    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        let r = self.record();
        analyzer::write_common(conn, &r, f);
        self.write_fields(f);
        if r.gap {
            f.strs("tags", &["dns_over_https", "tcp_gap"]);
        } else {
            f.strs("tags", &["dns_over_https"]);
        }
    }
    /// The HTTP transaction that carried it is counted in the RED metrics and the service map;
    /// counting the DNS inside it too would make one request two.
    fn observe(&self, _: &Conn, _: &super::http::metrics::ServiceMap) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8484 §4.1.1's example: a query for www.example.com, type A, id 0, as a GET.
    const RFC_GET: &str = "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB";

    #[test]
    fn the_rfc_example_get_decodes_to_its_query() {
        let bytes = query_parameter(RFC_GET).expect("a dns parameter");
        let m = message::parse(&bytes).expect("a DNS message");
        assert_eq!(m.id, 0);
        assert!(!m.is_response());
        assert_eq!(m.question, Some(("www.example.com".to_string(), 1, 1)));
        // Among other parameters, or padded: the same message.
        let among = "/q?ct=x&dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB&x=1";
        assert_eq!(query_parameter(among).as_ref(), Some(&bytes));
        let padded = "/q?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB%3D%3D";
        assert_eq!(query_parameter(padded), Some(bytes));
    }

    #[test]
    fn media_types_and_bad_parameters() {
        assert!(is_dns_message("application/dns-message"));
        assert!(is_dns_message("Application/DNS-Message; charset=x"));
        assert!(!is_dns_message("application/dns-json"));
        assert_eq!(query_parameter("/dns-query"), None);
        assert_eq!(query_parameter("/dns-query?dns="), None);
        assert_eq!(query_parameter("/dns-query?dns=***"), None);
        assert_eq!(query_parameter("/dns-query?name=example.com"), None);
    }

    /// The parameter found by its `=` sign is the one RFC 8484 names: the first of the
    /// query's `&`-separated parameters that starts with `dns=`.
    /// RFC 8484 §4.1's parameter, as the query's `&`-separated parameters say it.
    fn by_split(t: &str) -> Option<&str> {
        let (_, query) = t.split_once('?')?;
        query.split('&').find_map(|p| p.strip_prefix("dns="))
    }

    proptest::proptest! {
        /// Targets made of the characters that matter (and one that is not ASCII), up to 40
        /// long: five words of the eight-byte search and its tail.
        #[test]
        fn any_target_gives_the_first_dns_parameter(t in "[dns=&?a/é]{0,40}") {
            proptest::prop_assert_eq!(dns_parameter(&t), by_split(&t));
        }
    }

    #[test]
    fn the_dns_parameter_is_the_first_named_dns() {
        for t in [
            "/q?dns=abc",
            "/q?dns=",
            "/q?dns",
            "/q?xdns=1&dns=2",
            "/q?a=dns=1&dns=2&dns=3",
            "/q?dns==x&y",
            "/q?&dns=a",
            "/q?=dns=a",
            "/dns=a?b=1",
            "/q?a=1&b=2",
            "/q?a=1?dns=2",
            "/q?a=1&?dns=2",
            "/q?ns=1&dn=2&dns",
            "dns=",
            "?dns=1",
            "/q",
            "/q?",
            "/q?é=1&dns=é",
            "/a?dns=1?dns=2",
            "/a?b?dns=1&dns=2",
            "/&dns=x?dns=y",
            "/dns=x?a=1",
            "/api/users/12345?v=3",
            "/api/users/12345?v=3&dns=AAAB&w=1",
            "/a/b/c/d/e/f/g/h?dns=x",
            "/abcdefg?dns=x",
            "/abcdef?dns=x",
            "/abcdefgh?&dns=x",
            "/abcdefghijklmno?a=1&b=2&c=3&dns=4&dns=5",
            "/abcdefghijklmno=?a==1&bdns=2&c=dns&&dns=",
        ] {
            assert_eq!(dns_parameter(t), by_split(t), "{t}");
        }
    }

    #[test]
    fn a_body_longer_than_a_dns_message_is_not_one() {
        let mut b = Body::default();
        b.feed(&vec![0; MAX_MESSAGE]);
        assert!(!b.oversize);
        b.feed(&[0]);
        assert!(b.oversize);
        assert_eq!(b.bytes.len(), MAX_MESSAGE);
        let x = Exchange {
            query: Some(b),
            response: None,
        };
        assert!(x.transaction((0, 0), (0, 0)).is_none());
    }
}
