//! A symlink under `paths` re-pointed while trawl is stopped (`current.log` →
//! `app-20261205.log`, was `app-20261204.log`): the lines the old file got after trawl stopped
//! are read at the restart, once, and the new file from its start.

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::process::{append, free_port, read_json_lines, wait_until, write_file, Trawl};

fn lines(what: &str, n: usize) -> String {
    (0..n).map(|i| format!("{what} line {i:04}\n")).collect()
}

fn delivered(out: &Path, what: &str) -> usize {
    let prefix = format!("{what} line ");
    read_json_lines(out)
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&prefix))
        })
        .count()
}

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
    append(&old, &lines("old", 10));
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
        delivered(&out, "old") == 10
    });
    assert!(trawl.stop(Duration::from_secs(60)).success());
    // While stopped: the app writes its last lines to the old file, then the link is
    // re-pointed (atomically, as `ln -sfn` through a rename) at the next day's file.
    append(&old, &lines("late", 5));
    let new = data.join("app-20261205.log");
    append(&new, &lines("new", 3));
    let tmp = links.join(".current.log.tmp");
    std::os::unix::fs::symlink(&new, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the new file's 3 lines", || {
        delivered(&out, "new") == 3
    });
    wait_until(
        Duration::from_secs(30),
        "the 5 lines the old file got while trawl was stopped",
        || delivered(&out, "late") == 5,
    );
    assert!(trawl.stop(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (
            delivered(&out, "old"),
            delivered(&out, "late"),
            delivered(&out, "new")
        ),
        (10, 5, 3),
        "every line once; log:\n{text}"
    );
}
