//! A kubelet log waiting for a `max_open_files` slot (no descriptor held) that kubelet rotates
//! (`0.log` → `0.log.<time>`) and then gzips (`0.log.<time>.gz`, the plain file deleted) before
//! the slot frees: its unread lines are read from the `.gz` once it gets a slot, exactly once,
//! and nothing is counted as skipped. A restart afterwards reads none of them again.

use crate::pod::kubelet_gzip;
use crate::support;

use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, metric, numbered_cri_lines, wait_until, write_file, Trawl,
};

#[test]
fn a_waiting_kubelet_file_rotated_and_gzipped_is_read_from_the_gz() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let logs = root.join("logs");
    let app = root.join("pods/shop_web-1_0000-0001/app");
    let links = root.join("containers");
    for d in [&logs, &app, &links] {
        std::fs::create_dir_all(d).unwrap();
    }
    let k = app.join("0.log");
    append(&k, &numbered_cri_lines("k", 10));
    std::os::unix::fs::symlink(&k, links.join("web-1_shop_app-0001.log")).unwrap();
    let out = root.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    // One slot. b.log, deleted, holds it until idle for `close_removed`: long enough for the
    // rotation and the gzip below to happen while 0.log waits (should a slow machine take
    // longer, 0.log is read before it is gzipped, and the test still holds).
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\", \"{links}/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 200ms\n    close_removed: 4s\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            logs = logs.display(),
            links = links.display(),
            out = out.display(),
        ),
    );
    let log = root.join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "0.log's 10 lines", || {
        delivered_lines(&out, "k") == 10
    });
    // b.log takes the slot (0.log, idle at its end, is closed for it), then is deleted.
    let b = logs.join("b.log");
    append(&b, &numbered_cri_lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered_lines(&out, "b") == 10
    });
    std::fs::remove_file(&b).unwrap();
    append(&k, &numbered_cri_lines("k-more", 20));
    wait_until(Duration::from_secs(60), "0.log waiting for a slot", || {
        gauge("trawl_file_waiting_files") == 1.0
    });
    // kubelet rotates, the runtime writes the next 0.log, kubelet gzips the rotated file.
    let rotated = app.join("0.log.20261205-100000");
    std::fs::rename(&k, &rotated).unwrap();
    append(&k, &numbered_cri_lines("k-new", 5));
    kubelet_gzip(&rotated);
    wait_until(
        Duration::from_secs(60),
        "the 20 lines 0.log had unread when gzipped, and the next 0.log's 5",
        || delivered_lines(&out, "k-more") == 20 && delivered_lines(&out, "k-new") == 5,
    );
    assert_eq!(delivered_lines(&out, "k"), 10, "0.log's first lines once");
    assert_eq!(gauge("trawl_file_skipped_files_total"), 0.0);
    assert!(trawl.stop(Duration::from_secs(60)).success());

    // A restart reads none of them again: a line written after it comes out alone.
    let mut trawl = Trawl::start(&config, Some(&log));
    append(&k, &numbered_cri_lines("k-after", 1));
    wait_until(
        Duration::from_secs(60),
        "the line written after the restart",
        || delivered_lines(&out, "k-after") == 1,
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (
            delivered_lines(&out, "k"),
            delivered_lines(&out, "k-more"),
            delivered_lines(&out, "k-new")
        ),
        (10, 20, 5),
        "every line once; log:\n{text}"
    );
    assert!(trawl.stop(Duration::from_secs(60)).success());
}
