//! Inputs: where events come from. Each input is built from its `Config` (which lives in the
//! input's own file) and then `run` with an `InputContext` until it ends or shutdown is asked.
//! Every input type is registered in `build` below, and nowhere else.

pub mod file;
pub mod journald;
pub mod lines;
pub mod multiline;
pub mod orphans;
pub mod packet;
pub mod socket;
pub mod stdin;
pub mod tee;

use crate::config::{from_node, ComponentSpec, DeError};
use crate::event::{approx_bytes, Batch, BatchAck, Event, InFlightBudget};
use crate::pipeline::channel::{BatchSender, Closed, Shutdown, TrySendError};
use crate::telemetry::metrics::ComponentMetrics;
use crate::wire::registry::Protocols;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How long an input that cannot pause (a live capture) waits for room on its own thread
/// before it drops a batch: a reload swapping the processors, or an output's short stall, is
/// absorbed meanwhile by the kernel's capture buffer (whose own drops are counted) instead of
/// costing transactions at once.
const DROP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Drops this far apart are two episodes, each logged once.
const DROP_EPISODE_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// What an input does when the pipeline is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackPressure {
    /// Wait for room: the input can pause without losing anything (files, stdin, sockets).
    Block,
    /// Drop the batch and count it: the source cannot be paused (packets, a tee'd app).
    Drop,
}

pub trait Input: Send {
    /// Produces batches into `ctx` until the source ends or `ctx.shutdown` fires.
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>>;

    /// Whether the input can be paused; decides what `InputContext::emit` does when full.
    fn back_pressure(&self) -> BackPressure {
        BackPressure::Block
    }

    /// Whether the input opens its sources only once it runs, some time after trawl answers
    /// on its monitoring address (a live capture's handles). If so, the pipeline marks it
    /// starting (`/health` 503 "starting") and the input calls `ctx.metrics.started()` once
    /// they are open or have failed.
    fn reports_started(&self) -> bool {
        false
    }

    /// The file where the input keeps its read position (file offsets, a journal cursor), if
    /// it keeps one: its folder must be writable before anything starts, or every restart
    /// would read the source again from where it began (`check_data_dir` in the CLI).
    fn state_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// What a running input is given.
pub struct InputContext {
    pub name: Arc<str>,
    pub out: BatchSender,
    pub shutdown: Shutdown,
    pub metrics: Arc<ComponentMetrics>,
    pub back_pressure: BackPressure,
    /// Most events to put in one batch.
    pub batch_size: usize,
    /// Where the input may keep state (offsets), already created.
    pub data_dir: PathBuf,
    /// How the pipeline stops, shared by every input.
    pub pipeline: Arc<PipelineStop>,
}

/// What an input may know of how the pipeline stops.
#[derive(Default)]
pub struct PipelineStop {
    /// The whole pipeline stops (a signal, every input ended, an output failed), not a reload
    /// replacing one input: batches outputs failed are read again during the drain, and what
    /// stays undelivered is the stop's to report.
    pub stopping: AtomicBool,
    /// An output failed for good: reading again what it failed is pointless.
    pub output_failed: AtomicBool,
    /// Inputs that send lines unbuilt build their events before sending them, on their own
    /// thread: set while no processor runs and an output reads fields (Kafka, Elasticsearch),
    /// which would otherwise wait for the building (see `Live::place_event_building`).
    pub build_events: AtomicBool,
}

impl PipelineStop {
    /// Whether an input should read again, during its drain, what outputs failed.
    pub fn retries_failed(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) && !self.output_failed.load(Ordering::SeqCst)
    }
}

impl InputContext {
    fn dropped(&self, batch: Batch) {
        let n = batch.len() as u64;
        self.metrics.events_dropped.fetch_add(n, Ordering::Relaxed);
        // Counted alone, a loss is silent to whoever reads the log after an outage.
        if self.metrics.drop_begins_episode(DROP_EPISODE_QUIET) {
            tracing::warn!(input = %self.name, events = n,
                "pipeline full (an output down or slower than this input, or a capture's max_in_flight reached): dropping this live input's batches, counted in trawl_events_dropped_total (logged once until 10 s pass without a drop)");
        }
        batch.ack.rejected();
    }

    /// Sends a batch downstream: waits for room (`Block`) or drops and counts (`Drop`).
    /// `Err` means the pipeline is gone (shutdown past its deadline).
    pub async fn emit(&self, batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            batch.ack.delivered();
            return Ok(());
        }
        match self.back_pressure {
            BackPressure::Block => {
                let n = batch.len() as u64;
                self.out.send(batch).await?;
                ComponentMetrics::add(&self.metrics.events_out, n);
                Ok(())
            }
            BackPressure::Drop => self.try_emit(batch),
        }
    }

    /// `emit` for inputs that run on their own threads.
    pub fn emit_blocking(&self, batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            batch.ack.delivered();
            return Ok(());
        }
        let mut batch = batch;
        self.build_events(&mut batch);
        match self.back_pressure {
            BackPressure::Block => {
                let n = batch.len() as u64;
                self.out.blocking_send(batch)?;
                ComponentMetrics::add(&self.metrics.events_out, n);
                Ok(())
            }
            // Within a drop episode nothing waits: each batch would wait its own grace. A
            // stop waits like the rest: the final flush (every open flow and transaction) is
            // larger than the queues and the outputs drain it, so dropping what finds them
            // full would lose it with every output up; an output down costs one grace.
            BackPressure::Drop if self.is_shedding() => self.try_emit(batch),
            BackPressure::Drop => self.emit_within(batch, DROP_GRACE),
        }
    }

    /// `emit_blocking` for a live input whose batches in flight are capped by `budget`: the
    /// events wait up to `DROP_GRACE` for room (none within a drop episode), else they are
    /// dropped and counted as when the pipeline is full.
    pub fn emit_within_budget(
        &self,
        events: Vec<Event>,
        budget: &Arc<InFlightBudget>,
    ) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let wait = if self.is_shedding() {
            std::time::Duration::ZERO
        } else {
            DROP_GRACE
        };
        match budget.take(approx_bytes(&events), wait) {
            Some(held) => {
                let ack = BatchAck::lost_if_failed(&self.metrics, events.len(), Some(held));
                self.emit_blocking(Batch::new(events, ack))
            }
            None => {
                self.dropped(Batch::unacked(events));
                Ok(())
            }
        }
    }

    /// `emit_blocking` that gives the batch back when the queue is still full after `every`
    /// (blocking inputs only), so that a reader on its own thread can do something while it
    /// waits (the file input keeps its lag gauges current during an outage) and send again.
    pub fn emit_blocking_for(
        &self,
        mut batch: Batch,
        every: std::time::Duration,
    ) -> Result<Option<Batch>, Closed> {
        if !matches!(self.back_pressure, BackPressure::Block) || batch.is_empty() {
            return self.emit_blocking(batch).map(|()| None);
        }
        self.build_events(&mut batch);
        let n = batch.len() as u64;
        match self.out.blocking_send_within(batch, every) {
            Ok(()) => {
                ComponentMetrics::add(&self.metrics.events_out, n);
                Ok(None)
            }
            Err(TrySendError::Full(b)) => Ok(Some(b)),
            Err(TrySendError::Closed(b)) => Err(Closed(b)),
        }
    }

    /// Builds the events of a batch of lines on the input's own thread, when the pipeline
    /// placed event building there (`Live::place_event_building`).
    fn build_events(&self, batch: &mut Batch) {
        if batch.lines().is_some() && self.pipeline.build_events.load(Ordering::Relaxed) {
            batch.events_mut();
        }
    }

    /// Queues the batch once there is room within `grace`, else drops and counts it.
    fn emit_within(&self, batch: Batch, grace: std::time::Duration) -> Result<(), Closed> {
        let n = batch.len() as u64;
        self.settle(self.out.blocking_send_within(batch, grace), n)
    }

    fn try_emit(&self, batch: Batch) -> Result<(), Closed> {
        let n = batch.len() as u64;
        self.settle(self.out.try_send(batch), n)
    }

    /// Counts a batch of `n` queued, or drops and counts it when there was no room.
    fn settle(&self, sent: Result<(), TrySendError>, n: u64) -> Result<(), Closed> {
        match sent {
            Ok(()) => {
                ComponentMetrics::add(&self.metrics.events_out, n);
                Ok(())
            }
            Err(TrySendError::Full(b)) => {
                self.dropped(b);
                Ok(())
            }
            Err(TrySendError::Closed(b)) => Err(Closed(b)),
        }
    }

    /// A `Drop` input that dropped a batch less than `DROP_EPISODE_QUIET` ago waits for no
    /// room: the grace is for a short stall, and a pipeline full past it is an episode. Each
    /// batch waiting its own grace while the outputs stay slow or down starved the capture
    /// threads, so packets were lost too (counted, but every connection then had a gap), and a
    /// batch let in now and then by the outputs made the next one wait a whole grace again.
    fn is_shedding(&self) -> bool {
        self.metrics.dropped_within(DROP_EPISODE_QUIET)
    }
}

/// What building a component may use besides its own configuration.
#[derive(Clone)]
pub struct BuildContext {
    pub data_dir: PathBuf,
    /// For components that publish metric families of their own (`Registry::register`).
    pub registry: Arc<crate::telemetry::metrics::Registry>,
    /// For components that serve an endpoint of their own on the `http` address.
    pub endpoints: crate::telemetry::server::Endpoints,
}

/// Builds an input from its spec: the one place where input types are registered.
pub fn build(spec: &ComponentSpec, ctx: &BuildContext) -> Result<Box<dyn Input>, DeError> {
    match spec.type_name.as_str() {
        _ if is_live_packet(&spec.type_name) => {
            let config = live_packet_config(spec)?;
            Ok(Box::new(packet::PacketInput::packet(
                &spec.name, config, ctx,
            )))
        }
        "stdin" => Ok(Box::new(stdin::build(spec)?)),
        "pcap_file" => {
            let config: packet::PcapFileConfig = from_node(&spec.node, &spec.path)?;
            check_vxlan_ports(&config.vxlan_ports, Some(&spec.node), spec, &spec.path)?;
            if config.flows.as_ref().is_some_and(|f| f.capture.is_some()) {
                return Err(capture_not_here(spec, "a `pcap_file` reads its `path`"));
            }
            if config.path.as_os_str().is_empty() {
                return Err(DeError::new(
                    "empty: expected the capture file to read",
                    spec.node.get("path").map_or(spec.mark, |n| n.mark),
                    &format!("{}.path", spec.path),
                ));
            }
            let input = packet::PacketInput::pcap_file(&spec.name, config, Some(ctx))
                .map_err(|why| DeError::new(why, spec.mark, &spec.path))?;
            Ok(Box::new(input))
        }
        "file" => Ok(Box::new(file::build(spec, ctx)?)),
        "socket" => Ok(Box::new(socket::build(spec)?)),
        "journald" => Ok(Box::new(journald::build(spec, &ctx.data_dir)?)),
        other => Err(unknown_type(spec, other, TYPES)),
    }
}

/// The live packet input types: `packet` and its one-section shorthands.
const LIVE_PACKET_TYPES: [&str; 8] = [
    "packet", "flows", "http", "http2", "tls", "redis", "dns", "mysql",
];

/// Whether inputs of this type capture packets live (`live_packet_config` reads them).
pub fn is_live_packet(type_name: &str) -> bool {
    LIVE_PACKET_TYPES.contains(&type_name)
}

/// A live packet input's settings as one `packet` config, whichever type wrote them (`trawl
/// pcap -c` reads a capture file with them). Not for other types.
pub fn live_packet_config(spec: &ComponentSpec) -> Result<packet::PacketConfig, DeError> {
    match spec.type_name.as_str() {
        "flows" => {
            let mut flows: crate::wire::flows::FlowsConfig = from_node(&spec.node, &spec.path)?;
            let config = packet::PacketConfig {
                capture: flows.capture.take(),
                flows: Some(flows),
                protocols: Default::default(),
            };
            check_capture(spec, config.capture.as_ref())?;
            Ok(config)
        }
        // One protocol's section with its `capture` beside it: a `packet` input with that
        // one protocol (the input types before `packet` existed).
        "http" | "tls" | "redis" | "dns" | "mysql" | "http2" => shorthand(spec),
        "packet" => {
            let config: packet::PacketConfig = from_node(&spec.node, &spec.path)?;
            check_packet(spec, &config)?;
            Ok(config)
        }
        other => Err(unknown_type(spec, other, &LIVE_PACKET_TYPES)),
    }
}

/// A shorthand packet input (`type: dns`): the protocol's section, and `capture` beside it.
fn shorthand(spec: &ComponentSpec) -> Result<packet::PacketConfig, DeError> {
    let Some(protocol) = crate::wire::registry::find(&spec.type_name) else {
        return Err(unknown_type(spec, &spec.type_name, &LIVE_PACKET_TYPES));
    };
    let mut rest = spec.node.clone();
    let mut capture = None;
    if let crate::config::NodeKind::Map(entries) = &mut rest.kind {
        if let Some(i) = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("capture"))
        {
            let node = entries.remove(i).1;
            capture = crate::wire::section::present(crate::config::de::NodeDeserializer {
                node: &node,
                path: format!("{}.capture", spec.path),
            })?;
        }
    }
    check_capture(spec, capture.as_ref())?;
    let mut config = packet::PacketConfig {
        capture,
        flows: None,
        protocols: Protocols::default(),
    };
    config.protocols.insert((protocol.read)(&rest, &spec.path)?);
    Ok(config)
}

/// `packet`: something to analyze, a capture filter libpcap compiles, no `flows.capture`.
fn check_packet(spec: &ComponentSpec, config: &packet::PacketConfig) -> Result<(), DeError> {
    if config.flows.is_none() && config.protocols.is_empty() {
        return Err(DeError::new(
            format!(
                "nothing to analyze: expected `flows:` or a protocol under `protocols:` ({})",
                crate::wire::registry::names().join(", ")
            ),
            spec.mark,
            &spec.path,
        ));
    }
    if config.flows.as_ref().is_some_and(|f| f.capture.is_some()) {
        return Err(capture_not_here(
            spec,
            "a `packet` input's `capture` is beside `flows`",
        ));
    }
    check_capture(spec, config.capture.as_ref())
}

/// `flows.capture` where the capture is set elsewhere.
fn capture_not_here(spec: &ComponentSpec, why: &str) -> DeError {
    let node = spec.node.get("flows").and_then(|f| f.get("capture"));
    DeError::new(
        format!("`flows.capture` is for a `flows` input; {why}"),
        node.map_or(spec.mark, |n| n.mark),
        &format!("{}.flows.capture", spec.path),
    )
}

/// A `capture.bpf_filter` libpcap cannot compile is an error here, not an input that captures
/// nothing once running.
/// Largest kernel capture buffer a live capture may ask for.
const MAX_CAPTURE_BUFFER: u64 = 4 << 30;

fn check_capture(
    spec: &ComponentSpec,
    capture: Option<&crate::wire::capture::CaptureConfig>,
) -> Result<(), DeError> {
    if let Some(c) = capture {
        check_vxlan_ports(
            &c.vxlan_ports,
            spec.node.get("capture"),
            spec,
            &format!("{}.capture", spec.path),
        )?;
        let at = |key: &str, why: String| {
            let node = spec.node.get("capture").and_then(|c| c.get(key));
            DeError::new(
                why,
                node.map_or(spec.mark, |n| n.mark),
                &format!("{}.capture.{key}", spec.path),
            )
        };
        if c.interfaces.is_empty() || c.interfaces.iter().any(|i| i.trim().is_empty()) {
            return Err(at(
                "interfaces",
                "empty: expected interface names or globs (`eth0`, `veth*`, `any`)".into(),
            ));
        }
        // The ring is mapped up front: a size past this is a typo that would take the node's
        // memory (100GiB mapped 2 GB and rising before the capture even started).
        if c.buffer_size.0 > MAX_CAPTURE_BUFFER {
            return Err(at(
                "buffer_size",
                format!(
                    "expected at most {} GiB for the whole capture",
                    MAX_CAPTURE_BUFFER >> 30
                ),
            ));
        }
        let in_flight = c.max_in_flight.bytes();
        if in_flight == 0 || in_flight > 4 << 30 {
            return Err(at(
                "max_in_flight",
                format!(
                    "expected from 1 byte to {} bytes, got {in_flight} bytes",
                    4u64 << 30
                ),
            ));
        }
    }
    let Some(filter) = capture.and_then(|c| c.bpf_filter.as_deref()) else {
        return Ok(());
    };
    crate::wire::capture::check_filter(filter).map_err(|why| {
        let node = spec.node.get("capture").and_then(|c| c.get("bpf_filter"));
        DeError::new(
            why,
            node.map_or(spec.mark, |n| n.mark),
            &format!("{}.capture.bpf_filter", spec.path),
        )
    })
}

/// Port 0 cannot be a UDP destination: a `vxlan_ports` holding it decapsulates nothing (above
/// 65535 is refused when the list is read). `section` is the map holding `vxlan_ports`.
fn check_vxlan_ports(
    ports: &[u16],
    section: Option<&crate::config::Node>,
    spec: &ComponentSpec,
    path: &str,
) -> Result<(), DeError> {
    let Some(i) = ports.iter().position(|p| *p == 0) else {
        return Ok(());
    };
    let list = section.and_then(|n| n.get("vxlan_ports"));
    let mark = match list.map(|l| &l.kind) {
        Some(crate::config::NodeKind::Seq(items)) => items.get(i).map(|n| n.mark),
        _ => list.map(|l| l.mark),
    };
    Err(DeError::new(
        "expected a UDP port from 1 to 65535, got 0",
        mark.unwrap_or(spec.mark),
        &format!("{path}.vxlan_ports[{i}]"),
    ))
}

/// The input types `build` knows, for error messages and docs.
pub const TYPES: &[&str] = &[
    "stdin",
    "file",
    "socket",
    "journald",
    "packet",
    "flows",
    "http",
    "tls",
    "redis",
    "mysql",
    "dns",
    "http2",
    "pcap_file",
];

pub(crate) fn unknown_type(spec: &ComponentSpec, other: &str, known: &[&str]) -> DeError {
    let type_mark = spec.node_type_mark();
    DeError::new(
        format!(
            "unknown type `{other}`, expected one of {}",
            known
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        type_mark,
        &format!("{}.type", spec.path),
    )
}

/// Refuses a line (or journal entry) limit of 0, with which every line is cut to nothing or
/// every entry skipped, or past 1 GiB as the file input does: a size that large is a typo, and
/// a sender could make trawl hold that much for one line. Said at the key's line.
pub fn check_line_limit(
    spec: &ComponentSpec,
    key: &str,
    value: crate::config::ByteSize,
) -> Result<(), DeError> {
    const MOST: u64 = 1 << 30;
    if value.bytes() == 0 || value.bytes() > MOST {
        return Err(DeError::new(
            format!(
                "expected from 1 byte to {MOST} bytes, got {} bytes",
                value.bytes()
            ),
            spec.node.get(key).map_or(spec.mark, |n| n.mark),
            &format!("{}.{key}", spec.path),
        ));
    }
    Ok(())
}

/// Lines of one input that could not be taken as they came (invalid UTF-8 replaced, a
/// `format: json` line that is no JSON object): each counted in `trawl_errors_total`, the first
/// of each kind logged once per input, however many connections or pipes it reads.
#[derive(Debug, Default)]
pub struct BadLines {
    invalid_utf8_logged: AtomicBool,
    not_json_object_logged: AtomicBool,
}

impl BadLines {
    /// One more line whose invalid UTF-8 was replaced, starting at `offset` of its stream.
    pub fn replaced(&self, ctx: &InputContext, offset: u64) {
        ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        if !self.invalid_utf8_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(input = %ctx.name, line_offset = offset,
                "invalid UTF-8 replaced with U+FFFD (logged once; counted in trawl_errors_total)");
        }
    }

    /// One more line of a `format: json` input that is no JSON object (`why`), kept whole.
    pub fn not_json_object(&self, ctx: &InputContext, offset: u64, why: &str) {
        ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        if !self.not_json_object_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(input = %ctx.name, line_offset = offset, reason = %why,
                "a line of a `format: json` input is no JSON object: kept whole as `message`, tagged _json_parse_failure (logged once per input; counted in trawl_errors_total)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::pipeline::channel::{batch_channel, shutdown_pair, BatchReceiver};
    use crate::telemetry::metrics::ComponentKind;
    use std::time::{Duration, Instant};

    /// A live capture's context, and the router's end of its queue of `capacity` batches.
    fn capture_input(capacity: usize) -> (InputContext, BatchReceiver) {
        let router = Arc::new(ComponentMetrics::new(
            ComponentKind::Processor,
            "p".into(),
            "router",
        ));
        let (out, rx) = batch_channel(capacity, router);
        let (_trigger, shutdown) = shutdown_pair();
        let ctx = InputContext {
            name: "net".into(),
            out,
            shutdown,
            metrics: Arc::new(ComponentMetrics::new(
                ComponentKind::Input,
                "net".into(),
                "http",
            )),
            back_pressure: BackPressure::Drop,
            batch_size: 16,
            data_dir: PathBuf::new(),
            pipeline: Arc::new(PipelineStop::default()),
        };
        (ctx, rx)
    }

    fn one_event() -> Batch {
        Batch::unacked(vec![Event::from_message(
            "net".into(),
            chrono::Utc::now(),
            "tx".into(),
        )])
    }

    /// A pipeline full for a moment (a reload swapping processors, an output's short stall):
    /// a capture's batch waits for the room and is not dropped; full past the grace, it is
    /// dropped and counted, and the capture goes on.
    #[test]
    fn a_capture_waits_out_a_short_stall_and_drops_past_its_grace() {
        let (ctx, mut rx) = capture_input(1);
        ctx.emit_blocking(one_event()).unwrap();
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let first = rx.blocking_recv().is_some();
            (first, rx)
        });
        ctx.emit_blocking(one_event()).unwrap();
        let (first, mut rx) = drain.join().unwrap();
        assert!(first);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 2);

        // The second batch fills the queue again; nobody reads it for longer than the grace.
        let start = Instant::now();
        ctx.emit_blocking(one_event()).unwrap();
        assert!(start.elapsed() >= DROP_GRACE);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 2);
        // Still full: the next batch is dropped at once, not after another grace, so that the
        // capture thread is not held a second per batch while the pipeline stays full.
        let start = Instant::now();
        ctx.emit_blocking(one_event()).unwrap();
        assert!(start.elapsed() < DROP_GRACE);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 2);
        assert!(rx.try_recv().is_some(), "the queued batch is still there");
        // Room again: queued. Full again within the episode: dropped at once.
        ctx.emit_blocking(one_event()).unwrap();
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 3);
        let start = Instant::now();
        ctx.emit_blocking(one_event()).unwrap();
        assert!(start.elapsed() < DROP_GRACE);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 3);
    }

    /// A stop's final flush (every open flow and transaction) is larger than the queues: its
    /// batches wait for the outputs to drain them as they would before the stop, not dropped
    /// because the stop has begun.
    #[test]
    fn a_stop_waits_for_room_for_the_final_flush() {
        let (mut ctx, mut rx) = capture_input(1);
        let (trigger, shutdown) = shutdown_pair();
        trigger.trigger();
        ctx.shutdown = shutdown;
        ctx.emit_blocking(one_event()).unwrap();
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            // Polled, so that a batch dropped fails the test instead of hanging it.
            let (mut n, until) = (0, Instant::now() + Duration::from_secs(5));
            while n < 3 && Instant::now() < until {
                match rx.try_recv() {
                    Some(_) => n += 1,
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            n
        });
        ctx.emit_blocking(one_event()).unwrap();
        let budget = Arc::new(InFlightBudget::new(1 << 20));
        let events = vec![Event::from_message(
            "net".into(),
            chrono::Utc::now(),
            "tx".into(),
        )];
        ctx.emit_within_budget(events, &budget).unwrap();
        assert_eq!(drain.join().unwrap(), 3);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 3);
    }

    /// A capture's batches in flight hold its budget until the outputs are done with them: a
    /// batch over it waits for a settled one, drops past the grace, and goes again once the
    /// budget has room.
    #[test]
    fn a_capture_holds_no_more_in_flight_than_its_budget() {
        let (ctx, mut rx) = capture_input(8);
        let budget = InFlightBudget::new(1);
        let event = || one_event().into_parts().0;
        ctx.emit_within_budget(event(), &budget).unwrap();
        assert!(budget.held() > 0);
        let settle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(rx.blocking_recv());
            rx
        });
        // The queue has room, the budget has not: this one waits for the first to be settled.
        let start = Instant::now();
        ctx.emit_within_budget(event(), &budget).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
        let mut rx = settle.join().unwrap();
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 2);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 0);

        // Nobody settles the second: the third is dropped past the grace, the fourth at once.
        let start = Instant::now();
        ctx.emit_within_budget(event(), &budget).unwrap();
        assert!(start.elapsed() >= DROP_GRACE);
        let start = Instant::now();
        ctx.emit_within_budget(event(), &budget).unwrap();
        assert!(start.elapsed() < DROP_GRACE);
        assert_eq!(ctx.metrics.events_dropped.load(Ordering::Relaxed), 2);

        let second = rx.try_recv().expect("the second batch queued");
        assert!(budget.held() > 0, "held while a batch is in flight");
        drop(second);
        assert_eq!(budget.held(), 0, "given back when the batch is settled");
        ctx.emit_within_budget(event(), &budget).unwrap();
        assert_eq!(ctx.metrics.events_out.load(Ordering::Relaxed), 3);
    }
}
