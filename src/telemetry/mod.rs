//! trawl's own observability: its logs (through `tracing`, on stderr, text or JSON), its
//! counters, the HTTP endpoint that serves them, and the live event taps (`trawl tap`).

pub mod exposition;
pub mod metrics;
pub mod process;
pub mod server;
pub mod tap;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global logger. `level` is a `tracing` filter (`info`, `trawl=debug,warn`...).
pub fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level `{level}`: {e}"))?;
    // Colours only for a person at a terminal: under `trawl tee` stderr is the app's own log,
    // and journald or a file would keep the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // Its default writes a failed write to stderr with `eprintln!`, which panics when stderr
        // is the thing that failed (a closed pipe, a full disk): the task logging dies with it.
        .log_internal_errors(false)
        .with_target(false);
    let r = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
