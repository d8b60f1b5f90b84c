//! The flow table: bidirectional flows on the canonical 5-tuple plus VLAN, with per-direction
//! packets and bytes, TCP flags, how the flow ended and the TCP set-up time; emits interim and
//! final flow events (ECS `source.*`, `destination.*`, `network.*`, `flow.*`) in capture time.

mod key;
mod keymap;
mod report;

use super::community_id::CommunityId;
use super::decode::{tcp_flags, Packet};
use super::defrag::Wire;
use super::out::Out;
use super::tunnel::Tunnel;
use super::Stats;
use crate::config::Duration;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use key::is_icmp_answer;
pub use key::{tunnel_scope, FlowKey, KeyBy};
pub use keymap::{KeyHash, KeyMap};
use report::report;
pub use report::{transport_name, write_tunnel};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    /// Live capture settings (`flows` input only).
    #[serde(default)]
    pub capture: Option<super::capture::CaptureConfig>,
    /// A flow without packets for this long ends (`flow.end_reason: timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// A TCP flow closed by FIN both ways or RST is kept this long after its last packet
    /// (at most `timeout`) for late retransmissions, then reported; a SYN on its 5-tuple
    /// ends it at once.
    #[serde(default = "default_closed_linger")]
    pub closed_linger: Duration,
    /// Interim reports of long flows every `period`; zero or negative: final reports only.
    #[serde(default = "default_period")]
    pub period: Duration,
    /// Most flows tracked at once; new flows past it are counted in
    /// `trawl_packet_flows_untracked_total` and not reported.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Finished TCP flows feed the service map: connections and bytes on HTTP edges, and
    /// edges of their own (`detail__protocol: tcp`) for other TCP traffic; false leaves them out.
    #[serde(default = "default_service_map")]
    pub service_map: bool,
    /// The outer UDP flow of a VXLAN, Geneve, Teredo... tunnel is reported too, besides the
    /// inner flows it carries (`tunnel.outer: true`); false reports the inner flows only.
    #[serde(default = "default_outer_tunnel_flows")]
    pub outer_tunnel_flows: bool,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            capture: None,
            timeout: default_timeout(),
            closed_linger: default_closed_linger(),
            period: default_period(),
            max_flows: default_max_flows(),
            service_map: default_service_map(),
            outer_tunnel_flows: default_outer_tunnel_flows(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_closed_linger() -> Duration {
    Duration::from_secs(30)
}
fn default_period() -> Duration {
    Duration::from_secs(10)
}
fn default_max_flows() -> usize {
    100_000
}
fn default_service_map() -> bool {
    true
}
fn default_outer_tunnel_flows() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Fin,
    Rst,
    Timeout,
    EndOfCapture,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Timeout => "timeout",
            EndReason::EndOfCapture => "end_of_capture",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Dir {
    packets: u64,
    bytes: u64,
}

/// `Flow::syn_ns` and `Flow::setup_ns` not known yet (an `Option<i64>` takes 16 bytes).
const UNSET: i64 = i64::MIN;

#[derive(Clone, Debug)]
struct Flow {
    id: u64,
    first_ns: i64,
    last_ns: i64,
    last_report_ns: i64,
    dirs: [Dir; 2],
    /// Time of the initiator's SYN, `UNSET` without one.
    syn_ns: i64,
    /// SYN to the initiator's ACK of the SYN-ACK, `UNSET` until seen.
    setup_ns: i64,
    /// TCP flags seen per direction (kept out of `Dir`, whose padding they would double).
    flags: [u8; 2],
    /// FIN seen per direction.
    fin: [bool; 2],
    /// Which direction the initiator sends in (0 or 1).
    initiator: u8,
    synack_seen: bool,
    rst: bool,
    /// The first tunnel the flow's packets came through, and in which direction (boxed: most
    /// flows have none, and the table moves flows around).
    tunnel: Option<Box<(Tunnel, usize)>>,
    /// The outer UDP flow of a tunnel: its packets carry other flows' packets.
    outer: bool,
    /// The VLAN id of the flow's first tagged packet (`inner_vlan`: its QinQ second tag): the
    /// key's when the key has it, else whichever side was tagged.
    vlan: u16,
    inner_vlan: u16,
    /// ICMP type and code of the flow's first ICMP message (not an error), and its direction
    /// (0 or 1): Community ID hashes them in place of ports.
    icmp: Option<(u16, u16, u8)>,
    /// Worked out when the flow starts, except for ICMP (whose depends on the first message,
    /// worked out in each report; zeros here): the flow's reports and its connection's
    /// events share it (20 bytes a flow, where SHA-1 twice a connection cost about 2,300
    /// instructions each time).
    community_id: CommunityId,
}

impl Flow {
    /// FIN both ways, or RST: the connection is over, only late segments can follow.
    fn closed(&self) -> bool {
        self.rst || (self.fin[0] && self.fin[1])
    }
}

/// Every closed flow is kept at least this long after its last packet, for its last ACKs,
/// whatever the load.
const MIN_LINGER_NS: i64 = 1_000_000_000;

/// Closed flows kept past `MIN_LINGER_NS` are at most `max_flows / CLOSED_SHARE`: at high
/// connection rates the oldest closed flows are reported early, so that lingering costs a
/// bounded part of the table and never keeps a new connection out of it.
const CLOSED_SHARE: usize = 32;

pub struct FlowTable {
    config: FlowsConfig,
    /// What joins the 5-tuple in the key (`key_by_vlan`, `key_by_tunnel`).
    key_by: KeyBy,
    table: KeyMap<Flow>,
    /// Closed flows in the order they closed (flow id to tell a reopened 5-tuple apart, and
    /// when the entry was queued); entries whose flow has gone are dropped when they reach
    /// the front.
    closed: VecDeque<(FlowKey, u64, i64)>,
    input: Arc<str>,
    stats: Arc<Stats>,
    next_id: u64,
    last_sweep_ns: i64,
    last_scan_ns: i64,
    /// Flows a sweep found due and has not reported yet, the first to report last.
    due: Vec<Due>,
    /// While the table is being flushed in batches: the keys still to report, the first
    /// flow last.
    ending: Option<Vec<(u64, FlowKey)>>,
}

/// A flow a sweep found due: its final report (`why`) or an interim one (`None`). `last_ns`
/// as found, to tell whether packets came since.
struct Due {
    id: u64,
    key: FlowKey,
    why: Option<EndReason>,
    last_ns: i64,
}

/// Reports a sweep hands to the caller at a time (see `FlowTable::report_due`).
const SWEEP_BATCH: usize = 1024;

/// The whole table is scanned for timeouts, lingers and interim reports once a second of
/// capture time (a flow ends at most that late): the scan visits every flow, and the table
/// holds lingering closed flows besides the open ones.
const SCAN_EVERY_NS: i64 = 1_000_000_000;

impl FlowTable {
    pub fn new(
        config: FlowsConfig,
        key_by: KeyBy,
        input: Arc<str>,
        stats: Arc<Stats>,
    ) -> FlowTable {
        FlowTable {
            config,
            key_by,
            table: KeyMap::default(),
            closed: VecDeque::new(),
            input,
            stats,
            next_id: 1,
            last_sweep_ns: i64::MIN,
            last_scan_ns: i64::MIN,
            due: Vec::new(),
            ending: None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Accounts `p` (captured at `ts_ns`) to its flow; ended flows go to `out`. Returns the
    /// flow's Community ID for the connection's events (`None` for ICMP and when the table
    /// is full).
    #[inline]
    /// `key`: `FlowKey::of(p, key_by)`, and `hash` its hash, worked out at most once for the
    /// flow table and the protocol analyzers.
    pub fn packet(
        &mut self,
        p: &Packet<'_>,
        key: (FlowKey, usize),
        hash: &mut KeyHash,
        ts_ns: i64,
        out: &mut Out,
    ) -> Option<&CommunityId> {
        self.account(p, key, hash, ts_ns, ts_ns, 1, p.ip_len as u64, out)
    }

    /// Accounts the fragments of one IP datagram (`wire`) to the flow `p` is in: each
    /// fragment is a packet of the flow, as on the wire.
    pub fn fragments(&mut self, p: &Packet<'_>, wire: &Wire, out: &mut Out) {
        let key = FlowKey::of(p, self.key_by);
        self.account(
            p,
            key,
            &mut KeyHash::default(),
            wire.first_ns,
            wire.last_ns,
            wire.packets,
            wire.bytes,
            out,
        );
    }

    /// `packets` packets of `bytes` in all, of the flow `p` is in, captured from `first_ns`
    /// to `ts_ns`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        p: &Packet<'_>,
        (key, dir): (FlowKey, usize),
        hash: &mut KeyHash,
        first_ns: i64,
        ts_ns: i64,
        packets: u64,
        bytes: u64,
        out: &mut Out,
    ) -> Option<&CommunityId> {
        let flags = p.tcp.map(|t| t.flags).unwrap_or(0);
        let syn_only = flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        // A new connection on the 5-tuple of a closed one: report the old flow first.
        if syn_only {
            let found = self
                .table
                .find(&key, hash)
                .and_then(|at| self.table.at_mut(at));
            if let Some(f) = found {
                if f.closed() || f.dirs[dir ^ 1].packets > 0 && f.fin[dir] {
                    if let Some(old) = self.table.remove(&key) {
                        let reason = if old.rst {
                            EndReason::Rst
                        } else {
                            EndReason::Fin
                        };
                        report(&self.input, &key, &old, true, Some(reason), out);
                    }
                }
            }
        }
        if self.table.len() >= self.config.max_flows && !self.table.contains_key(&key) {
            self.end_oldest_closed(out);
        }
        let tracked = self.table.len();
        let at = match self.table.find(&key, hash) {
            Some(at) => at,
            None => {
                if tracked >= self.config.max_flows {
                    self.stats.flows_untracked.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let synack =
                    flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK);
                let answer = p.quoted.is_none()
                    && matches!(p.proto, 1 | 58)
                    && is_icmp_answer(p.proto == 58, p.sport);
                // A TCP connection picked up mid-way (trawl started or restarted while it was
                // open: every long-lived connection on a node) whose server speaks first.
                let from_server = p.proto == 6
                    && flags & tcp_flags::SYN == 0
                    && key::sent_by_server(p.sport, p.dport);
                // An error is sent back to the quoted packet's sender: the initiator.
                let initiator = if synack || answer || from_server || p.quoted.is_some() {
                    dir ^ 1
                } else {
                    dir
                };
                let id = self.next_id;
                self.next_id += 1;
                let flow = Flow {
                    id,
                    first_ns,
                    last_ns: ts_ns,
                    last_report_ns: ts_ns,
                    dirs: Default::default(),
                    syn_ns: UNSET,
                    setup_ns: UNSET,
                    flags: [0; 2],
                    fin: [false; 2],
                    initiator: initiator as u8,
                    synack_seen: false,
                    rst: false,
                    tunnel: None,
                    outer: false,
                    vlan: p.vlan,
                    inner_vlan: p.inner_vlan,
                    icmp: None,
                    community_id: if is_icmp(key.proto) {
                        CommunityId::default()
                    } else {
                        CommunityId::of(0, key.a, key.ap, key.b, key.bp, key.proto)
                    },
                };
                self.table.insert_new(key, hash, flow)
            }
        };
        let f = self.table.at_mut(at)?;
        if !self.key_by.vlan && f.vlan == 0 && p.vlan != 0 {
            // Keyed without the VLAN, and the first packets were untagged.
            f.vlan = p.vlan;
            f.inner_vlan = p.inner_vlan;
        }
        f.last_ns = f.last_ns.max(ts_ns);
        // Only a FIN or a RST can close a flow: the other packets need not ask.
        let ends = flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
        let was_closed = ends && f.closed();
        if f.tunnel.is_none() {
            f.tunnel = p.tunnel.as_deref().map(|t| Box::new((*t, dir)));
        }
        if matches!(p.proto, 1 | 58) && f.icmp.is_none() && p.quoted.is_none() {
            f.icmp = Some((p.sport, p.dport, dir as u8));
        }
        let d = &mut f.dirs[dir];
        d.packets += packets;
        d.bytes += bytes;
        f.flags[dir] |= flags;
        if p.tcp.is_some() {
            if flags & tcp_flags::FIN != 0 {
                f.fin[dir] = true;
            }
            if flags & tcp_flags::RST != 0 {
                f.rst = true;
            }
            if syn_only && f.syn_ns == UNSET {
                f.syn_ns = ts_ns;
                f.initiator = dir as u8;
            } else if flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK)
            {
                f.synack_seen = true;
            } else if flags & tcp_flags::ACK != 0
                && dir == f.initiator as usize
                && f.synack_seen
                && f.setup_ns == UNSET
                && f.syn_ns != UNSET
            {
                f.setup_ns = ts_ns - f.syn_ns;
            }
            if ends && !was_closed && f.closed() {
                let id = f.id;
                self.closed.push_back((key, id, ts_ns));
            }
        }
        (!is_icmp(key.proto)).then_some(&f.community_id)
    }

    /// Ends idle flows and emits interim reports, as of capture time `now_ns`.
    /// The check is inlined into the per-packet path (it is asked for every packet); the
    /// sweep itself is not.
    #[inline(always)]
    pub fn sweep(&mut self, now_ns: i64, out: &mut Out) {
        if !self.due.is_empty() {
            self.report_due(now_ns, out);
        }
        if now_ns.saturating_sub(self.last_sweep_ns) >= 200_000_000 {
            self.sweep_now(now_ns, out);
        }
    }

    #[inline(never)]
    fn sweep_now(&mut self, now_ns: i64, out: &mut Out) {
        self.last_sweep_ns = now_ns;
        let timeout = self.config.timeout.millis.max(1).saturating_mul(1_000_000);
        let period = self.config.period.millis.saturating_mul(1_000_000);
        // Reports go out in the order the flows started, not the table's hash order, so
        // that the same capture always gives the same output.
        let linger = self
            .config
            .closed_linger
            .millis
            .saturating_mul(1_000_000)
            .clamp(MIN_LINGER_NS.min(timeout), timeout);
        // Not while flows found by the last scan wait: they would be found twice.
        let waiting = !self.due.is_empty();
        let mut due = std::mem::take(&mut self.due);
        self.end_closed_over_budget(now_ns, &mut due);
        if !waiting && now_ns.saturating_sub(self.last_scan_ns) >= SCAN_EVERY_NS {
            self.last_scan_ns = now_ns;
            for (k, f) in self.table.iter() {
                let idle = now_ns.saturating_sub(f.last_ns);
                let closed = f.closed();
                let why = if closed && idle >= linger {
                    Some(closed_reason(f))
                } else if idle >= timeout {
                    Some(EndReason::Timeout)
                } else if !closed && period > 0 && now_ns.saturating_sub(f.last_report_ns) >= period
                {
                    // A closed flow's next report is its final one.
                    None
                } else {
                    continue;
                };
                due.push(Due {
                    id: f.id,
                    key: *k,
                    why,
                    last_ns: f.last_ns,
                });
            }
        }
        // Popped from the end: the flow that started first goes first.
        due.sort_unstable_by_key(|d| std::cmp::Reverse(d.id));
        self.due = due;
        self.report_due(now_ns, out);
    }

    /// Reports up to `SWEEP_BATCH` of the flows found due, the rest at the next calls (each
    /// packet, each tick), so that the caller takes `out` in between: a scan that ends a
    /// million idle flows at once would otherwise hold a million events. A flow that got a
    /// packet since it was found due, or that is gone, is left to the next scan.
    fn report_due(&mut self, now_ns: i64, out: &mut Out) {
        for _ in 0..SWEEP_BATCH {
            let Some(d) = self.due.pop() else {
                break;
            };
            match d.why {
                Some(why) => {
                    // One lookup: a sweep ends about as many flows as start.
                    let found = self
                        .table
                        .remove_if(&d.key, |f| f.id == d.id && f.last_ns == d.last_ns);
                    if let Some(f) = found {
                        report(&self.input, &d.key, &f, true, Some(why), out);
                    }
                }
                None => {
                    if let Some(f) = self.table.get_mut(&d.key).filter(|f| f.id == d.id) {
                        f.last_report_ns = now_ns;
                        report(&self.input, &d.key, f, false, None, out);
                    }
                }
            }
        }
        if self.due.is_empty() && self.due.capacity() > SWEEP_BATCH {
            self.due = Vec::new();
        }
        self.stats
            .flows_active
            .store(self.table.len() as u64, Ordering::Relaxed);
    }

    /// Past the budget of closed flows, the ones that closed first go to `due` (once idle
    /// `MIN_LINGER_NS`). One pass over the queue at most: a front flow still receiving
    /// packets goes to the back instead of blocking the others.
    fn end_closed_over_budget(&mut self, now_ns: i64, due: &mut Vec<Due>) {
        let budget = (self.config.max_flows / CLOSED_SHARE).max(1);
        let mut turns = self.closed.len();
        while self.closed.len() > budget && turns > 0 {
            turns -= 1;
            let Some((k, id, queued_ns)) = self.closed.pop_front() else {
                break;
            };
            match self.table.get(&k) {
                Some(f) if f.id == id => {
                    if now_ns.saturating_sub(f.last_ns) >= MIN_LINGER_NS {
                        due.push(Due {
                            id,
                            key: k,
                            why: Some(closed_reason(f)),
                            last_ns: f.last_ns,
                        });
                    } else if now_ns.saturating_sub(queued_ns) < MIN_LINGER_NS {
                        // Queued less than a second ago, and so was everything behind it:
                        // none of them can end yet. Without this stop every sweep went
                        // round the whole queue (a second of connections at 11,000 a second).
                        self.closed.push_front((k, id, queued_ns));
                        break;
                    } else {
                        // Late segments keep it: back of the queue, as if it closed now.
                        self.closed.push_back((k, id, f.last_ns));
                    }
                }
                // Reported already, or the 5-tuple reopened as a new flow.
                _ => {}
            }
        }
        // Entries of flows reported by the sweep (idle past the linger) are dropped here
        // too, so that the queue holds about as many entries as there are closed flows.
        while let Some((k, id, _)) = self.closed.front() {
            if self.table.get(k).is_some_and(|f| f.id == *id) {
                break;
            }
            self.closed.pop_front();
        }
    }

    /// Reports the flow that closed first, to make room in a full table: a new connection
    /// matters more than late segments of an old one.
    fn end_oldest_closed(&mut self, out: &mut Out) {
        while let Some((k, id, _)) = self.closed.pop_front() {
            if self.table.get(&k).is_some_and(|f| f.id == id) {
                if let Some(f) = self.table.remove(&k) {
                    report(&self.input, &k, &f, true, Some(closed_reason(&f)), out);
                }
                return;
            }
        }
    }

    /// Reports every flow still open (end of a capture file, shutdown).
    pub fn flush(&mut self, out: &mut Out) {
        while self.flush_batch(usize::MAX, out) {}
    }

    /// Reports up to `max` of the flows still open, in the order they started; true while
    /// some remain. The caller takes `out` between batches: a table of a million flows
    /// reported in one go held all their events at once (hundreds of bytes of JSON, kilobytes
    /// as event maps, per flow) on top of the table itself.
    pub fn flush_batch(&mut self, max: usize, out: &mut Out) -> bool {
        if self.ending.is_none() {
            self.closed = VecDeque::new();
            let mut order: Vec<(u64, FlowKey)> =
                self.table.iter().map(|(k, f)| (f.id, *k)).collect();
            // Popped from the end: the first flow last.
            order.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
            self.ending = Some(order);
        }
        let Some(order) = self.ending.as_mut() else {
            return false;
        };
        for _ in 0..max {
            let Some((_, k)) = order.pop() else {
                break;
            };
            if let Some(f) = self.table.remove(&k) {
                let why = if f.rst {
                    EndReason::Rst
                } else if f.fin[0] && f.fin[1] {
                    EndReason::Fin
                } else {
                    EndReason::EndOfCapture
                };
                report(&self.input, &k, &f, true, Some(why), out);
            }
        }
        if !order.is_empty() {
            return true;
        }
        self.ending = None;
        // What the table grew to is given back rather than kept for a capture that ended.
        self.table = KeyMap::default();
        self.stats.flows_active.store(0, Ordering::Relaxed);
        false
    }
}

/// ICMP and ICMPv6: a flow whose Community ID hashes the type and code of its first message.
fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

fn closed_reason(f: &Flow) -> EndReason {
    if f.rst {
        EndReason::Rst
    } else {
        EndReason::Fin
    }
}

mod outer;
#[cfg(test)]
mod tests;
