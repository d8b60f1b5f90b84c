//! Files deleted while they wait for a `max_open_files` slot with no descriptor held: a file
//! closed to free its slot that grew since, and a new file found when discovery's descriptors
//! were all taken. What trawl had not read of them is gone with them (the risk that limit
//! takes): it must never go silently, but be counted in `trawl_file_skipped_files_total` and
//! said once per file with its path. A file that got its slot never loses a line.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, metric, numbered_cri_lines, numbered_lines, wait_until,
    write_file, Trawl,
};

/// A pipeline reading `paths` (quoted globs) with one `max_open_files` slot, a 100 ms
/// `poll_interval` and `settings` (input keys, one per line), into `root/events.jsonl`: the
/// config file, that output and the `/metrics` address.
fn one_slot(root: &Path, paths: &[&Path], settings: &str) -> (PathBuf, PathBuf, String) {
    let out = root.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let paths: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}/*.log\"", p.display()))
        .collect();
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [{paths}]\n    max_open_files: 1\n    poll_interval: 100ms\n{settings}outputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            paths = paths.join(", "),
            out = out.display(),
        ),
    );
    (config, out, addr)
}

#[test]
fn files_deleted_while_waiting_for_a_slot_are_counted_and_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // One slot. A deleted file is kept open until idle for `close_removed` (an app may still
    // write to it), so a deleted file holds the slot for the whole test.
    let (config, out, addr) = one_slot(
        dir.path(),
        &[&logs],
        "    scan_interval: 200ms\n    close_removed: 60s\n",
    );
    let log = dir.path().join("trawl.log");
    let a = logs.join("a.log");
    append(&a, &numbered_lines("a", 10));
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        delivered_lines(&out, "a") == 10
    });
    // b.log waits for the slot; a.log, idle at its end, is closed for it.
    let b = logs.join("b.log");
    append(&b, &numbered_lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered_lines(&out, "b") == 10
    });
    // Deleted, b.log keeps the only slot.
    std::fs::remove_file(&b).unwrap();
    // c.log takes the descriptor discovery holds for a waiting file.
    append(&logs.join("c.log"), &numbered_lines("c", 10));
    wait_until(Duration::from_secs(60), "c.log waiting for a slot", || {
        gauge("trawl_file_waiting_files") == 1.0
    });
    // a.log grows while closed: it waits, with no descriptor. v.log is new and finds none free.
    append(&a, &numbered_lines("a-more", 20));
    let v = logs.join("v.log");
    append(&v, &numbered_lines("v", 30));
    wait_until(
        Duration::from_secs(60),
        "a.log, c.log and v.log waiting for a slot",
        || gauge("trawl_file_waiting_files") == 3.0,
    );
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&v).unwrap();
    let said = |path: &Path| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("was deleted before it got one")
                    && l.contains(&format!("path={}", path.display()))
            })
            .count()
    };
    let waited = std::time::Instant::now();
    while gauge("trawl_file_skipped_files_total") != 2.0 {
        if waited.elapsed() > Duration::from_secs(60) {
            panic!(
                "trawl_file_skipped_files_total at {} after 60 s, want 2 (a.log and v.log deleted while waiting); log:\n{}",
                gauge("trawl_file_skipped_files_total"),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few more scans: still said once each.
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (said(&a), said(&v)),
        (1, 1),
        "each deleted waiting file named once; log:\n{text}"
    );
    assert_eq!(gauge("trawl_file_skipped_files_total"), 2.0);
    assert_eq!(
        said(&logs.join("c.log")),
        0,
        "c.log still exists: not skipped; log:\n{text}"
    );
    assert_eq!(
        delivered_lines(&out, "a"),
        10,
        "a.log's first lines delivered once"
    );
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
}

/// A kubelet `0.log` (read through its `/var/log/containers` link) that waits for a slot with
/// no descriptor and is rotated by kubelet (`0.log` → `0.log.<time>`, out of `paths`) was not
/// deleted: it must not be counted or named as skipped.
#[test]
fn a_kubelet_file_rotated_while_waiting_is_not_counted_as_deleted() {
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
    let (config, out, addr) = one_slot(
        root,
        &[&logs, &links],
        "    scan_interval: 200ms\n    close_removed: 60s\n",
    );
    let log = root.join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "0.log's 10 lines", || {
        delivered_lines(&out, "k") == 10
    });
    // b.log takes the slot (0.log, idle at its end, is closed for it), then is deleted: it
    // keeps the slot.
    let b = logs.join("b.log");
    append(&b, &numbered_lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered_lines(&out, "b") == 10
    });
    std::fs::remove_file(&b).unwrap();
    append(&k, &numbered_cri_lines("k-more", 20));
    wait_until(Duration::from_secs(60), "0.log waiting for a slot", || {
        gauge("trawl_file_waiting_files") == 1.0
    });
    std::fs::rename(&k, app.join("0.log.20261130-130000")).unwrap();
    // The link leads nowhere until the runtime writes the next 0.log: five scans see that
    // (once seen in CI: the rotated file was then looked for beside the link, not found there,
    // and named as deleted).
    std::thread::sleep(Duration::from_secs(1));
    append(&k, &numbered_cri_lines("k-new", 5));
    // Ten scans see the rotation.
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("was deleted before it got one"),
        "a rotated file named as deleted; log:\n{text}"
    );
    assert_eq!(gauge("trawl_file_skipped_files_total"), 0.0);
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
}

/// A file closed to free its slot, at its end when the last scan saw it (nothing unread), that
/// grows and is deleted before any scan sees it grown: writes start no scan (only files
/// appearing, moving or going do), so the deletion's scan is the first to miss it, and what it
/// was last seen with says nothing was unread. Its new lines are lost all the same (no
/// descriptor held): counted and named once, from where reading of it stopped.
#[test]
fn a_closed_file_that_grows_then_is_deleted_between_scans_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Scans come from filesystem events only (files created, renamed, deleted): the interval
    // is longer than the test.
    let (config, out, addr) = one_slot(
        dir.path(),
        &[&logs],
        "    scan_interval: 1h\n    close_removed: 60s\n",
    );
    let log = dir.path().join("trawl.log");
    let a = logs.join("a.log");
    let first = numbered_lines("a", 10);
    append(&a, &first);
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        delivered_lines(&out, "a") == 10
    });
    // b.log gets the only slot once a.log, idle at its end, is closed for it.
    let b = logs.join("b.log");
    append(&b, &numbered_lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered_lines(&out, "b") == 10
    });
    // Deleted, b.log keeps the slot (its writer may still write). Its deletion's scan sees
    // a.log closed at its end.
    std::fs::remove_file(&b).unwrap();
    // The gauge is refreshed once a second: what it said before the deletion's scan may
    // still be there for a second.
    wait_until(
        Duration::from_secs(5),
        "a.log has nothing unread yet",
        || gauge("trawl_file_waiting_files") == 0.0,
    );
    append(&a, &numbered_lines("a-more", 20));
    // No scan comes; trawl has time to look at the closed file.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&a).unwrap();
    let said = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("was deleted before it got one")
                    && l.contains(&format!("path={}", a.display()))
                    && l.contains(&format!("offset={}", first.len()))
            })
            .count()
    };
    wait_until(
        Duration::from_secs(30),
        "trawl_file_skipped_files_total at 1 (a.log grew and was deleted while closed)",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        said(),
        1,
        "a.log named once, its loss from byte {}; log:\n{text}",
        first.len()
    );
    assert_eq!(gauge("trawl_file_skipped_files_total"), 1.0);
    assert_eq!(
        delivered_lines(&out, "a"),
        10,
        "a.log's first lines delivered once"
    );
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
}

/// A closed file that grows while the only slot is taken waits with no descriptor. Once the
/// slot frees (the busy file goes idle and is closed), it must be taken at once, not at the
/// next scan (120 s here; 10 s by default): until then a cleanup deleting it loses its lines.
/// Was: noted as grown, then left for the next scan. With and without `watch_events`.
fn a_closed_file_grown_while_no_slot_was_free_is_read_once_one_frees(watch_events: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (config, out, _) = one_slot(
        dir.path(),
        &[&logs],
        &format!(
            "    watch_events: {watch_events}\n    scan_interval: 120s\n    close_inactive: 1s\n"
        ),
    );
    let a = logs.join("a.log");
    let b = logs.join("b.log");
    append(&a, &numbered_lines("a", 10));
    append(&b, &numbered_lines("b", 10));
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl.log")));
    wait_until(Duration::from_secs(60), "a.log's and b.log's lines", || {
        delivered_lines(&out, "a") == 10 && delivered_lines(&out, "b") == 10
    });
    // b.log busy: it takes the slot and keeps it while a.log grows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&b, &format!("b-more line {n:04}\n"));
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };
    wait_until(Duration::from_secs(60), "b.log reopened", || {
        delivered_lines(&out, "b-more") >= 5
    });
    append(&a, &numbered_lines("a-more", 20));
    // Long enough for a.log's growth to be seen (a write event, or a look) while b.log holds
    // the slot; then b.log goes idle and is closed a second later.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        delivered_lines(&out, "a-more"),
        0,
        "a.log must wait while b.log holds the only slot"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    wait_until(
        Duration::from_secs(30),
        "a.log's 20 new lines, well before the next scan",
        || delivered_lines(&out, "a-more") == 20,
    );
    wait_until(Duration::from_secs(30), "b.log's new lines", || {
        delivered_lines(&out, "b-more") == written
    });
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
    assert_eq!(delivered_lines(&out, "a"), 10, "a.log's first lines once");
}

#[test]
fn a_closed_file_grown_while_no_slot_was_free_is_read_once_one_frees_with_watch_events() {
    a_closed_file_grown_while_no_slot_was_free_is_read_once_one_frees(true);
}

#[test]
fn a_closed_file_grown_while_no_slot_was_free_is_read_once_one_frees_when_polling() {
    a_closed_file_grown_while_no_slot_was_free_is_read_once_one_frees(false);
}
