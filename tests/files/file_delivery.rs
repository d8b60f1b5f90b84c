//! The `file` input's delivery promises across output failures and restarts, with the real
//! binary: a batch an output gives up on is read again until delivered (and the registry moves
//! on), document ids survive `kill -9`, trawl's own downtime neither expires registry entries nor
//! hides files that appeared meanwhile, and inputs whose names differ only in punctuation keep
//! separate registries; a torn last line a crash left in the output file is cut off.

use crate::support;

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::es_server::EsServer;
use support::process::{metric, read_json_lines, wait_until, write_file, Trawl};

fn append(path: &Path, prefix: &str, range: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for i in range {
        text.push_str(&format!(
            "{prefix} {i:05} some padding to make a realistic line\n"
        ));
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn msg(prefix: &str, i: usize) -> String {
    format!("{prefix} {i:05} some padding to make a realistic line")
}

/// Stops trawl with SIGTERM and waits for a clean exit.
fn stop(t: &mut Trawl) {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
    let status = t.wait(Duration::from_secs(60));
    assert!(status.success(), "trawl did not stop cleanly: {status}");
}

/// How many times each `message` was written to a JSON-lines output file.
fn message_counts(path: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in read_json_lines(path) {
        let text = e["message"].as_str().unwrap_or_default().to_owned();
        *m.entry(text).or_insert(0) += 1;
    }
    m
}

/// Messages of the documents stored in Elasticsearch.
fn es_messages(es: &EsServer) -> HashMap<String, usize> {
    es.with(|s| {
        let mut m = HashMap::new();
        for v in s.docs.values() {
            let text = v["message"].as_str().unwrap_or_default().to_owned();
            *m.entry(text).or_insert(0) += 1;
        }
        m
    })
}

fn registry_entries(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("registry {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["files"].as_array().cloned().unwrap_or_default()
}

fn es_pipeline(
    dir: &Path,
    addr: &str,
    es: &EsServer,
    input_extra: &str,
    es_extra: &str,
) -> PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 30s\ninputs:\n  app:\n    type: file\n    paths: [\"{log}\"]\n    poll_interval: 50ms\n{input_extra}outputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    batch: {{ max_events: 100, timeout: 50ms }}\n{es_extra}",
        data = dir.join("data").display(),
        log = dir.join("app.log").display(),
        url = es.url,
    );
    write_file(dir, "pipeline.yaml", &text)
}

#[test]
fn a_batch_the_output_gives_up_on_is_read_again_and_the_registry_moves_on() {
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    // One attempt: every request during the outage is given up on and its batches failed.
    let cfg = es_pipeline(
        d,
        &addr,
        &es,
        "    registry_flush: 200ms\n",
        "    retry: { max_attempts: 1, initial_backoff: 50ms, max_backoff: 100ms }\n",
    );
    let log = d.join("trawl.log");
    append(&d.join("app.log"), "line", 0..1200);
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(
        Duration::from_secs(30),
        "requests refused during the outage",
        || es.with(|s| s.requests) >= 3,
    );
    // The outage ends: the failed lines must come, without a restart.
    es.with(|s| s.unavailable = false);
    wait_until(
        Duration::from_secs(90),
        "every line in Elasticsearch after the outage (a failed batch must be read again)",
        || es_messages(&es).len() >= 1200,
    );
    let got = es_messages(&es);
    let missing: Vec<usize> = (0..1200)
        .filter(|i| !got.contains_key(&msg("line", *i)))
        .collect();
    assert!(missing.is_empty(), "missing lines: {missing:?}");
    let failed = metric(&addr, "trawl_events_failed_total", "app").unwrap_or(0.0);
    assert!(
        failed >= 100.0,
        "the input counts the events of failed batches, got {failed}"
    );

    // Delivery goes on for new lines, and a clean stop saves the offset of the file's end.
    append(&d.join("app.log"), "more", 0..100);
    wait_until(
        Duration::from_secs(30),
        "the lines written after the outage",
        || es_messages(&es).contains_key(&msg("more", 99)),
    );
    stop(&mut t);
    let size = std::fs::metadata(d.join("app.log")).unwrap().len();
    let entries = registry_entries(&d.join("data/registry/file-app.json"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["offset"].as_u64(),
        Some(size),
        "the registry reached the file's end"
    );

    // A restart sends only what is new.
    let writes_before = es.with(|s| s.writes);
    let mut t = Trawl::start(&cfg, Some(&log));
    append(&d.join("app.log"), "after", 0..10);
    wait_until(
        Duration::from_secs(30),
        "the lines written after the restart",
        || es_messages(&es).contains_key(&msg("after", 9)),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut t);
    assert_eq!(
        es.with(|s| s.writes) - writes_before,
        10,
        "after the restart only the 10 new lines are sent"
    );
}

#[test]
fn a_file_rotated_away_and_deleted_during_an_outage_is_still_read_again() {
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    let cfg = es_pipeline(
        d,
        &addr,
        &es,
        "    registry_flush: 200ms\n    close_removed: 500ms\n    scan_interval: 500ms\n",
        "    retry: { max_attempts: 1, initial_backoff: 50ms, max_backoff: 100ms }\n",
    );
    let log = d.join("trawl.log");
    append(&d.join("app.log"), "line", 0..500);
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(
        Duration::from_secs(30),
        "requests refused during the outage",
        || es.with(|s| s.requests) >= 2,
    );
    // Rotated out of `paths`, then deleted, while nothing of it was delivered.
    std::fs::rename(d.join("app.log"), d.join("app.log.1")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(d.join("app.log.1")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    es.with(|s| s.unavailable = false);
    wait_until(
        Duration::from_secs(90),
        "every line of the deleted file in Elasticsearch",
        || es_messages(&es).len() >= 500,
    );
    stop(&mut t);
    let got = es_messages(&es);
    assert!((0..500).all(|i| got.contains_key(&msg("line", i))));
}

#[test]
fn document_ids_survive_kill_9_before_the_registry_flush() {
    let es = EsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    // Offsets are not flushed during the test (the first flush is at start, before the file
    // exists): only a stream id written before its events left can be there after the kill.
    let cfg = es_pipeline(
        d,
        &addr,
        &es,
        "    registry_flush: 1h\n    scan_interval: 1s\n",
        "",
    );
    let log = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(30), "trawl to serve /metrics", || {
        metric(&addr, "trawl_events_out_total", "es").is_some()
    });
    std::thread::sleep(Duration::from_secs(1));
    append(&d.join("app.log"), "line", 0..5000);
    wait_until(
        Duration::from_secs(60),
        "the 5000 lines in Elasticsearch",
        || es.with(|s| s.docs.len()) >= 5000,
    );
    t.kill9();
    // Restarted: the offset is still 0, so everything is sent again, under the same ids.
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(
        Duration::from_secs(60),
        "the lines sent again after the restart",
        || es.with(|s| s.writes) >= 10_000,
    );
    std::thread::sleep(Duration::from_secs(1));
    t.kill9();
    let docs = es.with(|s| s.docs.len());
    assert_eq!(docs, 5000, "every line sent again overwrote its first copy");
}

fn stdout_pipeline(dir: &Path, inputs: &str) -> PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 10s\ninputs:\n{inputs}outputs:\n  out: {{ type: file, path: \"{out}\" }}\n",
        data = dir.join("data").display(),
        out = dir.join("out.jsonl").display(),
    );
    write_file(dir, "pipeline.yaml", &text)
}

/// Waits until input `name` follows a file (its registry holds an entry).
fn wait_followed(dir: &Path, name: &str) {
    let path = dir.join(format!("data/registry/file-{name}.json"));
    wait_until(Duration::from_secs(30), "the file to be followed", || {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["files"].as_array().is_some_and(|f| !f.is_empty()))
    });
}

fn file_input(name: &str, glob: &Path, extra: &str) -> String {
    format!(
        "  {name}:\n    type: file\n    paths: [\"{}\"]\n    poll_interval: 50ms\n    scan_interval: 500ms\n{extra}",
        glob.display()
    )
}

#[test]
fn downtime_longer_than_forget_after_neither_skips_nor_repeats_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app = d.join("app.log");
    append(&app, "old", 0..10);
    let cfg = stdout_pipeline(
        d,
        &file_input("logs", &app, "    start_at: end\n    forget_after: 2s\n"),
    );
    let out = d.join("out.jsonl");
    let log = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_followed(d, "logs");
    append(&app, "live", 0..5);
    wait_until(
        Duration::from_secs(30),
        "the lines written while running",
        || message_counts(&out).contains_key(&msg("live", 4)),
    );
    stop(&mut t);
    // Down for longer than forget_after, while the application keeps writing.
    std::thread::sleep(Duration::from_secs(4));
    append(&app, "down", 0..5);
    let mut t = Trawl::start(&cfg, Some(&log));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !message_counts(&out).contains_key(&msg("down", 4)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut t);
    let c = message_counts(&out);
    let expected: Vec<String> = (0..5)
        .map(|i| msg("live", i))
        .chain((0..5).map(|i| msg("down", i)))
        .collect();
    for m in &expected {
        assert_eq!(c.get(m), Some(&1), "{m:?} delivered once; got {c:?}");
    }
    assert_eq!(
        c.len(),
        expected.len(),
        "nothing else (no `old` line): {c:?}"
    );
}

#[test]
fn files_that_appeared_while_trawl_was_stopped_are_read_from_their_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("c")).unwrap();
    append(&d.join("a/app.log"), "old", 0..10);
    // `logs` has a file at its first start; `later` has none.
    let inputs = file_input("logs", &d.join("a/*.log"), "    start_at: end\n")
        + &file_input("later", &d.join("c/*.log"), "    start_at: end\n");
    let cfg = stdout_pipeline(d, &inputs);
    let out = d.join("out.jsonl");
    let log = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_followed(d, "logs");
    append(&d.join("a/app.log"), "live", 0..5);
    wait_until(
        Duration::from_secs(30),
        "the lines written while running",
        || message_counts(&out).contains_key(&msg("live", 4)),
    );
    stop(&mut t);
    // While stopped: the log is rotated (renamed away) and new files appear.
    std::fs::rename(d.join("a/app.log"), d.join("a/app.log.1")).unwrap();
    append(&d.join("a/app.log"), "rotated", 0..50);
    append(&d.join("a/new.log"), "new", 0..50);
    append(&d.join("c/first.log"), "first", 0..50);
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(
        Duration::from_secs(30),
        "the files that appeared while stopped",
        || {
            let c = message_counts(&out);
            ["rotated", "new", "first"]
                .iter()
                .all(|p| (0..50).all(|i| c.contains_key(&msg(p, i))))
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut t);
    let c = message_counts(&out);
    assert!(c.values().all(|n| *n == 1), "no line twice: {c:?}");
    assert_eq!(c.len(), 5 + 150, "no `old` line: {c:?}");
}

#[test]
fn inputs_whose_names_differ_in_punctuation_keep_separate_registries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(&d.join("a.log"), "a", 0..20);
    append(&d.join("b.log"), "b", 0..20);
    let inputs = file_input("\"web:app\"", &d.join("a.log"), "")
        + &file_input("web_app", &d.join("b.log"), "");
    let cfg = stdout_pipeline(d, &inputs);
    let out = d.join("out.jsonl");
    let log = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(30), "both files", || {
        message_counts(&out).len() >= 40
    });
    stop(&mut t);
    let mut t = Trawl::start(&cfg, Some(&log));
    append(&d.join("a.log"), "a", 20..21);
    append(&d.join("b.log"), "b", 20..21);
    wait_until(Duration::from_secs(30), "the new lines", || {
        message_counts(&out).len() >= 42
    });
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut t);
    let c = message_counts(&out);
    assert!(
        c.values().all(|n| *n == 1),
        "no line twice after the restart: {c:?}"
    );
    assert_eq!(c.len(), 42);
    let mut names: Vec<String> = std::fs::read_dir(d.join("data/registry"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names, ["file-web.3aapp.json", "file-web_app.json"]);
}

#[test]
fn a_torn_line_left_in_the_output_file_by_a_crash_is_cut_before_new_lines_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.jsonl");
    // What a `kill -9` (or a full disk) in the middle of a write leaves: whole lines, then part
    // of one whose batch was never acknowledged (its events are read and written again).
    std::fs::write(
        &out,
        "{\"message\":\"written before the crash\"}\n{\"message\":\"torn in the mid",
    )
    .unwrap();
    let app = d.join("app.log");
    append(&app, "line", 0..200);
    let cfg = stdout_pipeline(d, &file_input("logs", &app, "    start_at: beginning\n"));
    let log = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(30), "the 200 lines", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains(&msg("line", 199)))
    });
    stop(&mut t);
    // `message_counts` fails on a line that is not JSON (the fragment joined to a new line)
    // and leaves out an unterminated last one, hence the newline check.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "the file ends with a whole line");
    let seen = message_counts(&out);
    let want: Vec<String> = std::iter::once("written before the crash".to_owned())
        .chain((0..200).map(|i| msg("line", i)))
        .collect();
    support::process::assert_each_once(&seen, &want);
    assert_eq!(seen.len(), want.len(), "nothing else: {seen:?}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("torn last line"),
        "the cut is logged: {logged}"
    );
}
