//! The outputs the file-input pipelines deliver to, and the faults the campaign breaks them
//! with: the Elasticsearch stand-in, a real OpenSearch node (killed, stopped, hung, flooded,
//! its index closed), an Apache Kafka broker, the file output on a tmpfs that fills.

use super::files::Output;
use super::outcome::Delivered;
use super::rng::Rng;
use crate::support::es_server::EsServer;
use crate::support::kafka::Broker;
use crate::support::opensearch::OpenSearch;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tmpfs mounted for the run, unmounted when dropped.
pub struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with a ballast file (until ENOSPC); removed to end the fault.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("ballast");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // What is left is smaller than a chunk: take it too.
    for _ in 0..64 * 1024 {
        if f.write_all(&[0]).is_err() {
            break;
        }
    }
    p
}

/// The output, and the faults in progress on it.
pub enum Sink {
    Es(EsServer),
    /// A real OpenSearch node; `dead`: the dead-letter file of the events it refused for good;
    /// `busy`: one of its faults is in progress (they do not overlap: each must be undone on a
    /// node that is running and answering).
    Os {
        node: OpenSearch,
        dead: PathBuf,
        busy: bool,
    },
    Kafka(Broker),
    File {
        out: PathBuf,
        buffer: PathBuf,
        _mounts: Vec<Mount>,
        full_disk: bool,
    },
}

/// An output fault that lasts: it ends after `left` more faults (or at the drain).
pub struct Outage {
    pub kind: &'static str,
    pub left: u64,
    ballast: Option<PathBuf>,
}

impl Sink {
    pub fn start(output: Output, root: &Path, data: &Path, real: bool) -> (Sink, Vec<String>) {
        let mut notes = Vec::new();
        let sink = match output {
            Output::Elasticsearch if real => {
                // The disk monitor's least interval from the start, so that a flood-stage
                // block comes within 10 s of the watermarks (the default is 30 s).
                let node =
                    OpenSearch::start_restartable(&[("cluster.info.update.interval", "10s")]);
                notes.push(format!(
                    "a real OpenSearch node at {}, started in {:.1} s",
                    node.url,
                    node.startup.as_secs_f64()
                ));
                Sink::Os {
                    node,
                    dead: root.join("dead.jsonl"),
                    busy: false,
                }
            }
            Output::Elasticsearch => Sink::Es(EsServer::start()),
            Output::Kafka => {
                let b = Broker::start_persistent();
                b.create_topic("campaign", 2);
                Sink::Kafka(b)
            }
            Output::FileDiskBuffer => {
                let out = root.join("out");
                let buffer = data.join("buffers/out");
                let mut mounts = Vec::new();
                // The output's disk is made full by a ballast; the buffer's disk (room for a few
                // of its 1 MiB segments) is small enough that a long output outage fills it.
                match (Mount::tmpfs(&out, "128m"), Mount::tmpfs(&buffer, "4m")) {
                    (Some(a), Some(b)) => mounts.extend([a, b]),
                    _ => {
                        notes.push("mount -t tmpfs unavailable: full-disk faults skipped".into());
                        std::fs::create_dir_all(&out).unwrap();
                        std::fs::create_dir_all(&buffer).unwrap();
                    }
                }
                let full_disk = mounts.len() == 2;
                Sink::File {
                    out,
                    buffer,
                    _mounts: mounts,
                    full_disk,
                }
            }
        };
        (sink, notes)
    }

    /// The output's configuration; `give_up`: batches fail after a few attempts (and must then
    /// be read again by the file input) instead of being retried for as long as it takes.
    pub fn config(&self, give_up: bool) -> String {
        match self {
            Sink::Es(es) => format!(
                "    type: elasticsearch\n    hosts: [\"{}\"]\n    index: campaign\n    batch: {{ max_events: 500, timeout: 200ms }}\n    request_timeout: 2s\n    retry: {{ initial_backoff: 100ms, max_backoff: 1s, max_attempts: {} }}\n",
                es.url,
                if give_up { 4 } else { 0 }
            ),
            // Retrying for ever, with dead letters: an event the node refused for good goes
            // there, counted, not dropped (none may: the outages are far shorter than
            // `retry.max_item_age`). The outputs' section ends with this one, so the dead
            // letters' output follows it. Giving up, without: a request failed `max_attempts`
            // times is then not acknowledged and its batch is read again from the file (with
            // dead letters it would go there, as documented).
            Sink::Os { node, dead, .. } if !give_up => format!(
                "    type: elasticsearch\n    hosts: [\"{}\"]\n    index: campaign\n    dead_letter: dead\n    batch: {{ max_events: 500, timeout: 200ms }}\n    request_timeout: 2s\n    retry: {{ initial_backoff: 100ms, max_backoff: 1s, max_attempts: 0 }}\n  dead:\n    type: file\n    path: {}\n",
                node.url,
                dead.display()
            ),
            Sink::Os { node, .. } => format!(
                "    type: elasticsearch\n    hosts: [\"{}\"]\n    index: campaign\n    batch: {{ max_events: 500, timeout: 200ms }}\n    request_timeout: 2s\n    retry: {{ initial_backoff: 100ms, max_backoff: 1s, max_attempts: 4 }}\n",
                node.url
            ),
            // As users run it: the shipped `acks: all` and idempotence. Every message says
            // which trawl process sent it, so that duplicates within one process (what
            // idempotence rules out across a broker restart) are told from a crash's re-reads.
            Sink::Kafka(b) => format!(
                "    type: kafka\n    brokers: [\"{}\"]\n    topic: campaign\n    headers: {{ trawl_start: \"${{CAMPAIGN_START}}\" }}\n{}",
                b.bootstrap,
                if give_up { "    delivery_timeout: 5s\n" } else { "" }
            ),
            Sink::File { out, .. } => format!(
                "    type: file\n    path: {}/events.jsonl\n    max_size: 4MiB\n    max_files: 10000\n    buffer: {{ type: disk, max_size: 8MiB }}\n",
                out.display()
            ),
        }
    }

    pub fn faults(&self) -> &'static [&'static str] {
        match self {
            Sink::Es(_) => &[
                "es-503-outage",
                "es-429",
                "es-item-429",
                "es-item-503",
                "es-timeout",
                "es-200-empty",
            ],
            // What a real node does: dies (SIGKILL) or is stopped (a distribution's SIGTERM
            // closes it) and comes back on its data, hangs (SIGSTOP, as in a long GC pause or
            // on a frozen VM: bulks time out), blocks its indices when its disk passes the
            // flood stage, or has its index closed for maintenance.
            Sink::Os { .. } => &[
                "os-kill",
                "os-sigterm",
                "os-sigstop",
                "os-flood-stage",
                "os-close-index",
            ],
            Sink::Kafka(_) => &["broker-restart"],
            Sink::File {
                full_disk: true, ..
            } => &["output-disk-full", "buffer-disk-full"],
            Sink::File { .. } => &[],
        }
    }

    /// Starts an output fault; returns what must be undone later, if anything.
    pub fn inject(&mut self, kind: &'static str, rng: &mut Rng) -> Option<Outage> {
        let left = rng.range(0, 2);
        let lasting = |ballast| {
            Some(Outage {
                kind,
                left,
                ballast,
            })
        };
        match (self, kind) {
            (Sink::Es(es), "es-503-outage") => {
                es.with(|s| s.unavailable = true);
                lasting(None)
            }
            (Sink::Es(es), "es-429") => {
                let n = rng.range(1, 5);
                es.with(|s| s.fail_requests.extend(std::iter::repeat_n(429, n as usize)));
                None
            }
            (Sink::Es(es), "es-item-429") => {
                es.with(|s| s.item_429_percent = 30);
                lasting(None)
            }
            (Sink::Es(es), "es-item-503") => {
                es.with(|s| s.item_503_percent = 30);
                lasting(None)
            }
            (Sink::Es(es), "es-timeout") => {
                // Past the output's request_timeout (2 s): answered after the client gave up.
                es.with(|s| s.delay = Duration::from_secs(3));
                lasting(None)
            }
            (Sink::Es(es), "es-200-empty") => {
                let n = rng.range(1, 3);
                es.with(|s| s.empty_ok_requests += n);
                None
            }
            (Sink::Os { node, busy, .. }, kind) => {
                os_fault(node, kind, rng);
                *busy = true;
                lasting(None)
            }
            (Sink::Kafka(b), "broker-restart") => {
                if !b.running() {
                    // Already stopped by an outage still in progress: that one restarts it.
                    return None;
                }
                b.stop();
                lasting(None)
            }
            (Sink::File { out, .. }, "output-disk-full") => lasting(Some(fill(out))),
            (Sink::File { buffer, .. }, "buffer-disk-full") => lasting(Some(fill(buffer))),
            (_, other) => panic!("fault {other} does not apply to this output"),
        }
    }

    pub fn end(&mut self, o: Outage) {
        if let Some(p) = o.ballast {
            let _ = std::fs::remove_file(p);
        }
        match (self, o.kind) {
            (Sink::Es(es), "es-503-outage") => es.with(|s| s.unavailable = false),
            (Sink::Es(es), "es-item-429") => es.with(|s| s.item_429_percent = 0),
            (Sink::Es(es), "es-item-503") => es.with(|s| s.item_503_percent = 0),
            (Sink::Es(es), "es-timeout") => es.with(|s| s.delay = Duration::ZERO),
            (Sink::Kafka(b), "broker-restart") => b.start_again(),
            (Sink::Os { node, busy, .. }, kind) => {
                os_fault_end(node, kind);
                *busy = false;
            }
            _ => {}
        }
    }

    /// A number that grows while the output stores lines (to see the drain finish).
    pub fn progress(&self, metrics: &str) -> f64 {
        match self {
            Sink::Es(es) => es.with(|s| s.writes) as f64,
            Sink::Kafka(_) | Sink::Os { .. } => {
                crate::support::process::metric(metrics, "trawl_events_out_total", "out")
                    .unwrap_or(-1.0)
            }
            Sink::File { out, .. } => std::fs::read_dir(out)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum::<u64>()
                })
                .unwrap_or(0) as f64,
        }
    }

    /// Everything the output kept; and for Elasticsearch, how many writes overwrote a document.
    pub fn delivered(&self) -> (Delivered, u64) {
        let mut d = Delivered::default();
        match self {
            Sink::Os { node, .. } => {
                // Every document by its `_id` (scrolled): a line under two `_id`s is two
                // documents with its message; a `_version` past 1 a write over the same `_id`.
                let mut overwritten = 0;
                for (_, version, doc) in node.all_hits("campaign") {
                    d.add(doc["message"].as_str());
                    overwritten += version.saturating_sub(1);
                }
                (d, overwritten)
            }
            Sink::Es(es) => {
                let overwritten = es.with(|s| {
                    for (_, doc) in s.docs_in("campaign") {
                        d.add(doc["message"].as_str());
                    }
                    s.writes - s.docs_in("campaign").len() as u64
                });
                (d, overwritten)
            }
            Sink::Kafka(b) => {
                for r in b.read_all("campaign") {
                    let v: serde_json::Value =
                        serde_json::from_slice(&r.payload).unwrap_or_default();
                    let start = r.headers.iter().find(|(k, _)| k == "trawl_start");
                    d.add_sent_by(v["message"].as_str(), start.map(|(_, v)| v.as_str()));
                }
                (d, 0)
            }
            Sink::File { out, .. } => {
                read_json_files(out, "events.jsonl", &mut d);
                (d, 0)
            }
        }
    }
}

/// Starts a fault on the real node (`busy` is then set until `os_fault_end`).
fn os_fault(node: &mut OpenSearch, kind: &str, rng: &mut Rng) {
    match kind {
        "os-kill" => node.kill(),
        // A distribution's SIGTERM closes the node (its shards flushed) before the JVM exits:
        // the launcher does that when its standard input closes.
        "os-sigterm" => node.stop(),
        "os-sigstop" => {
            node.signal(libc::SIGSTOP);
            // Hung past the output's 2 s request_timeout, so that a bulk in flight times out.
            std::thread::sleep(Duration::from_millis(rng.range(2500, 5000)));
        }
        "os-flood-stage" => {
            // Every disk is fuller than 998 TB free: the node's disk monitor (looking every
            // 10 s, its least interval) marks the index `read_only_allow_delete`, answered 429.
            node.put(
                "/_cluster/settings",
                &serde_json::json!({"transient": {
                    "cluster.routing.allocation.disk.threshold_enabled": true,
                    "cluster.routing.allocation.disk.watermark.low": "1000tb",
                    "cluster.routing.allocation.disk.watermark.high": "999tb",
                    "cluster.routing.allocation.disk.watermark.flood_stage": "998tb",
                    "cluster.info.update.interval": "10s"
                }}),
            );
            // Until the block is there (the fault is the block, not the setting).
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !flood_blocked(node) {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        "os-close-index" => {
            // Closed for maintenance (404 if trawl has not created it yet: no fault then).
            let _ = node
                .request(reqwest::Method::POST, "/campaign/_close")
                .send();
        }
        other => panic!("fault {other} does not apply to a real OpenSearch node"),
    }
}

/// Undoes a fault of the real node: started again, woken, room made, the index opened.
fn os_fault_end(node: &mut OpenSearch, kind: &str) {
    match kind {
        "os-kill" | "os-sigterm" => node.start_again(),
        "os-sigstop" => node.signal(libc::SIGCONT),
        "os-flood-stage" => {
            // The operator makes room: the monitor lifts the block at its next look (it
            // releases an index once its disk is below the high watermark).
            node.put(
                "/_cluster/settings",
                &serde_json::json!({"transient": {
                    "cluster.routing.allocation.disk.watermark.low": "3b",
                    "cluster.routing.allocation.disk.watermark.high": "2b",
                    "cluster.routing.allocation.disk.watermark.flood_stage": "1b"
                }}),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && flood_blocked(node) {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        "os-close-index" => {
            let _ = node
                .request(reqwest::Method::POST, "/campaign/_open")
                .send();
        }
        _ => {}
    }
}

/// Whether the disk monitor's block is on the campaign's index.
fn flood_blocked(node: &OpenSearch) -> bool {
    node.request(
        reqwest::Method::GET,
        "/campaign/_settings/index.blocks.read_only_allow_delete",
    )
    .send()
    .ok()
    .and_then(|r| r.text().ok())
    .is_some_and(|t| t.contains("\"true\""))
}

/// Adds the `message` of every line of `dir/name` and its rotated `name.N` files.
pub fn read_json_files(dir: &Path, name: &str, d: &mut Delivered) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n != name && !n.starts_with(&format!("{name}.")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            d.add(v["message"].as_str());
        }
    }
}

pub fn wait_for_http(addr: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "trawl's /metrics did not come up within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
