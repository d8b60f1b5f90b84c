//! Files deleted while they wait for a `max_open_files` slot with no descriptor held: a file
//! closed to free its slot that grew since, and a new file found when discovery's descriptors
//! were all taken. What trawl had not read of them is gone with them (the risk that limit
//! takes): it must never go silently, but be counted in `trawl_file_skipped_files_total` and
//! said once per file with its path. A file that got its slot never loses a line.

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::process::{append, free_port, metric, read_json_lines, wait_until, write_file, Trawl};

fn lines(what: &str, n: usize) -> String {
    (0..n).map(|i| format!("{what} line {i:04}\n")).collect()
}

/// How many delivered events carry a message starting with `what `.
fn delivered(out: &Path, what: &str) -> usize {
    read_json_lines(out)
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("{what} ")))
        })
        .count()
}

#[test]
fn files_deleted_while_waiting_for_a_slot_are_counted_and_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    // One slot. A deleted file is kept open until idle for `close_removed` (an app may still
    // write to it), so a deleted file holds the slot for the whole test.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 200ms\n    close_removed: 60s\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("trawl.log");
    let a = logs.join("a.log");
    append(&a, &lines("a", 10));
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        delivered(&out, "a") == 10
    });
    // b.log waits for the slot; a.log, idle at its end, is closed for it.
    let b = logs.join("b.log");
    append(&b, &lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered(&out, "b") == 10
    });
    // Deleted, b.log keeps the only slot.
    std::fs::remove_file(&b).unwrap();
    // c.log takes the descriptor discovery holds for a waiting file.
    append(&logs.join("c.log"), &lines("c", 10));
    wait_until(Duration::from_secs(60), "c.log waiting for a slot", || {
        gauge("trawl_file_waiting_files") == 1.0
    });
    // a.log grows while closed: it waits, with no descriptor. v.log is new and finds none free.
    append(&a, &lines("a-more", 20));
    let v = logs.join("v.log");
    append(&v, &lines("v", 30));
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
    wait_until(
        Duration::from_secs(60),
        "trawl_file_skipped_files_total at 2 (a.log and v.log deleted while waiting)",
        || gauge("trawl_file_skipped_files_total") == 2.0,
    );
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
        delivered(&out, "a"),
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
    let cri = |what: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("2026-11-30T13:00:00.000000000Z stdout F {what} line {i:04}\n"))
            .collect()
    };
    append(&k, &cri("k", 10));
    std::os::unix::fs::symlink(&k, links.join("web-1_shop_app-0001.log")).unwrap();
    let out = root.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\", \"{links}/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 200ms\n    close_removed: 60s\noutputs:\n  out:\n    type: file\n    path: {out}\n",
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
        delivered(&out, "k") == 10
    });
    // b.log takes the slot (0.log, idle at its end, is closed for it), then is deleted: it
    // keeps the slot.
    let b = logs.join("b.log");
    append(&b, &lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered(&out, "b") == 10
    });
    std::fs::remove_file(&b).unwrap();
    append(&k, &cri("k-more", 20));
    wait_until(Duration::from_secs(60), "0.log waiting for a slot", || {
        gauge("trawl_file_waiting_files") == 1.0
    });
    std::fs::rename(&k, app.join("0.log.20261130-130000")).unwrap();
    // The link leads nowhere until the runtime writes the next 0.log: five scans see that
    // (once seen in CI: the rotated file was then looked for beside the link, not found there,
    // and named as deleted).
    std::thread::sleep(Duration::from_secs(1));
    append(&k, &cri("k-new", 5));
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
    let out = dir.path().join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    // Scans come from filesystem events only (files created, renamed, deleted): the interval
    // is longer than the test.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 1h\n    close_removed: 60s\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("trawl.log");
    let a = logs.join("a.log");
    let first = lines("a", 10);
    append(&a, &first);
    let mut trawl = Trawl::start(&config, Some(&log));
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        delivered(&out, "a") == 10
    });
    // b.log gets the only slot once a.log, idle at its end, is closed for it.
    let b = logs.join("b.log");
    append(&b, &lines("b", 10));
    wait_until(Duration::from_secs(60), "b.log's 10 lines", || {
        delivered(&out, "b") == 10
    });
    // Deleted, b.log keeps the slot (its writer may still write). Its deletion's scan sees
    // a.log closed at its end.
    std::fs::remove_file(&b).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        gauge("trawl_file_waiting_files"),
        0.0,
        "a.log has nothing unread yet"
    );
    append(&a, &lines("a-more", 20));
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
        delivered(&out, "a"),
        10,
        "a.log's first lines delivered once"
    );
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
}

/// The reader is held up (its output does not take events: here a stdout nobody reads yet, as
/// an output that is down) while a new file appears, is written for a second and deleted with
/// every descriptor `max_open_files` allows taken: no scan is applied meanwhile, so the reader
/// never saw the file. Its lines are gone with it, which the limit risks; it must still be
/// counted and named once trawl looks again, not lost without a word.
#[test]
fn a_file_written_and_deleted_while_the_reader_waits_on_its_output_is_counted() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    max_in_flight: 256KiB\n    poll_interval: 100ms\n    scan_interval: 200ms\noutputs:\n  out:\n    type: stdout\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    // Far more than the pipe and `max_in_flight` hold: the reader waits on a.log.
    append(&logs.join("a.log"), &lines("a", 40_000));
    let log = dir.path().join("trawl.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "trawl's /metrics", || {
        gauge("trawl_file_skipped_files_total") == 0.0
    });
    std::thread::sleep(Duration::from_secs(1));
    // c.log takes the descriptor discovery holds for a waiting file; v.log finds none.
    append(&logs.join("c.log"), &lines("c", 10));
    std::thread::sleep(Duration::from_millis(500));
    let v = logs.join("v.log");
    for i in 0..4 {
        append(&v, &lines(&format!("v{i}"), 20));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::remove_file(&v).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out.lock().unwrap().push(line);
            }
        })
    };
    let count = |what: &str| {
        out.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("\"{what} line ")))
            .count()
    };
    let said = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("was deleted before it got one")
                    && l.contains(&format!("path={}", v.display()))
                    && l.contains("offset=0")
            })
            .count()
    };
    wait_until(
        Duration::from_secs(60),
        "v.log counted in trawl_file_skipped_files_total",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    wait_until(Duration::from_secs(60), "a.log and c.log whole", || {
        (count("a"), count("c")) == (40_000, 10)
    });
    // A few more scans: still said once.
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(said(), 1, "v.log named once, from offset 0; log:\n{text}");
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "trawl exit {status}; log:\n{text}");
    assert_eq!(
        (count("a"), count("c"), count("v0")),
        (40_000, 10, 0),
        "a.log and c.log once each; v.log was never opened: none of it can be read"
    );
}

/// A file deleted while trawl holds it open and its output takes nothing (a stdout nobody
/// reads, as an output that is down): at a SIGTERM whose deadline passes, trawl lets the file
/// go and what it had not delivered can be read by no one again. The exit must say so (the
/// file, the offset its loss starts at), with a non-zero status; every line before that offset
/// was delivered.
#[test]
fn a_deleted_file_not_delivered_by_the_stop_is_named_at_the_exit() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nshutdown_timeout: 2s\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_in_flight: 256KiB\n    poll_interval: 100ms\n    scan_interval: 200ms\noutputs:\n  out:\n    type: stdout\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    const N: usize = 40_000;
    // Lines of one width (13 bytes with the newline): an offset tells its line.
    let text: String = (0..N).map(|i| format!("a line {i:05}\n")).collect();
    let a = logs.join("a.log");
    append(&a, &text);
    let log = dir.path().join("trawl.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    wait_until(Duration::from_secs(60), "trawl's /metrics", || {
        metric(&addr, "trawl_file_skipped_files_total", "logs") == Some(0.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(&a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trawl did not exit after SIGTERM with its output blocked"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings: Vec<&str> = log_text
        .lines()
        .filter(|l| {
            l.contains("stopped with deleted files not delivered to their end")
                && l.contains(&format!("path={} ", a.display()))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "named once (exit {status}); log:\n{log_text}");
    let offset: usize = warnings[0]
        .split(" offset=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the warning says the offset its loss starts at");
    assert_eq!(offset % 13, 0, "a line's start: {offset}");
    let delivered: std::collections::HashSet<usize> = out
        .lines()
        .filter_map(|l| l.split("\"a line ").nth(1))
        .filter_map(|r| r.get(..5).and_then(|d| d.parse().ok()))
        .collect();
    assert!(offset / 13 < N, "something was lost: {offset}");
    let unaccounted: Vec<usize> = (0..offset / 13).filter(|i| !delivered.contains(i)).collect();
    assert!(
        unaccounted.is_empty(),
        "lines before the offset named lost were not delivered: {} of them, from {:?}",
        unaccounted.len(),
        unaccounted.first()
    );
    assert!(!status.success(), "a stop that lost lines is not a clean one: {status}");
}

/// As above, for a file trawl followed and closed to free its slot: it is written to and
/// deleted while the reader waits on its output (a stdout that stops being read), with no slot
/// spare for the watcher to take it. Its new lines are gone; trawl must count and name it once
/// it looks again, from the offset it had read to.
#[test]
fn a_closed_file_written_and_deleted_while_the_reader_waits_on_its_output_is_counted() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_open_files: 1\n    max_in_flight: 256KiB\n    poll_interval: 100ms\n    scan_interval: 200ms\noutputs:\n  out:\n    type: stdout\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
        ),
    );
    let a = logs.join("a.log");
    append(&a, &lines("a", 10));
    let log = dir.path().join("trawl.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let paused = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, paused) = (out.clone(), paused.clone());
        std::thread::spawn(move || {
            // Small reads, so that a pause leaves the pipe to fill.
            let mut lines = std::io::BufReader::with_capacity(256, stdout).lines();
            loop {
                while paused.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                match lines.next() {
                    Some(Ok(line)) => out.lock().unwrap().push(line),
                    _ => break,
                }
            }
        })
    };
    let count = |what: &str| {
        out.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("\"{what} line ")))
            .count()
    };
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || count("a") == 10);
    // The output stops taking events; b.log holds the only slot (a.log, idle at its end, is
    // closed for it) and the reader waits on it.
    paused.store(true, Ordering::Relaxed);
    append(&logs.join("b.log"), &lines("b", 40_000));
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..4 {
        append(&a, &lines(&format!("a{i}"), 20));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::remove_file(&a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    paused.store(false, Ordering::Relaxed);
    wait_until(Duration::from_secs(60), "b.log whole", || count("b") == 40_000);
    wait_until(
        Duration::from_secs(60),
        "a.log counted in trawl_file_skipped_files_total",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let first_bytes = lines("a", 10).len();
    let said = text
        .lines()
        .filter(|l| {
            l.contains("was deleted before it got one")
                && l.contains(&format!("path={} ", a.display()))
                && l.contains(&format!("offset={first_bytes} "))
        })
        .count();
    assert_eq!(said, 1, "a.log named once, from the offset read to; log:\n{text}");
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "trawl exit {status}; log:\n{text}");
    assert_eq!(
        (count("a"), count("a0"), count("b")),
        (10, 0, 40_000),
        "a.log's first lines and b.log once each"
    );
}
