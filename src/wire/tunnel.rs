//! Tunnels the decoder opens to reach the inner packet: VXLAN (and VXLAN-GPE), Geneve, Teredo,
//! GTP-U, AYIYA and GRE-in-UDP over UDP; GRE (with ERSPAN types I, II, III and PPTP's enhanced
//! GRE), IP-in-IP and IPv6-in-IP over IP. Each names the tunnel the packet came through.

use super::addr::Addr;
use super::decode::{be16, DecodeError, Packet, Walk, ETH_IPV4, ETH_IPV6};

/// Which encapsulation a packet came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Vxlan,
    VxlanGpe,
    Geneve,
    Gre,
    /// PPTP's enhanced GRE (version 1, RFC 2637): `tunnel.type` `gre` as any GRE, told apart
    /// because its id, the call id, is the receiver's and so differs per direction.
    Pptp,
    ErspanI,
    ErspanII,
    ErspanIII,
    Teredo,
    /// GTP-U, the user plane of mobile networks (3GPP TS 29.281).
    Gtp,
    /// AYIYA, "Anything In Anything" (IPv6 tunnel brokers such as SixXS), on UDP 5072.
    Ayiya,
    /// GRE carried in UDP (RFC 8086), on UDP 4754.
    GreUdp,
    /// IPv4 carried directly in IP (protocol 4).
    Ipip,
    /// IPv6 carried directly in IP (protocol 41: 6in4, `sit`, ip6tnl).
    Ip6in4,
}

impl TunnelKind {
    /// The `tunnel.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::VxlanGpe => "vxlan-gpe",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre | TunnelKind::Pptp => "gre",
            TunnelKind::ErspanI => "erspan-i",
            TunnelKind::ErspanII => "erspan-ii",
            TunnelKind::ErspanIII => "erspan-iii",
            TunnelKind::Teredo => "teredo",
            TunnelKind::Gtp => "gtp",
            TunnelKind::Ayiya => "ayiya",
            TunnelKind::GreUdp => "gre-udp",
            TunnelKind::Ipip => "ipip",
            TunnelKind::Ip6in4 => "6in4",
        }
    }
}

/// The tunnel a packet came through: its kind, its identifier (VXLAN/Geneve VNI, GRE key,
/// ERSPAN session, PPTP call) and the outer addresses as the packet carried them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub id: Option<u32>,
    pub src: Addr,
    pub dst: Addr,
    /// The outer UDP ports (source, destination) when the tunnel runs over UDP.
    pub udp: Option<(u16, u16)>,
    /// The outer IP packet's length on the wire and its VLAN: the outer flow's bytes and key.
    pub ip_len: u32,
    pub vlan: u16,
}

/// IANA's Geneve port (RFC 8926), VXLAN-GPE's, and Teredo's server port (RFC 4380).
const GENEVE_PORT: u16 = 6081;
const VXLAN_GPE_PORT: u16 = 4790;
const TEREDO_PORT: u16 = 3544;
/// GTP-U's port (3GPP TS 29.281 section 4.4.2).
const GTP_U_PORT: u16 = 2152;
/// AYIYA's IANA port, and GRE-in-UDP's (RFC 8086 section 3.2; 4755, GRE-in-UDP with DTLS,
/// is encrypted and left as the outer flow).
const AYIYA_PORT: u16 = 5072;
const GRE_IN_UDP_PORT: u16 = 4754;
/// Ethernet type of an Ethernet frame carried as a payload (transparent Ethernet bridging).
const ETH_TEB: u16 = 0x6558;

fn be32(d: &[u8], at: usize) -> Result<u32, DecodeError> {
    match d.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(DecodeError::Truncated),
    }
}

fn tail(d: &[u8], from: usize) -> Result<&[u8], DecodeError> {
    d.get(from..).ok_or(DecodeError::Truncated)
}

fn tunnel(kind: TunnelKind, id: Option<u32>, outer: &Packet<'_>) -> Tunnel {
    Tunnel {
        kind,
        id,
        src: outer.src,
        dst: outer.dst,
        udp: (outer.proto == 17).then_some((outer.sport, outer.dport)),
        ip_len: outer.ip_len,
        vlan: outer.vlan,
    }
}

/// The inner packet of UDP packet `outer` when its ports say it is a tunnel: `None` when it
/// is not one, an error when the inner packet does not decode.
pub(crate) fn over_udp<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
) -> Option<Result<Packet<'a>, DecodeError>> {
    let data = outer.payload;
    if walk.decoder.vxlan_ports.contains(&outer.dport) || outer.dport == VXLAN_GPE_PORT {
        return Some(vxlan(walk, outer, data));
    }
    if outer.dport == GENEVE_PORT {
        return Some(geneve(walk, outer, data));
    }
    if outer.dport == GTP_U_PORT || outer.sport == GTP_U_PORT {
        return Some(gtp_u(walk, outer, data));
    }
    // The destination port names GRE-in-UDP; the source port is the sender's flow entropy.
    if outer.dport == GRE_IN_UDP_PORT {
        return Some(gre(walk, outer, data, TunnelKind::GreUdp));
    }
    if outer.dport == AYIYA_PORT || outer.sport == AYIYA_PORT {
        return Some(ayiya(walk, outer, data));
    }
    if outer.sport == TEREDO_PORT || outer.dport == TEREDO_PORT || looks_like_teredo(data) {
        return Some(teredo(walk, outer, data));
    }
    None
}

/// VXLAN (RFC 7348): flags with the I bit, 24 reserved bits, the VNI, 8 reserved bits, then an
/// Ethernet frame. Every bit but I is reserved and ignored as the RFC tells receivers to
/// (Group Policy's G bit and policy id live there, and senders set others). VXLAN-GPE has a
/// port of its own (4790): only there does the P bit say the last header byte names the
/// payload (1 IPv4, 2 IPv6, 3 Ethernet, 5 MPLS).
fn vxlan<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    let flags = *data.first().ok_or(DecodeError::Truncated)?;
    if flags & 0x08 == 0 {
        return Err(DecodeError::Malformed);
    }
    let vni = be32(data, 4)? >> 8;
    let inner = tail(data, 8)?;
    if flags & 0x04 != 0 && outer.dport == VXLAN_GPE_PORT {
        let walk = walk.enter(tunnel(TunnelKind::VxlanGpe, Some(vni), outer))?;
        return match data[3] {
            1 | 2 => walk.ip_by_version(inner),
            3 => walk.ethernet(inner),
            5 => walk.ethertype(0x8847, inner),
            _ => Err(DecodeError::NotIp),
        };
    }
    walk.enter(tunnel(TunnelKind::Vxlan, Some(vni), outer))?
        .ethernet(inner)
}

/// Geneve (RFC 8926): version 0, options length in 4-byte words, protocol type, VNI, then
/// the options, skipped, then the payload the protocol type names.
fn geneve<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    let first = *data.first().ok_or(DecodeError::Truncated)?;
    if first >> 6 != 0 {
        return Err(DecodeError::Malformed);
    }
    let options = (first & 0x3f) as usize * 4;
    let proto = be16(data, 2)?;
    let vni = be32(data, 4)? >> 8;
    let inner = tail(data, 8 + options)?;
    let walk = walk.enter(tunnel(TunnelKind::Geneve, Some(vni), outer))?;
    match proto {
        ETH_TEB => walk.ethernet(inner),
        other => walk.ethertype(other, inner),
    }
}

/// An IPv6 packet filling the whole UDP payload with a Teredo address (2001::/32) at one end:
/// Teredo between clients, on ports other than the server's.
fn looks_like_teredo(data: &[u8]) -> bool {
    data.len() >= 40
        && data[0] >> 4 == 6
        && u16::from_be_bytes([data[4], data[5]]) as usize + 40 == data.len()
        && (data[8..12] == [0x20, 0x01, 0, 0] || data[24..28] == [0x20, 0x01, 0, 0])
}

/// GTP-U (3GPP TS 29.281 section 5.1): version 1 with the PT bit, message type, length, TEID;
/// with any of the E, S or PN flags a sequence number, N-PDU number and next extension type
/// follow, then, with E only, the extension headers (length in 4-byte units, the next type in
/// their last byte): without E the next type is not to be interpreted (5.1), whatever it holds.
/// A G-PDU (type 255) carries an IP packet; the path management and tunnel messages (echo,
/// error indication, end marker) carry none and stay in the outer flow.
fn gtp_u<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    let flags = *data.first().ok_or(DecodeError::Truncated)?;
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(DecodeError::Malformed);
    }
    if data.get(1) != Some(&255) {
        return Err(DecodeError::NotIp);
    }
    let teid = be32(data, 4)?;
    let mut at = 8;
    if flags & 0x07 != 0 {
        at = 12;
        let mut next = match flags & 0x04 {
            0 => 0,
            _ => *data.get(11).ok_or(DecodeError::Truncated)?,
        };
        while next != 0 {
            let words = *data.get(at).ok_or(DecodeError::Truncated)? as usize;
            if words == 0 {
                return Err(DecodeError::Malformed);
            }
            at += words * 4;
            next = *data.get(at - 1).ok_or(DecodeError::Truncated)?;
        }
    }
    walk.enter(tunnel(TunnelKind::Gtp, Some(teid), outer))?
        .ip_by_version(tail(data, at)?)
}

/// AYIYA (draft-massar-v6ops-ayiya): identity length (a power of two) and type, signature
/// length (4-byte words) and hash method, authentication method and operation code, next
/// header (an IP protocol number), a 4-byte epoch, then the identity and the signature. Only
/// operation 1 (forward) carries a packet; the others are the tunnel's own signalling.
fn ayiya<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    let head = data.get(..8).ok_or(DecodeError::Truncated)?;
    let identity = 1usize << (head[0] >> 4);
    let signature = (head[1] >> 4) as usize * 4;
    if head[2] & 0x0f != 1 {
        return Err(DecodeError::NotIp);
    }
    let version = match head[3] {
        4 => 4,
        41 => 6,
        _ => return Err(DecodeError::NotIp),
    };
    let inner = tail(data, 8 + identity + signature)?;
    if inner.first().map(|b| b >> 4) != Some(version) {
        return Err(DecodeError::Malformed);
    }
    walk.enter(tunnel(TunnelKind::Ayiya, None, outer))?
        .ip(inner)
}

/// Teredo (RFC 4380): optional authentication and origin indications, then IPv6.
fn teredo<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    mut data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    if data.len() >= 4 && data[..2] == [0, 1] {
        // Authentication: indicator, id length, auth length, id, auth, nonce (8), confirmation.
        let skip = 4 + data[2] as usize + data[3] as usize + 9;
        data = tail(data, skip)?;
    }
    if data.len() >= 2 && data[..2] == [0, 0] {
        // Origin indication: indicator, obfuscated port and IPv4 address.
        data = tail(data, 8)?;
    }
    if data.first().map(|b| b >> 4) != Some(6) {
        return Err(DecodeError::NotIp);
    }
    walk.enter(tunnel(TunnelKind::Teredo, None, outer))?
        .ip(data)
}

/// The inner packet of IP packet `outer` carrying GRE, IPv4 or IPv6: `None` when it is none
/// of those, an error when the inner packet does not decode.
pub(crate) fn over_ip<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
) -> Option<Result<Packet<'a>, DecodeError>> {
    let data = outer.payload;
    match outer.proto {
        4 | 41 => {
            let (kind, version) = if outer.proto == 4 {
                (TunnelKind::Ipip, 4)
            } else {
                (TunnelKind::Ip6in4, 6)
            };
            if data.first().map(|b| b >> 4) != Some(version) {
                return Some(Err(DecodeError::Malformed));
            }
            Some(
                walk.enter(tunnel(kind, None, outer))
                    .and_then(|w| w.ip(data)),
            )
        }
        47 => Some(gre(walk, outer, data, TunnelKind::Gre)),
        _ => None,
    }
}

const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_ACK: u16 = 0x0080;

/// GRE (RFC 2784, RFC 2890: optional checksum, key and sequence number), then what its
/// protocol type names: IP, an Ethernet frame (0x6558), ERSPAN (0x88be type I without a
/// sequence number, type II with one; 0x22eb type III), MPLS. Version 1 is PPTP's (RFC 2637),
/// carrying PPP. `kind` is `Gre`, or `GreUdp` for the same header in UDP (RFC 8086), whose
/// ERSPAN payloads are still named ERSPAN.
fn gre<'a>(
    walk: Walk<'_>,
    outer: &Packet<'a>,
    data: &'a [u8],
    kind: TunnelKind,
) -> Result<Packet<'a>, DecodeError> {
    let flags = be16(data, 0)?;
    let proto = be16(data, 2)?;
    if flags & GRE_ROUTING != 0 {
        // RFC 1701 source routing: obsolete, and its variable fields are not worth a parser.
        return Err(DecodeError::Malformed);
    }
    let mut at = 4;
    if flags & GRE_CHECKSUM != 0 {
        at += 4;
    }
    let key = if flags & GRE_KEY != 0 {
        at += 4;
        Some(be32(data, at - 4)?)
    } else {
        None
    };
    if flags & GRE_SEQ != 0 {
        at += 4;
    }
    match flags & 7 {
        0 => {}
        1 if proto == 0x880b => {
            if flags & GRE_ACK != 0 {
                at += 4;
            }
            let call = key.map(|k| k & 0xffff);
            return walk
                .enter(tunnel(TunnelKind::Pptp, call, outer))?
                .ppp(tail(data, at)?);
        }
        _ => return Err(DecodeError::Malformed),
    }
    let inner = tail(data, at)?;
    match proto {
        ETH_TEB => walk.enter(tunnel(kind, key, outer))?.ethernet(inner),
        0x88be if flags & GRE_SEQ == 0 => walk
            .enter(tunnel(TunnelKind::ErspanI, None, outer))?
            .ethernet(inner),
        0x88be => {
            // Type II: version 1, VLAN, COS, encapsulation, truncated bit, session id, index.
            let session = be16(inner, 2)? & 0x3ff;
            walk.enter(tunnel(TunnelKind::ErspanII, Some(session as u32), outer))?
                .ethernet(tail(inner, 8)?)
        }
        0x22eb => {
            // Type III: 12 bytes, then an 8-byte platform-specific subheader when the O bit
            // is set; the frame type says Ethernet (0) or IP (2).
            let session = be16(inner, 2)? & 0x3ff;
            let b10 = *inner.get(10).ok_or(DecodeError::Truncated)?;
            let b11 = *inner.get(11).ok_or(DecodeError::Truncated)?;
            let len = if b11 & 1 == 1 { 20 } else { 12 };
            let walk = walk.enter(tunnel(TunnelKind::ErspanIII, Some(session as u32), outer))?;
            match (b10 >> 2) & 0x1f {
                0 => walk.ethernet(tail(inner, len)?),
                2 => walk.ip_by_version(tail(inner, len)?),
                _ => Err(DecodeError::NotIp),
            }
        }
        ETH_IPV4 | ETH_IPV6 | 0x8847 | 0x8848 => walk
            .enter(tunnel(kind, key, outer))?
            .ethertype(proto, inner),
        _ => Err(DecodeError::NotIp),
    }
}
