//! Tests of IP fragment reassembly: orders, copies, overlaps, bounds, time-outs, fragments
//! inside and around tunnels, and random fragments that must never panic.

use super::*;
use crate::wire::decode::{decode, linktype, tests::vxlan_frame, Decoder};
use crate::wire::flows::FlowsConfig;
use crate::wire::{Analyzers, Engine, Stats};
use proptest::prelude::*;
use std::sync::Arc;

fn ether(ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// An IPv4 packet with `data` at `offset` of datagram `id` (protocol `proto`).
fn v4(id: u16, offset: usize, more: bool, proto: u8, data: &[u8]) -> Vec<u8> {
    let frag = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(data);
    p
}

/// An IPv6 packet with a destination options header (unfragmentable part), then a fragment
/// header with `data` at `offset` of datagram `id`.
fn v6(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((8 + 8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[60, 64]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    // Destination options: next header 44 (fragment), length 0 (8 bytes), PadN.
    p.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    p.extend_from_slice(&[17, 0]);
    p.extend_from_slice(&((offset as u16) | more as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(data);
    p
}

fn udp(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..len).map(|i| (i * 7 % 251) as u8));
    u
}

/// `datagram` cut into pieces of `size` bytes: (offset, more, bytes).
fn cut(datagram: &[u8], size: usize) -> Vec<(usize, bool, Vec<u8>)> {
    datagram
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (i * size, (i + 1) * size < datagram.len(), c.to_vec()))
        .collect()
}

struct Run {
    defrag: Defrag,
    stats: FragmentStats,
    done: Vec<Done>,
}

impl Run {
    fn new(defrag: Defrag) -> Run {
        Run {
            defrag,
            stats: FragmentStats::default(),
            done: Vec::new(),
        }
    }

    fn add(&mut self, frame: &[u8], ts_ns: i64) {
        let p = decode(linktype::ETHERNET, frame).unwrap();
        assert!(p.fragment.is_some(), "not a fragment: {p:?}");
        self.defrag.add(&p, ts_ns, &self.stats, &mut self.done);
    }

    fn counts(&self) -> [u64; 8] {
        let s = &self.stats;
        [
            &s.reassembled,
            &s.duplicate,
            &s.overlap,
            &s.invalid,
            &s.timeout,
            &s.dropped_limit,
            &s.incomplete,
            &s.datagrams,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

#[test]
fn ipv4_pieces_in_any_order_make_the_datagram() {
    let datagram = udp(5353, 53, 3000);
    let pieces = cut(&datagram, 1480);
    assert_eq!(pieces.len(), 3);
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut r = Run::new(Defrag::default());
        for (n, &i) in order.iter().enumerate() {
            let (off, more, data) = &pieces[i];
            r.add(&ether(0x0800, &v4(9, *off, *more, 17, data)), n as i64);
        }
        assert_eq!(r.counts(), [3, 0, 0, 0, 0, 0, 0, 1], "order {order:?}");
        assert_eq!(r.done.len(), 1);
        let d = &r.done[0];
        assert_eq!(d.wire.packets, 3);
        assert_eq!(d.wire.bytes, 3 * 20 + datagram.len() as u64);
        assert_eq!((d.wire.first_ns, d.wire.last_ns), (0, 2));
        // The piece at offset 0 names the flow, whenever it came.
        assert_eq!((d.like.sport, d.like.dport), (5353, 53));
        let ip = d.datagram.as_deref().unwrap();
        let p = Decoder::default().reassembled(&d.like, ip).unwrap();
        assert_eq!((p.proto, p.sport, p.dport), (17, 5353, 53));
        assert_eq!(p.payload, &datagram[8..]);
        assert_eq!((p.ip_len, p.missing), (20 + datagram.len() as u32, 0));
        assert!(p.fragment.is_none());
        assert_eq!(r.defrag.table.len(), 0);
        assert_eq!(r.defrag.held, 0);
    }
}

#[test]
fn ipv6_pieces_after_extension_headers_make_the_datagram() {
    let datagram = udp(40000, 53, 4000);
    let pieces = cut(&datagram, 1232);
    let mut r = Run::new(Defrag::default());
    for (off, more, data) in pieces.iter().rev() {
        r.add(&ether(0x86dd, &v6(0xdead_beef, *off, *more, data)), 1);
    }
    assert_eq!(r.counts(), [4, 0, 0, 0, 0, 0, 0, 1]);
    let d = &r.done[0];
    let p = Decoder::default()
        .reassembled(&d.like, d.datagram.as_deref().unwrap())
        .unwrap();
    assert_eq!((p.proto, p.sport, p.dport), (17, 40000, 53));
    assert_eq!(p.payload, &datagram[8..]);
    assert_eq!(p.src.to_string(), "fd00::1");
}

#[test]
fn a_copy_of_a_piece_is_counted_once_as_a_duplicate() {
    let pieces = cut(&udp(1, 2, 2000), 1480);
    let mut r = Run::new(Defrag::default());
    let first = ether(0x0800, &v4(1, 0, true, 17, &pieces[0].2));
    r.add(&first, 0);
    r.add(&first, 1);
    r.add(&ether(0x0800, &v4(1, 1480, false, 17, &pieces[1].2)), 2);
    assert_eq!(r.counts(), [2, 1, 0, 0, 0, 0, 0, 1]);
    // Three packets on the wire.
    assert_eq!(r.done[0].wire.packets, 3);
}

#[test]
fn overlapping_pieces_discard_the_datagram_and_its_later_pieces() {
    let datagram = udp(1, 2, 3000);
    let pieces = cut(&datagram, 1480);
    for v6_packet in [false, true] {
        let frame = |off: usize, more: bool, data: &[u8]| match v6_packet {
            false => ether(0x0800, &v4(3, off, more, 17, data)),
            true => ether(0x86dd, &v6(3, off, more, data)),
        };
        let mut r = Run::new(Defrag::default());
        r.add(&frame(0, true, &pieces[0].2), 0);
        // Starts inside the first piece.
        r.add(&frame(1472, true, &datagram[1472..2960]), 1);
        assert_eq!(r.counts(), [0, 0, 2, 0, 0, 0, 0, 0], "v6 {v6_packet}");
        assert_eq!(r.done.len(), 1);
        assert!(r.done[0].datagram.is_none());
        assert_eq!(r.done[0].wire.packets, 2);
        // The rest, which alone would complete it, is discarded too (RFC 5722).
        r.add(&frame(1480, true, &pieces[1].2), 2);
        r.add(&frame(2960, false, &pieces[2].2), 3);
        assert_eq!(r.counts(), [0, 0, 4, 0, 0, 0, 0, 0], "v6 {v6_packet}");
        assert_eq!(r.done.len(), 3);
        assert!(r.done.iter().all(|d| d.datagram.is_none()));
        // Each named by the piece with the ports.
        assert!(r
            .done
            .iter()
            .all(|d| (d.like.sport, d.like.dport) == (1, 2)));
        assert_eq!(r.defrag.held, 0);
    }
}

#[test]
fn impossible_pieces_discard_the_datagram() {
    let data = vec![0u8; 1480];
    // A non-last piece whose length is not a multiple of 8.
    let mut r = Run::new(Defrag::default());
    r.add(&ether(0x0800, &v4(1, 0, true, 17, &data[..1001])), 0);
    assert_eq!(r.counts()[3], 1);
    // Past 65,535 bytes.
    let mut r = Run::new(Defrag::default());
    r.add(&ether(0x0800, &v4(1, 65_000, false, 17, &data[..1000])), 0);
    assert_eq!(r.counts()[3], 1);
    // Two last pieces that end in different places.
    let mut r = Run::new(Defrag::default());
    r.add(&ether(0x0800, &v4(1, 1480, false, 17, &data[..100])), 0);
    r.add(&ether(0x0800, &v4(1, 2960, false, 17, &data[..100])), 1);
    assert_eq!(r.counts(), [0, 0, 0, 2, 0, 0, 0, 0]);
}

#[test]
fn a_datagram_incomplete_after_30_seconds_is_given_up() {
    let pieces = cut(&udp(7, 8, 3000), 1480);
    let mut r = Run::new(Defrag::default());
    r.add(&ether(0x0800, &v4(5, 0, true, 17, &pieces[0].2)), 0);
    r.add(&ether(0x0800, &v4(5, 1480, true, 17, &pieces[1].2)), 1);
    r.defrag.expire(TIMEOUT_NS - 1, &r.stats, &mut r.done);
    assert!(r.done.is_empty());
    assert_eq!(r.stats.pending.load(Ordering::Relaxed), 1);
    r.defrag.expire(TIMEOUT_NS, &r.stats, &mut r.done);
    assert_eq!(r.counts(), [0, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(r.stats.pending.load(Ordering::Relaxed), 0);
    assert_eq!(r.done.len(), 1);
    assert_eq!((r.done[0].like.sport, r.done[0].wire.packets), (7, 2));
    // The last piece, later, starts a datagram of its own, given up at the end.
    r.add(
        &ether(0x0800, &v4(5, 2960, false, 17, &pieces[2].2)),
        TIMEOUT_NS + 1,
    );
    r.defrag.finish(&r.stats, &mut r.done);
    assert_eq!(r.counts(), [0, 0, 0, 0, 2, 0, 1, 0]);
    assert_eq!(r.defrag.held, 0);
}

#[test]
fn datagrams_and_bytes_waiting_are_bounded() {
    let piece = udp(1, 2, 1472);
    let mut r = Run::new(Defrag::new(2, MAX_BYTES));
    for id in 0..3 {
        r.add(&ether(0x0800, &v4(id, 0, true, 17, &piece)), id as i64);
    }
    assert_eq!(r.counts()[5], 1);
    assert_eq!(r.defrag.table.len(), 2);
    // The dropped one is still counted in its flow, at once.
    assert_eq!(r.done.len(), 1);
    assert_eq!(r.done[0].wire.packets, 1);

    let mut r = Run::new(Defrag::new(100, 2 * (1480 + PIECE_OVERHEAD)));
    for id in 0..3 {
        r.add(&ether(0x0800, &v4(id, 0, true, 17, &piece)), id as i64);
    }
    assert_eq!(r.counts()[5], 1);
    assert!(r.defrag.held <= 2 * (1480 + PIECE_OVERHEAD));
}

/// A pod's packet fragmented before it entered the VXLAN tunnel: the inner packets are the
/// fragments, reassembled inside the tunnel, which the datagram keeps.
#[test]
fn fragments_inside_a_tunnel_are_reassembled_inside_it() {
    let datagram = udp(3000, 4000, 2500);
    let mut r = Run::new(Defrag::default());
    for (off, more, data) in cut(&datagram, 1400) {
        let inner = ether(0x0800, &v4(77, off, more, 17, &data));
        r.add(&vxlan_frame(&inner, 4789, off as u8), 0);
    }
    let d = &r.done[0];
    let p = Decoder::default()
        .reassembled(&d.like, d.datagram.as_deref().unwrap())
        .unwrap();
    assert_eq!((p.sport, p.dport), (3000, 4000));
    assert_eq!(p.src.to_string(), "10.0.0.1");
    let t = p.tunnel.expect("the tunnel is kept");
    assert_eq!(t.src.to_string(), "192.168.0.1");
}

/// A VXLAN packet bigger than the underlay's MTU, fragmented outside the tunnel: reassembled,
/// it is the pod's one packet, counted once in the pod's flow; the tunnel's own UDP flow counts
/// the fragments that crossed the underlay.
#[test]
fn a_fragmented_tunnel_packet_is_one_packet_of_the_inner_flow() {
    let inner = ether(0x0800, &v4(1, 0, false, 17, &udp(3000, 4000, 2000)));
    let outer = vxlan_frame(&inner, 4789, 0);
    // The outer IP packet (after Ethernet), re-cut into pieces.
    let outer_ip = &outer[14..];
    let payload = &outer_ip[20..];
    let analyzers = Analyzers {
        flows: Some(FlowsConfig::default()),

        ..Default::default()
    };
    let stats = Arc::new(Stats::default());
    let mut engine = Engine::new("t".into(), analyzers, stats.clone(), None);
    for (i, (off, more, data)) in cut(payload, 1480).into_iter().enumerate() {
        let mut ip = v4(42, off, more, 17, &data);
        ip[12..20].copy_from_slice(&outer_ip[12..20]);
        engine.packet(linktype::ETHERNET, 1_000 + i as i64, &ether(0x0800, &ip));
    }
    let pieces = cut(payload, 1480);
    let wire_bytes: i64 = pieces.iter().map(|(_, _, d)| 20 + d.len() as i64).sum();
    engine.finish();
    let flows = engine.out.events();
    assert_eq!(flows.len(), 2, "{flows:?}");
    use crate::event::Value;
    let (outer, inner): (Vec<_>, Vec<_>) = flows
        .iter()
        .partition(|f| f.get("tunnel.outer") == Some(&Value::Bool(true)));
    let f = inner[0];
    assert_eq!(f.get("source.port"), Some(&Value::Int(3000)));
    assert_eq!(f.get("source.packets"), Some(&Value::Int(1)));
    assert_eq!(f.get("tunnel.type").and_then(Value::as_str), Some("vxlan"));
    let o = outer[0];
    assert_eq!(o.get("destination.port"), Some(&Value::Int(4789)));
    assert_eq!(
        o.get("source.packets"),
        Some(&Value::Int(pieces.len() as i64))
    );
    assert_eq!(o.get("source.bytes"), Some(&Value::Int(wire_bytes)));
    assert_eq!(stats.fragments.datagrams.load(Ordering::Relaxed), 1);
}

proptest! {
    /// Random pieces of a few datagrams, some overlapping, cut or odd, never panic; every
    /// fragment ends in exactly one result, and nothing is held at the end.
    #[test]
    fn random_fragments_never_panic_and_are_all_accounted(
        pieces in prop::collection::vec(
            (0u16..3, 0usize..200, any::<bool>(), 1usize..64, any::<bool>(), any::<u8>()),
            1..60,
        ),
        limit in 1usize..4,
    ) {
        let mut r = Run::new(Defrag::new(limit, 4000));
        let mut added = 0u64;
        for (n, (id, unit, more, len, v6_packet, fill)) in pieces.into_iter().enumerate() {
            let data = vec![fill; len * 8 - (!more as usize) * (fill as usize % 8)];
            let frame = match v6_packet {
                false => ether(0x0800, &v4(id, unit * 8, more, 17, &data)),
                true => ether(0x86dd, &v6(id as u32, unit * 8, more, &data)),
            };
            let Ok(p) = decode(linktype::ETHERNET, &frame) else { continue };
            if p.fragment.is_none() {
                continue;
            }
            added += 1;
            r.defrag.add(&p, n as i64 * 3_000_000_000, &r.stats, &mut r.done);
            for d in &r.done {
                if let Some(ip) = &d.datagram {
                    let _ = Decoder::default().reassembled(&d.like, ip);
                }
            }
        }
        r.defrag.finish(&r.stats, &mut r.done);
        let c = r.counts();
        prop_assert_eq!(c[..7].iter().sum::<u64>(), added);
        prop_assert_eq!(r.done.iter().map(|d| d.wire.packets).sum::<u64>(), added);
        prop_assert_eq!(r.defrag.held, 0);
    }

    /// Random bytes after a fragment header decode without panicking.
    #[test]
    fn corrupted_fragment_headers_never_panic(pos in 0usize..60, byte in any::<u8>(), cut_at in 0usize..60) {
        for mut f in [ether(0x0800, &v4(1, 8, true, 17, &[1; 16])), ether(0x86dd, &v6(1, 8, true, &[1; 16]))] {
            let n = f.len();
            f[14 + pos % (n - 14)] = byte;
            f.truncate(n - cut_at.min(n));
            if let Ok(p) = decode(linktype::ETHERNET, &f) {
                let mut r = Run::new(Defrag::default());
                r.defrag.add(&p, 0, &r.stats, &mut r.done);
                r.defrag.finish(&r.stats, &mut r.done);
            }
        }
    }
}
