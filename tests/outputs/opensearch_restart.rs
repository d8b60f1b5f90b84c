//! A real OpenSearch node restarted under a file's steady writes, through the real binary: the
//! node SIGKILLed mid-stream and started again on the same data (its shards recover from their
//! translog, the index red until they do); then trawl SIGKILLed too while the node is down and
//! both started again, the node on a disk past its flood-stage watermark, so that its own disk
//! monitor blocks the index until room is made. Every line is stored exactly
//! once (ids from the file's identity and offset), none is dead-lettered, and `/health` and the
//! metrics say what happened meanwhile.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::opensearch::OpenSearch;
use support::process::{
    append, free_port, health_turns_503, http_get, metric, read_json_lines, wait_until, write_file,
    Trawl,
};

const INDEX: &str = "restart";

fn line(i: usize) -> String {
    format!("restart line {i:06}\n")
}

fn pipeline(dir: &Path, addr: &str, url: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\", health: {{ output_failure_threshold: 1s }} }}\nshutdown_timeout: 60s\ninputs:\n  app:\n    type: file\n    paths: [\"{log}\"]\n    poll_interval: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: {INDEX}\n    dead_letter: dead\n    batch: {{ max_events: 200, timeout: 100ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 1s }}\n  dead:\n    type: file\n    path: {dead}\n",
            data = dir.join("data").display(),
            log = dir.join("app.log").display(),
            dead = dir.join("dead.jsonl").display(),
        ),
    )
}

/// Appends lines to `app.log` at a steady pace (about 400 a second, in small writes) on a
/// thread of its own until `stop` is set; `written` is how many so far.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(app: &Path, first: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(first));
        let (s, w, app) = (stop.clone(), written.clone(), app.to_owned());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let n = w.load(Ordering::Relaxed);
                append(&app, &(n..n + 8).map(line).collect::<String>());
                w.store(n + 8, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Writer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops writing; how many lines were written in all.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.written()
    }
}

/// How many documents hold each message, over the whole index (scrolled), and the index's
/// document count (`_count`: one per `_id`).
fn stored(os: &OpenSearch) -> (HashMap<String, usize>, u64) {
    let mut copies = HashMap::new();
    for doc in os.all_docs(INDEX) {
        if let Some(m) = doc["message"].as_str() {
            *copies.entry(m.to_owned()).or_insert(0) += 1;
        }
    }
    let count = os.get(&format!("/{INDEX}/_count"))["count"]
        .as_u64()
        .unwrap_or(0);
    (copies, count)
}

/// Lines `0..n` each stored once: by message and by `_id` (as many documents as lines).
fn assert_each_line_once(os: &OpenSearch, n: usize, phase: &str) {
    let (copies, count) = stored(os);
    let missing: Vec<usize> = (0..n)
        .filter(|i| !copies.contains_key(line(*i).trim_end()))
        .collect();
    assert!(
        missing.is_empty(),
        "{phase}: {} of {n} lines lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = copies
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(m, _)| m)
        .collect();
    assert!(
        twice.is_empty(),
        "{phase}: {} lines stored under two ids, first {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(
        copies.len(),
        n,
        "{phase}: lines stored that were not written"
    );
    assert_eq!(count, n as u64, "{phase}: documents (one per _id) vs lines");
}

/// Waits until trawl's `/metrics` at `addr` has counted `n` events stored, and the node shows
/// every line.
fn wait_all_stored(os: &OpenSearch, addr: &str, n: usize, phase: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = os
            .request(reqwest::Method::GET, &format!("/{INDEX}/_count"))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0);
        if count >= n as u64 {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{phase}: {count} of {n} lines stored after 120 s (metrics say {:?}); trawl's log:\n{}",
                metric(addr, "trawl_events_out_total", "es"),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        // `_count` sees only refreshed documents: refresh now and then.
        let _ = os
            .request(reqwest::Method::POST, &format!("/{INDEX}/_refresh"))
            .send();
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_node_killed_restarted_and_flooded_under_load_stores_every_line_once() {
    let mut os = OpenSearch::start_restartable(&[]);
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("trawl.log");
    let app = dir.path().join("app.log");
    let dead = dir.path().join("dead.jsonl");
    let cfg = pipeline(dir.path(), &addr, &os.url);
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let out = |addr: &str| metric(addr, "trawl_events_out_total", "es").unwrap_or(0.0) as usize;
    let retries = |addr: &str| metric(addr, "trawl_output_retries_total", "es").unwrap_or(0.0);

    // Phase 1: the node SIGKILLed mid-stream, down 5 s, started again on the same data.
    let writer = Writer::start(&app, 0);
    wait_until(Duration::from_secs(60), "the first lines stored", || {
        out(&addr) >= 400
    });
    assert_eq!(
        http_get(&addr, "/health").map(|h| h.0),
        Some(200),
        "healthy while delivering"
    );
    let retries_before = retries(&addr);
    os.kill();
    let killed = Instant::now();
    let written_at_kill = writer.written();
    let turned = health_turns_503(&addr, killed, Duration::from_secs(5));
    let (after, body) = turned.unwrap_or_else(|| {
        panic!(
            "/health still 200 5 s after the node was killed (threshold 1s); trawl's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    eprintln!(
        "/health 503 {:.1} s after the node was killed: {body}",
        after.as_secs_f64()
    );
    assert!(body.contains("\"es\""), "/health names the output: {body}");
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    let out_while_down = out(&addr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        out(&addr),
        out_while_down,
        "nothing counted stored while down"
    );
    assert!(
        out_while_down < writer.written(),
        "lines written while down wait ({out_while_down} stored of {})",
        writer.written()
    );
    assert!(
        retries(&addr) > retries_before,
        "trawl_output_retries_total counts the refused requests"
    );
    os.start_again();
    eprintln!(
        "node down {:.1} s, {} lines written meanwhile",
        killed.elapsed().as_secs_f64(),
        writer.written() - written_at_kill
    );
    // Writes go on a few seconds after the node is back (its shards recovering meanwhile).
    std::thread::sleep(Duration::from_secs(3));
    let n = writer.finish();
    wait_all_stored(&os, &addr, n, "after the node's restart", &log);
    assert_each_line_once(&os, n, "after the node's restart");
    wait_until(Duration::from_secs(10), "/health 200 again", || {
        http_get(&addr, "/health").is_some_and(|h| h.0 == 200)
    });
    assert_eq!(out(&addr), n, "trawl_events_out_total: every line once");
    assert!(
        read_json_lines(&dead).is_empty(),
        "dead letters: {:?}",
        read_json_lines(&dead).first()
    );

    // Phase 2: the node killed, trawl SIGKILLed while it is down (with lines read and not
    // stored), more lines written, then both started again; the node on a disk past its
    // flood-stage watermark (free space below 998 TB: every disk is), so that its disk monitor
    // blocks the index (`read_only_allow_delete`, answered 429 `cluster_block_exception`). The
    // lines wait, and go once the operator has made room (here: watermarks lowered) and the
    // monitor lifts the block. (One restart for both faults keeps the test short.)
    let writer = Writer::start(&app, n);
    wait_until(Duration::from_secs(30), "more lines stored", || {
        out(&addr) >= n + 200
    });
    os.kill();
    std::thread::sleep(Duration::from_secs(2));
    trawl.kill9();
    let n = writer.finish();
    append(&app, &(n..n + 500).map(line).collect::<String>());
    let n = n + 500;
    os.start_again_with(&[
        ("cluster.routing.allocation.disk.threshold_enabled", "true"),
        ("cluster.routing.allocation.disk.watermark.low", "1000tb"),
        ("cluster.routing.allocation.disk.watermark.high", "999tb"),
        (
            "cluster.routing.allocation.disk.watermark.flood_stage",
            "998tb",
        ),
        // The least interval the node takes: how soon the monitor looks at the disk.
        ("cluster.info.update.interval", "10s"),
    ]);
    wait_until(
        Duration::from_secs(60),
        "the disk monitor's block on the index",
        || {
            os.request(
                reqwest::Method::GET,
                &format!("/{INDEX}/_settings/index.blocks.read_only_allow_delete"),
            )
            .send()
            .ok()
            .and_then(|r| r.text().ok())
            .is_some_and(|t| t.contains("\"true\""))
        },
    );
    let stored_before = os.get(&format!("/{INDEX}/_count"))["count"].as_u64();
    let mut trawl = Trawl::start(&cfg, Some(&log));
    append(&app, &(n..n + 300).map(line).collect::<String>());
    let n = n + 300;
    let blocked = Instant::now();
    let (_, body) =
        health_turns_503(&addr, blocked, Duration::from_secs(30)).unwrap_or_else(|| {
            panic!(
                "/health still 200 30 s into the flood-stage block; trawl's log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    assert!(
        body.contains("\"es\"") && body.contains("cluster_block_exception"),
        "/health names the output and the block: {body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        read_json_lines(&dead).is_empty(),
        "events held by the flood-stage block were dead-lettered: {:?}",
        read_json_lines(&dead).first()
    );
    assert_eq!(
        os.get(&format!("/{INDEX}/_count"))["count"].as_u64(),
        stored_before,
        "nothing stored while blocked"
    );
    os.put(
        "/_cluster/settings",
        &serde_json::json!({"transient": {
            "cluster.routing.allocation.disk.watermark.low": "3b",
            "cluster.routing.allocation.disk.watermark.high": "2b",
            "cluster.routing.allocation.disk.watermark.flood_stage": "1b"
        }}),
    );
    wait_all_stored(
        &os,
        &addr,
        n,
        "after the flood-stage block was lifted",
        &log,
    );
    assert_each_line_once(&os, n, "after the flood-stage block was lifted");
    assert!(
        read_json_lines(&dead).is_empty(),
        "dead letters: {:?}",
        read_json_lines(&dead).first()
    );
    wait_until(Duration::from_secs(10), "/health 200 again", || {
        http_get(&addr, "/health").is_some_and(|h| h.0 == 200)
    });
    assert_eq!(
        trawl.stop(Duration::from_secs(60)).code(),
        Some(0),
        "a clean stop"
    );
    eprintln!(
        "test took {:.1} s after the node's first start",
        test_start.elapsed().as_secs_f64()
    );
}
