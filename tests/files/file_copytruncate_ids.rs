//! logrotate's `copytruncate` of a file trawl is not reading at that moment (closed as idle, as
//! while a failed batch backs off; waiting for a slot under `max_open_files`; or trawl stopped):
//! the copy holds lines already delivered under the file's stream id, so it must continue that
//! stream. Read as a new file, every line would be stored again under another `_id`
//! (`id_from: origin` is stream id + offset). Checked against a real OpenSearch node with
//! `op_type: create`: a line sent again under its first `_id` is refused (409), one sent under
//! another `_id` is a second document.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{append, sigterm, wait_until, write_file, Trawl};

/// One case: the shared OpenSearch node, the case's own index (no other case's index is a
/// prefix of it, nor it of theirs: templates of overlapping names clash), a folder whose
/// `logs/` trawl tails, and the pipeline into that index with deterministic ids.
struct Case {
    os: &'static OpenSearch,
    index: &'static str,
    dir: tempfile::TempDir,
    logs: PathBuf,
    config: PathBuf,
}

impl Case {
    /// `paths`: the patterns, under `logs/`; `input_extra`: more file-input settings, one
    /// indented line each (`registry_flush` among them).
    fn new(index: &'static str, paths: &[&str], input_extra: &str) -> Case {
        let os = OpenSearch::shared();
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let paths: Vec<String> = paths
            .iter()
            .map(|p| format!("\"{}/{p}\"", logs.display()))
            .collect();
        let config = write_file(
            dir.path(),
            "pipeline.yaml",
            &format!(
                "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [{paths}]\n{input_extra}outputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: {index}\n    op_type: create\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n",
                data = dir.path().join("data").display(),
                paths = paths.join(", "),
                url = os.url
            ),
        );
        Case {
            os,
            index,
            dir,
            logs,
            config,
        }
    }

    /// A file in `logs/`.
    fn file(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// trawl on the pipeline, its log in `trawl-<run>.log`.
    fn start(&self, run: u32) -> Trawl {
        Trawl::start(&self.config, Some(&self.trawl_log(run)))
    }

    fn trawl_log(&self, run: u32) -> PathBuf {
        self.dir.path().join(format!("trawl-{run}.log"))
    }

    /// How many documents of the index hold each message.
    fn stored(&self) -> HashMap<String, usize> {
        self.os.copies_by_message(self.index)
    }

    /// Waits until every one of `lines` is stored (at least once).
    fn wait_stored(&self, what: &str, lines: &[String]) {
        wait_until(Duration::from_secs(120), what, || {
            let m = self.stored();
            lines.iter().all(|l| m.contains_key(l))
        });
    }

    /// Writes `n` lines `old line NNNN` to `app.log`, starts trawl (run 1) and waits until
    /// exactly those `n` messages are stored.
    fn old_lines_stored(&self, n: usize) -> (Trawl, Vec<String>) {
        let old = lines("old line", n);
        append(&self.file("app.log"), &(old.join("\n") + "\n"));
        let trawl = self.start(1);
        wait_until(
            Duration::from_secs(120),
            &format!("the {n} old lines stored"),
            || self.stored().len() == n,
        );
        (trawl, old)
    }

    /// The registry's offset for the file at `path`, if it has an entry for it.
    fn registry_offset(&self, path: &Path) -> Option<u64> {
        let text =
            std::fs::read_to_string(self.dir.path().join("data/registry/file-logs.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["files"]
            .as_array()?
            .iter()
            .find(|e| e["path"].as_str() == Some(&path.display().to_string()))
            .and_then(|e| e["offset"].as_u64())
    }

    /// Fails unless every one of `expected` is stored exactly once.
    fn assert_once(&self, expected: &[&String]) {
        let m = self.stored();
        let wrong: Vec<&&String> = expected
            .iter()
            .filter(|l| m.get(**l).copied().unwrap_or(0) != 1)
            .collect();
        assert!(
            wrong.is_empty(),
            "{} of {} lines not stored exactly once (first: {:?}, {} times)",
            wrong.len(),
            expected.len(),
            wrong.first(),
            wrong.first().and_then(|l| m.get(**l)).copied().unwrap_or(0)
        );
    }
}

/// SIGTERM, and trawl exits 0 within a minute.
fn stop_trawl(trawl: &mut Trawl, what: &str) {
    sigterm(trawl);
    let status = trawl.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM {what}: trawl exited with {status}"
    );
}

/// logrotate's copytruncate: the copy, then the original emptied in place.
fn copytruncate(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(from)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The rest of a copytruncate whose copy `cp` has created: `from`'s bytes written into it,
/// then `from` emptied in place. The bytes copied.
fn fill_and_truncate(from: &Path, copy: &Path) -> u64 {
    use std::io::Write;
    let content = std::fs::read(from).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(copy)
        .unwrap()
        .write_all(&content)
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(from)
        .unwrap()
        .set_len(0)
        .unwrap();
    content.len() as u64
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:04}")).collect()
}

fn run(index: &'static str, kill_between: bool) {
    let case = Case::new(
        index,
        &["*.log", "*.log.*"],
        "    registry_flush: 100ms\n    poll_interval: 100ms\n    scan_interval: 200ms\n    close_inactive: 1s\n",
    );
    let app = case.file("app.log");
    let (mut trawl, first) = case.old_lines_stored(500);
    // Idle past close_inactive: trawl closes app.log.
    std::thread::sleep(Duration::from_secs(3));
    if kill_between {
        trawl.kill9();
    }
    copytruncate(&app, &case.file("app.log.1"));
    let next = lines("new line", 200);
    append(&app, &(next.join("\n") + "\n"));
    if kill_between {
        trawl = case.start(2);
    }
    case.wait_stored("the 200 new lines stored", &next);
    // Whatever trawl would read of the copy it reads within a few scans.
    std::thread::sleep(Duration::from_secs(8));
    case.assert_once(&first.iter().chain(&next).collect::<Vec<_>>());
    drop(trawl.child.stdin.take());
}

#[test]
fn the_copy_of_a_closed_file_keeps_its_ids() {
    run("copy-of-closed", false);
}

#[test]
fn the_copy_made_while_trawl_was_stopped_keeps_its_ids() {
    run("copy-while-stopped", true);
}

/// Campaign seed 44 (es): with `max_open_files` reached, a file the registry knows waits for a
/// slot after a restart, so no tail follows it. Copied and truncated meanwhile, its copy must
/// still continue its stream: before the fix it was put in the registry as a new file (a new
/// stream id, offset 0) and every line of it was stored again.
#[test]
fn the_copy_of_a_file_waiting_for_a_slot_keeps_its_ids() {
    copy_of_waiting("copy-of-waiting", false);
}

/// The same, with the copy seen by scans while `cp` has created it and not filled it yet (seen
/// in CI: `std::fs::copy` leaves it empty for an instant). Before the fix, the empty copy was
/// put in the registry as a new file waiting for a slot, and read from 0 once filled.
#[test]
fn the_copy_of_a_file_waiting_for_a_slot_seen_empty_keeps_its_ids() {
    copy_of_waiting("waiting-copy-seen-empty", true);
}

fn copy_of_waiting(index: &'static str, seen_empty: bool) {
    // One slot. `busy.log` comes first in `paths`, so it takes the slot at start; written every
    // 20 ms, it is never idle for a `poll_interval` (3 s), so no slot frees for app.log until
    // its writer stops.
    let case = Case::new(
        index,
        &["busy.log", "app.log", "app.log.*"],
        "    registry_flush: 100ms\n    max_open_files: 1\n    poll_interval: 3s\n    scan_interval: 200ms\n    close_inactive: 1h\n",
    );
    let app = case.file("app.log");
    let copy = case.file("app.log.1");
    let (mut trawl, old) = case.old_lines_stored(500);
    stop_trawl(&mut trawl, "after the old lines");

    let busy = case.file("busy.log");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                append(&busy, &format!("busy line {written:05}\n"));
                written += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            written
        })
    };
    wait_until(Duration::from_secs(10), "busy.log written", || {
        busy.exists()
    });
    let mut trawl = case.start(2);
    wait_until(Duration::from_secs(120), "busy.log read", || {
        case.stored().keys().any(|m| m.starts_with("busy"))
    });
    if seen_empty {
        std::fs::File::create(&copy).unwrap();
        // Five scans see it empty.
        std::thread::sleep(Duration::from_secs(1));
        fill_and_truncate(&app, &copy);
    } else {
        copytruncate(&app, &copy);
    }
    let new = lines("new line", 200);
    append(&app, &(new.join("\n") + "\n"));
    // Scans (every 200 ms) find the copy while app.log still waits for the slot.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let busy_lines = writer.join().unwrap();
    let size = std::fs::metadata(&copy).unwrap().len();
    wait_until(
        Duration::from_secs(180),
        "the new lines stored and the copy delivered to its end",
        || {
            let m = case.stored();
            new.iter().all(|l| m.contains_key(l)) && case.registry_offset(&copy) == Some(size)
        },
    );
    stop_trawl(&mut trawl, "at the end");
    let busy: Vec<String> = (0..busy_lines)
        .map(|i| format!("busy line {i:05}"))
        .collect();
    case.assert_once(&old.iter().chain(&new).chain(&busy).collect::<Vec<_>>());
}

/// Campaign seed 47 (es): lines delivered but not committed yet to the registry on disk (a
/// `registry_flush` interval, widened here to an hour) when trawl is killed, the file's entry
/// on disk still at offset 0; copied and truncated while trawl is down. The copy holds lines
/// stored under the file's stream, so it must continue that stream from the registry's offset:
/// before the fix, an entry at offset 0 was never checked for a truncation at start, and the copy
/// was read as a new file, every line stored again under another `_id`.
#[test]
fn the_copy_of_a_file_killed_before_its_first_commit_keeps_its_ids() {
    let case = Case::new(
        "copy-of-uncommitted",
        &["*.log", "*.log.*"],
        "    registry_flush: 1h\n    poll_interval: 100ms\n    scan_interval: 200ms\n",
    );
    let app = case.file("app.log");
    let (mut trawl, old) = case.old_lines_stored(500);
    // The window itself: stored, yet the registry on disk has the file at offset 0 (its entry
    // is written before the first batch leaves, its offsets at the next flush).
    assert_eq!(
        case.registry_offset(&app),
        Some(0),
        "the registry on disk should know app.log at offset 0 before its first flush"
    );
    trawl.kill9();
    copytruncate(&app, &case.file("app.log.1"));
    let new = lines("new line", 200);
    append(&app, &(new.join("\n") + "\n"));
    let mut trawl = case.start(2);
    case.wait_stored("the 200 new lines stored", &new);
    // Whatever trawl would read of the copy it reads within a few scans.
    std::thread::sleep(Duration::from_secs(8));
    case.assert_once(&old.iter().chain(&new).collect::<Vec<_>>());
    sigterm(&trawl);
    trawl.wait(Duration::from_secs(60));
}

/// Campaign seed 62 (kafka): the copy is created empty and filled afterwards (`cp` creates the
/// file, then writes it), and a scan can find it in between. An empty file says nothing of what
/// it is: before the fix it was followed at once as a new file, so once filled with the
/// original's lines it was read from 0 under a new stream, and every line stored again.
#[test]
fn a_copy_seen_while_still_empty_keeps_its_ids() {
    let case = Case::new(
        "copy-seen-empty",
        &["*.log", "*.log.*"],
        "    registry_flush: 100ms\n    poll_interval: 100ms\n    scan_interval: 200ms\n",
    );
    let app = case.file("app.log");
    let copy = case.file("app.log.1");
    let (mut trawl, old) = case.old_lines_stored(500);
    // The copy exists, empty, for ten scans: trawl has looked at it.
    std::fs::File::create(&copy).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let size = fill_and_truncate(&app, &copy);
    let new = lines("new line", 200);
    append(&app, &(new.join("\n") + "\n"));
    wait_until(
        Duration::from_secs(120),
        "the new lines stored and the copy delivered to its end",
        || {
            let m = case.stored();
            new.iter().all(|l| m.contains_key(l)) && case.registry_offset(&copy) == Some(size)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    case.assert_once(&old.iter().chain(&new).collect::<Vec<_>>());
    sigterm(&trawl);
    trawl.wait(Duration::from_secs(60));
}

/// Real logrotate's `copytruncate` of a busy file: it copies the file, THEN empties it, and the
/// app keeps writing meanwhile. trawl, following the file, may read lines written after the copy
/// was made, so the copy ends before where reading stopped. It still holds only lines already
/// delivered under the file's stream, so it must continue that stream (nothing left to read of
/// it), not be read again from 0 under a new stream id (every line of it stored twice).
///
/// The lines written between the copy and the truncation are in neither file once truncated:
/// logrotate documents losing them (trawl may have read some of them before the truncation). So
/// they are asserted stored at most once; every other line exactly once.
#[test]
fn the_copy_of_a_busy_file_shorter_than_what_was_read_keeps_its_ids() {
    use std::io::Write;
    use std::sync::Mutex;
    let case = Case::new(
        "busy-rotated-gap",
        &["*.log", "*.log.*"],
        "    registry_flush: 100ms\n    poll_interval: 100ms\n    scan_interval: 200ms\n",
    );
    let app = case.file("app.log");
    let copy = case.file("app.log.1");
    let line = |i: usize| format!("busy line {i:06}");
    // The app: one line every 2 ms through an O_APPEND descriptor (as a logger holds it), with
    // the count of lines written behind the same lock, so the test knows which lines went where.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&app)
        .unwrap();
    let app_state = Arc::new(Mutex::new((out, 0usize)));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let app_state = app_state.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                {
                    let mut s = app_state.lock().unwrap();
                    let text = format!("{}\n", line(s.1));
                    s.0.write_all(text.as_bytes()).unwrap();
                    s.1 += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut trawl = case.start(1);
    wait_until(Duration::from_secs(120), "300 lines stored", || {
        case.stored().len() >= 300
    });
    // The copy: lines [0, copied).
    let copied = {
        let s = app_state.lock().unwrap();
        std::fs::copy(&app, &copy).unwrap();
        s.1
    };
    let copy_len = std::fs::metadata(&copy).unwrap().len();
    // Reading goes past the copy's end before the truncation: a line written after the copy
    // stored, or 3 s (real logrotate truncates right after copying, and trawl waits only so
    // long for a copy's original to be truncated); trawl's log says below how far it read.
    let past = line(copied + 20);
    let copied_at = std::time::Instant::now();
    while copied_at.elapsed() < Duration::from_secs(3) && !case.stored().contains_key(&past) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The truncation: lines [copied, truncated_at) are lost by copytruncate itself.
    let truncated_at = {
        let s = app_state.lock().unwrap();
        s.0.set_len(0).unwrap();
        s.1
    };
    // The app goes on writing into the emptied file.
    wait_until(Duration::from_secs(120), "the app writing on", || {
        app_state.lock().unwrap().1 >= truncated_at + 500
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let written = app_state.lock().unwrap().1;
    let last = line(written - 1);
    wait_until(Duration::from_secs(120), "the last line stored", || {
        case.stored().contains_key(&last)
    });
    // A copy taken for a new file is read after COPY_WAIT (5 s); give it more than that.
    std::thread::sleep(Duration::from_secs(10));
    let log = std::fs::read_to_string(case.trawl_log(1)).unwrap();
    let read_to = log
        .lines()
        .find(|l| l.contains("file truncated: reading it again") && l.contains("app.log "))
        .and_then(|l| l.split("offset=").nth(1))
        .and_then(|o| o.split_whitespace().next()?.parse::<u64>().ok());
    assert!(
        read_to.is_some_and(|r| r > copy_len),
        "trawl did not read past the copy's end ({copy_len} bytes) before the truncation (it says it read to {read_to:?}): the window is not exercised"
    );
    let kept: Vec<String> = (0..copied).chain(truncated_at..written).map(line).collect();
    case.assert_once(&kept.iter().collect::<Vec<_>>());
    let m = case.stored();
    let gap_twice: Vec<String> = (copied..truncated_at)
        .map(line)
        .filter(|l| m.get(l).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        gap_twice.is_empty(),
        "{} of the {} lines written between copy and truncation stored more than once (first: {:?})",
        gap_twice.len(),
        truncated_at - copied,
        gap_twice.first()
    );
    // After a restart, the copy resumes at its end (its registry offset is not past it, which
    // would read as a file truncated while trawl was stopped, read again from 0).
    stop_trawl(&mut trawl, "before the restart");
    let mut trawl = case.start(2);
    std::thread::sleep(Duration::from_secs(10));
    case.assert_once(&kept.iter().collect::<Vec<_>>());
    stop_trawl(&mut trawl, "after the restart");
}
