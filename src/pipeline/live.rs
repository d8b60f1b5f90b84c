//! The running pipeline, one component at a time: every input has its own stop signal and every
//! output its own queue and task, so that a reload can drain and replace one of them while the
//! others keep running. `run` is the loop that serves reloads until shutdown or the inputs' end.

use super::channel::{
    batch_channel, shutdown_pair, BatchReceiver, BatchSender, Shutdown, ShutdownTrigger,
};
use super::reload::{Reloads, Request};
use super::route::{self, Rewire, Route};
use super::{undelivered, BuiltInput, BuiltOutput, Pipeline, RunReport, Target};
use crate::config::{ComponentSpec, Global, OutputSpec, ProcessorSpec};
use crate::inputs::{BackPressure, InputContext, PipelineStop};
use crate::outputs::{self, OutputContext};
use crate::processors::condition::Condition;
use crate::telemetry::metrics::{Collector, ComponentKind, ComponentMetrics, Registry};
use crate::telemetry::server::Endpoints;
use crate::telemetry::tap::TapHub;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

pub(super) struct LiveInput {
    pub name: Arc<str>,
    /// `None`: given in code (`tee`'s child), never touched by a reload.
    pub spec: Option<ComponentSpec>,
    pub metrics: Arc<ComponentMetrics>,
    pub collectors: Vec<Arc<dyn Collector>>,
    pub stop: super::channel::ShutdownTrigger,
    pub task: JoinHandle<()>,
}

pub(super) struct LiveOutput {
    pub name: Arc<str>,
    pub spec: Option<OutputSpec>,
    pub metrics: Arc<ComponentMetrics>,
    pub collectors: Vec<Arc<dyn Collector>>,
    pub inputs: Option<Vec<String>>,
    pub when: Option<Arc<Condition>>,
    pub dead_letter_only: bool,
    /// It (or its `buffer:`) reads events' fields (`Output::reads_fields`).
    pub reads_fields: bool,
    /// The sending half of its queue; dropped (with the router's copies) to drain it.
    pub sender: BatchSender,
    /// `None` between a reload creating its queue and the replaced output having drained.
    pub task: Option<JoinHandle<()>>,
    /// Tells it to give up what it holds (`OutputContext::retire`).
    pub retire: ShutdownTrigger,
}

/// One processor of the router's chain, as the reload sees it (the router owns the processor).
pub(super) struct LiveStep {
    pub spec: Option<ProcessorSpec>,
    pub metrics: Arc<ComponentMetrics>,
}

/// An output whose queue exists and whose task is not started yet.
pub(super) struct PendingOutput {
    pub output: BuiltOutput,
    pub rx: BatchReceiver,
    pub retire: Shutdown,
}

pub(super) struct Live {
    pub registry: Arc<Registry>,
    pub endpoints: Endpoints,
    /// The running pipeline's tap points: a rebuilt component gets the point of its name, so
    /// that `trawl tap` clients attached before a reload keep streaming after it.
    pub taps: Arc<TapHub>,
    pub global: Global,
    pub file: String,
    pub data_dir: PathBuf,
    pub inputs: Vec<LiveInput>,
    pub outputs: Vec<LiveOutput>,
    pub chain: Vec<LiveStep>,
    pub proc_tx: BatchSender,
    pub rewires: mpsc::Sender<Rewire>,
    pub router: JoinHandle<()>,
    /// Outputs a reload was draining when shutdown was asked: the shutdown waits for them too.
    pub retiring: Vec<JoinHandle<()>>,
    /// Inputs whose task has not ended (decremented by the task itself).
    pub inputs_running: Arc<AtomicUsize>,
    pub input_ended: Arc<Notify>,
    pub output_failed: Arc<Notify>,
    /// Told to inputs: whether the whole pipeline stops, and whether an output failed.
    pub stop_state: Arc<PipelineStop>,
    /// The locks on the components' state (`Pipeline::state_locks`).
    pub state_locks: Option<Arc<std::sync::Mutex<super::state_lock::StateLocks>>>,
}

impl Live {
    /// Starts every component of a built pipeline: outputs first, so that every queue has a
    /// receiver before anything is sent, then the router, then the inputs.
    pub fn start(p: Pipeline) -> anyhow::Result<Live> {
        crate::inputs::orphans::warn_if_renamed(&p.config.global.data_dir, &p.config.inputs);
        let tuning = p.config.global.pipeline.clone();
        let proc_metrics = p
            .registry
            .component(ComponentKind::Processor, "pipeline", "router");
        let (proc_tx, proc_rx) = batch_channel(tuning.queue_batches, proc_metrics.clone());
        let (rewires, rewire_rx) = mpsc::channel(1);
        let specs: HashMap<&str, &OutputSpec> = p
            .config
            .outputs
            .iter()
            .map(|o| (o.spec.name.as_str(), o))
            .collect();
        let chain = p
            .steps
            .iter()
            .map(|s| LiveStep {
                spec: p
                    .config
                    .processors
                    .iter()
                    .find(|ps| *ps.spec.name == *s.metrics.name)
                    .cloned(),
                metrics: s.metrics.clone(),
            })
            .collect();
        let mut live = Live {
            registry: p.registry.clone(),
            endpoints: p.endpoints.clone(),
            taps: p.taps.clone(),
            global: p.config.global.clone(),
            file: p.config.file.clone(),
            data_dir: p.config.global.data_dir.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            chain,
            proc_tx,
            rewires,
            // Replaced below, once the routes exist.
            router: tokio::spawn(async {}),
            retiring: Vec::new(),
            inputs_running: Arc::new(AtomicUsize::new(0)),
            input_ended: Arc::new(Notify::new()),
            output_failed: Arc::new(Notify::new()),
            stop_state: Arc::new(PipelineStop::default()),
            state_locks: p.state_locks.clone(),
        };
        let outputs: Vec<(BuiltOutput, Option<OutputSpec>)> = p
            .outputs
            .into_iter()
            .map(|o| {
                let spec = specs.get(&*o.name).map(|s| (*s).clone());
                (o, spec)
            })
            .collect();
        let pending = live.queue_outputs(outputs);
        live.start_outputs(pending)?;
        let names: Vec<(Arc<str>, &'static str)> = p
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.metrics.type_name))
            .collect();
        let routes = live.routes(&names);
        let after_processors = live
            .taps
            .point(ComponentKind::Processor, "pipeline", "router");
        live.place_event_building();
        live.router = tokio::spawn(route::run(
            proc_rx,
            p.steps,
            routes,
            proc_metrics,
            after_processors,
            rewire_rx,
            tuning.workers.max(1),
        ));
        let input_specs = p.config.inputs;
        for i in p.inputs {
            let spec = input_specs.iter().find(|s| *s.name == *i.name).cloned();
            live.start_input(i, spec);
        }
        Ok(live)
    }

    /// Where events are built from lines sent unbuilt (`LineBlock`): by the processors when
    /// there are any (on their threads); else, when an output reads fields, on the inputs'
    /// threads, beside the router and the outputs (as when every input built its events:
    /// built by the router, Kafka and Elasticsearch ran 8-15% slower); else nowhere.
    pub fn place_event_building(&self) {
        let fields_read = self
            .outputs
            .iter()
            .any(|o| !o.dead_letter_only && o.reads_fields);
        self.stop_state
            .build_events
            .store(self.chain.is_empty() && fields_read, Ordering::Relaxed);
    }

    /// The router's way for each of `inputs` (its tap point, and its targets from the outputs
    /// that have a queue now).
    pub fn routes(&self, inputs: &[(Arc<str>, &'static str)]) -> HashMap<Arc<str>, Route> {
        inputs
            .iter()
            .map(|(name, type_name)| {
                let targets = self
                    .outputs
                    .iter()
                    .filter(|o| !o.dead_letter_only)
                    .filter(|o| {
                        o.inputs
                            .as_ref()
                            .is_none_or(|l| l.iter().any(|n| **n == **name))
                    })
                    .map(|o| Target {
                        sender: o.sender.clone(),
                        when: o.when.clone(),
                        tap: self
                            .taps
                            .point(ComponentKind::Output, &o.name, o.metrics.type_name),
                    })
                    .collect();
                let tap = self.taps.point(ComponentKind::Input, name, type_name);
                (name.clone(), Route { tap, targets })
            })
            .collect()
    }

    pub fn start_input(&mut self, i: BuiltInput, spec: Option<ComponentSpec>) {
        let back_pressure = i.input.back_pressure();
        if back_pressure == BackPressure::Drop {
            tracing::info!(input = %i.name, "input cannot pause: batches are dropped and counted when the pipeline is full");
        }
        let (stop, shutdown) = shutdown_pair();
        let tuning = &self.global.pipeline;
        let ctx = InputContext {
            name: i.name.clone(),
            out: self.proc_tx.clone(),
            shutdown,
            metrics: i.metrics.clone(),
            back_pressure,
            batch_size: tuning.batch_size.max(1),
            data_dir: self.data_dir.clone(),
            pipeline: self.stop_state.clone(),
        };
        let metrics = i.metrics.clone();
        let name = i.name.clone();
        let running = self.inputs_running.clone();
        let ended = self.input_ended.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let input = i.input;
        let task = tokio::spawn(async move {
            if let Err(e) = input.run(ctx).await {
                tracing::error!(input = %name, error = %format!("{e:#}"), "input failed");
                metrics.set_failed(format!("{e:#}"));
            }
            running.fetch_sub(1, Ordering::SeqCst);
            ended.notify_one();
        });
        self.inputs.push(LiveInput {
            name: i.name,
            spec,
            metrics: i.metrics,
            collectors: i.collectors,
            stop,
            task,
        });
    }

    /// Creates the queue of each output and lists it (not started yet): the router may send to
    /// it at once, the output reads it once started.
    pub fn queue_outputs(
        &mut self,
        outputs: Vec<(BuiltOutput, Option<OutputSpec>)>,
    ) -> Vec<PendingOutput> {
        let queue_batches = self.global.pipeline.queue_batches;
        let mut pending = Vec::new();
        for (o, spec) in outputs {
            let (tx, rx) = batch_channel(queue_batches, o.metrics.clone());
            let (retire, retired) = shutdown_pair();
            self.outputs.push(LiveOutput {
                name: o.name.clone(),
                spec,
                metrics: o.metrics.clone(),
                collectors: o.collectors.clone(),
                inputs: o.inputs.clone(),
                when: o.when.clone(),
                dead_letter_only: o.dead_letter_only,
                reads_fields: o.output.reads_fields() || o.buffer.is_some(),
                sender: tx,
                task: None,
                retire,
            });
            pending.push(PendingOutput {
                output: o,
                rx,
                retire: retired,
            });
        }
        pending
    }

    fn sender_of(&self, name: Option<&String>) -> Option<BatchSender> {
        let name = name?;
        self.outputs
            .iter()
            .find(|o| *o.name == **name)
            .map(|o| o.sender.clone())
    }

    /// Starts queued outputs: their buffer (if any), then their loop. The outputs whose buffer
    /// could not start are failed and named in the error, which the caller logs (once).
    pub fn start_outputs(&mut self, pending: Vec<PendingOutput>) -> anyhow::Result<()> {
        let queue_batches = self.global.pipeline.queue_batches;
        let mut failed = Vec::new();
        for PendingOutput {
            output: o,
            rx,
            retire,
        } in pending
        {
            let dead_letter = self.sender_of(o.dead_letter.as_ref());
            let rx = match &o.buffer {
                None => rx,
                Some(b) => {
                    let dead_letters = outputs::dead_letter::DeadLetters::for_stage(
                        o.name.clone(),
                        dead_letter.clone(),
                        o.metrics.clone(),
                        &self.data_dir,
                    );
                    match outputs::buffer::start(
                        b,
                        &o.name,
                        rx,
                        o.metrics.clone(),
                        &self.data_dir,
                        queue_batches,
                        dead_letters,
                    ) {
                        Ok(rx) => rx,
                        Err(e) => {
                            let e = format!("output {}: buffer: {e:#}", o.name);
                            o.metrics.set_failed(e.clone());
                            self.stop_state.output_failed.store(true, Ordering::SeqCst);
                            self.output_failed.notify_one();
                            failed.push(e);
                            continue;
                        }
                    }
                }
            };
            let ctx = OutputContext {
                name: o.name.clone(),
                rx,
                metrics: o.metrics.clone(),
                dead_letter,
                data_dir: self.data_dir.clone(),
                retire,
            };
            let metrics = o.metrics.clone();
            let name = o.name.clone();
            let failed = self.output_failed.clone();
            let stop_state = self.stop_state.clone();
            let output = o.output;
            let task = tokio::spawn(async move {
                // A panic in an output (its own bug or a library's) would end its task with no
                // word: its queue fills, the inputs stall and /health says ok. Taken as a
                // failure, it stops the pipeline the way an output error does.
                let outcome = match tokio::spawn(output.run(ctx)).await {
                    Ok(outcome) => outcome,
                    Err(e) => Err(anyhow::anyhow!(
                        "the output stopped on a bug: {}",
                        panic_text(e)
                    )),
                };
                if let Err(e) = outcome {
                    tracing::error!(output = %name, error = %format!("{e:#}"), "output failed");
                    metrics.set_failed(format!("{e:#}"));
                    stop_state.output_failed.store(true, Ordering::SeqCst);
                    failed.notify_one();
                }
            });
            if let Some(live) = self.outputs.iter_mut().find(|l| l.name == o.name) {
                live.task = Some(task);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(failed.join("; ")))
        }
    }

    /// Stops every input, waits for them, then closes every queue and waits for the router and
    /// the outputs to deliver what they hold.
    async fn stop_and_drain(self) {
        for i in &self.inputs {
            i.stop.trigger();
        }
        let Live {
            inputs,
            outputs,
            proc_tx,
            rewires,
            router,
            retiring,
            ..
        } = self;
        for i in inputs {
            let _ = i.task.await;
            drop(i.stop);
        }
        drop(proc_tx);
        drop(rewires);
        let mut tasks = retiring;
        for o in outputs {
            tasks.extend(o.task);
        }
        let _ = router.await;
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// When start-up code's pages are given back: once the pipeline runs, and once what outputs
/// and processors set up in the background (templates, the first Kubernetes list) is done.
const RELEASE_AFTER_START: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(60),
];
const RELEASE_AFTER_RELOAD: [std::time::Duration; 1] = [std::time::Duration::from_secs(2)];

/// Runs until every input has ended or `shutdown` fires (then drains within `shutdown_timeout`),
/// serving the reloads asked through `reloads` in the meantime.
pub async fn run(
    p: Pipeline,
    mut shutdown: Shutdown,
    mut reloads: Option<Reloads>,
) -> anyhow::Result<RunReport> {
    let registry = p.registry.clone();
    let mut live = Live::start(p)?;
    crate::code_pages::release_after(&RELEASE_AFTER_START);
    // Whether a reload has started inputs: one of them failing (a port another process holds)
    // must not end trawl as a failure at start does, since the operator who reloaded can
    // correct the file and reload again.
    let mut reloaded = false;
    let stop = loop {
        tokio::select! {
            _ = live.input_ended.notified() => {
                if live.inputs_running.load(Ordering::SeqCst) == 0 {
                    let input_failed = live.inputs.iter().any(|i| i.metrics.failure().is_some());
                    let wait = reloads.as_ref().is_some_and(|r| r.wait_after_failed_input);
                    if reloaded && wait && input_failed {
                        tracing::error!(
                            "every input has stopped and one failed after a reload: waiting for a corrected pipeline file (reload) or a stop"
                        );
                        continue;
                    }
                    break None;
                }
            }
            _ = shutdown.wait() => break Some("shutting down: stopping inputs and draining"),
            _ = live.output_failed.notified() => break Some("an output failed: stopping inputs and draining what the other outputs can deliver"),
            request = next_request(&mut reloads) => match (request, reloads.as_ref()) {
                (Some(request), Some(r)) => {
                    reloaded = true;
                    if !serve(&mut live, r, request, &mut shutdown).await {
                        break Some("shutting down during a reload: stopping inputs and draining");
                    }
                }
                // Nobody can ask for a reload any more.
                _ => reloads = None,
            },
        }
    };
    let deadline = live.global.shutdown_timeout.std();
    let output_failed = live.output_failed.clone();
    // Before the inputs are told to stop: they drain as for a stop of trawl, not of a reload.
    live.stop_state.stopping.store(true, Ordering::SeqCst);
    let drain = live.stop_and_drain();
    tokio::pin!(drain);
    let drained = match stop {
        // Every input ended on its own: outputs deliver what they hold without a deadline,
        // unless a stop is asked for in the meantime.
        None => {
            let why = tokio::select! {
                _ = &mut drain => None,
                _ = shutdown.wait() => Some("shutting down: draining"),
                _ = output_failed.notified() => Some("an output failed: draining what the other outputs can deliver"),
            };
            match why {
                None => true,
                Some(why) => {
                    tracing::info!(timeout = ?deadline, "{why}");
                    tokio::time::timeout(deadline, &mut drain).await.is_ok()
                }
            }
        }
        Some(why) => {
            tracing::info!(timeout = ?deadline, "{why}");
            tokio::time::timeout(deadline, &mut drain).await.is_ok()
        }
    };
    let undelivered = if drained { 0 } else { undelivered(&registry) };
    Ok(RunReport {
        drained,
        undelivered,
        failures: registry.failures(),
        drain_incomplete: registry.drain_incomplete(),
        lost: registry.lost(),
    })
}

async fn next_request(reloads: &mut Option<Reloads>) -> Option<Request> {
    match reloads {
        Some(r) => r.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves one reload request; false when shutdown was asked while it drained a component.
async fn serve(live: &mut Live, r: &Reloads, request: Request, shutdown: &mut Shutdown) -> bool {
    tracing::info!(origin = request.origin, "reloading the pipeline");
    let outcome = match (r.load)() {
        Err(errs) => Err(errs.0.iter().map(ToString::to_string).collect()),
        Ok(cfg) => super::apply::apply(live, cfg, shutdown).await,
    };
    let stopping = shutdown.is_triggered();
    let reply = match outcome {
        // Logged before counted: whoever sees the count (a test, an alert) finds the log line.
        Ok(summary) => {
            // Reading and building the new file touched code the running pipeline does not use.
            crate::code_pages::release_after(&RELEASE_AFTER_RELOAD);
            tracing::info!(origin = request.origin, "reloaded: {summary}");
            r.stats.succeeded();
            Ok(summary)
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!("reload: {e}");
            }
            tracing::error!(
                origin = request.origin,
                "reload failed ({} error{}): the running pipeline is unchanged",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            r.stats.failed();
            Err(errors.join("\n"))
        }
    };
    if let Some(tx) = request.reply {
        let _ = tx.send(reply);
    }
    !stopping
}

/// Waits for a component's task to end, saying so every `every` while it takes long; false when
/// shutdown is asked first (the task is left to the shutdown's drain).
pub(super) async fn wait_ended(
    what: &str,
    task: &mut JoinHandle<()>,
    shutdown: &mut Shutdown,
    every: std::time::Duration,
) -> bool {
    loop {
        tokio::select! {
            _ = &mut *task => return true,
            _ = shutdown.wait() => return false,
            _ = tokio::time::sleep(every) => {
                tracing::warn!("reload: still waiting for {what} to deliver what it holds before replacing it");
            }
        }
    }
}

/// Waits for a replaced output's task to end, as `wait_ended`; but an output that is failing
/// (every attempt refused or unanswered: a wrong host or password, what the reload is likely
/// fixing) when a wait of `every` passes is told to retire: to drop what it holds unsettled, so
/// that what can be read again (files, journald, its disk buffer) goes to its successor instead
/// of the reload waiting for ever for a delivery that cannot come.
pub(super) async fn wait_replaced(
    what: &str,
    task: &mut JoinHandle<()>,
    shutdown: &mut Shutdown,
    every: std::time::Duration,
    metrics: &ComponentMetrics,
    retire: &ShutdownTrigger,
) -> bool {
    let mut retired = false;
    loop {
        tokio::select! {
            _ = &mut *task => return true,
            _ = shutdown.wait() => return false,
            _ = tokio::time::sleep(every) => {
                match metrics.failing_since() {
                    Some((since, reason)) if !retired => {
                        retired = true;
                        let secs = since.elapsed().map_or(0, |d| d.as_secs());
                        tracing::warn!(failing_for_s = secs, %reason, "reload: {what} cannot deliver: it gives up what it holds, to be read again and delivered by its replacement");
                        retire.trigger();
                    }
                    _ => tracing::warn!("reload: still waiting for {what} to deliver what it holds before replacing it"),
                }
            }
        }
    }
}

/// What a panicked task said, for the log and `/health`.
fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}
