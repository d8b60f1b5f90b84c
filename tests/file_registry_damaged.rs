//! A file input's registry damaged while trawl is stopped (a disk fault, a half-copied backup,
//! an edit by hand), through the real binary: trawl starts, says so once naming the file, and
//! every line written while it was stopped is still delivered, also with `start_at: end`
//! (lines sent again rather than lost).

mod support {
    pub mod process;
}

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use support::process::{append, read_json_lines, sigterm, wait_until, write_file, Trawl};

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
