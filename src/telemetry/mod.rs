//! trawl's own observability: its logs (through `tracing`, on stderr, text or JSON), its
//! counters, the HTTP endpoint that serves them, and the live event taps (`trawl tap`).

pub mod exposition;
pub mod metrics;
pub mod process;
pub mod server;
pub mod tap;

use tracing_subscriber::EnvFilter;

/// The filter with the Kubernetes client's own logs off, unless it names them. That client logs
/// each failed request as an ERROR and each dropped watch as a WARN, with no word of which
/// watch or what is done about it; the `kubernetes` processor logs the same failures once per
/// streak, with the resource and the retry (an API server restart gave four ERROR lines).
fn with_quiet_clients(level: &str) -> String {
    let names_it = level
        .split(',')
        .any(|d| d.trim_start().starts_with("kube_client"));
    if names_it || level.trim().is_empty() {
        level.to_owned()
    } else {
        format!("{level},kube_client=off")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global logger. `level` is a `tracing` filter (`info`, `trawl=debug,warn`...).
pub fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(with_quiet_clients(level))
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

#[cfg(test)]
mod tests {
    use super::with_quiet_clients;

    #[test]
    fn the_kube_client_is_quiet_unless_named() {
        assert_eq!(with_quiet_clients("info"), "info,kube_client=off");
        assert_eq!(
            with_quiet_clients("info,trawl::outputs::kafka=debug"),
            "info,trawl::outputs::kafka=debug,kube_client=off"
        );
        assert_eq!(
            with_quiet_clients("info,kube_client=debug"),
            "info,kube_client=debug"
        );
        for level in ["info", "warn,trawl=debug", "info,kube_client=trace"] {
            assert!(tracing_subscriber::EnvFilter::try_new(with_quiet_clients(level)).is_ok());
        }
    }
}
