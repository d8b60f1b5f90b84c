//! Delivery through crashes, end to end with the real binary: a file is written while trawl is
//! killed with SIGKILL every few seconds and restarted; afterwards every line is in Kafka
//! (duplicates counted and bounded by what can be in flight) and in a real OpenSearch node
//! exactly once (deterministic ids from file identity + offset).

use crate::support;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::kafka::Broker;
use support::opensearch::OpenSearch;
use support::process::{metric, write_file, Trawl};

/// Appends `total` numbered lines to `path` over about `seconds`.
fn start_writer(
    path: &Path,
    total: u64,
    seconds: u64,
) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let path = path.to_owned();
    let h = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let chunks = seconds * 20;
        let per_chunk = total.div_ceil(chunks);
        let pad = "x".repeat(80);
        let mut i = 0;
        let start = Instant::now();
        for c in 0..chunks {
            let mut buf = String::with_capacity(per_chunk as usize * 100);
            while i < total && i < (c + 1) * per_chunk {
                buf.push_str(&format!("line {i:07} {pad}\n"));
                i += 1;
            }
            f.write_all(buf.as_bytes()).unwrap();
            let due = Duration::from_millis(50 * (c + 1));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        d.store(true, Ordering::Relaxed);
    });
    (h, done)
}

/// Runs trawl, killing it with SIGKILL every 2-4 s until the writer is done and `kill_for` has
/// passed; then runs it until `delivered` stops growing, and stops it with SIGTERM. Returns the
/// number of kills.
fn crash_loop(
    cfg: &Path,
    log: &Path,
    addr: &str,
    output: &str,
    writer_done: &AtomicBool,
    kill_for: Duration,
) -> u32 {
    let start = Instant::now();
    let mut kills = 0;
    let mut pause = 2000u64;
    while start.elapsed() < kill_for || !writer_done.load(Ordering::Relaxed) {
        let mut t = Trawl::start(cfg, Some(log));
        std::thread::sleep(Duration::from_millis(pause));
        t.kill9();
        kills += 1;
        pause = 2000 + (pause * 7919 + 13) % 2000;
    }
    // The last run: until the output has been idle for 3 s, then a clean stop.
    let mut t = Trawl::start(cfg, Some(log));
    let mut last = -1.0;
    let mut idle_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = metric(addr, "trawl_events_out_total", output).unwrap_or(-1.0);
        if now != last {
            last = now;
            idle_since = Instant::now();
        } else if now >= 0.0 && idle_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last run did not finish delivering"
        );
    }
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
    assert!(t.wait(Duration::from_secs(60)).success());
    kills
}

fn pipeline(dir: &Path, addr: &str, output: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 30s\ninputs:\n  app:\n    type: file\n    paths: [\"{log}\"]\n    registry_flush: 200ms\n    poll_interval: 100ms\noutputs:\n{output}",
        data = dir.join("data").display(),
        log = dir.join("app.log").display(),
    );
    write_file(dir, "pipeline.yaml", &text)
}

#[test]
fn file_to_kafka_through_kill_9_every_few_seconds_loses_nothing() {
    let broker = Broker::start_persistent();
    broker.create_topic("e2e", 2);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    // A small librdkafka queue keeps the in-flight window, and so the duplicates, small.
    let cfg = pipeline(
        dir.path(),
        &addr,
        &format!("  k:\n    type: kafka\n    brokers: [\"{}\"]\n    topic: e2e\n    queue_max_bytes: 2MiB\n    librdkafka: {{ queue.buffering.max.messages: \"10000\" }}\n", broker.bootstrap),
    );
    let total = 1_000_000u64;
    let (writer, done) = start_writer(&dir.path().join("app.log"), total, 50);
    let kills = crash_loop(
        &cfg,
        &dir.path().join("trawl.log"),
        &addr,
        "k",
        &done,
        Duration::from_secs(60),
    );
    writer.join().unwrap();

    let records = broker.read_all("e2e");
    let mut seen = HashSet::with_capacity(total as usize);
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let n: u64 = v["message"].as_str().unwrap()[5..12].parse().unwrap();
        seen.insert(n);
    }
    let duplicates = records.len() as u64 - seen.len() as u64;
    // Per kill, at most what can be in flight: librdkafka's queue (10,000), the pipeline's
    // queues (3 stages x 4 batches x 1,024) and what was acknowledged since the last registry
    // save (200 ms at this rate, ~5,000).
    let window = 10_000 + 3 * 4 * 1024 + 5_000;
    eprintln!("file->kafka: {total} lines, {kills} kills, {} messages, {duplicates} duplicates (bound {})", records.len(), kills as u64 * window);
    let missing: Vec<u64> = (0..total).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(
        missing.is_empty(),
        "lines missing from Kafka, first ones: {missing:?}"
    );
    assert!(kills >= 10, "trawl was killed {kills} times");
    assert!(
        duplicates <= kills as u64 * window,
        "{duplicates} duplicates exceed the in-flight bound"
    );
}

#[test]
fn file_to_opensearch_through_kill_9_stores_each_line_exactly_once() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    let cfg = pipeline(
        dir.path(),
        &addr,
        &format!("  es:\n    type: elasticsearch\n    hosts: [\"{}\"]\n    index: e2e\n    batch: {{ max_events: 1000, timeout: 100ms }}\n", os.url),
    );
    let total = 100_000u64;
    let (writer, done) = start_writer(&dir.path().join("app.log"), total, 20);
    let kills = crash_loop(
        &cfg,
        &dir.path().join("trawl.log"),
        &addr,
        "es",
        &done,
        Duration::from_secs(20),
    );
    writer.join().unwrap();
    let docs = os.all_docs("e2e");
    let seen: HashSet<u64> = docs
        .iter()
        .map(|d| d["message"].as_str().unwrap()[5..12].parse().unwrap())
        .collect();
    let stats = os.get("/e2e/_stats/indexing");
    let writes = stats["indices"]["e2e"]["primaries"]["indexing"]["index_total"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "file->opensearch: {total} lines, {kills} kills, {} documents, {writes} index operations",
        docs.len()
    );
    let missing: Vec<u64> = (0..total).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(
        missing.is_empty(),
        "lines missing from OpenSearch, first ones: {missing:?}"
    );
    assert_eq!(
        docs.len() as u64,
        total,
        "and each exactly once: re-sent lines overwrote their first copy"
    );
    assert!(kills >= 5, "trawl was killed {kills} times");
}
