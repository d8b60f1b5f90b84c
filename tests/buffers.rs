//! Output buffers through the real binary: a disk buffer keeps what the destination could not
//! take across `kill -9` (and a torn last record), and replays it; a memory buffer with
//! `when_full: drop_newest` never holds the input back and counts what it drops.

mod support {
    pub mod es_server;
    pub mod kafka;
    pub mod process;
}

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{metric, wait_until, write_file, Trawl};

fn config(dir: &Path, es: &str, buffer: &str, http: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {http}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{es}\"]\n    index: buffered\n    batch: {{ max_events: 500, timeout: 50ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 100ms }}\n    buffer: {buffer}\n",
        data = dir.join("data").display(),
    );
    write_file(dir, "pipeline.yaml", &text)
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("data/buffers/es"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn disk_buffer_survives_kill_9_and_a_torn_record_then_replays_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let cfg = config(
        dir.path(),
        &es.url,
        "{ type: disk, max_size: 64MiB }",
        "{ enabled: false }",
    );
    let n = 20_000;
    let mut t = Trawl::start(&cfg, None);
    let input: String = (0..n).map(|i| format!("line {i}\n")).collect();
    t.feed(input.as_bytes());
    // stdin is taken whole by the buffer even though Elasticsearch is down.
    let mut last = 0;
    wait_until(
        Duration::from_secs(30),
        "the disk buffer to hold every line",
        || {
            let now = segment_bytes(dir.path());
            let stable = now == last && now > (n as u64) * 20;
            last = now;
            std::thread::sleep(Duration::from_millis(300));
            stable
        },
    );
    assert!(es.with(|s| s.requests) > 0, "the output kept trying");
    t.kill9();
    assert_eq!(es.with(|s| s.docs.len()), 0);

    // A write interrupted by the crash: half a record at the end of the last segment.
    let seg_dir = dir.path().join("data/buffers/es");
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(segs.last().unwrap())
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
    drop(f);

    // Elasticsearch is back; trawl restarts with nothing new on stdin and replays the buffer.
    es.with(|s| s.unavailable = false);
    let log = dir.path().join("restart.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    let status = t.finish(Duration::from_secs(60));
    assert!(status.success());
    let (docs, writes) = es.with(|s| {
        let m: Vec<String> = s
            .docs_in("buffered")
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect();
        (m, s.writes)
    });
    let unique: HashSet<&String> = docs.iter().collect();
    assert_eq!(
        unique.len(),
        n,
        "every line buffered before kill -9 was delivered after restart"
    );
    assert_eq!(writes as usize, n, "and each exactly once");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("cutting a torn record"), "{log}");
    // The delivered position was saved: a third start re-sends nothing.
    let mut t = Trawl::start(&cfg, None);
    assert!(t.finish(Duration::from_secs(60)).success());
    assert_eq!(
        es.with(|s| s.writes) as usize,
        n,
        "nothing delivered is sent again"
    );
}

#[test]
fn memory_buffer_dropping_newest_never_blocks_the_input_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let port = support::process::free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = config(
        dir.path(),
        &es.url,
        "{ type: memory, max_events: 2000, when_full: drop_newest }",
        &format!("{{ address: \"{addr}\" }}"),
    );
    let mut t = Trawl::start(&cfg, None);
    let n = 50_000u64;
    let input: String = (0..n).map(|i| format!("line {i}\n")).collect();
    // With the destination down, the whole input still goes in: nothing waits on the output.
    t.feed(input.as_bytes());
    wait_until(Duration::from_secs(30), "stdin to be read whole", || {
        metric(&addr, "trawl_events_out_total", "app").is_some_and(|v| v as u64 == n)
    });
    // Let what is between stdin and the buffer arrive, so the drop count is final.
    let mut dropped = 0;
    wait_until(Duration::from_secs(10), "the drop count to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = metric(&addr, "trawl_events_dropped_total", "es").unwrap_or(0.0) as u64;
        let stable = now == dropped && now > 0;
        dropped = now;
        stable
    });
    assert!(dropped > n / 2, "drops are counted ({dropped})");
    es.with(|s| s.unavailable = false);
    assert!(t.finish(Duration::from_secs(60)).success());
    let stored = es.with(|s| s.docs_in("buffered").len() as u64);
    assert_eq!(
        stored + dropped,
        n,
        "every line is either stored or counted as dropped"
    );
}
