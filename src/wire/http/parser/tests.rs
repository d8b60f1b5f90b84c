//! Tests of the head parsers, body framing and message-start search, from RFC 9112.

use super::body::MAX_LINE;
use super::*;
use proptest::prelude::*;

#[test]
fn content_length_is_digits_between_white_space() {
    assert_eq!(parse_length(b"0"), Some(0));
    assert_eq!(parse_length(b" 1234\t"), Some(1234));
    assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"  ",
        b"12a",
        b"1 2",
        b"-1",
        b"+1",
        b"18446744073709551616",
    ] {
        assert_eq!(
            parse_length(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

const OPTS: HeadOptions<'static> = HeadOptions {
    keep_headers: false,
    real_ip_header: Some("x-forwarded-for"),
};

#[test]
fn request_head_fields() {
    let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: curl/8\r\nContent-Length: 5\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.1\r\nExpect: 100-continue\r\n\r\nhello";
    match parse_request(raw, &OPTS) {
        Status::Complete(h, n) => {
            assert_eq!(&raw[n..], b"hello");
            assert_eq!(
                (h.method.as_str(), h.target.as_str(), h.version),
                ("POST", "/a?b=1", Version::V11)
            );
            assert_eq!(h.host.as_deref(), Some("Example.COM:8080"));
            assert_eq!(h.content_length, Some(5));
            assert_eq!(h.real_ip.as_deref(), Some("1.2.3.4"));
            assert!(h.expect_continue);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", &OPTS),
        Status::Partial
    );
    assert_eq!(
        parse_request(b"\x00\x01garbage\r\n\r\n", &OPTS),
        Status::Error
    );
}

/// Request lines RFC 9112 rejects but that are still requests on the wire: the version is the
/// last word when it starts with `HTTP/`, whatever precedes it (no target, a target with
/// spaces, a cut version), and the header section after it is read, its broken lines left out.
#[test]
fn lenient_request_lines_keep_version_and_headers() {
    // (request, method, target, version, Host, anomalies)
    type Case<'a> = (
        &'a [u8],
        &'a str,
        &'a str,
        Version,
        Option<&'a str>,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            b"OPTIONS  HTTP/1.1\nHost: www.example.com\n\n",
            "OPTIONS",
            "",
            Version::V11,
            Some("www.example.com"),
            &["missing_target"],
        ),
        (
            b"GET HTTP/1.1\r\nHost: example.org\r\n\r\n",
            "GET",
            "",
            Version::V11,
            Some("example.org"),
            &["missing_target"],
        ),
        (
            b"GET / HTTP/1.\nHost: www.example.com\n\n",
            "GET",
            "/",
            Version::V11,
            Some("www.example.com"),
            &["invalid_version"],
        ),
        (
            b"CONNECT mail.example.net:25 / HTTP/1.0\r\nMozilla 4.0 (compatible)\r\nHost: proxy\r\n\r\n",
            "CONNECT",
            "mail.example.net:25 /",
            Version::V10,
            Some("proxy"),
            &["space_in_target", "invalid_request"],
        ),
        // No version word: an HTTP/0.9 simple request, whose target may end in "HTTP/1.1".
        (b"GET /HTTP/1.1\r\n", "GET", "/HTTP/1.1", Version::V09, None, &[]),
        // Header lines sent after a version-less request line anyway are read; a simple
        // request has none (RFC 1945 4.1), so the line lost its version.
        (
            b"GET /\nFakeHeader\nHost: localhost\nUser-Agent: myscript\n\n",
            "GET",
            "/",
            Version::V09,
            Some("localhost"),
            &["missing_version"],
        ),
        (
            b"GET /HTTP/1.1\nHost: www.example.com\n\n",
            "GET",
            "/HTTP/1.1",
            Version::V09,
            Some("www.example.com"),
            &["missing_version"],
        ),
    ];
    for (raw, method, target, version, host, anomalies) in cases {
        match parse_request(raw, &OPTS) {
            Status::Complete(h, n) => {
                let name = String::from_utf8_lossy(raw);
                assert_eq!(n, raw.len(), "{name}");
                assert_eq!(
                    (h.method.as_str(), h.target.as_str(), h.version),
                    (*method, *target, *version),
                    "{name}"
                );
                assert_eq!(h.host.as_deref(), *host, "{name}");
                assert_eq!(h.anomalies, *anomalies, "{name}");
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }
    // A header section still arriving is waited for, even after a broken line.
    assert_eq!(
        parse_request(b"GET / HTTP/1.0\r\nbroken line\r\nHost: x\r\n", &OPTS),
        Status::Partial
    );
}

/// A method outside the registry is still a method (RFC 9110 section 9.1: any token), and a
/// request line without a version is still a request line when a well-formed header section
/// follows it (`CCM_POST /HTTP/1.1`, answered `400` by the server): reported with both
/// anomalies. Without such a section a version-less line of an unknown word is not taken for
/// a request: other protocols' commands (SMTP, POP3) look like that.
#[test]
fn unknown_method_without_version_is_a_request_when_headers_follow() {
    match parse_request(b"CCM_POST /HTTP/1.1\r\nHost: www.google.com\r\n\r\n", &OPTS) {
        Status::Complete(h, n) => {
            assert_eq!(n, 44);
            assert_eq!(
                (h.method.as_str(), h.target.as_str(), h.version),
                ("CCM_POST", "/HTTP/1.1", Version::V09)
            );
            assert_eq!(h.host.as_deref(), Some("www.google.com"));
            assert_eq!(h.anomalies, ["missing_version", "unknown_method"]);
        }
        other => panic!("{other:?}"),
    }
    // Bare LF line ends (RFC 9112 section 2.2 lets a recipient accept them), as sent.
    match parse_request(b"CCM_POST /HTTP/1.1\nHost: www.google.com\n\n", &OPTS) {
        Status::Complete(h, n) => {
            assert_eq!(n, 41);
            assert_eq!((h.method.as_str(), h.version), ("CCM_POST", Version::V09));
            assert_eq!(h.host.as_deref(), Some("www.google.com"));
        }
        other => panic!("{other:?}"),
    }
    // The header section still arriving is waited for.
    assert_eq!(
        parse_request(b"CCM_POST /x\r\nHost: a\r\n", &OPTS),
        Status::Partial
    );
    for not_http in [
        &b"EHLO mail.example.com\r\nMAIL FROM:<a@example.com>\r\n\r\n"[..],
        b"USER bob\r\nPASS secret\r\n\r\n",
        b"FOO bar\r\n\r\n",
    ] {
        assert_eq!(
            parse_request(not_http, &OPTS),
            Status::Error,
            "{}",
            String::from_utf8_lossy(not_http)
        );
    }
}

#[test]
fn chunked_body_across_pieces() {
    let wire =
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for split in 1..wire.len() {
        let mut b = Body::new(Framing::Chunked);
        let mut content = Vec::new();
        let used1 = b
            .feed(&wire[..split], &mut |d| content.extend_from_slice(d))
            .unwrap();
        assert_eq!(used1, split.min(wire.len() - 4));
        let used2 = b
            .feed(&wire[split..], &mut |d| content.extend_from_slice(d))
            .unwrap();
        assert!(b.done);
        assert_eq!(
            used1 + used2,
            wire.len() - 4,
            "stops before the next message"
        );
        assert_eq!(content, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(b.wire_bytes as usize, wire.len() - 4);
        assert_eq!(b.content_bytes as usize, content.len());
    }
}

/// A chunk size is what `u64::from_str_radix` makes of the trimmed text (RFC 9112 §7.1:
/// `1*HEXDIG`; the sign and white space it also takes were always read): the digit loop
/// gives the same for every line, overflow and bad bytes included.
#[test]
fn chunk_sizes_read_as_from_str_radix_reads_them() {
    let reference = |hex: &[u8]| {
        std::str::from_utf8(hex)
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
    };
    for hex in [
        &b""[..],
        b"0",
        b"1a",
        b"FFFFFFFFFFFFFFF",
        b"FFFFFFFFFFFFFFFF",
        b"10000000000000000",
        b"000000000000000001",
        b"+1a",
        b"-1",
        b" 1a ",
        b"1 a",
        b"g",
        b"1A2b3C",
        b"\xc2\xa01",
        b"\xff",
    ] {
        assert_eq!(super::body::chunk_size(hex), reference(hex), "{hex:?}");
    }
}

#[test]
fn length_body_and_gaps() {
    let mut b = Body::new(Framing::Length(10));
    assert_eq!(b.feed(b"abc", &mut |_| {}), Ok(3));
    assert!(b.skip(4));
    assert_eq!(b.feed(b"defXYZ", &mut |_| {}), Ok(3));
    assert!(b.done);
    let mut b = Body::new(Framing::Length(2));
    assert!(!b.skip(3), "a gap longer than the body needs a resync");
}

#[test]
fn cut_request_lines_still_name_method_and_url() {
    let h = partial_request_line(b"GET /x?y").unwrap();
    assert_eq!((h.method.as_str(), h.target.as_str()), ("GET", "/x?y"));
    assert!(partial_request_line(b"GE").is_none());
    assert!(partial_request_line(b"\x16\x03\x01").is_none());
}

#[test]
fn finds_next_message_after_garbage() {
    assert_eq!(
        find_message_start(b"xx\r\nGET / HTTP/1.1", true),
        Sync::At(4)
    );
    assert_eq!(find_message_start(b"junk\nGE", true), Sync::Keep(5));
    assert_eq!(
        find_message_start(b"body\nHTTP/1.1 200", false),
        Sync::At(5)
    );
    assert_eq!(find_message_start(b"no start here", false), Sync::Keep(13));
    // An unregistered method starts a message when the line ends in a version word, even a
    // cut one, or when a header section follows a version-less line (as the request parser
    // takes it); a version-less line of another protocol (SMTP) is not a request line.
    assert_eq!(
        find_message_start(b"x\nCCM_POST / HTTP/1.\nHost: h\n\n", true),
        Sync::At(2)
    );
    assert_eq!(
        find_message_start(b"x\nCCM_POST /\nHost: h\n\n", true),
        Sync::At(2)
    );
    assert_eq!(
        find_message_start(b"x\nEHLO host\r\nMAIL FROM:<a@b>\r\n\r\n", true),
        Sync::Keep(32)
    );
}

proptest! {
    #[test]
    fn heads_and_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), chunked in any::<bool>()) {
        let _ = parse_request(&data, &OPTS);
        let _ = parse_response(&data, &HeadOptions { keep_headers: true, real_ip_header: None });
        let _ = find_message_start(&data, true);
        let _ = find_message_start(&data, false);
        let mut b = Body::new(if chunked { Framing::Chunked } else { Framing::Length(100) });
        let mut seen = 0usize;
        for piece in data.chunks(7) {
            match b.feed(piece, &mut |d| seen += d.len()) {
                Ok(n) => prop_assert!(n <= piece.len()),
                Err(_) => break,
            }
            prop_assert!(b.line.len() <= MAX_LINE);
        }
        prop_assert!(seen <= data.len());
    }
}

/// Header names compared word by word give what a case-insensitive comparison gives: each
/// name the parsers look for, against itself in mixed case, against its neighbours in the
/// byte table (`@`, `[`, `` ` ``, `{`, `\r` for `-`...) at every place, and against any string.
#[test]
fn header_names_match_in_any_case_and_nothing_else() {
    let names = [
        "host",
        "user-agent",
        "content-length",
        "transfer-encoding",
        "expect",
        "content-type",
        "connection",
    ];
    for lower in names {
        assert!(name_is(lower, lower));
        assert!(name_is(&lower.to_ascii_uppercase(), lower));
        for at in 0..lower.len() {
            for b in 0..=127u8 {
                let mut n = lower.as_bytes().to_vec();
                n[at] = b;
                let n = String::from_utf8(n).unwrap();
                assert_eq!(
                    name_is(&n, lower),
                    n.eq_ignore_ascii_case(lower),
                    "{n:?} {lower}"
                );
            }
            let mut n = lower.to_string();
            n.replace_range(at..at + 1, "é");
            assert!(!name_is(&n, lower), "{n:?}");
        }
    }
}

proptest! {
    #[test]
    fn header_names_compare_as_case_insensitive_text(n in "[A-Za-z\\-\r@\\[`{é]{0,20}") {
        for lower in ["user-agent", "content-length", "transfer-encoding", "content-type", "connection"] {
            prop_assert_eq!(name_is(&n, lower), n.eq_ignore_ascii_case(lower));
        }
    }
}

/// A string written in place is the string, at every length either side of the inline
/// capacity and with multi-byte characters, and stays a working string (grown, compared).
#[test]
fn strings_made_in_place_are_the_strings() {
    let text = "GET /api/orders/29257/items?v=7 ηλ bench/1.0 Mozilla/5.0 (X11; Linux)";
    let mut made = 0;
    for start in 0..6 {
        for end in start..=text.len() {
            let Some(s) = text.get(start..end) else {
                continue;
            };
            let c = compact(s);
            assert_eq!(c.as_str(), s);
            assert_eq!(c, CompactString::from(s));
            let mut grown = c.clone();
            grown.push_str("-and-more-than-twenty-four-bytes");
            assert_eq!(grown, format!("{s}-and-more-than-twenty-four-bytes"));
            made += 1;
        }
    }
    assert!(made > 300, "{made}");
}
