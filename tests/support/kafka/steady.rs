//! A steady app under a Kafka cluster's faults: a file input logging numbered lines into a
//! `kafka` output, and what a test reads of trawl afterwards (events dead-lettered or dropped).
//! Shared by the cluster tests (tests/outputs/kafka_cluster.rs, kafka_quorum.rs).

use super::Cluster;
use crate::support::process::{append, free_port, http_get, metric, wait_until, Trawl};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cluster test waits for trawl to deliver or stop.
pub const WAIT: Duration = Duration::from_secs(120);

/// A three-broker cluster with one topic, trawl tailing an app's log into it (its own log in
/// `log`, `/metrics` and `/health` on `addr`) and the app writing: the start of every cluster
/// test. Fields drop in order: trawl killed first, the cluster last.
pub struct SteadyRun {
    pub trawl: Trawl,
    writer: Option<std::thread::JoinHandle<()>>,
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Just before the app's first line.
    pub t0: Instant,
    pub addr: String,
    /// The pipeline file, for a trawl started again.
    pub cfg: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    pub cluster: Cluster,
}

impl SteadyRun {
    /// A cluster with `topic` (3 partitions, replication 3, `settings`), trawl started on
    /// `pipeline(.., http_more)` and the app writing `<what> line NNNNNN`. A cluster that
    /// cannot start fails the test (as a single broker does): a skip would pass unseen.
    pub fn start(
        topic: &str,
        settings: &[(&str, &str)],
        what: &'static str,
        http_more: &str,
    ) -> SteadyRun {
        let cluster = Cluster::start().unwrap_or_else(|why| {
            panic!("a three-broker Kafka cluster did not start (run scripts/setup.sh): {why}")
        });
        cluster.create_topic(topic, 3, settings);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = pipeline(d, &addr, &cluster.bootstrap, topic, http_more);
        let log = d.join("trawl.log");
        // The idempotent producer's state changes (librdkafka's `eos` debug, a few lines per
        // leader change) tell a copy librdkafka made from one trawl made.
        let trawl = Trawl::start_env(
            &cfg,
            Some(&log),
            &[("TRAWL_LOG_LEVEL", "info,trawl::outputs::kafka=debug")],
        );
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let writer = start_writer(d.join("app.log"), what, written.clone(), stop.clone());
        SteadyRun {
            trawl,
            writer: Some(writer),
            written,
            stop,
            t0,
            addr,
            cfg,
            log,
            _dir: dir,
            cluster,
        }
    }

    /// Waits until trawl has delivered the app's first 200 lines.
    pub fn wait_first_lines(&self) {
        wait_until(WAIT, "the first lines delivered", || {
            self.delivered() >= 200
        });
    }

    /// Events the output `k` delivered, by trawl's /metrics (0 while it does not answer).
    pub fn delivered(&self) -> usize {
        metric(&self.addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize
    }

    /// Lines the app has written so far.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the app (the writer thread joined); the lines it wrote.
    pub fn stop_writer(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        self.written()
    }

    /// trawl's log so far.
    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts that `topic` holds each of `total` lines written exactly once (read through
    /// broker 1). Before a failure it prints where each copy sits and trawl's warnings: two
    /// copies at one offset are a reader's, at two offsets a producer's; the warnings say
    /// whether trawl sent them again, the producer's epochs whether librdkafka did.
    pub fn assert_delivered_once(&self, topic: &str, what: &str, total: usize) {
        let records = self.cluster.brokers[0].read_all(topic);
        let got = copies(&records);
        let twice: Vec<&String> = got
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(l, _)| l)
            .collect();
        if !twice.is_empty() {
            for r in &records {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
                let line = v["message"].as_str().unwrap_or_default();
                if twice.iter().any(|t| *t == line) {
                    eprintln!(
                        "copy of {line:?} at partition {} offset {}",
                        r.partition, r.offset
                    );
                }
            }
            let log = self.read_log();
            let complaints: Vec<&str> = log
                .lines()
                .filter(|l| {
                    ["WARN", "ERROR", "IDEMPSTATE", "ERRSEQ", "epoch"]
                        .iter()
                        .any(|k| l.contains(k))
                })
                .collect();
            eprintln!(
                "trawl's warnings, errors and producer epochs:\n{}",
                complaints.join("\n")
            );
        }
        crate::support::process::assert_each_once(&got, &written_lines(what, total));
    }

    /// A flag that stops with the app, for threads of the test's own.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

/// A pipeline file in `d`: `app.log` tailed into the output `k` (to `topic` on `brokers`,
/// comma-separated), `/health` and `/metrics` on `addr`; `http_more` is more of the `http`
/// map (`, health: {...}`).
pub fn pipeline(d: &Path, addr: &str, brokers: &str, topic: &str, http_more: &str) -> PathBuf {
    let list: Vec<String> = brokers.split(',').map(|b| format!("\"{b}\"")).collect();
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\"{http_more} }}\nshutdown_timeout: 30s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  k:\n    type: kafka\n    brokers: [{list}]\n    topic: {topic}\n    librdkafka: {{ debug: eos }}\n",
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
