//! Drops copies of a packet already seen: the same packet captured on several interfaces (a
//! pod's veth and the host's bridge, or `any`) or inside and outside a VXLAN tunnel.
//!
//! The fingerprint covers what stays the same along the path: the innermost IP addresses,
//! protocol, IPv4 identification, ports, TCP sequence/ack/flags, payload length and the first
//! payload bytes; it leaves out what hops change (TTL, checksums, link and tunnel headers).
//! A copy counts as a duplicate only within `window`; a TCP retransmission carries a new IPv4
//! identification and is kept. IPv6 has no identification, so an IPv6 retransmission within the
//! window is also taken for a copy (harmless for analysis: it carries the same bytes).
//! The table is direct-mapped and fixed in size: bounded memory, and a collision at worst keeps
//! a duplicate (never drops a unique packet, since the whole fingerprint must match).

use super::decode::Packet;
use std::hash::{Hash, Hasher};

const SLOTS: usize = 1 << 16;

pub struct Dedup {
    /// (fingerprint, capture time in ns); fingerprint 0 means empty.
    slots: Box<[(u64, i64)]>,
    window_ns: i64,
    pub dropped: u64,
}

impl Dedup {
    pub fn new(window: std::time::Duration) -> Dedup {
        Dedup {
            slots: vec![(0u64, 0i64); SLOTS].into_boxed_slice(),
            window_ns: window.as_nanos().min(i64::MAX as u128) as i64,
            dropped: 0,
        }
    }

    /// True when `p` is a copy of a packet seen less than `window` before `ts_ns`.
    pub fn is_duplicate(&mut self, p: &Packet<'_>, ts_ns: i64) -> bool {
        let mut h = rustc_hash::FxHasher::default();
        p.src.hash(&mut h);
        p.dst.hash(&mut h);
        (p.proto, p.ip_id, p.sport, p.dport, p.vlan).hash(&mut h);
        if let Some(t) = p.tcp {
            (t.seq, t.ack, t.flags).hash(&mut h);
        }
        p.payload.len().hash(&mut h);
        p.payload[..p.payload.len().min(32)].hash(&mut h);
        let fp = h.finish() | 1;
        let slot = &mut self.slots[(fp as usize) & (SLOTS - 1)];
        if slot.0 == fp && ts_ns.saturating_sub(slot.1) <= self.window_ns {
            self.dropped += 1;
            return true;
        }
        *slot = (fp, ts_ns);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode::{decode, linktype, tests::eth_tcp};

    #[test]
    fn same_packet_twice_within_window_is_dropped_once() {
        let mut d = Dedup::new(std::time::Duration::from_millis(100));
        let f = eth_tcp(
            [10, 0, 0, 1],
            1,
            [10, 0, 0, 2],
            80,
            5,
            6,
            0x18,
            b"GET / HTTP/1.1\r\n",
        );
        let mut on_bridge = f.clone();
        on_bridge[22] = 63; // one hop later: TTL decremented
        let p = decode(linktype::ETHERNET, &f).unwrap();
        let q = decode(linktype::ETHERNET, &on_bridge).unwrap();
        assert!(!d.is_duplicate(&p, 0));
        assert!(d.is_duplicate(&q, 1_000));
        // Later than the window: a new packet (a retransmission after the timeout).
        assert!(!d.is_duplicate(&p, 500_000_000));
        // A different segment is never a duplicate.
        let g = eth_tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 80, 21, 6, 0x18, b"more");
        assert!(!d.is_duplicate(&decode(linktype::ETHERNET, &g).unwrap(), 500_000_001));
        assert_eq!(d.dropped, 1);
    }
}
