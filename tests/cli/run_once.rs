//! `trawl run --once`: a backfill of a folder of old logs. Every line is delivered, the offsets
//! are committed, trawl exits 0 by itself, and a second run delivers only what was added since.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

/// Runs trawl to its end; fails the test (killing it) if it has not ended within `deadline`.
fn run_bounded(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(TRAWL)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "trawl {args:?} did not end by itself within {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn pipeline(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("backfill.yaml");
    std::fs::write(
        &p,
        format!(
            "data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  old:\n    type: file\n    paths: [\"{d}/logs/*.log\"]\n    multiline: {{ pattern: '^\\s', negate: false, match: after }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    p
}

/// Every message delivered so far, with how many times.
fn delivered(dir: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let m = v["message"].as_str().unwrap().to_owned();
        *seen.entry(m).or_insert(0) += 1;
    }
    seen
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_folder_is_read_to_its_end_committed_and_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut expected = Vec::new();
    // Several files, more lines than one batch, and a multiline event as the very last thing in
    // a file: nothing will ever follow it, so --once must not wait for its timeout or drop it.
    for f in 0..6 {
        let mut text = String::new();
        for i in 0..3000 {
            let m = format!("file {f} line {i}");
            text.push_str(&m);
            text.push('\n');
            expected.push(m);
        }
        text.push_str("Exception at the end\n  at frame one\n  at frame two\n");
        expected.push("Exception at the end\n  at frame one\n  at frame two".to_owned());
        append(&logs.join(format!("app-{f}.log")), &text);
    }
    let cfg = pipeline(dir.path());
    let cfg_arg = cfg.to_str().unwrap();

    let out = run_bounded(&["run", "--once", "-c", cfg_arg], Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let seen = delivered(dir.path());
    let exceptions = seen.get("Exception at the end\n  at frame one\n  at frame two");
    assert_eq!(
        exceptions,
        Some(&6),
        "the last multiline event of each file: {err}"
    );
    for m in &expected {
        assert!(seen.contains_key(m), "`{m}` was not delivered");
    }
    assert_eq!(seen.values().sum::<usize>(), expected.len(), "duplicates");

    // Nothing changed: a second run delivers nothing.
    let out = run_bounded(&["run", "--once", "-c", cfg_arg], Duration::from_secs(120));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        delivered(dir.path()).values().sum::<usize>(),
        expected.len()
    );

    // Lines added to a file and a new file: only those are delivered by the third run.
    append(&logs.join("app-2.log"), "added later\n");
    append(&logs.join("new.log"), "a new file\n");
    let out = run_bounded(&["run", "--once", "-c", cfg_arg], Duration::from_secs(120));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = delivered(dir.path());
    assert_eq!(seen.get("added later"), Some(&1));
    assert_eq!(seen.get("a new file"), Some(&1));
    assert_eq!(seen.values().sum::<usize>(), expected.len() + 2);
}

/// A live input never ends: --once refuses the pipeline up front, naming where the input is.
#[test]
fn an_input_that_never_ends_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  logs: {{ type: file, paths: [\"{d}/*.log\"] }}\n  net:\n    type: socket\n    address: unix:{d}/s.sock\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = run_bounded(
        &["run", "--once", "-c", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:6:11: inputs.net.type:", cfg.display())),
        "{err}"
    );
    assert!(err.contains("--once"), "{err}");
}
