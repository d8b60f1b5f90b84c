//! The command line and the running process: `validate`, `run --once`, reload, shutdown,
//! health, monitoring, metrics, `top`, dashboards, config layout and hostile configs.
//! One test binary (`cargo test --release --test cli`), one module per former test file;
//! `cargo test --release --test cli <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod config_hostile;
mod config_layout;
mod dashboards;
mod health;
mod metrics_promtool;
mod monitoring;
mod reload;
mod reload_configmap;
mod run_once;
mod secrets_in_logs;
mod self_monitoring;
mod shutdown;
mod top;
mod validate;
