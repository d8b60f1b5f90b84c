//! A container line split by kubelet's rotation (`P` in the rotated `0.log.<time>`, `F` in the
//! new `0.log`) while the output is down: the batches holding either part fail and are read
//! again, and Elasticsearch still stores the line once, whole, never a part of it alone.

use crate::pod::{split_json_line, Pod};
use crate::support;

use std::path::Path;
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{wait_until, write_file, Trawl};
use support::stdout_run::{has_open, line};

fn failures_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("an output failed a batch read from this file")
        .count()
}

#[test]
fn a_line_split_by_a_rotation_is_stored_once_whole_after_its_batches_failed() {
    let mut pod = Pod::cri();
    let d = pod.root().to_owned();
    let d = d.as_path();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let config = write_file(
        d,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{d}/containers/*.log\"]\n    poll_interval: 100ms\n    scan_interval: 200ms\n    registry_flush: 100ms\n    close_removed: 2s\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: logs\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n    retry: {{ initial_backoff: 300ms, max_backoff: 300ms, max_attempts: 3 }}\n",
            data = d.join("data").display(),
            d = d.display(),
            url = es.url
        ),
    );
    let log = d.join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    let (whole, a, b) = split_json_line(1);
    pod.writes(&[
        ("stdout", "F", &line(0)),
        ("stdout", "P", &a),
        ("stderr", "F", &line(1)),
    ]);
    wait_until(Duration::from_secs(30), "the first lines sent", || {
        es.with(|s| s.requests) > 0
    });
    // kubelet's rotation; the runtime writes the line's rest to the new `0.log`.
    let rotated = pod.rotate();
    pod.writes(&[("stdout", "F", &b), ("stdout", "F", &line(2))]);
    let target = pod.log();
    let pid = trawl.child.id();
    wait_until(Duration::from_secs(30), "the new 0.log followed", || {
        has_open(pid, target) && has_open(pid, &rotated)
    });
    // Both files' batches (the rotated one's lines, the joined line's) given up on.
    wait_until(
        Duration::from_secs(60),
        "batches of both files failed",
        || failures_logged(&log) >= 2,
    );
    es.with(|s| s.unavailable = false);
    let want = [whole.clone(), line(0), line(1), line(2)];
    es.wait_for_messages(
        "logs",
        &[&want],
        Duration::from_secs(60),
        "every line stored",
    );
    // The rotated file is let go (`close_removed`): a part it still held would be sent then.
    wait_until(Duration::from_secs(60), "the rotated file let go", || {
        !has_open(pid, &rotated)
    });
    let status = trawl.stop(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM: {status}");
    let docs: Vec<serde_json::Value> = es.with(|s| {
        s.docs_in("logs")
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    });
    let copies = es.with(|s| s.copies_by_message("logs"));
    for m in &want {
        assert_eq!(copies.get(m), Some(&1), "{m:?} stored once: {docs:#?}");
    }
    assert_eq!(
        docs.len(),
        4,
        "nothing else stored (no part alone): {docs:#?}"
    );
    assert!(
        docs.iter().all(|e| e["log"]["flags"].is_null()),
        "nothing flagged partial: {docs:#?}"
    );
}
