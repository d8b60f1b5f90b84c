//! The commands of the `trawl` binary: `run` a pipeline, `validate` a pipeline file. Kept in
//! the library so that tests drive the same code paths as the binary.

pub mod monitor;
mod once;
pub mod pcap;
pub mod tap;
mod test_output;
pub mod top;

use crate::config::{self, ConfigError, ConfigErrors, PipelineConfig, Sources};
use crate::pipeline::channel::shutdown_pair;
use crate::pipeline::{reload, state_lock, Pipeline};
use crate::telemetry::{self, server};
use clap::{Parser, Subcommand};

pub mod tee;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The pipeline used by `trawl run` when neither `-c`, `TRAWL_CONFIG` nor
/// `/etc/trawl/trawl.yaml` names one.
pub const DEFAULT_PIPELINE: &str = config::sources::EMBEDDED_PIPELINE;

#[derive(Parser, Debug)]
#[command(
    name = "trawl",
    version,
    about = "Ships logs and network traffic: tail files, tee stdout, capture HTTP, deliver to Elasticsearch, Kafka or stdout."
)]
pub struct Cli {
    /// Level of trawl's own logs (a tracing filter: error, warn, info, debug, trace).
    #[arg(long, global = true, env = "TRAWL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Format of trawl's own logs on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline.
    Run {
        /// A pipeline file, or a folder of them (*.yaml, *.yml); repeatable, merged in order.
        /// Default: $TRAWL_CONFIG (paths separated by `:`), else /etc/trawl/trawl.yaml when it
        /// exists, else the embedded pipeline.
        #[arg(short, long)]
        config: Vec<PathBuf>,
        /// Read every file input to its current end, deliver, commit the offsets and exit 0
        /// (stdin and pcap_file inputs end at their end as ever; live inputs are refused).
        #[arg(long)]
        once: bool,
        /// Reload when a pipeline file changes (every file and folder of the sources is
        /// watched, so a Kubernetes ConfigMap's symlink swap counts). SIGHUP and
        /// `POST /-/reload` reload in any case.
        #[arg(long)]
        watch_config: bool,
    },
    /// Check a pipeline: parse, interpolate, build every component; report every error.
    Validate {
        /// As for `run`: files or folders, repeatable; the same defaults.
        #[arg(short, long)]
        config: Vec<PathBuf>,
        /// Validate a pipeline for `trawl tee -c`: its input, named `tee`, is the child's lines.
        #[arg(long)]
        tee: bool,
    },
    /// Print the embedded default pipeline.
    DefaultPipeline,
    /// Check what a pipeline connects to.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
    /// Decode a capture file: flows and HTTP transactions as JSON lines on stdout (or, with
    /// -c, through that pipeline's processors and outputs as the input `pcap`).
    Pcap(pcap::PcapArgs),
    /// Run a command, pass its output through, and ship its lines (replaces `app | tee -a log`).
    Tee(tee::TeeArgs),
    /// Print the events a running trawl sees at inputs, processors or outputs, live.
    Tap(tap::TapArgs),
    /// A live table of a running trawl's components: rates, errors, drops, queues; q quits.
    Top(top::TopArgs),
}

#[derive(Subcommand, Debug)]
pub enum TestCommand {
    /// Connect to every output and say what works (reachable, version, credentials, index
    /// template; Kafka brokers, topic, partition leaders; file folders); exit 1 when one fails.
    Output {
        /// As for `run`: files or folders, repeatable; the same defaults.
        #[arg(short, long)]
        config: Vec<PathBuf>,
    },
}

/// Whether `run_pipeline_with` handles SIGTERM/SIGINT itself (`trawl run`) or leaves signals
/// to the caller (`trawl tee` forwards them to its child and ends when the child does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signals {
    Handle,
    Ignore,
}

/// Loads the pipeline from `path`, or the embedded default.
pub fn load(path: Option<&PathBuf>) -> Result<PipelineConfig, ConfigErrors> {
    match path {
        Some(p) => config::load_file(p),
        None => config::parse_str("<default pipeline>", DEFAULT_PIPELINE, &|v| {
            std::env::var(v).ok()
        }),
    }
}

fn print_errors(errs: &ConfigErrors) {
    for e in &errs.0 {
        eprintln!("error: {e}");
    }
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init_logging(&cli.log_level, cli.log_format) {
        eprintln!("error: {e:#}");
        return 2;
    }
    match cli.command {
        Command::Validate { config, tee: true } if config.is_empty() => {
            // As `trawl tee` itself: its pipeline comes from -c only, never TRAWL_CONFIG.
            eprintln!("error: validate --tee needs -c PIPELINE (trawl tee reads no other)");
            2
        }
        Command::Validate { config, tee } => validate(&Sources::resolve(&config), tee),
        Command::Run {
            config,
            once,
            watch_config,
        } => run(&Sources::resolve(&config), once, watch_config),
        Command::Pcap(args) => pcap::run(args),
        Command::Tee(args) => tee::run(args),
        Command::Test {
            what: TestCommand::Output { config },
        } => test_output::run(&Sources::resolve(&config)),
        Command::Tap(args) => tap::run(args),
        Command::Top(args) => top::run(args),
        Command::DefaultPipeline => {
            print!("{DEFAULT_PIPELINE}");
            0
        }
    }
}

fn validate(sources: &Sources, tee: bool) -> i32 {
    let path = sources.describe();
    let invalid = |mut errs: ConfigErrors| {
        // File by file in the order given, each from its top.
        let order: Vec<String> = sources
            .files()
            .unwrap_or_default()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let rank = |f: &str| order.iter().position(|o| o == f).unwrap_or(usize::MAX);
        errs.0
            .sort_by_key(|e| (rank(&e.file), e.mark.line, e.mark.col));
        errs.0.dedup();
        print_errors(&errs);
        eprintln!(
            "{path}: invalid ({} error{})",
            errs.0.len(),
            if errs.0.len() == 1 { "" } else { "s" }
        );
        1
    };
    let (cfg, mut errs) = match sources.load_partial() {
        Ok(c) => c,
        Err(errs) => return invalid(errs),
    };
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    for r in crate::inputs::orphans::likely_renames(&cfg.global.data_dir, &cfg.inputs) {
        eprintln!("warning: {r}");
    }
    let (ni, np, no) = (cfg.inputs.len(), cfg.processors.len(), cfg.outputs.len());
    // Components are built even when the file already has errors, to report everything at once.
    // For `tee`, a stand-in input named `tee` (never started) takes the child's place.
    let extra: Vec<(String, Box<dyn crate::inputs::Input>)> = if tee {
        vec![("tee".to_owned(), tee::stand_in())]
    } else {
        Vec::new()
    };
    if let Err(more) = Pipeline::build(cfg, extra) {
        // "no inputs" when `inputs:` itself or every entry under it was refused already says
        // nothing new.
        let refused_entries = |section: &str| {
            errs.0.iter().any(|e| {
                e.path == section
                    || e.path
                        .strip_prefix(section)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        };
        let (no_inputs, no_outputs) = (refused_entries("inputs"), refused_entries("outputs"));
        // One error per value: a value refused while reading the file (an unset `${VAR:?}`)
        // is not refused again for the text left in it.
        let already = |e: &ConfigError| {
            errs.0
                .iter()
                .any(|o| o.file == e.file && o.mark == e.mark && o.path == e.path)
        };
        let more: Vec<_> = more
            .0
            .into_iter()
            .filter(|e| {
                !(no_inputs && e.path == "inputs" && e.message.starts_with("no inputs")
                    || no_outputs && e.path == "outputs" && e.message.starts_with("no outputs")
                    || already(e))
            })
            .collect();
        errs.0.extend(more);
    }
    if errs.is_empty() {
        println!("{path}: valid ({ni} inputs, {np} processors, {no} outputs)");
        0
    } else {
        invalid(errs)
    }
}

fn run(sources: &Sources, once: bool, watch_config: bool) -> i32 {
    catch_early_hup();
    let mut cfg = match sources.load() {
        Ok(c) => c,
        Err(errs) => {
            print_errors(&errs);
            return 1;
        }
    };
    if once {
        if let Err(errs) = once::prepare(&mut cfg) {
            print_errors(&errs);
            return 1;
        }
    }
    let watch = match (watch_config, sources) {
        (false, _) => Vec::new(),
        (true, Sources::Paths(paths)) => paths.clone(),
        (true, Sources::Embedded) => {
            eprintln!("error: --watch-config: no pipeline file to watch (the embedded pipeline runs: give -c or TRAWL_CONFIG)");
            return 1;
        }
    };
    // A reload reads every source again, as at start: files added to a folder count.
    let again = sources.clone();
    let load = move || {
        let mut cfg = again.load()?;
        if once {
            once::prepare(&mut cfg)?;
        }
        Ok(cfg)
    };
    let reload = Reload {
        load: std::sync::Arc::new(load),
        watch,
        once,
    };
    run_inner(
        cfg,
        Vec::new(),
        Signals::Handle,
        Some(reload),
        StateWait::Rollout,
    )
}

/// How a run reloads its pipeline (`trawl run`; `tee` and `pcap` do not).
struct Reload {
    load: reload::Loader,
    /// `--watch-config`: the files and folders to watch (none without it).
    watch: Vec<PathBuf>,
    /// `--once`: the run ends when its inputs do, failed or not.
    once: bool,
}

/// How often `--watch-config` rereads the file when no filesystem event came.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a pipeline once, for a command that is not a service (`trawl pcap -c`): its inputs'
/// state held by another process (the node's running trawl) refuses it at once, where a
/// service's start waits for an old instance's drain.
pub fn run_pipeline_once(
    cfg: PipelineConfig,
    extra_inputs: Vec<(String, Box<dyn crate::inputs::Input>)>,
) -> i32 {
    run_inner(cfg, extra_inputs, Signals::Handle, None, StateWait::None)
}

/// Builds and runs a pipeline until its inputs end or a signal stops it; returns the exit code.
pub fn run_pipeline_with(
    cfg: PipelineConfig,
    extra_inputs: Vec<(String, Box<dyn crate::inputs::Input>)>,
    signals: Signals,
) -> i32 {
    run_inner(cfg, extra_inputs, signals, None, StateWait::Rollout)
}

/// Whether a start waits for another process to let go of its inputs' and buffers' state.
#[derive(Clone, Copy)]
enum StateWait {
    /// Up to `shutdown_timeout` + `STATE_LOCK_SLACK`: an old instance draining in a rollout.
    Rollout,
    /// Not at all: a one-off command beside a running service.
    None,
}

/// Beyond `shutdown_timeout`, how long a start waits for another process to let go of its
/// inputs' read positions: that process's exit after its drain.
const STATE_LOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(10);

/// The inputs that keep their read position on disk (`Input::state_file`) need its folder
/// writable: refused before anything starts (a half start, other inputs running and these
/// failed, would only show on `/health`), naming the folder. Pipelines without them only get
/// a warning, for `data_dir` itself.
fn check_data_dir(pipeline: &Pipeline) -> Result<(), i32> {
    let writable = |dir: &Path| {
        std::fs::create_dir_all(dir).and_then(|()| {
            let probe = dir.join(format!(".trawl-probe-{}", std::process::id()));
            std::fs::File::create(&probe)?;
            std::fs::remove_file(&probe)
        })
    };
    let keeping = pipeline.state_files();
    if keeping.is_empty() {
        let dir = &pipeline.config.global.data_dir;
        if let Err(e) = writable(&dir.join("registry")) {
            tracing::warn!(data_dir = %dir.display(), error = %e, "data_dir is not writable; inputs that keep state will fail");
        }
        return Ok(());
    }
    let mut folders: Vec<&Path> = keeping
        .iter()
        .map(|(_, file)| file.parent().unwrap_or(Path::new(".")))
        .collect();
    folders.sort();
    folders.dedup();
    let mut refused = false;
    for folder in folders {
        let Err(e) = writable(folder) else { continue };
        let inputs: Vec<&str> = keeping
            .iter()
            .filter(|(_, file)| file.parent() == Some(folder))
            .map(|(name, _)| *name)
            .collect();
        tracing::error!(folder = %folder.display(), error = %e, inputs = %inputs.join(", "),
            "data_dir is not writable: these inputs keep their read positions in its folder named here; make it writable by trawl's user (or set data_dir elsewhere); not starting");
        refused = true;
    }
    if refused {
        Err(1)
    } else {
        Ok(())
    }
}

fn run_inner(
    cfg: PipelineConfig,
    extra_inputs: Vec<(String, Box<dyn crate::inputs::Input>)>,
    signals: Signals,
    reload: Option<Reload>,
    state_wait: StateWait,
) -> i32 {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let http = cfg.global.http.clone();
    let timeout = cfg.global.shutdown_timeout.std();
    let pipeline = match Pipeline::build(cfg, extra_inputs) {
        Ok(p) => p,
        Err(errs) => {
            print_errors(&errs);
            return 1;
        }
    };
    if let Err(code) = check_data_dir(&pipeline) {
        return code;
    }
    // Held until the process ends. The wait covers an old instance's drain (its own
    // shutdown_timeout, likely the same) during a rollout.
    let states = pipeline.states();
    let states: Vec<(String, &Path)> = states
        .iter()
        .map(|(o, s)| (o.clone(), s.as_path()))
        .collect();
    let mut pipeline = pipeline;
    let wait = match state_wait {
        StateWait::Rollout => timeout + STATE_LOCK_SLACK,
        StateWait::None => std::time::Duration::ZERO,
    };
    let locks = match state_lock::acquire(&states, wait) {
        Ok(l) => std::sync::Arc::new(std::sync::Mutex::new(l)),
        Err(e) => {
            tracing::error!("{e}; not starting");
            return 1;
        }
    };
    // Also held here, past the pipeline's end, until the process ends: an input abandoned at
    // the drain deadline may still write its registry.
    pipeline.state_locks = Some(locks.clone());
    let (reload_handle, reloads, watch) = match reload {
        Some(r) => {
            let (handle, mut reloads) = reload::channel(r.load, &pipeline.registry);
            reloads.wait_after_failed_input = !r.once;
            pipeline
                .endpoints
                .add_post("/-/reload", reload::endpoint(handle.clone()));
            (Some(handle), Some(reloads), r.watch)
        }
        None => (None, None, Vec::new()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trawl-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(async move {
        pipeline
            .registry
            .set_output_failure_threshold(http.health.output_failure_threshold.std());
        if http.enabled {
            if let Err(e) = server::serve(
                &http.address,
                pipeline.registry.clone(),
                pipeline.endpoints.clone(),
                server::Access {
                    bearer_token: http.bearer_token.clone().filter(|t| !t.is_empty()),
                },
            )
            .await
            {
                tracing::error!("{e:#}");
                return 1;
            }
        }
        if let (false, Some(handle)) = (watch.is_empty(), reload_handle.clone()) {
            reload::watch(watch, handle, WATCH_POLL);
        }
        let (trigger, shutdown) = shutdown_pair();
        // Installed before the pipeline starts, so that an early SIGTERM is a stop, not a kill.
        let stop_signals = match signals {
            Signals::Ignore => None,
            Signals::Handle => match StopSignals::install(reload_handle) {
                Ok(s) => {
                    if EARLY_HUP.swap(false, Ordering::Relaxed) {
                        s.early_hup();
                    }
                    Some(s)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot install signal handlers");
                    return 1;
                }
            },
        };
        tokio::spawn(async move {
            let Some(mut signals) = stop_signals else {
                // Held until the runtime ends so that shutdown is never triggered by its drop.
                std::future::pending::<()>().await;
                return;
            };
            let first = signals.next().await;
            let at = std::time::Instant::now();
            trigger.trigger();
            // A second signal exits at once, whatever is in flight. One stop can arrive twice
            // (`timeout` and `su` forward SIGTERM to a process group that trawl is also in): the
            // same signal again within the grace interval is that same stop.
            loop {
                let again = signals.next().await;
                if again != first || at.elapsed() >= SECOND_SIGNAL_GRACE {
                    break;
                }
                tracing::info!(signal = ?again, "the same signal again right away: taken as the same stop, still draining");
            }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
        match reload::run(pipeline, shutdown, reloads).await {
            Ok(report) => exit_code(&report, timeout),
            Err(e) => {
                tracing::error!("{e:#}");
                1
            }
        }
    });
    // Threads blocked in reads (stdin) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// The exit status of a run: 0 only when nothing failed and everything in flight was delivered,
/// so that systemd and Kubernetes see a stop that left events behind.
fn exit_code(report: &crate::pipeline::RunReport, timeout: std::time::Duration) -> i32 {
    for f in &report.failures {
        tracing::error!("failed: {f}");
    }
    if !report.drained {
        tracing::error!(
            undelivered = report.undelivered,
            "shutdown_timeout ({timeout:?}) passed with {} events undelivered; they were not acknowledged: inputs that can will read them again, and what a disk buffer holds is sent from it at the next start",
            report.undelivered
        );
    }
    for d in &report.drain_incomplete {
        tracing::error!("drain incomplete: {d}");
    }
    for l in &report.lost {
        tracing::error!("events lost: {l}");
    }
    if report.failures.is_empty()
        && report.drained
        && report.drain_incomplete.is_empty()
        && report.lost.is_empty()
    {
        0
    } else {
        1
    }
}

/// A SIGHUP that came before `StopSignals` listened (the pipeline file read, the pipeline
/// built, and the wait for an old instance's state during a rollout, up to 10 s past
/// `shutdown_timeout`): a configmap-reload sidecar sends one whenever the file changes, and
/// its default action would kill trawl before it ran.
static EARLY_HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn note_early_hup(_: libc::c_int) {
    EARLY_HUP.store(true, Ordering::Relaxed);
}

/// Makes a SIGHUP before `StopSignals` a reload once they listen (see `EARLY_HUP`). A SIGHUP
/// ignored when trawl starts (`nohup`) is left ignored until then.
fn catch_early_hup() {
    // SAFETY: with a null new action, sigaction only fills the zeroed `old`; a zeroed
    // sigaction with a plain handler and an empty mask is valid, and the handler only stores
    // to an atomic (async-signal-safe).
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
        {
            return;
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = note_early_hup as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut());
    }
}

/// A repeat of the first stop signal sooner than this is the same stop delivered twice.
const SECOND_SIGNAL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Term,
    Int,
}

/// SIGTERM, SIGINT and SIGHUP, listened to for the life of the run so that none is missed
/// between two waits.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// Where SIGHUP asks for a reload.
    reload: Option<reload::Handle>,
}

impl StopSignals {
    fn install(reload: Option<reload::Handle>) -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            reload,
        })
    }

    /// A SIGHUP came while trawl started: the file may have changed since it was read.
    fn early_hup(&self) {
        match &self.reload {
            Some(r) => {
                tracing::info!("SIGHUP received while starting: reloading the pipeline file");
                r.request("SIGHUP");
            }
            None => tracing::info!(
                "SIGHUP received while starting: this command does not reload, ignoring"
            ),
        }
    }

    /// Resolves on SIGTERM or SIGINT, saying which. SIGHUP asks for a reload.
    async fn next(&mut self) -> Stop {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM received"); return Stop::Term; }
                _ = self.int.recv() => { tracing::info!("SIGINT received"); return Stop::Int; }
                _ = self.hup.recv() => match &self.reload {
                    Some(r) => { tracing::info!("SIGHUP received: reloading the pipeline file"); r.request("SIGHUP"); }
                    None => tracing::info!("SIGHUP received: this command does not reload, ignoring"),
                },
            }
        }
    }
}
