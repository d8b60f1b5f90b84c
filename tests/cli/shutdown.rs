//! How `trawl run` ends, through the real binary: a stop that leaves events undelivered exits
//! non-zero and says how many; one stop delivered as two SIGTERMs still drains; a closed stdout
//! ends a tailing pipeline, whose undelivered lines are read again by the next run.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::es_server::EsServer;
use support::process::{sigterm, wait_until, write_file, KillOnDrop, Trawl};

/// stdin into an Elasticsearch that is down: what is read cannot be delivered.
fn stuck_pipeline(dir: &Path, es: &EsServer, shutdown_timeout: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: {shutdown_timeout}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{es}\"]\n    index: logs\n    batch: {{ max_events: 500, timeout: 20ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 100ms }}\n",
            data = dir.join("data").display(),
            es = es.url,
        ),
    )
}

/// Starts the stuck pipeline and waits until the output has tried (and failed) to deliver.
fn start_stuck(dir: &Path, es: &EsServer, shutdown_timeout: &str) -> (Trawl, std::path::PathBuf) {
    let cfg = stuck_pipeline(dir, es, shutdown_timeout);
    let log = dir.join("trawl.log");
    let before = es.with(|s| s.requests);
    let mut t = Trawl::start(&cfg, Some(&log));
    let input: String = (0..100).map(|i| format!("line {i}\n")).collect();
    t.feed(input.as_bytes());
    wait_until(Duration::from_secs(30), "a bulk request", || {
        es.with(|s| s.requests) >= before + 2
    });
    (t, log)
}

#[test]
fn a_stop_past_shutdown_timeout_with_events_undelivered_exits_non_zero_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let (mut t, log) = start_stuck(dir.path(), &es, "1s");
    sigterm(&t);
    let status = t.wait(Duration::from_secs(30));
    let log = std::fs::read_to_string(log).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("with 100 events undelivered"), "{log}");
    assert_eq!(es.with(|s| s.docs.len()), 0);
}

/// `timeout` and `su` forward SIGTERM to a process group trawl is also in: one stop arrives as
/// two signals at once. That still drains (here, until `shutdown_timeout`), rather than exiting
/// 130 at once; a second SIGTERM after the grace interval does mean "now".
#[test]
fn the_same_stop_signal_twice_at_once_still_drains_but_a_later_one_exits_now() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let (mut t, log) = start_stuck(dir.path(), &es, "3s");
    sigterm(&t);
    sigterm(&t);
    let status = t.wait(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "drained until the deadline: {text}");
    assert!(text.contains("events undelivered"), "{text}");

    std::fs::remove_file(&log).unwrap();
    let (mut t, log) = start_stuck(dir.path(), &es, "60s");
    sigterm(&t);
    // Past the grace interval (1 s): a second stop, however long the drain would still take.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "still draining: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    sigterm(&t);
    // Well before the 60 s deadline.
    let status = t.wait(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{text}");
}

/// `trawl run | head -1` on a tailed file: once the reader of stdout is gone, trawl exits
/// non-zero (a broken stdout is fatal) instead of tailing forever; the lines it could not write
/// keep their offsets uncommitted, so the next run writes them.
#[test]
fn a_closed_stdout_ends_a_tailing_pipeline_and_its_lines_are_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    std::fs::write(&app, "first\n").unwrap();
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 10s\ninputs:\n  logs:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    registry_flush: 100ms\noutputs:\n  console: {{ type: stdout, format: text }}\n",
            data = dir.path().join("data").display(),
            app = app.display(),
        ),
    );
    let log = dir.path().join("trawl.log");
    let start = || {
        let child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        KillOnDrop(child)
    };

    let mut first = start();
    let mut stdout = BufReader::new(first.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    // The reader goes away, as `head -1` does; then the file grows.
    drop(stdout);
    let later: Vec<String> = (0..20).map(|i| format!("later {i}")).collect();
    let mut f = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    for l in &later {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = first.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "trawl kept running with its stdout closed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("writing to stdout"), "{text}");

    // The next run (stdout read this time) writes every line the first could not.
    let mut second = start();
    let stdout = second.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !later.iter().all(|l| seen.contains(l)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("the second run wrote only {seen:?}"),
        }
    }
}
