//! The `kafka` output through the real binary against a real Kafka-protocol broker (tansu,
//! started on a free port): templated topic, keys, headers, every compression codec, dead
//! letters for oversized messages, and a 30 s broker outage that loses nothing.

mod support {
    pub mod es_server;
    pub mod kafka;
    pub mod process;
}

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::kafka::Broker;
use support::process::{read_json_lines, write_file, Trawl};

fn config(dir: &Path, bootstrap: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    dead_letter: dead\n{extra}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.join("data").display(),
        dl = dir.join("dead.jsonl").display()
    );
    write_file(dir, "pipeline.yaml", &text)
}

fn messages(records: &[support::kafka::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
            v["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn templated_topic_keys_headers_and_every_codec() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    for (i, codec) in ["lz4", "zstd", "gzip", "snappy", "none"].iter().enumerate() {
        let topic = format!("logs.web-{i}");
        broker.create_topic(&topic, 3);
        let host = format!("web-{i}");
        let cfg = config(
            dir.path(),
            &broker.bootstrap,
            &format!("    topic: \"logs.%{{[host.name]}}\"\n    key: \"%{{[message]}}\"\n    headers: {{ origin-host: \"%{{[host.name]}}\" }}\n    compression: {codec}\n"),
        );
        let mut t = Trawl::start_env(&cfg, None, &[("TRAWL_HOSTNAME", &host)]);
        let n = 3000;
        let input: String = (0..n).map(|j| format!("k{} line {j}\n", j % 10)).collect();
        t.feed(input.as_bytes());
        assert!(t.finish(Duration::from_secs(60)).success());

        let records = broker.read_all(&topic);
        let msgs = messages(&records);
        let set: HashSet<&String> = msgs.iter().collect();
        assert_eq!(msgs.len(), n, "{codec}: every line exactly once");
        assert_eq!(set.len(), n);
        // The key is the message: each message's partition is the one its key hashes to, and
        // the three partitions are all used.
        let parts: HashSet<i32> = records.iter().map(|r| r.partition).collect();
        assert_eq!(parts.len(), 3, "{codec}: keys spread over the partitions");
        for r in &records {
            assert_eq!(
                r.key.as_deref(),
                Some(
                    serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["message"]
                        .as_str()
                        .unwrap()
                )
            );
            assert_eq!(r.headers, vec![("origin-host".to_owned(), host.clone())]);
        }
        // Per partition, the order of lines is the order they were written.
        let mut last: HashMap<i32, usize> = HashMap::new();
        for r in &records {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            let j: usize = v["message"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if let Some(prev) = last.insert(r.partition, j) {
                assert!(j > prev, "{codec}: partition {} out of order", r.partition);
            }
        }
    }
}

#[test]
fn oversized_messages_go_to_the_dead_letter_file() {
    let broker = Broker::start();
    broker.create_topic("big", 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker.bootstrap,
        "    topic: big\n    max_message_bytes: 2000\n    encoding: raw\n",
    );
    let mut t = Trawl::start(&cfg, None);
    let mut input = String::new();
    for i in 0..200 {
        if i % 50 == 3 {
            input.push_str(&format!("huge {i} {}\n", "x".repeat(3000)));
        } else {
            input.push_str(&format!("small {i}\n"));
        }
    }
    t.feed(input.as_bytes());
    assert!(t.finish(Duration::from_secs(60)).success());
    let records = broker.read_all("big");
    let got: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(got.len(), 196);
    assert!(
        got.iter().all(|m| m.starts_with("small ")),
        "raw encoding sends the message as is"
    );
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 4);
    for d in dead {
        assert_eq!(d["error"]["type"], "message_too_large");
        assert!(d["message"].as_str().unwrap().starts_with("huge "));
    }
}

/// Writes lines for ~45 s while the broker is unreachable from second 8 to second 38: every line
/// reaches Kafka, stdin is paused during the outage and resumes, and memory stays bounded.
#[test]
fn a_30_second_broker_outage_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("outage", 2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker.bootstrap,
        "    topic: outage\n    queue_max_bytes: 4MiB\n",
    );
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    let mut stdin = t.child.stdin.take().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let w = written.clone();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        let pad = "p".repeat(200);
        while start.elapsed() < Duration::from_secs(45) {
            let mut chunk = String::new();
            for _ in 0..100 {
                chunk.push_str(&format!("line {i} {pad}\n"));
                i += 1;
            }
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            w.store(i, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        i
    });
    let mut peak_kib = 0;
    let sample = |t: &Trawl, peak: &mut u64| {
        if let Some(k) = t.peak_rss_kib() {
            *peak = (*peak).max(k);
        }
    };
    std::thread::sleep(Duration::from_secs(8));
    broker.cut();
    let at_cut = written.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        sample(&t, &mut peak_kib);
    }
    let before_restore = written.load(std::sync::atomic::Ordering::Relaxed);
    broker.restore();
    let total = writer.join().unwrap();
    sample(&t, &mut peak_kib);
    let status = t.wait(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");

    let msgs = messages(&broker.read_all("outage"));
    let unique: HashSet<&String> = msgs.iter().collect();
    let duplicates = msgs.len() - unique.len();
    eprintln!(
        "outage: {total} lines written ({} during the 30 s outage), {} in Kafka, {duplicates} duplicates, peak RSS {} MiB",
        before_restore - at_cut,
        unique.len(),
        peak_kib / 1024
    );
    assert_eq!(
        unique.len() as u64,
        total,
        "every line written reached Kafka"
    );
    assert!(total > before_restore, "stdin resumed after the outage");
    // During the outage the pipeline fills and stdin blocks: far fewer lines get in than the
    // writer could produce (it writes ~20,000 lines/s when nothing blocks).
    assert!(
        before_restore - at_cut < 200_000,
        "stdin was paused during the outage"
    );
    assert!(peak_kib < 120 * 1024, "peak RSS {peak_kib} KiB is bounded");
}
