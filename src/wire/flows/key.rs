//! The flow key: the canonical 5-tuple plus VLAN (unless `key_by_vlan: false`), and for
//! protocols without ports what tells flows apart between two addresses (ICMP echo identifier
//! and requester, ICMP message pair, ESP SPI); an ICMP error is keyed by the packet it quotes.

use crate::wire::community_id::icmp_counterpart;
use crate::wire::decode::{is_icmp_echo, Addr, Packet};

/// Canonical flow key: endpoint `a` sorts before endpoint `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub a: Addr,
    pub b: Addr,
    pub ap: u16,
    pub bp: u16,
    pub proto: u8,
    pub vlan: u16,
    /// ICMP echo identifier, ESP SPI, or for other ICMP messages the request type of their
    /// request/reply pair: what tells flows apart between two addresses without ports.
    pub label: u32,
}

impl FlowKey {
    /// The key of `p`'s flow and whether `p` goes from `a` to `b` (direction 0). An ICMP
    /// error belongs to the flow of the packet it quotes, in the direction back to its sender.
    /// `by_vlan`: the VLAN id is part of the key (802.1Q: the same addresses on two VLANs are
    /// two conversations); false when one side's packets are tagged and the other's not.
    #[inline]
    pub fn of(p: &Packet<'_>, by_vlan: bool) -> (FlowKey, usize) {
        let vlan = if by_vlan { p.vlan } else { 0 };
        // TCP and UDP first: nearly every packet, and the HTTP analyzer asks too.
        if matches!(p.proto, 6 | 17) {
            return FlowKey::ordered(p.src, p.sport, p.dst, p.dport, p.proto, vlan, 0);
        }
        match p.quoted.as_deref() {
            Some(q) => {
                let (key, dir) =
                    FlowKey::new(q.src, q.sport, q.dst, q.dport, q.proto, vlan, q.label);
                (key, dir ^ 1)
            }
            None => FlowKey::new(p.src, p.sport, p.dst, p.dport, p.proto, vlan, p.label),
        }
    }

    fn new(
        src: Addr,
        sport: u16,
        dst: Addr,
        dport: u16,
        proto: u8,
        vlan: u16,
        label: u32,
    ) -> (FlowKey, usize) {
        let echo = matches!(proto, 1 | 58) && is_icmp_echo(proto == 58, sport as u8);
        let answer = echo && is_icmp_answer(proto == 58, sport);
        let (sport, dport, label) = match proto {
            1 | 58 => icmp_endpoints(proto == 58, sport, label),
            6 | 17 | 132 | 33 | 136 => (sport, dport, 0),
            _ => (0, 0, label),
        };
        let (mut key, dir) = FlowKey::ordered(src, sport, dst, dport, proto, vlan, label);
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
        vlan: u16,
        label: u32,
    ) -> (FlowKey, usize) {
        let key = |a, ap, b, bp| FlowKey {
            a,
            b,
            ap,
            bp,
            proto,
            vlan,
            label,
        };
        if (src, sport) <= (dst, dport) {
            (key(src, sport, dst, dport), 0)
        } else {
            (key(dst, dport, src, sport), 1)
        }
    }
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
