//! trawl's own observability: its logs (through `tracing`, on stderr, text or JSON), its
//! counters, the HTTP endpoint that serves them, and the live event taps (`trawl tap`).

pub mod metrics;
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let r = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
