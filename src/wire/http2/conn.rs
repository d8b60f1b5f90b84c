//! One HTTP/2 connection seen from the wire: a frame reader and an HPACK decoder per direction
//! (its start is `upgrade`'s, its header blocks `headers`'), and the open streams, each reported
//! as one transaction when it ends (END_STREAM from both sides, RST_STREAM, GOAWAY) or times out.

use super::frame::{flag, kind, Gap, Head, Reader, Step};
use super::headers::{header_fragment, Block};
use super::hpack::Decoder;
use super::transaction::{Ended, Transaction};
use crate::wire::analyzer::Side;
use std::collections::BTreeMap;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a stream the client reset waits for server frames that crossed the RST_STREAM
/// (capture time): a round trip is enough for frames in flight; this leaves room for a slow one.
const RESET_GRACE_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Streams followed at once on one connection; more are counted, not followed.
    pub max_streams: usize,
    /// Longest header block (HEADERS and its CONTINUATIONs) decoded; a longer one cannot be,
    /// which leaves HPACK unsynchronised for the rest of the direction.
    pub max_header_block: usize,
    /// Most memory a dynamic table may hold.
    pub max_table_size: usize,
    /// DNS messages exchanged as RFC 8484 says are kept and reported as `dns` events.
    pub dns_over_https: bool,
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
pub(super) enum Phase {
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

pub(super) struct Direction {
    pub(super) phase: Phase,
    /// The preface or HTTP/1.1 head read so far.
    pub(super) start: Vec<u8>,
    pub(super) reader: Reader,
    pub(super) hpack: Decoder,
    pub(super) hpack_ok: bool,
    pub(super) block: Option<Block>,
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

pub struct Conn {
    pub(super) client: Direction,
    pub(super) server: Direction,
    pub(super) limits: Limits,
    pub(super) streams: BTreeMap<u32, Transaction>,
    /// Highest stream id opened by each side: a lower one not open is closed, not new.
    pub(super) last_client_stream: u32,
    pub(super) last_server_stream: u32,
    /// The client asked for an upgrade to h2c.
    pub(super) upgrade: bool,
    /// Streams not followed since the last `data` call returned (`max_streams`).
    pub(super) untracked: u64,
    /// Capture time of the latest bytes (a gap has none of its own).
    pub(super) last_ts: i64,
    /// Streams the client reset before the server ended them, each with the client's highest
    /// stream id at the reset. The server may have sent frames on them before it read the
    /// RST_STREAM (RFC 9113 §5.1, "closed"): they stay open for those until the server ends
    /// them, answers a client stream opened after the reset (it has read past the RST_STREAM
    /// then), or `RESET_GRACE_NS` passed (frames in flight take a round trip, not the
    /// transaction timeout: a cancelled call on an idle connection is reported soon). Each
    /// entry also keeps the reset's capture time. Only streams in `streams`, so bounded by
    /// `max_streams`.
    pub(super) reset_by_client: BTreeMap<u32, (u32, i64)>,
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
            reset_by_client: BTreeMap::new(),
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
            + self
                .streams
                .values()
                .filter_map(|t| t.doh.as_deref())
                .map(|x| {
                    [&x.query, &x.response]
                        .iter()
                        .flat_map(|b| b.as_ref())
                        .map(|b| b.bytes.capacity())
                        .sum::<usize>()
                })
                .sum::<usize>()
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
                    let used = self.start(side, data, ts, st, out);
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

    pub(super) fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn step(
        &mut self,
        side: Side,
        step: Step<'_>,
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) {
        if let Step::DataStart(h) | Step::Frame(h, _) | Step::Oversize(h) = &step {
            if side == Side::Server && h.stream % 2 == 1 && !self.reset_by_client.is_empty() {
                self.server_read_past_resets(h.stream, out);
            }
        }
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
                    if let Some(x) = t.doh.as_deref_mut() {
                        let dns = match side {
                            Side::Client => &mut x.query,
                            Side::Server => &mut x.response,
                        };
                        if let Some(b) = dns {
                            b.feed(bytes);
                        }
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
                let Some(t) = self.streams.get_mut(&h.stream) else {
                    return;
                };
                add_bytes(t, side, 9 + h.len as u64);
                touch(t, side, ts);
                // The first reset is how the stream ended; a second one (the server's, on a
                // stream the client reset) only ends the wait for the server's frames.
                if t.ended.is_none() {
                    t.ended = Some(Ended::Reset {
                        by_client: side == Side::Client,
                        code: u32::from_be_bytes(code),
                    });
                }
                if side == Side::Client && !t.server_done {
                    t.client_done = true;
                    self.reset_by_client
                        .entry(h.stream)
                        .or_insert((self.last_client_stream, ts));
                } else {
                    self.report(h.stream, out);
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
                    if let Some(t) = self.streams.get_mut(&id) {
                        touch(t, side, ts);
                        t.ended.get_or_insert(Ended::GoAway { code });
                    }
                    self.report(id, out);
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

    /// The stream a frame from `side` belongs to, opened when the frame starts a new one.
    pub(super) fn stream_for_frame(
        &mut self,
        side: Side,
        id: u32,
        ts: i64,
    ) -> Option<&mut Transaction> {
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

    pub(super) fn end_stream(&mut self, side: Side, id: u32, ts: i64, out: &mut Vec<Transaction>) {
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
            self.report(id, out);
        }
    }

    /// The stream ends: reported, and no longer open.
    fn report(&mut self, id: u32, out: &mut Vec<Transaction>) {
        self.reset_by_client.remove(&id);
        if let Some(t) = self.streams.remove(&id) {
            out.push(t);
        }
    }

    /// The server sent a frame on client stream `id`: it has read every RST_STREAM the client
    /// sent before opening `id`, so nothing more comes on those streams.
    fn server_read_past_resets(&mut self, id: u32, out: &mut Vec<Transaction>) {
        let done: Vec<u32> = self
            .reset_by_client
            .iter()
            .filter(|(_, (highest, _))| *highest < id)
            .map(|(stream, _)| *stream)
            .collect();
        for stream in done {
            self.report(stream, out);
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

    /// Reports the streams that started before `deadline_ns` and have not ended, and the
    /// streams the client reset more than `RESET_GRACE_NS` before `now_ns`.
    pub fn expire(&mut self, deadline_ns: i64, now_ns: i64, out: &mut Vec<Transaction>) {
        let waited = now_ns.saturating_sub(RESET_GRACE_NS);
        let mut old: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, t)| t.req_start_ns <= deadline_ns)
            .map(|(id, _)| *id)
            .collect();
        let waited_out: Vec<u32> = self
            .reset_by_client
            .iter()
            .filter(|(id, (_, at))| *at <= waited && !old.contains(id))
            .map(|(id, _)| *id)
            .collect();
        old.extend(waited_out);
        for id in old {
            if let Some(t) = self.streams.get_mut(&id) {
                // Answered in full, the client's side still open: complete as it is. A stream
                // the client reset stays reset.
                if !t.server_done && t.ended.is_none() {
                    t.ended = Some(Ended::Incomplete);
                }
            }
            self.report(id, out);
        }
    }

    pub fn expires(&self, deadline_ns: i64, now_ns: i64) -> bool {
        let waited = now_ns.saturating_sub(RESET_GRACE_NS);
        self.streams.values().any(|t| t.req_start_ns <= deadline_ns)
            || self.reset_by_client.values().any(|(_, at)| *at <= waited)
    }

    pub fn close(&mut self, out: &mut Vec<Transaction>) {
        self.expire(i64::MAX, i64::MAX, out);
    }
}

pub(super) fn add_bytes(t: &mut Transaction, side: Side, n: u64) {
    match side {
        Side::Client => t.req_bytes += n,
        Side::Server => t.resp_bytes += n,
    }
}

/// The stream's latest activity from `side`.
pub(super) fn touch(t: &mut Transaction, side: Side, ts: i64) {
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
