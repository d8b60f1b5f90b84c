//! TCP reassembly of one direction of a connection: in-order bytes are handed on at once,
//! out-of-order segments wait within a per-stream and a global byte budget, and a hole that
//! will never be filled (the peer acknowledged past it, a budget ran out, the stream ends) is
//! reported as a gap of known length so that the parser above can resume after it.

use super::decode::tcp_flags;
use std::collections::VecDeque;

/// Most segments held out of order per direction. A hole lost before the capture point is
/// filled a round trip later, while the sender goes on sending a whole window (hundreds of
/// full-size segments); the byte budgets are the real bound, this one keeps many tiny
/// segments from costing more than their bytes say.
const MAX_PENDING_SEGMENTS: usize = 1024;

/// What reassembly hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// Bytes that were never captured.
    Gap(u32),
}

/// Bytes buffered out of order across every stream, shared by one analyzer.
#[derive(Debug)]
pub struct Budget {
    pub used: usize,
    pub limit: usize,
    /// Segments given up on (budget exhausted): counted as gaps.
    pub overflows: u64,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            used: 0,
            limit,
            overflows: 0,
        }
    }
}

fn after(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

#[derive(Debug, Default)]
pub struct Stream {
    /// Next sequence number expected; `None` until the first segment.
    next: Option<u32>,
    /// Out-of-order segments in sequence order (all after `next` when stored, so the order
    /// holds as `next` advances).
    pending: VecDeque<(u32, Vec<u8>)>,
    pending_bytes: usize,
    pub saw_syn: bool,
    pub fin: bool,
    /// Sequence number the FIN occupies (after the last data byte): acknowledging it
    /// acknowledges no data.
    fin_seq: Option<u32>,
}

impl Stream {
    /// Bytes held out of order, counted in the protocol's budget.
    pub fn buffered(&self) -> usize {
        self.pending_bytes
    }

    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Feeds one segment whose last `truncated` bytes were cut by the capture's snaplen;
    /// in-order data and gaps go to `sink`.
    #[allow(clippy::too_many_arguments)]
    pub fn segment_truncated(
        &mut self,
        seq: u32,
        flags: u8,
        payload: &[u8],
        truncated: u32,
        per_stream: usize,
        budget: &mut Budget,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        self.segment(seq, flags, payload, per_stream, budget, sink);
        if truncated > 0
            && self.next
                == Some(
                    seq.wrapping_add((flags & tcp_flags::SYN != 0) as u32)
                        .wrapping_add(payload.len() as u32),
                )
        {
            // The cut tail will never come: a gap now, rather than when the peer acknowledges.
            sink(Chunk::Gap(truncated));
            self.next = self.next.map(|n| n.wrapping_add(truncated));
            self.drain(budget, sink);
        }
    }

    /// Feeds one segment; in-order data and gaps go to `sink`.
    pub fn segment(
        &mut self,
        seq: u32,
        flags: u8,
        payload: &[u8],
        per_stream: usize,
        budget: &mut Budget,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        let mut seq = seq;
        if flags & tcp_flags::SYN != 0 {
            self.saw_syn = true;
            if self.next.is_none() {
                self.next = Some(seq.wrapping_add(1));
            }
            seq = seq.wrapping_add(1);
        }
        if flags & tcp_flags::FIN != 0 {
            self.fin = true;
            self.fin_seq = Some(seq.wrapping_add(payload.len() as u32));
        }
        if payload.is_empty() {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let off = after(seq, next);
        if off <= 0 {
            let skip = (-(off as i64)) as usize;
            if skip < payload.len() {
                let fresh = &payload[skip..];
                self.next = Some(next.wrapping_add(fresh.len() as u32));
                sink(Chunk::Data(fresh));
                self.drain(budget, sink);
            }
            return;
        }
        // A hole before this segment: wait for it, within the budgets. A copy of a segment
        // already waiting (a retransmission, a duplicate) takes no room.
        let at = self.pending.partition_point(|(s, _)| after(*s, seq) < 0);
        let end = seq.wrapping_add(payload.len() as u32);
        let covers = |(s, d): &(u32, Vec<u8>)| {
            after(*s, seq) <= 0 && after(s.wrapping_add(d.len() as u32), end) >= 0
        };
        if (at > 0 && covers(&self.pending[at - 1])) || self.pending.get(at).is_some_and(covers) {
            return;
        }
        if self.pending_bytes + payload.len() <= per_stream
            && budget.used + payload.len() <= budget.limit
            && self.pending.len() < MAX_PENDING_SEGMENTS
        {
            self.pending_bytes += payload.len();
            budget.used += payload.len();
            self.pending.insert(at, (seq, payload.to_vec()));
            return;
        }
        budget.overflows += 1;
        // Out of room: give the hole up now, then hand on this segment and what follows it.
        self.skip_to_first_pending(seq, budget, sink);
        let next = self.next.unwrap_or(seq);
        let off = after(seq, next);
        if off > 0 {
            sink(Chunk::Gap(off as u32));
            self.next = Some(seq);
        }
        let next = self.next.unwrap_or(seq);
        let skip = (-(after(seq, next) as i64)).max(0) as usize;
        if skip < payload.len() {
            self.next = Some(next.wrapping_add((payload.len() - skip) as u32));
            sink(Chunk::Data(&payload[skip..]));
        }
        self.drain(budget, sink);
    }

    /// The peer acknowledged `ack`: bytes before it that we never saw are a gap for good.
    /// Only data counts: the SYN and FIN each take a sequence number that holds no byte.
    pub fn acked(&mut self, ack: u32, budget: &mut Budget, sink: &mut dyn FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        let ack = match self.fin_seq {
            Some(fin) if after(ack, fin) > 0 => fin,
            _ => ack,
        };
        let off = after(ack, next);
        // Sanity bound: an ACK far ahead is garbage or a different connection, not a gap.
        if off > 0 && off < (1 << 24) {
            // Pending segments are sorted and all after `next` (drained as it advances).
            let first_pending = self
                .pending
                .front()
                .map(|(s, _)| after(*s, next))
                .filter(|o| *o > 0);
            let hole = match first_pending {
                Some(p) => p.min(off),
                None => off,
            };
            sink(Chunk::Gap(hole as u32));
            self.next = Some(next.wrapping_add(hole as u32));
            self.drain(budget, sink);
        }
    }

    /// Hands on everything buffered, with gaps for the holes (end of stream).
    pub fn flush(&mut self, budget: &mut Budget, sink: &mut dyn FnMut(Chunk<'_>)) {
        while !self.pending.is_empty() {
            let Some(next) = self.next else { break };
            let min = self
                .pending
                .iter()
                .map(|(s, _)| after(*s, next))
                .min()
                .unwrap_or(0);
            if min > 0 {
                sink(Chunk::Gap(min as u32));
                self.next = Some(next.wrapping_add(min as u32));
            }
            let before = self.pending.len();
            self.drain(budget, sink);
            if self.pending.len() == before {
                break;
            }
        }
        self.release(budget);
    }

    /// Returns the buffered bytes to the budget (stream dropped).
    pub fn release(&mut self, budget: &mut Budget) {
        budget.used = budget.used.saturating_sub(self.pending_bytes);
        self.pending_bytes = 0;
        self.pending.clear();
    }

    fn skip_to_first_pending(
        &mut self,
        upto: u32,
        budget: &mut Budget,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        let Some(next) = self.next else { return };
        if let Some(first) = self
            .pending
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| after(*s, upto) < 0)
            .min_by_key(|s| after(*s, next))
        {
            let off = after(first, next);
            if off > 0 {
                sink(Chunk::Gap(off as u32));
                self.next = Some(first);
            }
            self.drain(budget, sink);
        }
    }

    /// Hands on pending segments that have become in-order (the first ones: they are sorted).
    fn drain(&mut self, budget: &mut Budget, sink: &mut dyn FnMut(Chunk<'_>)) {
        loop {
            let Some(next) = self.next else { return };
            if self
                .pending
                .front()
                .is_none_or(|(s, _)| after(*s, next) > 0)
            {
                return;
            }
            let Some((s, data)) = self.pending.pop_front() else {
                return;
            };
            self.pending_bytes -= data.len();
            budget.used = budget.used.saturating_sub(data.len());
            let skip = (-(after(s, next) as i64)) as usize;
            if skip < data.len() {
                self.next = Some(next.wrapping_add((data.len() - skip) as u32));
                sink(Chunk::Data(&data[skip..]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stream: &mut Stream, budget: &mut Budget, segs: &[(u32, &[u8])]) -> Vec<String> {
        let mut out = Vec::new();
        for (seq, d) in segs {
            stream.segment(*seq, tcp_flags::ACK, d, 1 << 16, budget, &mut |c| {
                out.push(fmt(c))
            });
        }
        out
    }

    fn fmt(c: Chunk<'_>) -> String {
        match c {
            Chunk::Data(d) => String::from_utf8_lossy(d).into_owned(),
            Chunk::Gap(n) => format!("<gap {n}>"),
        }
    }

    #[test]
    fn reorders_and_drops_retransmissions() {
        let mut s = Stream::default();
        let mut b = Budget::new(1 << 20);
        let mut out = Vec::new();
        s.segment(99, tcp_flags::SYN, b"", 1 << 16, &mut b, &mut |c| {
            out.push(fmt(c))
        });
        out.extend(run(
            &mut s,
            &mut b,
            &[
                (100, b"abc"),
                (106, b"ghi"),
                (103, b"def"),
                (100, b"abcdef"),
                (104, b"efghijk"),
            ],
        ));
        assert_eq!(out.concat(), "abcdefghijk");
        assert_eq!(b.used, 0);
    }

    #[test]
    fn acked_hole_is_a_gap_and_wraparound_works() {
        let mut s = Stream::default();
        let mut b = Budget::new(1 << 20);
        let start = u32::MAX - 2;
        let mut out = run(
            &mut s,
            &mut b,
            &[(start, b"ab"), (start.wrapping_add(5), b"xyz")],
        );
        s.acked(start.wrapping_add(8), &mut b, &mut |c| out.push(fmt(c)));
        assert_eq!(out, vec!["ab", "<gap 3>", "xyz"]);
    }

    /// A FIN takes one sequence number: the peer's ACK of it, a keep-alive probe (one byte
    /// below the next expected) and its answer, a retransmission: none of these is a gap.
    #[test]
    fn fin_keepalive_and_retransmission_are_not_gaps() {
        let mut s = Stream::default();
        let mut b = Budget::new(1 << 20);
        let mut out = Vec::new();
        let mut sink = |c: Chunk<'_>| out.push(fmt(c));
        s.segment(999, tcp_flags::SYN, b"", 1 << 16, &mut b, &mut sink);
        s.acked(1000, &mut b, &mut sink);
        s.segment(1000, tcp_flags::ACK, b"hello", 1 << 16, &mut b, &mut sink);
        s.acked(1005, &mut b, &mut sink);
        // Keep-alive probe: seq = next - 1, zero or one byte; its answer acks what was seen.
        s.segment(1004, tcp_flags::ACK, b"", 1 << 16, &mut b, &mut sink);
        s.segment(1004, tcp_flags::ACK, b"o", 1 << 16, &mut b, &mut sink);
        s.acked(1005, &mut b, &mut sink);
        // Retransmission of what was seen.
        s.segment(1000, tcp_flags::ACK, b"hello", 1 << 16, &mut b, &mut sink);
        // FIN (with one more byte of data), retransmitted, then acknowledged (data + FIN).
        s.segment(
            1005,
            tcp_flags::ACK | tcp_flags::FIN,
            b"!",
            1 << 16,
            &mut b,
            &mut sink,
        );
        s.segment(
            1005,
            tcp_flags::ACK | tcp_flags::FIN,
            b"!",
            1 << 16,
            &mut b,
            &mut sink,
        );
        s.acked(1007, &mut b, &mut sink);
        s.flush(&mut b, &mut sink);
        assert_eq!(out, vec!["hello", "!"]);
    }

    /// Bytes missing before a FIN are a gap; the FIN's own sequence number is not.
    #[test]
    fn a_hole_before_the_fin_is_a_gap_of_its_size() {
        let mut s = Stream::default();
        let mut b = Budget::new(1 << 20);
        let mut out = Vec::new();
        let mut sink = |c: Chunk<'_>| out.push(fmt(c));
        s.segment(0, tcp_flags::ACK, b"ab", 1 << 16, &mut b, &mut sink);
        s.segment(
            5,
            tcp_flags::ACK | tcp_flags::FIN,
            b"",
            1 << 16,
            &mut b,
            &mut sink,
        );
        s.acked(6, &mut b, &mut sink);
        assert_eq!(out, vec!["ab", "<gap 3>"]);
        // The FIN right after the data, acknowledged twice (a duplicate ACK).
        let mut s = Stream::default();
        let mut out = Vec::new();
        let mut sink = |c: Chunk<'_>| out.push(fmt(c));
        s.segment(0, tcp_flags::ACK, b"ab", 1 << 16, &mut b, &mut sink);
        s.segment(
            2,
            tcp_flags::ACK | tcp_flags::FIN,
            b"",
            1 << 16,
            &mut b,
            &mut sink,
        );
        s.acked(3, &mut b, &mut sink);
        s.acked(3, &mut b, &mut sink);
        assert_eq!(out, vec!["ab"]);
    }

    #[test]
    fn budget_exhaustion_gives_up_the_hole() {
        let mut s = Stream::default();
        let mut b = Budget::new(4);
        let out = run(&mut s, &mut b, &[(0, b"a"), (3, b"dd"), (10, b"zzzz")]);
        assert_eq!(out, vec!["a", "<gap 2>", "dd", "<gap 5>", "zzzz"]);
        assert_eq!(b.overflows, 1);
        let mut out = Vec::new();
        s.flush(&mut b, &mut |c| out.push(fmt(c)));
        assert!(out.is_empty());
        assert_eq!(b.used, 0);
    }

    /// A segment lost before the capture point comes again a round trip later, after a whole
    /// window of full-size segments, some of them seen twice: no gap, nothing twice.
    #[test]
    fn a_window_of_segments_behind_a_hole_waits_for_the_retransmission() {
        let mut s = Stream::default();
        let mut b = Budget::new(1 << 25);
        let seg = |i: u8| vec![b'a' + i % 26; 1448];
        let (mut out, mut gaps) = (Vec::new(), 0);
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(_) => gaps += 1,
        };
        s.segment(0, tcp_flags::ACK, &seg(0), 256 << 10, &mut b, &mut sink);
        for i in 2..150u8 {
            let at = u32::from(i) * 1448;
            s.segment(at, tcp_flags::ACK, &seg(i), 256 << 10, &mut b, &mut sink);
            if i % 7 == 0 {
                s.segment(at, tcp_flags::ACK, &seg(i), 256 << 10, &mut b, &mut sink);
            }
        }
        s.segment(1448, tcp_flags::ACK, &seg(1), 256 << 10, &mut b, &mut sink);
        let want: Vec<u8> = (0..150u8).flat_map(seg).collect();
        assert_eq!(gaps, 0);
        assert!(out == want, "{} bytes of {}", out.len(), want.len());
        assert_eq!((b.used, b.overflows), (0, 0));
    }

    proptest! {
        /// Any order of any segments: never panics, memory stays within the budget, and when
        /// every byte arrives the stream is reassembled exactly.
        #[test]
        fn any_segment_order_reassembles(data in prop::collection::vec(any::<u8>(), 1..400), cuts in prop::collection::vec(8usize..50, 1..20), order in prop::collection::vec(any::<u16>(), 20), isn in any::<u32>()) {
            let mut segs = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= data.len() { break; }
                let end = (at + c).min(data.len());
                segs.push((isn.wrapping_add(at as u32), data[at..end].to_vec()));
                at = end;
            }
            let n = segs.len();
            for (i, o) in order.iter().enumerate() {
                segs.swap(i % n, *o as usize % n);
            }
            // The first segment seen decides where the stream starts (mid-stream pick-up), so
            // send the first bytes first.
            if let Some(p) = segs.iter().position(|(s, _)| *s == isn) { segs.swap(0, p); }
            let mut s = Stream::default();
            let mut b = Budget::new(1 << 20);
            let mut out = Vec::new();
            for (seq, d) in &segs {
                s.segment(*seq, tcp_flags::ACK, d, 1 << 16, &mut b, &mut |c| if let Chunk::Data(d) = c { out.extend_from_slice(d) });
                prop_assert!(b.used <= b.limit);
            }
            s.flush(&mut b, &mut |_| {});
            prop_assert_eq!(out, data);
            prop_assert_eq!(b.used, 0);
        }

        #[test]
        fn random_segments_stay_bounded(segs in prop::collection::vec((any::<u32>(), prop::collection::vec(any::<u8>(), 0..64), any::<u8>()), 0..60)) {
            let mut s = Stream::default();
            let mut b = Budget::new(512);
            for (seq, d, f) in &segs {
                s.segment(*seq, *f, d, 256, &mut b, &mut |_| {});
                s.acked(seq.wrapping_add(7), &mut b, &mut |_| {});
                prop_assert!(b.used <= 512);
            }
        }
    }
}
