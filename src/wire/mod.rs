//! The network half of trawl: capture, decoding, reassembly, flows and protocol analyzers.
//! One packet source feeds one `Engine`, which removes duplicate copies, then hands each decoded
//! packet to the flow table and the protocol analyzers it was configured with (capture time).
//! The input types that drive it (`flows`, `http`, `pcap_file`) are in `src/inputs/packet.rs`.
//!
//! # Layout
//! - `capture`: live interfaces and pcap files, on their own threads.
//! - `decode`: link layers, IP, transports.  `tunnel`: VXLAN, Geneve, GRE, ERSPAN, Teredo,
//!   IP-in-IP.  `addr`: addresses.  `dedup`: copies seen twice.  `defrag`: IP fragments.
//! - `merge`: the packets of several interfaces back in capture-time order.
//! - `flows`: the flow table.  `tcp`: per-direction reassembly.  `community_id`: flow hashes.
//! - `analyzer`: the trait every protocol analyzer implements.  `sessions`: the driver
//!   under them (connection table, reassembly, UDP flows, timeouts, dispatch).
//! - `http`: parser, transaction pairing, RED metrics and the service map.  `dns`: DNS
//!   over UDP and TCP.  `tls`: handshakes, JA3/JA4.  `redis`: RESP2/RESP3.  `pgsql`:
//!   PostgreSQL's frontend/backend protocol.  `mysql`: MySQL/MariaDB.  `http2`: HTTP/2 and
//!   gRPC.  `sql` (statement splitting and redaction) and `sql_event` (the `db` fields) are
//!   shared by `pgsql` and `mysql`.
//! - `section`: a protocol's config section (the connection settings all share) and
//!   `ProtocolConfig`, what a protocol's folder tells about itself.  `registry`: the
//!   registered protocols, and `Protocols`, those a packet input runs.  A protocol is
//!   registered by one line in `register` below (beside its `pub mod` line).
//! - `pcapfile`: classic pcap files read without libpcap's copies; `pcapng`: pcapng files.
//! - `out`: events for pipelines, or JSON lines straight into a buffer (`trawl pcap`).

pub mod addr;
pub mod analyzer;
pub mod capture;
pub mod community_id;
pub mod decode;
pub mod dedup;
pub mod defrag;
pub mod dns;
pub mod doh;
pub mod flows;
pub mod http;
pub mod http2;
pub mod merge;
pub mod mysql;
pub mod out;
pub mod pcapfile;
pub mod pcapng;
pub mod pgsql;
pub mod redis;
pub mod registry;
pub mod section;
pub mod sessions;
pub mod sql;
pub mod sql_event;
pub mod tcp;
pub mod tls;
pub mod tunnel;

use crate::event::Value;
use crate::telemetry::metrics::{escape_label, Collector};
use chrono::{DateTime, TimeZone, Utc};
use dedup::Dedup;
use flows::{FlowTable, FlowsConfig};
use http::metrics::ServiceMap;
use out::Out;
use registry::Protocols;
use sessions::Sessions;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every protocol trawl decodes, in the order they claim a connection by its content: the
/// one place a protocol is registered. Its config section under `protocols:`, its `trawl pcap`
/// options, its analyzer, ports, content recognition and metrics all come from its config
/// type (`section::ProtocolConfig`) and the analyzer it builds, in its own folder.
pub fn register(r: &mut impl registry::Registry) {
    // Before HTTP/1.x: its content check claims only the HTTP/2 preface and h2c upgrades,
    // which HTTP/1.x would take for requests.
    r.protocol::<http2::Http2Config>();
    r.protocol::<http::HttpConfig>();
    r.protocol::<tls::TlsConfig>();
    r.protocol::<redis::RedisConfig>();
    r.protocol::<pgsql::PgsqlConfig>();
    r.protocol::<mysql::MysqlConfig>();
    r.protocol::<dns::DnsConfig>();
}

/// Capture time (ns since the epoch) as a timestamp.
pub fn ns_to_time(ns: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(ns)
}

/// Counters of one packet input, published on `/metrics` with an `input` label.
#[derive(Default)]
pub struct Stats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub decode_errors: AtomicU64,
    pub not_ip: AtomicU64,
    pub duplicates: AtomicU64,
    pub flows_active: AtomicU64,
    pub flows_untracked: AtomicU64,
    /// Per protocol analyzer (`Stats::protocol`), in registration order.
    pub protocols: Mutex<Vec<Arc<ProtocolStats>>>,
    pub tcp_gaps: AtomicU64,
    /// Packets trawl itself dropped because the analyzer fell behind the capture threads.
    pub capture_dropped: AtomicU64,
    /// Packets that reached the analyzer after later packets of other interfaces had been
    /// analyzed (an interface held back longer than the merge waits): analyzed out of order.
    pub capture_late: AtomicU64,
    /// Capture files that ended in a truncated or corrupt record.
    pub file_errors: AtomicU64,
    /// Times an interface could not be opened (down, gone, not permitted): once per interface
    /// until it opens again, as logged.
    pub interface_errors: AtomicU64,
    /// Per interface: (name, received, kernel dropped, interface dropped) from pcap_stats.
    pub interfaces: Mutex<Vec<(String, u64, u64, u64)>>,
    /// IP fragment reassembly.
    pub fragments: defrag::FragmentStats,
}

/// Counters of one protocol analyzer of one input: `trawl_packet_<name>_*`.
#[derive(Debug)]
pub struct ProtocolStats {
    pub name: &'static str,
    /// Connections (and UDP flows) followed now.
    pub connections: AtomicU64,
    /// Connections not followed because the protocol's table was full.
    pub untracked: AtomicU64,
    /// Messages that could not be parsed.
    pub parse_errors: AtomicU64,
    /// The protocol's own counters (`Protocol::counters`), in its order.
    pub named: Vec<(&'static analyzer::Counter, AtomicU64)>,
}

impl ProtocolStats {
    pub(crate) fn new(name: &'static str, counters: &'static [analyzer::Counter]) -> ProtocolStats {
        ProtocolStats {
            name,
            connections: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            named: counters
                .iter()
                .take(analyzer::MAX_COUNTERS)
                .map(|c| (c, AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl Stats {
    /// The counters of protocol `name` (with its own `counters`), created on first use.
    pub fn protocol(
        &self,
        name: &'static str,
        counters: &'static [analyzer::Counter],
    ) -> Arc<ProtocolStats> {
        let Ok(mut v) = self.protocols.lock() else {
            return Arc::new(ProtocolStats::new(name, counters));
        };
        if let Some(p) = v.iter().find(|p| p.name == name) {
            return p.clone();
        }
        let p = Arc::new(ProtocolStats::new(name, counters));
        v.push(p.clone());
        p
    }

    pub fn set_interface(&self, name: &str, received: u64, dropped: u64, if_dropped: u64) {
        if let Ok(mut v) = self.interfaces.lock() {
            match v.iter_mut().find(|e| e.0 == name) {
                Some(e) => {
                    // pcap's counters restart when an interface is reopened: keep the totals.
                    e.1 = e.1.max(received);
                    e.2 = e.2.max(dropped);
                    e.3 = e.3.max(if_dropped);
                }
                None => v.push((name.to_owned(), received, dropped, if_dropped)),
            }
        }
    }
}

/// Renders one input's `Stats`.
pub struct StatsCollector {
    pub input: String,
    pub stats: Arc<Stats>,
}

impl Collector for StatsCollector {
    fn render(&self, out: &mut String) {
        let s = &self.stats;
        let input = escape_label(&self.input);
        let families: [(&str, &str, &AtomicU64); 12] = [
            (
                "trawl_packet_packets_total",
                "Packets captured.",
                &s.packets,
            ),
            ("trawl_packet_bytes_total", "Bytes captured.", &s.bytes),
            (
                "trawl_packet_decode_errors_total",
                "Packets that could not be decoded (truncated, malformed).",
                &s.decode_errors,
            ),
            (
                "trawl_packet_not_ip_total",
                "Frames skipped because they carry no IP (ARP, LLDP...).",
                &s.not_ip,
            ),
            (
                "trawl_packet_duplicates_total",
                "Copies of a packet already seen (several interfaces, tunnels) dropped.",
                &s.duplicates,
            ),
            (
                "trawl_packet_flows_active",
                "Flows in the flow table.",
                &s.flows_active,
            ),
            (
                "trawl_packet_flows_untracked_total",
                "Flows not tracked because the table was full.",
                &s.flows_untracked,
            ),
            (
                "trawl_packet_tcp_gaps_total",
                "Holes in TCP streams (bytes never captured).",
                &s.tcp_gaps,
            ),
            (
                "trawl_capture_dropped_total",
                "Packets trawl dropped because its analyzer fell behind.",
                &s.capture_dropped,
            ),
            (
                "trawl_capture_late_packets_total",
                "Packets analyzed out of capture-time order: their interface delivered them after later packets of other interfaces were analyzed.",
                &s.capture_late,
            ),
            (
                "trawl_capture_file_errors_total",
                "Capture files that ended in a truncated or corrupt record.",
                &s.file_errors,
            ),
            (
                "trawl_capture_interface_errors_total",
                "Interfaces that could not be opened (down, gone, not permitted), once per interface until it opens.",
                &s.interface_errors,
            ),
        ];
        for (name, help, v) in families {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{input=\"{input}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.render_protocols(out, &input);
        s.fragments.render(out, &input);
        let ifs = s.interfaces.lock().map(|v| v.clone()).unwrap_or_default();
        let _ = writeln!(out, "# HELP trawl_capture_kernel_received_total Packets the kernel passed to the capture (pcap_stats).\n# TYPE trawl_capture_kernel_received_total counter");
        for (n, r, _, _) in &ifs {
            let _ = writeln!(
                out,
                "trawl_capture_kernel_received_total{{input=\"{input}\",interface=\"{}\"}} {r}",
                escape_label(n)
            );
        }
        let _ = writeln!(out, "# HELP trawl_capture_kernel_dropped_total Packets the kernel dropped for lack of buffer room (pcap_stats).\n# TYPE trawl_capture_kernel_dropped_total counter");
        for (n, _, d, _) in &ifs {
            let _ = writeln!(
                out,
                "trawl_capture_kernel_dropped_total{{input=\"{input}\",interface=\"{}\"}} {d}",
                escape_label(n)
            );
        }
        let _ = writeln!(out, "# HELP trawl_capture_interface_dropped_total Packets the interface or driver dropped (pcap_stats).\n# TYPE trawl_capture_interface_dropped_total counter");
        for (n, _, _, d) in &ifs {
            let _ = writeln!(
                out,
                "trawl_capture_interface_dropped_total{{input=\"{input}\",interface=\"{}\"}} {d}",
                escape_label(n)
            );
        }
    }
}

impl StatsCollector {
    /// `trawl_packet_<protocol>_{connections,untracked_total,parse_errors_total}` of each
    /// protocol the input follows. HTTP's are always written (as before the analyzer trait,
    /// zero on an input without HTTP), so that every input has them.
    fn render_protocols(&self, out: &mut String, input: &str) {
        let mut protocols = self
            .stats
            .protocols
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if !protocols.iter().any(|p| p.name == "http") {
            protocols.insert(0, Arc::new(ProtocolStats::new("http", &[])));
        }
        for p in protocols {
            let (name, upper) = (p.name, p.name.to_ascii_uppercase());
            for (family, kind, help, v) in [
                (
                    "connections",
                    "gauge",
                    format!("Connections followed by the {upper} analyzer."),
                    &p.connections,
                ),
                (
                    "untracked_total",
                    "counter",
                    "Connections not followed because the table was full.".to_owned(),
                    &p.untracked,
                ),
                (
                    "parse_errors_total",
                    "counter",
                    format!("{upper} messages that could not be parsed (resynchronised)."),
                    &p.parse_errors,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP trawl_packet_{name}_{family} {help}\n# TYPE trawl_packet_{name}_{family} {kind}\ntrawl_packet_{name}_{family}{{input=\"{input}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
            for (c, v) in &p.named {
                let family = format!("trawl_packet_{name}_{}_total", c.name);
                let _ = writeln!(
                    out,
                    "# HELP {family} {}\n# TYPE {family} counter\n{family}{{input=\"{input}\"}} {}",
                    c.help,
                    v.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// What an engine analyzes.
#[derive(Clone, Debug)]
pub struct Analyzers {
    pub flows: Option<FlowsConfig>,
    /// The protocol analyzers (`registry::Protocols`; protocols are registered in `register`).
    pub protocols: Protocols,
    /// Copies of a packet within this window are dropped; `None` keeps every packet.
    pub dedup_window: Option<std::time::Duration>,
    /// Decoding settings (which UDP ports carry VXLAN).
    pub decoder: decode::Decoder,
    /// The VLAN id is part of the flow and connection key (and of what makes two packets
    /// copies); false: one conversation whatever its packets' tags (`key_by_vlan`).
    pub key_by_vlan: bool,
    /// The tunnel's VNI, key or session (or endpoints) is part of the key too, and of what
    /// makes two packets copies (`key_by_tunnel`; `flows::tunnel_scope` says which tunnels).
    pub key_by_tunnel: bool,
}

impl Default for Analyzers {
    fn default() -> Self {
        Analyzers {
            flows: None,
            protocols: Protocols::default(),
            dedup_window: None,
            decoder: decode::Decoder::default(),
            key_by_vlan: true,
            key_by_tunnel: false,
        }
    }
}

/// Decodes packets and runs the analyzers over them; events accumulate in `events`.
pub struct Engine {
    decoder: decode::Decoder,
    /// `Analyzers::key_by_vlan` and `key_by_tunnel`.
    key_by: flows::KeyBy,
    stats: Arc<Stats>,
    dedup: Option<Dedup>,
    /// IP fragments waiting for the rest of their datagram.
    defrag: defrag::Defrag,
    /// What `defrag` is done with and the analyzers have not had yet.
    defragged: Vec<defrag::Done>,
    flows: Option<FlowTable>,
    /// The protocol analyzers (HTTP...) and their connections.
    sessions: Sessions,
    map: Option<Arc<ServiceMap>>,
    /// Finished TCP flows go to the service map (the `flows` analyzer's `service_map`).
    graph_tcp: bool,
    /// What the analyzers reported and nobody has taken yet.
    pub out: Out,
    /// Latest capture time seen.
    now_ns: i64,
    decode_error_logged: bool,
    input: Arc<str>,
    /// Packets and bytes not yet added to `stats`: two atomic adds per packet were a visible
    /// share of decoding a capture, so they are published in batches and at every tick.
    unpublished: (u64, u64),
    /// Between the first and the last `finish_batch`.
    finishing: bool,
}

/// Flows (or connections) reported per `finish_batch`: about what `trawl pcap` writes per
/// batch of packets.
const FINISH_BATCH: usize = 1024;

impl Engine {
    pub fn new(
        input: Arc<str>,
        analyzers: Analyzers,
        stats: Arc<Stats>,
        map: Option<Arc<ServiceMap>>,
    ) -> Engine {
        let protocols = analyzers.protocols.open();
        let key_by = flows::KeyBy {
            vlan: analyzers.key_by_vlan,
            tunnel: analyzers.key_by_tunnel,
        };
        Engine {
            graph_tcp: analyzers.flows.as_ref().is_some_and(|f| f.service_map),
            decoder: analyzers.decoder,
            key_by,
            dedup: analyzers
                .dedup_window
                .filter(|w| !w.is_zero())
                .map(|w| Dedup::new(w, key_by)),
            defrag: defrag::Defrag::default().keyed_by_tunnel(key_by.tunnel),
            defragged: Vec::new(),
            flows: analyzers
                .flows
                .map(|c| FlowTable::new(c, key_by, input.clone(), stats.clone())),
            sessions: Sessions::new(protocols, input.clone(), stats.clone(), map.clone()),
            map,
            stats,
            out: Out::Events(Vec::new()),
            now_ns: i64::MIN,
            decode_error_logged: false,
            input,
            unpublished: (0, 0),
            finishing: false,
        }
    }

    /// One captured frame of link type `link`, captured at `ts_ns`, from a capture that does
    /// not tell interfaces apart (a file, `any`).
    pub fn packet(&mut self, link: i32, ts_ns: i64, data: &[u8]) {
        self.packet_on(None, link, ts_ns, data)
    }

    /// One frame captured on `interface` (an id of the capture's choosing): a repeat on the
    /// interface that saw a packet first is a new packet, not a copy.
    pub fn packet_on(&mut self, interface: Option<u32>, link: i32, ts_ns: i64, data: &[u8]) {
        self.unpublished.0 += 1;
        self.unpublished.1 += data.len() as u64;
        if self.unpublished.0 >= 4096 {
            self.publish();
        }
        let p = match self.decoder.decode(link, data) {
            Ok(p) => p,
            Err(decode::DecodeError::NotIp) => {
                self.stats.not_ip.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                if !self.decode_error_logged {
                    self.decode_error_logged = true;
                    tracing::warn!(input = %self.input, error = %e, len = data.len(), "undecodable packet skipped (logged once; counted in trawl_packet_decode_errors_total)");
                }
                return;
            }
        };
        if let Some(d) = &mut self.dedup {
            if d.is_duplicate(&p, ts_ns, interface) {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if ts_ns > self.now_ns {
            self.now_ns = ts_ns;
        }
        let before = self.out.pending();
        if let Some(f) = &mut self.flows {
            // The packet on the wire, when it carried a tunnel over UDP: the outer flow's.
            f.outer(p.tunnel.as_deref(), ts_ns, &mut self.out);
        }
        if p.fragment.is_some() {
            self.fragment(&p, ts_ns);
        } else {
            let key = flows::FlowKey::of(&p, self.key_by);
            let mut hash = flows::KeyHash::default();
            let id = match &mut self.flows {
                Some(f) => f.packet(&p, key, &mut hash, ts_ns, &mut self.out),
                None => None,
            };
            if !self.sessions.is_empty() {
                self.sessions
                    .packet(&p, key, &mut hash, id, ts_ns, &mut self.out);
            }
        }
        self.graph_flows(before);
        self.sweep(self.now_ns);
    }

    fn publish(&mut self) {
        let (packets, bytes) = std::mem::take(&mut self.unpublished);
        self.stats.packets.fetch_add(packets, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Publishes the packet counters and expires flows and transactions as of `now_ns`
    /// (capture time, or wall time when idle).
    pub fn tick(&mut self, now_ns: i64) {
        self.publish();
        self.sweep(now_ns);
    }

    /// Inlined: every packet asks, and nearly always finds nothing to do (the sweeps
    /// themselves are out of line).
    #[inline(always)]
    fn sweep(&mut self, now_ns: i64) {
        let before = self.out.pending();
        self.defrag
            .expire(now_ns, &self.stats.fragments, &mut self.defragged);
        self.defragmented();
        if let Some(f) = &mut self.flows {
            f.sweep(now_ns, &mut self.out);
        }
        self.sessions.sweep(now_ns, &mut self.out);
        self.graph_flows(before);
    }

    /// End of the capture: every open flow and pending transaction is reported.
    pub fn finish(&mut self) {
        while self.finish_batch() {}
    }

    /// End of the capture, `FINISH_BATCH` flows or connections at a time: true while some
    /// remain, and the caller takes `out` before the next call. Reported all at once, a full
    /// flow table made its whole size again in events.
    pub fn finish_batch(&mut self) -> bool {
        let before = self.out.pending();
        if !self.finishing {
            self.finishing = true;
            self.publish();
            self.defrag
                .finish(&self.stats.fragments, &mut self.defragged);
            self.defragmented();
        }
        let flows_left = match &mut self.flows {
            Some(f) => f.flush_batch(FINISH_BATCH, &mut self.out),
            None => false,
        };
        let more = flows_left || self.sessions.flush_batch(FINISH_BATCH, &mut self.out);
        self.graph_flows(before);
        if !more {
            self.finishing = false;
        }
        more
    }

    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    /// Final TCP flows feed the service map's connection counts (HTTP or not). Inlined:
    /// every packet asks, and nearly always there is no map.
    #[inline(always)]
    fn graph_flows(&self, from: usize) {
        if let Some(map) = self.map.as_ref().filter(|_| self.graph_tcp) {
            self.graph_flows_into(map, from);
        }
    }

    fn graph_flows_into(&self, map: &ServiceMap, from: usize) {
        for e in self.out.events().get(from..).unwrap_or(&[]) {
            if e.get("event.dataset").and_then(Value::as_str) != Some("flow")
                || e.get("flow.final") != Some(&Value::Bool(true))
                || e.get("network.transport").and_then(Value::as_str) != Some("tcp")
            {
                continue;
            }
            let (Some(c), Some(s), Some(port)) = (
                e.get("source.ip").and_then(Value::as_str),
                e.get("destination.ip").and_then(Value::as_str),
                e.get("destination.port").and_then(Value::as_i64),
            ) else {
                continue;
            };
            let server = if s.contains(':') {
                format!("[{s}]:{port}")
            } else {
                format!("{s}:{port}")
            };
            let bytes = e
                .get("network.bytes")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0) as u64;
            map.record_flow(c, &server, bytes);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// The shared suricata-verify captures: `TRAWL_SHARED_DIR`, or `shared/` beside the repository.
    pub(crate) fn suricata_captures() -> std::path::PathBuf {
        [
            std::env::var("TRAWL_SHARED_DIR")
                .ok()
                .map(std::path::PathBuf::from),
            Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
            Some(std::path::PathBuf::from("/work/shared")),
        ]
        .into_iter()
        .flatten()
        .map(|d| d.join("data/pcaps/suricata-verify"))
        .find(|d| d.is_dir())
        .expect("shared/data/pcaps/suricata-verify not found: set TRAWL_SHARED_DIR")
    }

    use super::*;
    use decode::tests::eth_tcp;

    /// A finished TCP flow is an edge of the service map unless the flows analyzer says
    /// `service_map: false`.
    #[test]
    fn tcp_flows_feed_the_service_map_by_option() {
        for on in [true, false] {
            let analyzers = Analyzers {
                flows: Some(FlowsConfig {
                    service_map: on,
                    ..FlowsConfig::default()
                }),
                dedup_window: None,
                ..Default::default()
            };
            let map = Arc::new(ServiceMap::new(10));
            let mut engine = Engine::new(
                "t".into(),
                analyzers,
                Arc::new(Stats::default()),
                Some(map.clone()),
            );
            let syn = eth_tcp(
                [10, 0, 0, 1],
                4000,
                [10, 0, 0, 2],
                5432,
                1,
                0,
                decode::tcp_flags::SYN,
                b"",
            );
            engine.packet(decode::linktype::ETHERNET, 1_000, &syn);
            engine.finish();
            let edges = map.edges(None);
            assert_eq!(edges.len(), on as usize, "service_map: {on}");
            if on {
                assert_eq!(edges[0].0, ("10.0.0.1".into(), "10.0.0.2".into()));
                assert_eq!(edges[0].1.connections, 1);
                assert_eq!(edges[0].1.requests, 0);
            }
        }
    }

    /// The same packet seen on a pod's veth and inside the node's VXLAN tunnel counts once.
    #[test]
    fn a_packet_inside_and_outside_a_tunnel_counts_once() {
        let analyzers = Analyzers {
            flows: Some(FlowsConfig::default()),
            dedup_window: Some(std::time::Duration::from_millis(100)),
            ..Default::default()
        };
        let stats = Arc::new(Stats::default());
        let mut engine = Engine::new("t".into(), analyzers, stats.clone(), None);
        let inner = eth_tcp(
            [10, 244, 0, 5],
            5555,
            [10, 244, 1, 7],
            80,
            1,
            2,
            decode::tcp_flags::ACK,
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let outer = decode::tests::vxlan_frame(&inner, 4789, 9);
        engine.packet(decode::linktype::ETHERNET, 1_000, &inner);
        engine.packet(decode::linktype::ETHERNET, 2_000, &outer);
        engine.finish();
        assert_eq!(stats.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(engine.out.events().len(), 1);
        assert_eq!(
            engine.out.events()[0].get("source.packets"),
            Some(&Value::Int(1))
        );
    }
}
