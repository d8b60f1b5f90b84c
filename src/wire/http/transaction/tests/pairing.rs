//! Which response answers which request when the capture or the agent loses one (RFC 9112
//! section 9.3.2: responses come in the order of the requests): gaps, a full queue, a
//! timeout, an answer that comes before the request body has all come.

use super::*;
use proptest::prelude::*;

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
