//! One kernel socket for many interfaces: a node's forty pod veths are captured through a
//! single `any` handle whose kernel filter keeps only the wanted interfaces' packets (by
//! interface index), so they share one ring instead of pinning one each.
//!
//! The handle uses the cooked v2 link header (`LINUX_SLL2`), which carries the interface index
//! of every packet: copies on two veths are still told apart, as with one handle per interface.

use super::{wall_ns, BlockQueue, Ids, Live, Worker, READ_TIMEOUT_MS};
use crate::wire::capture::Block;
use crate::wire::merge::Merge;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// libpcap's cooked v2 header: protocol, reserved, interface index, ...
pub const LINUX_SLL2: i32 = 276;

/// Interface ids the shared handle's packets carry, apart from the ids of handles of their own.
const IFINDEX_ID: u32 = 1 << 31;

/// Changes of the interface set not yet acknowledged by the capture thread.
const MAX_PENDING: usize = 4;

/// A new kernel filter for the shared handle, applied by its capture thread (which owns it).
pub struct Retarget {
    pub filter: String,
    pub done: SyncSender<Result<(), String>>,
}

/// The capture thread's answer to a `Retarget`.
type Ack = Receiver<Result<(), String>>;

/// The shared handle's interfaces: those its kernel filter keeps, and changes on their way.
#[derive(Default)]
pub struct Members {
    /// Name → interface index, as the filter in force keeps them.
    applied: BTreeMap<String, u32>,
    control: Option<SyncSender<Retarget>>,
    /// Sets asked for and not applied yet, oldest first.
    pending: VecDeque<(Ack, BTreeMap<String, u32>)>,
}

impl Members {
    /// The set last asked for: on its way, else the one applied.
    fn requested(&self) -> &BTreeMap<String, u32> {
        self.pending.back().map_or(&self.applied, |(_, set)| set)
    }
}

/// The id under which the de-duplication and NAT matching know a packet of the shared handle:
/// its interface index, from the cooked header.
pub fn interface_id(data: &[u8]) -> Option<u32> {
    let b = data.get(4..8)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) | IFINDEX_ID)
}

/// The kernel filter keeping `members`' packets (and, of those, what the user's filter keeps).
pub fn filter_for(members: &BTreeMap<String, u32>, user: Option<&str>) -> String {
    let mut f = String::from("(");
    for (i, idx) in members.values().enumerate() {
        if i > 0 {
            f.push_str(" or ");
        }
        f.push_str("ifindex ");
        f.push_str(&idx.to_string());
    }
    f.push(')');
    if let Some(u) = user.filter(|u| !u.trim().is_empty()) {
        f.push_str(" and (");
        f.push_str(u);
        f.push(')');
    }
    f
}

/// Whether the user's filter can be applied to cooked packets (`ether` and a few link-layer
/// primitives cannot): if not, interfaces are captured one by one, on their own link type.
pub fn user_filter_fits(user: Option<&str>) -> bool {
    let Some(u) = user.filter(|u| !u.trim().is_empty()) else {
        return true;
    };
    pcap::Capture::dead(pcap::Linktype(LINUX_SLL2))
        .and_then(|d| d.compile(&format!("ifindex 1 and ({u})"), true))
        .is_ok()
}

fn ifindex(name: &str) -> u32 {
    std::ffi::CString::new(name)
        // SAFETY: a valid NUL-terminated string for the duration of the call.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) })
        .unwrap_or(0)
}

impl Live {
    /// The shared handle's label: in logs and in the `interface` label of its kernel counters.
    pub(super) fn shared_label(&self) -> String {
        self.cfg.interfaces.join(",")
    }

    /// `refresh` for the shared handle: the wanted interfaces that are there and up become the
    /// kernel filter's set; the others are logged once and retried at every refresh. False when
    /// this libpcap cannot give `any` the cooked v2 header (before 1.10: Ubuntu 20.04, RHEL 8):
    /// the interfaces are then captured one by one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refresh_shared(
        &self,
        workers: &mut HashMap<String, Worker>,
        members: &mut Members,
        logged: &mut HashSet<String>,
        tx: &Arc<BlockQueue<Block>>,
        pool: &Arc<Mutex<Vec<Block>>>,
        merge: &mut Merge,
        ids: &mut Ids,
    ) -> bool {
        let devices = match pcap::Device::list() {
            Ok(list) => list,
            Err(e) => {
                if logged.insert("<list>".into()) {
                    tracing::warn!(input = %self.input, error = %e, "cannot list interfaces (logged once)");
                }
                Vec::new()
            }
        };
        let names: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
        let wanted = super::select_interfaces(&self.cfg.interfaces, &names);
        let mut desired = BTreeMap::new();
        let mut last_error = None;
        let mut missing = Vec::new();
        for name in &wanted {
            let why = match devices.iter().find(|d| &d.name == name) {
                None => Some("no such interface"),
                Some(d) if !d.flags.is_up() => Some("that device is not up"),
                Some(_) => match ifindex(name) {
                    0 => Some("no such interface"),
                    idx => {
                        desired.insert(name.clone(), idx);
                        None
                    }
                },
            };
            match why {
                Some(why) => missing.push((name, why)),
                None => {
                    logged.remove(name);
                }
            }
        }
        // Logged after the interfaces captured, as one handle per interface logs them in turn.
        let complain = |missing: Vec<(&String, &str)>, logged: &mut HashSet<String>| {
            let mut last = None;
            for (name, why) in missing {
                if logged.insert(name.clone()) {
                    self.stats.interface_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(input = %self.input, interface = %name, error = why, "cannot capture on this interface; skipped, retried every refresh_interfaces (logged once)");
                }
                last = Some(format!("{name}: {why}"));
            }
            last
        };
        let label = self.shared_label();
        // A capture that ended (an error on the socket) is opened again below.
        if workers.get(&label).is_some_and(|w| w.handle.is_finished()) || desired.is_empty() {
            if let Some(w) = workers.remove(&label) {
                w.stop.store(true, Ordering::Relaxed);
                merge.close(w.id);
                ids.shared = None;
                for name in members.applied.keys() {
                    tracing::info!(input = %self.input, interface = %name, "interface released");
                }
                *members = Members::default();
            }
        }
        if desired.is_empty() {
            match complain(missing, logged) {
                Some(why) => self
                    .metrics
                    .set_failed(format!("capturing on no interface ({why})")),
                None => self.metrics.clear_failed(),
            }
            return true;
        }
        let filter = filter_for(&desired, self.cfg.bpf_filter.as_deref());
        if let std::collections::hash_map::Entry::Vacant(slot) = workers.entry(label.clone()) {
            match self.open_shared(&filter) {
                Ok(cap) => {
                    let (control, orders) = sync_channel(MAX_PENDING);
                    ids.next = ids.next.wrapping_add(1);
                    let id = ids.next;
                    merge.open(id, wall_ns());
                    ids.shared = Some(id);
                    match self.start_worker(cap, id, &label, tx, pool, Some(orders)) {
                        Ok(w) => {
                            slot.insert(w);
                            for name in desired.keys() {
                                tracing::info!(input = %self.input, interface = %name, ring_bytes = self.cfg.buffer_size.0, shared = true, "capturing");
                            }
                            members.control = Some(control);
                            members.applied = desired;
                        }
                        Err(e) => {
                            merge.close(id);
                            ids.shared = None;
                            tracing::error!(input = %self.input, error = %e, "cannot start a capture thread");
                        }
                    }
                }
                Err((e, true)) => {
                    tracing::info!(input = %self.input, error = %e, "libpcap cannot give `any` the cooked v2 header (libpcap before 1.10): each interface is captured on a handle of its own, each with its share of buffer_size");
                    return false;
                }
                Err((e, false)) => {
                    if logged.insert(format!("<shared>{e}")) {
                        self.stats.interface_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(input = %self.input, interfaces = %label, error = %e, "cannot open the capture; retried every refresh_interfaces (logged once)");
                    }
                    last_error = Some(e.to_string());
                }
            }
        } else if desired != *members.requested() && members.pending.len() < MAX_PENDING {
            if let Some(control) = &members.control {
                let (done, reply) = sync_channel(1);
                if control.try_send(Retarget { filter, done }).is_ok() {
                    members.pending.push_back((reply, desired));
                }
            }
        }
        if let Some(why) = complain(missing, logged) {
            last_error = Some(why);
        }
        match last_error {
            Some(why) if workers.is_empty() => self
                .metrics
                .set_failed(format!("capturing on no interface ({why})")),
            _ => self.metrics.clear_failed(),
        }
        true
    }

    /// Logs the interface changes the capture thread has applied since the last call: an
    /// interface is said to be captured only once the kernel keeps its packets.
    pub(super) fn shared_applied(&self, members: &mut Members) {
        while let Some((reply, _)) = members.pending.front() {
            let result = match reply.try_recv() {
                Ok(r) => r,
                Err(std::sync::mpsc::TryRecvError::Empty) => return,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Err("the capture thread ended".to_owned())
                }
            };
            let Some((_, set)) = members.pending.pop_front() else {
                return;
            };
            match result {
                Ok(()) => {
                    for name in set.keys().filter(|n| !members.applied.contains_key(*n)) {
                        tracing::info!(input = %self.input, interface = %name, ring_bytes = self.cfg.buffer_size.0, shared = true, "capturing");
                    }
                    for name in members.applied.keys().filter(|n| !set.contains_key(*n)) {
                        tracing::info!(input = %self.input, interface = %name, "interface released");
                    }
                    members.applied = set;
                }
                Err(e) => {
                    tracing::warn!(input = %self.input, error = %e, interfaces = set.len(), "cannot change the capture's interface set; kept the previous one, retried at the next refresh");
                    members.pending.clear();
                    return;
                }
            }
        }
    }

    /// The shared handle, its filter set; the error says (true) when the cooked v2 header is
    /// what failed, which no retry mends.
    fn open_shared(
        &self,
        filter: &str,
    ) -> Result<pcap::Capture<pcap::Active>, (pcap::Error, bool)> {
        let open = || {
            pcap::Capture::from_device("any")?
                .snaplen(self.cfg.snaplen.0.min(i32::MAX as u64) as i32)
                .buffer_size(self.cfg.buffer_size.0.min(i32::MAX as u64) as i32)
                .timeout(READ_TIMEOUT_MS)
                .open()
        };
        let mut cap = open().map_err(|e| (e, false))?;
        cap.set_datalink(pcap::Linktype(LINUX_SLL2))
            .map_err(|e| (e, true))?;
        let mut cap = cap.setnonblock().map_err(|e| (e, false))?;
        cap.filter(filter, true).map_err(|e| (e, false))?;
        Ok(cap)
    }
}

/// Applies the filters the refresh sent, on the capture thread that owns the handle.
pub fn apply_retargets(cap: &mut pcap::Capture<pcap::Active>, orders: &Receiver<Retarget>) {
    while let Ok(r) = orders.try_recv() {
        let result = cap.filter(&r.filter, true).map_err(|e| e.to_string());
        let _ = r.done.try_send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_the_members_and_the_users_filter() {
        let m: BTreeMap<String, u32> = [("veth1".to_string(), 7), ("veth2".to_string(), 12)]
            .into_iter()
            .collect();
        assert_eq!(filter_for(&m, None), "(ifindex 7 or ifindex 12)");
        assert_eq!(
            filter_for(&m, Some("tcp port 80 or udp")),
            "(ifindex 7 or ifindex 12) and (tcp port 80 or udp)"
        );
        let dead = pcap::Capture::dead(pcap::Linktype(LINUX_SLL2)).unwrap();
        assert!(dead
            .compile(&filter_for(&m, Some("tcp port 80")), true)
            .is_ok());
        assert!(user_filter_fits(Some("tcp port 443 or udp port 53")));
        assert!(user_filter_fits(None));
        // Link-layer fields are not in cooked packets: those interfaces get handles of their own.
        assert!(!user_filter_fits(Some("vlan and tcp")));
        assert!(!user_filter_fits(Some("ether host 02:00:00:00:00:01")));
    }

    #[test]
    fn the_interface_index_is_read_from_the_cooked_header() {
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&0x0800u16.to_be_bytes());
        sll2[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(interface_id(&sll2), Some(9 | IFINDEX_ID));
        assert_eq!(interface_id(&sll2[..6]), None);
    }
}
