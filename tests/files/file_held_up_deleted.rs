//! Files deleted while the reader is held up by an output that takes nothing (here a stdout
//! that stops being read: the pipe fills, then the pipeline): what trawl had not read or not
//! delivered of them is gone with them. It must be counted and named once trawl looks again,
//! or at the exit when the stop's deadline passes, never lost without a word.

use crate::support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::process::{append, free_port, metric, wait_until, write_file};

fn lines(what: &str, n: usize) -> String {
    (0..n).map(|i| format!("{what} line {i:05}\n")).collect()
}

/// A pipeline reading `logs/*.log` to stdout, with `extra` lines under the file input.
fn config(dir: &Path, addr: &str, extra: &str) -> PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nshutdown_timeout: 2s\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    max_in_flight: 256KiB\n    poll_interval: 100ms\n    scan_interval: 200ms\n{extra}outputs:\n  out:\n    type: stdout\n",
            data = dir.join("data").display(),
            logs = dir.join("logs").display(),
        ),
    )
}

/// trawl with its stdout read line by line by a thread that can stop reading.
struct OnStdout {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    paused: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl OnStdout {
    fn start(config: &Path, log: &Path, paused: bool) -> OnStdout {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(paused));
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
        OnStdout {
            child,
            out,
            paused,
            reader: Some(reader),
        }
    }

    fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// How many delivered events hold a line written by `lines(what, _)`.
    fn count(&self, what: &str) -> usize {
        let needle = format!("\"{what} line ");
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// The line numbers of `what` delivered.
    fn delivered(&self, what: &str) -> std::collections::HashSet<usize> {
        let needle = format!("\"{what} line ");
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split(&needle).nth(1))
            .filter_map(|r| r.get(..5).and_then(|d| d.parse().ok()))
            .collect()
    }

    /// SIGTERM, then the exit (within a minute, whether stdout is read or not), then what
    /// stdout still held is read.
    fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "trawl did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.pause(false);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        status
    }
}

/// The log lines saying that `path` was deleted while it waited for a slot, from `offset`.
fn said_skipped(log: &Path, path: &Path, offset: usize) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("was deleted before it got one")
                && l.contains(&format!("path={} ", path.display()))
                && l.contains(&format!("offset={offset} "))
        })
        .count()
}

/// The reader is held up while a new file appears, is written for a second and deleted with
/// every descriptor `max_open_files` allows taken: no scan is applied meanwhile, so the reader
/// never saw the file. Its lines are gone with it, which the limit risks; it must still be
/// counted and named once trawl looks again.
#[test]
fn a_file_written_and_deleted_while_the_reader_waits_on_its_output_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = config(dir.path(), &addr, "    max_open_files: 1\n");
    // Far more than the pipe and `max_in_flight` hold: the reader waits on a.log.
    append(&logs.join("a.log"), &lines("a", 40_000));
    let log = dir.path().join("trawl.log");
    let mut trawl = OnStdout::start(&config, &log, true);
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
    trawl.pause(false);
    wait_until(
        Duration::from_secs(60),
        "v.log counted in trawl_file_skipped_files_total",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    wait_until(Duration::from_secs(60), "a.log and c.log whole", || {
        (trawl.count("a"), trawl.count("c")) == (40_000, 10)
    });
    // A few more scans: still said once.
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        said_skipped(&log, &v, 0),
        1,
        "v.log named once, from offset 0; log:\n{text}"
    );
    let status = trawl.stop();
    assert!(status.success(), "trawl exit {status}; log:\n{text}");
    assert_eq!(
        (trawl.count("a"), trawl.count("c"), trawl.count("v0")),
        (40_000, 10, 0),
        "a.log and c.log once each; v.log was never opened: none of it can be read"
    );
}

/// As above, for a file trawl followed and closed to free its slot: it is written to and
/// deleted while the reader waits, with no slot spare for the watcher to take it. Its new
/// lines are gone; trawl must count and name it once it looks again, from the offset it had
/// read to.
#[test]
fn a_closed_file_written_and_deleted_while_the_reader_waits_on_its_output_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = config(dir.path(), &addr, "    max_open_files: 1\n");
    let a = logs.join("a.log");
    append(&a, &lines("a", 10));
    let log = dir.path().join("trawl.log");
    let mut trawl = OnStdout::start(&config, &log, false);
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        trawl.count("a") == 10
    });
    // The output stops taking events; b.log holds the only slot (a.log, idle at its end, is
    // closed for it) and the reader waits on it.
    trawl.pause(true);
    append(&logs.join("b.log"), &lines("b", 40_000));
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..4 {
        append(&a, &lines(&format!("a{i}"), 20));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::remove_file(&a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    trawl.pause(false);
    wait_until(Duration::from_secs(60), "b.log whole", || {
        trawl.count("b") == 40_000
    });
    wait_until(
        Duration::from_secs(60),
        "a.log counted in trawl_file_skipped_files_total",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let read_to = lines("a", 10).len();
    assert_eq!(
        said_skipped(&log, &a, read_to),
        1,
        "a.log named once, from the offset read to; log:\n{text}"
    );
    let status = trawl.stop();
    assert!(status.success(), "trawl exit {status}; log:\n{text}");
    assert_eq!(
        (trawl.count("a"), trawl.count("a0"), trawl.count("b")),
        (10, 0, 40_000),
        "a.log's first lines and b.log once each"
    );
}

/// A file deleted while trawl holds it open and its output takes nothing: at a SIGTERM whose
/// deadline passes, trawl lets the file go and what it had not delivered can be read by no one
/// again. The exit must say so (the file, the offset its loss starts at), with a non-zero
/// status; every line before that offset was delivered.
#[test]
fn a_deleted_file_not_delivered_by_the_stop_is_named_at_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = config(dir.path(), &addr, "");
    const N: usize = 40_000;
    // Lines of one width (13 bytes with the newline): an offset tells its line.
    let a = logs.join("a.log");
    append(&a, &lines("a", N));
    let log = dir.path().join("trawl.log");
    let mut trawl = OnStdout::start(&config, &log, true);
    wait_until(Duration::from_secs(60), "trawl's /metrics", || {
        metric(&addr, "trawl_file_skipped_files_total", "logs") == Some(0.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(&a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let status = trawl.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let named: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("stopped with deleted files not delivered to their end")
                && l.contains(&format!("path={} ", a.display()))
        })
        .collect();
    assert_eq!(named.len(), 1, "named once (exit {status}); log:\n{text}");
    let offset: usize = named[0]
        .split(" offset=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the exit says the offset the loss starts at");
    assert_eq!(offset % 13, 0, "a line's start: {offset}");
    assert!(offset / 13 < N, "something was lost: {offset}");
    let delivered = trawl.delivered("a");
    let unaccounted = (0..offset / 13).filter(|i| !delivered.contains(i)).count();
    assert_eq!(
        unaccounted, 0,
        "lines before the offset named lost were not delivered"
    );
    assert!(
        !status.success(),
        "a stop that lost lines is not a clean one: {status}"
    );
}

/// Files waiting for a `max_open_files` slot are rotated out of `paths` (kubelet's `0.log` →
/// `0.log.<time>`, here `b.log` → `b.log.1`), then deleted before they get one (kubelet gzips
/// them at the next rotation). Discovery holds one waiting file open, whose lines are read
/// once a slot frees; the other's lines are gone, which the limit risks. The rename made trawl
/// forget that one was waiting, so its deletion went uncounted: it must be counted and named.
#[test]
fn a_waiting_file_rotated_out_of_paths_then_deleted_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = config(dir.path(), &addr, "    max_open_files: 1\n");
    let a = logs.join("a.log");
    append(&a, &lines("a", 10));
    let log = dir.path().join("trawl.log");
    let mut trawl = OnStdout::start(&config, &log, false);
    let gauge = |name: &str| metric(&addr, name, "logs").unwrap_or(-1.0);
    wait_until(Duration::from_secs(60), "a.log's 10 lines", || {
        trawl.count("a") == 10
    });
    // a.log keeps its slot while it is written: it is never idle for the second that frees it.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (a, writing) = (a.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                append(&a, &format!("a-more line {i:05}\n"));
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    for name in ["b", "c"] {
        append(&logs.join(format!("{name}.log")), &lines(name, 10));
        std::thread::sleep(Duration::from_millis(600));
    }
    std::thread::sleep(Duration::from_secs(1));
    for name in ["b", "c"] {
        std::fs::rename(
            logs.join(format!("{name}.log")),
            logs.join(format!("{name}.log.1")),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    for name in ["b", "c"] {
        std::fs::remove_file(logs.join(format!("{name}.log.1"))).unwrap();
    }
    wait_until(
        Duration::from_secs(30),
        "the rotated file with no descriptor counted in trawl_file_skipped_files_total",
        || gauge("trawl_file_skipped_files_total") == 1.0,
    );
    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    // The held one gets a.log's slot once a.log idles.
    wait_until(Duration::from_secs(30), "the held file's lines", || {
        trawl.count("b") + trawl.count("c") == 10
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lost = if trawl.count("b") == 0 { "b" } else { "c" };
    assert_eq!(
        said_skipped(&log, &logs.join(format!("{lost}.log.1")), 0),
        1,
        "named once under the name it was deleted by, from offset 0; log:\n{text}"
    );
    assert_eq!(gauge("trawl_file_skipped_files_total"), 1.0);
    assert!(trawl.stop().success(), "log:\n{text}");
}
