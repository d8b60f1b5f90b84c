//! logrotate's `copytruncate` whose truncation trawl sees while running, and trawl stopped
//! (SIGTERM or kill -9) before it found the copy: the copy holds lines already delivered under
//! the file's old stream id, so after the restart it must continue that stream. Read as a new
//! file, every line of it is stored again under other `_id`s (`id_from: origin`). Checked
//! against a real OpenSearch node with `op_type: create`: a line sent again under its first
//! `_id` is refused (409), one sent under another `_id` is a second document.

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{append, wait_until, write_file, Trawl};

/// The registry's offset for the file at `path`, if it has an entry for it.
fn registry_offset(registry: &Path, path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(registry).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find(|e| e["path"].as_str() == Some(&path.display().to_string()))
        .and_then(|e| e["offset"].as_u64())
}

fn run(index: &str, kill9: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let os = OpenSearch::shared();
    // No filesystem events and a scan only at start: trawl sees the truncation of the file it
    // reads (by polling it) but not the copy, as when it is stopped between the two.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\", \"{logs}/*.log.*\"]\n    watch_events: false\n    scan_interval: 1h\n    poll_interval: 100ms\n    registry_flush: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: {index}\n    op_type: create\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            url = os.url
        ),
    );
    let registry = dir.path().join("data/registry/file-logs.json");
    let app = logs.join("app.log");
    let copy = logs.join("app.log.1");
    let old: Vec<String> = (0..500).map(|i| format!("old line {i:04}")).collect();
    append(&app, &(old.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl-1.log")));
    wait_until(Duration::from_secs(120), "the 500 old lines stored", || {
        os.copies_by_message(index).len() == 500
    });
    // copytruncate: copy, then truncate in place; the writer goes on in the emptied file.
    std::fs::copy(&app, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let new: Vec<String> = (0..200).map(|i| format!("new line {i:04}")).collect();
    append(&app, &(new.join("\n") + "\n"));
    wait_until(
        Duration::from_secs(60),
        "the 200 lines written after the truncation stored",
        || {
            let m = os.copies_by_message(index);
            new.iter().all(|l| m.contains_key(l))
        },
    );
    assert_eq!(
        registry_offset(&registry, &copy),
        None,
        "the copy was found before the stop: the scan settings do not give the case under test"
    );
    if kill9 {
        trawl.kill9();
    } else {
        unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
        let status = trawl.wait(Duration::from_secs(30));
        assert!(status.success(), "SIGTERM: trawl exited with {status}");
    }
    let size = std::fs::metadata(&copy).unwrap().len();
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl-2.log")));
    // The copy is found by the first scan and followed to its end (as a continuation: at once;
    // as a new file: once its lines were stored again).
    wait_until(
        Duration::from_secs(60),
        "the copy in the registry, delivered to its end",
        || registry_offset(&registry, &copy) == Some(size),
    );
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    let status = trawl.wait(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM: trawl exited with {status}");
    let m = os.copies_by_message(index);
    let wrong: Vec<&String> = old
        .iter()
        .chain(&new)
        .filter(|l| m.get(*l).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 700 lines not stored exactly once (first: {:?}, {} times)",
        wrong.len(),
        wrong.first(),
        wrong.first().and_then(|l| m.get(*l)).copied().unwrap_or(0)
    );
}

#[test]
fn a_copy_found_after_a_sigterm_keeps_the_ids_of_the_truncated_file() {
    run("truncated-then-sigterm", false);
}

#[test]
fn a_copy_found_after_a_kill9_keeps_the_ids_of_the_truncated_file() {
    run("truncated-then-kill9", true);
}
