//! Unit tests of `wire::decode` and the packet builders other modules' tests use, kept beside
//! it so that the module itself stays readable.

use super::*;
use proptest::prelude::*;

proptest! {
    /// The short way for plain IPv4/TCP packets decodes exactly what the general way
    /// does, on headers near and at the edges of what it accepts (options, fragments,
    /// reserved bits, lengths longer or shorter than what was captured, odd TCP data
    /// offsets), and it is the way most packets take.
    #[test]
    fn plain_tcp_v4_decodes_as_the_general_path(
        first in prop::sample::select(vec![0x45u8, 0x45, 0x45, 0x46, 0x44, 0x55, 0x65]),
        frag in prop::sample::select(vec![0u16, 0, 0x4000, 0x2000, 0x0001, 0x8000, 0x4001]),
        proto in prop::sample::select(vec![6u8, 6, 6, 17, 1]),
        doff in prop::sample::select(vec![5u8, 5, 8, 4, 15, 0]),
        payload in 0usize..64,
        total_delta in -30i32..30,
        captured_delta in -30i32..30,
        fill in any::<[u8; 64]>(),
    ) {
        let tcp_header = doff as usize * 4;
        let natural = 20 + tcp_header.max(20) + payload;
        let total = (natural as i32 + total_delta).clamp(0, 65535) as usize;
        let captured = (natural as i32 + captured_delta).max(0) as usize;
        let mut d: Vec<u8> = (0..captured.max(60)).map(|i| fill[i % 64]).collect();
        d[0] = first;
        d[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        d[6..8].copy_from_slice(&frag.to_be_bytes());
        d[9] = proto;
        d[32] = doff << 4 | (fill[7] & 0x0f);
        d.truncate(captured);
        let decoder = Decoder::default();
        let walk = Walk::new(&decoder);
        let general = walk.clone().any_ip(&d);
        if let Some(p) = walk.plain_tcp_v4(&d) {
            prop_assert_eq!(Ok(p), general);
        }
    }
}

#[test]
fn a_plain_segment_takes_the_short_way() {
    let frame = eth_tcp(
        [10, 0, 0, 1],
        4000,
        [10, 0, 0, 2],
        80,
        7,
        9,
        tcp_flags::ACK,
        b"GET /",
    );
    let decoder = Decoder::default();
    let p = Walk::new(&decoder).plain_tcp_v4(&frame[14..]);
    assert_eq!(p.as_ref().map(|p| p.payload), Some(&b"GET /"[..]));
    assert_eq!(Ok(p.unwrap()), Walk::new(&decoder).any_ip(&frame[14..]));
}

/// An Ethernet/IPv4/TCP frame for tests.
#[allow(clippy::too_many_arguments)]
pub(crate) fn eth_tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ipv4_tcp(src, sport, dst, dport, seq, ack, flags, payload));
    f
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ipv4_tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + 20 + payload.len();
    let mut f = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn ethernet_ipv4_tcp() {
    let f = eth_tcp(
        [10, 0, 0, 1],
        1234,
        [10, 0, 0, 2],
        80,
        7,
        9,
        tcp_flags::ACK | tcp_flags::PSH,
        b"GET /",
    );
    let p = decode(linktype::ETHERNET, &f).unwrap();
    assert_eq!(p.src.to_string(), "10.0.0.1");
    assert_eq!(p.dst.to_string(), "10.0.0.2");
    assert_eq!((p.sport, p.dport, p.proto), (1234, 80, 6));
    assert_eq!(
        p.tcp.unwrap(),
        Tcp {
            seq: 7,
            ack: 9,
            flags: 0x18
        }
    );
    assert_eq!(p.payload, b"GET /");
    assert_eq!(p.ip_len, 45);
}

#[test]
fn qinq_sll_sll2_and_raw() {
    let ip = ipv4_tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0, 0, tcp_flags::SYN, b"");
    let mut q = vec![0u8; 12];
    q.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
    q.extend_from_slice(&ip);
    let p = decode(linktype::ETHERNET, &q).unwrap();
    assert_eq!(p.vlan, 10);
    assert_eq!(p.sport, 1);

    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(&ip);
    assert_eq!(decode(linktype::LINUX_SLL, &sll).unwrap().dport, 2);

    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&ip);
    assert_eq!(decode(linktype::LINUX_SLL2, &sll2).unwrap().dport, 2);

    assert_eq!(decode(linktype::RAW, &ip).unwrap().dport, 2);
    let mut null = vec![2, 0, 0, 0];
    null.extend_from_slice(&ip);
    assert_eq!(decode(linktype::NULL, &null).unwrap().dport, 2);
}

/// An Ethernet/IPv4/UDP frame from 192.168.0.1 to 192.168.0.2 carrying `inner` in VXLAN
/// to `dport` (4789, or flannel's 8472); `ip_id` tells copies apart.
pub(crate) fn vxlan_frame(inner: &[u8], dport: u16, ip_id: u8) -> Vec<u8> {
    let mut udp_payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    udp_payload.extend_from_slice(inner);
    let ulen = 8 + udp_payload.len();
    let total = 20 + ulen;
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        ip_id,
        0,
        0,
        64,
        17,
        0,
        0,
        192,
        168,
        0,
        1,
        192,
        168,
        0,
        2,
    ]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(ulen as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&udp_payload);
    f
}

#[test]
fn vxlan_is_decapsulated() {
    let inner = eth_tcp(
        [10, 244, 0, 5],
        5555,
        [10, 244, 1, 7],
        80,
        1,
        2,
        tcp_flags::ACK,
        b"hi",
    );
    let f = vxlan_frame(&inner, 8472, 1);
    let p = decode(linktype::ETHERNET, &f).unwrap();
    let t = p.tunnel.unwrap();
    assert_eq!(
        (t.kind, t.id),
        (crate::wire::tunnel::TunnelKind::Vxlan, Some(1))
    );
    assert_eq!(t.src.to_string(), "192.168.0.1");
    assert_eq!(p.src.to_string(), "10.244.0.5");
    assert_eq!(p.payload, b"hi");
}

#[test]
fn truncated_and_foreign_frames_are_errors() {
    assert_eq!(
        decode(linktype::ETHERNET, &[0u8; 5]),
        Err(DecodeError::Truncated)
    );
    let mut arp = vec![0u8; 12];
    arp.extend_from_slice(&[0x08, 0x06, 0, 0]);
    assert_eq!(decode(linktype::ETHERNET, &arp), Err(DecodeError::NotIp));
    assert_eq!(
        decode(9999, &arp),
        Err(DecodeError::UnsupportedLinkType(9999))
    );
}

proptest! {
    #[test]
    fn decoding_random_bytes_never_panics(link in prop::sample::select(vec![0, 1, 101, 113, 276, 228]), data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(link, &data);
    }

    #[test]
    fn decoding_corrupted_frames_never_panics(pos in 0usize..80, byte in any::<u8>(), cut in 0usize..80) {
        let mut f = eth_tcp([10, 0, 0, 1], 1234, [10, 0, 0, 2], 80, 7, 9, 0x18, b"GET / HTTP/1.1\r\n\r\n");
        let n = f.len();
        f[pos % n] = byte;
        f.truncate(n - cut.min(n));
        let _ = decode(linktype::ETHERNET, &f);
    }
}
