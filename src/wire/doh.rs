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
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/dns-message"))
}

/// The DNS message a GET carries in its `dns` query parameter (RFC 8484 §4.1: base64url,
/// padding left out, though a padded one is read too).
pub fn query_parameter(target: &str) -> Option<Vec<u8>> {
    let (_, query) = target.split_once('?')?;
    let value = query
        .split('&')
        .find_map(|p| p.strip_prefix("dns="))?
        .trim_end_matches('=');
    // A percent-encoded padding sign is padding too; base64url has no other escapes.
    let value = value.trim_end_matches("%3D").trim_end_matches("%3d");
    if value.is_empty() || value.len() > MAX_MESSAGE * 4 / 3 + 4 {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()
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
