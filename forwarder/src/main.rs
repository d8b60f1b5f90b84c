//! `trawl-forward`: `trawl tee --forward` as a small static program for app containers that have
//! nothing of trawl's. It compiles trawl's own line splitter, spool and forwarder from ../src
//! (so both send the same JSON lines), and only the child-process half is written here.

/// Sizes and durations written as in trawl (`8MiB`, `10s`).
#[path = "../../src/config/units.rs"]
#[allow(dead_code)]
mod units;

/// The one item of trawl's `event` module the forwarder uses: the `@timestamp` format.
mod event {
    /// RFC 3339 UTC with microseconds, as trawl writes `@timestamp`.
    pub fn format_timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

mod child;
mod inputs;

use std::path::PathBuf;
use inputs::tee::spool::WhenFull;
use units::{ByteSize, Duration};

const USAGE: &str = "usage: trawl-forward [--log-level LEVEL] --forward unix:PATH [--memory-buffer SIZE] [--spill-max SIZE] [--spill-dir DIR] [--when-full block|drop] [--flush-timeout DURATION] [--max-line-bytes SIZE] -- CMD [ARGS...]";

/// The options of `trawl tee --forward`, with the same names and defaults.
pub struct Args {
    pub log_level: tracing::level_filters::LevelFilter,
    pub forward: PathBuf,
    pub memory_buffer: ByteSize,
    pub spill_max: ByteSize,
    pub spill_dir: Option<PathBuf>,
    pub when_full: WhenFull,
    pub flush_timeout: Duration,
    pub max_line_bytes: ByteSize,
    pub command: Vec<String>,
}

enum Parsed {
    Run(Args),
    Version,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut log_level = tracing::level_filters::LevelFilter::INFO;
    let mut forward = None;
    let mut memory_buffer = ByteSize(8 << 20);
    let mut spill_max = ByteSize(256 << 20);
    let mut spill_dir = None;
    let mut when_full = WhenFull::Block;
    let mut flush_timeout = Duration::from_secs(10);
    let mut max_line_bytes = ByteSize(1 << 20);
    let mut command = Vec::new();
    while let Some(a) = argv.next() {
        if a == "--" {
            command.extend(argv.by_ref());
            break;
        }
        if a == "--version" || a == "-V" {
            return Ok(Parsed::Version);
        }
        // `--key value` and `--key=value`.
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let known = [
            "--log-level",
            "--forward",
            "--memory-buffer",
            "--spill-max",
            "--spill-dir",
            "--when-full",
            "--flush-timeout",
            "--max-line-bytes",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("unknown argument `{a}`"));
        }
        let value = match inline.or_else(|| argv.next()) {
            Some(v) => v,
            None => return Err(format!("{key} needs a value")),
        };
        let in_key = |e: String| format!("{key}: {e}");
        match key.as_str() {
            "--log-level" => {
                log_level = value.parse().map_err(|_| {
                    format!(
                        "--log-level: `{value}` is not one of off, error, warn, info, debug, trace"
                    )
                })?
            }
            "--forward" => match value.strip_prefix("unix:") {
                Some(p) if !p.is_empty() => forward = Some(PathBuf::from(p)),
                _ => return Err(format!("--forward expects unix:PATH, got `{value}`")),
            },
            "--memory-buffer" => memory_buffer = ByteSize::parse(&value).map_err(in_key)?,
            "--spill-max" => spill_max = ByteSize::parse(&value).map_err(in_key)?,
            "--spill-dir" => spill_dir = Some(PathBuf::from(value)),
            "--when-full" => when_full = WhenFull::parse(&value).map_err(in_key)?,
            "--flush-timeout" => flush_timeout = Duration::parse(&value).map_err(in_key)?,
            "--max-line-bytes" => max_line_bytes = ByteSize::parse(&value).map_err(in_key)?,
            _ => unreachable!("checked against `known`"),
        }
    }
    let forward = forward.ok_or("--forward unix:PATH is required")?;
    if command.is_empty() {
        return Err("the command to run is missing after `--`".to_owned());
    }
    Ok(Parsed::Run(Args {
        log_level,
        forward,
        memory_buffer,
        spill_max,
        spill_dir,
        when_full,
        flush_timeout,
        max_line_bytes,
        command,
    }))
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Version) => {
            println!("trawl-forward {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(args.log_level)
        .init();
    std::process::exit(child::run(args));
}
