//! Conversations seen twice through address translation. On a Kubernetes node a pod's call to
//! a Service's ClusterIP crosses the caller's veth as sent (to the ClusterIP) and the callee's
//! veth, or the uplink, after kube-proxy's DNAT (to a pod), and its replies likewise: two
//! 5-tuples for one conversation, so every transaction would be reported twice. The view seen
//! first is kept; the other is recognised by its first packet and dropped whole.
//!
//! A translated packet keeps one endpoint and everything the copy fingerprint takes besides
//! the addresses: the IPv4 identification, TCP sequence, ack and flags, the payload's length
//! and first bytes. Two packets of different conversations alike in all that, one endpoint
//! included, within the window, are one packet translated: for TCP the sequence and ack
//! numbers make a coincidence negligible; UDP (a DNS query to the cluster's resolver) has no
//! such numbers, so it is only matched across interfaces the capture tells apart.

use crate::wire::addr::Addr;
use crate::wire::decode::{tcp_flags, Packet};
use rustc_hash::{FxHashMap, FxHasher};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// Most packet sides remembered (as the copy table's bound), and conversations: past it a
/// new conversation is compared with others at every packet (correct, slower).
const MAX_REMEMBERED: usize = 1 << 18;
const MAX_KNOWN: usize = 1 << 16;

/// Packets of a conversation compared with other conversations', and how long from the first
/// packet every packet is.
const YOUNG_PACKETS: u8 = 3;
const STARTING_NS: i64 = 2_000_000_000;

/// A conversation not seen for this long is forgotten: its ports may be reused.
const IDLE_NS: i64 = 120_000_000_000;

type Endpoint = (Addr, u16);

/// Both directions of a conversation alike.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Conversation {
    lo: Endpoint,
    hi: Endpoint,
    proto: u8,
}

impl Conversation {
    fn of(p: &Packet<'_>) -> Conversation {
        let (a, b) = ((p.src, p.sport), (p.dst, p.dport));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Conversation {
            lo,
            hi,
            proto: p.proto,
        }
    }
}

struct Seen {
    conversation: Conversation,
    interface: Option<u32>,
    ts_ns: i64,
}

/// A conversation met: when last, its packets so far (up to 255), and whether it is a
/// translated view (dropped whole).
struct Known {
    last_ns: i64,
    packets: u8,
    translated: bool,
}

#[derive(Default)]
pub struct NatViews {
    /// Packets of young conversations by one endpoint and the rest of their fingerprint (two
    /// keys a packet: the source kept, as DNAT does, and the destination kept, as replies
    /// translated back do).
    seen: FxHashMap<u64, Seen>,
    order: VecDeque<(i64, u64)>,
    /// Conversations met. Only its first packets are compared with other conversations' (a
    /// translated view's first packet is a copy of one of the other view's first), and every
    /// packet in the first seconds of the capture (a connection open before it, whose views'
    /// captures did not start together); after that one lookup tells a packet kept or dropped.
    known: FxHashMap<Conversation, Known>,
    newest_ns: i64,
    swept_ns: i64,
    started_ns: i64,
    /// Packets dropped as part of a translated view.
    pub dropped: u64,
}

impl NatViews {
    /// True when `p` belongs to a translated view of a conversation seen first. `window_ns`:
    /// how far apart in capture time two views of one packet may be.
    pub fn is_copy(
        &mut self,
        p: &Packet<'_>,
        ts_ns: i64,
        interface: Option<u32>,
        window_ns: i64,
    ) -> bool {
        let udp = p.proto == 17;
        if p.fragment.is_some() || !(p.proto == 6 || udp) || (udp && interface.is_none()) {
            return false;
        }
        self.newest_ns = self.newest_ns.max(ts_ns);
        let conversation = Conversation::of(p);
        // A SYN opens a new connection: the ports may have been reused since.
        let opens = p
            .tcp
            .is_some_and(|t| t.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN);
        if self.started_ns == 0 {
            self.started_ns = ts_ns;
        }
        let starting = ts_ns.saturating_sub(self.started_ns) <= STARTING_NS;
        if let Some(k) = self.known.get_mut(&conversation) {
            let old = k.packets >= YOUNG_PACKETS;
            let fresh = ts_ns.saturating_sub(k.last_ns) <= IDLE_NS && !(opens && old);
            if fresh {
                k.last_ns = k.last_ns.max(ts_ns);
                k.packets = k.packets.saturating_add(1);
                if k.translated {
                    self.dropped += 1;
                    return true;
                }
                if old && !starting {
                    return false;
                }
            } else {
                self.known.remove(&conversation);
            }
        }
        self.forget(self.newest_ns.saturating_sub(window_ns));
        let rest = rest_of(p);
        let keys = [key(rest, (p.src, p.sport)), key(rest, (p.dst, p.dport))];
        let translated = keys.iter().any(|k| {
            self.seen.get(k).is_some_and(|s| {
                let near = ts_ns.abs_diff(s.ts_ns) <= window_ns as u64;
                let elsewhere = match (interface, s.interface) {
                    (Some(a), Some(b)) => a != b,
                    _ => !udp,
                };
                near && elsewhere
                    && s.conversation != conversation
                    && !self
                        .known
                        .get(&s.conversation)
                        .is_some_and(|o| o.translated)
            })
        });
        if !self.known.contains_key(&conversation) && self.known.len() < MAX_KNOWN {
            self.known.insert(
                conversation,
                Known {
                    last_ns: ts_ns,
                    packets: 1,
                    translated,
                },
            );
        }
        if translated {
            if let Some(k) = self.known.get_mut(&conversation) {
                k.translated = true;
            }
            self.dropped += 1;
            return true;
        }
        for k in keys {
            if self.order.len() >= MAX_REMEMBERED {
                if let Some((_, old)) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(
                k,
                Seen {
                    conversation,
                    interface,
                    ts_ns,
                },
            );
            self.order.push_back((ts_ns, k));
        }
        false
    }

    fn forget(&mut self, before: i64) {
        while let Some(&(ts, k)) = self.order.front() {
            if ts >= before {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&k).is_some_and(|s| s.ts_ns <= ts) {
                self.seen.remove(&k);
            }
        }
        // Full: the idle are swept, at most once a second of capture time (a sweep walks
        // every conversation).
        if self.known.len() >= MAX_KNOWN
            && self.newest_ns.saturating_sub(self.swept_ns) > 1_000_000_000
        {
            let newest = self.newest_ns;
            self.swept_ns = newest;
            self.known
                .retain(|_, k| newest.saturating_sub(k.last_ns) <= IDLE_NS);
        }
    }
}

/// What translation leaves alone, endpoints aside.
fn rest_of(p: &Packet<'_>) -> u64 {
    let mut h = FxHasher::default();
    (p.proto, p.ip_id).hash(&mut h);
    if let Some(t) = p.tcp {
        (t.seq, t.ack, t.flags).hash(&mut h);
    }
    p.payload.len().hash(&mut h);
    p.payload[..p.payload.len().min(32)].hash(&mut h);
    h.finish()
}

fn key(rest: u64, kept: Endpoint) -> u64 {
    let mut h = FxHasher::default();
    (rest, kept).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode::{decode, linktype, tests::eth_tcp};

    const WINDOW: i64 = 100_000_000;

    /// A pod (10.0.0.5) calls a Service (10.96.0.10:80) that kube-proxy translates to a pod
    /// (10.0.0.9:8080): the caller's veth (interface 1) sees the ClusterIP, the callee's
    /// (interface 2) the pod, for the request and the reply; the view seen first is kept.
    #[test]
    fn a_connection_seen_before_and_after_dnat_is_kept_once() {
        let (pod, svc, backend) = ([10, 0, 0, 5], [10, 96, 0, 10], [10, 0, 0, 9]);
        let syn = eth_tcp(pod, 40000, svc, 80, 100, 0, 0x02, b"");
        let syn_dnat = eth_tcp(pod, 40000, backend, 8080, 100, 0, 0x02, b"");
        let synack_backend = eth_tcp(backend, 8080, pod, 40000, 900, 101, 0x12, b"");
        let synack = eth_tcp(svc, 80, pod, 40000, 900, 101, 0x12, b"");
        let get = eth_tcp(
            pod,
            40000,
            svc,
            80,
            101,
            901,
            0x18,
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let get_dnat = eth_tcp(
            pod,
            40000,
            backend,
            8080,
            101,
            901,
            0x18,
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let mut n = NatViews::default();
        let mut kept = Vec::new();
        for (i, (frame, on)) in [
            (&syn, 1),
            (&syn_dnat, 2),
            (&synack_backend, 2),
            (&synack, 1),
            (&get, 1),
            (&get_dnat, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let p = decode(linktype::ETHERNET, frame).unwrap();
            if !n.is_copy(&p, i as i64 * 1000, Some(on), WINDOW) {
                kept.push((p.src, p.sport, p.dst, p.dport));
            }
        }
        let a = |ip: [u8; 4]| Addr::v4(ip);
        assert_eq!(
            kept,
            [
                (a(pod), 40000, a(svc), 80),
                (a(svc), 80, a(pod), 40000),
                (a(pod), 40000, a(svc), 80)
            ]
        );
        assert_eq!(n.dropped, 3);

        // Later, the same ports to the backend directly: a new connection, not a view.
        let again = eth_tcp(pod, 40000, backend, 8080, 5000, 0, 0x02, b"");
        let p = decode(linktype::ETHERNET, &again).unwrap();
        assert!(!n.is_copy(&p, 10 * WINDOW, Some(2), WINDOW));
    }

    /// Two connections that only share an endpoint (their own sequence numbers) are two
    /// conversations; so are a packet and
    /// its repeat to another address on the same interface over UDP (a resolver asking two
    /// servers alike), and UDP where the capture does not tell interfaces apart.
    #[test]
    fn unrelated_conversations_are_never_views_of_each_other() {
        let client = [10, 0, 0, 5];
        let mut n = NatViews::default();
        let a = eth_tcp(
            client,
            40000,
            [10, 0, 0, 9],
            80,
            1,
            1,
            0x18,
            b"GET /a HTTP/1.1\r\n\r\n",
        );
        let b = eth_tcp(
            client,
            40001,
            [10, 0, 0, 9],
            80,
            7,
            3,
            0x18,
            b"GET /a HTTP/1.1\r\n\r\n",
        );
        let c = eth_tcp(
            client,
            40000,
            [10, 0, 0, 7],
            80,
            2,
            1,
            0x18,
            b"GET /a HTTP/1.1\r\n\r\n",
        );
        for (i, f) in [a, b, c].iter().enumerate() {
            let p = decode(linktype::ETHERNET, f).unwrap();
            assert!(!n.is_copy(&p, i as i64, Some(i as u32), WINDOW), "{i}");
        }
        let udp = |dst: [u8; 4]| {
            let query = b"\x12\x34\x01\x00\x00\x01query";
            let total = 20 + 8 + query.len();
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[
                0x08,
                0x00,
                0x45,
                0,
                0,
                total as u8,
                0,
                7,
                0x40,
                0,
                64,
                17,
                0,
                0,
            ]);
            f.extend_from_slice(&client);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&5353u16.to_be_bytes());
            f.extend_from_slice(&53u16.to_be_bytes());
            f.extend_from_slice(&((8 + query.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(query);
            f
        };
        let (q1, q2) = (udp([8, 8, 8, 8]), udp([1, 1, 1, 1]));
        for (i, (f, on)) in [(&q1, Some(1)), (&q2, Some(1)), (&q1, None), (&q2, None)]
            .into_iter()
            .enumerate()
        {
            let p = decode(linktype::ETHERNET, f).unwrap();
            assert_eq!(p.proto, 17);
            assert!(!n.is_copy(&p, 1000 + i as i64, on, WINDOW), "{i}");
        }
        assert_eq!(n.dropped, 0);
    }
}
