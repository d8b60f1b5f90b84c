//! The processing stage: takes batches from every input, runs the processors over each event,
//! and hands the batch to the outputs its input is routed to, showing it to the tap points on
//! its way (the input's, each processor's, `pipeline` after all of them, each output's). A
//! reload swaps its processors and routes between two batches.

use super::channel::BatchReceiver;
use super::workers::{process, Done, Pool, StepRef};
use super::{fan_out, Target};
use crate::event::Batch;
use crate::processors::{condition::Condition, Processor};
use crate::telemetry::metrics::ComponentMetrics;
use crate::telemetry::tap::TapPoint;
use std::collections::{BTreeMap, HashMap};
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

/// Runs the processing stage until every input's sender is gone and what it holds is passed
/// on. With `workers` > 1 the chain runs on that many threads (see `workers`), batches handed
/// on in the order they came.
pub(crate) async fn run(
    mut rx: BatchReceiver,
    mut steps: Vec<Step>,
    mut routes: HashMap<Arc<str>, Route>,
    metrics: Arc<ComponentMetrics>,
    after_processors: Arc<TapPoint>,
    mut rewires: tokio::sync::mpsc::Receiver<Rewire>,
    workers: usize,
) {
    // `host: { name }` is built once, shared, and given to each event that has no `host`: a
    // reference count per event, where a copy cost two allocations (freed on another thread)
    // and inserting by path split and searched the path for every event.
    let host = {
        let mut m = crate::event::Map::with_capacity(1);
        m.push_new("name", crate::event::Value::String(hostname()));
        crate::event::Value::Object(m.into_shared())
    };
    let mut pool = Pool::start(&steps, workers, &host);
    // Batches handed to the pool, by number, with the input they came from; those done early
    // wait in `done` for their turn.
    let mut next_seq: u64 = 0;
    let mut next_out: u64 = 0;
    let mut in_flight: usize = 0;
    let mut done: BTreeMap<u64, Option<Batch>> = BTreeMap::new();
    let mut origin: BTreeMap<u64, Option<Arc<str>>> = BTreeMap::new();
    let mut waiting_rewire: Option<Rewire> = None;
    let mut inputs_closed = false;
    let mut workers_lost_logged = false;
    loop {
        if in_flight == 0 {
            if let Some(rewire) = waiting_rewire.take() {
                // Nothing is in the workers: their threads end with the old chain.
                drop(pool.take());
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
                pool = Pool::start(&steps, workers, &host);
            }
            if inputs_closed {
                break;
            }
        }
        let room = pool.as_ref().is_some_and(|p| in_flight < p.capacity) || pool.is_none();
        let accepting = room && waiting_rewire.is_none() && !inputs_closed;
        tokio::select! {
            biased;
            Some(finished) = next_done(&mut pool), if in_flight > 0 => {
                done.insert(finished.seq, finished.batch);
                while let Some(batch) = done.remove(&next_out) {
                    let input = origin.remove(&next_out).flatten();
                    next_out += 1;
                    in_flight -= 1;
                    if let Some(batch) = batch {
                        let route = input.and_then(|i| routes.get(&i));
                        hand_on(batch, route, &metrics, &after_processors).await;
                    }
                }
            }
            Some(rewire) = rewires.recv(), if waiting_rewire.is_none() => {
                waiting_rewire = Some(rewire);
            }
            batch = rx.recv(), if accepting => match batch {
                None => inputs_closed = true,
                Some(batch) => {
                    ComponentMetrics::add(&metrics.events_in, batch.len() as u64);
                    let mut batch = batch;
                    let input = batch.input();
                    let route = input.as_ref().and_then(|i| routes.get(i));
                    if let Some(r) = route {
                        r.tap.offer_batch(&mut batch);
                    }
                    let batch = match &pool {
                        Some(p) => match p.submit(next_seq, batch) {
                            Ok(()) => {
                                origin.insert(next_seq, input);
                                next_seq += 1;
                                in_flight += 1;
                                continue;
                            }
                            // No worker can take it (their threads are gone): this thread
                            // processes it, in its turn after what the workers hold.
                            Err(b) => {
                                if !workers_lost_logged {
                                    workers_lost_logged = true;
                                    tracing::error!("the processor threads are gone: the processors run on the router's thread");
                                }
                                b
                            }
                        },
                        None => batch,
                    };
                    let mut batch = batch;
                    if in_flight > 0 {
                        // Order: this batch waits for those the workers still hold.
                        process(&mut batch, &host, steps.iter_mut().map(StepRef::from));
                        done.insert(next_seq, Some(batch));
                        origin.insert(next_seq, input);
                        next_seq += 1;
                        in_flight += 1;
                        continue;
                    }
                    process(&mut batch, &host, steps.iter_mut().map(StepRef::from));
                    hand_on(batch, route, &metrics, &after_processors).await;
                }
            },
        }
    }
}

/// The next batch the workers finished (never resolves without a pool).
async fn next_done(pool: &mut Option<Pool>) -> Option<Done> {
    match pool {
        Some(p) => p.results.recv().await,
        None => std::future::pending().await,
    }
}

/// Passes a processed batch to the outputs of its input's route.
async fn hand_on(
    mut batch: Batch,
    route: Option<&Route>,
    metrics: &ComponentMetrics,
    after_processors: &TapPoint,
) {
    after_processors.offer_batch(&mut batch);
    ComponentMetrics::add(&metrics.events_out, batch.len() as u64);
    let targets: &[Target] = route.map(|r| r.targets.as_slice()).unwrap_or(&[]);
    fan_out(batch, targets).await;
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
