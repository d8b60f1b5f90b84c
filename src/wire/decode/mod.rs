//! Packet decoding, borrowing the captured bytes: link layers (Ethernet, SLL, SLL2, raw IP, BSD
//! loopback, PPP, Cisco HDLC), 802.1Q/QinQ, MPLS, PPPoE, IPv4/IPv6 via `etherparse`, the
//! transport headers, and the tunnels (`tunnel.rs`) down to the innermost packet the analyzers see.

pub use super::addr::Addr;
use super::tunnel::{self, Tunnel};
use etherparse::{IpNumber, LaxIpSlice, TcpSlice, UdpSlice};

/// Link-layer header types (pcap `LINKTYPE_*`) trawl decodes.
pub mod linktype {
    pub const NULL: i32 = 0;
    pub const ETHERNET: i32 = 1;
    pub const PPP: i32 = 9;
    pub const RAW_ALT1: i32 = 12;
    pub const RAW_ALT2: i32 = 14;
    pub const PPP_HDLC: i32 = 50;
    pub const PPP_ETHER: i32 = 51;
    pub const RAW: i32 = 101;
    pub const C_HDLC: i32 = 104;
    pub const LOOP: i32 = 108;
    pub const LINUX_SLL: i32 = 113;
    pub const NFLOG: i32 = 239;
    pub const IPV4: i32 = 228;
    pub const IPV6: i32 = 229;
    pub const LINUX_SLL2: i32 = 276;
}

/// UDP ports carrying VXLAN unless configured otherwise: IANA's and flannel's.
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

/// What TCP says about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tcp {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// The packet an ICMP error message quotes (RFC 792, RFC 4443): its flow owns the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    /// Ports, or the quoted ICMP message's type and code.
    pub sport: u16,
    pub dport: u16,
    /// The quoted packet's `Packet::label`.
    pub label: u32,
}

/// Where an IP fragment's bytes go in the datagram it is a piece of (RFC 791, RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// IPv4 identification or IPv6 fragment header identification.
    pub id: u32,
    /// Where the fragment's bytes start in the datagram's payload (IPv6: fragmentable part).
    pub offset: u32,
    /// Bytes the fragment carries on the wire (`Packet::payload` is shorter after `snaplen`).
    pub len: u32,
    /// More fragments follow (MF, or IPv6's M flag).
    pub more: bool,
    pub v6: bool,
}

/// One decoded packet: the innermost IP packet's addresses and transport header, borrowing
/// the payload from the captured bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// VLAN id of the first 802.1Q/802.1ad tag (0 without a tag).
    pub vlan: u16,
    /// VLAN id of the second tag (QinQ's customer VLAN; 0 without).
    pub inner_vlan: u16,
    pub src: Addr,
    pub dst: Addr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
    pub proto: u8,
    /// Ports, or for ICMP the type and code (as Community ID does).
    pub sport: u16,
    pub dport: u16,
    /// What else tells one flow from another between the same addresses when there are no
    /// ports: the ICMP echo identifier, the ESP SPI; 0 otherwise.
    pub label: u32,
    /// For an ICMP error, the packet it is about (boxed: rare, and the packet is copied often).
    pub quoted: Option<Box<Quoted>>,
    pub tcp: Option<Tcp>,
    /// Transport payload as captured (may be shorter than on the wire after `snaplen`).
    pub payload: &'a [u8],
    /// Length of the IP packet on the wire (from its header).
    pub ip_len: u32,
    /// IPv4 identification (0 for IPv6): tells a retransmission from the same packet seen twice.
    pub ip_id: u16,
    /// Payload bytes the IP header announces beyond what was captured.
    pub missing: u32,
    /// The outermost tunnel the packet was decapsulated from (boxed: inline, it made every
    /// packet a third larger and `trawl pcap` measurably slower on untunneled traffic).
    pub tunnel: Option<Box<Tunnel>>,
    /// A piece of a fragmented IP datagram (boxed: rare). Its `payload` is the piece's bytes;
    /// the transport header is not decoded, except the ports (ICMP type, code and echo
    /// identifier) in the piece at offset 0. The engine reassembles the datagram.
    pub fragment: Option<Box<Fragment>>,
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

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
// VLAN tags: 802.1Q, 802.1ad, and the older QinQ type. MPLS: unicast and multicast.
const ETH_8021Q: u16 = 0x8100;
const ETH_8021AD: u16 = 0x88a8;
const ETH_QINQ: u16 = 0x9100;
const ETH_MPLS_UNICAST: u16 = 0x8847;
const ETH_MPLS_MULTICAST: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
pub(crate) const ESP: IpNumber = IpNumber(50);
/// More nested encapsulations than this is not traffic but an attack on the decoder.
const MAX_DEPTH: u8 = 6;

pub(crate) fn be16(d: &[u8], at: usize) -> Result<u16, DecodeError> {
    match d.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(DecodeError::Truncated),
    }
}

fn rest(d: &[u8], from: usize) -> Result<&[u8], DecodeError> {
    d.get(from..).ok_or(DecodeError::Truncated)
}

/// Decoding settings: which UDP ports carry VXLAN.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub vxlan_ports: Vec<u16>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            vxlan_ports: VXLAN_PORTS.to_vec(),
        }
    }
}

/// Decodes one captured frame of link type `link` with the default settings.
pub fn decode(link: i32, data: &[u8]) -> Result<Packet<'_>, DecodeError> {
    Walk::new(&DEFAULT).link(link, data)
}

static DEFAULT: std::sync::LazyLock<Decoder> = std::sync::LazyLock::new(Decoder::default);

impl Decoder {
    /// Decodes one captured frame of link type `link`.
    pub fn decode<'a>(&self, link: i32, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        Walk::new(self).link(link, data)
    }

    /// Decodes IP datagram `ip`, reassembled from fragments like `piece`, as if it had come
    /// in one packet: behind the same VLAN tags and inside the same tunnel.
    pub fn reassembled<'a>(
        &self,
        piece: &Packet<'_>,
        ip: &'a [u8],
    ) -> Result<Packet<'a>, DecodeError> {
        let walk = Walk {
            decoder: self,
            vlan: piece.vlan,
            inner_vlan: piece.inner_vlan,
            tunnel: piece.tunnel.clone(),
            depth: piece.tunnel.is_some() as u8,
        };
        walk.ip(ip)
    }
}

/// Where the decoder is on its way in: the tags and tunnel seen so far and how deep it is.
#[derive(Clone)]
pub(crate) struct Walk<'d> {
    pub(crate) decoder: &'d Decoder,
    vlan: u16,
    inner_vlan: u16,
    /// Boxed, as in `Packet`: the walk is passed by value at every layer.
    tunnel: Option<Box<Tunnel>>,
    depth: u8,
}

impl<'d> Walk<'d> {
    fn new(decoder: &'d Decoder) -> Walk<'d> {
        Walk {
            decoder,
            vlan: 0,
            inner_vlan: 0,
            tunnel: None,
            depth: 0,
        }
    }

    /// The walk inside tunnel `t`: the inner frame's own VLAN tags replace the outer ones (the
    /// same packet captured on a pod's veth has no outer tags), the outermost tunnel is kept.
    pub(crate) fn enter(self, t: Tunnel) -> Result<Walk<'d>, DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::Malformed);
        }
        Ok(Walk {
            decoder: self.decoder,
            vlan: 0,
            inner_vlan: 0,
            tunnel: Some(self.tunnel.unwrap_or_else(|| Box::new(t))),
            depth: self.depth + 1,
        })
    }

    #[inline]
    fn link<'a>(self, link: i32, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        match link {
            linktype::ETHERNET => self.ethernet(data),
            linktype::LINUX_SLL => self.ethertype(be16(data, 14)?, rest(data, 16)?),
            linktype::LINUX_SLL2 => self.ethertype(be16(data, 0)?, rest(data, 20)?),
            linktype::RAW | linktype::RAW_ALT1 | linktype::RAW_ALT2 => self.ip_by_version(data),
            linktype::IPV4 | linktype::IPV6 => self.ip_by_version(data),
            // The family is in the capturing machine's byte order (NULL) or network order
            // (LOOP), and its value for IPv6 differs between BSDs: the version nibble says it.
            linktype::NULL | linktype::LOOP => self.ip_by_version(rest(data, 4)?),
            // Cisco HDLC: address, control, then an Ethernet type.
            linktype::C_HDLC => self.ethertype(be16(data, 2)?, rest(data, 4)?),
            linktype::PPP | linktype::PPP_HDLC => self.ppp(data),
            linktype::PPP_ETHER => self.pppoe(data),
            linktype::NFLOG => self.nflog(data),
            other => Err(DecodeError::UnsupportedLinkType(other)),
        }
    }

    /// Ethernet II, or IEEE 802.3 (a length where the type would be) with an LLC/SNAP header
    /// (RFC 1042: DSAP and SSAP 0xAA, control 3, an OUI, then the Ethernet type).
    #[inline]
    pub(crate) fn ethernet<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let ethertype = be16(data, 12)?;
        if ethertype <= 1500 {
            return match data.get(14..17) {
                Some([0xaa, 0xaa, 0x03]) => self.ethertype(be16(data, 20)?, rest(data, 22)?),
                Some(_) => Err(DecodeError::NotIp),
                None => Err(DecodeError::Truncated),
            };
        }
        self.ethertype(ethertype, rest(data, 14)?)
    }

    /// Linux NFLOG (`DLT_NFLOG`): family, version and resource id, then type-length-value
    /// attributes, each padded to 4 bytes, whose length and type are in the capturing
    /// machine's byte order; the packet is attribute 9 (`NFULA_PAYLOAD`), from its IP header.
    fn nflog<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let mut at = 4;
        loop {
            let h = data.get(at..at + 4).ok_or(DecodeError::Truncated)?;
            let left = data.len() - at;
            let (le, be) = (
                u16::from_le_bytes([h[0], h[1]]) as usize,
                u16::from_be_bytes([h[0], h[1]]) as usize,
            );
            let (len, kind) = if (4..=left).contains(&le) {
                (le, u16::from_le_bytes([h[2], h[3]]))
            } else if (4..=left).contains(&be) {
                (be, u16::from_be_bytes([h[2], h[3]]))
            } else {
                return Err(DecodeError::Malformed);
            };
            if kind == 9 {
                return self.ip_by_version(&data[at + 4..at + len]);
            }
            at += (len + 3) & !3;
        }
    }

    /// Walks VLAN tags, then what the Ethernet type names.
    #[inline]
    pub(crate) fn ethertype<'a>(
        mut self,
        mut ethertype: u16,
        mut data: &'a [u8],
    ) -> Result<Packet<'a>, DecodeError> {
        let mut tags = 0;
        // A match rather than a search of a slice of the types: every frame asks, and the
        // search was a call of its own.
        while matches!(ethertype, ETH_8021Q | ETH_8021AD | ETH_QINQ) {
            tags += 1;
            if tags > 3 {
                return Err(DecodeError::Malformed);
            }
            let vid = be16(data, 0)? & 0x0fff;
            match tags {
                1 => self.vlan = vid,
                2 => self.inner_vlan = vid,
                _ => {}
            }
            ethertype = be16(data, 2)?;
            data = rest(data, 4)?;
        }
        match ethertype {
            ETH_IPV4 | ETH_IPV6 => self.ip(data),
            ETH_MPLS_UNICAST | ETH_MPLS_MULTICAST => self.mpls(data),
            ETH_PPPOE_SESSION => self.pppoe(data),
            _ => Err(DecodeError::NotIp),
        }
    }

    /// An MPLS label stack (RFC 3032), then IP by its version nibble, or an Ethernet
    /// pseudowire (RFC 4448) with or without the control word (RFC 4385: first nibble 0).
    fn mpls<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let mut at = 0;
        loop {
            let entry = data.get(at..at + 4).ok_or(DecodeError::Truncated)?;
            at += 4;
            if entry[2] & 1 == 1 {
                break;
            }
            if at > 4 * 16 {
                return Err(DecodeError::Malformed);
            }
        }
        let inner = rest(data, at)?;
        match inner.first().map(|b| b >> 4) {
            Some(4) | Some(6) => self.ip_by_version(inner),
            Some(0) => self.ethernet(rest(inner, 4)?),
            Some(_) => self.ethernet(inner),
            None => Err(DecodeError::Truncated),
        }
    }

    /// A PPPoE session header (RFC 2516), then PPP.
    fn pppoe<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if data.first() != Some(&0x11) {
            return Err(DecodeError::NotIp);
        }
        self.ppp_protocol(rest(data, 6)?)
    }

    /// PPP with or without HDLC-like framing's address and control bytes (RFC 1662).
    pub(crate) fn ppp<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        match data {
            [0xff, 0x03, ..] => self.ppp_protocol(&data[2..]),
            _ => self.ppp_protocol(data),
        }
    }

    /// The PPP protocol field (one byte when compressed: an odd first byte), then its packet.
    fn ppp_protocol<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let (proto, body) = match data.first() {
            Some(b) if b & 1 == 1 => (*b as u16, &data[1..]),
            Some(_) => (be16(data, 0)?, &data[2..]),
            None => return Err(DecodeError::Truncated),
        };
        match proto {
            0x0021 | 0x0057 => self.ip_by_version(body),
            0x0281 | 0x0283 => self.mpls(body),
            _ => Err(DecodeError::NotIp),
        }
    }

    #[inline]
    pub(crate) fn ip_by_version<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        match data.first().map(|b| b >> 4) {
            Some(4) | Some(6) => self.ip(data),
            Some(_) => Err(DecodeError::NotIp),
            None => Err(DecodeError::Truncated),
        }
    }

    /// Most packets by far: IPv4 without options, not a fragment, whole in the capture,
    /// carrying a TCP segment whose header fits. Read here by hand, which gives what the
    /// general path below gives for such a packet at a third of its cost; anything else
    /// (`None`) takes the general path.
    #[inline(always)]
    fn plain_tcp_v4<'a>(&self, data: &'a [u8]) -> Option<Packet<'a>> {
        // Fixed headers as arrays: their fields are read without a bounds check each.
        let ip: &[u8; 20] = data.first_chunk()?;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        // Version 4 with a 20-byte header; no reserved bit, no more-fragments bit, offset 0
        // (don't-fragment may be set); TCP; a total length that covers a TCP header and that
        // the captured bytes hold (Ethernet padding beyond it is cut off).
        if ip[0] != 0x45
            || u16::from_be_bytes([ip[6], ip[7]]) & 0xbfff != 0
            || ip[9] != IpNumber::TCP.0
            || total < 40
            || total > data.len()
        {
            return None;
        }
        let tcp = &data[20..total];
        let fixed: &[u8; 20] = tcp.first_chunk()?;
        let header = (fixed[12] >> 4) as usize * 4;
        if header < 20 || header > tcp.len() {
            return None;
        }
        let word = |at: usize| {
            u32::from_be_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let addr = |at: usize| Addr::v4([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        Some(Packet {
            vlan: self.vlan,
            inner_vlan: self.inner_vlan,
            src: addr(12),
            dst: addr(16),
            proto: IpNumber::TCP.0,
            sport: u16::from_be_bytes([fixed[0], fixed[1]]),
            dport: u16::from_be_bytes([fixed[2], fixed[3]]),
            label: 0,
            quoted: None,
            tcp: Some(Tcp {
                seq: word(4),
                ack: word(8),
                flags: fixed[13] & 0x3f,
            }),
            payload: &tcp[header..],
            ip_len: total as u32,
            ip_id: u16::from_be_bytes([ip[4], ip[5]]),
            missing: 0,
            tunnel: self.tunnel.clone(),
            fragment: None,
        })
    }

    #[inline]
    pub(crate) fn ip<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        match self.plain_tcp_v4(data) {
            Some(p) => Ok(p),
            None => self.any_ip(data),
        }
    }

    /// Any IP packet (the general path of `ip`).
    fn any_ip<'a>(self, data: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let (slice, _ext_err) = LaxIpSlice::from_slice(data).map_err(|e| match e {
            etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
            etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::Malformed,
        })?;
        let (src, dst, ip_len, ip_id) = match &slice {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                (
                    Addr::v4(h.source()),
                    Addr::v4(h.destination()),
                    h.total_len() as u32,
                    h.identification(),
                )
            }
            LaxIpSlice::Ipv6(v6) => {
                let h = v6.header();
                (
                    Addr(h.source()),
                    Addr(h.destination()),
                    40 + h.payload_length() as u32,
                    0,
                )
            }
        };
        let payload = slice.payload();
        let proto = payload.ip_number.0;
        let mut p = Packet {
            vlan: self.vlan,
            inner_vlan: self.inner_vlan,
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            label: 0,
            quoted: None,
            tcp: None,
            payload: &[],
            ip_len,
            ip_id,
            missing: 0,
            tunnel: self.tunnel.clone(),
            fragment: None,
        };
        if payload.fragmented {
            return super::defrag::piece(p, &slice, data);
        }
        let body = payload.payload;
        p.missing = ip_len.saturating_sub(data.len().min(ip_len as usize) as u32);
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
                // An inner packet that does not decode leaves the outer one to be reported.
                if let Some(Ok(inner)) = tunnel::over_udp(self, &p) {
                    return Ok(inner);
                }
            }
            IpNumber::ICMP | IpNumber::IPV6_ICMP => {
                if body.len() < 2 {
                    return Err(DecodeError::Truncated);
                }
                p.sport = body[0] as u16;
                p.dport = body[1] as u16;
                p.payload = body.get(4..).unwrap_or(&[]);
                let v6 = proto == IpNumber::IPV6_ICMP.0;
                if is_icmp_echo(v6, body[0]) {
                    p.label = be16(body, 4).unwrap_or(0) as u32;
                } else if is_icmp_error(v6, body[0]) {
                    p.quoted = body.get(8..).and_then(quoted).map(Box::new);
                }
            }
            // ESP (RFC 4303): one security association per SPI, one flow per SA.
            ESP => {
                if let Some(spi) = body.get(..4) {
                    p.label = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
                }
                p.payload = body;
            }
            // SCTP, DCCP, UDP-Lite: ports first, as UDP.
            IpNumber::SCTP | IpNumber::DCCP | IpNumber::UDP_LITE => {
                p.sport = be16(body, 0)?;
                p.dport = be16(body, 2)?;
                p.payload = body;
            }
            IpNumber::GRE | IpNumber::IPV4 | IpNumber::IPV6 => {
                p.payload = body;
                if let Some(Ok(inner)) = tunnel::over_ip(self, &p) {
                    return Ok(inner);
                }
            }
            _ => p.payload = body,
        }
        Ok(p)
    }
}

/// ICMP echo request or reply (RFC 792 types 8 and 0, RFC 4443 types 128 and 129).
pub fn is_icmp_echo(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        matches!(icmp_type, 128 | 129)
    } else {
        matches!(icmp_type, 0 | 8)
    }
}

/// ICMP error messages, which quote the packet they are about: destination unreachable,
/// source quench, redirect, time exceeded, parameter problem; ICMPv6 1 to 4.
pub fn is_icmp_error(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        matches!(icmp_type, 1..=4)
    } else {
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    }
}

/// The quoted packet of an ICMP error: its IP header and the first bytes of its transport
/// header (8 for ICMPv4, as much as fits for ICMPv6), enough for ports or an echo identifier.
fn quoted(data: &[u8]) -> Option<Quoted> {
    let (slice, _) = LaxIpSlice::from_slice(data).ok()?;
    let (src, dst) = match &slice {
        LaxIpSlice::Ipv4(v4) => (
            Addr::v4(v4.header().source()),
            Addr::v4(v4.header().destination()),
        ),
        LaxIpSlice::Ipv6(v6) => (Addr(v6.header().source()), Addr(v6.header().destination())),
    };
    let payload = slice.payload();
    let body = payload.payload;
    let proto = payload.ip_number;
    let mut q = Quoted {
        src,
        dst,
        proto: proto.0,
        sport: 0,
        dport: 0,
        label: 0,
    };
    match proto {
        IpNumber::TCP | IpNumber::UDP | IpNumber::SCTP | IpNumber::DCCP | IpNumber::UDP_LITE => {
            q.sport = be16(body, 0).ok()?;
            q.dport = be16(body, 2).ok()?;
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            let v6 = proto == IpNumber::IPV6_ICMP;
            let t = *body.first()?;
            // An error about an error is never sent (RFC 1122 3.2.2): not a flow's packet.
            if is_icmp_error(v6, t) {
                return None;
            }
            q.sport = t as u16;
            q.dport = *body.get(1)? as u16;
            if is_icmp_echo(v6, t) {
                q.label = be16(body, 4).ok()? as u32;
            }
        }
        ESP => {
            let spi = body.get(..4)?;
            q.label = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
        }
        _ => {}
    }
    Some(q)
}

#[cfg(test)]
pub(crate) mod tests;
