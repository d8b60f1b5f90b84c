//! A symlink under `paths` re-pointed while trawl is stopped (`current.log` →
//! `app-20261205.log`, was `app-20261204.log`): the lines the old file got after trawl stopped
//! are read at the restart, once, and the new file from its start.

use crate::support;

use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, numbered_lines, wait_until, write_file, Trawl,
};

#[test]
fn the_old_target_of_a_link_repointed_while_stopped_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("app-data");
    let links = root.join("links");
    for d in [&data, &links] {
        std::fs::create_dir_all(d).unwrap();
    }
    let old = data.join("app-20261204.log");
    let link = links.join("current.log");
    append(&old, &numbered_lines("old", 10));
    std::os::unix::fs::symlink(&old, &link).unwrap();
    let out = root.join("events.jsonl");
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"127.0.0.1:{port}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{links}/*.log\"]\n    poll_interval: 100ms\n    scan_interval: 200ms\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            port = free_port(),
            links = links.display(),
            out = out.display(),
        ),
    );
    let log = root.join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the first 10 lines", || {
        delivered_lines(&out, "old") == 10
    });
    assert!(trawl.stop(Duration::from_secs(60)).success());
    // While stopped: the app writes its last lines to the old file, then the link is
    // re-pointed (atomically, as `ln -sfn` through a rename) at the next day's file.
    append(&old, &numbered_lines("late", 5));
    let new = data.join("app-20261205.log");
    append(&new, &numbered_lines("new", 3));
    let tmp = links.join(".current.log.tmp");
    std::os::unix::fs::symlink(&new, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the new file's 3 lines", || {
        delivered_lines(&out, "new") == 3
    });
    wait_until(
        Duration::from_secs(30),
        "the 5 lines the old file got while trawl was stopped",
        || delivered_lines(&out, "late") == 5,
    );
    assert!(trawl.stop(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (
            delivered_lines(&out, "old"),
            delivered_lines(&out, "late"),
            delivered_lines(&out, "new")
        ),
        (10, 5, 3),
        "every line once; log:\n{text}"
    );
}
