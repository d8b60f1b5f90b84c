//! logrotate's `copytruncate` of a file trawl has closed (idle past `close_inactive`, as while a
//! failed batch backs off): the copy holds lines already read under the file's stream id, so it
//! must continue that stream. Read as a new file, every line would be stored again in
//! Elasticsearch under another `_id` (`id_from: origin` is stream id + offset).

mod support {
    pub mod es_server;
    pub mod process;
}

use std::time::Duration;
use support::es_server::EsServer;
use support::process::{append, wait_until, write_file, Trawl};

fn run(kill_between: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let es = EsServer::start();
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\", \"{logs}/*.log.*\"]\n    poll_interval: 100ms\n    scan_interval: 200ms\n    registry_flush: 100ms\n    close_inactive: 1s\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: logs\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            url = es.url
        ),
    );
    let app = logs.join("app.log");
    let first: Vec<String> = (0..500).map(|i| format!("old line {i:04}")).collect();
    append(&app, &(first.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl-1.log")));
    wait_until(
        Duration::from_secs(60),
        "the first 500 lines stored",
        || es.with(|s| s.copies_by_message("logs")).len() == 500,
    );
    // Idle past close_inactive: trawl closes app.log.
    std::thread::sleep(Duration::from_secs(3));
    if kill_between {
        trawl.kill9();
    }
    std::fs::copy(&app, logs.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let next: Vec<String> = (0..200).map(|i| format!("new line {i:04}")).collect();
    append(&app, &(next.join("\n") + "\n"));
    if kill_between {
        trawl = Trawl::start(&config, Some(&dir.path().join("trawl-2.log")));
    }
    wait_until(Duration::from_secs(60), "the 200 new lines stored", || {
        let m = es.with(|s| s.copies_by_message("logs"));
        next.iter().all(|l| m.contains_key(l))
    });
    // Whatever trawl would read of the copy it reads within a few scans.
    std::thread::sleep(Duration::from_secs(8));
    let m = es.with(|s| s.copies_by_message("logs"));
    let twice: Vec<&String> = first
        .iter()
        .chain(&next)
        .filter(|l| m.get(*l).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "{} of 700 lines not stored exactly once (first: {:?}, {} times)",
        twice.len(),
        twice.first(),
        twice.first().and_then(|l| m.get(*l)).copied().unwrap_or(0)
    );
    drop(trawl.child.stdin.take());
}

#[test]
fn the_copy_of_a_closed_file_keeps_its_ids() {
    run(false);
}

#[test]
fn the_copy_made_while_trawl_was_stopped_keeps_its_ids() {
    run(true);
}
