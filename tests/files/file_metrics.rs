//! The file input's gauges on `/metrics`, through the real binary and a real outage: with
//! `max_open_files: 1` and two files, one is open and one waits; the open file's lag is its
//! size while the output cannot deliver, and every lag falls to 0 once a cluster takes the
//! events.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{free_port, wait_until, write_file, Trawl};

/// Every sample line of `/metrics` named exactly `name`, as (labels, value).
fn samples(addr: &str, name: &str) -> Vec<(String, f64)> {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return Vec::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn one(addr: &str, name: &str) -> Option<f64> {
    samples(addr, name)
        .into_iter()
        .find(|(l, _)| l.contains("component=\"logs\""))
        .map(|(_, v)| v)
}

#[test]
fn open_waiting_and_lag_gauges_follow_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = "x".repeat(99);
    let body: String = (0..50).map(|_| format!("{line}\n")).collect();
    std::fs::write(logs.join("a.log"), &body).unwrap();
    std::fs::write(logs.join("b.log"), &body).unwrap();
    let size = body.len() as f64;

    let es_addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    scan_interval: 200ms\n    registry_flush: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"http://{es_addr}\"]\n    batch: {{ max_events: 500, timeout: 50ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 300ms }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    let t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));

    wait_until(
        Duration::from_secs(60),
        "one file open, one waiting, the open one's lag its size",
        || {
            one(&http, "trawl_file_open_files") == Some(1.0)
                && one(&http, "trawl_file_waiting_files") == Some(1.0)
                && one(&http, "trawl_file_lag_total_bytes") == Some(size)
        },
    );
    let lags = samples(&http, "trawl_file_lag_bytes");
    assert_eq!(lags.len(), 1, "{lags:?}");
    assert!(
        lags[0].0.contains("/logs/") && lags[0].0.contains(".log\""),
        "{lags:?}"
    );
    assert_eq!(lags[0].1, size, "{lags:?}");

    let es = EsServer::start_on(&es_addr);
    wait_until(
        Duration::from_secs(60),
        "both files delivered and no lag left",
        || {
            es.with(|s| s.docs.len()) >= 100
                && one(&http, "trawl_file_lag_total_bytes") == Some(0.0)
                && one(&http, "trawl_file_waiting_files") == Some(0.0)
        },
    );
    drop(t);
}

/// The lag while reading waits for the output: a file larger than `max_in_flight` during an
/// outage (reading has stopped at the in-flight limit, not at the end of the file) shows its
/// whole size as lag and as one open file, and the lag falls to 0 once a cluster takes it all.
#[test]
fn the_lag_is_current_while_reading_waits_for_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = "y".repeat(199);
    let body: String = (0..5000).map(|_| format!("{line}\n")).collect();
    std::fs::write(logs.join("big.log"), &body).unwrap();
    let size = body.len() as f64;

    let es_addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_in_flight: 64KiB\n    scan_interval: 200ms\n    registry_flush: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"http://{es_addr}\"]\n    batch: {{ max_events: 500, timeout: 50ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 300ms }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    let t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));

    wait_until(
        Duration::from_secs(60),
        "the waiting file's whole size as lag, and it open",
        || {
            one(&http, "trawl_file_open_files") == Some(1.0)
                && one(&http, "trawl_file_lag_total_bytes") == Some(size)
        },
    );
    assert_eq!(
        samples(&http, "trawl_file_lag_bytes")
            .first()
            .map(|(_, v)| *v),
        Some(size)
    );

    let es = EsServer::start_on(&es_addr);
    wait_until(
        Duration::from_secs(120),
        "the file delivered and no lag left",
        || {
            es.with(|s| s.docs.len()) >= 5000
                && one(&http, "trawl_file_lag_total_bytes") == Some(0.0)
        },
    );
    drop(t);
}

/// The same, when what fills up during the outage is the pipeline's queue, not the input's
/// `max_in_flight` (small lines, the usual case): reading then waits for room in the queue,
/// where the gauges were not refreshed, and the lag stayed at what it was when reading
/// stopped while the file kept growing.
#[test]
fn the_lag_is_current_while_reading_waits_for_room_in_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let path = logs.join("app.log");
    let line = |i: usize| format!("line {i:06} {}\n", "z".repeat(40));
    std::fs::write(&path, (0..2000).map(line).collect::<String>()).unwrap();

    let es_addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\" }}\npipeline: {{ batch_size: 100, queue_batches: 2 }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_in_flight: 64MiB\n    scan_interval: 200ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"http://{es_addr}\"]\n    batch: {{ max_events: 100, timeout: 50ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 300ms }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    let t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    wait_until(Duration::from_secs(30), "the first lines read", || {
        one(&http, "trawl_file_lag_total_bytes").is_some_and(|lag| lag > 0.0)
    });
    // The file grows while the output is down and reading waits on the full queue.
    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    w.write_all((2000..12000).map(line).collect::<String>().as_bytes())
        .unwrap();
    drop(w);
    let size = std::fs::metadata(&path).unwrap().len() as f64;
    wait_until(
        Duration::from_secs(30),
        "the lag following the file's growth",
        || one(&http, "trawl_file_lag_total_bytes") == Some(size),
    );

    let es = EsServer::start_on(&es_addr);
    wait_until(
        Duration::from_secs(120),
        "all delivered, no lag left",
        || {
            es.with(|s| s.docs.len()) >= 12000
                && one(&http, "trawl_file_lag_total_bytes") == Some(0.0)
        },
    );
    drop(t);
}

/// A container died mid-line: its last record is a CRI `P` whose `F` never comes. Once its log
/// is deleted and let go, the part is sent flagged partial and counted on `/metrics`.
#[test]
fn a_line_whose_rest_never_comes_is_counted_as_partial() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("0.log");
    std::fs::write(
        &app,
        "2026-11-23T10:00:00.000000000Z stdout F complete\n2026-11-23T10:00:00.000000000Z stdout P half of a line\n",
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("out.json");
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    scan_interval: 200ms\n    close_removed: 1s\noutputs:\n  out: {{ type: file, path: \"{out}\" }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            out = out.display(),
        ),
    );
    let t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    wait_until(Duration::from_secs(30), "the complete line", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o.contains("complete"))
    });
    assert_eq!(one(&http, "trawl_file_partial_lines_total"), Some(0.0));
    std::fs::remove_file(&app).unwrap();
    wait_until(Duration::from_secs(30), "the part sent, flagged", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o.contains("half of a line"))
    });
    wait_until(Duration::from_secs(30), "the partial line counted", || {
        one(&http, "trawl_file_partial_lines_total") == Some(1.0)
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let half = text.lines().find(|l| l.contains("half of a line")).unwrap();
    assert!(half.contains("partial"), "{half}");
    drop(t);
}
