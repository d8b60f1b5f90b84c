//! Puts the packets of several capture threads back in capture-time order before analysis.
//! Each interface delivers its own packets in order, but blocks from different interfaces reach
//! the analyzer whenever their thread hands them on: a packet is released only once every
//! other interface has shown it has nothing earlier left (a later packet, or a heartbeat).

use super::capture::Block;
use std::collections::VecDeque;

/// Packets of one interface waiting for the others.
struct Source {
    id: u32,
    blocks: VecDeque<Block>,
    /// Index of the next packet in the front block.
    cursor: usize,
    /// Every packet this interface will still deliver was captured after this (ns).
    complete_to: i64,
    /// The interface was released: it holds nobody back any more, and goes once empty.
    closed: bool,
}

impl Source {
    fn head_ts(&self) -> Option<i64> {
        self.blocks
            .front()
            .and_then(|b| b.packets.get(self.cursor))
            .map(|p| p.0)
    }
}

/// The merge of every interface of one live input.
#[derive(Default)]
pub struct Merge {
    sources: Vec<Source>,
    /// Packets held, to bound memory.
    held_bytes: usize,
    /// Capture time of the last packet released.
    released_ns: i64,
    /// Packets that came after later packets of other interfaces had been released (they are
    /// analyzed anyway, out of order).
    pub late: u64,
}

/// One packet handed on: (interface id, link type, capture time, bytes).
pub type Packet<'a> = (u32, i32, i64, &'a [u8]);

impl Merge {
    pub fn new() -> Merge {
        Merge {
            released_ns: i64::MIN,
            ..Merge::default()
        }
    }

    /// A newly opened interface: nothing it captured before `since` will come.
    pub fn open(&mut self, id: u32, since: i64) {
        if !self.sources.iter().any(|s| s.id == id) {
            self.sources.push(Source {
                id,
                blocks: VecDeque::new(),
                cursor: 0,
                complete_to: since,
                closed: false,
            });
        }
    }

    /// The interface was released: what it delivered is still handed on, but it no longer
    /// holds the others back.
    pub fn close(&mut self, id: u32) {
        if let Some(s) = self.sources.iter_mut().find(|s| s.id == id) {
            s.closed = true;
        }
        self.sources.retain(|s| !(s.closed && s.blocks.is_empty()));
    }

    /// A block (possibly empty: a heartbeat) from a capture thread.
    pub fn push(&mut self, b: Block, recycle: &mut dyn FnMut(Block)) {
        let Some(s) = self.sources.iter_mut().find(|s| s.id == b.interface) else {
            // A block from an interface released meanwhile: analyzed in order as far as can be.
            return self.push_to_last(b, recycle);
        };
        s.complete_to = s.complete_to.max(b.complete_to);
        if let Some(first) = b.packets.first() {
            if first.0 < self.released_ns {
                self.late += 1;
            }
        }
        if b.packets.is_empty() {
            recycle(b);
            return;
        }
        self.held_bytes += b.data.len();
        s.blocks.push_back(b);
    }

    fn push_to_last(&mut self, b: Block, recycle: &mut dyn FnMut(Block)) {
        if b.packets.is_empty() {
            return recycle(b);
        }
        self.held_bytes += b.data.len();
        self.sources.push(Source {
            id: b.interface,
            complete_to: b.complete_to,
            blocks: VecDeque::from([b]),
            cursor: 0,
            closed: true,
        });
    }

    /// Time up to which every interface has delivered everything (None: no interface).
    pub fn complete_to(&self) -> Option<i64> {
        self.sources
            .iter()
            .filter(|s| !s.closed)
            .map(|s| s.complete_to)
            .min()
    }

    /// Hands on, in capture-time order, every packet no interface can still precede; all of
    /// them when `all` (the end) or while more than `max_bytes` are held.
    pub fn release(
        &mut self,
        all: bool,
        max_bytes: usize,
        deliver: &mut dyn FnMut(Packet<'_>),
        recycle: &mut dyn FnMut(Block),
    ) {
        loop {
            let mut best: Option<(usize, i64)> = None;
            for (i, s) in self.sources.iter().enumerate() {
                if let Some(ts) = s.head_ts() {
                    if best.is_none_or(|(_, b)| ts < b) {
                        best = Some((i, ts));
                    }
                }
            }
            let Some((i, ts)) = best else { break };
            // An interface with nothing queued may still deliver something earlier.
            let waiting = self
                .sources
                .iter()
                .any(|s| !s.closed && s.blocks.is_empty() && s.complete_to < ts);
            if waiting && !all && self.held_bytes <= max_bytes {
                break;
            }
            let s = &mut self.sources[i];
            let Some(b) = s.blocks.front() else { break };
            let (t, off, len) = b.packets[s.cursor];
            let (o, l) = (off as usize, len as usize);
            if let Some(d) = b.data.get(o..o + l) {
                deliver((s.id, b.link, t, d));
            }
            self.released_ns = self.released_ns.max(t);
            s.cursor += 1;
            if s.cursor >= b.packets.len() {
                s.cursor = 0;
                if let Some(done) = s.blocks.pop_front() {
                    self.held_bytes = self.held_bytes.saturating_sub(done.data.len());
                    recycle(done);
                }
                if s.closed && s.blocks.is_empty() {
                    self.sources.swap_remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(interface: u32, times: &[i64], complete_to: i64) -> Block {
        let mut b = Block {
            link: 1,
            interface,
            complete_to,
            data: Vec::new(),
            packets: Vec::new(),
        };
        for t in times {
            let off = b.data.len() as u32;
            b.data.extend_from_slice(&t.to_le_bytes());
            b.packets.push((*t, off, 8));
        }
        b
    }

    fn run(m: &mut Merge, all: bool) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        m.release(
            all,
            1 << 20,
            &mut |(i, _, t, _)| out.push((i, t)),
            &mut |_| {},
        );
        out
    }

    #[test]
    fn packets_wait_for_interfaces_that_may_hold_earlier_ones() {
        let mut m = Merge::new();
        m.open(1, 0);
        m.open(2, 0);
        // Interface 2's block arrives first, but interface 1 has said nothing past 0.
        m.push(block(2, &[10, 30], 30), &mut |_| {});
        assert_eq!(run(&mut m, false), vec![]);
        m.push(block(1, &[5, 20, 40], 40), &mut |_| {});
        // 40 waits: interface 2 may still deliver something between 30 and 40.
        assert_eq!(run(&mut m, false), vec![(1, 5), (2, 10), (1, 20), (2, 30)]);
        // A heartbeat from 2: nothing before 50 left.
        m.push(block(2, &[], 50), &mut |_| {});
        assert_eq!(run(&mut m, false), vec![(1, 40)]);
        assert_eq!(m.complete_to(), Some(40));
        assert_eq!(m.late, 0);
    }

    #[test]
    fn a_released_interface_no_longer_holds_the_others_back() {
        let mut m = Merge::new();
        m.open(1, 0);
        m.open(2, 0);
        m.push(block(1, &[5, 6], 6), &mut |_| {});
        assert_eq!(run(&mut m, false), vec![]);
        m.close(2);
        assert_eq!(run(&mut m, false), vec![(1, 5), (1, 6)]);
    }

    #[test]
    fn memory_is_bounded_and_the_end_releases_everything() {
        let mut m = Merge::new();
        m.open(1, 0);
        m.open(2, 0);
        m.push(block(1, &[1, 2, 3], 3), &mut |_| {});
        let mut out = Vec::new();
        // Over the bound: released although interface 2 said nothing.
        m.release(false, 8, &mut |(_, _, t, _)| out.push(t), &mut |_| {});
        assert_eq!(out, vec![1, 2, 3]);
        m.push(block(2, &[2], 2), &mut |_| {});
        assert_eq!(m.late, 1, "a packet earlier than one already released");
        m.push(block(1, &[9], 9), &mut |_| {});
        assert_eq!(run(&mut m, true), vec![(2, 2), (1, 9)]);
    }
}
