//! Applying a reload: the new pipeline file is validated like `trawl validate`, then only the
//! inputs, processors and outputs whose configuration changed are drained and replaced; the
//! others keep running untouched (open files, captures, producers, buffers, counters).

use super::live::{self, Live, LiveStep, PendingOutput};
use super::route::{Rewire, Slot, Step};
use super::{static_type, BuiltInput, BuiltOutput, Pipeline};
use crate::config::ProcessorSpec;
use crate::config::{ComponentSpec, ConfigErrors, Node, NodeKind, OutputSpec, PipelineConfig};
use crate::inputs::{self, BuildContext};
use crate::outputs;
use crate::processors::{self, condition::Condition};
use crate::telemetry::metrics::{Collector, ComponentKind, ComponentMetrics, Registry};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Same content, wherever it was written (a component moved down the file is unchanged).
fn same_node(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Scalar { value: x, plain: p }, NodeKind::Scalar { value: y, plain: q }) => {
            x == y && p == q
        }
        (NodeKind::Seq(x), NodeKind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_node(a, b))
        }
        (NodeKind::Map(x), NodeKind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same_node(ka, kb) && same_node(va, vb))
        }
        _ => false,
    }
}

fn same_optional_node(a: Option<&Node>, b: Option<&Node>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_node(a, b),
        _ => false,
    }
}

fn same_component(a: &ComponentSpec, b: &ComponentSpec) -> bool {
    a.name == b.name && a.type_name == b.type_name && same_node(&a.node, &b.node)
}

/// What the output itself is: its settings, buffer and dead-letter target. `inputs:` and
/// `when:` only decide what the router sends it, and change without touching the output.
fn same_output(a: &OutputSpec, b: &OutputSpec) -> bool {
    same_component(&a.spec, &b.spec)
        && a.dead_letter.as_ref().map(|(n, _)| n) == b.dead_letter.as_ref().map(|(n, _)| n)
        && same_optional_node(a.buffer.as_ref(), b.buffer.as_ref())
}

fn same_processor(a: &ProcessorSpec, b: &ProcessorSpec) -> bool {
    same_component(&a.spec, &b.spec) && same_optional_node(a.when.as_ref(), b.when.as_ref())
}

/// Global settings a running pipeline cannot take: where state lives, where it is served, the
/// sizes of queues that exist.
fn refused_globals(live: &Live, cfg: &PipelineConfig) -> Vec<String> {
    let (old, new) = (&live.global, &cfg.global);
    let mut refused = Vec::new();
    let mut refuse = |key: &str, why: &str| {
        refused.push(format!(
            "{}: {key}: cannot change while trawl runs ({why}); restart trawl to apply it",
            cfg.file
        ))
    };
    if old.data_dir != new.data_dir {
        refuse(
            "data_dir",
            "it holds the registries and disk buffers of the running components",
        );
    }
    if old.http != new.http {
        refuse(
            "http",
            "the monitoring address is bound and its access set at start",
        );
    }
    if old.pipeline != new.pipeline {
        refuse("pipeline", "the queues between stages are sized at start");
    }
    refused
}

/// Validates `cfg`, then replaces what changed in `live`. `Err` leaves the running pipeline as
/// it was, except when shutdown is asked while a replaced component drains.
pub(super) async fn apply(
    live: &mut Live,
    cfg: PipelineConfig,
    shutdown: &mut crate::pipeline::channel::Shutdown,
) -> Result<String, Vec<String>> {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let refused = refused_globals(live, &cfg);
    if !refused.is_empty() {
        return Err(refused);
    }
    // The same checks as `trawl validate`, on components built aside (never started); inputs
    // given in code are stood in for so that outputs may name them.
    let stand_ins: Vec<(String, Box<dyn inputs::Input>)> = live
        .inputs
        .iter()
        .filter(|i| i.spec.is_none())
        .map(|i| {
            let stand_in = inputs::stdin::Stdin::new(inputs::stdin::Config {
                max_line_bytes: crate::config::ByteSize(1 << 20),
                multiline: None,
            });
            (
                i.name.to_string(),
                Box::new(stand_in) as Box<dyn inputs::Input>,
            )
        })
        .collect();
    let states = match Pipeline::build(cfg.clone(), stand_ins) {
        Ok(p) => p.states(),
        Err(mut errs) => {
            errs.0.sort_by_key(|e| (e.mark.line, e.mark.col));
            errs.0.dedup();
            return Err(errs.0.iter().map(ToString::to_string).collect());
        }
    };
    let plan = Plan::new(live, &cfg);
    if plan.is_empty() && !routing_changed(live, &cfg) {
        live.global.shutdown_timeout = cfg.global.shutdown_timeout;
        return Ok("nothing changed".into());
    }
    // An added input or disk buffer whose state another process holds is refused, not waited
    // for: the running pipeline stays as it is, and the reload can be asked again.
    let states: Vec<(String, &std::path::Path)> = states
        .iter()
        .map(|(o, s)| (o.clone(), s.as_path()))
        .collect();
    let locks = live.state_locks.clone();
    let taken = match &locks {
        Some(l) => lock(l)
            .add(&states, std::time::Duration::ZERO)
            .map_err(|e| vec![format!("{}: {e}; reload refused", cfg.file)])?,
        None => Vec::new(),
    };
    let release_taken = || {
        if let Some(l) = &locks {
            lock(l).release(&taken);
        }
    };
    let built = match build(live, &cfg, &plan) {
        Ok(b) => b,
        Err(errs) => {
            release_taken();
            return Err(errs.0.iter().map(ToString::to_string).collect());
        }
    };
    crate::inputs::orphans::warn_if_renamed(&live.data_dir, &cfg.inputs);
    let summary = plan.summary();
    // An error here is a shutdown asked midway (or the router gone): some new components may
    // have started, so their locks stay until the process ends.
    replace(live, &cfg, plan, built, shutdown).await?;
    // What the reload removed is stopped: another process may take its state now.
    if let Some(l) = &locks {
        lock(l).keep_only(&states);
    }
    live.global.shutdown_timeout = cfg.global.shutdown_timeout;
    live.file = cfg.file.clone();
    Ok(summary)
}

fn lock(
    l: &std::sync::Mutex<super::state_lock::StateLocks>,
) -> std::sync::MutexGuard<'_, super::state_lock::StateLocks> {
    // Nothing under this lock panics midway (a Vec's retain and push).
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a reload changes, by component name.
struct Plan {
    inputs_added: Vec<String>,
    inputs_changed: Vec<String>,
    inputs_removed: Vec<String>,
    outputs_added: Vec<String>,
    /// Changed, or whose dead-letter target is replaced (it holds that target's queue).
    outputs_changed: Vec<String>,
    outputs_removed: Vec<String>,
    /// For each processor of the new chain: the index of the running one it keeps, if any.
    chain: Vec<Option<usize>>,
    processors_removed: Vec<String>,
    processors_new: Vec<String>,
}

impl Plan {
    fn new(live: &Live, cfg: &PipelineConfig) -> Plan {
        let mut p = Plan {
            inputs_added: Vec::new(),
            inputs_changed: Vec::new(),
            inputs_removed: Vec::new(),
            outputs_added: Vec::new(),
            outputs_changed: Vec::new(),
            outputs_removed: Vec::new(),
            chain: Vec::new(),
            processors_removed: Vec::new(),
            processors_new: Vec::new(),
        };
        for spec in &cfg.inputs {
            match live.inputs.iter().find(|i| *i.name == *spec.name) {
                None => p.inputs_added.push(spec.name.clone()),
                Some(i) => match &i.spec {
                    Some(old) if same_component(old, spec) => {}
                    _ => p.inputs_changed.push(spec.name.clone()),
                },
            }
        }
        for i in &live.inputs {
            if i.spec.is_some() && !cfg.inputs.iter().any(|s| *s.name == *i.name) {
                p.inputs_removed.push(i.name.to_string());
            }
        }
        for o in &cfg.outputs {
            match live.outputs.iter().find(|l| *l.name == *o.spec.name) {
                None => p.outputs_added.push(o.spec.name.clone()),
                Some(l) => match &l.spec {
                    Some(old) if same_output(old, o) => {}
                    _ => p.outputs_changed.push(o.spec.name.clone()),
                },
            }
        }
        for l in &live.outputs {
            if l.spec.is_some() && !cfg.outputs.iter().any(|o| *o.spec.name == *l.name) {
                p.outputs_removed.push(l.name.to_string());
            }
        }
        // An output that dead-letters into a replaced one holds a sender to its queue: it is
        // replaced too, or the old queue would never close.
        loop {
            let more: Vec<String> = cfg
                .outputs
                .iter()
                .filter(|o| !p.outputs_replaced(&o.spec.name))
                .filter(|o| {
                    o.dead_letter
                        .as_ref()
                        .is_some_and(|(t, _)| p.outputs_replaced(t))
                })
                .map(|o| o.spec.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            p.outputs_changed.extend(more);
        }
        let mut kept = HashSet::new();
        for spec in &cfg.processors {
            let keep = live.chain.iter().enumerate().position(|(i, s)| {
                !kept.contains(&i) && s.spec.as_ref().is_some_and(|old| same_processor(old, spec))
            });
            if let Some(i) = keep {
                kept.insert(i);
            } else {
                p.processors_new.push(spec.spec.name.clone());
            }
            p.chain.push(keep);
        }
        for (i, s) in live.chain.iter().enumerate() {
            if !kept.contains(&i) {
                p.processors_removed.push(s.metrics.name.to_string());
            }
        }
        p
    }

    fn outputs_replaced(&self, name: &str) -> bool {
        self.outputs_changed.iter().any(|n| n == name)
            || self.outputs_removed.iter().any(|n| n == name)
    }

    fn is_empty(&self) -> bool {
        self.inputs_added.is_empty()
            && self.inputs_changed.is_empty()
            && self.inputs_removed.is_empty()
            && self.outputs_added.is_empty()
            && self.outputs_changed.is_empty()
            && self.outputs_removed.is_empty()
            && self.processors_new.is_empty()
            && self.processors_removed.is_empty()
            && self.chain.iter().enumerate().all(|(i, k)| *k == Some(i))
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, names) in [
            ("inputs added", &self.inputs_added),
            ("inputs replaced", &self.inputs_changed),
            ("inputs removed", &self.inputs_removed),
            ("processors built", &self.processors_new),
            ("processors removed", &self.processors_removed),
            ("outputs added", &self.outputs_added),
            ("outputs replaced", &self.outputs_changed),
            ("outputs removed", &self.outputs_removed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        if parts.is_empty() {
            "routes or processor order changed; every component kept".into()
        } else {
            parts.join("; ")
        }
    }
}

/// `inputs:` or `when:` of a kept output, or which outputs only take dead letters, changed.
fn routing_changed(live: &Live, cfg: &PipelineConfig) -> bool {
    let dead_letter_targets: HashSet<&str> = cfg
        .outputs
        .iter()
        .filter_map(|o| o.dead_letter.as_ref().map(|(n, _)| n.as_str()))
        .collect();
    cfg.outputs.iter().any(|o| {
        let dead_letter_only =
            o.inputs.is_none() && dead_letter_targets.contains(o.spec.name.as_str());
        live.outputs.iter().any(|l| {
            *l.name == *o.spec.name
                && (l.dead_letter_only != dead_letter_only
                    || l.spec.as_ref().is_none_or(|old| {
                        old.inputs
                            .as_ref()
                            .map(|v| v.iter().map(|(n, _)| n).collect::<Vec<_>>())
                            != o.inputs
                                .as_ref()
                                .map(|v| v.iter().map(|(n, _)| n).collect())
                            || !same_optional_node(old.when.as_ref(), o.when.as_ref())
                    }))
        })
    })
}

/// The components a reload starts, built against the running pipeline's registry.
struct Built {
    inputs: Vec<(BuiltInput, ComponentSpec)>,
    outputs: Vec<(BuiltOutput, OutputSpec)>,
    chain: Vec<Slot>,
    chain_specs: Vec<LiveStep>,
    /// Counters created for components that did not exist (removed again if the build fails).
    created: Vec<Arc<ComponentMetrics>>,
}

/// The counters of `name`: the running component's when its type is the same (so that they go
/// on counting across the reload), else new ones.
fn metrics_for(
    registry: &Registry,
    old: Option<&Arc<ComponentMetrics>>,
    kind: ComponentKind,
    name: &str,
    type_name: &'static str,
    created: &mut Vec<Arc<ComponentMetrics>>,
) -> Arc<ComponentMetrics> {
    match old {
        Some(m) if m.type_name == type_name => {
            m.clear_failed();
            m.clone()
        }
        _ => {
            let m = registry.component(kind, name, type_name);
            created.push(m.clone());
            m
        }
    }
}

fn registered_since(registry: &Registry, before: usize) -> Vec<Arc<dyn Collector>> {
    super::registered_since(registry, before)
}

fn build(live: &Live, cfg: &PipelineConfig, plan: &Plan) -> Result<Built, ConfigErrors> {
    let registry = live.registry.clone();
    let ctx = BuildContext {
        data_dir: live.data_dir.clone(),
        registry: registry.clone(),
        endpoints: live.endpoints.clone(),
    };
    let mut errs = ConfigErrors::default();
    let mut built = Built {
        inputs: Vec::new(),
        outputs: Vec::new(),
        chain: Vec::new(),
        chain_specs: Vec::new(),
        created: Vec::new(),
    };
    let mut collectors: Vec<Arc<dyn Collector>> = Vec::new();
    for spec in &cfg.inputs {
        if !plan.inputs_added.contains(&spec.name) && !plan.inputs_changed.contains(&spec.name) {
            continue;
        }
        let old = live.inputs.iter().find(|i| *i.name == *spec.name);
        let before = registry.collectors().len();
        match inputs::build(spec, &ctx) {
            Ok(input) => {
                let own = registered_since(&registry, before);
                collectors.extend(own.iter().cloned());
                let metrics = metrics_for(
                    &registry,
                    old.map(|i| &i.metrics),
                    ComponentKind::Input,
                    &spec.name,
                    static_type(inputs::TYPES, spec),
                    &mut built.created,
                );
                if input.reports_started() {
                    metrics.set_starting();
                }
                built.inputs.push((
                    BuiltInput {
                        name: Arc::from(spec.name.as_str()),
                        input,
                        metrics,
                        collectors: own,
                    },
                    spec.clone(),
                ));
            }
            Err(e) => errs.push_de(&spec.file, spec.mark, &spec.path, e),
        }
    }
    let dead_letter_targets: HashSet<&str> = cfg
        .outputs
        .iter()
        .filter_map(|o| o.dead_letter.as_ref().map(|(n, _)| n.as_str()))
        .collect();
    for o in &cfg.outputs {
        if !plan.outputs_added.contains(&o.spec.name)
            && !plan.outputs_changed.contains(&o.spec.name)
        {
            continue;
        }
        let old = live.outputs.iter().find(|l| *l.name == *o.spec.name);
        let when = match &o.when {
            None => None,
            Some(n) => match Condition::from_node(n, &format!("{}.when", o.spec.path)) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    errs.push_de(&o.spec.file, o.spec.mark, &o.spec.path, e);
                    None
                }
            },
        };
        let buffer = match &o.buffer {
            None => None,
            Some(node) => {
                let path = format!("{}.buffer", o.spec.path);
                match crate::config::from_node::<outputs::buffer::Config>(node, &path) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        errs.push_de(&o.spec.file, node.mark, &path, e);
                        None
                    }
                }
            }
        };
        let before = registry.collectors().len();
        match outputs::build(&o.spec, &ctx) {
            Ok(output) => {
                let own = registered_since(&registry, before);
                collectors.extend(own.iter().cloned());
                let metrics = metrics_for(
                    &registry,
                    old.map(|l| &l.metrics),
                    ComponentKind::Output,
                    &o.spec.name,
                    static_type(outputs::TYPES, &o.spec),
                    &mut built.created,
                );
                built.outputs.push((
                    BuiltOutput {
                        name: Arc::from(o.spec.name.as_str()),
                        output,
                        metrics,
                        inputs: o
                            .inputs
                            .as_ref()
                            .map(|l| l.iter().map(|(n, _)| n.clone()).collect()),
                        dead_letter: o.dead_letter.as_ref().map(|(n, _)| n.clone()),
                        dead_letter_only: o.inputs.is_none()
                            && dead_letter_targets.contains(o.spec.name.as_str()),
                        when,
                        buffer,
                        collectors: own,
                    },
                    o.clone(),
                ));
            }
            Err(e) => errs.push_de(&o.spec.file, o.spec.mark, &o.spec.path, e),
        }
    }
    for (p, keep) in cfg.processors.iter().zip(&plan.chain) {
        if let Some(i) = keep {
            built.chain.push(Slot::Keep(*i));
            built.chain_specs.push(LiveStep {
                spec: Some(p.clone()),
                metrics: live.chain[*i].metrics.clone(),
            });
            continue;
        }
        let old = live.chain.iter().find(|s| *s.metrics.name == *p.spec.name);
        let before = registry.collectors().len();
        let processor = processors::build(&p.spec, &ctx);
        let when = p
            .when
            .as_ref()
            .map(|n| Condition::from_node(n, &format!("{}.when", p.spec.path)))
            .transpose();
        let own = registered_since(&registry, before);
        collectors.extend(own.iter().cloned());
        match (processor, when) {
            (Ok(processor), Ok(when)) => {
                let metrics = metrics_for(
                    &registry,
                    old.map(|s| &s.metrics),
                    ComponentKind::Processor,
                    &p.spec.name,
                    static_type(processors::TYPES, &p.spec),
                    &mut built.created,
                );
                built.chain_specs.push(LiveStep {
                    spec: Some(p.clone()),
                    metrics: metrics.clone(),
                });
                // The point of its name: a tap on the processor goes on across the rebuild.
                let tap =
                    live.taps
                        .point(ComponentKind::Processor, &p.spec.name, metrics.type_name);
                built.chain.push(Slot::New(Step {
                    processor,
                    when,
                    metrics,
                    tap,
                    collectors: own,
                }));
            }
            (a, b) => {
                if let Err(e) = a {
                    errs.push_de(&p.spec.file, p.spec.mark, &p.spec.path, e);
                }
                if let Err(e) = b {
                    errs.push_de(&p.spec.file, p.spec.mark, &p.spec.path, e);
                }
            }
        }
    }
    if errs.is_empty() {
        return Ok(built);
    }
    for c in &collectors {
        registry.unregister(c);
    }
    for m in &built.created {
        registry.remove_component(m);
    }
    Err(errs)
}

/// Drains what is replaced and starts what was built, in the order that loses nothing:
/// inputs that go stop reading and wait for their batches to be acknowledged (the outputs still
/// run); the router takes the new chain and routes (queues of new outputs exist already); the
/// outputs that go deliver what their queue holds; then the new outputs and inputs start, the
/// latter from the state their predecessor committed.
async fn replace(
    live: &mut Live,
    cfg: &PipelineConfig,
    plan: Plan,
    built: Built,
    shutdown: &mut crate::pipeline::channel::Shutdown,
) -> Result<(), Vec<String>> {
    let every = live
        .global
        .shutdown_timeout
        .std()
        .max(std::time::Duration::from_secs(1));
    let registry = live.registry.clone();
    let stopping = || vec!["shutdown asked during the reload: stopping instead".to_owned()];

    // 1. Inputs that go.
    let going: Vec<usize> = live
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            plan.inputs_changed.iter().any(|n| **n == *i.name)
                || plan.inputs_removed.iter().any(|n| **n == *i.name)
        })
        .map(|(k, _)| k)
        .collect();
    let mut old_inputs = Vec::new();
    for k in going.into_iter().rev() {
        old_inputs.push(live.inputs.remove(k));
    }
    for i in &old_inputs {
        i.stop.trigger();
    }
    for i in &mut old_inputs {
        let what = format!("input {}", i.name);
        if !live::wait_ended(&what, &mut i.task, shutdown, every).await {
            // Left in the list so that the shutdown's drain waits for them.
            live.inputs.append(&mut old_inputs);
            return Err(stopping());
        }
    }
    for i in &old_inputs {
        for c in &i.collectors {
            registry.unregister(c);
        }
        if plan.inputs_removed.iter().any(|n| **n == *i.name) {
            registry.remove_component(&i.metrics);
        }
    }

    // 2. Queues for the new outputs; the ones they replace leave the list.
    let mut old_outputs = Vec::new();
    let mut k = 0;
    while k < live.outputs.len() {
        if plan.outputs_replaced(&live.outputs[k].name) {
            old_outputs.push(live.outputs.remove(k));
        } else {
            k += 1;
        }
    }
    let new_outputs: Vec<(BuiltOutput, Option<OutputSpec>)> = built
        .outputs
        .into_iter()
        .map(|(o, spec)| (o, Some(spec)))
        .collect();
    let pending: Vec<PendingOutput> = live.queue_outputs(new_outputs);
    // Kept outputs take their new `inputs:` and `when:`.
    let dead_letter_targets: HashSet<&str> = cfg
        .outputs
        .iter()
        .filter_map(|o| o.dead_letter.as_ref().map(|(n, _)| n.as_str()))
        .collect();
    for l in &mut live.outputs {
        if let Some(o) = cfg.outputs.iter().find(|o| *o.spec.name == *l.name) {
            l.inputs = o
                .inputs
                .as_ref()
                .map(|v| v.iter().map(|(n, _)| n.clone()).collect());
            l.when = match &o.when {
                None => None,
                Some(n) => Condition::from_node(n, &format!("{}.when", o.spec.path))
                    .ok()
                    .map(Arc::new),
            };
            l.dead_letter_only =
                o.inputs.is_none() && dead_letter_targets.contains(o.spec.name.as_str());
            l.spec = Some(o.clone());
        }
    }

    // 3. The router switches between two batches.
    let mut names: Vec<(Arc<str>, &'static str)> = live
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.metrics.type_name))
        .collect();
    names.extend(
        built
            .inputs
            .iter()
            .map(|(i, _)| (i.name.clone(), i.metrics.type_name)),
    );
    let routes = live.routes(&names);
    let (done, left) = oneshot::channel();
    let rewire = Rewire {
        chain: built.chain,
        routes,
        done,
    };
    if live.rewires.send(rewire).await.is_err() {
        return Err(vec!["the router has stopped".into()]);
    }
    let removed_steps: Vec<Step> = tokio::select! {
        r = left => r.unwrap_or_default(),
        _ = shutdown.wait() => return Err(stopping()),
    };
    let kept_metrics: Vec<Arc<ComponentMetrics>> = built
        .chain_specs
        .iter()
        .map(|s| s.metrics.clone())
        .collect();
    for s in removed_steps {
        for c in &s.collectors {
            registry.unregister(c);
        }
        if !kept_metrics.iter().any(|m| Arc::ptr_eq(m, &s.metrics)) {
            registry.remove_component(&s.metrics);
        }
    }
    live.chain = built.chain_specs;
    live.place_event_building();

    // 4. Outputs that go deliver what their queue holds.
    let mut old_tasks = Vec::new();
    for o in old_outputs {
        for c in &o.collectors {
            registry.unregister(c);
        }
        if plan.outputs_removed.iter().any(|n| **n == *o.name) {
            registry.remove_component(&o.metrics);
        }
        if let Some(t) = o.task {
            old_tasks.push((o.name.clone(), t, o.metrics.clone(), o.retire));
        }
        // Its sender goes with it.
    }
    while let Some((name, mut task, metrics, retire)) = old_tasks.pop() {
        let what = format!("output {name}");
        if !live::wait_replaced(&what, &mut task, shutdown, every, &metrics, &retire).await {
            // The shutdown's drain waits for the old outputs, and starts the new ones so that
            // it delivers their queues too.
            live.retiring.push(task);
            live.retiring
                .extend(old_tasks.into_iter().map(|(_, t, _, _)| t));
            if let Err(e) = live.start_outputs(pending) {
                tracing::error!("{e:#}");
            }
            return Err(stopping());
        }
    }

    // 5. The new outputs, then the new inputs.
    if let Err(e) = live.start_outputs(pending) {
        return Err(vec![format!("{e:#}")]);
    }
    for (i, spec) in built.inputs {
        live.start_input(i, Some(spec));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> PipelineConfig {
        crate::config::parse_str("t.yaml", text, &|_| None).expect("valid test pipeline")
    }

    #[test]
    fn the_same_component_written_elsewhere_in_the_file_is_unchanged() {
        let a = cfg("inputs:\n  a: { type: stdin }\noutputs:\n  o: { type: stdout }\n");
        let b = cfg("\n\ninputs:\n  a:\n    type: stdin\noutputs:\n  o:\n    type: stdout\n");
        assert!(same_component(&a.inputs[0], &b.inputs[0]));
        assert!(same_output(&a.outputs[0], &b.outputs[0]));
        let c = cfg("inputs:\n  a: { type: stdin, max_line_bytes: 10KiB }\noutputs:\n  o: { type: stdout }\n");
        assert!(!same_component(&a.inputs[0], &c.inputs[0]));
    }
}
