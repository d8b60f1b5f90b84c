//! The flow key: the canonical 5-tuple plus VLAN (unless `key_by_vlan: false`) and tunnel (with
//! `key_by_tunnel`), and for protocols without ports what tells flows apart between two addresses
//! (ICMP echo identifier and requester, ICMP message pair, ESP SPI); an ICMP error is keyed by
//! the packet it quotes.

use crate::wire::community_id::icmp_counterpart;
use crate::wire::decode::{is_icmp_echo, Addr, Packet};
use crate::wire::tunnel::{Tunnel, TunnelKind};
use std::hash::{Hash, Hasher};

/// What joins the addresses, ports and protocol in the key of flows and connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyBy {
    /// The outer VLAN id (`key_by_vlan`).
    pub vlan: bool,
    /// The tunnel the packet came through (`key_by_tunnel`; see `tunnel_scope`).
    pub tunnel: bool,
}

impl Default for KeyBy {
    /// The configuration's defaults: by VLAN, not by tunnel.
    fn default() -> Self {
        KeyBy {
            vlan: true,
            tunnel: false,
        }
    }
}

/// Canonical flow key: endpoint `a` sorts before endpoint `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub a: Addr,
    pub b: Addr,
    pub ap: u16,
    pub bp: u16,
    pub proto: u8,
    pub vlan: u16,
    /// The tunnel's address space under `key_by_tunnel` (`tunnel_scope`); 0 otherwise.
    pub tunnel: u32,
    /// ICMP echo identifier, ESP SPI, or for other ICMP messages the request type of their
    /// request/reply pair: what tells flows apart between two addresses without ports.
    pub label: u32,
}

impl FlowKey {
    /// The key of `p`'s flow and whether `p` goes from `a` to `b` (direction 0). An ICMP
    /// error belongs to the flow of the packet it quotes, in the direction back to its sender.
    /// `by.vlan`: the VLAN id is part of the key (802.1Q: the same addresses on two VLANs are
    /// two conversations); false when one side's packets are tagged and the other's not.
    /// `by.tunnel`: so is the tunnel's address space (tenants of an overlay reuse addresses).
    #[inline]
    pub fn of(p: &Packet<'_>, by: KeyBy) -> (FlowKey, usize) {
        let vlan = if by.vlan { p.vlan } else { 0 };
        // The tunnel's scope goes in as the key is made, not set on it after: the key was
        // copied through the stack twice more on its way back.
        let scope = if by.tunnel {
            p.tunnel.as_deref().map_or(0, tunnel_scope)
        } else {
            0
        };
        let ends = (vlan, scope);
        // TCP and UDP first: nearly every packet, and the HTTP analyzer asks too.
        if matches!(p.proto, 6 | 17) {
            return FlowKey::ordered(p.src, p.sport, p.dst, p.dport, p.proto, ends, 0);
        }
        match p.quoted.as_deref() {
            Some(q) => {
                let (key, dir) =
                    FlowKey::new(q.src, q.sport, q.dst, q.dport, q.proto, ends, q.label);
                (key, dir ^ 1)
            }
            None => FlowKey::new(p.src, p.sport, p.dst, p.dport, p.proto, ends, p.label),
        }
    }

    fn new(
        src: Addr,
        sport: u16,
        dst: Addr,
        dport: u16,
        proto: u8,
        ends: (u16, u32),
        label: u32,
    ) -> (FlowKey, usize) {
        let echo = matches!(proto, 1 | 58) && is_icmp_echo(proto == 58, sport as u8);
        let answer = echo && is_icmp_answer(proto == 58, sport);
        let (sport, dport, label) = match proto {
            1 | 58 => icmp_endpoints(proto == 58, sport, label),
            6 | 17 | 132 | 33 | 136 => (sport, dport, 0),
            _ => (0, 0, label),
        };
        let (mut key, dir) = FlowKey::ordered(src, sport, dst, dport, proto, ends, label);
        // The identifier is the requester's (RFC 792, RFC 4443): A pinging B and B pinging A
        // with the same identifier are two exchanges. The key says which endpoint asked.
        if echo && (dir == 0) == answer {
            key.label |= ECHO_ASKED_BY_B;
        }
        (key, dir)
    }

    #[inline(always)]
    fn ordered(
        src: Addr,
        sport: u16,
        dst: Addr,
        dport: u16,
        proto: u8,
        (vlan, tunnel): (u16, u32),
        label: u32,
    ) -> (FlowKey, usize) {
        let dir = usize::from((src, sport) > (dst, dport));
        let (a, ap, b, bp) = if dir == 0 {
            (src, sport, dst, dport)
        } else {
            (dst, dport, src, sport)
        };
        let key = FlowKey {
            a,
            b,
            ap,
            bp,
            proto,
            vlan,
            tunnel,
            label,
        };
        (key, dir)
    }
}

/// The address space of the packets that came through tunnel `t`, for `key_by_tunnel`: what
/// both directions of a conversation carry alike and tells one tenant's traffic from
/// another's; 0 (no part of the key) for the tunnels with nothing such.
///
/// - VXLAN, VXLAN-GPE and Geneve: the VNI, the overlay's segment (RFC 7348, RFC 8926); GRE
///   and GRE-in-UDP with a key: the key (RFC 2890), which `ip link ... key K` sets both ways;
///   ERSPAN II and III: the session. The type joins the id: VNI 7 and GRE key 7 are unrelated.
/// - GRE without a key (and PPTP's, whose call ids differ per direction), ERSPAN I, IP-in-IP
///   and 6in4: a point-to-point tunnel whose endpoints name it: the unordered outer address
///   pair.
/// - GTP-U: none. Its TEIDs differ per direction (each end picks the one it receives on), so
///   keying by TEID would make every connection two one-way halves, and its endpoints (base
///   station and gateway) carry every access point's subscribers alike. Teredo and AYIYA:
///   none; they carry global IPv6 addresses, which do not overlap.
///
/// 32 bits, which the key has room for without growing its table entry: the 24-bit ids (VNI,
/// ERSPAN session) exactly, beside their type; a GRE key or an endpoint pair as a 31-bit
/// digest with the top bit set (two such tunnels merge only if their digests and their inner
/// 5-tuples both coincide).
pub fn tunnel_scope(t: &Tunnel) -> u32 {
    use TunnelKind::*;
    let kind = t.kind as u32 + 1;
    match (t.kind, t.id) {
        (Gtp | Teredo | Ayiya, _) => 0,
        (Vxlan | VxlanGpe | Geneve | ErspanII | ErspanIII, Some(id)) if id < 1 << 24 => {
            kind << 24 | id
        }
        (Gre | GreUdp, Some(key)) => digest((kind, key)),
        _ => digest((kind, t.src.min(t.dst), t.src.max(t.dst))),
    }
}

fn digest(what: impl Hash) -> u32 {
    let mut h = rustc_hash::FxHasher::default();
    what.hash(&mut h);
    let h = h.finish();
    (h >> 32) as u32 | 1 << 31
}

/// Set in an echo flow's label when endpoint `b` sent the requests.
const ECHO_ASKED_BY_B: u32 = 0x2_0000;

/// ICMP has no ports: an echo request and its reply share the identifier; other messages are
/// told apart by their request/reply pair (router solicitation and advertisement...).
fn icmp_endpoints(v6: bool, icmp_type: u16, label: u32) -> (u16, u16, u32) {
    if is_icmp_echo(v6, icmp_type as u8) {
        return (0, 0, label);
    }
    let pair = icmp_counterpart(v6, icmp_type).map_or(icmp_type, |c| c.min(icmp_type));
    (0, 0, 0x1_0000 | pair as u32)
}

/// The ICMP messages that answer another (echo reply, router advertisement...): their
/// sender is not the one who started the exchange.
pub(super) fn is_icmp_answer(v6: bool, icmp_type: u16) -> bool {
    if v6 {
        matches!(icmp_type, 129 | 131 | 134 | 136 | 140 | 145)
    } else {
        matches!(icmp_type, 0 | 9 | 14 | 16 | 18)
    }
}

/// Whether a packet from `sport` to `dport`, the first seen of a connection without its
/// handshake, is the server's: sent from below the ephemeral ranges to within them (Linux
/// gives clients 32768-60999, Windows and macOS 49152-65535). Anything else says nothing and
/// the first sender stays the client: privileged ports are clients' too (NFS, rsh), and old
/// systems gave clients ports from 1024.
pub(super) fn sent_by_server(sport: u16, dport: u16) -> bool {
    sport < 32768 && dport >= 32768
}

#[cfg(test)]
mod tests {
    use super::*;
    use TunnelKind::*;

    fn t(kind: TunnelKind, id: Option<u32>, src: u8, dst: u8) -> Tunnel {
        Tunnel {
            kind,
            id,
            src: Addr::v4([192, 0, 2, src]),
            dst: Addr::v4([192, 0, 2, dst]),
            udp: None,
            ip_len: 100,
            vlan: 0,
        }
    }

    /// Both directions of a conversation are in one space: the reply goes between the same
    /// endpoints the other way, with the same VNI, GRE key or session; GTP-U's and PPTP's
    /// ids are the receiver's and differ per direction, which must not split it either.
    #[test]
    fn a_conversation_and_its_reply_share_their_tunnel_scope() {
        let kinds = [
            Vxlan, VxlanGpe, Geneve, Gre, GreUdp, ErspanI, ErspanII, ErspanIII, Ipip, Ip6in4,
        ];
        for kind in kinds {
            for id in [None, Some(100)] {
                let (there, back) = (t(kind, id, 1, 2), t(kind, id, 2, 1));
                assert_eq!(tunnel_scope(&there), tunnel_scope(&back), "{kind:?} {id:?}");
            }
        }
        for kind in [Gtp, Pptp] {
            let (up, down) = (t(kind, Some(0x1001), 1, 2), t(kind, Some(0x2002), 2, 1));
            assert_eq!(tunnel_scope(&up), tunnel_scope(&down), "{kind:?}");
        }
    }

    /// Tenants apart: another VNI, key or session, another kind with the same id, another
    /// pair of endpoints for a tunnel without an id; packets in no tunnel (0) apart from all.
    #[test]
    fn tenants_are_told_apart_by_id_kind_or_endpoints() {
        let scopes = [
            tunnel_scope(&t(Vxlan, Some(100), 1, 2)),
            tunnel_scope(&t(Vxlan, Some(200), 1, 2)),
            tunnel_scope(&t(Geneve, Some(100), 1, 2)),
            tunnel_scope(&t(Gre, Some(100), 1, 2)),
            tunnel_scope(&t(Gre, Some(200), 1, 2)),
            tunnel_scope(&t(ErspanII, Some(100), 1, 2)),
            tunnel_scope(&t(Gre, None, 1, 2)),
            tunnel_scope(&t(Gre, None, 1, 3)),
            tunnel_scope(&t(Ipip, None, 1, 2)),
            0,
        ];
        for (i, a) in scopes.iter().enumerate() {
            for b in &scopes[i + 1..] {
                assert_ne!(a, b, "{scopes:x?}");
            }
        }
        // The VNI is the space wherever its VTEPs are (a VM moved to another host).
        assert_eq!(
            tunnel_scope(&t(Vxlan, Some(100), 1, 2)),
            tunnel_scope(&t(Vxlan, Some(100), 3, 4))
        );
        assert_eq!(tunnel_scope(&t(Gtp, Some(7), 1, 2)), 0);
    }
}
