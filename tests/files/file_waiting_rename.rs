//! A file still waiting for a `max_open_files` slot when it is renamed out of `paths` (kubelet's
//! rotation of `0.log` to `0.log.<time>`, beside its folder's glob) is still read once a slot
//! frees: no later scan can find it by its path, only the rename seen when it happened.

use crate::support;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};
use support::process::{read_json_lines, wait_until, write_file, Trawl};

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_waiting_file_renamed_out_of_paths_is_read_when_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out/events.jsonl");
    // One slot for the reader, one file held open by discovery: with a.log and c.log busy,
    // b.log can be neither.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 200ms\n    registry_flush: 200ms\noutputs:\n  out: {{ type: file, path: \"{out}\" }}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            out = out.display()
        ),
    );
    let (a, b, c) = (logs.join("a.log"), logs.join("b.log"), logs.join("c.log"));
    append(&a, "a 0\n");
    append(&c, "c 0\n");
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl.log")));
    let busy = |until: Instant, n: &mut u32| {
        while Instant::now() < until {
            *n += 1;
            append(&a, &format!("a {n}\n"));
            append(&c, &format!("c {n}\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut n = 0;
    busy(Instant::now() + Duration::from_secs(2), &mut n);
    let b_lines: Vec<String> = (0..100).map(|i| format!("b {i}")).collect();
    append(&b, &(b_lines.join("\n") + "\n"));
    // Scans see b.log (waiting), then it is rotated away while the others keep the slots.
    busy(Instant::now() + Duration::from_secs(1), &mut n);
    std::fs::rename(&b, logs.join("b.log.20261130-130000")).unwrap();
    busy(Instant::now() + Duration::from_secs(2), &mut n);
    // a.log and c.log now idle: their slots free up, each in turn.
    let messages = || -> HashSet<String> {
        read_json_lines(&out)
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "every line of a.log and c.log delivered",
        || {
            let m = messages();
            (0..=n).all(|i| m.contains(&format!("a {i}")) && m.contains(&format!("c {i}")))
        },
    );
    wait_until(
        Duration::from_secs(30),
        "the 100 lines of b.log, renamed out of paths while it waited for a slot, delivered",
        || {
            let m = messages();
            b_lines.iter().all(|l| m.contains(l))
        },
    );
    drop(trawl.child.stdin.take());
}
