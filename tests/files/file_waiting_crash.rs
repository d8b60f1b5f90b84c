//! A kubelet `0.log` that is still waiting for a `max_open_files` slot when kubelet rotates it
//! and trawl is killed right after: the next start must find the rotated file and read it from
//! its first line. Only the registry can tell it from older history, so a waiting file must be
//! in the registry (offset 0, with its identity) before it gets a slot.

use crate::support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::process::{append, read_json_lines, wait_until, write_file, Trawl};

/// A CRI line as containerd writes it.
fn cri(text: &str) -> String {
    format!("2026-11-30T13:00:00.000000000Z stdout F {text}\n")
}

/// Creates pod `n`'s container folder with an empty `0.log` and its `/var/log/containers` link;
/// returns the `0.log` path.
fn container(root: &Path, n: u32) -> PathBuf {
    let dir = root.join(format!("pods/shop_web-{n}_0000-{n:04}/app"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    append(&log, "");
    let links = root.join("containers");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(&log, links.join(format!("web-{n}_shop_app-{n:064x}.log"))).unwrap();
    log
}

#[test]
fn a_waiting_file_rotated_just_before_a_kill_is_read_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = root.join("out/events.jsonl");
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{root}/containers/*.log\"]\n    max_open_files: 2\n    poll_interval: 100ms\n    scan_interval: 200ms\n    registry_flush: 200ms\n    close_inactive: 2s\noutputs:\n  out: {{ type: file, path: \"{out}\" }}\n",
            data = root.join("data").display(),
            root = root.display(),
            out = out.display()
        ),
    );
    // Six busy containers keep both slots (and discovery's spare handles) taken.
    let busy: Vec<PathBuf> = (0..6).map(|n| container(root, n)).collect();
    for (i, b) in busy.iter().enumerate() {
        append(b, &cri(&format!("busy {i} 0")));
    }
    let mut trawl = Trawl::start(&config, Some(&root.join("trawl-1.log")));
    let mut n = 0u32;
    let mut keep_busy = |until: Instant| {
        while Instant::now() < until {
            n += 1;
            for (i, b) in busy.iter().enumerate() {
                append(b, &cri(&format!("busy {i} {n}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    keep_busy(Instant::now() + Duration::from_secs(2));
    // The container that waits: its lines appear, several scans see it, then kubelet rotates
    // it and trawl is killed at once.
    let waiting = container(root, 9);
    let lines: Vec<String> = (0..300).map(|i| format!("waiting {i}")).collect();
    append(
        &waiting,
        &lines.iter().map(|l| cri(l)).collect::<Vec<_>>().concat(),
    );
    keep_busy(Instant::now() + Duration::from_secs(2));
    std::fs::rename(&waiting, waiting.with_file_name("0.log.20261130-130000")).unwrap();
    append(&waiting, "");
    trawl.kill9();
    // At the next start the busy files go quiet, so slots free up.
    let mut trawl = Trawl::start(&config, Some(&root.join("trawl-2.log")));
    let messages = || -> HashSet<String> {
        read_json_lines(&out)
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(
        Duration::from_secs(90),
        "the 300 lines of the 0.log rotated while it waited for a slot, delivered after a kill -9 and a restart",
        || {
            let m = messages();
            lines.iter().all(|l| m.contains(l))
        },
    );
    drop(trawl.child.stdin.take());
}
