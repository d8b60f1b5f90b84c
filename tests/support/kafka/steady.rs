//! A steady app under a Kafka cluster's faults: a file input logging numbered lines into a
//! `kafka` output, and what a test reads of trawl afterwards (events dead-lettered or dropped).
//! Shared by the cluster tests (tests/outputs/kafka_cluster.rs, kafka_quorum.rs).

use crate::support::process::{append, http_get};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A pipeline file in `d`: `app.log` tailed into the output `k` (to `topic` on `brokers`,
/// comma-separated), `/health` and `/metrics` on `addr`; `http_more` is more of the `http`
/// map (`, health: {...}`).
pub fn pipeline(d: &Path, addr: &str, brokers: &str, topic: &str, http_more: &str) -> PathBuf {
    let list: Vec<String> = brokers.split(',').map(|b| format!("\"{b}\"")).collect();
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\"{http_more} }}\nshutdown_timeout: 30s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  k:\n    type: kafka\n    brokers: [{list}]\n    topic: {topic}\n",
        data = d.join("data").display(),
        app = d.join("app.log").display(),
        list = list.join(", "),
    );
    let cfg = d.join("pipeline.yaml");
    std::fs::write(&cfg, text).expect("writing pipeline.yaml");
    cfg
}

/// A logging app: one line `<what> line NNNNNN` every 4 ms into `app` until `stop`;
/// `written` counts.
pub fn start_writer(
    app: PathBuf,
    what: &'static str,
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let i = written.load(Ordering::Relaxed);
            append(&app, &format!("{what} line {i:06}\n"));
            written.store(i + 1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(4));
        }
    })
}

/// The lines `start_writer` wrote, `total` of them.
pub fn written_lines(what: &str, total: usize) -> Vec<String> {
    (0..total).map(|i| format!("{what} line {i:06}")).collect()
}

/// Every `trawl_events_failed_total` and `trawl_events_dropped_total` line of /metrics that
/// is not 0: events dead-lettered or dropped, by component.
pub fn lost_counts(addr: &str) -> Vec<String> {
    let (_, text) = http_get(addr, "/metrics").expect("trawl's /metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("trawl_events_failed_total")
                || l.starts_with("trawl_events_dropped_total")
        })
        .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) != Some(0.0))
        .map(str::to_owned)
        .collect()
}

/// Each message's `message` field in `records` (JSON payloads), counted.
pub fn copies(records: &[super::Record]) -> std::collections::HashMap<String, usize> {
    let mut copies = std::collections::HashMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
        let m = v["message"].as_str().unwrap_or_default().to_owned();
        *copies.entry(m).or_default() += 1;
    }
    copies
}
