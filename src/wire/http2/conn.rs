//! One HTTP/2 connection seen from the wire: how it starts (prior knowledge, or an HTTP/1.1
//! `Upgrade: h2c` answered by 101), a frame reader and an HPACK decoder per direction, and the
//! open streams, each reported as one transaction when it ends (END_STREAM from both sides,
//! RST_STREAM, GOAWAY) or times out.

use super::frame::{flag, kind, Gap, Head, Reader, Step};
use super::grpc;
use super::hpack::Decoder;
use super::transaction::{Ended, Request, Response, Trailers, Transaction};
use crate::wire::analyzer::Side;
use std::collections::BTreeMap;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest HTTP/1.1 head read before an upgrade.
const MAX_H1_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Streams followed at once on one connection; more are counted, not followed.
    pub max_streams: usize,
    /// Longest header block (HEADERS and its CONTINUATIONs) decoded; a longer one cannot be,
    /// which leaves HPACK unsynchronised for the rest of the direction.
    pub max_header_block: usize,
    /// Most memory a dynamic table may hold.
    pub max_table_size: usize,
}

/// Counters the analyzer publishes (`malformed` as the protocol's parse errors).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnStats {
    /// Frames that break the protocol, and connections that were not HTTP/2 after all.
    pub malformed: u64,
    /// Directions whose header blocks stopped being decoded (gap, HPACK error, oversize).
    pub headers_lost: u64,
    /// Directions whose frame boundaries were lost to a gap.
    pub directions_lost: u64,
    /// Streams not followed because `max_streams` were open.
    pub streams_untracked: u64,
    pub push_promises: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// The first bytes: the preface, an HTTP/1.1 upgrade request, or (server) a 101 or frames.
    Start,
    /// Client: the upgrade request was read, the preface comes after the 101.
    AwaitPreface,
    /// Client: an upgrade request's body of this many bytes is still to come.
    UpgradeBody(usize),
    Frames,
    /// Not followed any more (not HTTP/2, or frame boundaries lost).
    Stopped,
}

/// A header block being put together from HEADERS or PUSH_PROMISE and its CONTINUATIONs.
struct Block {
    stream: u32,
    /// The stream a PUSH_PROMISE promises.
    promised: Option<u32>,
    end_stream: bool,
    bytes: Vec<u8>,
    /// Too long to keep: decoded never.
    dropped: bool,
}

struct Direction {
    phase: Phase,
    /// The preface or HTTP/1.1 head read so far.
    start: Vec<u8>,
    reader: Reader,
    hpack: Decoder,
    hpack_ok: bool,
    block: Option<Block>,
}

impl Direction {
    fn new(l: &Limits) -> Direction {
        Direction {
            phase: Phase::Start,
            start: Vec::new(),
            reader: Reader::new(l.max_header_block),
            hpack: Decoder::new(l.max_table_size),
            hpack_ok: true,
            block: None,
        }
    }
}

/// The header fields a transaction keeps, picked from a block.
#[derive(Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    scheme: Option<String>,
    status: Option<String>,
    content_type: Option<String>,
    user_agent: Option<String>,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
}

impl Fields {
    fn take(&mut self, name: &str, value: &str) {
        let slot = match name {
            ":method" => &mut self.method,
            ":path" => &mut self.path,
            ":authority" | "host" => &mut self.authority,
            ":scheme" => &mut self.scheme,
            ":status" => &mut self.status,
            "content-type" => &mut self.content_type,
            "user-agent" => &mut self.user_agent,
            "grpc-status" => &mut self.grpc_status,
            "grpc-message" => &mut self.grpc_message,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value.to_owned());
        }
    }

    fn request(&mut self) -> Option<Request> {
        Some(Request {
            method: self.method.take()?,
            path: self.path.take().unwrap_or_default(),
            authority: self.authority.take(),
            scheme: self.scheme.take(),
            content_type: self.content_type.take(),
            user_agent: self.user_agent.take(),
        })
    }
}

pub struct Conn {
    client: Direction,
    server: Direction,
    limits: Limits,
    streams: BTreeMap<u32, Transaction>,
    /// Highest stream id opened by each side: a lower one not open is closed, not new.
    last_client_stream: u32,
    last_server_stream: u32,
    /// The client asked for an upgrade to h2c.
    upgrade: bool,
    /// Streams not followed since the last `data` call returned (`max_streams`).
    untracked: u64,
    /// Capture time of the latest bytes (a gap has none of its own).
    last_ts: i64,
}

impl Conn {
    pub fn new(limits: Limits) -> Conn {
        Conn {
            client: Direction::new(&limits),
            server: Direction::new(&limits),
            limits,
            streams: BTreeMap::new(),
            last_client_stream: 0,
            last_server_stream: 0,
            upgrade: false,
            untracked: 0,
            last_ts: 0,
        }
    }

    /// Bytes held, for the memory bound.
    pub fn buffered(&self) -> usize {
        [&self.client, &self.server]
            .iter()
            .map(|d| {
                d.start.capacity()
                    + d.reader.held()
                    + d.hpack.size()
                    + d.block.as_ref().map_or(0, |b| b.bytes.capacity())
            })
            .sum::<usize>()
            + self.streams.len() * 512
    }

    pub fn data(
        &mut self,
        side: Side,
        data: &[u8],
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        self.last_ts = ts;
        self.frames(side, data, ts, st, out);
        st.streams_untracked += std::mem::take(&mut self.untracked);
    }

    fn frames(
        &mut self,
        side: Side,
        mut data: &[u8],
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        loop {
            let dir = self.dir(side);
            match dir.phase {
                Phase::Stopped => return,
                Phase::Frames => break,
                _ if data.is_empty() => return,
                Phase::UpgradeBody(left) => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    dir.phase = if left == n {
                        Phase::AwaitPreface
                    } else {
                        Phase::UpgradeBody(left - n)
                    };
                    if let Some(t) = self.streams.get_mut(&1) {
                        t.req_body_bytes += n as u64;
                        t.req_bytes += n as u64;
                        t.client_done = left == n;
                    }
                }
                Phase::Start | Phase::AwaitPreface => {
                    let used = self.start(side, data, ts, st);
                    data = &data[used..];
                }
            }
        }
        let mut at = 0;
        while let Some(step) = self.dir(side).reader.next(data, &mut at) {
            self.step(side, step, ts, st, out);
            if self.dir(side).phase != Phase::Frames {
                return;
            }
        }
    }

    fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Reads the start of a direction; returns the bytes used.
    fn start(&mut self, side: Side, data: &[u8], ts: i64, st: &mut ConnStats) -> usize {
        let upgrade = self.upgrade;
        let dir = self.dir(side);
        let before = dir.start.len();
        // The preface (client) or a frame (server, prior knowledge) need no HTTP/1 head.
        let first = if before > 0 { dir.start[0] } else { data[0] };
        let h1 = match side {
            Side::Client => first != b'P',
            Side::Server => upgrade || first == b'H',
        };
        if side == Side::Client && !h1 {
            let n = (PREFACE.len() - before).min(data.len());
            dir.start.extend_from_slice(&data[..n]);
            if dir.start.len() < PREFACE.len() && PREFACE.starts_with(&dir.start) {
                return n;
            }
            if dir.start == PREFACE {
                dir.phase = Phase::Frames;
            } else {
                st.malformed += 1;
                dir.phase = Phase::Stopped;
            }
            dir.start = Vec::new();
            return n;
        }
        if !h1 {
            dir.phase = Phase::Frames;
            return 0;
        }
        // An HTTP/1.1 head: the client's upgrade request, or the server's answer to it.
        let n = data.len().min(MAX_H1_HEAD + 4 - before);
        dir.start.extend_from_slice(&data[..n]);
        let Some(end) = dir.start.windows(4).position(|w| w == b"\r\n\r\n") else {
            if dir.start.len() >= MAX_H1_HEAD {
                st.malformed += 1;
                dir.phase = Phase::Stopped;
            }
            return n;
        };
        let head = std::mem::take(&mut dir.start);
        let used = (end + 4) - before;
        let text = String::from_utf8_lossy(&head[..end]);
        match side {
            Side::Client => self.upgrade_request(&text, end + 4, ts, st),
            Side::Server => {
                let dir = self.dir(side);
                let status = text.split(' ').nth(1).unwrap_or("");
                if text.starts_with("HTTP/1.") && status == "101" {
                    dir.phase = Phase::Frames;
                } else {
                    // Not upgraded: the connection stays HTTP/1.1 (the `http` decoder's).
                    st.malformed += 1;
                    dir.phase = Phase::Stopped;
                    self.client.phase = Phase::Stopped;
                    self.streams.clear();
                }
            }
        }
        used
    }

    /// An HTTP/1.1 request asking for `Upgrade: h2c` becomes stream 1 (RFC 7540 §3.2).
    fn upgrade_request(&mut self, text: &str, head_len: usize, ts: i64, st: &mut ConnStats) {
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let mut f = Fields::default();
        let (mut h2c, mut body) = (false, 0usize);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "upgrade" => {
                    h2c |= value
                        .split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("h2c"))
                }
                "content-length" => body = value.parse().unwrap_or(0),
                _ => f.take(&name, value),
            }
        }
        let (Some(method), Some(target), Some(v)) = (method, target, version) else {
            st.malformed += 1;
            self.client.phase = Phase::Stopped;
            return;
        };
        if !h2c || !v.starts_with("HTTP/1.") {
            // Plain HTTP/1.1 on a port given to http2: not ours to decode.
            st.malformed += 1;
            self.client.phase = Phase::Stopped;
            self.server.phase = Phase::Stopped;
            return;
        }
        self.upgrade = true;
        self.last_client_stream = 1;
        let body = body.min(u32::MAX as usize);
        self.streams.insert(
            1,
            Transaction {
                stream_id: 1,
                request: Some(Request {
                    method: method.to_owned(),
                    path: target.to_owned(),
                    authority: f.authority.take(),
                    scheme: Some("http".to_owned()),
                    content_type: f.content_type.take(),
                    user_agent: f.user_agent.take(),
                }),
                req_start_ns: ts,
                req_end_ns: ts,
                req_header_bytes: head_len as u64,
                req_bytes: head_len as u64,
                client_done: body == 0,
                ..Default::default()
            },
        );
        self.client.phase = if body > 0 {
            Phase::UpgradeBody(body)
        } else {
            Phase::AwaitPreface
        };
    }

    fn step(
        &mut self,
        side: Side,
        step: Step<'_>,
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        match step {
            Step::DataStart(h) => {
                if let Some(t) = self.stream_for_frame(side, h.stream, ts) {
                    add_bytes(t, side, 9 + h.len as u64);
                }
            }
            Step::Data(h, bytes) => {
                if let Some(t) = self.streams.get_mut(&h.stream) {
                    let (body, msgs) = match side {
                        Side::Client => (&mut t.req_body_bytes, &mut t.req_messages),
                        Side::Server => (&mut t.resp_body_bytes, &mut t.resp_messages),
                    };
                    *body += bytes.len() as u64;
                    if t.grpc {
                        msgs.feed(bytes);
                    }
                    touch(t, side, ts);
                }
            }
            Step::DataEnd(h) => {
                if h.has(flag::END_STREAM) {
                    self.end_stream(side, h.stream, ts, out);
                }
            }
            Step::BadPadding(_) => st.malformed += 1,
            Step::Oversize(h) => {
                if matches!(
                    h.kind,
                    kind::HEADERS | kind::CONTINUATION | kind::PUSH_PROMISE
                ) {
                    // The block cannot be decoded, so the table's later state is unknown.
                    self.lose_headers(side, st);
                    if let Some(t) = self.stream_for_frame(side, h.stream, ts) {
                        t.headers_lost = true;
                        add_bytes(t, side, 9 + h.len as u64);
                    }
                    if h.kind != kind::PUSH_PROMISE && h.has(flag::END_STREAM) {
                        self.end_stream(side, h.stream, ts, out);
                    }
                } else {
                    st.malformed += 1;
                }
            }
            Step::Frame(h, payload) => self.frame(side, h, payload, ts, st, out),
        }
    }

    fn frame(
        &mut self,
        side: Side,
        h: Head,
        payload: Vec<u8>,
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        let pending = self.dir(side).block.is_some();
        if pending && h.kind != kind::CONTINUATION {
            // A header block must be followed by its CONTINUATIONs and nothing else.
            st.malformed += 1;
            self.dir(side).block = None;
            self.lose_headers(side, st);
        }
        match h.kind {
            kind::HEADERS | kind::PUSH_PROMISE => {
                let Some(fragment) = header_fragment(&h, &payload) else {
                    st.malformed += 1;
                    self.lose_headers(side, st);
                    return;
                };
                let promised = (h.kind == kind::PUSH_PROMISE).then(|| {
                    st.push_promises += 1;
                    u32::from_be_bytes([fragment[0] & 0x7f, fragment[1], fragment[2], fragment[3]])
                });
                let fragment = match promised {
                    Some(_) => &fragment[4..],
                    None => fragment,
                };
                if let Some(t) = self.stream_for_frame(side, h.stream, ts) {
                    add_bytes(t, side, 9 + h.len as u64);
                    match side {
                        Side::Client => t.req_header_bytes += fragment.len() as u64,
                        Side::Server => t.resp_header_bytes += fragment.len() as u64,
                    }
                }
                let block = Block {
                    stream: h.stream,
                    promised,
                    end_stream: h.kind == kind::HEADERS && h.has(flag::END_STREAM),
                    bytes: fragment.to_vec(),
                    dropped: false,
                };
                self.dir(side).block = Some(block);
                if h.has(flag::END_HEADERS) {
                    self.finish_block(side, ts, st, out);
                }
            }
            kind::CONTINUATION => {
                let max = self.limits.max_header_block;
                let dir = self.dir(side);
                let hpack_ok = dir.hpack_ok;
                let Some(b) = dir.block.as_mut().filter(|b| b.stream == h.stream) else {
                    // After a gap took the HEADERS, its CONTINUATIONs are expected.
                    if hpack_ok {
                        st.malformed += 1;
                        self.lose_headers(side, st);
                    }
                    return;
                };
                if b.bytes.len() + payload.len() > max {
                    b.dropped = true;
                    b.bytes = Vec::new();
                } else if !b.dropped {
                    b.bytes.extend_from_slice(&payload);
                }
                if let Some(t) = self.streams.get_mut(&h.stream) {
                    add_bytes(t, side, 9 + h.len as u64);
                    match side {
                        Side::Client => t.req_header_bytes += payload.len() as u64,
                        Side::Server => t.resp_header_bytes += payload.len() as u64,
                    }
                }
                if h.has(flag::END_HEADERS) {
                    self.finish_block(side, ts, st, out);
                }
            }
            kind::RST_STREAM => {
                let Ok(code) = <[u8; 4]>::try_from(payload.as_slice()) else {
                    st.malformed += 1;
                    return;
                };
                if let Some(mut t) = self.streams.remove(&h.stream) {
                    add_bytes(&mut t, side, 9 + h.len as u64);
                    touch(&mut t, side, ts);
                    t.ended = Some(Ended::Reset {
                        by_client: side == Side::Client,
                        code: u32::from_be_bytes(code),
                    });
                    out.push(t);
                }
            }
            kind::GOAWAY => {
                if payload.len() < 8 {
                    st.malformed += 1;
                    return;
                }
                let last =
                    u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]]);
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                // The sender did not and will not process the peer's streams above `last`.
                let peers = if side == Side::Server { 1 } else { 0 };
                let refused: Vec<u32> = self
                    .streams
                    .range(last.saturating_add(1)..)
                    .map(|(id, _)| *id)
                    .filter(|id| id % 2 == peers)
                    .collect();
                for id in refused {
                    if let Some(mut t) = self.streams.remove(&id) {
                        touch(&mut t, side, ts);
                        t.ended = Some(Ended::GoAway { code });
                        out.push(t);
                    }
                }
            }
            kind::SETTINGS if !payload.len().is_multiple_of(6) => st.malformed += 1,
            kind::PING if payload.len() != 8 => st.malformed += 1,
            kind::WINDOW_UPDATE if payload.len() != 4 => st.malformed += 1,
            kind::PRIORITY if payload.len() != 5 => st.malformed += 1,
            // SETTINGS, PING, WINDOW_UPDATE, PRIORITY and extension frames: nothing to report.
            _ => {}
        }
    }

    /// A complete header block: decoded (while HPACK is in step) and given to its stream.
    fn finish_block(
        &mut self,
        side: Side,
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        let Some(b) = self.dir(side).block.take() else {
            return;
        };
        let mut f = Fields::default();
        let mut decoded = false;
        if b.dropped {
            self.lose_headers(side, st);
        } else if self.dir(side).hpack_ok {
            let r = self
                .dir(side)
                .hpack
                .decode(&b.bytes, &mut |n, v| f.take(n, v));
            match r {
                Ok(()) => decoded = true,
                Err(_) => {
                    st.malformed += 1;
                    self.lose_headers(side, st);
                }
            }
        }
        if let Some(promised) = b.promised {
            // The server's promise is the request of a stream it will answer on its own.
            if promised > self.last_server_stream && self.streams.len() < self.limits.max_streams {
                self.last_server_stream = promised;
                let request = if decoded { f.request() } else { None };
                self.streams.insert(
                    promised,
                    Transaction {
                        stream_id: promised,
                        request,
                        req_start_ns: ts,
                        req_end_ns: ts,
                        client_done: true,
                        pushed: true,
                        headers_lost: !decoded,
                        ..Default::default()
                    },
                );
            }
            return;
        }
        let Some(t) = self.streams.get_mut(&b.stream) else {
            return;
        };
        touch(t, side, ts);
        if !decoded {
            t.headers_lost = true;
        } else {
            match side {
                Side::Client if t.request.is_none() => {
                    t.request = f.request();
                    t.grpc = t
                        .request
                        .as_ref()
                        .and_then(|r| r.content_type.as_deref())
                        .is_some_and(grpc::is_grpc);
                }
                // Trailers of a request (rare): nothing kept.
                Side::Client => {}
                Side::Server => {
                    let status: Option<u16> = f.status.as_deref().and_then(|s| s.parse().ok());
                    match status {
                        // Interim (100 Continue, 103 Early Hints): the final response follows.
                        Some(s) if s < 200 => {}
                        Some(s) if t.response.is_none() => {
                            let ct = f.content_type.take();
                            t.grpc |= ct.as_deref().is_some_and(grpc::is_grpc);
                            t.response = Some(Response {
                                status: Some(s),
                                content_type: ct,
                            });
                        }
                        _ => {}
                    }
                    // Trailers, or a trailers-only response.
                    if f.grpc_status.is_some() || (status.is_none() && t.response.is_some()) {
                        t.trailers = Some(Trailers {
                            grpc_status: f.grpc_status.as_deref().and_then(|s| s.parse().ok()),
                            grpc_message: f.grpc_message.as_deref().map(grpc::decode_message),
                        });
                    }
                }
            }
        }
        if b.end_stream {
            self.end_stream(side, b.stream, ts, out);
        }
    }

    /// The stream a frame from `side` belongs to, opened when the frame starts a new one.
    fn stream_for_frame(&mut self, side: Side, id: u32, ts: i64) -> Option<&mut Transaction> {
        if id == 0 {
            return None;
        }
        if !self.streams.contains_key(&id) {
            // Streams are opened in increasing order: a lower id that is not open has ended.
            let last = if id % 2 == 1 {
                &mut self.last_client_stream
            } else {
                &mut self.last_server_stream
            };
            if id <= *last {
                return None;
            }
            if self.streams.len() >= self.limits.max_streams {
                *last = id;
                self.untracked += 1;
                return None;
            }
            *last = id;
            self.streams.insert(
                id,
                Transaction {
                    stream_id: id,
                    req_start_ns: ts,
                    req_end_ns: if side == Side::Client { ts } else { 0 },
                    ..Default::default()
                },
            );
        }
        self.streams.get_mut(&id)
    }

    fn end_stream(&mut self, side: Side, id: u32, ts: i64, out: &mut Vec<Transaction>) {
        let Some(t) = self.streams.get_mut(&id) else {
            return;
        };
        touch(t, side, ts);
        match side {
            Side::Client => t.client_done = true,
            Side::Server => t.server_done = true,
        }
        // Both ends: a server may answer before the request body ends (an early error),
        // and the body that follows is still the request's.
        if t.server_done && t.client_done {
            if let Some(t) = self.streams.remove(&id) {
                out.push(t);
            }
        }
    }

    /// The direction's header blocks stop being decoded (counted once per direction).
    fn lose_headers(&mut self, side: Side, st: &mut ConnStats) {
        let dir = self.dir(side);
        if dir.hpack_ok {
            dir.hpack_ok = false;
            st.headers_lost += 1;
            // The table's contents are of no further use.
            dir.hpack = Decoder::new(0);
        }
    }

    pub fn gap(&mut self, side: Side, len: u32, st: &mut ConnStats, out: &mut Vec<Transaction>) {
        if self.dir(side).phase != Phase::Frames {
            // Before the frames start, where they start is unknown.
            let dir = self.dir(side);
            if dir.phase != Phase::Stopped {
                dir.phase = Phase::Stopped;
                st.directions_lost += 1;
            }
            return;
        }
        match self.dir(side).reader.gap(len as usize) {
            Gap::InData(h, lost) => {
                if let Some(t) = self.streams.get_mut(&h.stream) {
                    t.gap = true;
                    let (body, msgs) = match side {
                        Side::Client => (&mut t.req_body_bytes, &mut t.req_messages),
                        Side::Server => (&mut t.resp_body_bytes, &mut t.resp_messages),
                    };
                    *body += lost;
                    msgs.gap(lost);
                }
            }
            Gap::InFrame(h) => {
                if matches!(
                    h.kind,
                    kind::HEADERS | kind::CONTINUATION | kind::PUSH_PROMISE
                ) {
                    self.dir(side).block = None;
                    self.lose_headers(side, st);
                }
                // A lost HEADERS still opens its stream, and its flags still count.
                let ts = self.last_ts;
                let opens = h.kind == kind::HEADERS;
                let t = match opens {
                    true => self.stream_for_frame(side, h.stream, ts),
                    false => self.streams.get_mut(&h.stream),
                };
                if let Some(t) = t {
                    t.gap = true;
                    t.headers_lost |= opens || h.kind == kind::CONTINUATION;
                    add_bytes(t, side, 9 + h.len as u64);
                }
                st.streams_untracked += std::mem::take(&mut self.untracked);
                if opens && h.has(flag::END_STREAM) {
                    self.end_stream(side, h.stream, ts, out);
                }
            }
            Gap::Lost => {
                self.lose_headers(side, st);
                self.dir(side).phase = Phase::Stopped;
                st.directions_lost += 1;
                for t in self.streams.values_mut() {
                    t.gap = true;
                }
            }
        }
    }

    /// Reports the streams that started before `deadline_ns` and have not ended.
    pub fn expire(&mut self, deadline_ns: i64, out: &mut Vec<Transaction>) {
        let old: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, t)| t.req_start_ns <= deadline_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(mut t) = self.streams.remove(&id) {
                // Answered in full, the client's side still open: complete as it is.
                if !t.server_done {
                    t.ended = Some(Ended::Incomplete);
                }
                out.push(t);
            }
        }
    }

    pub fn expires(&self, deadline_ns: i64) -> bool {
        self.streams.values().any(|t| t.req_start_ns <= deadline_ns)
    }

    pub fn close(&mut self, out: &mut Vec<Transaction>) {
        self.expire(i64::MAX, out);
    }
}

fn add_bytes(t: &mut Transaction, side: Side, n: u64) {
    match side {
        Side::Client => t.req_bytes += n,
        Side::Server => t.resp_bytes += n,
    }
}

/// The stream's latest activity from `side`.
fn touch(t: &mut Transaction, side: Side, ts: i64) {
    match side {
        Side::Client => t.req_end_ns = t.req_end_ns.max(ts),
        Side::Server => {
            if t.resp_start_ns == 0 {
                t.resp_start_ns = ts;
            }
            t.resp_end_ns = t.resp_end_ns.max(ts);
        }
    }
}

/// A HEADERS or PUSH_PROMISE payload without its padding and priority fields (§6.2, §6.6);
/// `None` when they do not fit. A PUSH_PROMISE's fragment still starts with the promised id.
fn header_fragment<'a>(h: &Head, p: &'a [u8]) -> Option<&'a [u8]> {
    let mut p = p;
    let mut pad = 0usize;
    if h.has(flag::PADDED) {
        let (&n, rest) = p.split_first()?;
        pad = n as usize;
        p = rest;
    }
    if h.kind == kind::HEADERS && h.has(flag::PRIORITY) {
        p = p.get(5..)?;
    }
    if h.kind == kind::PUSH_PROMISE && p.len() < 4 {
        return None;
    }
    p.get(..p.len().checked_sub(pad)?)
}
