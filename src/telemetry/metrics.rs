//! trawl's own counters: one `ComponentMetrics` per input, processor and output, plus
//! `Collector`s that components register for their own families (HTTP RED metrics...). Rendered
//! in the Prometheus text format by the `/metrics` endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Losses this far apart are two episodes, each logged once.
const LOSS_EPISODE_QUIET: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    Input,
    Processor,
    Output,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Input => "input",
            ComponentKind::Processor => "processor",
            ComponentKind::Output => "output",
        }
    }
}

/// Counters of one component. Inputs count what they produce in `events_out`; outputs count
/// what they receive in `events_in` and what they delivered in `events_out`.
pub struct ComponentMetrics {
    pub kind: ComponentKind,
    pub name: Arc<str>,
    pub type_name: &'static str,
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    /// Dropped on purpose or for lack of room (counted, never silent).
    pub events_dropped: AtomicU64,
    /// Failed for good (rejected by the destination, undecodable...).
    pub events_failed: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Events waiting in the component's input queue.
    pub queue_depth: AtomicI64,
    /// Batches produced and not yet acknowledged (inputs that wait for delivery).
    pub ack_pending: AtomicI64,
    /// Invalid UTF-8 sequences replaced, malformed records skipped and the like.
    pub errors: AtomicU64,
    /// Outputs: requests, batches or items sent again after a failure.
    pub retries: AtomicU64,
    /// Outputs with a buffer: events held in it (disk: written and not yet delivered).
    pub buffer_events: AtomicI64,
    /// Outputs with a buffer: bytes held in it (disk: unacknowledged bytes on disk; memory: the
    /// queued events' approximate size).
    pub buffer_bytes: AtomicI64,
    /// The buffer's limit: `max_events` for memory, `max_size` in bytes for disk; 0 without one.
    pub buffer_limit: AtomicI64,
    failure: Mutex<Option<String>>,
    /// While stopping: what the component read and could not deliver yet (the file input's
    /// given-up batches being read again); `None` once delivered. Not a failure: `/health` does
    /// not show it, the exit status does when it is still set at the end of the stop.
    drain_incomplete: Mutex<Option<String>>,
    /// Outputs: since when every attempt failed, and the last reason; `None` while delivering.
    failing: Mutex<Option<(SystemTime, String)>>,
    /// An input whose sources open after it starts running (a live capture's handles), until
    /// they are open or have failed: `/health` answers 503 "starting" meanwhile.
    starting: AtomicBool,
    /// An input's last dropped batch: a drop after a quiet spell begins an episode, logged.
    last_drop: Mutex<Option<std::time::Instant>>,
    /// Inputs that cannot read again: events of batches an output failed (also in
    /// `events_failed`), and when the last such batch was, a loss after a quiet spell being logged.
    events_lost: AtomicU64,
    last_loss: Mutex<Option<std::time::Instant>>,
}

impl ComponentMetrics {
    pub fn new(kind: ComponentKind, name: Arc<str>, type_name: &'static str) -> ComponentMetrics {
        ComponentMetrics {
            kind,
            name,
            type_name,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            events_failed: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            ack_pending: AtomicI64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            buffer_events: AtomicI64::new(0),
            buffer_bytes: AtomicI64::new(0),
            buffer_limit: AtomicI64::new(0),
            failure: Mutex::new(None),
            drain_incomplete: Mutex::new(None),
            failing: Mutex::new(None),
            starting: AtomicBool::new(false),
            last_drop: Mutex::new(None),
            events_lost: AtomicU64::new(0),
            last_loss: Mutex::new(None),
        }
    }

    /// The component's sources are not open yet; it calls `started` once they are.
    pub fn set_starting(&self) {
        self.starting.store(true, Ordering::Relaxed);
    }

    /// The component's sources are open (or failed, which `set_failed` says).
    pub fn started(&self) {
        self.starting.store(false, Ordering::Relaxed);
    }

    pub fn is_starting(&self) -> bool {
        self.starting.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// An input dropped a batch now: whether that begins an episode (no drop in the `quiet`
    /// before it), which is logged; the drops that follow are only counted.
    pub fn drop_begins_episode(&self, quiet: Duration) -> bool {
        let Ok(mut last) = self.last_drop.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        let begins = last.is_none_or(|t| now.duration_since(t) >= quiet);
        *last = Some(now);
        begins
    }

    /// An output failed a batch of `events` this input cannot read again (stdin, a socket
    /// without acknowledgements, packets): they are lost. Counted in `trawl_events_failed_total`
    /// and logged when no loss came in the 10 s before, so that the loss is never silent; the
    /// run's exit status says it too (`Registry::lost`).
    pub fn lost(&self, events: u64) {
        Self::add(&self.events_failed, events);
        Self::add(&self.events_lost, events);
        let begins = match self.last_loss.lock() {
            Ok(mut last) => {
                let now = std::time::Instant::now();
                let begins = last.is_none_or(|t| now.duration_since(t) >= LOSS_EPISODE_QUIET);
                *last = Some(now);
                begins
            }
            Err(_) => false,
        };
        if begins {
            tracing::error!(input = %self.name, events,
                "a batch of this input was not delivered (an output failed it, or the stop's deadline came first) and this input cannot read it again: its events are lost (an output's log says why; counted in trawl_events_failed_total; logged once until 10 s pass without a loss)");
        }
    }

    /// Events this input lost (`lost`).
    pub fn events_lost(&self) -> u64 {
        self.events_lost.load(Ordering::Relaxed)
    }

    /// Whether the component dropped a batch less than `quiet` ago (within an episode).
    pub fn dropped_within(&self, quiet: Duration) -> bool {
        self.last_drop
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|t| t.elapsed() < quiet)
    }

    /// Marks the component as failed: `/health` answers 503 naming it.
    pub fn set_failed(&self, why: impl Into<String>) {
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(why.into());
        }
    }

    pub fn clear_failed(&self) {
        if let Ok(mut f) = self.failure.lock() {
            *f = None;
        }
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Says (or, with `None`, clears) what the stop has not delivered yet.
    pub fn set_drain_incomplete(&self, what: Option<String>) {
        if let Ok(mut d) = self.drain_incomplete.lock() {
            *d = what;
        }
    }

    pub fn drain_incomplete(&self) -> Option<String> {
        self.drain_incomplete.lock().ok().and_then(|d| d.clone())
    }

    /// An output's attempt failed: it counts as failing from the first such failure until
    /// `delivering` is called. `/health` turns 503 once this lasts past the threshold.
    pub fn attempt_failed(&self, why: &str) {
        if let Ok(mut f) = self.failing.lock() {
            match &mut *f {
                Some((_, reason)) => why.clone_into(reason),
                None => *f = Some((SystemTime::now(), why.to_owned())),
            }
        }
    }

    /// An output found its attempts failing since `since` (an answer awaited that long): as
    /// `attempt_failed`, dated back to when the failure began.
    pub fn attempt_failed_since(&self, since: SystemTime, why: &str) {
        if let Ok(mut f) = self.failing.lock() {
            match &mut *f {
                Some((first, reason)) => {
                    *first = (*first).min(since);
                    why.clone_into(reason);
                }
                None => *f = Some((since, why.to_owned())),
            }
        }
    }

    /// An output delivered something: it is no longer failing.
    pub fn delivering(&self) {
        if let Ok(mut f) = self.failing.lock() {
            *f = None;
        }
    }

    /// Since when every attempt failed, with the last reason.
    pub fn failing_since(&self) -> Option<(SystemTime, String)> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }
}

/// An output that failed every attempt for longer than the health threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FailingOutput {
    pub name: String,
    pub since: SystemTime,
    pub reason: String,
}

/// How long an output may fail every attempt before `/health` answers 503, unless configured.
pub const DEFAULT_OUTPUT_FAILURE_THRESHOLD: Duration = Duration::from_secs(300);

/// Something that renders extra metric families (already in Prometheus text format).
pub trait Collector: Send + Sync {
    fn render(&self, out: &mut String);

    /// Shared by several components (a pipeline's service map): a reload that replaces one of
    /// them must not take it away from the others.
    fn shared(&self) -> bool {
        false
    }
}

/// Every component's counters and the extra collectors, for `/metrics` and `/health`.
#[derive(Default)]
pub struct Registry {
    components: Mutex<Vec<Arc<ComponentMetrics>>>,
    /// `http.health.output_failure_threshold`, in milliseconds (0: the default, 5 minutes).
    output_failure_threshold_ms: AtomicU64,
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    pub fn component(
        &self,
        kind: ComponentKind,
        name: &str,
        type_name: &'static str,
    ) -> Arc<ComponentMetrics> {
        let m = Arc::new(ComponentMetrics::new(kind, Arc::from(name), type_name));
        if let Ok(mut c) = self.components.lock() {
            c.push(m.clone());
        }
        m
    }

    pub fn set_output_failure_threshold(&self, d: Duration) {
        self.output_failure_threshold_ms
            .store(d.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn output_failure_threshold(&self) -> Duration {
        match self.output_failure_threshold_ms.load(Ordering::Relaxed) {
            0 => DEFAULT_OUTPUT_FAILURE_THRESHOLD,
            ms => Duration::from_millis(ms),
        }
    }

    /// Outputs whose every attempt failed for longer than the threshold, as of `now`.
    pub fn failing_outputs(&self, now: SystemTime) -> Vec<FailingOutput> {
        let threshold = self.output_failure_threshold();
        self.components()
            .iter()
            .filter(|c| c.kind == ComponentKind::Output)
            .filter_map(|c| {
                let (since, reason) = c.failing_since()?;
                let long = now.duration_since(since).unwrap_or_default() >= threshold;
                long.then(|| FailingOutput {
                    name: c.name.to_string(),
                    since,
                    reason,
                })
            })
            .collect()
    }

    pub fn register(&self, c: Arc<dyn Collector>) {
        if let Ok(mut cs) = self.collectors.lock() {
            cs.push(c);
        }
    }

    /// The collectors registered so far, in order (a reload tells a component's own apart by
    /// comparing before and after building it).
    pub fn collectors(&self) -> Vec<Arc<dyn Collector>> {
        self.collectors
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Removes a collector of a component that a reload removed or replaced.
    pub fn unregister(&self, c: &Arc<dyn Collector>) {
        if let Ok(mut cs) = self.collectors.lock() {
            cs.retain(|x| !same_collector(x, c));
        }
    }

    /// Removes the counters of a component that a reload removed.
    pub fn remove_component(&self, m: &Arc<ComponentMetrics>) {
        if let Ok(mut cs) = self.components.lock() {
            cs.retain(|x| !Arc::ptr_eq(x, m));
        }
    }

    pub fn components(&self) -> Vec<Arc<ComponentMetrics>> {
        self.components
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Failed components as `kind name: reason`, empty when healthy.
    pub fn failures(&self) -> Vec<String> {
        self.components()
            .iter()
            .filter_map(|c| {
                c.failure()
                    .map(|why| format!("{} {}: {}", c.kind.as_str(), c.name, why))
            })
            .collect()
    }

    /// Components whose stop left something read and undelivered, as `kind name: what`.
    pub fn drain_incomplete(&self) -> Vec<String> {
        self.components()
            .iter()
            .filter_map(|c| {
                c.drain_incomplete()
                    .map(|what| format!("{} {}: {}", c.kind.as_str(), c.name, what))
            })
            .collect()
    }

    /// Inputs that lost events outputs failed (`ComponentMetrics::lost`), as `input name: what`.
    pub fn lost(&self) -> Vec<String> {
        self.components()
            .iter()
            .filter(|c| c.events_lost() > 0)
            .map(|c| {
                format!(
                    "{} {}: {} events not delivered were lost (this input cannot read them again)",
                    c.kind.as_str(),
                    c.name,
                    c.events_lost()
                )
            })
            .collect()
    }

    /// Components whose sources are not open yet, as `input NAME`.
    pub fn starting(&self) -> Vec<String> {
        self.components()
            .iter()
            .filter(|c| c.is_starting() && c.failure().is_none())
            .map(|c| format!("{} {}", c.kind.as_str(), c.name))
            .collect()
    }

    pub fn render(&self) -> String {
        let comps = self.components();
        let mut out = String::with_capacity(4096);
        type Getter = fn(&ComponentMetrics) -> i64;
        let families: [(&str, &str, &str, Getter); 9] = [
            (
                "trawl_events_in_total",
                "counter",
                "Events received by the component.",
                |c| c.events_in.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_events_out_total",
                "counter",
                "Events sent on (inputs, processors) or delivered (outputs).",
                |c| c.events_out.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_events_dropped_total",
                "counter",
                "Events dropped on purpose or for lack of room.",
                |c| c.events_dropped.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_events_failed_total",
                "counter",
                "Events that failed for good.",
                |c| c.events_failed.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_bytes_in_total",
                "counter",
                "Bytes read by the component.",
                |c| c.bytes_in.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_bytes_out_total",
                "counter",
                "Bytes written by the component.",
                |c| c.bytes_out.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_errors_total",
                "counter",
                "Malformed input skipped or repaired (invalid UTF-8, bad records).",
                |c| c.errors.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_queue_depth",
                "gauge",
                "Events waiting in the component's input queue.",
                |c| c.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "trawl_ack_pending_batches",
                "gauge",
                "Batches produced by the input and not yet acknowledged.",
                |c| c.ack_pending.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for c in &comps {
                let _ = writeln!(
                    out,
                    "{name}{{component_kind=\"{}\",component=\"{}\",component_type=\"{}\"}} {}",
                    c.kind.as_str(),
                    escape_label(&c.name),
                    c.type_name,
                    get(c).max(0)
                );
            }
        }
        type OutputFamily = (&'static str, &'static str, &'static str, Getter);
        let output_families: [OutputFamily; 4] = [
            (
                "trawl_output_retries_total",
                "counter",
                "Requests, batches or items the output sent again after a failure.",
                |c| c.retries.load(Ordering::Relaxed) as i64,
            ),
            (
                "trawl_buffer_events",
                "gauge",
                "Events held in the output's buffer (disk buffers: written and not yet delivered).",
                |c| c.buffer_events.load(Ordering::Relaxed),
            ),
            (
                "trawl_buffer_bytes",
                "gauge",
                "Bytes held in the output's buffer (disk: unacknowledged bytes on disk; memory: approximate size of the queued events).",
                |c| c.buffer_bytes.load(Ordering::Relaxed),
            ),
            (
                "trawl_buffer_limit",
                "gauge",
                "The buffer's limit: max_events (memory) or max_size in bytes (disk).",
                |c| c.buffer_limit.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in output_families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for c in comps.iter().filter(|c| c.kind == ComponentKind::Output) {
                let _ = writeln!(
                    out,
                    "{name}{{component=\"{}\",component_type=\"{}\"}} {}",
                    escape_label(&c.name),
                    c.type_name,
                    get(c).max(0)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP trawl_component_up 1 while the component runs, 0 once it failed."
        );
        let _ = writeln!(out, "# TYPE trawl_component_up gauge");
        for c in &comps {
            let _ = writeln!(
                out,
                "trawl_component_up{{component_kind=\"{}\",component=\"{}\"}} {}",
                c.kind.as_str(),
                escape_label(&c.name),
                if c.failure().is_some() { 0 } else { 1 }
            );
        }
        let collectors = self
            .collectors
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        for c in collectors {
            c.render(&mut out);
        }
        super::process::render(&mut out);
        // Collectors of the same kind (one per packet input, one per processor) each write
        // their family's header: Prometheus wants it once, with every series under it.
        super::exposition::merge_families(&out)
    }
}

/// The same registered collector (by address: the vtable half of the pointer may differ).
pub fn same_collector(a: &Arc<dyn Collector>, b: &Arc<dyn Collector>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const u8, Arc::as_ptr(b) as *const u8)
}

/// Escapes a Prometheus label value.
pub fn escape_label(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_health() {
        let r = Registry::new();
        let m = r.component(ComponentKind::Input, "app\"x", "stdin");
        ComponentMetrics::add(&m.events_out, 5);
        let text = r.render();
        assert!(text.contains(
            "trawl_events_out_total{component_kind=\"input\",component=\"app\\\"x\",component_type=\"stdin\"} 5"
        ));
        assert!(r.failures().is_empty());
        m.set_failed("boom");
        assert_eq!(r.failures(), vec!["input app\"x: boom".to_string()]);
        assert!(r
            .render()
            .contains("trawl_component_up{component_kind=\"input\",component=\"app\\\"x\"} 0"));
    }
}
