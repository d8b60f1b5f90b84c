//! Packet sources, on their own threads (never on the async runtime): capture files read in
//! order, and live capture on interfaces matched by name, glob or `any`, re-listed every
//! `refresh_interfaces`. Several interfaces share one `any` socket filtered by ifindex
//! (`shared`) unless a handle each is needed; each handle has a capture thread that hands
//! blocks of packets to the one analyzer thread over a bounded queue. When the analyzer falls
//! behind, a thread waits for room up to `ANALYZER_WAIT` (the kernel ring filling meanwhile),
//! then drops the block and counts it, since a live capture cannot pause. The analyzer merges
//! the handles back into capture-time order (`merge`) before decoding.

mod file;
mod kernel_counts;
mod queue;
mod shared;

use file::finish;
pub use file::{read_file, FileSummary};
use kernel_counts::{KernelCounts, KERNEL_DROP_QUIET};
use queue::{BlockQueue, SendError};

use crate::capabilities::{Capability, NET_RAW_HINT};
use crate::config::{ByteSize, Duration};
use crate::wire::merge::Merge;
use crate::wire::{Engine, Stats};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Live capture settings (the `capture:` section of the `flows` and `http` inputs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interface names, globs (`veth*`, `cali*`, `lxc*`) or `any`.
    #[serde(default = "default_interfaces")]
    pub interfaces: Vec<String>,
    /// A BPF filter (tcpdump syntax) applied in the kernel.
    #[serde(default)]
    pub bpf_filter: Option<String>,
    /// Most bytes kept of each packet.
    #[serde(default = "default_snaplen")]
    pub snaplen: ByteSize,
    /// Kernel buffer of the whole capture, shared by its interfaces (see `ring_bytes`).
    #[serde(default = "default_buffer")]
    pub buffer_size: ByteSize,
    /// Put interfaces in promiscuous mode.
    #[serde(default)]
    pub promiscuous: bool,
    /// How often the interface list is matched again (new interfaces opened, vanished released).
    #[serde(default = "default_refresh")]
    pub refresh_interfaces: Duration,
    /// Copies of a packet seen within this window (on several interfaces, or inside and outside
    /// a tunnel) are counted once; `0s` keeps every copy.
    #[serde(default = "default_dedup")]
    pub dedup_window: Duration,
    /// UDP destination ports whose packets are VXLAN (decapsulated; flows and HTTP are the
    /// inner packet's).
    #[serde(default = "default_vxlan_ports")]
    pub vxlan_ports: Vec<u16>,
    /// Flows and connections are keyed by VLAN id besides the 5-tuple; false leaves it out,
    /// for mirror ports that tag one direction only.
    #[serde(default = "default_key_by_vlan")]
    pub key_by_vlan: bool,
    /// Flows and connections are keyed by the tunnel's VNI, GRE key or ERSPAN session (or its
    /// endpoints) besides the 5-tuple: for overlays whose tenants reuse addresses. Off by
    /// default: on a node, one packet is seen plain on a veth and tunnelled on the uplink.
    #[serde(default)]
    pub key_by_tunnel: bool,
    /// About how much memory the events of this capture may hold until every output has
    /// settled them (estimated per event); beyond it a batch waits up to 1 s for room, then is
    /// dropped and counted, as when the pipeline is full.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: ByteSize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: default_interfaces(),
            bpf_filter: None,
            snaplen: default_snaplen(),
            buffer_size: default_buffer(),
            promiscuous: false,
            refresh_interfaces: default_refresh(),
            dedup_window: default_dedup(),
            vxlan_ports: default_vxlan_ports(),
            key_by_vlan: default_key_by_vlan(),
            key_by_tunnel: false,
            max_in_flight: default_max_in_flight(),
        }
    }
}

fn default_interfaces() -> Vec<String> {
    vec!["any".into()]
}
fn default_snaplen() -> ByteSize {
    // tcpdump's default: whole packets even on `lo`, whose MTU is 64 KiB.
    ByteSize(262144)
}
fn default_buffer() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_max_in_flight() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_refresh() -> Duration {
    Duration::from_secs(10)
}
pub(crate) fn default_key_by_vlan() -> bool {
    true
}
pub(crate) fn default_vxlan_ports() -> Vec<u16> {
    super::decode::VXLAN_PORTS.to_vec()
}
fn default_dedup() -> Duration {
    Duration::from_millis(100)
}

// `timeval` fields are not i64 on every target.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn ts_ns(h: &pcap::PacketHeader, nanos: bool) -> i64 {
    let frac = h.ts.tv_usec as i64;
    (h.ts.tv_sec as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(if nanos { frac } else { frac * 1000 })
}

/// Packets captured on one interface, copied into one buffer; without packets, a heartbeat.
pub struct Block {
    pub link: i32,
    /// The capture thread's interface id.
    pub interface: u32,
    /// The interface will deliver nothing captured before this (ns): its last packet, or the
    /// wall clock less what the kernel may still hold back when the interface is idle.
    pub complete_to: i64,
    pub data: Vec<u8>,
    /// (capture time ns, offset, length) of each packet in `data`.
    pub packets: Vec<(i64, u32, u32)>,
}

const BLOCK_PACKETS: usize = 512;
const BLOCK_BYTES: usize = 256 * 1024;
// At most QUEUE_BLOCKS * BLOCK_BYTES (4 MiB) wait for the analyzer, as many again in the pool:
// memory stays bounded. Bursts beyond wait in the kernel's ring (`buffer_size`).
const QUEUE_BLOCKS: usize = 16;
// At most this much waits in the merge for a late interface; past it, order gives way.
const MERGE_BYTES: usize = 16 << 20;
/// Least kernel ring given to one interface of a capture shared by many: libpcap's own default
/// (what tcpdump captures with). Less drops bursts: `lo` shows every packet twice to the ring
/// (out and in), and a veth hands on 64 KiB GSO segments, so a 1 MiB ring holds 8 of them.
const MIN_RING_BYTES: u64 = 2 << 20;
/// libpcap's read timeout: TPACKET_V3 hands a kernel block on once full or this old.
const READ_TIMEOUT_MS: i32 = 50;
/// How long after its capture time a packet may still sit in the kernel: a block retires
/// within two timer periods, then the thread wakes.
const KERNEL_HOLD_NS: i64 = (2 * READ_TIMEOUT_MS as i64 + 50) * 1_000_000;

/// `veth*`, `cali?x`: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| rec(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && rec(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

/// The interface names `patterns` select among `available`.
pub fn select_interfaces(patterns: &[String], available: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        if p == "any" || !p.contains(['*', '?']) {
            if !out.contains(p) {
                out.push(p.clone());
            }
            continue;
        }
        for a in available {
            if glob_match(p, a) && !out.contains(a) {
                out.push(a.clone());
            }
        }
    }
    out
}

struct Worker {
    id: u32,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Live capture on a changing set of interfaces; `run` drives `engine` on the calling thread.
pub struct Live {
    cfg: CaptureConfig,
    input: Arc<str>,
    stats: Arc<Stats>,
    /// The input's: marked failed (`/health` 503) while no wanted interface can be captured.
    metrics: Arc<crate::telemetry::metrics::ComponentMetrics>,
}

impl Live {
    pub fn new(
        cfg: CaptureConfig,
        input: Arc<str>,
        stats: Arc<Stats>,
        metrics: Arc<crate::telemetry::metrics::ComponentMetrics>,
    ) -> Live {
        Live {
            cfg,
            input,
            stats,
            metrics,
        }
    }

    /// Captures until `stop` is set; `flush` receives the engine whenever it holds events
    /// (false: the pipeline is gone). Interfaces that cannot be opened are logged once and
    /// skipped; trawl keeps running without them.
    pub fn run(
        &self,
        engine: &mut Engine,
        stop: &AtomicBool,
        flush: &mut dyn FnMut(&mut Engine) -> bool,
    ) {
        // The image's binary holds NET_RAW as permitted only: effective on this thread, which
        // opens the sockets, and on the capture threads it starts; nowhere else in trawl.
        match crate::capabilities::raise_net_raw() {
            Capability::Effective | Capability::Raised => {}
            Capability::Missing => {
                tracing::error!(input = %self.input, "{NET_RAW_HINT}: this process does not have it, so no interface can be opened")
            }
            Capability::Unknown(e) => {
                tracing::warn!(input = %self.input, error = %e, "cannot raise CAP_NET_RAW; opening the interfaces anyway")
            }
        }
        let tx: Arc<BlockQueue<Block>> = Arc::new(BlockQueue::new(QUEUE_BLOCKS));
        let _close = queue::CloseOnDrop(&tx);
        let pool: Arc<Mutex<Vec<Block>>> = Arc::new(Mutex::new(Vec::new()));
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut logged: HashSet<String> = HashSet::new();
        let refresh = self
            .cfg
            .refresh_interfaces
            .positive()
            .unwrap_or(std::time::Duration::from_secs(10));
        let mut next_refresh = std::time::Instant::now();
        let mut last_refresh = next_refresh;
        let mut merge = Merge::new();
        let mut ids = Ids::default();
        let mut shared = self.shared_mode();
        let mut members = shared::Members::default();
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // A capture thread that ended (its interface deleted or down) would hold every
            // other interface's packets in the merge until the next refresh: release it now
            // (at most once a second, should an interface keep failing as soon as opened).
            if workers.values().any(|w| w.handle.is_finished()) {
                next_refresh = next_refresh.min(last_refresh + std::time::Duration::from_secs(1));
            }
            if std::time::Instant::now() >= next_refresh {
                last_refresh = std::time::Instant::now();
                next_refresh = last_refresh + refresh;
                shared = shared
                    && self.refresh_shared(
                        &mut workers,
                        &mut members,
                        &mut logged,
                        &tx,
                        &pool,
                        &mut merge,
                        &mut ids,
                    );
                if !shared {
                    self.refresh(&mut workers, &mut logged, &tx, &pool, &mut merge, &mut ids);
                }
                // Every wanted interface has its handle open (or failed, which makes the input
                // failed): packets are kept by the kernel from now on.
                self.metrics.started();
            }
            if shared {
                self.shared_applied(&mut members);
            }
            if let Some(b) = tx.recv_timeout(std::time::Duration::from_millis(100)) {
                self.analyze(engine, b, &pool, &mut merge, &ids, false);
                // Drain what is queued without waiting.
                while let Some(b) = tx.try_recv() {
                    self.analyze(engine, b, &pool, &mut merge, &ids, false);
                    if engine.out.pending() >= 1024 {
                        break;
                    }
                }
            }
            // Capture time up to which everything has been analyzed; the wall clock when no
            // interface is open.
            let now = merge.complete_to().unwrap_or_else(wall_ns);
            engine.tick(now.max(engine.now_ns()));
            if engine.out.pending() > 0 && !flush(engine) {
                break;
            }
        }
        // Each capture thread hands on the block it holds as it stops: keep taking blocks
        // until they have all ended, or one would wait for room that never comes, and drop it.
        for w in workers.values() {
            w.stop.store(true, Ordering::Relaxed);
        }
        while workers.values().any(|w| !w.handle.is_finished()) {
            if let Some(b) = tx.recv_timeout(std::time::Duration::from_millis(10)) {
                self.analyze(engine, b, &pool, &mut merge, &ids, false);
            }
        }
        for (_, w) in workers.drain() {
            let _ = w.handle.join();
        }
        while let Some(b) = tx.try_recv() {
            self.analyze(engine, b, &pool, &mut merge, &ids, false);
        }
        self.release(engine, &pool, &mut merge, &ids, true);
        finish(engine, flush);
    }

    fn analyze(
        &self,
        engine: &mut Engine,
        b: Block,
        pool: &Mutex<Vec<Block>>,
        merge: &mut Merge,
        ids: &Ids,
        all: bool,
    ) {
        merge.push(b, &mut |b| recycle(pool, b));
        self.release(engine, pool, merge, ids, all);
    }

    fn release(
        &self,
        engine: &mut Engine,
        pool: &Mutex<Vec<Block>>,
        merge: &mut Merge,
        ids: &Ids,
        all: bool,
    ) {
        let late = merge.late;
        merge.release(
            all,
            MERGE_BYTES,
            &mut |(id, link, ts, data)| {
                // `any` sees every interface through one handle: its copies cannot be told
                // apart by interface. The shared handle's cooked header says the interface.
                let interface = if ids.shared == Some(id) {
                    shared::interface_id(data)
                } else {
                    (!ids.any.contains(&id)).then_some(id)
                };
                engine.packet_on(interface, link, ts, data)
            },
            &mut |b| recycle(pool, b),
        );
        if merge.late > late {
            self.stats
                .capture_late
                .fetch_add(merge.late - late, Ordering::Relaxed);
        }
    }

    fn refresh(
        &self,
        workers: &mut HashMap<String, Worker>,
        logged: &mut HashSet<String>,
        tx: &Arc<BlockQueue<Block>>,
        pool: &Arc<Mutex<Vec<Block>>>,
        merge: &mut Merge,
        ids: &mut Ids,
    ) {
        let available: Vec<String> = match pcap::Device::list() {
            Ok(list) => list.into_iter().map(|d| d.name).collect(),
            Err(e) => {
                if logged.insert("<list>".into()) {
                    tracing::warn!(input = %self.input, error = %e, "cannot list interfaces (logged once)");
                }
                Vec::new()
            }
        };
        let wanted = select_interfaces(&self.cfg.interfaces, &available);
        // Release interfaces that vanished, and threads that ended (interface down).
        workers.retain(|name, w| {
            let keep = (wanted.contains(name)
                && (name == "any"
                    || available.contains(name)
                    || !self.cfg.interfaces.iter().any(|p| p.contains(['*', '?']))))
                && !w.handle.is_finished();
            if !keep {
                w.stop.store(true, Ordering::Relaxed);
                merge.close(w.id);
                ids.any.retain(|a| *a != w.id);
                tracing::info!(input = %self.input, interface = %name, "interface released");
            }
            keep
        });
        // The buffer is shared by the interfaces there are, not by names that match nothing
        // yet (an interface named in the list but absent opens no ring).
        let present = wanted
            .iter()
            .filter(|n| *n == "any" || available.contains(n))
            .count();
        let mut last_error = None;
        for name in wanted.iter().cloned() {
            if workers.contains_key(&name) {
                continue;
            }
            let ring = ring_bytes(self.cfg.buffer_size.0, present);
            match self.open(&name, ring) {
                Ok(cap) => {
                    logged.remove(&name);
                    tracing::info!(input = %self.input, interface = %name, ring_bytes = ring, "capturing");
                    ids.next = ids.next.wrapping_add(1);
                    let id = ids.next;
                    merge.open(id, wall_ns());
                    if name == "any" {
                        ids.any.push(id);
                    }
                    match self.start_worker(cap, id, &name, tx, pool, None) {
                        Ok(w) => {
                            workers.insert(name, w);
                        }
                        Err(e) => {
                            merge.close(id);
                            tracing::error!(input = %self.input, interface = %name, error = %e, "cannot start a capture thread")
                        }
                    }
                }
                Err(e) => {
                    if logged.insert(name.clone()) {
                        self.stats.interface_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(input = %self.input, interface = %name, error = %e, "cannot capture on this interface; skipped, retried every refresh_interfaces (logged once)");
                    }
                    last_error = Some(format!("{name}: {e}"));
                }
            }
        }
        // Some interfaces failing is logged; none captured at all (a bad filter for this link
        // type, no permission, a name that does not exist) is an input that does nothing.
        match last_error {
            Some(why) if workers.is_empty() && !wanted.is_empty() => self
                .metrics
                .set_failed(format!("capturing on no interface ({why})")),
            _ => self.metrics.clear_failed(),
        }
    }

    /// Starts the capture thread of `cap`, known to the merge as `id`.
    fn start_worker(
        &self,
        cap: pcap::Capture<pcap::Active>,
        id: u32,
        name: &str,
        tx: &Arc<BlockQueue<Block>>,
        pool: &Arc<Mutex<Vec<Block>>>,
        orders: Option<Receiver<shared::Retarget>>,
    ) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, tx, pool, stats, input, n) = (
            stop.clone(),
            tx.clone(),
            pool.clone(),
            self.stats.clone(),
            self.input.clone(),
            name.to_owned(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("trawl-cap-{name}"))
            .spawn(move || capture_loop(cap, id, &n, &input, &s, &tx, &pool, &stats, orders))?;
        Ok(Worker { id, stop, handle })
    }

    /// Whether the wanted interfaces are captured through one shared handle (see `shared`):
    /// several names or a glob, on Linux. Promiscuous mode needs a handle per interface (`any`
    /// cannot be promiscuous), and so does a BPF filter on link-layer fields, which cooked
    /// packets do not have.
    fn shared_mode(&self) -> bool {
        let p = &self.cfg.interfaces;
        let many = p.len() > 1 || p.iter().any(|n| n.contains(['*', '?']));
        if !many || self.cfg.promiscuous || p.iter().any(|n| n == "any") {
            return false;
        }
        if !cfg!(target_os = "linux") {
            return false;
        }
        if !shared::user_filter_fits(self.cfg.bpf_filter.as_deref()) {
            tracing::info!(input = %self.input, "bpf_filter reads link-layer fields: each interface is captured on a handle of its own, each with its share of buffer_size");
            return false;
        }
        true
    }

    fn open(&self, name: &str, ring: u64) -> Result<pcap::Capture<pcap::Active>, pcap::Error> {
        let mut cap = pcap::Capture::from_device(name)?
            .promisc(self.cfg.promiscuous)
            .snaplen(self.cfg.snaplen.0.min(i32::MAX as u64) as i32)
            .buffer_size(ring.min(i32::MAX as u64) as i32)
            .timeout(READ_TIMEOUT_MS)
            .open()?
            .setnonblock()?;
        if let Some(f) = &self.cfg.bpf_filter {
            cap.filter(f, true)?;
        }
        Ok(cap)
    }
}

/// The kernel ring of one interface of a capture that wants `interfaces` of them: an equal
/// share of `buffer_size`, so that a node's forty pod veths do not each pin the buffer one
/// interface needs (the ring is kernel memory mapped into trawl, resident from the moment it is
/// opened, idle or not); never under `MIN_RING_BYTES` unless `buffer_size` itself is smaller.
/// Shares are computed when an interface is opened: ones opened before others appeared keep
/// theirs.
fn ring_bytes(buffer_size: u64, interfaces: usize) -> u64 {
    let share = buffer_size / interfaces.max(1) as u64;
    share.max(MIN_RING_BYTES.min(buffer_size))
}

/// Compiles `filter` with libpcap, as opening an interface will, without needing one.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(|e| format!("cannot check the BPF filter: {e}"))?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| format!("not a BPF filter libpcap can compile (tcpdump syntax): {e}"))
}

/// Open the interface `name` the way a live input would, to tell early whether we may.
pub fn probe(name: &str) -> Result<(), pcap::Error> {
    pcap::Capture::from_device(name)?
        .timeout(10)
        .open()
        .map(|_| ())
}

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Interface ids of one live input, for the merge and the de-duplication.
#[derive(Default)]
struct Ids {
    next: u32,
    /// Ids of `any` captures.
    any: Vec<u32>,
    /// The id of the shared handle (`shared`), whose packets say their interface.
    shared: Option<u32>,
}

fn recycle(pool: &Mutex<Vec<Block>>, mut b: Block) {
    if let Ok(mut p) = pool.lock() {
        if p.len() < QUEUE_BLOCKS {
            b.data.clear();
            b.packets.clear();
            p.push(b);
        }
    }
}

/// How long a capture thread waits for the analyzer to make room before dropping a block.
const ANALYZER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[allow(clippy::too_many_arguments)]
fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    id: u32,
    name: &str,
    input: &str,
    stop: &AtomicBool,
    tx: &Arc<BlockQueue<Block>>,
    pool: &Mutex<Vec<Block>>,
    stats: &Stats,
    orders: Option<Receiver<shared::Retarget>>,
) {
    let link = cap.get_datalink().0;
    let new_block = || {
        pool.lock()
            .ok()
            .and_then(|mut p| p.pop())
            .map(|mut b| {
                b.link = link;
                b.interface = id;
                b
            })
            .unwrap_or_else(|| Block {
                link,
                interface: id,
                complete_to: i64::MIN,
                data: Vec::with_capacity(BLOCK_BYTES),
                packets: Vec::with_capacity(BLOCK_PACKETS),
            })
    };
    let mut block = new_block();
    let mut last_stats = std::time::Instant::now();
    let mut kernel = KernelCounts::new(input, name, stats);
    let mut block_started = std::time::Instant::now();
    // Everything captured before this has been handed on (or dropped).
    let mut complete_to = i64::MIN;
    let analyzer_drop = std::cell::Cell::new(None::<std::time::Instant>);
    let send = |mut block: Block, complete_to: &mut i64, idle: bool| {
        if let Some(last) = block.packets.last() {
            *complete_to = (*complete_to).max(last.0);
        }
        if idle {
            // Nothing more to read now: what the kernel may still hold was captured lately.
            *complete_to = (*complete_to).max(wall_ns() - KERNEL_HOLD_NS);
        }
        block.complete_to = *complete_to;
        match tx.try_send(block) {
            Ok(()) => true,
            // A heartbeat that finds no room is simply not needed yet.
            Err(SendError::Full(b)) if b.packets.is_empty() => true,
            Err(SendError::Full(b)) => {
                // The analyzer is behind (a burst, or its CPU taken a moment by others): wait
                // for room, the kernel's ring holding what arrives meanwhile, rather than drop
                // packets while that ring still has space. Not cut short by `stop`: at
                // shutdown the analyzer takes every block.
                let b = match tx.send_timeout(b, ANALYZER_WAIT) {
                    Ok(()) => return true,
                    Err(SendError::Closed(_)) => return false,
                    Err(SendError::Full(b)) => b,
                };
                stats
                    .capture_dropped
                    .fetch_add(b.packets.len() as u64, Ordering::Relaxed);
                let at = std::time::Instant::now();
                let begins = analyzer_drop
                    .get()
                    .is_none_or(|t| at.duration_since(t) >= KERNEL_DROP_QUIET);
                analyzer_drop.set(Some(at));
                if begins {
                    tracing::warn!(input = %input, interface = %name, packets = b.packets.len(),
                        "the analyzer fell behind the capture: dropping this interface's packets, counted in trawl_capture_dropped_total (logged once until 10 s pass without a drop)");
                }
                true
            }
            Err(SendError::Closed(_)) => false,
        }
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&cap);
    let mut idle = false;
    while !stop.load(Ordering::Relaxed) {
        if idle {
            // Non-blocking capture: wait for the descriptor rather than spin, and wake up
            // regularly to see `stop` and to hand on a partial block.
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is a valid pollfd for the duration of the call, and nfds is 1.
            unsafe { libc::poll(&mut pfd, 1, 50) };
            idle = false;
            if let Some(o) = &orders {
                shared::apply_retargets(&mut cap, o);
            }
        }
        match cap.next_packet() {
            Ok(p) => {
                // A packet that does not fit hands the block on first: a block's buffer never
                // grows past BLOCK_BYTES (a Vec doubled once stays so, in the pool, for ever).
                if !block.packets.is_empty() && block.data.len() + p.data.len() > BLOCK_BYTES {
                    let full = std::mem::replace(&mut block, new_block());
                    if !send(full, &mut complete_to, false) {
                        return;
                    }
                }
                if block.packets.is_empty() {
                    block_started = std::time::Instant::now();
                }
                let off = block.data.len() as u32;
                block.data.extend_from_slice(p.data);
                block
                    .packets
                    .push((ts_ns(p.header, false), off, p.data.len() as u32));
                if block.packets.len() >= BLOCK_PACKETS || block.data.len() >= BLOCK_BYTES {
                    let full = std::mem::replace(&mut block, new_block());
                    if !send(full, &mut complete_to, false) {
                        return;
                    }
                }
            }
            Err(pcap::Error::TimeoutExpired) => idle = true,
            Err(e) => {
                tracing::warn!(input = %input, interface = %name, error = %e, "capture ended on this interface; it is reopened if it comes back");
                break;
            }
        }
        // Hand a partial block on once the capture pauses or it is 20 ms old, for latency; an
        // idle interface sends an empty block, so that the others' packets need not wait.
        if idle || block_started.elapsed() >= std::time::Duration::from_millis(20) {
            let full = std::mem::replace(&mut block, new_block());
            if !send(full, &mut complete_to, idle) {
                return;
            }
            block_started = std::time::Instant::now();
            // Under steady traffic the thread is never idle: changes of the interface set are
            // applied between blocks too.
            if let Some(o) = &orders {
                shared::apply_retargets(&mut cap, o);
            }
        }
        if last_stats.elapsed() >= std::time::Duration::from_secs(1) {
            last_stats = std::time::Instant::now();
            if let Ok(s) = cap.stats() {
                kernel.read(s, stats);
            }
        }
    }
    if let Ok(s) = cap.stats() {
        kernel.read(s, stats);
    }
    if !block.packets.is_empty() {
        send(block, &mut complete_to, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_share_the_buffer_down_to_libpcaps_default() {
        let mib = 1u64 << 20;
        // One interface (`any`, `eth0`) has the whole buffer, as libpcap would give it.
        assert_eq!(ring_bytes(8 * mib, 1), 8 * mib);
        assert_eq!(ring_bytes(8 * mib, 0), 8 * mib);
        assert_eq!(ring_bytes(8 * mib, 2), 4 * mib);
        assert_eq!(ring_bytes(8 * mib, 4), 2 * mib);
        // Forty pod veths: each at the floor, not 8 MiB each (320 MiB resident).
        assert_eq!(ring_bytes(8 * mib, 40), 2 * mib);
        assert_eq!(ring_bytes(160 * mib, 40), 4 * mib);
        // A buffer set below the floor is taken as asked.
        assert_eq!(ring_bytes(512 << 10, 3), 512 << 10);
    }

    #[test]
    fn globs_select_interfaces() {
        let avail: Vec<String> = ["lo", "eth0", "veth1a", "veth2b", "cali123", "tunl0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pats: Vec<String> = ["veth*", "cali*", "lxc*", "eth0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            select_interfaces(&pats, &avail),
            vec!["veth1a", "veth2b", "cali123", "eth0"]
        );
        assert_eq!(select_interfaces(&["any".into()], &avail), vec!["any"]);
        assert!(glob_match("e?h*", "eth0"));
        assert!(!glob_match("veth*", "eth0"));
    }
}
