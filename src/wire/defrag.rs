//! IP fragments: where a piece goes in its datagram (RFC 791, RFC 8200), and reassembly before
//! the transport is decoded, with Linux's policies (RFC 5722): overlaps discard the datagram,
//! 30 s to complete, bounded memory. Every fragment ends in one `trawl_ip_fragments_total`.

use super::addr::Addr;
use super::decode::{be16, is_icmp_echo, DecodeError, Fragment, Packet};
use etherparse::{IpNumber, LaxIpSlice};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A datagram not complete this long after its first fragment is dropped (Linux's
/// `net.ipv4.ipfrag_time` and `net.ipv6.ip6frag_time`).
pub const TIMEOUT_NS: i64 = 30_000_000_000;
/// Most datagrams waiting for fragments at once: past it a new datagram's fragments are not
/// kept (Linux drops them past `ipfrag_high_thresh` too, rather than evicting).
pub const MAX_DATAGRAMS: usize = 8192;
/// Most bytes held for datagrams waiting, counting `PIECE_OVERHEAD` per fragment so that tiny
/// fragments cannot take more memory than the bound says.
pub const MAX_BYTES: usize = 64 << 20;
const PIECE_OVERHEAD: usize = 64;

/// What became of fragments: one counter per `trawl_ip_fragments_total{result}`.
#[derive(Debug, Default)]
pub struct FragmentStats {
    /// Pieces of a datagram reassembled.
    pub reassembled: AtomicU64,
    /// A copy of a fragment already held (same offset and length): not used.
    pub duplicate: AtomicU64,
    /// Pieces of a datagram with overlapping fragments, discarded whole.
    pub overlap: AtomicU64,
    /// Pieces of a datagram that would pass 65,535 bytes, or end in two places, or whose
    /// non-last piece is not a multiple of 8 bytes: discarded whole.
    pub invalid: AtomicU64,
    /// Pieces of a datagram not complete within 30 s.
    pub timeout: AtomicU64,
    /// Fragments not kept because too many datagrams or bytes were waiting.
    pub dropped_limit: AtomicU64,
    /// Pieces of a datagram still incomplete when the capture ended.
    pub incomplete: AtomicU64,
    /// Datagrams reassembled.
    pub datagrams: AtomicU64,
    /// Datagrams waiting for fragments now.
    pub pending: AtomicU64,
}

impl FragmentStats {
    /// The families of one input on `/metrics`.
    pub fn render(&self, out: &mut String, input: &str) {
        let _ = writeln!(
            out,
            "# HELP trawl_ip_fragments_total IP fragments by what became of them.\n# TYPE trawl_ip_fragments_total counter"
        );
        for (result, v) in [
            ("reassembled", &self.reassembled),
            ("duplicate", &self.duplicate),
            ("overlap", &self.overlap),
            ("invalid", &self.invalid),
            ("timeout", &self.timeout),
            ("dropped_limit", &self.dropped_limit),
            ("incomplete", &self.incomplete),
        ] {
            let _ = writeln!(
                out,
                "trawl_ip_fragments_total{{input=\"{input}\",result=\"{result}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP trawl_ip_datagrams_reassembled_total IP datagrams reassembled from fragments.\n# TYPE trawl_ip_datagrams_reassembled_total counter\ntrawl_ip_datagrams_reassembled_total{{input=\"{input}\"}} {}",
            self.datagrams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP trawl_ip_fragments_pending IP datagrams waiting for their fragments.\n# TYPE trawl_ip_fragments_pending gauge\ntrawl_ip_fragments_pending{{input=\"{input}\"}} {}",
            self.pending.load(Ordering::Relaxed)
        );
    }
}

/// The fragments of one datagram as the wire carried them: what its flow counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    pub first_ns: i64,
    pub last_ns: i64,
    pub packets: u64,
    /// Sum of the fragments' IP lengths.
    pub bytes: u64,
}

impl Wire {
    fn of(p: &Packet<'_>, ts_ns: i64) -> Wire {
        Wire {
            first_ns: ts_ns,
            last_ns: ts_ns,
            packets: 1,
            bytes: p.ip_len as u64,
        }
    }

    fn add(&mut self, p: &Packet<'_>, ts_ns: i64) {
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
        self.packets += 1;
        self.bytes += p.ip_len as u64;
    }
}

/// Fragments done with: their datagram reassembled (`datagram`, an IP packet to decode as
/// `like`'s), or given up on (`None`: only counted in the flow of `like`, which has the ports
/// when the piece at offset 0 was seen).
pub struct Done {
    pub like: Packet<'static>,
    pub wire: Wire,
    pub datagram: Option<Vec<u8>>,
}

/// RFC 791's and RFC 8200's reassembly key, and the VLAN: the same addresses on two VLANs are
/// two networks; so are two tunnels' under `key_by_tunnel` (`flows::tunnel_scope`, else 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: Addr,
    dst: Addr,
    id: u32,
    proto: u8,
    v6: bool,
    vlan: u16,
    tunnel: u32,
}

struct Piece {
    offset: u32,
    /// Length on the wire; `data` is shorter when the capture cut the packet.
    len: u32,
    data: Vec<u8>,
}

/// Why a datagram was discarded before it was complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discarded {
    Overlap,
    Invalid,
}

struct Pending {
    /// The piece at offset 0 as decoded (ports), or the first piece seen until it comes.
    like: Packet<'static>,
    pieces: Vec<Piece>,
    /// The datagram's length once its last piece is seen.
    end: Option<u32>,
    held: usize,
    wire: Wire,
    started_ns: i64,
    /// Discarded: its later fragments are discarded too until the timeout (RFC 5722).
    discarded: Option<Discarded>,
}

/// The datagrams being reassembled for one engine.
pub struct Defrag {
    table: FxHashMap<Key, Pending>,
    /// (started, key) in arrival order, to find timed-out datagrams without a scan.
    order: VecDeque<(i64, Key)>,
    held: usize,
    max_datagrams: usize,
    max_bytes: usize,
    /// The tunnel is part of the key (`key_by_tunnel`).
    by_tunnel: bool,
}

impl Default for Defrag {
    fn default() -> Self {
        Defrag::new(MAX_DATAGRAMS, MAX_BYTES)
    }
}

fn owned(p: &Packet<'_>) -> Packet<'static> {
    Packet {
        vlan: p.vlan,
        inner_vlan: p.inner_vlan,
        src: p.src,
        dst: p.dst,
        proto: p.proto,
        sport: p.sport,
        dport: p.dport,
        label: p.label,
        quoted: None,
        tcp: None,
        payload: &[],
        ip_len: p.ip_len,
        ip_id: p.ip_id,
        missing: 0,
        tunnel: p.tunnel.clone(),
        fragment: p.fragment.clone(),
    }
}

impl Defrag {
    pub fn new(max_datagrams: usize, max_bytes: usize) -> Defrag {
        Defrag {
            table: FxHashMap::default(),
            order: VecDeque::new(),
            held: 0,
            max_datagrams,
            max_bytes,
            by_tunnel: false,
        }
    }

    /// Fragments are told apart by tunnel too, when flows are (`key_by_tunnel`): two tenants'
    /// datagrams with the same addresses and identification are two datagrams.
    pub fn keyed_by_tunnel(self, by_tunnel: bool) -> Defrag {
        Defrag { by_tunnel, ..self }
    }

    /// Fragment `p` captured at `ts_ns`; what it completes or gives up on goes to `done`.
    pub fn add(&mut self, p: &Packet<'_>, ts_ns: i64, stats: &FragmentStats, done: &mut Vec<Done>) {
        let Some(f) = p.fragment.as_deref() else {
            return;
        };
        self.expire(ts_ns, stats, done);
        let key = Key {
            src: p.src,
            dst: p.dst,
            id: f.id,
            proto: p.proto,
            v6: f.v6,
            vlan: p.vlan,
            tunnel: match (self.by_tunnel, p.tunnel.as_deref()) {
                (true, Some(t)) => super::flows::tunnel_scope(t),
                _ => 0,
            },
        };
        let cost = p.payload.len() + PIECE_OVERHEAD;
        if !self.table.contains_key(&key) {
            if self.table.len() >= self.max_datagrams || self.held + cost > self.max_bytes {
                stats.dropped_limit.fetch_add(1, Ordering::Relaxed);
                done.push(Done {
                    like: owned(p),
                    wire: Wire::of(p, ts_ns),
                    datagram: None,
                });
                return;
            }
            self.table.insert(
                key,
                Pending {
                    like: owned(p),
                    pieces: Vec::new(),
                    end: None,
                    held: 0,
                    wire: Wire {
                        first_ns: ts_ns,
                        last_ns: ts_ns,
                        packets: 0,
                        bytes: 0,
                    },
                    started_ns: ts_ns,
                    discarded: None,
                },
            );
            self.order.push_back((ts_ns, key));
            stats
                .pending
                .store(self.table.len() as u64, Ordering::Relaxed);
        }
        let Some(d) = self.table.get_mut(&key) else {
            return;
        };
        if let Some(why) = d.discarded {
            count(stats, why, 1);
            done.push(Done {
                like: d.like.clone(),
                wire: Wire::of(p, ts_ns),
                datagram: None,
            });
            return;
        }
        d.wire.add(p, ts_ns);
        if f.offset == 0 {
            d.like = owned(p);
        }
        match place(d, f) {
            Err(why) => {
                count(stats, why, d.pieces.len() as u64 + 1);
                self.held -= d.held;
                d.held = 0;
                d.pieces = Vec::new();
                d.discarded = Some(why);
                done.push(Done {
                    like: d.like.clone(),
                    wire: d.wire,
                    datagram: None,
                });
            }
            Ok(None) => {
                stats.duplicate.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(at)) => {
                if self.held + cost > self.max_bytes {
                    // Not kept, so the datagram will time out; its flow counts it then.
                    stats.dropped_limit.fetch_add(1, Ordering::Relaxed);
                    d.wire.packets -= 1;
                    d.wire.bytes -= p.ip_len as u64;
                    done.push(Done {
                        like: owned(p),
                        wire: Wire::of(p, ts_ns),
                        datagram: None,
                    });
                    return;
                }
                self.held += cost;
                d.held += cost;
                d.pieces.insert(
                    at,
                    Piece {
                        offset: f.offset,
                        len: f.len,
                        data: p.payload.to_vec(),
                    },
                );
                if !f.more {
                    d.end = Some(f.offset + f.len);
                }
                if let Some(datagram) = complete(d, f) {
                    stats
                        .reassembled
                        .fetch_add(d.pieces.len() as u64, Ordering::Relaxed);
                    stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    if let Some(d) = self.table.remove(&key) {
                        self.held -= d.held;
                        done.push(Done {
                            like: d.like,
                            wire: d.wire,
                            datagram: Some(datagram),
                        });
                    }
                    stats
                        .pending
                        .store(self.table.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Gives up on datagrams not complete `TIMEOUT_NS` after their first fragment.
    /// The check (nothing waiting, or nothing old enough: every packet asks) is inlined; the
    /// giving up is not.
    #[inline(always)]
    pub fn expire(&mut self, now_ns: i64, stats: &FragmentStats, done: &mut Vec<Done>) {
        if self
            .order
            .front()
            .is_some_and(|&(started, _)| now_ns.saturating_sub(started) >= TIMEOUT_NS)
        {
            self.expire_now(now_ns, stats, done);
        }
    }

    #[inline(never)]
    fn expire_now(&mut self, now_ns: i64, stats: &FragmentStats, done: &mut Vec<Done>) {
        let mut expired = false;
        while let Some(&(started, key)) = self.order.front() {
            if now_ns.saturating_sub(started) < TIMEOUT_NS {
                break;
            }
            self.order.pop_front();
            expired = true;
            if self
                .table
                .get(&key)
                .is_some_and(|d| d.started_ns == started)
            {
                self.give_up(key, &stats.timeout, done);
            }
        }
        if expired {
            stats
                .pending
                .store(self.table.len() as u64, Ordering::Relaxed);
        }
    }

    /// End of the capture: every datagram still waiting is given up on.
    pub fn finish(&mut self, stats: &FragmentStats, done: &mut Vec<Done>) {
        while let Some((_, key)) = self.order.pop_front() {
            self.give_up(key, &stats.incomplete, done);
        }
        stats.pending.store(0, Ordering::Relaxed);
    }

    fn give_up(&mut self, key: Key, counter: &AtomicU64, done: &mut Vec<Done>) {
        let Some(d) = self.table.remove(&key) else {
            return;
        };
        self.held -= d.held;
        // A discarded datagram's fragments were counted when it was discarded.
        if d.discarded.is_none() {
            counter.fetch_add(d.pieces.len() as u64, Ordering::Relaxed);
            if d.wire.packets > 0 {
                done.push(Done {
                    like: d.like,
                    wire: d.wire,
                    datagram: None,
                });
            }
        }
    }
}

fn count(stats: &FragmentStats, why: Discarded, n: u64) {
    let c = match why {
        Discarded::Overlap => &stats.overlap,
        Discarded::Invalid => &stats.invalid,
    };
    c.fetch_add(n, Ordering::Relaxed);
}

/// Biggest datagram payload: IPv4's total length is 16 bits and includes a 20-byte header at
/// least; IPv6's payload length is 16 bits and includes the 8-byte fragment header.
fn max_payload(v6: bool) -> u32 {
    if v6 {
        65_535 - 8
    } else {
        65_535 - 20
    }
}

/// Where fragment `f` goes among `d`'s pieces: `Ok(None)` for an exact copy of one held.
fn place(d: &Pending, f: &Fragment) -> Result<Option<usize>, Discarded> {
    let end = f.offset as u64 + f.len as u64;
    if f.len == 0 || end > max_payload(f.v6) as u64 || (f.more && !f.len.is_multiple_of(8)) {
        return Err(Discarded::Invalid);
    }
    let end = end as u32;
    match d.end {
        Some(e) if !f.more && e != end => return Err(Discarded::Invalid),
        Some(e) if end > e => return Err(Discarded::Invalid),
        None if !f.more && d.pieces.iter().any(|p| p.offset + p.len > end) => {
            return Err(Discarded::Invalid)
        }
        _ => {}
    }
    let at = d.pieces.partition_point(|p| p.offset < f.offset);
    if let Some(next) = d.pieces.get(at) {
        if next.offset == f.offset && next.len == f.len {
            return Ok(None);
        }
        if next.offset < end {
            return Err(Discarded::Overlap);
        }
    }
    if let Some(prev) = at.checked_sub(1).and_then(|i| d.pieces.get(i)) {
        if prev.offset + prev.len > f.offset {
            return Err(Discarded::Overlap);
        }
    }
    Ok(Some(at))
}

/// The reassembled IP packet once `d` has all its pieces: a plain IPv4 or IPv6 header (no
/// options or extension headers: the analyzers need neither) and the bytes captured, up to
/// the first piece the capture cut short (the rest is reported missing, as in a cut packet).
fn complete(d: &Pending, f: &Fragment) -> Option<Vec<u8>> {
    let end = d.end?;
    let covered: u64 = d.pieces.iter().map(|p| p.len as u64).sum();
    if covered != end as u64 {
        return None;
    }
    let p = &d.like;
    let mut ip = Vec::with_capacity(40 + end as usize);
    if f.v6 {
        ip.extend_from_slice(&[0x60, 0, 0, 0]);
        ip.extend_from_slice(&(end as u16).to_be_bytes());
        ip.extend_from_slice(&[p.proto, 64]);
        ip.extend_from_slice(&p.src.0);
        ip.extend_from_slice(&p.dst.0);
    } else {
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&((20 + end) as u16).to_be_bytes());
        ip.extend_from_slice(&(f.id as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 64, p.proto, 0, 0]);
        ip.extend_from_slice(p.src.wire());
        ip.extend_from_slice(p.dst.wire());
    }
    for piece in &d.pieces {
        ip.extend_from_slice(&piece.data);
        if piece.data.len() < piece.len as usize {
            break;
        }
    }
    Some(ip)
}

/// `p` as the piece of a fragmented datagram that IP packet `data` (decoded as `slice`)
/// carries: where its bytes go, and the ports when they are in it.
pub(crate) fn piece<'a>(
    mut p: Packet<'a>,
    slice: &LaxIpSlice<'a>,
    data: &'a [u8],
) -> Result<Packet<'a>, DecodeError> {
    let (frag, piece) = match slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let header = h.slice().len() as u32;
            let frag = Fragment {
                id: h.identification() as u32,
                offset: h.fragments_offset().value() as u32 * 8,
                len: p.ip_len.checked_sub(header).ok_or(DecodeError::Malformed)?,
                more: h.more_fragments(),
                v6: false,
            };
            (frag, slice.payload().payload)
        }
        LaxIpSlice::Ipv6(_) => ipv6_fragment(&mut p, data)?,
    };
    p.missing = frag.len.saturating_sub(piece.len() as u32);
    p.payload = piece;
    if frag.offset == 0 {
        match IpNumber(p.proto) {
            IpNumber::TCP
            | IpNumber::UDP
            | IpNumber::SCTP
            | IpNumber::DCCP
            | IpNumber::UDP_LITE => {
                p.sport = be16(piece, 0).unwrap_or(0);
                p.dport = be16(piece, 2).unwrap_or(0);
            }
            IpNumber::ICMP | IpNumber::IPV6_ICMP => {
                if let [t, code, ..] = piece {
                    p.sport = *t as u16;
                    p.dport = *code as u16;
                    if is_icmp_echo(p.proto == IpNumber::IPV6_ICMP.0, *t) {
                        p.label = be16(piece, 4).unwrap_or(0) as u32;
                    }
                }
            }
            _ => {}
        }
    }
    p.fragment = Some(Box::new(frag));
    Ok(p)
}

/// The fragment header of IPv6 packet `data` (after the hop-by-hop, routing and destination
/// options headers that may precede it, RFC 8200 4.1) and the bytes after it. `etherparse`
/// goes on reading extension headers after it, which in a later piece are not headers.
fn ipv6_fragment<'a>(
    p: &mut Packet<'a>,
    data: &'a [u8],
) -> Result<(Fragment, &'a [u8]), DecodeError> {
    let mut next = *data.get(6).ok_or(DecodeError::Truncated)?;
    let mut at = 40;
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                next = *data.get(at).ok_or(DecodeError::Truncated)?;
                at += (*data.get(at + 1).ok_or(DecodeError::Truncated)? as usize + 1) * 8;
            }
            44 => {
                let h = data.get(at..at + 8).ok_or(DecodeError::Truncated)?;
                let offset_flags = u16::from_be_bytes([h[2], h[3]]);
                let len = p
                    .ip_len
                    .checked_sub(at as u32 + 8)
                    .ok_or(DecodeError::Malformed)?;
                p.proto = h[0];
                let end = data.len().min(p.ip_len as usize);
                let piece = data.get(at + 8..end.max(at + 8)).unwrap_or(&[]);
                let frag = Fragment {
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    offset: (offset_flags & 0xfff8) as u32,
                    len,
                    more: offset_flags & 1 == 1,
                    v6: true,
                };
                return Ok((frag, piece));
            }
            _ => break,
        }
    }
    Err(DecodeError::Malformed)
}

/// Reassembly inside reassembly (a fragmented tunnel packet whose inner packet is a fragment
/// too) goes this deep at most; deeper is not traffic but an attack on the decoder.
const MAX_NESTING: usize = 4;

impl super::Engine {
    /// Fragment `p` captured at `ts_ns`: held until its datagram is complete.
    pub(super) fn fragment(&mut self, p: &Packet<'_>, ts_ns: i64) {
        self.defrag
            .add(p, ts_ns, &self.stats.fragments, &mut self.defragged);
        self.defragmented();
    }

    /// Analyzes what reassembly is done with: each reassembled datagram as one packet, and
    /// every fragment as a packet of its flow. A fragment within a reassembled datagram goes
    /// round again.
    /// Inlined where every packet calls it: nearly always there is nothing to hand on.
    #[inline(always)]
    pub(super) fn defragmented(&mut self) {
        if !self.defragged.is_empty() {
            self.hand_on_defragmented();
        }
    }

    #[inline(never)]
    fn hand_on_defragmented(&mut self) {
        for round in 0..=MAX_NESTING {
            if self.defragged.is_empty() {
                return;
            }
            let mut done = std::mem::take(&mut self.defragged);
            for d in done.drain(..) {
                self.datagram(d, round < MAX_NESTING);
            }
            // Keeps the allocation for the next packet.
            if self.defragged.is_empty() {
                self.defragged = done;
            }
        }
    }

    fn datagram(&mut self, d: Done, decode: bool) {
        let Some(bytes) = d.datagram.as_deref().filter(|_| decode) else {
            if let Some(f) = &mut self.flows {
                f.fragments(&d.like, &d.wire, &mut self.out);
            }
            return;
        };
        let p = match self.decoder.reassembled(&d.like, bytes) {
            Ok(p) => p,
            Err(_) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = &mut self.flows {
                    f.fragments(&d.like, &d.wire, &mut self.out);
                }
                return;
            }
        };
        if d.like.tunnel.is_none() {
            if let (Some(f), Some(t)) = (&mut self.flows, p.tunnel.as_deref()) {
                // The fragments were of the outer datagram: packets of its tunnel's outer flow
                // (whether what it carried is whole or a fragment in turn).
                f.outer_fragments(t, &d.wire, &mut self.out);
            }
        }
        if p.fragment.is_some() {
            self.defrag.add(
                &p,
                d.wire.last_ns,
                &self.stats.fragments,
                &mut self.defragged,
            );
            return;
        }
        if let Some(f) = &mut self.flows {
            // The flow of the datagram's own addresses counts its fragments; the flow of a
            // packet it carried through a tunnel counts that packet once, as it was sent.
            let wire = if (p.src, p.dst) == (d.like.src, d.like.dst) {
                d.wire
            } else {
                Wire {
                    first_ns: d.wire.first_ns,
                    last_ns: d.wire.last_ns,
                    packets: 1,
                    bytes: p.ip_len as u64,
                }
            };
            f.fragments(&p, &wire, &mut self.out);
        }
        if !self.sessions.is_empty() {
            let key = super::flows::FlowKey::of(&p, self.key_by);
            let mut hash = super::flows::KeyHash::default();
            self.sessions
                .packet(&p, key, &mut hash, None, d.wire.last_ns, &mut self.out);
        }
    }
}

#[cfg(test)]
#[path = "defrag_tests.rs"]
mod tests;
