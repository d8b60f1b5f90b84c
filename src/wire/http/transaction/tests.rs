//! Tests of one connection's transactions: pipelining, interim responses, gaps, CONNECT
//! tunnels, HTTP/0.9, malformed request lines and bare LF, from RFC 9110/9112.

use super::*;
use crate::wire::http::parser::Version;
use proptest::prelude::*;

fn limits() -> Limits<'static> {
    Limits {
        head: HeadOptions {
            keep_headers: true,
            real_ip_header: Some("x-forwarded-for"),
        },
        include_body_for: &[],
        max_body_bytes: 0,
        max_head_bytes: 8192,
        max_pending: 8,
        dns_over_https: true,
    }
}

fn run(client: &[&[u8]], server: &[&[u8]]) -> Finished {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    for (i, d) in client.iter().enumerate() {
        c.client_data(d, i as i64, &l, &mut st, &mut out);
    }
    for (i, d) in server.iter().enumerate() {
        c.server_data(d, 100 + i as i64, &l, &mut st, &mut out);
    }
    c.close(1000, &mut out);
    out
}

fn summary(t: &Transaction) -> String {
    format!(
        "{} {} -> {} {:?}",
        t.request.as_ref().map(|r| r.method.as_str()).unwrap_or("-"),
        t.request.as_ref().map(|r| r.target.as_str()).unwrap_or("-"),
        t.response.as_ref().map(|r| r.status).unwrap_or(0),
        t.missing
    )
}

#[test]
fn pipelined_requests_match_in_order_with_interim_and_bodiless_responses() {
    let out = run(
        &[b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", b"xyz", b"GET /d HTTP/1.1\r\n\r\nGET /e HTTP/1.1\r\n\r\n"],
        &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "GET /a -> 200 None",
            "HEAD /b -> 200 None",
            "POST /c -> 201 None",
            "GET /d -> 304 None",
            "GET /e -> 0 Some(Response)"
        ]
    );
    assert_eq!(out[2].req_body_bytes, 3);
    // `2\r\nhi\r\n0\r\n\r\n`: the body is `hi`, the rest is chunk framing.
    assert_eq!(out[2].resp_body_bytes, 2);
    assert_eq!(out[2].resp_framing_bytes, 10);
}

#[test]
fn connect_tunnel_carrying_http_is_followed_and_tls_is_left_alone() {
    // Plain HTTP through the tunnel.
    let out = run(
        &[
            b"CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
            b"GET /inside HTTP/1.1\r\nHost: example.com\r\n\r\n",
        ],
        &[
            b"HTTP/1.1 200 Connection Established\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "CONNECT example.com:80 -> 200 None",
            "GET /inside -> 404 None"
        ]
    );
    // A line end too many after the CONNECT's answer (and after the request inside): empty
    // lines before a message are ignored (RFC 9112 section 2.2), the tunnel is still HTTP.
    let out = run(
        &[
            b"CONNECT abc:443 HTTP/1.1\r\nUser-Agent: v/1\r\n\r\n\n",
            b"GET / HTTP/1.1\r\nUser-Agent: v/1\r\n\r\n\n",
        ],
        &[
            b"HTTP/1.1 200 OK\r\nServer: s/1\r\n\r\n\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["CONNECT abc:443 -> 200 None", "GET / -> 200 None"]);
    // TLS through the tunnel: the CONNECT only, and no parse error.
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"CONNECT example.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00\x01",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03\x00\x7a\x02",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(
        b"\x17\x03\x03GET / HTTP/1.1\r\n\r\n",
        2,
        &l,
        &mut st,
        &mut out,
    );
    c.close(3, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["CONNECT example.com:443 -> 200 None"]);
    assert_eq!(st.parse_errors, 0);
    // A refused CONNECT has a body and the connection goes on with HTTP.
    let out = run(
        &[
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET /next HTTP/1.1\r\n\r\n",
        ],
        &[
            b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 4\r\n\r\ndeny",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec!["CONNECT a:443 -> 407 None", "GET /next -> 200 None"]
    );
}

#[test]
fn http09_simple_request_and_response_until_close() {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(b"GET /old.html\r\n", 0, &l, &mut st, &mut out);
    c.server_data(b"<html>old", 1, &l, &mut st, &mut out);
    c.server_data(b"</html>\n", 2, &l, &mut st, &mut out);
    c.server_closed(&mut out);
    c.close(3, &mut out);
    assert_eq!(out.len(), 1);
    let t = &out[0];
    assert_eq!(summary(t), "GET /old.html -> 0 None");
    assert_eq!(t.request.as_ref().unwrap().version, Version::V09);
    assert!(t.request.as_ref().unwrap().anomalies.is_empty());
    assert_eq!(t.response.as_ref().unwrap().version, Version::V09);
    assert_eq!((t.resp_header_bytes, t.resp_body_bytes), (0, 17));
    // A server that answers a 0.9 request with a status line anyway.
    let out = run(
        &[b"GET /\n"],
        &[b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"],
    );
    assert_eq!(summary(&out[0]), "GET / -> 400 None");
}

#[test]
fn malformed_request_lines_are_transactions_with_their_anomalies() {
    let out = run(
        &[
            b"FOO /x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /nover\r\n",
        ],
        &[
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "FOO /x -> 405 None",
            "GET /a b -> 400 None",
            "POST /nover -> 400 None"
        ]
    );
    let anomalies: Vec<&[&str]> = out
        .iter()
        .map(|t| t.request.as_ref().unwrap().anomalies.as_slice())
        .collect();
    assert_eq!(
        anomalies,
        vec![
            &["unknown_method"][..],
            &["space_in_target"],
            &["missing_version"]
        ]
    );
}

/// A connection that opens with a method outside the registry and no version, then a header
/// section (a scanner's `CCM_POST /HTTP/1.1`, bare LF ends): one transaction, flagged, paired
/// with the server's answer, not a response without its request.
#[test]
fn unknown_method_without_version_opening_a_connection_is_a_transaction() {
    let out = run(
        &[b"CCM_POST /HTTP/1.1\nHost: www.google.com\n\n"],
        &[b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["CCM_POST /HTTP/1.1 -> 400 None"]);
    assert_eq!(
        out[0].request.as_ref().unwrap().anomalies,
        ["missing_version", "unknown_method"]
    );
}

#[test]
fn bare_lf_line_ends() {
    let out = run(
        &[b"POST /lf HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\nGET /2 HTTP/1.1\n\n"],
        &[b"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 204 No Content\n\n"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /lf -> 200 None", "GET /2 -> 204 None"]);
    assert_eq!(out[0].req_body_bytes, 3);
    assert_eq!(out[0].resp_body_bytes, 2);
    assert!(out
        .iter()
        .all(|t| t.request.as_ref().unwrap().anomalies.is_empty()));
}

#[test]
fn read_until_close_and_response_without_request() {
    let out = run(&[], &[b"HTTP/1.0 200 OK\r\n\r\nsome body", b" until close"]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].missing, Some(Missing::Request));
    assert_eq!(out[0].resp_body_bytes, 21);
}

#[test]
fn a_gap_in_a_body_is_absorbed_and_a_gap_in_a_head_resyncs() {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.server_gap(5, &mut st, &mut out);
    c.server_data(b"cde", 2, &l, &mut st, &mut out);
    c.server_data(b"HTTP/1.1 404 X\r\nCont", 3, &l, &mut st, &mut out);
    c.server_gap(7, &mut st, &mut out);
    c.server_data(b"garbage\r\nmore\r\n", 4, &l, &mut st, &mut out);
    c.client_data(b"GET /3 HTTP/1.1\r\n\r\n", 5, &l, &mut st, &mut out);
    c.server_data(
        b"HTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n",
        6,
        &l,
        &mut st,
        &mut out,
    );
    c.close(7, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "GET /1 -> 200 None",
            "GET /2 -> 0 Some(Response)",
            "GET /3 -> 500 None"
        ]
    );
    assert!(
        out[0].gap && out[1].gap,
        "transactions touched by a gap are flagged"
    );
    assert_eq!(st.gaps, 2);
}

/// RFC 9112 §9.3.2: a server answers pipelined requests in the order they came. A request
/// lost in a gap of the capture still gets its response: that response is its own, reported
/// with the gap and without a request, and the next response answers the next request (it was
/// paired with the next request, which then lacked a response).
#[test]
fn a_pipelined_request_lost_in_a_gap_keeps_the_responses_in_step() {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"GET /r1 HTTP/1.1\r\nHost: a\r\n\r\n",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_gap(29, &l, &mut st, &mut out);
    c.client_data(
        b"GET /r3 HTTP/1.1\r\nHost: a\r\n\r\n",
        3,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 201 OK\r\nContent-Length: 1\r\n\r\n2HTTP/1.1 202 OK\r\nContent-Length: 1\r\n\r\n3",
        4,
        &l,
        &mut st,
        &mut out,
    );
    // A request cut after its first bytes is named by them; unanswered, it is reported.
    c.client_data(b"POST /r4 HT", 5, &l, &mut st, &mut out);
    c.client_gap(100, &l, &mut st, &mut out);
    // A request lost whole and never answered has nothing to report.
    c.client_gap(30, &l, &mut st, &mut out);
    c.close(9, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "GET /r1 -> 200 None",
            "- - -> 201 Some(Request)",
            "GET /r3 -> 202 None",
            "POST /r4 -> 0 Some(Response)",
        ]
    );
    assert!(out[1].gap && out[3].gap && !out[0].gap && !out[2].gap);
    assert_eq!(out[1].resp_start_ns, 4);
    assert_eq!(st.gaps, 3);
}

proptest! {
    /// Random bytes, cut anywhere, with gaps: no panic, buffers bounded, and every request
    /// head parsed ends up in exactly one transaction.
    #[test]
    fn arbitrary_streams_never_panic_and_stay_bounded(
        client in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        server in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        gaps in prop::collection::vec(any::<u16>(), 0..4),
        prefix in prop::sample::select(vec![&b""[..], b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]),
    ) {
        let l = limits();
        let mut st = ConnStats::default();
        let mut c = Conn::new();
        let mut out = Vec::new();
        c.client_data(prefix, 0, &l, &mut st, &mut out);
        c.server_data(prefix, 0, &l, &mut st, &mut out);
        for (i, (a, b)) in client.iter().zip(server.iter().chain(std::iter::repeat(&Vec::new()))).enumerate() {
            c.client_data(a, i as i64, &l, &mut st, &mut out);
            c.server_data(b, i as i64, &l, &mut st, &mut out);
            if let Some(g) = gaps.get(i) {
                c.client_gap(*g as u32, &l, &mut st, &mut out);
                c.server_gap(*g as u32, &mut st, &mut out);
            }
            prop_assert!(c.client.buf.len() <= l.max_head_bytes && c.server.buf.len() <= l.max_head_bytes);
            prop_assert!(c.pending.len() <= l.max_pending);
        }
        c.close(1 << 40, &mut out);
        prop_assert!(c.pending.is_empty() && c.resp.is_none() && c.req.is_none());
    }
}

/// A WebSocket upgrade (RFC 6455 §4): the request and its 101 are one transaction, and what
/// follows is WebSocket frames in both directions, not HTTP/1, even when a frame's payload
/// reads like a request or a response.
#[test]
fn after_a_101_the_connection_is_not_parsed_as_http() {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        2,
        &l,
        &mut st,
        &mut out,
    );
    // An unmasked text frame from the server and a masked one (key 0) from the client, each
    // carrying text that is an HTTP message.
    let text = |masked: bool, s: &[u8]| {
        let mut f = vec![0x81, s.len() as u8 | if masked { 0x80 } else { 0 }];
        if masked {
            f.extend_from_slice(&[0, 0, 0, 0]);
        }
        f.extend_from_slice(s);
        f
    };
    c.client_data(
        &text(true, b"GET /x HTTP/1.1\r\n\r\n"),
        3,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        &text(false, b"HTTP/1.1 200 OK\r\n\r\n"),
        4,
        &l,
        &mut st,
        &mut out,
    );
    c.close(1000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["GET /chat -> 101 None"]);
    assert_eq!(st.parse_errors, 0);
}

/// More pipelined requests than `max_pending` (8 here): the oldest are reported without a
/// response, and when the responses come (RFC 9112 section 9.3.2: in the order of the
/// requests) the first ones are theirs, reported alone; every later response still meets
/// its own request. A response head lost in a gap counts as one of those owed.
#[test]
fn responses_to_requests_pushed_out_of_a_full_queue_do_not_shift_the_others() {
    let requests: Vec<Vec<u8>> = (1..=12)
        .map(|n| format!("GET /{n} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes())
        .collect();
    let responses: Vec<Vec<u8>> = (1..=12)
        .map(|n| format!("HTTP/1.1 {} X\r\nContent-Length: 0\r\n\r\n", 200 + n).into_bytes())
        .collect();
    let client: Vec<&[u8]> = requests.iter().map(|r| &r[..]).collect();
    let server: Vec<&[u8]> = responses.iter().map(|r| &r[..]).collect();
    let s: Vec<String> = run(&client, &server).iter().map(|t| summary(t)).collect();
    let mut want: Vec<String> = (1..=4)
        .map(|n| format!("GET /{n} -> 0 Some(Response)"))
        .collect();
    want.extend((1..=4).map(|n| format!("- - -> {} Some(Request)", 200 + n)));
    want.extend((5..=12).map(|n| format!("GET /{n} -> {} None", 200 + n)));
    assert_eq!(s, want);

    // The same with the second response's head cut by a gap.
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    for (i, d) in client.iter().enumerate() {
        c.client_data(d, i as i64, &l, &mut st, &mut out);
    }
    c.server_data(server[0], 100, &l, &mut st, &mut out);
    c.server_data(&server[1][..10], 101, &l, &mut st, &mut out);
    c.server_gap((server[1].len() - 10) as u32, &mut st, &mut out);
    for (i, d) in server[2..].iter().enumerate() {
        c.server_data(d, 102 + i as i64, &l, &mut st, &mut out);
    }
    c.close(1000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    let mut want: Vec<String> = (1..=4)
        .map(|n| format!("GET /{n} -> 0 Some(Response)"))
        .collect();
    want.extend([201, 203, 204].map(|n| format!("- - -> {n} Some(Request)")));
    want.extend((5..=12).map(|n| format!("GET /{n} -> {} None", 200 + n)));
    assert_eq!(s, want);
}

/// A request reported unanswered at `transaction_timeout` while the next one waits behind it:
/// its response, when it comes, is reported alone, and the next request meets its own.
#[test]
fn a_late_response_to_an_expired_request_is_not_given_to_the_next() {
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(
        b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        50,
        &l,
        &mut st,
        &mut out,
    );
    assert!(c.expires(10));
    c.expire(10, &mut out);
    assert!(!c.expires(10), "the second request is not due yet");
    for (ts, r) in [
        (
            90,
            &b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n"[..],
        ),
        (91, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ] {
        c.server_data(r, ts, &l, &mut st, &mut out);
    }
    c.close(1000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        [
            "GET /slow -> 0 Some(Response)",
            "- - -> 504 Some(Request)",
            "GET /next -> 200 None",
        ]
    );
}

/// What a request asked still frames its response once the request was reported: a response
/// to HEAD carries a Content-Length but no body (RFC 9110 section 9.3.2), so read as a GET's,
/// it would swallow the responses after it.
#[test]
fn a_response_owed_to_a_head_request_is_read_without_a_body() {
    let method = |n: usize| if n % 2 == 1 { "HEAD" } else { "GET" };
    let requests: Vec<Vec<u8>> = (1..=12)
        .map(|n| format!("{} /{n} HTTP/1.1\r\nHost: h\r\n\r\n", method(n)).into_bytes())
        .collect();
    let responses: Vec<Vec<u8>> = (1..=12)
        .map(|n| {
            let body = if method(n) == "HEAD" {
                String::new()
            } else {
                "b".repeat(500)
            };
            format!(
                "HTTP/1.1 {} X\r\nContent-Length: 500\r\n\r\n{body}",
                200 + n
            )
            .into_bytes()
        })
        .collect();
    let client: Vec<&[u8]> = requests.iter().map(|r| &r[..]).collect();
    let server: Vec<&[u8]> = responses.iter().map(|r| &r[..]).collect();
    let s: Vec<String> = run(&client, &server).iter().map(|t| summary(t)).collect();
    let mut want: Vec<String> = (1..=4)
        .map(|n| format!("{} /{n} -> 0 Some(Response)", method(n)))
        .collect();
    want.extend((1..=4).map(|n| format!("- - -> {} Some(Request)", 200 + n)));
    want.extend((5..=12).map(|n| format!("{} /{n} -> {} None", method(n), 200 + n)));
    assert_eq!(s, want);

    // A HEAD past `transaction_timeout`, then a GET: the late answer to HEAD has no body.
    let l = limits();
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    for (ts, r) in [
        (0, &b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n"[..]),
        (50, b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
    ] {
        c.client_data(r, ts, &l, &mut st, &mut out);
    }
    c.expire(10, &mut out);
    c.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n",
        90,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
        91,
        &l,
        &mut st,
        &mut out,
    );
    c.close(1000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        [
            "HEAD /big -> 0 Some(Response)",
            "- - -> 200 Some(Request)",
            "GET /next -> 404 None"
        ]
    );
    assert_eq!(out[2].resp_body_bytes, 2);
    let late: Vec<bool> = out.iter().map(|t| t.late).collect();
    assert_eq!(late, [false, true, false], "counted in the metrics once");
}

/// RFC 9112 section 6.3: a Transfer-Encoding overrides Content-Length, and a response whose
/// final coding is not chunked is read until the server closes (rule 4); header lines make one
/// list, so the last line's last coding is the final one.
#[test]
fn a_response_is_chunked_only_when_chunked_is_its_final_coding() {
    // `chunked, gzip`: the body is everything until the close, chunk-like lines included.
    let body = b"5\r\nhello\r\n0\r\n\r\nworld";
    let resp = [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
        body,
    ]
    .concat();
    let out = run(&[b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"], &[&resp]);
    assert_eq!(
        out.len(),
        1,
        "{:?}",
        out.iter().map(|t| summary(t)).collect::<Vec<_>>()
    );
    assert_eq!(out[0].resp_body_bytes, body.len() as u64);

    // A coding other than chunked beside a Content-Length: the length is not the body's.
    let out = run(
        &[b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"],
        &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n",
            b"0123456789",
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resp_body_bytes, 10);

    // Two lines, `gzip` then `chunked`: chunked is final, and the next response follows.
    let out = run(
        &[b"GET /c HTTP/1.1\r\nHost: h\r\n\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n"],
        &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked;x=1\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["GET /c -> 200 None", "GET /d -> 404 None"]);
    assert_eq!(out[0].resp_body_bytes, 3);
}

/// A request whose final coding is not chunked has no length a server can read: RFC 9112
/// section 6.3 has it answered 400 and the connection closed. It is reported, flagged, and
/// its Content-Length is not taken for a body.
#[test]
fn a_request_with_an_unreadable_transfer_coding_is_flagged() {
    let out = run(
        &[b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked, br\r\nContent-Length: 4\r\n\r\n"],
        &[b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /up -> 400 None"]);
    let req = out[0].request.as_ref().expect("request");
    // Content-Length beside a Transfer-Encoding is flagged too (RFC 9112 section 6.3 (3)).
    assert_eq!(
        req.anomalies,
        vec![
            anomaly::INVALID_REQUEST,
            anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING
        ]
    );
    assert_eq!(out[0].req_body_bytes, 0);
}

/// RFC 9112 section 3.2.2: a request to a proxy names its host in the target, and a Host
/// header that says otherwise is ignored; user information is never taken for the host.
#[test]
fn an_absolute_form_target_names_the_host() {
    let out = run(
        &[
            b"GET http://Other.Example:8081/abs?q=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n",
            b"GET https://user:secret@api.example/x HTTP/1.0\r\n\r\n",
            b"GET /origin HTTP/1.1\r\nHost: origin.example\r\n\r\n",
        ],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    );
    let hosts: Vec<Option<&str>> = out
        .iter()
        .map(|t| t.request.as_ref().and_then(|r| r.host.as_deref()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            Some("Other.Example:8081"),
            Some("api.example"),
            Some("origin.example")
        ]
    );
}

/// A server may answer before the request body has all come (an early 401, 413 or nginx's
/// `return`), and a client may go on sending it (RFC 9112 section 9.3: the connection stays
/// usable once the body is sent whole). The transaction counts the whole body as sent, not
/// what had come when the answer went out, and the next request still meets its own response.
#[test]
fn a_body_still_sent_after_an_early_answer_is_counted_whole() {
    let l = limits();
    let mut st = ConnStats::default();
    let (mut c, mut out) = (Conn::new(), Vec::new());
    let part = vec![b'x'; 10_000];
    c.client_data(
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 30000\r\n\r\n",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(&part, 1, &l, &mut st, &mut out);
    c.server_data(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n",
        2,
        &l,
        &mut st,
        &mut out,
    );
    assert!(
        out.is_empty(),
        "reported before its body ended: {}",
        summary(&out[0])
    );
    c.client_data(&part, 3, &l, &mut st, &mut out);
    c.client_data(&part, 4, &l, &mut st, &mut out);
    c.client_data(
        b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        5,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        6,
        &l,
        &mut st,
        &mut out,
    );
    c.close(7, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /up -> 413 None", "GET /next -> 200 None"]);
    assert_eq!(out[0].req_body_bytes, 30_000);
    assert_eq!(out[0].req_end_ns, 4);

    // Chunked, and the connection closed mid-upload: one transaction, with what was sent.
    let (mut c, mut out) = (Conn::new(), Vec::new());
    c.client_data(
        b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(b"6\r\n world\r\n", 2, &l, &mut st, &mut out);
    assert!(out.is_empty());
    c.close(3, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["PUT /c -> 401 None"]);
    assert_eq!(out[0].req_body_bytes, 11);

    // The answer's body still coming when the upload ends: reported when the answer ends.
    let (mut c, mut out) = (Conn::new(), Vec::new());
    c.client_data(
        b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nno",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(b"def", 2, &l, &mut st, &mut out);
    assert!(out.is_empty());
    c.server_data(b"pe", 3, &l, &mut st, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /p -> 403 None"]);
    assert_eq!((out[0].req_body_bytes, out[0].resp_body_bytes), (6, 4));

    // An upload that stalls is not held past the timeout: reported with what came.
    let (mut c, mut out) = (Conn::new(), Vec::new());
    c.client_data(
        b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nab",
        10,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        11,
        &l,
        &mut st,
        &mut out,
    );
    assert!(out.is_empty() && c.expires(1_000));
    c.expire(1_000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /s -> 400 None"]);
    assert_eq!(out[0].req_body_bytes, 2);
    c.close(2_000, &mut out);
    assert_eq!(
        out.len(),
        1,
        "{:?}",
        out.iter().map(|t| summary(t)).collect::<Vec<_>>()
    );
}

#[test]
fn a_request_lost_in_a_gap_while_the_queue_is_full_gives_up_the_oldest_not_itself() {
    let l = Limits {
        max_pending: 2,
        ..limits()
    };
    let mut st = ConnStats::default();
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.client_data(
        b"GET /r1 HTTP/1.1\r\nHost: a\r\n\r\nGET /r2 HTTP/1.1\r\nHost: a\r\n\r\n",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_gap(29, &l, &mut st, &mut out);
    c.client_data(
        b"GET /r4 HTTP/1.1\r\nHost: a\r\n\r\n",
        3,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 201 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 202 OK\r\nContent-Length: 1\r\n\r\n2HTTP/1.1 203 OK\r\nContent-Length: 1\r\n\r\n3HTTP/1.1 204 OK\r\nContent-Length: 1\r\n\r\n4",
        4,
        &l,
        &mut st,
        &mut out,
    );
    c.close(9, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    // r1 and r2 are given up to make room (their responses come as responses alone); the lost
    // request's response is its own; r4 gets the fourth response, not the third.
    assert_eq!(
        s,
        vec![
            "GET /r1 -> 0 Some(Response)",
            "GET /r2 -> 0 Some(Response)",
            "- - -> 201 Some(Request)",
            "- - -> 202 Some(Request)",
            "- - -> 203 Some(Request)",
            "GET /r4 -> 204 None",
        ]
    );
}

mod framing;
