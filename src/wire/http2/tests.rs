//! Unit tests of the HTTP/2 analyzer: whole connections built frame by frame (RFC 9113 and
//! the gRPC HTTP/2 spec), fed in pieces, with gaps, resets and garbage.

use super::conn::{Conn, ConnStats, Limits, PREFACE};
use super::frame::{flag, kind};
use super::transaction::{Ended, Transaction};
use crate::wire::analyzer::{Outcome, Side, Transaction as _};

const LIMITS: Limits = Limits {
    max_streams: 8,
    max_header_block: 4096,
    max_table_size: 4096,
    dns_over_https: true,
};

fn frame(k: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, k, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A header block of literals with incremental indexing (so that a lost block really leaves
/// the table behind), new names, no Huffman.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (n, val) in fields {
        v.push(0x40);
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
        v.push(val.len() as u8);
        v.extend_from_slice(val.as_bytes());
    }
    v
}

fn grpc_message(len: usize) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.extend(std::iter::repeat_n(b'm', len));
    v
}

fn request(stream: u32, path: &str) -> Vec<u8> {
    frame(
        kind::HEADERS,
        flag::END_HEADERS,
        stream,
        &block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "svc.local:50051"),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-python/1.0"),
        ]),
    )
}

fn settings() -> Vec<u8> {
    frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
}

struct Run {
    conn: Conn,
    st: ConnStats,
    out: Vec<Transaction>,
    ts: i64,
}

impl Run {
    fn new() -> Run {
        Run {
            conn: Conn::new(LIMITS),
            st: ConnStats::default(),
            out: Vec::new(),
            ts: 1_000,
        }
    }
    /// `bytes` from `side` in pieces of `chunk` bytes.
    fn send(&mut self, side: Side, bytes: &[u8], chunk: usize) {
        for c in bytes.chunks(chunk.max(1)) {
            self.ts += 1_000;
            self.conn
                .data(side, c, self.ts, &mut self.st, &mut self.out);
        }
    }
}

/// A unary gRPC call, its response and trailers, every frame split at every size: the same
/// transaction each time, with the rpc fields, message counts and sizes.
#[test]
fn a_grpc_call_is_one_transaction_whatever_the_segmentation() {
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    client.extend(request(1, "/helloworld.Greeter/SayHello"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 1, &grpc_message(5)));
    let mut server = settings();
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block(&[(":status", "200"), ("content-type", "application/grpc")]),
    ));
    let mut data = grpc_message(7);
    data.extend(grpc_message(0));
    // Padded DATA: the padding is not body.
    let mut padded = vec![3];
    padded.extend(&data);
    padded.extend([0, 0, 0]);
    server.extend(frame(kind::DATA, flag::PADDED, 1, &padded));
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block(&[("grpc-status", "0"), ("grpc-message", "")]),
    ));
    for chunk in [1, 2, 7, 9, 10, 4096] {
        let mut r = Run::new();
        r.send(Side::Client, &client, chunk);
        r.send(Side::Server, &server, chunk);
        assert_eq!(r.out.len(), 1, "chunk {chunk}");
        let t = &r.out[0];
        let req = t.request.as_ref().unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/helloworld.Greeter/SayHello")
        );
        assert_eq!(req.authority.as_deref(), Some("svc.local:50051"));
        assert_eq!(t.response.as_ref().unwrap().status, Some(200));
        assert_eq!(t.trailers.as_ref().unwrap().grpc_status, Some(0));
        assert_eq!((t.req_messages.count, t.req_messages.bytes), (1, 5));
        assert_eq!((t.resp_messages.count, t.resp_messages.bytes), (2, 7));
        assert_eq!(t.req_body_bytes, 10);
        assert_eq!(t.resp_body_bytes, 17);
        assert_eq!(t.outcome(), Outcome::Success);
        let rec = t.record();
        assert_eq!((rec.operation, rec.status), ("SayHello", "OK"));
        assert!(rec.start_ns < rec.end_ns);
        assert_eq!(r.st, ConnStats::default());
    }
}

/// A non-zero grpc-status (trailers-only response) is a failure with its message decoded;
/// a RST_STREAM ends a stream as a failure with its error code; a GOAWAY ends the streams
/// above its last stream id and leaves the others running.
#[test]
fn errors_resets_and_goaway_end_streams_as_failures() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    for id in [1, 3, 5, 7] {
        client.extend(request(id, "/kv.Store/Get"));
        client.extend(frame(kind::DATA, flag::END_STREAM, id, &grpc_message(2)));
    }
    r.send(Side::Client, &client, 100);
    let mut server = settings();
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20key"),
        ]),
    ));
    server.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend(0u32.to_be_bytes());
    server.extend(frame(kind::GOAWAY, 0, 0, &goaway));
    r.send(Side::Server, &server, 100);
    assert_eq!(r.out.len(), 4, "{:#?}", r.out);
    let by_id = |id: u32| r.out.iter().find(|t| t.stream_id == id).unwrap();
    let t1 = by_id(1);
    assert_eq!(t1.outcome(), Outcome::Failure);
    assert_eq!(t1.record().status, "NOT_FOUND");
    assert_eq!(
        t1.trailers.as_ref().unwrap().grpc_message.as_deref(),
        Some("no such key")
    );
    let t3 = by_id(3);
    assert_eq!(
        t3.ended,
        Some(Ended::Reset {
            by_client: false,
            code: 8
        })
    );
    assert_eq!(
        (t3.outcome(), t3.record().status),
        (Outcome::Failure, "CANCEL")
    );
    for id in [5, 7] {
        assert_eq!(by_id(id).ended, Some(Ended::GoAway { code: 0 }));
        assert_eq!(by_id(id).outcome(), Outcome::Failure);
    }
}

/// RFC 9113 §5.1: a stream the client reset is "closed" for the client, yet frames the server
/// sent before it read the RST_STREAM may still arrive. A response that crossed the reset on
/// the wire is that stream's late response: one transaction with the server's status, ended
/// by the client's reset (a failure), not a stream reported unanswered and frames dropped.
#[test]
fn a_response_that_crossed_the_clients_reset_is_the_streams_late_response() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    client.extend(request(1, "/slow.Service/Wait"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 1, &grpc_message(3)));
    client.extend(frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    r.send(Side::Client, &client, 4096);
    assert!(
        r.out.is_empty(),
        "reported before the frames in flight: {:#?}",
        r.out
    );
    let mut server = settings();
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block(&[(":status", "200"), ("content-type", "application/grpc")]),
    ));
    server.extend(frame(kind::DATA, 0, 1, &grpc_message(4)));
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block(&[("grpc-status", "4"), ("grpc-message", "deadline")]),
    ));
    r.send(Side::Server, &server, 4096);
    assert_eq!(r.out.len(), 1, "{:#?}", r.out);
    let t = &r.out[0];
    assert_eq!(t.stream_id, 1);
    assert_eq!(t.response.as_ref().and_then(|r| r.status), Some(200));
    assert_eq!(t.trailers.as_ref().and_then(|t| t.grpc_status), Some(4));
    assert_eq!(t.resp_messages.count, 1);
    assert_eq!(
        t.ended,
        Some(Ended::Reset {
            by_client: true,
            code: 8
        })
    );
    assert_eq!(t.outcome(), Outcome::Failure);
    assert_eq!(r.st, ConnStats::default());
}

/// Once the server answers a stream the client opened after its RST_STREAM, it has read the
/// reset (one TCP direction is read in order), so the reset stream is reported then, without a
/// response; a reset stream the server never answers is reported when the connection ends,
/// still as the client's reset.
#[test]
fn a_reset_stream_is_reported_once_the_server_has_read_past_the_reset() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    client.extend(request(1, "/a.S/One"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 1, &grpc_message(1)));
    client.extend(request(3, "/a.S/Two"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 3, &grpc_message(1)));
    client.extend(frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    client.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    client.extend(request(5, "/a.S/Three"));
    r.send(Side::Client, &client, 4096);
    assert!(r.out.is_empty());
    // The answer to stream 5 comes after both resets were read.
    let server = frame(
        kind::HEADERS,
        flag::END_HEADERS,
        5,
        &block(&[(":status", "200"), ("content-type", "application/grpc")]),
    );
    r.send(Side::Server, &server, 4096);
    let mut ids: Vec<u32> = r.out.iter().map(|t| t.stream_id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 3], "{:#?}", r.out);
    for t in &r.out {
        assert!(t.response.is_none());
        assert_eq!(
            t.ended,
            Some(Ended::Reset {
                by_client: true,
                code: 8
            })
        );
        assert_eq!(t.outcome(), Outcome::Failure);
    }
    // A frame on a reset stream after that is not a new stream.
    r.send(
        Side::Server,
        &frame(kind::DATA, 0, 1, &grpc_message(2)),
        4096,
    );
    assert_eq!(r.out.len(), 2);
    // Stream 5 is reset too and never answered again: reported at the end, reset, not
    // "incomplete".
    r.send(
        Side::Client,
        &frame(kind::RST_STREAM, 0, 5, &8u32.to_be_bytes()),
        4096,
    );
    assert_eq!(r.out.len(), 2);
    r.conn.close(&mut r.out);
    assert_eq!(r.out.len(), 3);
    assert_eq!(r.out[2].stream_id, 5);
    assert_eq!(r.out[2].response.as_ref().and_then(|r| r.status), Some(200));
    assert_eq!(
        r.out[2].ended,
        Some(Ended::Reset {
            by_client: true,
            code: 8
        })
    );
}

/// A gap inside a DATA frame keeps the frames in step; a gap inside a HEADERS frame loses
/// that block, so HPACK's later state is unknown: the direction's later streams are still
/// counted (tagged), with no header fields, and the count of lost directions says so.
#[test]
fn gaps_keep_streams_counted_and_lose_headers_only_when_they_must() {
    let mut r = Run::new();
    let mut head = PREFACE.to_vec();
    head.extend(request(1, "/a.B/C"));
    let data = frame(kind::DATA, flag::END_STREAM, 1, &grpc_message(100));
    head.extend(&data[..30]);
    r.send(Side::Client, &head, 4096);
    r.conn.gap(Side::Client, 50, &mut r.st, &mut r.out);
    r.send(Side::Client, &data[80..], 4096);
    r.send(
        Side::Server,
        &frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block(&[(":status", "200"), ("grpc-status", "0")]),
        ),
        4096,
    );
    assert_eq!(r.out.len(), 1);
    assert!(r.out[0].gap);
    assert_eq!(
        r.out[0].req_body_bytes, 105,
        "lost bytes are still body bytes"
    );
    assert_eq!(r.out[0].outcome(), Outcome::Success);
    assert_eq!(r.st.headers_lost, 0);

    // Stream 3's HEADERS partly lost: its block and the table it filled are gone.
    let h3 = request(3, "/a.B/D");
    r.send(Side::Client, &h3[..20], 4096);
    r.conn.gap(Side::Client, 10, &mut r.st, &mut r.out);
    r.send(Side::Client, &h3[30..], 4096);
    r.send(Side::Client, &request(5, "/a.B/E"), 4096);
    for id in [3, 5] {
        r.send(
            Side::Client,
            &frame(kind::DATA, flag::END_STREAM, id, &grpc_message(1)),
            4096,
        );
    }
    for id in [3, 5] {
        r.send(
            Side::Server,
            &frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                id,
                &block(&[(":status", "200"), ("grpc-status", "0")]),
            ),
            4096,
        );
    }
    assert_eq!(r.out.len(), 3);
    assert_eq!(r.st.headers_lost, 1);
    for t in &r.out[1..] {
        assert!(t.headers_lost && t.request.is_none(), "{t:?}");
        assert_eq!(t.response.as_ref().unwrap().status, Some(200));
    }
    // A gap across frame boundaries: the direction is no longer followed; its open streams
    // are reported when the connection closes.
    r.send(Side::Server, &frame(kind::PING, 0, 0, &[0; 8]), 4096);
    r.send(Side::Client, &request(7, "/a.B/F"), 4096);
    r.conn.gap(Side::Server, 3, &mut r.st, &mut r.out);
    assert_eq!(r.st.directions_lost, 1);
    r.conn.close(&mut r.out);
    assert_eq!(r.out.len(), 4);
    assert_eq!(r.out[3].ended, Some(Ended::Incomplete));
    assert_eq!(r.out[3].outcome(), Outcome::Unknown);
}

/// A server that answers before the request body ends (nginx's `return`): the body that
/// follows is the request's, and the stream ends with the client's END_STREAM.
#[test]
fn a_response_before_the_request_body_ends_keeps_the_body() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block(&[(":method", "POST"), (":path", "/upload")]),
    ));
    r.send(Side::Client, &client, 4096);
    let mut server = frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x88]);
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, b"early"));
    r.send(Side::Server, &server, 4096);
    assert!(r.out.is_empty(), "the request is not over");
    r.send(
        Side::Client,
        &frame(kind::DATA, flag::END_STREAM, 1, &[b'p'; 100]),
        4096,
    );
    assert_eq!(r.out.len(), 1);
    assert_eq!(
        (r.out[0].req_body_bytes, r.out[0].resp_body_bytes),
        (100, 5)
    );
    assert_eq!(r.out[0].outcome(), Outcome::Success);
}

/// `Upgrade: h2c` (RFC 7540 §3.2): the HTTP/1.1 request is stream 1, answered in HTTP/2
/// after the 101; a refused upgrade leaves the connection to HTTP/1.
#[test]
fn an_h2c_upgrade_request_becomes_stream_one() {
    let mut r = Run::new();
    let upgrade = b"GET /status?full=1 HTTP/1.1\r\nHost: web.local:8080\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nUser-Agent: curl/7.88.1\r\n\r\n";
    assert!(super::starts_http2(upgrade));
    r.send(Side::Client, upgrade, 13);
    r.send(
        Side::Server,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        4096,
    );
    let mut server = settings();
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block(&[(":status", "404")]),
    ));
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, b"not found"));
    r.send(Side::Server, &server, 4096);
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    r.send(Side::Client, &client, 4096);
    // The HTTP/1.1 exchange the 101 ended, then stream 1.
    assert_eq!(r.out.len(), 2);
    assert!(r.out[0].switched);
    let t = &r.out[1];
    let req = t.request.as_ref().unwrap();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/status?full=1")
    );
    assert_eq!(req.authority.as_deref(), Some("web.local:8080"));
    assert_eq!(req.user_agent.as_deref(), Some("curl/7.88.1"));
    assert_eq!(t.response.as_ref().unwrap().status, Some(404));
    assert_eq!(t.resp_body_bytes, 9);
    assert_eq!(t.outcome(), Outcome::Failure);
    assert_eq!(r.st, ConnStats::default());

    let mut refused = Run::new();
    refused.send(Side::Client, upgrade, 4096);
    refused.send(
        Side::Server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        4096,
    );
    refused.conn.close(&mut refused.out);
    assert!(refused.out.is_empty());
    assert_eq!(refused.st.malformed, 1);
}

/// A server that speaks HTTP/2 by prior knowledge only (nginx's `listen ... http2` without
/// TLS) answers an h2c upgrade request with frames, not a 101: its SETTINGS, then GOAWAY with
/// last stream 0 and PROTOCOL_ERROR (RFC 9113 §6.8: streams above it were not processed).
/// The upgrade request, stream 1, is reported refused by the GOAWAY, a failure; it was
/// reported unanswered, the server's frames read as a never-ending HTTP/1.1 head.
#[test]
fn an_upgrade_answered_with_a_prior_knowledge_goaway_is_refused() {
    let mut r = Run::new();
    let upgrade = b"GET /redir HTTP/1.1\r\nHost: 10.77.0.2:8080\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    r.send(Side::Client, upgrade, 4096);
    let mut server = settings();
    // GOAWAY: last stream 0, PROTOCOL_ERROR (1).
    server.extend(frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 1]));
    r.send(Side::Server, &server, 4096);
    r.conn.close(&mut r.out);
    assert_eq!(r.out.len(), 1, "{:?}", r.out);
    let t = &r.out[0];
    assert_eq!(t.request.as_ref().unwrap().path.as_str(), "/redir");
    assert!(t.response.is_none());
    assert_eq!(t.outcome(), Outcome::Failure);
}

/// The 101 that accepts an h2c upgrade answers the HTTP/1.1 request (RFC 9110 §15.2.2): that
/// exchange is a transaction of its own, in HTTP/1.1, before the request's HTTP/2 answer on
/// stream 1 (RFC 7540 §3.2); the HTTP/1.1 bytes are the exchange's, not stream 1's.
#[test]
fn the_101_of_an_h2c_upgrade_is_a_transaction_of_its_own() {
    let mut r = Run::new();
    let upgrade = b"GET /robots.txt HTTP/1.1\r\nHost: nghttp2.org\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let switching =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    r.send(Side::Client, upgrade, 7);
    r.send(Side::Server, switching, 5);
    assert_eq!(
        r.out.len(),
        1,
        "the 101 ends the HTTP/1.1 exchange: {:?}",
        r.out
    );
    let mut server = settings();
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block(&[(":status", "200")]),
    ));
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, b"User-agent: *"));
    r.send(Side::Server, &server, 4096);
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    r.send(Side::Client, &client, 4096);
    assert_eq!(r.out.len(), 2);
    let (h1, h2) = (&r.out[0], &r.out[1]);
    for t in [h1, h2] {
        let req = t.request.as_ref().unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("GET", "/robots.txt")
        );
        assert_eq!(req.authority.as_deref(), Some("nghttp2.org"));
    }
    assert!(h1.switched && !h2.switched);
    assert_eq!(h1.response.as_ref().unwrap().status, Some(101));
    assert_eq!(h1.outcome(), Outcome::Success);
    assert_eq!(h1.req_bytes, upgrade.len() as u64);
    assert_eq!(h1.resp_bytes, switching.len() as u64);
    assert_eq!(h2.stream_id, 1);
    assert_eq!(h2.response.as_ref().unwrap().status, Some(200));
    assert_eq!(
        h2.req_bytes, 0,
        "the request's bytes were HTTP/1.1, counted once"
    );
    assert_eq!(h2.resp_body_bytes, 13);
    let (mut buf, mut clock) = (Vec::new(), crate::wire::out::Clock::default());
    let mut fields = crate::wire::out::JsonFields::new(&mut buf, &mut clock);
    h1.write_fields(&mut fields);
    fields.finish();
    let json = String::from_utf8_lossy(&buf);
    assert!(json.contains(r#""version":"1.1""#), "{json}");
    assert!(!json.contains("stream_id"), "{json}");
    assert_eq!(r.st, ConnStats::default());
    // One request on the wire: the request metrics and the service map count it once.
    let conn = crate::wire::analyzer::Conn::new(
        "http2",
        crate::wire::analyzer::Transport::Tcp,
        (crate::wire::decode::Addr::v4([10, 0, 0, 1]), 40000),
        (crate::wire::decode::Addr::v4([10, 0, 0, 2]), 80),
    );
    let map = crate::wire::http::metrics::ServiceMap::new(10);
    h1.observe(&conn, &map);
    h2.observe(&conn, &map);
    let mut text = String::new();
    map.render(&mut text);
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("trawl_http2_requests_total{"))
        .collect();
    assert_eq!(requests.len(), 1, "{text}");
    assert!(requests[0].contains("status=\"200\""), "{text}");
    assert!(requests[0].ends_with(" 1"), "{text}");
}

/// No more than `max_streams` streams are followed; the table is reused (indexed fields)
/// across requests; a server push is a transaction of its own.
#[test]
fn streams_are_bounded_and_pushes_are_reported() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    for i in 0..20u32 {
        client.extend(request(2 * i + 1, "/s.S/M"));
    }
    r.send(Side::Client, &client, 4096);
    r.conn.close(&mut r.out);
    assert_eq!(r.out.len(), LIMITS.max_streams);
    assert_eq!(r.st.streams_untracked, 20 - LIMITS.max_streams as u64);
    // Indexed from the dynamic table (62 = the newest entry).
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block(&[(":method", "GET"), (":path", "/one")]),
    ));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &[0xbf, 0xbe],
    ));
    r.send(Side::Client, &client, 4096);
    let mut push = 2u32.to_be_bytes().to_vec();
    push.extend(block(&[(":method", "GET"), (":path", "/style.css")]));
    let mut server = frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &push);
    for id in [1, 3, 2] {
        server.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &[0x88], // :status 200, static
        ));
    }
    r.send(Side::Server, &server, 4096);
    assert_eq!(r.out.len(), 3);
    assert_eq!(r.out[1].request.as_ref().unwrap().path, "/one");
    assert!(r.out[2].pushed);
    assert_eq!(r.out[2].request.as_ref().unwrap().path, "/style.css");
    assert_eq!(r.st.push_promises, 1);
}

/// Garbage, truncations and mutations of a real exchange in both directions: never a panic,
/// and what is held stays within the limits (fuzz case; a fixed-seed generator keeps it
/// reproducible).
#[test]
fn fuzzed_connections_never_panic_and_stay_bounded() {
    let mut client = PREFACE.to_vec();
    client.extend(settings());
    let mut server = settings();
    for id in 0..6u32 {
        let id = 2 * id + 1;
        client.extend(request(id, "/f.F/G"));
        client.extend(frame(kind::DATA, flag::END_STREAM, id, &grpc_message(40)));
        server.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS,
            id,
            &block(&[(":status", "200"), ("content-type", "application/grpc")]),
        ));
        server.extend(frame(
            kind::DATA,
            flag::PADDED,
            id,
            &[2, 0, 0, 0, 0, 1, 9, 0, 0],
        ));
        server.extend(frame(
            kind::CONTINUATION,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &[0x88],
        ));
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let mut c = client.clone();
        let mut s = server.clone();
        for _ in 0..(rand() % 8) {
            let buf = if rand() % 2 == 0 { &mut c } else { &mut s };
            if buf.is_empty() {
                continue;
            }
            let i = (rand() as usize) % buf.len();
            match rand() % 4 {
                0 => buf[i] = rand() as u8,
                1 => buf.truncate(i),
                2 => buf.insert(i, rand() as u8),
                _ => buf[i] ^= 0x80,
            }
        }
        if round % 10 == 0 {
            c = (0..(rand() % 300)).map(|_| rand() as u8).collect();
        }
        let mut r = Run::new();
        let (mut ci, mut si) = (0, 0);
        while ci < c.len() || si < s.len() {
            let n = 1 + (rand() as usize) % 64;
            if rand() % 2 == 0 && ci < c.len() {
                let e = (ci + n).min(c.len());
                r.send(Side::Client, &c[ci..e], 4096);
                ci = e;
            } else if si < s.len() {
                let e = (si + n).min(s.len());
                r.send(Side::Server, &s[si..e], 4096);
                si = e;
            } else {
                ci = c.len();
            }
            if rand() % 50 == 0 {
                let side = if rand() % 2 == 0 {
                    Side::Client
                } else {
                    Side::Server
                };
                r.conn
                    .gap(side, (rand() % 100) as u32, &mut r.st, &mut r.out);
            }
            // Per direction: an HTTP/1.1 head (16 KiB, capacity doubled), a frame payload,
            // a header block (capacity doubled) and a table.
            let bound = 2 * (32 * 1024 + 3 * LIMITS.max_header_block + LIMITS.max_table_size)
                + LIMITS.max_streams * 512;
            assert!(r.conn.buffered() <= bound, "round {round}");
        }
        r.conn.close(&mut r.out);
        assert!(r.out.len() <= 20, "round {round}");
        for t in &r.out {
            let _ = t.record();
        }
    }
}

/// What a connection counts reaches the driver's named counters, under the names
/// `Protocol::counters` declares: a stream above `max_streams`, a server push, and a gap
/// inside a client HEADERS (its header decoding lost) then one across frames on the server
/// side (its direction lost, and with it its header decoding).
#[test]
fn a_session_publishes_its_counts_under_the_declared_names() {
    use crate::wire::analyzer::{Conn as Endpoints, Emit, Transport};
    use crate::wire::decode::Addr;
    use crate::wire::http::metrics::ServiceMap;
    use crate::wire::out::Out;
    use crate::wire::section::ProtocolConfig;
    use crate::wire::ProtocolStats;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let cfg = super::Http2Config {
        max_streams: 1,
        ..super::Http2Config::default()
    };
    let h2 = cfg.protocol(&super::Http2Config::connection_defaults());
    let conn = Endpoints::new(
        h2.name(),
        Transport::Tcp,
        (Addr::v4([10, 0, 0, 1]), 40000),
        (Addr::v4([10, 0, 0, 2]), 8080),
    );
    let mut s = h2.open(Transport::Tcp, &conn);
    let (input, map) = (Arc::from("h2"), ServiceMap::new(10));
    let mut out = Out::Events(Vec::new());
    let mut hand_over = None;
    let stats = ProtocolStats::new(h2.name(), h2.counters());
    let mut emit = Emit {
        conn: &conn,
        input: &input,
        out: &mut out,
        map: Some(&map),
        hand_over: &mut hand_over,
        stats: &stats,
    };
    // Stream 3 opens while stream 1 is still open: one too many.
    let get = |path: &str| block(&[(":method", "GET"), (":path", path)]);
    let end = flag::END_HEADERS | flag::END_STREAM;
    let mut client = PREFACE.to_vec();
    client.extend(frame(kind::HEADERS, end, 1, &get("/a")));
    client.extend(frame(kind::HEADERS, end, 3, &get("/b")));
    s.data(Side::Client, &client, 1_000, &mut emit);
    // The server promises a push on stream 1, then answers it (stream 1 is done).
    let mut push = 2u32.to_be_bytes().to_vec();
    push.extend(get("/style.css"));
    let mut server = frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &push);
    server.extend(frame(kind::HEADERS, end, 1, &[0x88]));
    s.data(Side::Server, &server, 2_000, &mut emit);
    // A client HEADERS whose end fell in a gap, then a server gap across frame boundaries.
    let next = frame(kind::HEADERS, end, 5, &get("/c"));
    s.data(Side::Client, &next[..12], 3_000, &mut emit);
    s.gap(Side::Client, (next.len() - 12) as u32, &mut emit);
    s.gap(Side::Server, 100_000, &mut emit);
    s.close(9_000, &mut emit);

    let named: std::collections::BTreeMap<&str, u64> = h2
        .counters()
        .iter()
        .zip(&stats.named)
        .map(|(c, (_, n))| (c.name, n.load(Ordering::Relaxed)))
        .collect();
    assert_eq!(
        named,
        [
            ("directions_lost", 1),
            // The client's, and the server's with its direction.
            ("headers_lost", 2),
            ("push_promises", 1),
            ("streams_untracked", 1),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(stats.parse_errors.load(Ordering::Relaxed), 0);
}

/// Frames that crossed a client's RST_STREAM arrive within a round trip: a reset stream on a
/// connection that then goes quiet is reported by the next sweep after a short grace, not
/// after the transaction timeout, and a sweep inside the grace keeps waiting.
#[test]
fn a_reset_stream_on_a_quiet_connection_is_reported_after_a_short_grace() {
    let mut r = Run::new();
    let mut client = PREFACE.to_vec();
    client.extend(request(1, "/a.S/One"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 1, &grpc_message(1)));
    client.extend(frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    r.send(Side::Client, &client, 4096);
    let reset_at = r.ts;
    // A sweep whose transaction deadline is long before the request.
    let deadline = 0;
    let soon = reset_at + 100_000_000;
    assert!(!r.conn.expires(deadline, soon));
    r.conn.expire(deadline, soon, &mut r.out);
    assert!(r.out.is_empty(), "reported within the grace: {:#?}", r.out);
    let later = reset_at + 3_000_000_000;
    assert!(r.conn.expires(deadline, later));
    r.conn.expire(deadline, later, &mut r.out);
    assert_eq!(r.out.len(), 1, "{:#?}", r.out);
    assert_eq!(r.out[0].stream_id, 1);
    assert_eq!(
        r.out[0].ended,
        Some(Ended::Reset {
            by_client: true,
            code: 8
        })
    );
    assert!(!r.conn.expires(deadline, later));
}
