//! The other inputs and the processing between input and output: journald, sockets, stdin,
//! tee and its forwarder, Kubernetes metadata, multiline, processors, pipelines, buffers and the
//! loghub parsers.
//! One test binary (`cargo test --release --test inputs`), one module per former test file;
//! `cargo test --release --test inputs <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod buffers;
mod forwarder;
mod journald;
mod journald_edges;
mod kubernetes;
mod kubernetes_cluster;
mod loghub;
mod loghub_clusters;
mod loghub_devices;
mod multiline_inputs;
mod pipeline;
mod pipelines;
mod processor_workers;
mod processors_pipeline;
mod redact_lines;
mod socket_input;
mod stdin_input;
mod syslog_lines;
mod tee;
mod tee_acks;
mod throttle_lines;
