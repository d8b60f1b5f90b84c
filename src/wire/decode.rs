//! Packet decoding, borrowing the captured bytes: link layers (Ethernet with 802.1Q/QinQ, Linux
//! cooked SLL and SLL2, raw IP, BSD loopback), IPv4/IPv6 via `etherparse`, TCP/UDP/ICMP headers,
//! and VXLAN decapsulation (4789 and flannel's 8472), so analyzers see the innermost packet.

use etherparse::{IpNumber, LaxIpSlice, TcpSlice, UdpSlice};

/// Link-layer header types (pcap `LINKTYPE_*`) trawl decodes.
pub mod linktype {
    pub const NULL: i32 = 0;
    pub const ETHERNET: i32 = 1;
    pub const RAW: i32 = 101;
    pub const RAW_ALT1: i32 = 12;
    pub const RAW_ALT2: i32 = 14;
    pub const LOOP: i32 = 108;
    pub const LINUX_SLL: i32 = 113;
    pub const IPV4: i32 = 228;
    pub const IPV6: i32 = 229;
    pub const LINUX_SLL2: i32 = 276;
}

/// UDP ports carrying VXLAN: IANA's and flannel's.
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];

/// TCP flag bits as in the header's 13th byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// An IP address in 16 bytes (IPv4 as IPv4-mapped IPv6), cheap to copy, hash and compare.
#[derive(Clone, Copy, Debug, Default)]
pub struct Addr(pub [u8; 16]);

// Compared and hashed as one 128-bit number rather than byte by byte: the flow table and the
// HTTP analyzer do both for every packet. The order is the bytes' (big-endian), as before.
impl PartialEq for Addr {
    fn eq(&self, other: &Addr) -> bool {
        self.number() == other.number()
    }
}
impl Eq for Addr {}
impl std::hash::Hash for Addr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.number());
    }
}
impl Ord for Addr {
    fn cmp(&self, other: &Addr) -> std::cmp::Ordering {
        self.number().cmp(&other.number())
    }
}
impl PartialOrd for Addr {
    fn partial_cmp(&self, other: &Addr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Addr {
    #[inline(always)]
    fn number(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    pub fn v4(b: [u8; 4]) -> Addr {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&b);
        Addr(a)
    }

    pub fn is_v4(&self) -> bool {
        self.0[..10] == [0u8; 10] && self.0[10] == 0xff && self.0[11] == 0xff
    }

    /// The address bytes as on the wire (4 for IPv4, 16 for IPv6).
    pub fn wire(&self) -> &[u8] {
        if self.is_v4() {
            &self.0[12..]
        } else {
            &self.0
        }
    }

    pub fn to_ip(&self) -> std::net::IpAddr {
        if self.is_v4() {
            std::net::IpAddr::from([self.0[12], self.0[13], self.0[14], self.0[15]])
        } else {
            std::net::IpAddr::from(self.0)
        }
    }

    /// The address as text; IPv4 without the formatter and in a string of the right size.
    pub fn text(&self) -> String {
        match self.v4_text(&mut [0; 15]) {
            Some(t) => t.to_owned(),
            None => self.to_ip().to_string(),
        }
    }

    /// Dotted-quad IPv4 written into `text`; `None` for IPv6.
    pub fn v4_text<'t>(&self, text: &'t mut [u8; 15]) -> Option<&'t str> {
        if !self.is_v4() {
            return None;
        }
        let mut n = 0;
        for (i, &octet) in self.0[12..].iter().enumerate() {
            if i > 0 {
                text[n] = b'.';
                n += 1;
            }
            let digits = [octet / 100, octet / 10 % 10, octet % 10];
            let skip = if octet >= 100 {
                0
            } else if octet >= 10 {
                1
            } else {
                2
            };
            for d in &digits[skip..] {
                text[n] = b'0' + d;
                n += 1;
            }
        }
        // Only ASCII digits and dots were written.
        std::str::from_utf8(&text[..n]).ok()
    }
}

impl std::fmt::Display for Addr {
    /// IPv4 by hand: every flow and connection report writes its addresses, and the standard
    /// formatter (padding support, one `write` per octet) cost ten times as much.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.v4_text(&mut [0; 15]) {
            Some(t) if f.width().is_none() => f.write_str(t),
            _ => self.to_ip().fmt(f),
        }
    }
}

/// What TCP says about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tcp {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// One decoded packet: the innermost IP packet's addresses and transport header, borrowing
/// the payload from the captured bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Outermost VLAN id (0 without a tag).
    pub vlan: u16,
    pub src: Addr,
    pub dst: Addr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
    pub proto: u8,
    /// Ports, or for ICMP the type and code (as Community ID does).
    pub sport: u16,
    pub dport: u16,
    pub tcp: Option<Tcp>,
    /// Transport payload as captured (may be shorter than on the wire after `snaplen`).
    pub payload: &'a [u8],
    /// Length of the IP packet on the wire (from its header).
    pub ip_len: u32,
    /// IPv4 identification (0 for IPv6): tells a retransmission from the same packet seen twice.
    pub ip_id: u16,
    /// Payload bytes the IP header announces beyond what was captured.
    pub missing: u32,
    /// Decapsulated from a VXLAN tunnel.
    pub tunneled: bool,
    /// IP fragment (not the first one, or a first one we cannot read the ports of).
    pub fragment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not IP (ARP, LLDP...): skipped without counting as an error.
    NotIp,
    UnsupportedLinkType(i32),
    Truncated,
    Malformed,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotIp => f.write_str("not an IP packet"),
            DecodeError::UnsupportedLinkType(t) => write!(f, "unsupported link type {t}"),
            DecodeError::Truncated => f.write_str("truncated packet"),
            DecodeError::Malformed => f.write_str("malformed packet"),
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

fn be16(d: &[u8], at: usize) -> Result<u16, DecodeError> {
    match d.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(DecodeError::Truncated),
    }
}

/// Decodes one captured frame of link type `link`.
pub fn decode(link: i32, data: &[u8]) -> Result<Packet<'_>, DecodeError> {
    decode_depth(link, data, 0)
}

fn decode_depth(link: i32, data: &[u8], depth: u8) -> Result<Packet<'_>, DecodeError> {
    let (ethertype, rest) = match link {
        linktype::ETHERNET => (be16(data, 12)?, &data[14..]),
        linktype::LINUX_SLL => (be16(data, 14)?, &data[16..]),
        linktype::LINUX_SLL2 => {
            if data.len() < 20 {
                return Err(DecodeError::Truncated);
            }
            (be16(data, 0)?, &data[20..])
        }
        linktype::RAW | linktype::RAW_ALT1 | linktype::RAW_ALT2 => return ip(data, 0, depth),
        linktype::IPV4 | linktype::IPV6 => return ip(data, 0, depth),
        linktype::NULL | linktype::LOOP => {
            if data.len() < 4 {
                return Err(DecodeError::Truncated);
            }
            // The family is in host order of the capturing machine (NULL) or network (LOOP):
            // look at the IP version nibble instead of guessing the byte order.
            return match data[4..].first().map(|b| b >> 4) {
                Some(4) | Some(6) => ip(&data[4..], 0, depth),
                Some(_) => Err(DecodeError::NotIp),
                None => Err(DecodeError::Truncated),
            };
        }
        other => return Err(DecodeError::UnsupportedLinkType(other)),
    };
    ether_payload(ethertype, rest, depth)
}

/// Walks VLAN tags, then decodes IP.
fn ether_payload(
    mut ethertype: u16,
    mut rest: &[u8],
    depth: u8,
) -> Result<Packet<'_>, DecodeError> {
    let mut vlan = 0u16;
    let mut tags = 0;
    while ETH_VLAN.contains(&ethertype) {
        tags += 1;
        if tags > 3 {
            return Err(DecodeError::Malformed);
        }
        let tci = be16(rest, 0)?;
        if vlan == 0 {
            vlan = tci & 0x0fff;
        }
        ethertype = be16(rest, 2)?;
        rest = &rest[4..];
    }
    match ethertype {
        ETH_IPV4 | ETH_IPV6 => ip(rest, vlan, depth),
        _ => Err(DecodeError::NotIp),
    }
}

fn ip(data: &[u8], vlan: u16, depth: u8) -> Result<Packet<'_>, DecodeError> {
    let (slice, _ext_err) = LaxIpSlice::from_slice(data).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::Malformed,
    })?;
    let (src, dst, ip_len, ip_id, first_fragment) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let first = h.fragments_offset().value() == 0;
            (
                Addr::v4(h.source()),
                Addr::v4(h.destination()),
                h.total_len() as u32,
                h.identification(),
                first,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                Addr(h.source()),
                Addr(h.destination()),
                40 + h.payload_length() as u32,
                0,
                true,
            )
        }
    };
    let payload = slice.payload();
    let proto = payload.ip_number.0;
    let mut p = Packet {
        vlan,
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        tcp: None,
        payload: &[],
        ip_len,
        ip_id,
        missing: 0,
        tunneled: false,
        fragment: payload.fragmented,
    };
    if payload.fragmented && !first_fragment {
        return Ok(p);
    }
    let body = payload.payload;
    match payload.ip_number {
        IpNumber::TCP => {
            let t = TcpSlice::from_slice(body).map_err(|e| match e {
                etherparse::err::tcp::HeaderSliceError::Len(_) => DecodeError::Truncated,
                etherparse::err::tcp::HeaderSliceError::Content(_) => DecodeError::Malformed,
            })?;
            p.sport = t.source_port();
            p.dport = t.destination_port();
            let hdr = t.header_slice();
            p.tcp = Some(Tcp {
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                flags: hdr.get(13).copied().unwrap_or(0) & 0x3f,
            });
            p.payload = t.payload();
        }
        IpNumber::UDP => {
            let u = UdpSlice::from_slice_lax(body).map_err(|_| DecodeError::Truncated)?;
            p.sport = u.source_port();
            p.dport = u.destination_port();
            p.payload = u.payload();
            if depth == 0 && (VXLAN_PORTS.contains(&p.dport)) {
                if let Some(inner) = vxlan(p.payload) {
                    if let Ok(mut q) = decode_depth(linktype::ETHERNET, inner, depth + 1) {
                        q.tunneled = true;
                        return Ok(q);
                    }
                }
            }
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            if body.len() < 2 {
                return Err(DecodeError::Truncated);
            }
            p.sport = body[0] as u16;
            p.dport = body[1] as u16;
            p.payload = body.get(4..).unwrap_or(&[]);
        }
        _ => p.payload = body,
    }
    let hdr_overhead = ip_len as usize;
    let captured_ip = data.len().min(hdr_overhead);
    p.missing = (hdr_overhead - captured_ip) as u32;
    Ok(p)
}

/// The inner Ethernet frame of a VXLAN packet (flags byte with the I bit set), if it is one.
fn vxlan(udp_payload: &[u8]) -> Option<&[u8]> {
    if udp_payload.len() < 8 + 14 || udp_payload[0] & 0x08 == 0 {
        return None;
    }
    Some(&udp_payload[8..])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_order_as_their_bytes() {
        let all = [
            Addr::v4([10, 0, 0, 1]),
            Addr::v4([10, 0, 0, 2]),
            Addr::v4([9, 255, 255, 255]),
            Addr::v4([192, 168, 0, 1]),
            Addr("::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
            Addr("fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
        ];
        for a in all {
            for b in all {
                assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
                assert_eq!(a == b, a.0 == b.0);
            }
        }
    }

    #[test]
    fn addresses_print_as_the_standard_library_prints_them() {
        for v in 0..=255u8 {
            for at in 0..4 {
                let mut b = [10, 0, 99, 255];
                b[at] = v;
                let want = std::net::Ipv4Addr::from(b).to_string();
                assert_eq!(Addr::v4(b).to_string(), want);
                assert_eq!(Addr::v4(b).text(), want);
                assert_eq!(format!("{:>16}", Addr::v4(b)), format!("{want:>16}"));
            }
        }
        let v6: std::net::Ipv6Addr = "2001:db8::ff00:42:8329".parse().unwrap();
        assert_eq!(Addr(v6.octets()).to_string(), v6.to_string());
        assert_eq!(Addr(v6.octets()).text(), v6.to_string());
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
        assert!(p.tunneled);
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
}
