//! Tests of one connection's transactions: pipelining, interim responses, CONNECT tunnels,
//! upgrades, HTTP/0.9, malformed request lines and bare LF, from RFC 9110/9112; which
//! response answers which when something is lost in `pairing`, where messages end in `framing`.

use super::*;
use crate::wire::http::parser::Version;

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

mod framing;
mod pairing;
