//! The running pipeline: builds every component from the pipeline file (collecting all errors),
//! wires inputs → processors → outputs with bounded queues and routing by `inputs:`, and runs
//! until the inputs end or shutdown is asked, draining what is in flight within the deadline.

mod apply;
pub mod channel;
mod live;
pub mod reload;
mod route;
pub mod state_lock;
mod workers;

use crate::config::{ComponentSpec, ConfigErrors, PipelineConfig};
use crate::event::Batch;
use crate::inputs::{self, BuildContext, Input};
use crate::outputs::{self, Output};
use crate::processors::{self, condition, condition::Condition};
use crate::telemetry::metrics::{Collector, ComponentKind, ComponentMetrics, Registry};
use crate::telemetry::server::Endpoints;
use crate::telemetry::tap::{TapHub, TapPoint};
use channel::{BatchSender, Shutdown};
use route::Step;
use std::collections::HashSet;
use std::sync::Arc;

struct BuiltInput {
    name: Arc<str>,
    input: Box<dyn Input>,
    metrics: Arc<ComponentMetrics>,
    /// Metric collectors it registered when built (removed with it by a reload).
    collectors: Vec<Arc<dyn Collector>>,
}

struct BuiltOutput {
    name: Arc<str>,
    output: Box<dyn Output>,
    metrics: Arc<ComponentMetrics>,
    /// Input names routed here; `None` for every input.
    inputs: Option<Vec<String>>,
    dead_letter: Option<String>,
    /// Only receives other outputs' dead letters.
    dead_letter_only: bool,
    /// `when:`: only matching events are sent to this output.
    when: Option<Arc<Condition>>,
    /// `buffer:` between the output's queue and the output.
    buffer: Option<outputs::buffer::Config>,
    collectors: Vec<Arc<dyn Collector>>,
}

/// An output given in code rather than in the pipeline file.
pub struct ExtraOutput {
    pub name: String,
    /// Input names routed to it; `None` for every input.
    pub inputs: Option<Vec<String>>,
    pub output: Box<dyn Output>,
}

/// A pipeline built from its file, ready to `run`.
pub struct Pipeline {
    pub registry: Arc<Registry>,
    /// Endpoints components added (served next to `/metrics`).
    pub endpoints: Endpoints,
    /// Where `trawl tap` watches events (`/api/tap`).
    pub taps: Arc<TapHub>,
    inputs: Vec<BuiltInput>,
    steps: Vec<Step>,
    outputs: Vec<BuiltOutput>,
    pub config: PipelineConfig,
    /// The locks on its inputs' read positions and outputs' disk buffers, when the command
    /// took them (`trawl run`): a reload takes those of what it adds.
    pub state_locks: Option<Arc<std::sync::Mutex<state_lock::StateLocks>>>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Everything in flight was delivered (false: the shutdown deadline passed first).
    pub drained: bool,
    /// When not drained: events still queued for an output or in an output's hands (not counted:
    /// what a disk buffer keeps on disk, which is replayed at the next start).
    pub undelivered: u64,
    /// Components that failed, as `kind name: reason`.
    pub failures: Vec<String>,
    /// Components that stopped with lines read and not delivered (the file input's given-up
    /// batches, still failing at the end of the drain), as `kind name: what`.
    pub drain_incomplete: Vec<String>,
    /// Inputs that cannot read again and lost events an output failed, as `kind name: what`.
    pub lost: Vec<String>,
}

impl Pipeline {
    /// Builds every component without starting any. `extra_inputs` are inputs the command line
    /// adds (such as `tee`'s child process), routed like the file's own.
    pub fn build(
        config: PipelineConfig,
        extra_inputs: Vec<(String, Box<dyn Input>)>,
    ) -> Result<Pipeline, ConfigErrors> {
        Self::build_with_outputs(config, extra_inputs, Vec::new())
    }

    /// `build`, plus outputs given in code (embedding trawl, tests), routed like the file's own.
    pub fn build_with_outputs(
        config: PipelineConfig,
        extra_inputs: Vec<(String, Box<dyn Input>)>,
        extra_outputs: Vec<ExtraOutput>,
    ) -> Result<Pipeline, ConfigErrors> {
        let file = config.file.clone();
        let mut errs = ConfigErrors::default();
        let registry = Registry::new();
        let endpoints = Endpoints::default();
        let taps = TapHub::new(&registry, &endpoints);
        let ctx = BuildContext {
            data_dir: config.global.data_dir.clone(),
            registry: registry.clone(),
            endpoints: endpoints.clone(),
        };

        let mut built_inputs = Vec::new();
        let extra_names: Vec<String> = extra_inputs.iter().map(|(n, _)| n.clone()).collect();
        for spec in &config.inputs {
            if extra_names.contains(&spec.name) {
                errs.push(
                    &spec.file,
                    spec.mark,
                    &spec.path,
                    format!(
                        "the name `{}` is the input this command adds (its own lines or packets): expected another name",
                        spec.name
                    ),
                );
            }
        }
        for (name, input) in extra_inputs {
            let metrics = registry.component(ComponentKind::Input, &name, "builtin");
            built_inputs.push(BuiltInput {
                name: Arc::from(name.as_str()),
                input,
                metrics,
                collectors: Vec::new(),
            });
        }
        for spec in &config.inputs {
            let before = registry.collectors().len();
            match inputs::build(spec, &ctx) {
                Ok(input) => {
                    let metrics = registry.component(
                        ComponentKind::Input,
                        &spec.name,
                        static_type(inputs::TYPES, spec),
                    );
                    if input.reports_started() {
                        metrics.set_starting();
                    }
                    built_inputs.push(BuiltInput {
                        collectors: registered_since(&registry, before),
                        name: Arc::from(spec.name.as_str()),
                        input,
                        metrics,
                    })
                }
                Err(e) => errs.push_de(&spec.file, spec.mark, &spec.path, e),
            }
        }
        if built_inputs.is_empty() && config.inputs.is_empty() {
            errs.push(
                &file,
                crate::config::Mark { line: 1, col: 1 },
                "inputs",
                "no inputs: expected at least one entry under `inputs:`",
            );
        }

        let mut steps = Vec::new();
        for p in &config.processors {
            let before = registry.collectors().len();
            let processor = processors::build(&p.spec, &ctx);
            let when = p
                .when
                .as_ref()
                .map(|n| Condition::from_node(n, &format!("{}.when", p.spec.path)))
                .transpose();
            match (processor, when) {
                (Ok(processor), Ok(when)) => steps.push(Step {
                    collectors: registered_since(&registry, before),
                    processor,
                    when,
                    metrics: registry.component(
                        ComponentKind::Processor,
                        &p.spec.name,
                        static_type(processors::TYPES, &p.spec),
                    ),
                    tap: taps.point(
                        ComponentKind::Processor,
                        &p.spec.name,
                        static_type(processors::TYPES, &p.spec),
                    ),
                }),
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

        // Names as written, whether or not the input built, so one error does not cause others.
        let input_names: HashSet<&str> = built_inputs
            .iter()
            .map(|i| &*i.name)
            .chain(config.inputs.iter().map(|s| s.name.as_str()))
            .collect();
        let output_names: HashSet<&str> = config
            .outputs
            .iter()
            .map(|o| o.spec.name.as_str())
            .collect();
        let dead_letter_targets: HashSet<&str> = config
            .outputs
            .iter()
            .filter_map(|o| o.dead_letter.as_ref().map(|(n, _)| n.as_str()))
            .collect();
        let unknown_input = |name: &str| {
            let mut known: Vec<&str> = input_names.iter().copied().collect();
            known.sort();
            format!(
                "unknown input `{name}`, expected one of {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // `when: {input: ...}` of processors and outputs: a misspelt name matches nothing, and
        // the events an output's condition leaves out are counted as delivered.
        let whens = config
            .processors
            .iter()
            .map(|p| (&p.spec, p.when.as_ref()))
            .chain(config.outputs.iter().map(|o| (&o.spec, o.when.as_ref())));
        for (spec, when) in whens {
            for (name, mark) in when.map(condition::input_names).unwrap_or_default() {
                if !input_names.contains(name.as_str()) {
                    errs.push(
                        &spec.file,
                        mark,
                        &format!("{}.when.input", spec.path),
                        unknown_input(&name),
                    );
                }
            }
        }
        let mut used_inputs: HashSet<String> = HashSet::new();
        let mut outputs_built = Vec::new();
        for o in &config.outputs {
            for (name, mark) in o.inputs.iter().flatten() {
                if !input_names.contains(name.as_str()) {
                    errs.push(
                        &o.spec.file,
                        *mark,
                        &format!("{}.inputs", o.spec.path),
                        unknown_input(name),
                    );
                }
            }
            if let Some((dl, mark)) = &o.dead_letter {
                if dl == &o.spec.name || !output_names.contains(dl.as_str()) {
                    errs.push(&o.spec.file, *mark, &format!("{}.dead_letter", o.spec.path),
                        format!("`{dl}` is not another output of this pipeline: expected the name of an output"));
                }
            }
            let dead_letter_only =
                o.inputs.is_none() && dead_letter_targets.contains(o.spec.name.as_str());
            if !dead_letter_only {
                match &o.inputs {
                    None => used_inputs.extend(input_names.iter().map(|s| s.to_string())),
                    Some(list) => {
                        if list.is_empty() {
                            errs.push(
                                &o.spec.file,
                                o.spec.mark,
                                &format!("{}.inputs", o.spec.path),
                                "empty `inputs:` list: this output would receive nothing",
                            );
                        }
                        used_inputs.extend(list.iter().map(|(n, _)| n.clone()));
                    }
                }
            }
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
                Some(node) => match crate::config::from_node::<outputs::buffer::Config>(
                    node,
                    &format!("{}.buffer", o.spec.path),
                ) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        errs.push_de(
                            &o.spec.file,
                            node.mark,
                            &format!("{}.buffer", o.spec.path),
                            e,
                        );
                        None
                    }
                },
                None => None,
            };
            let before = registry.collectors().len();
            match outputs::build(&o.spec, &ctx) {
                Ok(output) => outputs_built.push(BuiltOutput {
                    collectors: registered_since(&registry, before),
                    when,
                    name: Arc::from(o.spec.name.as_str()),
                    output,
                    metrics: registry.component(
                        ComponentKind::Output,
                        &o.spec.name,
                        static_type(outputs::TYPES, &o.spec),
                    ),
                    inputs: o
                        .inputs
                        .as_ref()
                        .map(|l| l.iter().map(|(n, _)| n.clone()).collect()),
                    dead_letter: o.dead_letter.as_ref().map(|(n, _)| n.clone()),
                    dead_letter_only,
                    buffer,
                }),
                Err(e) => errs.push_de(&o.spec.file, o.spec.mark, &o.spec.path, e),
            }
        }
        dead_letter_cycles(&config.outputs, &mut errs);
        for o in extra_outputs {
            match &o.inputs {
                None => used_inputs.extend(input_names.iter().map(|s| s.to_string())),
                Some(list) => used_inputs.extend(list.iter().cloned()),
            }
            outputs_built.push(BuiltOutput {
                name: Arc::from(o.name.as_str()),
                output: o.output,
                metrics: registry.component(ComponentKind::Output, &o.name, "builtin"),
                inputs: o.inputs,
                dead_letter: None,
                dead_letter_only: false,
                when: None,
                buffer: None,
                collectors: Vec::new(),
            });
        }
        if outputs_built.is_empty() && config.outputs.is_empty() {
            errs.push(
                &file,
                crate::config::Mark { line: 1, col: 1 },
                "outputs",
                "no outputs: expected at least one entry under `outputs:`",
            );
        } else {
            for name in &extra_names {
                if !used_inputs.contains(name) {
                    errs.push(
                        &file,
                        crate::config::Mark { line: 1, col: 1 },
                        "outputs",
                        format!(
                            "no output takes the input `{name}` this command adds (its own lines or packets): list it in an output's `inputs:`, or leave `inputs:` out"
                        ),
                    );
                }
            }
            for spec in &config.inputs {
                if !used_inputs.contains(&spec.name) {
                    errs.push(
                        &spec.file,
                        spec.mark,
                        &spec.path,
                        format!(
                            "input `{}` is not routed to any output (unused component)",
                            spec.name
                        ),
                    );
                }
            }
        }

        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Pipeline {
            registry,
            endpoints,
            taps,
            inputs: built_inputs,
            steps,
            outputs: outputs_built,
            config,
            state_locks: None,
        })
    }

    /// The inputs that keep a read position on disk, each with the file it keeps it in
    /// (`Input::state_file`).
    pub fn state_files(&self) -> Vec<(&str, &std::path::Path)> {
        self.inputs
            .iter()
            .filter_map(|i| Some((&*i.name, i.input.state_file()?)))
            .collect()
    }

    /// What `state_lock` guards: each input's read positions and each output's disk buffer,
    /// with who keeps it (`input logs`).
    pub fn states(&self) -> Vec<(String, std::path::PathBuf)> {
        self.state_files()
            .into_iter()
            .map(|(input, file)| (format!("input {input}"), file.to_path_buf()))
            .chain(
                self.disk_buffers()
                    .into_iter()
                    .map(|(output, dir)| (format!("output {output}"), dir)),
            )
            .collect()
    }

    /// The outputs with a disk buffer, each with the folder it keeps it in.
    pub fn disk_buffers(&self) -> Vec<(&str, std::path::PathBuf)> {
        self.outputs
            .iter()
            .filter(|o| {
                o.buffer
                    .as_ref()
                    .is_some_and(|b| b.kind == outputs::buffer::BufferKind::Disk)
            })
            .map(|o| {
                (
                    &*o.name,
                    outputs::buffer::disk_dir(&self.config.global.data_dir, &o.name),
                )
            })
            .collect()
    }

    /// Runs until every input has ended, or `shutdown` fires; then drains within the pipeline's
    /// `shutdown_timeout`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<RunReport> {
        reload::run(self, shutdown, None).await
    }
}

/// The collectors registered since there were `before` of them, less those shared by several
/// components.
fn registered_since(registry: &Registry, before: usize) -> Vec<Arc<dyn Collector>> {
    registry
        .collectors()
        .into_iter()
        .skip(before)
        .filter(|c| !c.shared())
        .collect()
}

/// Reports every dead-letter cycle (`a.dead_letter: b`, `b.dead_letter: a`) once, at the
/// `dead_letter:` of its first member in file order: a letter rejected again would bounce
/// between the outputs forever, growing at each turn, and shutdown could never drain them.
/// Self-references are reported where `dead_letter:` is checked.
fn dead_letter_cycles(outputs: &[crate::config::OutputSpec], errs: &mut ConfigErrors) {
    let target = |name: &str| {
        outputs
            .iter()
            .find(|o| o.spec.name == name)
            .and_then(|o| o.dead_letter.as_ref())
            .map(|(n, _)| n.as_str())
    };
    for (i, o) in outputs.iter().enumerate() {
        let Some((first, mark)) = &o.dead_letter else {
            continue;
        };
        let start = o.spec.name.as_str();
        let mut chain = vec![start];
        let mut next = Some(first.as_str());
        while let Some(n) = next {
            if n == start {
                break;
            }
            if chain.contains(&n) {
                // A cycle that does not pass through `start`: reported from its own members.
                next = None;
                break;
            }
            chain.push(n);
            next = target(n);
        }
        let is_first_member = chain.iter().all(|m| {
            outputs
                .iter()
                .position(|x| x.spec.name == *m)
                .is_none_or(|p| p >= i)
        });
        if next.is_some() && chain.len() > 1 && is_first_member {
            chain.push(start);
            errs.push(
                &o.spec.file,
                *mark,
                &format!("{}.dead_letter", o.spec.path),
                format!(
                    "dead-letter cycle {}: an event rejected again would bounce between these outputs forever; expected the last output of a dead-letter chain to have no `dead_letter:`",
                    chain.join(" → ")
                ),
            );
        }
    }
}

/// Events queued for the router or an output, or taken by an output and not settled.
fn undelivered(registry: &Registry) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    registry
        .components()
        .iter()
        .map(|c| {
            let queued = c.queue_depth.load(Relaxed).max(0) as u64;
            let taken = match c.kind {
                ComponentKind::Output => c
                    .events_in
                    .load(Relaxed)
                    .saturating_sub(c.events_out.load(Relaxed) + c.events_failed.load(Relaxed)),
                _ => 0,
            };
            queued + taken
        })
        .sum()
}

fn static_type(known: &'static [&'static str], spec: &ComponentSpec) -> &'static str {
    known
        .iter()
        .find(|t| **t == spec.type_name)
        .copied()
        .unwrap_or("unknown")
}

/// Where the router sends an input's batches: an output's queue, its `when:` condition, and
/// the output's tap point (what it is handed).
#[derive(Clone)]
pub(crate) struct Target {
    pub sender: BatchSender,
    pub when: Option<Arc<Condition>>,
    pub tap: Arc<TapPoint>,
}

/// Sends a batch to every target: copies for all but the last, each with its own ack handle,
/// each holding only the events its output's `when:` accepts. A copy left empty is settled at
/// once, so a filtered-out event never holds back the input's acknowledgements.
pub(crate) async fn fan_out(batch: Batch, targets: &[Target]) {
    let Some((last, rest)) = targets.split_last() else {
        batch.ack.delivered();
        return;
    };
    let mut batch = batch;
    for t in rest {
        let mut copy = match &t.when {
            None => batch.copy_with(batch.ack.fork()),
            Some(c) => Batch::new(
                batch
                    .events_mut()
                    .iter()
                    .filter(|e| c.matches(e))
                    .cloned()
                    .collect(),
                batch.ack.fork(),
            ),
        };
        t.tap.offer_batch(&mut copy);
        send(&t.sender, copy).await;
    }
    if let Some(c) = &last.when {
        batch.events_mut().retain(|e| c.matches(e));
    }
    last.tap.offer_batch(&mut batch);
    send(&last.sender, batch).await;
}

async fn send(to: &BatchSender, batch: Batch) {
    if batch.is_empty() {
        batch.ack.delivered();
    } else if let Err(channel::Closed(b)) = to.send(batch).await {
        b.ack.failed();
    }
}
