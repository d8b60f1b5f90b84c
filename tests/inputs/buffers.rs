//! Output buffers through the real binary: a disk buffer keeps what the destination could not
//! take across `kill -9` (and a torn last record), and replays it, losing only a record damaged
//! on disk and dead-lettering what it could not read back; a memory buffer with
//! `when_full: drop_newest` never holds the input back and counts what it drops.

use crate::support;

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

/// `trawl tee` cannot hold its application back: without a disk buffer its lines would be lost
/// once the flush timeout passes with Elasticsearch down (checked by hand: this test then fails).
/// With one, they wait on disk and the next trawl with the same `data_dir` delivers them.
#[test]
fn tee_lines_survive_an_outage_in_the_disk_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let outputs = format!(
        "outputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{}\"]\n    index: tee\n    buffer: {{ type: disk, max_size: 64MiB }}\n",
        es.url
    );
    let common = format!(
        "data_dir: {}\nhttp: {{ enabled: false }}\nshutdown_timeout: 2s\n",
        dir.path().join("data").display()
    );
    let tee_cfg = write_file(dir.path(), "tee.yaml", &format!("{common}{outputs}"));
    let n = 20_000;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "error", "tee", "--flush-timeout", "5s", "-c"])
        .arg(&tee_cfg)
        .args(["--", "seq", "-f", "tee line %g", "1", &n.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "tee exits with the command's status");
    assert_eq!(
        es.with(|s| s.docs.len()),
        0,
        "Elasticsearch was down the whole time"
    );

    es.with(|s| s.unavailable = false);
    let run_cfg = write_file(
        dir.path(),
        "run.yaml",
        &format!("{common}inputs:\n  app: {{ type: stdin }}\n{outputs}"),
    );
    let mut t = Trawl::start(&run_cfg, None);
    // The replay happens while stdin is open; closing it then drains.
    wait_until(
        Duration::from_secs(30),
        "the buffered tee lines to be delivered",
        || es.with(|s| s.docs.len()) >= n,
    );
    assert!(t.finish(Duration::from_secs(30)).success());
    let msgs: HashSet<String> = es.with(|s| {
        s.docs_in("tee")
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect()
    });
    assert_eq!(msgs.len(), n);
    assert!(msgs.contains("tee line 1") && msgs.contains(&format!("tee line {n}")));
}

/// An event nested deeper than the disk buffer's reader takes back (a 126-deep JSON document
/// under `http.request.body`: 129 levels) is refused when written, before it is acknowledged,
/// and goes to the dead letters; the records after it are delivered.
#[test]
fn disk_buffer_dead_letters_an_event_too_deep_to_read_back_and_delivers_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\npipeline: {{ batch_size: 10 }}\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message, target: http.request.body }}\noutputs:\n  out:\n    type: file\n    path: {out}\n    buffer: {{ type: disk }}\n    dead_letter: dead\n  dead:\n    type: file\n    path: {dead}\n",
            data = data.display(),
            out = dir.path().join("out.jsonl").display(),
            dead = dir.path().join("dead.jsonl").display(),
        ),
    );
    let deep = format!(
        "{{\"n\":50,\"d\":{}1{}}}",
        "{\"a\":".repeat(125),
        "}".repeat(125)
    );
    let input: String = (0..300)
        .map(|i| {
            if i == 50 {
                format!("{deep}\n")
            } else {
                format!("{{\"n\":{i}}}\n")
            }
        })
        .collect();
    let mut t = Trawl::start(&cfg, None);
    t.feed(input.as_bytes());
    assert!(t.finish(Duration::from_secs(60)).success());

    let out = support::process::read_json_lines(&dir.path().join("out.jsonl"));
    let mut seen: Vec<i64> = out
        .iter()
        .map(|e| e["http"]["request"]["body"]["n"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    let expected: Vec<i64> = (0..300).filter(|i| *i != 50).collect();
    assert_eq!(seen, expected, "every other event arrived, once");
    let dead = support::process::read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["error"]["type"], "disk_buffer_unwritable");
    assert_eq!(dead[0]["trawl"]["dead_letter"]["output"], "out");
    let original = dead[0]["event"]["original"].as_str().unwrap();
    assert!(original.contains("\"n\":50"), "{original}");
}

/// Frames of a disk buffer segment (`[length u32][crc32 u32][payload]`, the payload starting
/// with its event count): (offset, payload length, events).
fn frames(segment: &[u8]) -> Vec<(usize, usize, u32)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[off..off + 4].try_into().unwrap()) as usize;
        let count = u32::from_le_bytes(segment[off + 8..off + 12].try_into().unwrap());
        out.push((off, len, count));
        off += 8 + len;
    }
    assert_eq!(off, segment.len(), "the segment is whole frames");
    out
}

/// Bytes flipped on disk while trawl is stopped, in the middle of the segment: in one record's
/// payload, and in another record's length. Each damaged record loses only its own events,
/// counted in `trawl_errors_total`; everything before, between and after them is replayed.
#[test]
fn disk_buffer_damaged_records_in_the_middle_lose_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let port = support::process::free_port();
    let addr = format!("127.0.0.1:{port}");
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 60s\npipeline: {{ batch_size: 100 }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{es}\"]\n    index: buffered\n    retry: {{ initial_backoff: 20ms, max_backoff: 100ms }}\n    buffer: {{ type: disk, max_size: 64MiB }}\n",
        data = dir.path().join("data").display(),
        es = es.url,
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let n = 5000;
    let mut t = Trawl::start(&cfg, None);
    let input: String = (0..n).map(|i| format!("line {i}\n")).collect();
    t.feed(input.as_bytes());
    wait_until(
        Duration::from_secs(30),
        "stdin to be buffered whole",
        || metric(&addr, "trawl_events_out_total", "app").is_some_and(|v| v as usize == n),
    );
    // Let the writer's last group reach the file.
    let mut last = 0;
    wait_until(
        Duration::from_secs(30),
        "the segment to stop growing",
        || {
            let now = segment_bytes(dir.path());
            let stable = now == last && now > 0;
            last = now;
            std::thread::sleep(Duration::from_millis(300));
            stable
        },
    );
    t.kill9();
    assert_eq!(es.with(|s| s.docs.len()), 0);

    let seg_dir = dir.path().join("data/buffers/es");
    let segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let frames = frames(&bytes);
    assert!(frames.len() >= 10, "{} records", frames.len());
    let (a, b) = (frames.len() / 3, 2 * frames.len() / 3);
    let (a_off, a_len, a_count) = frames[a];
    bytes[a_off + 8 + a_len / 2] ^= 0x5a;
    let (b_off, _, b_count) = frames[b];
    bytes[b_off + 1] ^= 0x11;
    std::fs::write(&segs[0], &bytes).unwrap();
    let lost = (a_count + b_count) as usize;

    es.with(|s| s.unavailable = false);
    let log = dir.path().join("restart.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(60), "the replay", || {
        es.with(|s| s.docs.len()) >= n - lost
    });
    let errors = metric(&addr, "trawl_errors_total", "es");
    assert!(t.finish(Duration::from_secs(60)).success());
    assert_eq!(errors, Some(2.0), "each damaged record is counted");
    let mut delivered: Vec<usize> = es.with(|s| {
        s.docs_in("buffered")
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap()[5..].parse().unwrap())
            .collect()
    });
    delivered.sort_unstable();
    assert_eq!(
        delivered.len(),
        n - lost,
        "only the damaged records' events are missing"
    );
    // The missing lines are two runs: one damaged record each, neither at the end.
    let missing: Vec<usize> = (0..n)
        .filter(|i| delivered.binary_search(i).is_err())
        .collect();
    let runs = missing.windows(2).filter(|w| w[1] != w[0] + 1).count() + 1;
    assert_eq!(runs, 2, "{missing:?}");
    assert!(
        *missing.last().unwrap() < n - 1,
        "what follows the damage is replayed"
    );
    assert_eq!(
        es.with(|s| s.writes) as usize,
        n - lost,
        "each exactly once"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("damaged record"), "{log}");
    assert!(!log.contains("cutting a torn record"), "{log}");
}

/// `trawl_buffer_events` and `trawl_buffer_bytes` of the output `es`, read from /metrics.
fn buffer_gauges(addr: &str) -> Option<(u64, u64)> {
    let events = metric(addr, "trawl_buffer_events", "es")? as u64;
    let bytes = metric(addr, "trawl_buffer_bytes", "es")? as u64;
    Some((events, bytes))
}

/// What an operator watches during an outage: both buffer gauges rise while the destination
/// is down, for either kind of buffer, and fall back to 0 once it took everything. The disk
/// buffer's gauges are exact (every event is written and none delivered) and are read back
/// from the segments after a kill -9.
#[test]
fn buffer_gauges_count_events_and_bytes_for_memory_and_disk_buffers() {
    for kind in ["memory", "disk"] {
        let dir = tempfile::tempdir().unwrap();
        let es = EsServer::start();
        es.with(|s| s.unavailable = true);
        let addr = format!("127.0.0.1:{}", support::process::free_port());
        let buffer = match kind {
            "memory" => "{ type: memory, max_events: 1000000 }",
            _ => "{ type: disk, max_size: 64MiB }",
        };
        let cfg = config(
            dir.path(),
            &es.url,
            buffer,
            &format!("{{ address: \"{addr}\" }}"),
        );
        // The memory buffer hands batches on to the output's own queue (a few batches) and
        // holds what does not fit there: enough lines that most wait in the buffer.
        let n = if kind == "disk" { 5_000u64 } else { 200_000 };
        let mut t = Trawl::start(&cfg, None);
        let input: String = (0..n).map(|i| format!("queued line {i:06}\n")).collect();
        t.feed(input.as_bytes());
        let least = if kind == "disk" { n } else { n / 2 };
        let mut seen = (0, 0);
        wait_until(
            Duration::from_secs(30),
            &format!("{kind}: the buffer gauges to show the queued lines"),
            || {
                seen = buffer_gauges(&addr).unwrap_or_default();
                std::thread::sleep(Duration::from_millis(200));
                seen.0 >= least
            },
        );
        assert!(seen.0 <= n, "{kind}: {} events buffered of {n}", seen.0);
        // Each event holds at least its message.
        assert!(
            seen.1 >= seen.0 * "queued line 000000".len() as u64,
            "{kind}: {} bytes for {} events",
            seen.1,
            seen.0
        );
        if kind == "disk" {
            assert_eq!(seen.0, n, "disk: every event is written, none delivered");
            // Restored from the segments at start-up.
            t.kill9();
            t = Trawl::start(&cfg, None);
            wait_until(
                Duration::from_secs(30),
                "disk: the gauges after a restart",
                || buffer_gauges(&addr).is_some_and(|(e, b)| e == n && b > 0),
            );
        }
        es.with(|s| s.unavailable = false);
        wait_until(
            Duration::from_secs(60),
            &format!("{kind}: the gauges back to 0 after the destination recovers"),
            || {
                seen = buffer_gauges(&addr).unwrap_or((u64::MAX, u64::MAX));
                seen == (0, 0) && es.with(|s| s.docs_in("buffered").len() as u64) >= n
            },
        );
        assert!(t.finish(Duration::from_secs(60)).success());
        let stored: HashSet<String> = es.with(|s| {
            s.docs_in("buffered")
                .iter()
                .map(|(_, d)| d["message"].as_str().unwrap_or_default().to_owned())
                .collect()
        });
        assert_eq!(stored.len() as u64, n, "{kind}: every line stored");
    }
}

/// Two processes given one `data_dir` with a disk buffer (a rollout with `maxSurge`: the new
/// pod starts while the old one drains): the second waits for the first to let go of the
/// buffer, then starts with what the first left in it, instead of failing at once (exit 1, a
/// crash loop until the old one is gone) as it did while only the buffer itself was locked.
#[test]
fn a_second_process_waits_for_the_disk_buffer_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out:\n    type: file\n    path: {out}\n    buffer: {{ type: disk }}\n",
            data = dir.path().join("data").display(),
            out = out.display(),
        ),
    );
    let delivered = || support::process::read_json_lines(&out);
    let mut first = Trawl::start(&config, Some(&dir.path().join("trawl-1.log")));
    first.feed(b"first 1\nfirst 2\n");
    wait_until(Duration::from_secs(30), "the first's lines", || {
        delivered().len() == 2
    });
    let log2 = dir.path().join("trawl-2.log");
    let mut second = Trawl::start(&config, Some(&log2));
    wait_until(Duration::from_secs(30), "the second's warning", || {
        std::fs::read_to_string(&log2)
            .unwrap_or_default()
            .contains("held by another trawl process")
    });
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "the second waits rather than exits: {}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    assert!(first.finish(Duration::from_secs(30)).success());
    second.feed(b"second 1\n");
    wait_until(Duration::from_secs(30), "the second's line", || {
        delivered().len() == 3
    });
    assert!(second.finish(Duration::from_secs(30)).success());
    let messages: Vec<String> = delivered()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(messages, ["first 1", "first 2", "second 1"]);
}
