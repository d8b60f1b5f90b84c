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
//! - `capabilities`: CAP_NET_RAW (capture) and CAP_DAC_READ_SEARCH (host logs) raised from the
//!   binary's permitted set.

pub mod capabilities;
pub mod cli;
pub mod config;
pub mod event;
pub mod inputs;
pub mod outputs;
pub mod pipeline;
pub mod processors;
pub mod telemetry;
pub mod wire;
