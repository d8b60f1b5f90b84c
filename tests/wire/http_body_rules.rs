//! HTTP rules a passive sensor reports from hand-built captures (tests/support/tcp_pcap.rs):
//! a body a TCP gap took bytes from is incomplete as captured (RFC 9293 sequence space, the
//! hole acknowledged by the peer), and a Content-Length or a Transfer-Encoding where RFC 9110
//! section 8.6 and RFC 9112 section 6.1 forbid them.

use crate::support;

use serde_json::Value as J;
use support::pcap_run::pcap_events;
use support::tcp_pcap::{pcap_of, Conn, ACK, FIN, PSH, SYN};

/// Largest segment a side sends (an Ethernet MSS).
const MSS: usize = 1448;

/// A capture being written: connections, each a conversation built with `Talk`'s methods and
/// closed (FIN both ways) in the order they were opened when the capture is read.
#[derive(Default)]
struct Capture {
    talks: Vec<Talk>,
}

impl Capture {
    /// A new connection from client port `client_port` to port 80, handshake done.
    fn conn(&mut self, client_port: u16) -> &mut Talk {
        self.talks.push(Talk::open(client_port));
        let last = self.talks.len() - 1;
        &mut self.talks[last]
    }

    /// What trawl reports from the capture: `rows`.
    fn rows(self) -> Vec<String> {
        let mut frames = Vec::new();
        for t in self.talks {
            t.close(&mut frames);
        }
        rows(&frames)
    }
}

/// One connection's frames in order: handshake, then what each side sends, segments the
/// capture lost left out (their bytes still take sequence numbers, and the peer acknowledges
/// them, so the hole is a gap of known length).
struct Talk {
    conn: Conn,
    cs: u32,
    ss: u32,
    frames: Vec<Vec<u8>>,
}

impl Talk {
    fn open(client_port: u16) -> Talk {
        let conn = Conn {
            client_port,
            server_port: 80,
        };
        let (c0, s0) = (1000u32, 50_000u32);
        let frames = vec![
            conn.frame(true, c0, 0, SYN, b""),
            conn.frame(false, s0, c0 + 1, SYN | ACK, b""),
            conn.frame(true, c0 + 1, s0 + 1, ACK, b""),
        ];
        Talk {
            conn,
            cs: c0 + 1,
            ss: s0 + 1,
            frames,
        }
    }

    /// The client sends `data`, all of it captured.
    fn ask(&mut self, data: &[u8]) -> &mut Talk {
        self.send(true, data, MSS, &[])
    }

    /// The server sends `data`, all of it captured.
    fn answer(&mut self, data: &[u8]) -> &mut Talk {
        self.send(false, data, MSS, &[])
    }

    /// `data` from one side in segments of `seg` bytes; those numbered in `lost` are not
    /// captured. The peer then acknowledges all of it.
    fn send(&mut self, client: bool, data: &[u8], seg: usize, lost: &[usize]) -> &mut Talk {
        for (i, chunk) in data.chunks(seg).enumerate() {
            let (seq, ack) = if client {
                (self.cs, self.ss)
            } else {
                (self.ss, self.cs)
            };
            if !lost.contains(&i) {
                self.frames
                    .push(self.conn.frame(client, seq, ack, ACK | PSH, chunk));
            }
            if client {
                self.cs += chunk.len() as u32;
            } else {
                self.ss += chunk.len() as u32;
            }
        }
        let (seq, ack) = if client {
            (self.ss, self.cs)
        } else {
            (self.cs, self.ss)
        };
        self.frames
            .push(self.conn.frame(!client, seq, ack, ACK, b""));
        self
    }

    fn close(mut self, into: &mut Vec<Vec<u8>>) {
        let (cs, ss) = (self.cs, self.ss);
        self.frames
            .push(self.conn.frame(true, cs, ss, FIN | ACK, b""));
        self.frames
            .push(self.conn.frame(false, ss, cs + 1, FIN | ACK, b""));
        self.frames
            .push(self.conn.frame(true, cs + 1, ss + 1, ACK, b""));
        into.extend(self.frames);
    }
}

fn words(v: &J) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(J::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_else(|| "-".to_owned())
}

/// One line per transaction, in connection order: port, path, status, body sizes, both sides'
/// anomalies, tags, reason.
fn rows(frames: &[Vec<u8>]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("case.pcap");
    std::fs::write(&path, pcap_of(frames)).expect("write capture");
    let mut rows: Vec<(u64, String)> = pcap_events("http", &path)
        .iter()
        .map(|e| {
            (
                e["source"]["port"].as_u64().unwrap_or(0),
                format!(
                    "{} {} {} req_body={} resp_body={} req={} resp={} tags={} {}",
                    e["source"]["port"],
                    e["url"]["path"].as_str().unwrap_or("-"),
                    e["http"]["response"]["status_code"],
                    e["http"]["request"]["body"]["bytes"],
                    e["http"]["response"]["body"]["bytes"],
                    words(&e["http"]["request"]["anomalies"]),
                    words(&e["http"]["response"]["anomalies"]),
                    words(&e["tags"]),
                    e["event"]["reason"].as_str().unwrap_or("-"),
                ),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows.into_iter().map(|r| r.1).collect()
}

const AFTER: &[u8] = b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A segment lost inside a body: the body is not all there, which the event says
/// (`body_incomplete` beside the `tcp_gap` tag), whether the framing absorbs the hole (a
/// length, a chunk's data: its size still counts the lost bytes, as they were sent) or the
/// hole crosses chunk framing (the body's end is lost with it). The next message is whole.
#[test]
fn a_body_a_gap_took_bytes_from_is_incomplete() {
    let mut cap = Capture::default();
    // A response of 3,000 bytes by Content-Length, its second 1,000 lost.
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".to_vec();
    let head = resp.len();
    resp.extend([b'L'; 3000]);
    cap.conn(40101)
        .ask(b"GET /len HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(&resp[..head])
        .send(false, &resp[head..], 1000, &[1])
        .ask(AFTER)
        .answer(OK);
    // A chunked response, a lost segment crossing chunk-size lines.
    let mut body = Vec::new();
    for _ in 0..6 {
        body.extend(b"1f4\r\n");
        body.extend([b'c'; 500]);
        body.extend(b"\r\n");
    }
    body.extend(b"0\r\n\r\n");
    // Of the body, the first 1,000 bytes came: a whole chunk (507 on the wire, 500 of data)
    // and 488 of the next chunk's data; the rest of that chunk is lost with the next size line.
    cap.conn(40102)
        .ask(b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .send(false, &body, 1000, &[1])
        .ask(AFTER)
        .answer(OK);
    // An upload of 3,000 bytes, its second 1,000 lost.
    cap.conn(40103)
        .ask(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n")
        .send(true, &[b'u'; 3000], 1000, &[1])
        .answer(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .ask(AFTER)
        .answer(OK);
    // The same upload and response with nothing lost: nothing flagged.
    cap.conn(40104)
        .ask(b"POST /whole HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n")
        .send(true, &[b'u'; 3000], 1000, &[])
        .answer(&resp[..head])
        .send(false, &resp[head..], 1000, &[]);
    let got = cap.rows();
    let want = [
        "40101 /len 200 req_body=0 resp_body=3000 req=- resp=body_incomplete tags=tcp_gap -",
        "40101 /after 200 req_body=0 resp_body=2 req=- resp=- tags=- -",
        "40102 /chunked 200 req_body=0 resp_body=988 req=- resp=body_incomplete tags=tcp_gap -",
        "40102 /after 200 req_body=0 resp_body=2 req=- resp=- tags=- -",
        "40103 /up 201 req_body=3000 resp_body=0 req=body_incomplete resp=- tags=tcp_gap -",
        "40103 /after 200 req_body=0 resp_body=2 req=- resp=- tags=- -",
        "40104 /whole 200 req_body=3000 resp_body=3000 req=- resp=- tags=- -",
    ];
    assert_eq!(got, want, "as reported: {got:#?}");
}

/// RFC 9110 section 8.6: a server MUST NOT send Content-Length in a 1xx or 204 response, nor
/// in a 2xx to CONNECT. Such a length frames nothing (RFC 9112 section 6.3), but a hop that
/// reads it takes the next response for a body: the response is flagged
/// (`content_length_not_allowed`, tag `http_malformed`), an interim 1xx's on the final
/// response after it. A 304 and a response to HEAD may carry one: not flagged.
#[test]
fn a_content_length_where_rfc_9110_forbids_one_is_flagged() {
    let mut cap = Capture::default();
    cap.conn(40201)
        .ask(b"GET /nc HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        .ask(b"POST /cont HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        .answer(b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n")
        .ask(b"hi")
        .answer(OK)
        .ask(b"GET /nm HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
        .ask(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        .ask(AFTER)
        .answer(OK);
    cap.conn(40202)
        .ask(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n")
        .answer(b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n");
    cap.conn(40203)
        .ask(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n");
    let got = cap.rows();
    let bad = "resp=content_length_not_allowed tags=http_malformed";
    let want = [
        format!("40201 /nc 204 req_body=0 resp_body=0 req=- {bad} -"),
        format!("40201 /cont 200 req_body=2 resp_body=2 req=- {bad} -"),
        "40201 /nm 304 req_body=0 resp_body=0 req=- resp=- tags=- -".to_owned(),
        "40201 /h 200 req_body=0 resp_body=0 req=- resp=- tags=- -".to_owned(),
        "40201 /after 200 req_body=0 resp_body=2 req=- resp=- tags=- -".to_owned(),
        format!("40202 a:443 200 req_body=0 resp_body=0 req=- {bad} -"),
        format!("40203 /ws 101 req_body=0 resp_body=0 req=- {bad} -"),
    ];
    assert_eq!(got, want, "as reported: {got:#?}");
}

/// RFC 9112 section 6.1: a server MUST NOT send Transfer-Encoding in a 1xx or 204 response,
/// nor in a 2xx to CONNECT; and it frames nothing there (section 6.3 (1), (2)): a response to
/// HEAD and a 1xx, 204 or 304 end at the empty line after their head, a 2xx to CONNECT opens
/// the tunnel. So the exchange pipelined behind each is a transaction of its own, not a
/// chunked body. The header is flagged where 6.1 forbids it (`transfer_encoding_not_allowed`,
/// tag `http_malformed`), an interim 1xx's on the final response after it; a 304 and a
/// response to HEAD may carry one: not flagged.
#[test]
fn a_transfer_encoding_on_a_response_without_a_body_frames_nothing() {
    let mut cap = Capture::default();
    // Each time, two requests in one segment, and their two responses in one segment.
    cap.conn(40301)
        .ask(
            concat!(
                "GET /nc HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET /a1 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .as_bytes(),
        )
        .answer(
            concat!(
                "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
            .as_bytes(),
        );
    cap.conn(40302)
        .ask(
            concat!(
                "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET /a2 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .as_bytes(),
        )
        .answer(
            concat!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
            .as_bytes(),
        );
    cap.conn(40303)
        .ask(
            concat!(
                "GET /nm HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET /a3 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .as_bytes(),
        )
        .answer(
            concat!(
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
            .as_bytes(),
        );
    cap.conn(40304)
        .ask(concat!("GET /both HTTP/1.1\r\nHost: a\r\n\r\n", "GET /a4 HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .answer(concat!("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").as_bytes());
    cap.conn(40305)
        .ask(b"POST /cont HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        .answer(b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        .ask(b"hi")
        .answer(OK);
    // In the tunnel, HTTP again: read as on any connection.
    cap.conn(40306)
        .ask(b"CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n")
        .answer(b"HTTP/1.1 200 Connection Established\r\nTransfer-Encoding: chunked\r\n\r\n")
        .ask(b"GET /in HTTP/1.1\r\nHost: a\r\n\r\n")
        .answer(OK);
    cap.conn(40307)
        .ask(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n");
    let got = cap.rows();
    let bad = "resp=transfer_encoding_not_allowed tags=http_malformed";
    let after = |port: u16, path: &str| {
        format!("{port} {path} 200 req_body=0 resp_body=2 req=- resp=- tags=- -")
    };
    let want = [
        format!("40301 /nc 204 req_body=0 resp_body=0 req=- {bad} -"),
        after(40301, "/a1"),
        "40302 /h 200 req_body=0 resp_body=0 req=- resp=- tags=- -".to_owned(),
        after(40302, "/a2"),
        "40303 /nm 304 req_body=0 resp_body=0 req=- resp=- tags=- -".to_owned(),
        after(40303, "/a3"),
        "40304 /both 204 req_body=0 resp_body=0 req=- resp=content_length_not_allowed,transfer_encoding_not_allowed tags=http_malformed -".to_owned(),
        after(40304, "/a4"),
        format!("40305 /cont 200 req_body=2 resp_body=2 req=- {bad} -"),
        format!("40306 a:80 200 req_body=0 resp_body=0 req=- {bad} -"),
        after(40306, "/in"),
        format!("40307 /ws 101 req_body=0 resp_body=0 req=- {bad} -"),
    ];
    assert_eq!(got, want, "as reported: {got:#?}");
}
