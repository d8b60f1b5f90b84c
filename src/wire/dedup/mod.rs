//! Drops copies of a packet already seen: the same packet captured on several interfaces (a
//! pod's veth and the peer's, the host's bridge, or `any`) or inside and outside a VXLAN tunnel.
//!
//! A copy has the same fingerprint: what stays the same along the path (the innermost IP
//! addresses, protocol, IPv4 identification, ports, TCP sequence/ack/flags, payload length and
//! first bytes, and for an IP fragment its identification and offset, and the VLAN id when it
//! keys flows), not what hops change (TTL, checksums, link and tunnel headers). A fingerprint
//! is remembered for `window` of capture time whatever order the copies are analyzed in, in an
//! exact table (no slot shared by two packets) bounded in size. When the capture tells
//! interfaces apart, a repeat on the interface that saw the packet first is a new packet (a
//! retransmission with the same bytes, as IPv6 sends them), not a copy; on `any` and in files
//! every repeat within the window is a copy. `nat`: the same conversation seen before and after
//! address translation (a Service's ClusterIP and the pod behind it).

mod nat;

use super::decode::Packet;
use super::flows::{tunnel_scope, KeyBy};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// Most fingerprints remembered: past it the oldest are forgotten early (counted). Copies
/// reach the analyzer in capture-time order, microseconds apart, so this only matters beyond
/// a few million packets per second.
const MAX_REMEMBERED: usize = 1 << 18;

struct Seen {
    ts_ns: i64,
    /// The interface the packet was first seen on (None: not told apart).
    interface: Option<u32>,
}

pub struct Dedup {
    seen: FxHashMap<u64, Seen>,
    /// Fingerprints in the order remembered, to forget them once out of the window.
    order: VecDeque<(i64, u64)>,
    window_ns: i64,
    newest_ns: i64,
    pub dropped: u64,
    /// Fingerprints forgotten before their window ended, for lack of room.
    pub forgotten: u64,
    /// The VLAN id is part of the fingerprint (`key_by_vlan`): when flows are keyed without
    /// it, a packet seen tagged on a trunk and untagged on an access port is one packet. So is
    /// the tunnel under `key_by_tunnel`: two tenants' packets are never each other's copies, and
    /// a packet seen plain and tunnelled is two (it would be two flows' packet).
    key_by: KeyBy,
    nat: nat::NatViews,
}

impl Dedup {
    pub fn new(window: std::time::Duration, key_by: KeyBy) -> Dedup {
        Dedup {
            seen: FxHashMap::default(),
            order: VecDeque::new(),
            window_ns: window.as_nanos().min(i64::MAX as u128) as i64,
            newest_ns: i64::MIN,
            dropped: 0,
            forgotten: 0,
            key_by,
            nat: nat::NatViews::default(),
        }
    }

    fn fingerprint(&self, p: &Packet<'_>) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        p.src.hash(&mut h);
        p.dst.hash(&mut h);
        let vlan = if self.key_by.vlan { p.vlan } else { 0 };
        (p.proto, p.ip_id, p.sport, p.dport, vlan).hash(&mut h);
        if self.key_by.tunnel {
            p.tunnel.as_deref().map_or(0, tunnel_scope).hash(&mut h);
        }
        // The pieces of one datagram often have the same length and first bytes.
        if let Some(f) = p.fragment.as_deref() {
            (f.id, f.offset).hash(&mut h);
        }
        if let Some(t) = p.tcp {
            (t.seq, t.ack, t.flags).hash(&mut h);
        }
        p.payload.len().hash(&mut h);
        p.payload[..p.payload.len().min(32)].hash(&mut h);
        h.finish()
    }

    /// True when `p`, captured at `ts_ns` on `interface` (None: the capture does not tell
    /// interfaces apart), is a copy of a packet seen within `window`.
    pub fn is_duplicate(&mut self, p: &Packet<'_>, ts_ns: i64, interface: Option<u32>) -> bool {
        self.newest_ns = self.newest_ns.max(ts_ns);
        self.forget(self.newest_ns.saturating_sub(self.window_ns));
        let fp = self.fingerprint(p);
        if let Some(s) = self.seen.get_mut(&fp) {
            let near = ts_ns.abs_diff(s.ts_ns) <= self.window_ns as u64;
            let same_interface = interface.is_some() && interface == s.interface;
            if near && !same_interface {
                self.dropped += 1;
                return true;
            }
            // A new packet with the same bytes: its copies are counted from now on.
            s.ts_ns = ts_ns;
            s.interface = interface;
        } else {
            self.seen.insert(fp, Seen { ts_ns, interface });
        }
        if self.order.len() >= MAX_REMEMBERED {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
                self.forgotten += 1;
            }
        }
        self.order.push_back((ts_ns, fp));
        // Not a copy as it is: maybe one translated (counted in `dropped` too).
        if self.nat.is_copy(p, ts_ns, interface, self.window_ns) {
            self.dropped += 1;
            return true;
        }
        false
    }

    /// Forgets fingerprints remembered before `before`.
    fn forget(&mut self, before: i64) {
        while let Some(&(ts, fp)) = self.order.front() {
            if ts >= before {
                break;
            }
            self.order.pop_front();
            // Remembered again later (a new packet with the same bytes): still needed.
            if self.seen.get(&fp).is_some_and(|s| s.ts_ns <= ts) {
                self.seen.remove(&fp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode::{decode, linktype, tests::eth_tcp};

    #[test]
    fn same_packet_twice_within_window_is_dropped_once() {
        let mut d = Dedup::new(std::time::Duration::from_millis(100), KeyBy::default());
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
        assert!(!d.is_duplicate(&p, 0, None));
        assert!(d.is_duplicate(&q, 1_000, None));
        // Later than the window: a new packet (a retransmission after the timeout).
        assert!(!d.is_duplicate(&p, 500_000_000, None));
        // A different segment is never a duplicate.
        let g = eth_tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 80, 21, 6, 0x18, b"more");
        assert!(!d.is_duplicate(&decode(linktype::ETHERNET, &g).unwrap(), 500_000_001, None));
        assert_eq!(d.dropped, 1);
    }

    /// The same frame tagged (802.1Q VLAN 7, as a trunk port carries it) and untagged (an
    /// access port): two packets of two conversations while the VLAN keys flows, one packet
    /// when it does not (`key_by_vlan: false`).
    #[test]
    fn a_tagged_and_an_untagged_copy_are_one_packet_only_when_vlans_do_not_key_flows() {
        let f = segment(1);
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&f[12..]);
        let p = decode(linktype::ETHERNET, &f).unwrap();
        let q = decode(linktype::ETHERNET, &tagged).unwrap();
        assert_eq!((p.vlan, q.vlan), (0, 7));
        for (by_vlan, copy) in [(true, false), (false, true)] {
            let key_by = KeyBy {
                vlan: by_vlan,
                tunnel: false,
            };
            let mut d = Dedup::new(std::time::Duration::from_millis(100), key_by);
            assert!(!d.is_duplicate(&q, 0, Some(1)));
            assert_eq!(
                d.is_duplicate(&p, 1_000, Some(2)),
                copy,
                "by_vlan {by_vlan}"
            );
        }
    }

    /// One pod's segment seen plain (its veth) and in VXLAN VNI 100 (the node's uplink), and
    /// another tenant's segment with the same addresses, ports and bytes in VNI 200: by
    /// default all one packet, as tunnel headers change along the path; under
    /// `key_by_tunnel` three packets of three flows.
    #[test]
    fn tunnelled_copies_are_one_packet_only_when_tunnels_do_not_key_flows() {
        let f = segment(1);
        let in_vni = |vni: u32| {
            let mut v = crate::wire::decode::tests::vxlan_frame(&f, 4789, 1);
            v[46..49].copy_from_slice(&vni.to_be_bytes()[1..]);
            v
        };
        let (vni100, vni200) = (in_vni(100), in_vni(200));
        let frames = [&f, &vni100, &vni200];
        let packets: Vec<_> = frames
            .iter()
            .map(|f| decode(linktype::ETHERNET, f).unwrap())
            .collect();
        let ids: Vec<_> = packets
            .iter()
            .map(|p| p.tunnel.as_ref().and_then(|t| t.id))
            .collect();
        assert_eq!(ids, [None, Some(100), Some(200)]);
        for (by_tunnel, copies) in [(false, [false, true, true]), (true, [false; 3])] {
            let key_by = KeyBy {
                vlan: true,
                tunnel: by_tunnel,
            };
            let mut d = Dedup::new(std::time::Duration::from_millis(100), key_by);
            let got: Vec<bool> = (0..3)
                .map(|i| d.is_duplicate(&packets[i], i as i64 * 1_000, Some(i as u32)))
                .collect();
            assert_eq!(got, copies, "by_tunnel {by_tunnel}");
        }
    }

    fn segment(seq: u32) -> Vec<u8> {
        eth_tcp(
            [10, 0, 0, 1],
            1,
            [10, 0, 0, 2],
            80,
            seq,
            6,
            0x18,
            b"GET / HTTP/1.1\r\n",
        )
    }

    /// Copies analyzed far apart (another interface's blocks in between), in either order,
    /// with thousands of other packets between them: each counts once.
    #[test]
    fn copies_far_apart_in_any_order_count_once() {
        let mut d = Dedup::new(std::time::Duration::from_millis(100), KeyBy::default());
        let frames: Vec<Vec<u8>> = (0..20_000u32).map(|i| segment(i * 100)).collect();
        let packets: Vec<_> = frames
            .iter()
            .map(|f| decode(linktype::ETHERNET, f).unwrap())
            .collect();
        // Interface 2's copies are analyzed first, though captured a few µs later.
        for (i, p) in packets.iter().enumerate() {
            assert!(!d.is_duplicate(p, i as i64 * 1_000 + 5_000, Some(2)));
        }
        for (i, p) in packets.iter().enumerate().rev() {
            assert!(d.is_duplicate(p, i as i64 * 1_000, Some(1)), "copy {i}");
        }
        assert_eq!(d.dropped, 20_000);
    }

    /// The same bytes again on the interface that saw them first is a new packet (IPv6 has no
    /// identification to tell a retransmission apart); its copy on the next interface is not.
    #[test]
    fn a_repeat_on_the_same_interface_is_a_new_packet() {
        let mut d = Dedup::new(std::time::Duration::from_millis(100), KeyBy::default());
        let f = segment(1);
        let p = decode(linktype::ETHERNET, &f).unwrap();
        assert!(!d.is_duplicate(&p, 0, Some(1)));
        assert!(d.is_duplicate(&p, 10, Some(2)));
        assert!(!d.is_duplicate(&p, 20_000_000, Some(1)), "retransmission");
        assert!(d.is_duplicate(&p, 20_000_010, Some(2)), "its copy");
        // Without interfaces told apart, a repeat within the window is a copy.
        assert!(d.is_duplicate(&p, 20_000_020, None));
        // Out of the window, forgotten.
        assert!(!d.is_duplicate(&p, 400_000_000, Some(2)));
        assert!(d.seen.len() <= 2);
    }
}
