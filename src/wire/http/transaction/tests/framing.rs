//! Where a request ends, from RFC 9112: section 6.3 (Transfer-Encoding against Content-Length,
//! invalid Content-Length), and section 9.3.2 (one final response per request, also when it
//! comes before the request body has all come); and where a response ends (section 6.3).

use super::*;

fn anomalies(t: &Transaction) -> Vec<&'static str> {
    t.request
        .as_ref()
        .map(|r| r.anomalies.clone())
        .unwrap_or_default()
}

/// RFC 9112 section 9.3.2: a server answers requests in order, one final response each. A
/// final response that comes while the request body is still incomplete (an early 413) ends
/// that request; the responses after it are not its answer, however long its body is
/// announced to be, and the request is reported with the body that came, flagged.
#[test]
fn an_early_answer_ends_the_request_and_later_responses_are_not_its_answer() {
    let out = run(
        &[b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc"],
        &[b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "POST /a -> 413 None",
            "- - -> 200 Some(Request)",
            "- - -> 500 Some(Request)"
        ]
    );
    assert_eq!(out[0].req_body_bytes, 3);
    assert_eq!(anomalies(&out[0]), [anomaly::BODY_INCOMPLETE]);

    // Thousands of responses behind one unfinished upload: one of them is its answer.
    let many = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".repeat(1000);
    let out = run(
        &[b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\nabc"],
        &[many.as_bytes()],
    );
    assert_eq!(out.len(), 1000);
    assert_eq!(summary(&out[0]), "POST /a -> 200 None");
    assert!(out[1..].iter().all(|t| t.missing == Some(Missing::Request)));

    // The upload stalls past the timeout: reported once; a response after that is alone.
    let l = limits();
    let mut st = ConnStats::default();
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
    c.expire(1_000, &mut out);
    c.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        1_001,
        &l,
        &mut st,
        &mut out,
    );
    c.close(2_000, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /s -> 400 None", "- - -> 200 Some(Request)"]);
    assert_eq!(anomalies(&out[0]), [anomaly::BODY_INCOMPLETE]);
}

/// After an early answer the client may go on sending the body it announced: those bytes
/// are body, even when they read as a request, and are not paired with later responses.
/// `100 Continue` is interim (RFC 9110 section 15.2): it does not end the request.
#[test]
fn the_rest_of_an_answered_body_is_not_read_as_requests_and_100_continue_ends_nothing() {
    let l = limits();
    let mut st = ConnStats::default();
    let (mut c, mut out) = (Conn::new(), Vec::new());
    c.client_data(
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 200\r\n\r\nabc",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        1,
        &l,
        &mut st,
        &mut out,
    );
    c.client_data(
        b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
        2,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(
        b"HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n",
        3,
        &l,
        &mut st,
        &mut out,
    );
    c.close(4, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "POST /a -> 413 None",
            "- - -> 200 Some(Request)",
            "- - -> 404 Some(Request)"
        ]
    );

    let (mut c, mut out) = (Conn::new(), Vec::new());
    c.client_data(
        b"POST /c HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        0,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(b"HTTP/1.1 100 Continue\r\n\r\n", 1, &l, &mut st, &mut out);
    c.client_data(b"ab", 2, &l, &mut st, &mut out);
    c.server_data(b"HTTP/1.1 100 Continue\r\n\r\n", 3, &l, &mut st, &mut out);
    c.client_data(b"cde", 4, &l, &mut st, &mut out);
    c.server_data(
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        5,
        &l,
        &mut st,
        &mut out,
    );
    c.close(6, &mut out);
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /c -> 201 None"]);
    assert_eq!(out[0].req_body_bytes, 5);
    assert!(anomalies(&out[0]).is_empty());
}

/// RFC 9112 section 6.3 (3): Transfer-Encoding overrides Content-Length, and the message is
/// flagged (request smuggling sends both). The body is read as chunked.
#[test]
fn transfer_encoding_wins_over_content_length_and_is_flagged() {
    let out = run(
        &[b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 OK\r\nContent-Length: 2\r\n\r\nno"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(s, vec!["POST /a -> 200 None", "GET /b -> 404 None"]);
    assert_eq!(out[0].req_body_bytes, 3);
    assert_eq!(
        anomalies(&out[0]),
        [anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING]
    );
    assert!(anomalies(&out[1]).is_empty());

    // The same with a body that is not chunked (`abc` as the chunk size line): the request
    // ends where the framing breaks, once, and is not every later response's request.
    let out = run(
        &[b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 OK\r\nContent-Length: 2\r\n\r\nno"],
    );
    let posts = out
        .iter()
        .filter(|t| t.request.as_ref().is_some_and(|r| r.target == "/a"))
        .count();
    assert_eq!(
        posts,
        1,
        "{:?}",
        out.iter().map(|t| summary(t)).collect::<Vec<_>>()
    );
    assert_eq!(summary(&out[0]), "POST /a -> 200 None");
    assert_eq!(
        anomalies(&out[0]),
        [
            anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING,
            anomaly::INVALID_CHUNK
        ]
    );
}

/// RFC 9112 section 6.3 (5): a Content-Length that is not a decimal number, or two that
/// disagree, is an unrecoverable framing error. The request is reported, flagged; the rest of
/// the client's side is not read (its end is unknown), so later responses are alone, and no
/// request is reported twice. RFC 9110 section 8.6: one value repeated is that value.
#[test]
fn an_invalid_content_length_is_flagged_and_ends_the_parsing_of_requests() {
    for cl in [
        "Content-Length: 3\r\nContent-Length: 50",
        "Content-Length: 3, 50",
        "Content-Length: -3",
        "Content-Length: +3",
        "Content-Length: 18446744073709551616",
        "Content-Length: 184467440737095516150",
        "Content-Length: 0x3",
        "Content-Length: ",
        "Content-Length: -3\r\nContent-Length: 3",
    ] {
        let req = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\n{cl}\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let out = run(
            &[req.as_bytes()],
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 OK\r\nContent-Length: 2\r\n\r\nno"],
        );
        let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
        assert_eq!(
            s,
            vec!["POST /a -> 200 None", "- - -> 404 Some(Request)"],
            "{cl}"
        );
        assert_eq!(
            anomalies(&out[0]),
            [anomaly::INVALID_CONTENT_LENGTH],
            "{cl}"
        );
    }
    for cl in [
        "Content-Length: 3\r\nContent-Length: 3",
        "Content-Length: 3, 3",
        "Content-Length:  3 ",
    ] {
        let req = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\n{cl}\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let out = run(
            &[req.as_bytes()],
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 OK\r\nContent-Length: 2\r\n\r\nno"],
        );
        let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
        assert_eq!(s, vec!["POST /a -> 200 None", "GET /b -> 404 None"], "{cl}");
        assert_eq!(out[0].req_body_bytes, 3, "{cl}");
        assert!(anomalies(&out[0]).is_empty(), "{cl}");
    }
}

fn response_anomalies(t: &Transaction) -> Vec<&'static str> {
    t.response
        .as_ref()
        .map(|r| r.anomalies.clone())
        .unwrap_or_default()
}

/// RFC 9112 section 6.3 on responses, keep-alive: a repeated length is that length, and the
/// next response is the next request's; Transfer-Encoding beside Content-Length decides and
/// is flagged; a HEAD response's and a 204's lengths frame nothing, and the 204's is flagged
/// (RFC 9110 section 8.6 forbids it there); lengths that disagree are unrecoverable: the rest
/// of the server's side is that body.
#[test]
fn responses_are_framed_as_rfc_9112_section_6_3_says() {
    let out = run(
        &[b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\nGET /e HTTP/1.1\r\n\r\nGET /f HTTP/1.1\r\n\r\n"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    );
    let s: Vec<String> = out.iter().map(|t| summary(t)).collect();
    assert_eq!(
        s,
        vec![
            "GET /a -> 200 None",
            "HEAD /b -> 200 None",
            "GET /c -> 204 None",
            "GET /d -> 200 None",
            "GET /e -> 200 None",
            "GET /f -> 0 Some(Response)",
        ]
    );
    assert_eq!(out[0].resp_body_bytes, 3);
    for t in &out[..2] {
        assert!(response_anomalies(t).is_empty(), "{t:?}");
    }
    assert_eq!(
        response_anomalies(&out[2]),
        [
            anomaly::CONTENT_LENGTH_NOT_ALLOWED,
            anomaly::TRANSFER_ENCODING_NOT_ALLOWED
        ]
    );
    assert_eq!(
        response_anomalies(&out[3]),
        [anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING]
    );
    assert_eq!(out[3].resp_body_bytes, 2);
    assert_eq!(
        response_anomalies(&out[4]),
        [anomaly::INVALID_CONTENT_LENGTH]
    );
    // "abc" and the 38-byte response after it: read until the close.
    assert_eq!(out[4].resp_body_bytes, 41);
}
