//! A file input's registry damaged while trawl is stopped (a disk fault, a half-copied backup,
//! an edit by hand), or that cannot be written while it runs (its disk read-only or full),
//! through the real binary: trawl says so once naming the file, lines keep flowing, and no line
//! is lost across a restart (lines sent again rather than lost).

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::process::{
    append, free_port, health_turns_503, http_get, read_json_lines, sigterm, wait_until,
    write_file, Trawl,
};

fn lines(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| format!("damaged registry line {i:04}\n"))
        .collect()
}

fn copies(out: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for v in read_json_lines(out) {
        if let Some(m) = v["message"].as_str() {
            *seen.entry(m.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

fn stop(mut trawl: Trawl, log: &Path) {
    sigterm(&trawl);
    let status = trawl.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "trawl exited with {status}; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn a_damaged_registry_loses_no_line_written_while_trawl_was_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\ninputs:\n  app:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    start_at: end\n    registry_flush: 100ms\n    poll_interval: 100ms\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("trawl.log");
    let app = logs.join("app.log");
    let other = logs.join("other.log");

    // First start with no file yet: the files created after it are read from their start.
    let trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(30), "the registry written", || {
        dir.path().join("data/registry/file-app.json").exists()
    });
    append(&app, &lines(0..100));
    append(&other, &lines(1000..1100));
    wait_until(Duration::from_secs(30), "the first lines delivered", || {
        copies(&out).len() == 200
    });
    std::thread::sleep(Duration::from_millis(500));
    stop(trawl, &log);

    // Written while trawl is stopped; then its registry is cut in the middle.
    append(&app, &lines(100..200));
    append(&other, &lines(1100..1200));
    let registry = dir.path().join("data/registry/file-app.json");
    let whole = std::fs::read(&registry).unwrap();
    std::fs::write(&registry, &whole[..whole.len() / 2]).unwrap();

    let trawl = Trawl::start(&config, Some(&log));
    let expected: Vec<String> = lines(0..200)
        .lines()
        .chain(lines(1000..1200).lines())
        .map(str::to_owned)
        .collect();
    let all_there = || {
        let seen = copies(&out);
        expected.iter().all(|l| seen.contains_key(l))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !all_there() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A line written now is delivered: trawl runs (no crash loop).
    append(&app, &lines(200..201));
    wait_until(
        Duration::from_secs(20),
        "a line written after the restart",
        || copies(&out).contains_key(lines(200..201).trim_end()),
    );
    stop(trawl, &log);

    let seen = copies(&out);
    let missing: Vec<&String> = expected.iter().filter(|l| !seen.contains_key(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} of the lines written while trawl was stopped lost after its registry was damaged: {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let again: usize = seen.values().map(|c| c - 1).sum();
    eprintln!("lines sent again after the damaged registry: {again} (200 were delivered before)");
    assert!(
        again <= 200,
        "only what was delivered before is sent again: {again}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("registry unreadable"))
        .collect();
    assert_eq!(warned.len(), 1, "logged once; the log:\n{text}");
    assert!(
        warned[0].contains(&registry.display().to_string()),
        "the line names the file: {}",
        warned[0]
    );
    assert!(
        registry.with_extension("json.corrupt").exists(),
        "kept aside for a look"
    );
}

/// A small tmpfs of the test's own, unmounted when dropped; its `remount` stands for a disk an
/// operator or the kernel (errors=remount-ro) makes read-only under trawl.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where mounting is not allowed (not root): the caller says so and stops.
    fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// `ro` or `rw`; retried, as a remount read-only is refused while a file there is open for
    /// writing (trawl writing its registry at that moment).
    fn remount(&self, mode: &str) {
        wait_until(Duration::from_secs(10), &format!("remount {mode}"), || {
            Command::new("mount")
                .args(["-o", &format!("remount,{mode}")])
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The offset the registry on disk holds for `name`'s file.
fn saved_offset(registry: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(registry).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .and_then(|f| f["offset"].as_u64())
        .unwrap_or(0)
}

fn fault_lines(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| format!("registry fault line {i:04}\n"))
        .collect()
}

/// The registry's disk turns read-only while trawl tails a file (an SRE's `mount -o
/// remount,ro`, or ext4's errors=remount-ro). Lines keep flowing; one log line names the
/// registry and the error; `/health` answers 503 naming the input and the registry until it can
/// be written again; and after a kill -9 meanwhile, what was delivered since the last write is
/// sent again at the next start, not lost.
#[test]
fn a_registry_that_cannot_be_written_shows_on_health_and_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(disk) = Tmpfs::mount(&data) else {
        eprintln!("SKIPPED: mount -t tmpfs not allowed here (needs root)");
        return;
    };
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let out = dir.path().join("out.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    registry_flush: 100ms\n    poll_interval: 100ms\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = data.display(),
            logs = logs.display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("trawl.log");
    let app = logs.join("app.log");
    let registry = data.join("registry/file-app.json");
    let delivered = |range: std::ops::Range<usize>| {
        let seen = copies(&out);
        fault_lines(range).lines().all(|l| seen.contains_key(l))
    };
    let healthy = || http_get(&addr, "/health").is_some_and(|(s, _)| s == 200);

    let trawl = Trawl::start(&config, Some(&log));
    append(&app, &fault_lines(0..100));
    wait_until(Duration::from_secs(30), "the first lines delivered", || {
        delivered(0..100)
    });
    let size = |n| fault_lines(0..n).len() as u64;
    wait_until(Duration::from_secs(10), "their offset saved", || {
        saved_offset(&registry, "app.log") == size(100)
    });
    wait_until(Duration::from_secs(10), "/health 200", healthy);

    // Read-only: lines still flow, /health says so, naming the registry.
    disk.remount("ro");
    let since = Instant::now();
    append(&app, &fault_lines(100..200));
    wait_until(
        Duration::from_secs(30),
        "lines delivered while the registry is read-only",
        || delivered(100..200),
    );
    let turned = health_turns_503(&addr, since, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let (_, body) = turned.unwrap_or_else(|| {
        panic!("/health stayed 200 while the registry could not be written; the log:\n{text}")
    });
    assert!(
        body.contains("input app") && body.contains(&registry.display().to_string()),
        "/health names the input and its registry: {body}"
    );
    assert_eq!(saved_offset(&registry, "app.log"), size(100));

    // Writable again: the offsets are saved, /health is 200 again.
    disk.remount("rw");
    wait_until(Duration::from_secs(10), "the offsets saved again", || {
        saved_offset(&registry, "app.log") == size(200)
    });
    wait_until(Duration::from_secs(10), "/health 200 again", healthy);

    // Read-only again, and trawl killed meanwhile: the lines delivered since are read again.
    disk.remount("ro");
    append(&app, &fault_lines(200..300));
    wait_until(
        Duration::from_secs(30),
        "lines delivered, read-only again",
        || delivered(200..300),
    );
    assert!(
        health_turns_503(&addr, Instant::now(), Duration::from_secs(10)).is_some(),
        "/health 503 again"
    );
    let mut trawl = trawl;
    trawl.kill9();
    disk.remount("rw");
    let trawl = Trawl::start(&config, Some(&log));
    append(&app, &fault_lines(300..310));
    wait_until(Duration::from_secs(30), "lines after the restart", || {
        delivered(0..310)
    });
    stop(trawl, &log);

    let seen = copies(&out);
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(l, _)| l)
        .collect();
    assert_eq!(
        twice.len(),
        100,
        "exactly the lines delivered while the registry could not be written are sent again"
    );
    assert!(twice
        .iter()
        .all(|l| fault_lines(200..300).contains(l.as_str())));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cannot write registry"))
        .collect();
    assert_eq!(failed.len(), 2, "logged once per episode; the log:\n{text}");
    assert!(
        failed
            .iter()
            .all(|l| l.contains(&registry.display().to_string())),
        "the line names the registry: {}",
        failed[0]
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("registry written again"))
            .count(),
        1,
        "its end logged too (the second episode ended with the kill)"
    );
}
