//! What a file's lines become, end to end with the real binary: container runtimes interleave
//! stdout and stderr records in one file, so lines split by the runtime (CRI `P`, Docker `log`
//! without `\n`) are joined per stream, each with its own cap, also across a restart; and
//! identical lines read at once stay distinct events (`@timestamp`, the read time, increases).

use crate::support;

use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use support::stdout_run::{messages, pipeline, Trawl};

fn cri(stream: &str, tag: &str, msg: &str) -> String {
    format!("2026-11-30T10:00:00.000000000Z {stream} {tag} {msg}\n")
}

fn by_message<'a>(ev: &'a [Value], m: &str) -> &'a Value {
    ev.iter().find(|e| e["message"] == m).unwrap_or_else(|| {
        let all = messages(ev);
        panic!(
            "no event {m:?}; the first of {}: {:?}",
            all.len(),
            &all[..all.len().min(12)]
        )
    })
}

/// containerd writes stdout lines between the `P` parts of a stderr line (and the other way
/// round): every line comes out whole, on its stream, and each stream's joined line is capped
/// at `max_line_bytes` on its own.
#[test]
fn cri_partial_lines_interleaved_with_the_other_stream_are_joined_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = String::new();
    for i in 0..100 {
        text += &cri("stderr", "P", &format!("err {i:03} part one, "));
        text += &cri("stdout", "F", &format!("out {i:03} a"));
        text += &cri("stderr", "P", "part two, ");
        text += &cri("stdout", "P", &format!("out {i:03} b split "));
        text += &cri("stderr", "F", "end");
        text += &cri("stdout", "F", "and joined");
    }
    // Over the cap on stdout (3 x 100 bytes > 256) while a short stderr line is being joined.
    let hundred = "x".repeat(100);
    text += &cri("stdout", "P", &hundred);
    text += &cri("stderr", "P", "short ");
    text += &cri("stdout", "P", &hundred);
    text += &cri("stderr", "F", "stderr line");
    text += &cri("stdout", "F", &hundred);
    std::fs::write(d.join("app.log"), text).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    max_line_bytes: 256",
        d.display()
    );
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    let ev = t.wait_for(30, "302 events", |ev| ev.len() >= 302);
    for i in 0..100 {
        let e = by_message(&ev, &format!("err {i:03} part one, part two, end"));
        assert_eq!(e["stream"], "stderr");
        let e = by_message(&ev, &format!("out {i:03} a"));
        assert_eq!(e["stream"], "stdout");
        let e = by_message(&ev, &format!("out {i:03} b split and joined"));
        assert_eq!(e["stream"], "stdout");
    }
    let e = by_message(&ev, "short stderr line");
    assert_eq!(e["stream"], "stderr");
    assert!(e["log"].get("flags").is_none(), "not cut: {e}");
    let cut = ev
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with("xxx")))
        .expect("the long stdout line");
    assert_eq!(cut["message"].as_str().unwrap().len(), 256);
    assert_eq!(cut["stream"], "stdout");
    assert_eq!(cut["log"]["flags"], serde_json::json!(["truncated"]));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        t.events().len(),
        302,
        "one event per line: {:?}",
        messages(&t.events())
    );
}

/// Docker json-file splits lines over 16 KiB into records whose `log` lacks the final `\n`;
/// the other stream's records may come in between.
#[test]
fn docker_split_lines_interleaved_with_the_other_stream_are_joined_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec = |stream: &str, log: &str| {
        format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": "2026-11-30T10:00:00Z"})
        )
    };
    let mut text = String::new();
    for i in 0..50 {
        text += &rec("stdout", &format!("out {i:02} begins "));
        text += &rec("stderr", &format!("err {i:02} whole\n"));
        text += &rec("stdout", "and ends\n");
    }
    std::fs::write(d.join("app.log"), text).unwrap();
    let input = format!("    type: file\n    paths: [\"{}/*.log\"]", d.display());
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    let ev = t.wait_for(30, "100 events", |ev| ev.len() >= 100);
    for i in 0..50 {
        assert_eq!(
            by_message(&ev, &format!("out {i:02} begins and ends"))["stream"],
            "stdout"
        );
        assert_eq!(
            by_message(&ev, &format!("err {i:02} whole"))["stream"],
            "stderr"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(t.events().len(), 100, "{:?}", messages(&t.events()));
}

/// trawl stops while a stderr line is half written and stdout lines after it were delivered:
/// after the restart the stderr line is still whole (reading resumes where it began; the
/// stdout lines read again keep their offsets, so ids from the origin overwrite their copies).
#[test]
fn a_partial_line_pending_across_a_restart_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("app.log");
    let mut text = cri("stderr", "P", "first half, ");
    for i in 0..50 {
        text += &cri("stdout", "F", &format!("out {i:02}"));
    }
    std::fs::write(&path, text).unwrap();
    let input = format!("    type: file\n    paths: [\"{}/*.log\"]", d.display());
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    let ev1 = first.wait_for(30, "the 50 stdout lines", |ev| ev.len() >= 50);
    first.stop();
    assert!(
        ev1.iter().all(|e| e["stream"] == "stdout"),
        "{:?}",
        messages(&ev1)
    );

    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    w.write_all(cri("stderr", "F", "second half").as_bytes())
        .unwrap();
    drop(w);
    let second = Trawl::start(d, &config, "out2.json");
    let ev2 = second.wait_for(30, "the stderr line", |ev| {
        ev.iter().any(|e| e["stream"] == "stderr")
    });
    let err: Vec<String> = messages(
        &ev2.iter()
            .filter(|e| e["stream"] == "stderr")
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(err, ["first half, second half"]);
    let origins: HashSet<String> = ev1
        .iter()
        .map(|e| format!("{}", e["log"]["offset"]))
        .collect();
    for e in ev2.iter().filter(|e| e["stream"] == "stdout") {
        assert!(
            origins.contains(&format!("{}", e["log"]["offset"])),
            "a line read again keeps its offset: {e}"
        );
    }
}

/// A burst of identical lines is read in one chunk: each event still gets its own
/// `@timestamp`, in reading order, so ids built from `message` and `@timestamp` (Filebeat's
/// fingerprint recipe) do not make one line overwrite the others.
#[test]
fn identical_lines_read_at_once_get_distinct_increasing_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.log"), "GET /health 200\n".repeat(500)).unwrap();
    let input = format!("    type: file\n    paths: [\"{}/*.log\"]", d.display());
    let t = Trawl::start(d, &pipeline(d, &input), "out.json");
    let ev = t.wait_for(30, "500 events", |ev| ev.len() >= 500);
    let stamps: Vec<&str> = ev
        .iter()
        .map(|e| e["@timestamp"].as_str().expect("@timestamp"))
        .collect();
    let distinct: HashSet<&&str> = stamps.iter().collect();
    assert_eq!(distinct.len(), 500, "one @timestamp per line");
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "increasing in reading order"
    );
}
