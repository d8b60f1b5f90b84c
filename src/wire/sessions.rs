//! The driver under every protocol analyzer: one table of the TCP connections and UDP flows
//! the configured protocols follow, TCP reassembly per direction (`tcp.rs`), which side is the
//! client, timeouts, and dispatch to each connection's `analyzer::Session`.
//!
//! A new connection goes to the first protocol (in registration order) whose ports it uses,
//! else to a protocol without ports that recognises its first payload (else one that might
//! be it mid-stream). Events come out in capture order per connection; sweeps and the final
//! flush go through connections in the order they started, so a capture always gives the
//! same output.

use super::analyzer::{AnySession, Conn, Emit, Protocol, Side, Transport};
use super::community_id::CommunityId;
use super::decode::{tcp_flags, Packet};
use super::flows::{FlowKey, KeyHash, KeyMap};
use super::http::metrics::ServiceMap;
use super::out::Out;
use super::tcp::{Budget, Chunk, Stream};
use super::{ProtocolStats, Stats};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How often (capture time) connections are looked at for timeouts.
const SWEEP_NS: i64 = 200_000_000;

/// One registered protocol and what the driver keeps for it.
struct Registered {
    protocol: Box<dyn Protocol>,
    tcp: bool,
    udp: bool,
    /// Out-of-order bytes buffered across this protocol's connections.
    budget: Budget,
    /// `Settings::max_buffer_per_connection`, asked for every segment: kept here rather
    /// than through a call to the protocol each time.
    per_stream: usize,
    stats: Arc<ProtocolStats>,
    /// Connections (and flows) followed now.
    open: usize,
}

impl Registered {
    fn runs_over(&self, t: Transport) -> bool {
        match t {
            Transport::Tcp => self.tcp,
            Transport::Udp => self.udp,
        }
    }

    fn on_port(&self, port: u16) -> bool {
        self.protocol.settings().ports.contains(&port)
    }

    /// Runs over `t` and follows a connection between these ports: one of them is its, or
    /// it follows every port.
    fn follows(&self, t: Transport, sport: u16, dport: u16) -> bool {
        self.runs_over(t)
            && (self.protocol.settings().ports.is_empty()
                || self.on_port(sport)
                || self.on_port(dport))
    }
}

struct Entry {
    /// Index of the protocol in `Sessions::protocols`.
    proto: usize,
    session: Box<dyn AnySession>,
    conn: Conn,
    /// Reassembly per flow direction (0: from the key's `a`); unused for UDP.
    streams: [Stream; 2],
    /// The flow direction the client sends in.
    client_dir: usize,
    /// Taken at its SYN by the protocol that takes what nothing recognises (HTTP on every
    /// port): the first payload may still be recognised by another (the HTTP/2 preface).
    provisional: bool,
    first_ns: i64,
    last_ns: i64,
}

/// The protocols of one engine and the connections they follow.
pub struct Sessions {
    protocols: Vec<Registered>,
    conns: KeyMap<Entry>,
    stats: Arc<Stats>,
    input: Arc<str>,
    map: Option<Arc<ServiceMap>>,
    last_sweep_ns: i64,
    /// While the connections are being flushed in batches: the keys still to close, the
    /// first connection last.
    ending: Option<Vec<(i64, FlowKey)>>,
}

/// The entry filed under `key` (`hash`: its hash, worked out at most once a packet).
fn hashed<'m>(
    conns: &'m mut KeyMap<Entry>,
    hash: &mut KeyHash,
    key: &FlowKey,
) -> Option<&'m Entry> {
    let at = conns.find(key, hash)?;
    conns.at_mut(at).map(|e| &*e)
}

/// Which side sent a packet, as `Emit` and the session need it.
fn side(dir: usize, client_dir: usize) -> Side {
    if dir == client_dir {
        Side::Client
    } else {
        Side::Server
    }
}

impl Sessions {
    pub fn new(
        protocols: Vec<Box<dyn Protocol>>,
        input: Arc<str>,
        stats: Arc<Stats>,
        map: Option<Arc<ServiceMap>>,
    ) -> Sessions {
        let protocols = protocols
            .into_iter()
            .map(|protocol| {
                let transports = protocol.transports();
                Registered {
                    tcp: transports.contains(&Transport::Tcp),
                    udp: transports.contains(&Transport::Udp),
                    budget: Budget::new(protocol.settings().max_buffer_total),
                    per_stream: protocol.settings().max_buffer_per_connection,
                    stats: stats.protocol(protocol.name(), protocol.counters()),
                    open: 0,
                    protocol,
                }
            })
            .collect();
        Sessions {
            protocols,
            conns: KeyMap::default(),
            stats,
            input,
            map,
            last_sweep_ns: i64::MIN,
            ending: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.protocols.is_empty()
    }

    /// The protocol a new connection of `transport` between these ports goes to, the side
    /// that sent `payload` when the protocol could tell, and whether one port of the protocol
    /// alone settled it (else a content check may still move a connection taken at its SYN).
    /// `server_port`: the server's port when the packet tells (a SYN goes to it, a SYN-ACK
    /// comes from it); then only that port is a protocol's, not the client's: an ephemeral
    /// port that happens to be 5432 or 6379 (NAT, Windows' range) is no PostgreSQL or Redis.
    fn claim(
        &self,
        transport: Transport,
        sport: u16,
        dport: u16,
        payload: &[u8],
        server_port: Option<u16>,
    ) -> Option<(usize, Option<Side>, bool)> {
        let runs = |r: &&Registered| r.runs_over(transport);
        let on_port = |r: &Registered| match server_port {
            Some(port) => r.on_port(port),
            None => r.on_port(dport) || r.on_port(sport),
        };
        if let Some(i) = self.protocols.iter().position(|r| runs(&r) && on_port(r)) {
            let shared = self.protocols[i + 1..]
                .iter()
                .any(|r| runs(&r) && on_port(r));
            if !shared {
                return Some((i, None, true));
            }
            // Several protocols were given this port (HTTP/1.x and HTTP/2 on one listener):
            // the first payload decides, as for a protocol that follows every port; without
            // one yet (a SYN), the one that takes what nothing recognises holds it until then.
            let mut fallback = None;
            for (j, r) in self.protocols.iter().enumerate().skip(i) {
                if !runs(&r) || !on_port(r) {
                    continue;
                }
                if !payload.is_empty() {
                    if let Some(side) = r.protocol.recognize(transport, payload) {
                        return Some((j, Some(side), false));
                    }
                }
                if fallback.is_none() && r.protocol.takes_unrecognized() {
                    fallback = Some(j);
                }
            }
            return Some((fallback.unwrap_or(i), None, false));
        }
        let mut maybe = None;
        for (i, r) in self.protocols.iter().enumerate() {
            if !runs(&r) || !r.protocol.settings().ports.is_empty() {
                continue;
            }
            match r.protocol.recognize(transport, payload) {
                Some(side) => return Some((i, Some(side), false)),
                None if maybe.is_none() && r.protocol.takes_unrecognized() => {
                    maybe = Some((i, None, false))
                }
                None => {}
            }
        }
        maybe
    }

    /// A payload of a connection taken provisionally at its SYN: when a protocol without
    /// ports, or one of those sharing its port, recognises it, the connection goes to that
    /// protocol; else it stays. The client's
    /// first payload decides: a server may speak first (an HTTP/2 server's SETTINGS before
    /// the client's preface), and what it sent is lost to the new protocol, as when that one
    /// picks a connection up in the middle.
    fn recognize_late(&mut self, key: &FlowKey, p: &Packet<'_>, dir: usize) {
        let found = self.protocols.iter().position(|r| {
            r.follows(Transport::Tcp, p.sport, p.dport)
                && r.protocol.recognize(Transport::Tcp, p.payload).is_some()
        });
        let Some(e) = self.conns.get_mut(key) else {
            return;
        };
        if dir == e.client_dir {
            e.provisional = false;
        }
        if let Some(proto) = found.filter(|&i| i != e.proto) {
            switch_protocol(e, &mut self.protocols, proto);
        }
    }

    /// `key`: `FlowKey::of(p, key_by)`, and `hash` its hash, worked out at most once for the
    /// flow table and here; `id`: the flow's Community ID when the flow
    /// table has it.
    pub fn packet(
        &mut self,
        p: &Packet<'_>,
        key: (FlowKey, usize),
        hash: &mut KeyHash,
        id: Option<&CommunityId>,
        ts: i64,
        out: &mut Out,
    ) {
        match (p.tcp.is_some(), p.proto) {
            (true, _) => self.tcp(p, key, hash, id, ts, out),
            (false, 17) if p.fragment.is_none() => self.udp(p, key, hash, id, ts, out),
            _ => {}
        }
    }

    /// Opens the session of a new connection; `None` when its protocol's table is full.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        proto: usize,
        transport: Transport,
        p: &Packet<'_>,
        dir: usize,
        client_dir: usize,
        id: Option<&CommunityId>,
        ts: i64,
    ) -> Option<Entry> {
        let r = &mut self.protocols[proto];
        if r.open >= r.protocol.settings().max_connections {
            r.stats.untracked.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        r.open += 1;
        let (client, server) = if client_dir == dir {
            ((p.src, p.sport), (p.dst, p.dport))
        } else {
            ((p.dst, p.dport), (p.src, p.sport))
        };
        let mut conn = Conn::with_community_id(r.protocol.name(), transport, client, server, id);
        conn.category = r.protocol.category();
        Some(Entry {
            session: r.protocol.open(transport, &conn),
            conn,
            proto,
            streams: Default::default(),
            client_dir,
            provisional: false,
            first_ns: ts,
            last_ns: ts,
        })
    }

    fn tcp(
        &mut self,
        p: &Packet<'_>,
        (key, dir): (FlowKey, usize),
        hash: &mut KeyHash,
        id: Option<&CommunityId>,
        ts: i64,
        out: &mut Out,
    ) {
        let Some(tcp) = p.tcp else { return };
        let syn = tcp.flags & (tcp_flags::SYN | tcp_flags::ACK);
        // Nearly every packet is a segment of a connection already followed: one look-up in
        // the table. A SYN (the 4-tuple may be reused), a new connection and the first
        // payload of a provisional one take the longer way below.
        if syn != tcp_flags::SYN {
            let found = match self.conns.find(&key, hash) {
                Some(at) => self.conns.at_mut(at),
                None => None,
            };
            if let Some(e) = found.filter(|e| !e.provisional || p.payload.is_empty()) {
                let closed = feed_tcp(
                    e,
                    &mut self.protocols,
                    &self.input,
                    self.map.as_deref(),
                    &self.stats,
                    p,
                    tcp,
                    dir,
                    ts,
                    out,
                );
                if closed {
                    if let Some(e) = self.conns.remove(&key) {
                        self.close(e, ts, out);
                    }
                }
                return;
            }
        }
        // A new connection on the 4-tuple of a finished one (rare: only SYNs look).
        // Each look-up reuses the packet's hash (or the last bucket): a new connection asks up
        // to four times.
        if syn == tcp_flags::SYN
            && hashed(&mut self.conns, hash, &key)
                .is_some_and(|e| e.streams[dir].started() && e.streams[dir].saw_syn)
        {
            if let Some(e) = self.conns.remove(&key) {
                self.close(e, ts, out);
            }
        }
        if hashed(&mut self.conns, hash, &key).is_none() {
            if p.payload.is_empty() && tcp.flags & tcp_flags::SYN == 0 {
                return;
            }
            if tcp.flags & tcp_flags::RST != 0 {
                return;
            }
            let server_port = if syn == tcp_flags::SYN {
                Some(p.dport)
            } else if syn == tcp_flags::SYN | tcp_flags::ACK {
                Some(p.sport)
            } else {
                None
            };
            let Some((proto, sent_by, by_port)) =
                self.claim(Transport::Tcp, p.sport, p.dport, p.payload, server_port)
            else {
                return;
            };
            let ports = &self.protocols[proto].protocol.settings().ports;
            let client_dir = if syn == tcp_flags::SYN {
                dir
            } else if syn == tcp_flags::SYN | tcp_flags::ACK {
                dir ^ 1
            } else if !ports.is_empty() && ports.contains(&p.dport) != ports.contains(&p.sport) {
                if ports.contains(&p.dport) {
                    dir
                } else {
                    dir ^ 1
                }
            } else {
                let sent_by = sent_by.or_else(|| {
                    self.protocols[proto]
                        .protocol
                        .recognize(Transport::Tcp, p.payload)
                });
                match sent_by {
                    Some(Side::Server) => dir ^ 1,
                    Some(Side::Client) => dir,
                    None if p.dport <= p.sport => dir,
                    None => dir ^ 1,
                }
            };
            let Some(mut e) = self.open(proto, Transport::Tcp, p, dir, client_dir, id, ts) else {
                return;
            };
            e.provisional = p.payload.is_empty() && sent_by.is_none() && !by_port;
            // Not there: the look-up above found nothing, and nothing was filed since.
            self.conns.insert_new(key, hash, e);
        }
        if !p.payload.is_empty()
            && hashed(&mut self.conns, hash, &key).is_some_and(|e| e.provisional)
        {
            self.recognize_late(&key, p, dir);
        }
        let Some(e) = self
            .conns
            .find(&key, hash)
            .and_then(|at| self.conns.at_mut(at))
        else {
            return;
        };
        let closed = feed_tcp(
            e,
            &mut self.protocols,
            &self.input,
            self.map.as_deref(),
            &self.stats,
            p,
            tcp,
            dir,
            ts,
            out,
        );
        if closed {
            if let Some(e) = self.conns.remove(&key) {
                self.close(e, ts, out);
            }
        }
    }

    fn udp(
        &mut self,
        p: &Packet<'_>,
        (key, dir): (FlowKey, usize),
        hash: &mut KeyHash,
        id: Option<&CommunityId>,
        ts: i64,
        out: &mut Out,
    ) {
        if self.conns.find(&key, hash).is_none() {
            let Some((proto, sent_by, _)) =
                self.claim(Transport::Udp, p.sport, p.dport, p.payload, None)
            else {
                return;
            };
            let ports = &self.protocols[proto].protocol.settings().ports;
            let one_side = ports.contains(&p.dport) != ports.contains(&p.sport);
            // Both ports or neither the protocol's (DNS servers querying each other from port
            // 53 to 53): the message says who sent it (DNS: the QR bit), else the lower port.
            let sent_by = sent_by.or_else(|| {
                (!one_side)
                    .then(|| {
                        self.protocols[proto]
                            .protocol
                            .recognize(Transport::Udp, p.payload)
                    })
                    .flatten()
            });
            let client_dir = match sent_by {
                Some(Side::Client) => dir,
                Some(Side::Server) => dir ^ 1,
                None if one_side => {
                    if ports.contains(&p.dport) {
                        dir
                    } else {
                        dir ^ 1
                    }
                }
                None if p.dport <= p.sport => dir,
                None => dir ^ 1,
            };
            let Some(e) = self.open(proto, Transport::Udp, p, dir, client_dir, id, ts) else {
                return;
            };
            self.conns.insert_new(key, hash, e);
        }
        let Some(e) = self
            .conns
            .find(&key, hash)
            .and_then(|at| self.conns.at_mut(at))
        else {
            return;
        };
        e.last_ns = ts;
        if e.conn.tunnel.is_none() {
            if let Some(t) = p.tunnel.as_deref() {
                e.conn.tunnel = Some(Box::new((*t, dir == e.client_dir)));
            }
        }
        let mut emit = Emit {
            conn: &e.conn,
            input: &self.input,
            out,
            map: self.map.as_deref(),
            hand_over: &mut None,
            stats: &self.protocols[e.proto].stats,
        };
        e.session
            .data(side(dir, e.client_dir), p.payload, ts, &mut emit);
    }

    /// Ends a connection: what is buffered is handed on (with gaps for the holes), then the
    /// session reports everything still open.
    fn close(&mut self, mut e: Entry, ts: i64, out: &mut Out) {
        let r = &mut self.protocols[e.proto];
        r.open = r.open.saturating_sub(1);
        let mut gaps = 0u64;
        let Entry {
            session,
            conn,
            streams,
            client_dir,
            ..
        } = &mut e;
        let mut emit = Emit {
            conn,
            input: &self.input,
            out,
            map: self.map.as_deref(),
            hand_over: &mut None,
            stats: &r.stats,
        };
        for (d, s) in streams.iter_mut().enumerate() {
            let from = side(d, *client_dir);
            let mut sink =
                |c: Chunk<'_>| deliver(session.as_mut(), from, c, ts, &mut gaps, &mut emit);
            s.flush(&mut r.budget, &mut sink);
        }
        session.close(ts, &mut emit);
        add_gaps(&self.stats, gaps);
    }

    /// Reports requests past their protocol's `transaction_timeout` and closes connections
    /// idle past its `connection_timeout`.
    /// The check is inlined into the per-packet path; the sweep itself is not.
    #[inline(always)]
    pub fn sweep(&mut self, now: i64, out: &mut Out) {
        if now.saturating_sub(self.last_sweep_ns) >= SWEEP_NS {
            self.sweep_now(now, out);
        }
    }

    #[inline(never)]
    fn sweep_now(&mut self, now: i64, out: &mut Out) {
        self.last_sweep_ns = now;
        let deadlines: Vec<(i64, i64)> = self
            .protocols
            .iter()
            .map(|r| {
                let s = r.protocol.settings();
                (
                    now.saturating_sub(s.transaction_timeout_ns.max(0)),
                    now.saturating_sub(s.connection_timeout_ns.max(0)),
                )
            })
            .collect();
        // In the order the connections started, not the table's hash order: the same capture
        // always gives the same output.
        let mut due: Vec<(i64, FlowKey, bool)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| {
                let (tx_deadline, idle_deadline) = deadlines[e.proto];
                let idle = e.last_ns < idle_deadline;
                (idle || e.session.expires(tx_deadline)).then_some((e.first_ns, *k, idle))
            })
            .collect();
        due.sort_unstable_by_key(|d| (d.0, d.1));
        for (_, k, idle) in due {
            if idle {
                if let Some(e) = self.conns.remove(&k) {
                    self.close(e, now, out);
                }
            } else if let Some(e) = self.conns.get_mut(&k) {
                let mut emit = Emit {
                    conn: &e.conn,
                    input: &self.input,
                    out,
                    map: self.map.as_deref(),
                    hand_over: &mut None,
                    stats: &self.protocols[e.proto].stats,
                };
                e.session.expire(deadlines[e.proto].0, &mut emit);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        for r in &self.protocols {
            r.stats.connections.store(r.open as u64, Ordering::Relaxed);
        }
    }

    /// End of capture or shutdown: every connection is closed and reported.
    pub fn flush(&mut self, out: &mut Out) {
        while self.flush_batch(usize::MAX, out) {}
    }

    /// Closes and reports up to `max` of the connections still open, in the order they
    /// started; true while some remain (the caller takes `out` between batches, so that the
    /// reports of every connection are never all held at once).
    pub fn flush_batch(&mut self, max: usize, out: &mut Out) -> bool {
        if self.ending.is_none() {
            let mut order: Vec<(i64, FlowKey)> =
                self.conns.iter().map(|(k, e)| (e.first_ns, *k)).collect();
            // Connections that started at the same instant by their key, not the table's
            // hash order, as in `sweep_now`.
            order.sort_unstable();
            // Popped from the end: the first connection last.
            order.reverse();
            self.ending = Some(order);
        }
        let Some(mut order) = self.ending.take() else {
            return false;
        };
        for _ in 0..max {
            let Some((_, k)) = order.pop() else {
                break;
            };
            if let Some(e) = self.conns.remove(&k) {
                let ts = e.last_ns;
                self.close(e, ts, out);
            }
        }
        if !order.is_empty() {
            self.ending = Some(order);
            return true;
        }
        self.conns = KeyMap::default();
        self.publish();
        false
    }
}

/// Adds what one call saw to the counters (nothing to do, the common case, costs no atomics).
/// One segment of a connection followed (`e`): reassembled, handed to its session with what
/// the other side acknowledged, ended at a FIN. Returns whether the connection is over (both
/// FINs, or a RST).
#[allow(clippy::too_many_arguments)]
fn feed_tcp(
    e: &mut Entry,
    protocols: &mut [Registered],
    input: &Arc<str>,
    map: Option<&ServiceMap>,
    stats: &Stats,
    p: &Packet<'_>,
    tcp: super::decode::Tcp,
    dir: usize,
    ts: i64,
    out: &mut Out,
) -> bool {
    e.last_ns = ts;
    if e.conn.tunnel.is_none() {
        if let Some(t) = p.tunnel.as_deref() {
            e.conn.tunnel = Some(Box::new((*t, dir == e.client_dir)));
        }
    }
    let r = &mut protocols[e.proto];
    let per_stream = r.per_stream;
    let from = side(dir, e.client_dir);
    let (mut hand_over, mut gaps) = (None, 0u64);
    let Entry {
        session,
        conn,
        streams,
        ..
    } = e;
    let mut emit = Emit {
        conn,
        input,
        out,
        map,
        hand_over: &mut hand_over,
        stats: &r.stats,
    };
    // The acknowledgement first: the sender had the peer's bytes up to it before it sent this
    // segment's, so the peer's bytes it gives up for lost, and those it releases after them,
    // come before this segment's (a pipelined request lost in the capture comes before the
    // responses in the segment that acknowledges it).
    if tcp.flags & tcp_flags::ACK != 0 && tcp.flags & tcp_flags::RST == 0 {
        let to = from.other();
        let mut sink = |c: Chunk<'_>| deliver(session.as_mut(), to, c, ts, &mut gaps, &mut emit);
        streams[dir ^ 1].acked(tcp.ack, &mut r.budget, &mut sink);
    }
    {
        let mut sink = |c: Chunk<'_>| deliver(session.as_mut(), from, c, ts, &mut gaps, &mut emit);
        streams[dir].segment_truncated(
            tcp.seq,
            tcp.flags,
            p.payload,
            p.missing,
            per_stream,
            &mut r.budget,
            &mut sink,
        );
    }
    if tcp.flags & tcp_flags::FIN != 0 {
        let mut sink = |c: Chunk<'_>| deliver(session.as_mut(), from, c, ts, &mut gaps, &mut emit);
        streams[dir].flush(&mut r.budget, &mut sink);
        session.end(from, ts, &mut emit);
    }
    let closed = tcp.flags & tcp_flags::RST != 0 || (streams[0].fin && streams[1].fin);
    add_gaps(stats, gaps);
    // The session gave the rest of the connection to another protocol (PostgreSQL upgraded
    // to TLS): it goes there when that protocol follows this connection's port.
    if let Some(to) = hand_over {
        let next = protocols
            .iter()
            .position(|r| r.protocol.name() == to && r.follows(Transport::Tcp, p.sport, p.dport));
        if let Some(next) = next {
            switch_protocol(e, protocols, next);
        }
    }
    closed
}

/// `e` goes on as a connection of protocol `to` with a new session (a content check or a
/// hand-over decided it); what its streams hold moves to that protocol's budget. Counted as
/// untracked and left as it was when `to`'s table is full.
fn switch_protocol(e: &mut Entry, protocols: &mut [Registered], to: usize) {
    let held = e.streams[0].buffered() + e.streams[1].buffered();
    let r = &mut protocols[to];
    if r.open >= r.protocol.settings().max_connections {
        r.stats.untracked.fetch_add(1, Ordering::Relaxed);
        return;
    }
    r.open += 1;
    r.budget.used += held;
    e.conn.protocol = r.protocol.name();
    e.conn.category = r.protocol.category();
    e.session = r.protocol.open(Transport::Tcp, &e.conn);
    let old = &mut protocols[e.proto];
    old.open = old.open.saturating_sub(1);
    old.budget.used = old.budget.used.saturating_sub(held);
    e.proto = to;
}

fn add_gaps(stats: &Stats, gaps: u64) {
    if gaps > 0 {
        stats.tcp_gaps.fetch_add(gaps, Ordering::Relaxed);
    }
}

fn deliver(
    session: &mut dyn AnySession,
    from: Side,
    c: Chunk<'_>,
    ts: i64,
    gaps: &mut u64,
    emit: &mut Emit<'_>,
) {
    match c {
        Chunk::Data(d) => session.data(from, d, ts, emit),
        Chunk::Gap(n) => {
            *gaps += 1;
            session.gap(from, n, emit);
        }
    }
}
