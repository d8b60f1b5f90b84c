//! The processing stage: takes batches from every input, runs the processors over each event,
//! and hands the batch to the outputs its input is routed to, showing it to the tap points on
//! its way (the input's, each processor's, `pipeline` after all of them, each output's). A
//! reload swaps its processors and routes between two batches.

use super::channel::BatchReceiver;
use super::{fan_out, Target};
use crate::processors::{condition::Condition, Processor, Verdict};
use crate::telemetry::metrics::ComponentMetrics;
use crate::telemetry::tap::TapPoint;
use std::collections::HashMap;
use std::sync::Arc;

/// One processor with its `when:` condition and its counters.
pub(crate) struct Step {
    pub processor: Box<dyn Processor>,
    pub when: Option<Condition>,
    pub metrics: Arc<ComponentMetrics>,
    /// What the processor lets through, for `trawl tap`.
    pub tap: Arc<TapPoint>,
    /// Metric collectors the processor registered when it was built (removed with it).
    pub collectors: Vec<Arc<dyn crate::telemetry::metrics::Collector>>,
}

/// An input's way through the router: its tap point and the outputs it is routed to.
pub(crate) struct Route {
    pub tap: Arc<TapPoint>,
    pub targets: Vec<Target>,
}

/// A processor of the chain after a reload: one of the running chain, kept as it is (with
/// whatever state it holds), or a new one.
pub(crate) enum Slot {
    Keep(usize),
    New(Step),
}

/// A new processor chain and new routes, applied between two batches; `done` answers with the
/// processors that left the chain.
pub(crate) struct Rewire {
    pub chain: Vec<Slot>,
    pub routes: HashMap<Arc<str>, Route>,
    pub done: tokio::sync::oneshot::Sender<Vec<Step>>,
}

pub(crate) async fn run(
    mut rx: BatchReceiver,
    mut steps: Vec<Step>,
    mut routes: HashMap<Arc<str>, Route>,
    metrics: Arc<ComponentMetrics>,
    after_processors: Arc<TapPoint>,
    mut rewires: tokio::sync::mpsc::Receiver<Rewire>,
) {
    let host = hostname();
    loop {
        let mut batch = tokio::select! {
            biased;
            Some(rewire) = rewires.recv() => {
                let mut old: Vec<Option<Step>> = steps.drain(..).map(Some).collect();
                steps = rewire
                    .chain
                    .into_iter()
                    .filter_map(|slot| match slot {
                        Slot::Keep(i) => old.get_mut(i).and_then(Option::take),
                        Slot::New(step) => Some(step),
                    })
                    .collect();
                // The old routes go now: an output that was replaced sees its queue close.
                routes = rewire.routes;
                let _ = rewire.done.send(old.into_iter().flatten().collect());
                continue;
            }
            batch = rx.recv() => match batch {
                Some(b) => b,
                None => break,
            },
        };
        let n_in = batch.len() as u64;
        ComponentMetrics::add(&metrics.events_in, n_in);
        let route = batch.events.first().and_then(|e| routes.get(&e.meta.input));
        if let Some(r) = route {
            r.tap.offer(&batch.events);
        }
        for event in batch.events.iter_mut() {
            if event.fields.get("host").is_none() {
                event.insert("host.name", host.as_str());
            }
        }
        for step in steps.iter_mut() {
            let before = batch.events.len() as u64;
            ComponentMetrics::add(&step.metrics.events_in, before);
            batch.events.retain_mut(|event| {
                if let Some(when) = &step.when {
                    if !when.matches(event) {
                        return true;
                    }
                }
                step.processor.process(event) == Verdict::Keep
            });
            let after = batch.events.len() as u64;
            ComponentMetrics::add(&step.metrics.events_out, after);
            ComponentMetrics::add(&step.metrics.events_dropped, before - after);
            step.tap.offer(&batch.events);
        }
        after_processors.offer(&batch.events);
        ComponentMetrics::add(&metrics.events_out, batch.len() as u64);
        let targets: &[Target] = route.map(|r| r.targets.as_slice()).unwrap_or(&[]);
        fan_out(batch, targets).await;
    }
}

/// The host's name, for `host.name`.
pub fn hostname() -> String {
    if let Ok(h) = std::env::var("TRAWL_HOSTNAME") {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
