//! A tailed file's life end to end with the real binary: deleted while its writer keeps
//! appending, more files than `max_open_files`, renamed (rotated) while trawl was stopped, and
//! truncated then rewritten with the same first bytes past the old offset, while trawl was
//! stopped or while the file was closed for inactivity.

use crate::support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::stdout_run::{messages, pipeline, Trawl};

fn line(i: usize) -> String {
    format!("line {i:06} the quick brown fox jumps over the lazy dog")
}

fn lines(from: usize, to: usize) -> String {
    (from..to).map(|i| line(i) + "\n").collect()
}

fn append(path: &Path, text: &str) {
    let mut w = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    w.write_all(text.as_bytes()).unwrap();
}

/// Every line in `from..to` exactly once, and nothing else.
fn assert_exactly(ev: &[serde_json::Value], from: usize, to: usize) {
    assert_lines(ev, &[(from, to)]);
}

/// Every line of the ranges exactly once, and nothing else.
fn assert_lines(ev: &[serde_json::Value], ranges: &[(usize, usize)]) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in messages(ev) {
        *counts.entry(m).or_default() += 1;
    }
    let missing: Vec<usize> = ranges
        .iter()
        .flat_map(|(from, to)| *from..*to)
        .filter(|i| !counts.contains_key(&line(*i)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, first ones: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(m, _)| m)
        .collect();
    assert!(
        twice.is_empty(),
        "read twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    let expected: usize = ranges.iter().map(|(from, to)| to - from).sum();
    assert_eq!(ev.len(), expected, "nothing else");
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An app deletes its log file (a cleanup script, `rm` by hand) but keeps it open and writing:
/// what it writes after the delete is still shipped, and the file is let go once idle for
/// `close_removed`.
#[test]
fn a_deleted_file_whose_writer_keeps_appending_is_read_until_idle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    let mut writer = std::fs::File::create(&path).unwrap();
    writer.write_all(lines(0, 200).as_bytes()).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    close_removed: 2s",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    t.wait_for(30, "the first 200 lines", |ev| ev.len() >= 200);
    std::fs::remove_file(&path).unwrap();
    // Let trawl reach the end of the deleted file before anything more is written.
    std::thread::sleep(Duration::from_millis(1000));
    for k in 0..8 {
        let from = 200 + k * 100;
        writer
            .write_all(lines(from, from + 100).as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let ev = t.wait_for(30, "the 800 lines written after the delete", |ev| {
        ev.len() >= 1000
    });
    std::thread::sleep(Duration::from_millis(500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly(&ev, 0, 1000);
    wait_until(30, "trawl to close the deleted file once idle", || {
        !t.has_open(&path)
    });
}

/// A file closed for inactivity is written to again and deleted within a moment, while its
/// writer keeps appending (an app that wakes up, logs a burst, and whose log is cleaned up by a
/// script). Writes start no scan and the next one is a minute away: the lines must still all be
/// shipped, since once the file has no name trawl can never open it again.
#[test]
fn a_closed_file_written_to_and_deleted_at_once_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    std::fs::write(&path, lines(0, 100)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    close_inactive: 1s\n    scan_interval: 60s\n    close_removed: 2s",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    t.wait_for(30, "the first 100 lines", |ev| ev.len() >= 100);
    wait_until(30, "trawl to close the inactive file", || {
        !t.has_open(&path)
    });
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(lines(100, 460).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(&path).unwrap();
    for k in 0..4 {
        let from = 460 + k * 100;
        writer
            .write_all(lines(from, from + 100).as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(writer);
    let ev = t.wait_for(
        30,
        "the 760 lines written after the file was closed",
        |ev| ev.len() >= 860,
    );
    std::thread::sleep(Duration::from_millis(500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly(&ev, 0, 860);
}

/// Without filesystem events (`watch_events: false`, as on NFS or when inotify's limits are
/// spent on a busy node and trawl falls back to polling), a closed file that grows is reopened
/// within about a second, not at the next scan (60 s here; 10 s by default): written to and
/// deleted 2.5 s later, it is still read to its end. Was: reopened only by a scan, so its new
/// lines were lost (counted as a skipped file).
#[test]
fn without_watch_events_a_closed_file_that_grows_is_reopened_before_the_next_scan() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    std::fs::write(&path, lines(0, 100)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    watch_events: false\n    close_inactive: 1s\n    scan_interval: 60s\n    close_removed: 2s\n    poll_interval: 100ms",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    t.wait_for(30, "the first 100 lines", |ev| ev.len() >= 100);
    wait_until(30, "trawl to close the inactive file", || {
        !t.has_open(&path)
    });
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    // Written over 2.5 s, well within the 60 s to the next scan; then deleted while the
    // writer still has it open and writes 100 more lines.
    for k in 0..5 {
        let from = 100 + k * 60;
        writer.write_all(lines(from, from + 60).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::remove_file(&path).unwrap();
    writer.write_all(lines(400, 500).as_bytes()).unwrap();
    drop(writer);
    let ev = t.wait_for(
        20,
        "the 400 lines written after the file was closed",
        |ev| ev.len() >= 500,
    );
    std::thread::sleep(Duration::from_millis(500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly(&ev, 0, 500);
}

/// The same burst-then-delete while the output is stuck (a consumer that stopped reading
/// trawl's stdout, as an output outage does): the reader waits for room and reads nothing, yet
/// the closed file must be taken hold of before its name goes, and read once the output moves.
#[test]
fn a_closed_file_written_to_and_deleted_while_the_output_is_stuck_is_read_once_it_moves() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let busy = d.join("busy.log");
    let quiet = d.join("quiet.log");
    std::fs::write(&busy, "").unwrap();
    std::fs::write(&quiet, lines(0, 100)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    close_inactive: 1s\n    scan_interval: 60s\n    close_removed: 2s\n    max_in_flight: 64KiB",
        d.display()
    );
    let cfg = d.join("pipeline.yaml");
    std::fs::write(&cfg, pipeline(d, &input)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(d.join("trawl.stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The consumer reads a line only when told how many: not reading is the stuck output.
    let (want_tx, want_rx) = mpsc::channel::<usize>();
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        while let Ok(n) = want_rx.recv() {
            for _ in 0..n {
                let mut l = String::new();
                if stdout.read_line(&mut l).unwrap_or(0) == 0 || line_tx.send(l).is_err() {
                    return;
                }
            }
        }
    });
    let take = |n: usize| -> Vec<String> {
        want_tx.send(n).unwrap();
        (0..n)
            .map(|_| {
                line_rx
                    .recv_timeout(Duration::from_secs(60))
                    .expect("an event within 60 s")
            })
            .collect()
    };
    let message = |l: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["message"].as_str().unwrap().to_owned()
    };
    let mut got: Vec<String> = take(100).iter().map(|l| message(l)).collect();
    wait_until(30, "trawl to close the inactive file", || {
        !support::stdout_run::has_open(pid, &quiet)
    });
    // The output is stuck from here: 20,000 lines of the busy file fill the pipe, the pipeline
    // and `max_in_flight`, and the reader waits for room.
    let busy_lines: String = (0..20_000)
        .map(|i| format!("busy {i:06} {}\n", "x".repeat(80)))
        .collect();
    append(&busy, &busy_lines);
    std::thread::sleep(Duration::from_millis(1500));
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&quiet)
        .unwrap();
    writer.write_all(lines(100, 400).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(&quiet).unwrap();
    writer.write_all(lines(400, 600).as_bytes()).unwrap();
    drop(writer);
    std::thread::sleep(Duration::from_millis(1000));
    // The output moves again: whatever comes until 15 s pass without an event.
    want_tx.send(20_500).unwrap();
    while let Ok(l) = line_rx.recv_timeout(Duration::from_secs(15)) {
        got.push(message(&l));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in got.iter().filter(|m| m.starts_with("line ")) {
        *seen.entry(m.as_str()).or_default() += 1;
    }
    let expected: Vec<String> = (0..600).map(line).collect();
    let missing: Vec<usize> = (0..600)
        .filter(|&i| !seen.contains_key(expected[i].as_str()))
        .collect();
    let twice = seen.values().filter(|&&n| n > 1).count();
    assert!(
        missing.is_empty() && twice == 0 && seen.len() == 600,
        "every line of the quiet file once: {} missing (first {:?}, last {:?}), {twice} more than once, {} distinct\n{}",
        missing.len(),
        missing.first(),
        missing.last(),
        seen.len(),
        std::fs::read_to_string(d.join("trawl.stderr")).unwrap_or_default()
    );
    assert_eq!(
        got.iter().filter(|m| m.starts_with("busy ")).count(),
        20_000,
        "every line of the busy file"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// 12 files and `max_open_files: 3`: files read to their end make room for the waiting ones
/// instead of holding their slot until `close_inactive` (an hour here), the limit is said
/// once, and a file closed to make room is read again when it grows.
#[test]
fn more_files_than_max_open_files_are_all_read_and_the_limit_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in 0..12 {
        std::fs::write(d.join(format!("f{f:02}.log")), lines(f * 5, f * 5 + 5)).unwrap();
    }
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    max_open_files: 3\n    close_inactive: 1h\n    scan_interval: 1s",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    let ev = t.wait_for(60, "the lines of all 12 files", |ev| ev.len() >= 60);
    assert_exactly(&ev, 0, 60);
    append(&d.join("f00.log"), &lines(60, 61));
    let ev = t.wait_for(60, "a line appended to the first file", |ev| ev.len() >= 61);
    std::thread::sleep(Duration::from_millis(500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly(&ev, 0, 61);
    let said = t.stderr().matches("max_open_files reached").count();
    assert_eq!(said, 1, "said once: {}", t.stderr());
}

/// logrotate renames `app.log` to `app.log.1` while trawl is stopped (a package upgrade, a
/// reboot), after the app wrote more: the restarted trawl finds the renamed file by its
/// identity, ships what it had not read, reads the new `app.log`, and leaves older history it
/// never followed alone.
#[test]
fn a_plain_file_rotated_while_trawl_was_stopped_is_resumed_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    std::fs::write(d.join("app.log.2"), lines(900_000, 900_010)).unwrap();
    std::fs::write(&path, lines(0, 1000)).unwrap();
    let input = format!("    type: file\n    paths: [\"{}/app.log\"]", d.display());
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(30, "the first 1000 lines", |ev| ev.len() >= 1000);
    first.stop();

    append(&path, &lines(1000, 2000));
    std::fs::rename(&path, d.join("app.log.1")).unwrap();
    std::fs::write(&path, lines(2000, 3000)).unwrap();

    let second = Trawl::start(d, &config, "out2.json");
    second.wait_for(30, "the rest of the rotated file and the new one", |ev| {
        ev.len() >= 2000
    });
    std::thread::sleep(Duration::from_millis(700));
    let all: Vec<serde_json::Value> = first.events().into_iter().chain(second.events()).collect();
    assert_exactly(&all, 0, 3000);
    let resumed = second
        .events()
        .into_iter()
        .find(|e| e["message"] == line(1000).as_str())
        .unwrap();
    assert_eq!(
        resumed["log"]["file"]["path"],
        path.display().to_string(),
        "the name it was followed under"
    );
}

/// While trawl is stopped, logrotate first rotates `app.log` with `copytruncate` (the copy
/// `app.log.1` holds what trawl read and the lines written since; `app.log` is emptied and the
/// app writes on into it), then, at a later run, by rename (`app.log.1` → `app.log.2`, `app.log`
/// → `app.log.1`, a new `app.log`). At start, the file trawl followed is `app.log.1` with other
/// first bytes than it had: its lines written after the truncation are trawl's to ship (read
/// from its start), as are the new `app.log`'s, each once. `rotated` says whether the
/// rotated names are under `paths` (`app.log*`, the copy with them) or not (`app.log`).
fn copytruncate_then_rename_while_stopped(rotated_in_paths: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    std::fs::write(&path, lines(0, 1000)).unwrap();
    let pattern = if rotated_in_paths {
        "app.log*"
    } else {
        "app.log"
    };
    let input = format!("    type: file\n    paths: [\"{}/{pattern}\"]", d.display());
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(30, "the first 1000 lines", |ev| ev.len() >= 1000);
    first.stop();

    // Written while trawl is stopped, before the rotation: in the copy only.
    append(&path, &lines(1000, 1100));
    std::fs::copy(&path, d.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, &lines(2000, 2100));
    std::fs::rename(d.join("app.log.1"), d.join("app.log.2")).unwrap();
    std::fs::rename(&path, d.join("app.log.1")).unwrap();
    std::fs::write(&path, lines(3000, 3100)).unwrap();

    let second = Trawl::start(d, &config, "out2.json");
    second.wait_for(30, "the new app.log's lines", |ev| {
        ev.iter().any(|e| e["message"] == line(3099).as_str())
    });
    // Whatever trawl would read of the rotated files it reads within a few scans.
    std::thread::sleep(Duration::from_secs(3));
    let all: Vec<serde_json::Value> = first.events().into_iter().chain(second.events()).collect();
    if rotated_in_paths {
        assert_lines(&all, &[(0, 1100), (2000, 2100), (3000, 3100)]);
    } else {
        // The copy (`app.log.2`) is not under `paths`: the lines written into it while trawl
        // was stopped are not trawl's to find (README, copytruncate).
        assert_lines(&all, &[(0, 1000), (2000, 2100), (3000, 3100)]);
    }
}

#[test]
fn a_file_copytruncated_then_renamed_while_stopped_is_read_once() {
    copytruncate_then_rename_while_stopped(false);
}

#[test]
fn a_file_copytruncated_then_renamed_within_paths_while_stopped_is_read_once() {
    copytruncate_then_rename_while_stopped(true);
}

/// A header longer than `fingerprint_bytes`, the same in every content of the file (a CSV
/// header, a banner).
fn header() -> String {
    (0..30)
        .map(|i| format!("# report v2 column layout, field {i:02} of 30, same in every file\n"))
        .collect()
}

fn count_from(header: &str) -> usize {
    header.lines().count()
}

/// The file is truncated and rewritten while trawl is stopped, with the same header and past
/// the old offset: the new content is read from its start, not from the old offset.
#[test]
fn a_file_truncated_and_rewritten_past_its_offset_while_stopped_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("report.log");
    let head = header();
    assert!(head.len() > 1024);
    let h = count_from(&head);
    std::fs::write(&path, head.clone() + &lines(0, 100)).unwrap();
    let input = format!("    type: file\n    paths: [\"{}/*.log\"]", d.display());
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(30, "the first content", |ev| ev.len() >= h + 100);
    first.stop();

    std::fs::write(&path, head.clone() + &lines(1000, 1300)).unwrap();
    let second = Trawl::start(d, &config, "out2.json");
    let ev = second.wait_for(30, "the new content", |ev| {
        ev.iter().any(|e| e["message"] == line(1299).as_str())
    });
    std::thread::sleep(Duration::from_millis(500));
    let ev = if second.events().len() > ev.len() {
        second.events()
    } else {
        ev
    };
    let body: Vec<serde_json::Value> = ev
        .iter()
        .filter(|e| !e["message"].as_str().unwrap_or("#").starts_with('#'))
        .cloned()
        .collect();
    assert_exactly(&body, 1000, 1300);
    assert_eq!(ev.len(), h + 300, "the header of the new content too");
}

/// The same while trawl runs: the file was closed for inactivity, and is truncated and
/// rewritten past the old offset before it is reopened.
#[test]
fn a_closed_file_truncated_and_rewritten_past_its_offset_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("report.log");
    let head = header();
    let h = count_from(&head);
    std::fs::write(&path, head.clone() + &lines(0, 100)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    close_inactive: 1s\n    scan_interval: 1s",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    t.wait_for(30, "the first content", |ev| ev.len() >= h + 100);
    wait_until(30, "trawl to close the inactive file", || {
        !t.has_open(&path)
    });

    std::fs::write(&path, head.clone() + &lines(1000, 1300)).unwrap();
    let ev = t.wait_for(30, "the new content", |ev| {
        ev.iter().any(|e| e["message"] == line(1299).as_str())
    });
    std::thread::sleep(Duration::from_millis(500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    let body: Vec<serde_json::Value> = ev
        .iter()
        .filter(|e| !e["message"].as_str().unwrap_or("#").starts_with('#'))
        .cloned()
        .collect();
    assert_lines(&body, &[(0, 100), (1000, 1300)]);
    assert_eq!(ev.len(), 2 * h + 400, "the header of the new content too");
}
