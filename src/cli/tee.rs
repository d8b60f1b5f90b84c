//! `trawl tee`: runs a command, passes its stdout and stderr through byte for byte, and ships
//! its lines to an in-process pipeline (`-c`) or to a sidecar trawl (`--forward unix:PATH`,
//! acknowledged), holding the command only when its buffers are full (`--when-full block`);
//! forwards signals and exits with the command's status.

use crate::config::{ByteSize, Duration};
use crate::inputs::tee::forward;
use crate::inputs::tee::passthrough;
use crate::inputs::tee::spool::{Spool, SpoolLimits, WhenFull};
use crate::inputs::tee::TeeInput;
use std::path::PathBuf;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TeeArgs {
    /// Pipeline for the command's lines (processors and outputs; the lines are the input
    /// named `tee`, so no `inputs:` section is needed). Run in-process. Files or folders,
    /// repeatable, as for `run`; `TRAWL_CONFIG` is not read (it names the node's pipeline).
    #[arg(short, long, conflicts_with = "forward")]
    pub config: Vec<PathBuf>,
    /// Ship the lines to another trawl's `socket` input instead: `unix:PATH`.
    #[arg(long)]
    pub forward: Option<String>,
    /// Memory for lines waiting to be shipped; beyond it they go to the spill file. With
    /// `--forward`, as much again holds lines sent and not yet acknowledged by the receiver.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub memory_buffer: ByteSize,
    /// Largest size of the spill file; beyond it, see `--when-full`.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub spill_max: ByteSize,
    /// When memory and the spill file are full: `block` (the command waits on its output
    /// pipe until there is room; nothing is lost) or `drop` (the command never waits; what
    /// does not fit is not shipped, counted, and reported at exit).
    #[arg(long, default_value = "block", value_parser = WhenFull::parse)]
    pub when_full: WhenFull,
    /// Folder of the spill file (default: the system's temporary folder).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// After the command exits, how long to wait for its last lines to be shipped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
    /// Longer lines are cut and flagged `log.flags: [truncated]`.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub max_line_bytes: ByteSize,
    /// Joins the lines of one event per stream, with the keys of the file input's `multiline`
    /// as inline YAML: `--multiline '{preset: go, timeout: 2s}'`. In-process (`-c`) only.
    #[arg(long, conflicts_with = "forward")]
    pub multiline: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    Duration::parse(s)
}

/// `--multiline` as the same `Config` the inputs' `multiline:` key takes.
fn parse_multiline(text: &str) -> Result<crate::inputs::multiline::Multiline, String> {
    let node = crate::config::node::parse(text)
        .map_err(|e| format!("--multiline: {} at column {}", e.message, e.mark.col))?;
    let config: crate::inputs::multiline::Config =
        crate::config::from_node(&node, "--multiline").map_err(|e| describe(&e))?;
    config
        .compile(Some(node.mark), "--multiline")
        .map_err(|e| describe(&e))
}

fn describe(e: &crate::config::DeError) -> String {
    format!(
        "{}: {}",
        e.path.as_deref().unwrap_or("--multiline"),
        e.message
    )
}

/// The `-c` files and folders as one pipeline, built with a stand-in for the command's lines
/// (never started), so that a pipeline that cannot run is refused before the command starts;
/// `trawl validate --tee` checks with this too.
pub fn load(
    paths: &[PathBuf],
) -> Result<crate::config::PipelineConfig, crate::config::ConfigErrors> {
    let cfg = crate::config::Sources::Paths(paths.to_vec()).load()?;
    crate::pipeline::Pipeline::build(cfg.clone(), vec![("tee".to_owned(), stand_in())])?;
    Ok(cfg)
}

/// An input named `tee` that is never started: what the command's lines take the place of.
pub fn stand_in() -> Box<dyn crate::inputs::Input> {
    let spool = Spool::new(
        SpoolLimits {
            memory_bytes: 0,
            spill_bytes: 0,
            spill_dir: std::env::temp_dir(),
            when_full: WhenFull::Drop,
        },
        0,
    );
    Box::new(TeeInput::new(Arc::new(spool), 1, None))
}

/// Runs `trawl tee`; returns the exit code (the child's).
pub fn run(args: TeeArgs) -> i32 {
    let multiline = match args.multiline.as_deref().map(parse_multiline) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let forward_path = match &args.forward {
        Some(f) => match f.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                eprintln!("error: --forward expects unix:PATH, got `{f}`");
                return 2;
            }
        },
        None => None,
    };
    let cfg = match (args.config.is_empty(), &forward_path) {
        (false, _) => match load(&args.config) {
            Ok(c) => Some(c),
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("error: {e}");
                }
                return 2;
            }
        },
        (true, Some(_)) => None,
        (true, None) => {
            eprintln!("error: trawl tee needs -c PIPELINE or --forward unix:PATH");
            return 2;
        }
    };
    let spool = Arc::new(Spool::new(
        SpoolLimits {
            memory_bytes: args.memory_buffer.as_usize(),
            spill_bytes: args.spill_max.bytes(),
            spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            when_full: args.when_full,
        },
        2,
    ));

    let (mut child, _copies) = match passthrough::start(&args.command, &spool) {
        Ok(started) => started,
        Err(code) => return code,
    };

    // Shipping yields the CPU to the command: threads started from here on (the pipeline, its
    // workers, the forwarder) inherit a lower priority; the copy threads above keep the normal
    // one, since the command waits on them when its pipe is full. On Linux the nice value is per
    // thread, and new threads inherit their creator's.
    // SAFETY: plain syscall on the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }

    // The shipper: the in-process pipeline, or the forwarder. It reports on `done` when finished.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let give_up = Arc::new(AtomicBool::new(false));
    // What the forwarder holds unacknowledged, kept current by it (see `forward::run`).
    let forwarding = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let max_line = args.max_line_bytes.as_usize();
    let mut in_pipeline = None;
    // The in-process pipeline ended in failure (an output it could not start): the report
    // says so rather than blaming a flush deadline it never waited for.
    let pipeline_failed = Arc::new(AtomicBool::new(false));
    match (cfg, forward_path) {
        (Some(cfg), _) => {
            let input = TeeInput::new(spool.clone(), max_line, multiline);
            in_pipeline = Some(input.unshipped());
            let s = spool.clone();
            let failed = pipeline_failed.clone();
            std::thread::spawn(move || {
                let code = super::run_pipeline_with(
                    cfg,
                    vec![("tee".to_owned(), Box::new(input))],
                    super::Signals::Ignore,
                );
                if code != 0 {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!("the tee pipeline failed (exit code {code})");
                }
                s.shipper_gone();
                let _ = done_tx.send(0);
            });
        }
        (None, Some(path)) => {
            let s = spool.clone();
            let g = give_up.clone();
            let u = forwarding.clone();
            let held = args.memory_buffer.as_usize();
            std::thread::spawn(move || {
                let report = forward::run(&s, path, max_line, held, g, u);
                if report.invalid_utf8_lines > 0 {
                    tracing::warn!(
                        lines = report.invalid_utf8_lines,
                        "forwarded lines whose invalid UTF-8 was replaced with U+FFFD"
                    );
                }
                s.shipper_gone();
                let _ = done_tx.send(report.unsent_bytes);
            });
        }
        (None, None) => unreachable!("checked above"),
    }

    let code = passthrough::wait_child(&mut child);
    // Ship what is in flight, within the deadline (a stopping signal cuts it short).
    let deadline = args.flush_timeout.std();
    // Without a report, the forwarder is stuck writing: what it last said it holds.
    let unsent = passthrough::wait_shipper(&done_rx, deadline, &give_up)
        .unwrap_or_else(|| forwarding.load(std::sync::atomic::Ordering::Relaxed));
    let dropped = spool.dropped_bytes();
    let left = spool.queued_bytes() + unsent;
    let undelivered = in_pipeline.map(|u| u.events()).unwrap_or(0);
    spool.remove_spill_file();
    if dropped > 0 || left > 0 || undelivered > 0 {
        let why = if pipeline_failed.load(std::sync::atomic::Ordering::Relaxed) {
            "the pipeline failed, see its error above".to_owned()
        } else if passthrough::STOP_FLUSH.load(std::sync::atomic::Ordering::Relaxed) {
            "a signal ended the wait".to_owned()
        } else {
            format!("{}ms flush deadline", deadline.as_millis())
        };
        eprintln!(
            "trawl tee: {dropped} bytes of output dropped (buffers full), {left} bytes not shipped, {undelivered} events not delivered by the outputs ({why})"
        );
    }
    code
}
