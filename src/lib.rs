//! trawl: one binary that ships logs and network traffic.
//!
//! # Layout
//! - `event`: `Event`, `Value` with dotted-path access, `Batch`, acknowledgements.
//! - `config`: the pipeline file: positioned YAML, `${VAR}` interpolation, units, errors.
//! - `pipeline`: building the graph, bounded queues, routing, shutdown and drain.
//! - `inputs`: where events come from (`stdin`, ...), one file or folder per input.
//! - `processors`: synchronous per-event steps and `when:` conditions.
//! - `outputs`: where events go (`stdout`, `null`, ...), one file or folder per output.
//! - `telemetry`: trawl's own logs, counters, and the `/metrics` and `/health` endpoint.
//! - `cli`: the commands of the `trawl` binary.
//! - `code_pages`: start-up code's pages given back once trawl runs.
//! - `capabilities`: CAP_NET_RAW (capture) and CAP_DAC_READ_SEARCH (host logs) raised from the
//!   binary's permitted set.

/// `eprintln!` that never panics: a closed or full stderr (`trawl ... 2>&1 | head -1`,
/// `2>/dev/full`) must not turn a clean exit status into a panic, or a panicking task into a
/// hang. What cannot be written is dropped; there is nobody to tell.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics, for the same reason as `eprintln!` above: `trawl validate |
/// head -1` ends trawl's output early, not its exit status.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see `println!`).
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub mod capabilities;
pub mod cli;
pub mod code_pages;
pub mod config;
pub mod event;
pub mod inputs;
pub mod outputs;
pub mod pipeline;
pub mod processors;
pub mod telemetry;
pub mod wire;
