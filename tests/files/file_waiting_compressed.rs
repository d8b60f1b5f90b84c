//! A kubelet log waiting for a `max_open_files` slot (no descriptor held) that kubelet rotates
//! (`0.log` → `0.log.<time>`) and then gzips (`0.log.<time>.gz`, the plain file deleted) before
//! the slot frees: its unread lines are read from the `.gz` once it gets a slot, exactly once,
//! and nothing is counted as skipped. A restart afterwards reads none of them again.

use crate::pod::kubelet_gzip;
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, metric, numbered_cri_lines, wait_until, write_file, Trawl,
};

/// A pipeline following `root`'s `logs/*.log` and `containers/*.log` with one slot, to the
/// JSON-lines file `out`; `extra`: more keys of the input.
fn one_slot(root: &Path, addr: &str, out: &Path, extra: &str) -> PathBuf {
    write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{root}/logs/*.log\", \"{root}/containers/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 200ms\n{extra}outputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            root = root.display(),
            out = out.display(),
        ),
    )
}

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
    let config = one_slot(root, &addr, &out, "    close_removed: 4s\n");
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

/// kubelet rotates a log waiting for a slot twice: at the second rotation it gzips and deletes
/// the first rotated file, and ext4 gives its inode to the runtime's next `0.log`. By inode the
/// new `0.log` passes for the file that waited; it is a new file, and the waiting file's unread
/// lines are in the `.gz`. `read_before`: the log was read, then closed to free its slot, and
/// grew (else it was never read: it waited from its first line, with no descriptor held, as a
/// log does on a node past `max_open_files` after a restart). Without `watch_events` (scans
/// only, as on a file system without inotify), so that no scan falls between the deletion and
/// the new `0.log`, which would see the old file gone, and so that the waiting `0.log` renamed
/// at the first rotation is found renamed by the reader, not told by a rename event.
fn a_waiting_log_whose_inode_the_next_log_takes(read_before: bool) {
    use std::os::unix::fs::MetadataExt;
    // Kept to the end: deleted, their inodes would be free for the next 0.log to take.
    let mut tried = Vec::new();
    for attempt in 1..=8 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let logs = root.join("logs");
        let app = root.join("pods/shop_web-1_0000-0001/app");
        let links = root.join("containers");
        for d in [&logs, &app, &links] {
            std::fs::create_dir_all(d).unwrap();
        }
        // ext4 gives a new file the lowest free inode of its group: those other tests freed
        // are taken here, so that the next one freed is the waiting log's.
        for i in 0..256 {
            std::fs::write(app.join(format!("filler-{i}")), b"").unwrap();
        }
        let k = app.join("0.log");
        let link = links.join("web-1_shop_app-0001.log");
        let out = root.join("events.jsonl");
        let addr = format!("127.0.0.1:{}", free_port());
        // One slot, held by b.log once deleted for `close_removed`: longer than what follows.
        let config = one_slot(
            root,
            &addr,
            &out,
            "    watch_events: false\n    close_removed: 6s\n    registry_flush: 5s\n",
        );
        let log = root.join("trawl.log");
        let mut trawl = Trawl::start(&config, Some(&log));
        let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
        let b = logs.join("b.log");
        if read_before {
            append(&k, &numbered_cri_lines("k", 10));
            std::os::unix::fs::symlink(&k, &link).unwrap();
            wait_until(Duration::from_secs(60), "0.log's 10 lines", || {
                delivered_lines(&out, "k") == 10
            });
        }
        append(&b, &numbered_cri_lines("b", 10));
        wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
            delivered_lines(&out, "b") == 10
        });
        std::fs::remove_file(&b).unwrap();
        if read_before {
            append(&k, &numbered_cri_lines("k-more", 20));
        } else {
            // Discovery holds a descriptor for one waiting file: this one, found first.
            append(&logs.join("a.log"), &numbered_cri_lines("a", 10));
            wait_until(Duration::from_secs(60), "a.log waiting", || {
                gauge("trawl_file_waiting_files") == 1.0
            });
            append(&k, &numbered_cri_lines("k-more", 20));
            std::os::unix::fs::symlink(&k, &link).unwrap();
        }
        let waiting = if read_before { 1.0 } else { 2.0 };
        wait_until(Duration::from_secs(60), "0.log waiting for a slot", || {
            gauge("trawl_file_waiting_files") == waiting
        });
        let ino = std::fs::metadata(&k).unwrap().ino();
        let held = support::stdout_run::has_open(trawl.child.id(), &k);
        // kubelet rotates; the runtime writes the next 0.log; a scan finds it.
        std::fs::rename(&k, app.join("0.log.20261205-100000")).unwrap();
        append(&k, &numbered_cri_lines("k-new", 5));
        std::thread::sleep(Duration::from_millis(600));
        // kubelet's next rotation: the rotated file gzipped and deleted, freeing its inode,
        // the log renamed, and the runtime's next 0.log.
        kubelet_gzip(&app.join("0.log.20261205-100000"));
        std::fs::rename(&k, app.join("0.log.20261205-100100")).unwrap();
        append(&k, &numbered_cri_lines("k-newer", 5));
        let took = std::fs::metadata(&k).unwrap().ino() == ino;
        if held || !took {
            eprintln!(
                "attempt {attempt}: 0.log held open by trawl {held}, its inode taken {took}: again"
            );
            trawl.kill9();
            tried.push(dir);
            continue;
        }
        let names = ["k", "k-more", "k-new", "k-newer", "b", "a"];
        let want = [
            if read_before { 10 } else { 0 },
            20,
            5,
            5,
            10,
            if read_before { 0 } else { 10 },
        ];
        let got = || names.map(|w| delivered_lines(&out, w));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got() != want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Time for anything read twice to arrive too.
        std::thread::sleep(Duration::from_secs(2));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(got(), want, "every line once ({names:?}); log:\n{text}");
        assert_eq!(gauge("trawl_file_skipped_files_total"), 0.0);
        assert!(trawl.stop(Duration::from_secs(60)).success());
        return;
    }
    panic!("in 8 attempts, ext4 never gave the deleted log's inode to the next 0.log (or trawl held the log open): the case was not exercised");
}

#[test]
fn a_log_closed_for_a_slot_whose_inode_the_next_log_takes_loses_no_line() {
    a_waiting_log_whose_inode_the_next_log_takes(true);
}

#[test]
fn a_log_never_read_whose_inode_the_next_log_takes_loses_no_line() {
    a_waiting_log_whose_inode_the_next_log_takes(false);
}
