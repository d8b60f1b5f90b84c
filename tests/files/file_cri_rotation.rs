//! Container lines the runtime split (CRI `P` records, Docker `log` without its newline) whose
//! first part kubelet's rotation left in the rotated file and whose rest went to the new `0.log`:
//! one event with the whole line, also when trawl is stopped or killed in between; a first part
//! whose rest never comes is still sent, flagged `partial`. The real binary, kubelet's layout.

use crate::pod::{split_json_line, Pod};
use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::stdout_run::{line, Trawl};

/// The events once the rotated file was let go (`close_removed: 2s`): nothing more comes of
/// it after that.
fn once_let_go(trawl: &Trawl, seen: Vec<Value>) -> Vec<Value> {
    std::thread::sleep(Duration::from_secs(4));
    let now = trawl.events();
    if now.len() > seen.len() {
        now
    } else {
        seen
    }
}

fn with_message<'a>(ev: &'a [Value], text: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["message"] == text).collect()
}

/// No event holds a half of `whole`.
fn assert_no_halves(ev: &[Value], whole: &str) {
    let halves: Vec<&Value> = ev
        .iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m != whole && !m.is_empty() && (whole.starts_with(m) || whole.ends_with(m))
        })
        .collect();
    assert!(halves.is_empty(), "a split line came in pieces: {halves:?}");
}

fn flags(e: &Value) -> Vec<String> {
    e["log"]["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The runtime wrote a line's first part (`P`) to `0.log` just before kubelet renamed it, and
/// its rest (`F`) to the new `0.log`; stderr lines are interleaved on both sides. One event with
/// the whole line, unflagged, and every other line once; nothing of it is read again after a
/// restart.
#[test]
fn a_cri_line_split_by_a_rotation_is_one_event() {
    let mut pod = Pod::cri();
    let mut trawl = pod.start("out.json");
    let (whole, a, b) = split_json_line(1);
    pod.writes(&[
        ("stdout", "F", &line(0)),
        ("stdout", "P", &a),
        ("stderr", "F", &line(1)),
    ]);
    trawl.wait_for(20, "the lines before the rotation", |ev| {
        !with_message(ev, &line(1)).is_empty()
    });
    pod.rotate();
    pod.writes(&[
        ("stderr", "F", &line(2)),
        ("stdout", "F", &b),
        ("stdout", "F", &line(3)),
    ]);
    let ev = trawl.wait_for(20, "the joined line and the line after it", |ev| {
        !with_message(ev, &whole).is_empty() && !with_message(ev, &line(3)).is_empty()
    });
    let ev = once_let_go(&trawl, ev);
    assert_no_halves(&ev, &whole);
    let joined = with_message(&ev, &whole);
    assert_eq!(joined.len(), 1, "the whole line once");
    assert_eq!(joined[0]["stream"], "stdout");
    assert!(flags(joined[0]).is_empty(), "not flagged: {:?}", joined[0]);
    for i in 0..4 {
        assert_eq!(with_message(&ev, &line(i)).len(), 1, "line {i} once");
    }
    assert_eq!(ev.len(), 5, "nothing else: {ev:?}");
    // Its delivery moved both files' offsets: a restart sends neither part again.
    trawl.stop();
    let again = pod.start("out2.json");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(again.events(), Vec::<Value>::new(), "nothing read again");
}

/// trawl stops (SIGTERM, or a crash) after reading a line's first part and before its rest is
/// written to the file replacing the rotated one: after the restart, the line comes out whole,
/// once, and the lines delivered before the stop are not sent again (but the other stream's
/// line written between the parts, as README says).
fn split_across_a_restart(kill: bool) {
    let mut pod = Pod::cri();
    let mut first = pod.start("out1.json");
    let (whole, a, b) = split_json_line(2);
    pod.writes(&[
        ("stdout", "F", &line(0)),
        ("stdout", "P", &a),
        ("stderr", "F", &line(1)),
    ]);
    first.wait_for(20, "the lines before the rotation", |ev| {
        !with_message(ev, &line(1)).is_empty()
    });
    pod.rotate();
    // The registry is flushed every second: the delivered lines are in it before the stop.
    std::thread::sleep(Duration::from_millis(1500));
    if kill {
        first.kill9();
    } else {
        first.stop();
    }
    pod.writes(&[("stdout", "F", &b), ("stderr", "F", &line(2))]);
    let second = pod.start("out2.json");
    let ev2 = second.wait_for(20, "the joined line and the line after it", |ev| {
        !with_message(ev, &whole).is_empty() && !with_message(ev, &line(2)).is_empty()
    });
    let ev2 = once_let_go(&second, ev2);
    let all: Vec<Value> = first.events().into_iter().chain(ev2).collect();
    assert_no_halves(&all, &whole);
    let joined = with_message(&all, &whole);
    assert_eq!(joined.len(), 1, "the whole line once");
    assert!(flags(joined[0]).is_empty(), "not flagged: {:?}", joined[0]);
    for i in [0, 2] {
        assert_eq!(with_message(&all, &line(i)).len(), 1, "line {i} once");
    }
    // Written between the two parts, it is read again with the first part (README), under the
    // same offset, so the same document id.
    let between = with_message(&all, &line(1));
    assert!(
        between.iter().all(|e| e["log"] == between[0]["log"]),
        "{between:?}"
    );
}

#[test]
fn a_cri_line_split_by_a_rotation_is_whole_after_a_graceful_restart_in_between() {
    split_across_a_restart(false);
}

#[test]
fn a_cri_line_split_by_a_rotation_is_whole_after_a_crash_in_between() {
    split_across_a_restart(true);
}

/// The container died after the first part of a line, just as kubelet rotated its log: the
/// rest never comes. The first part is still sent, once, flagged `partial`, and the new file's
/// lines of the other stream are not held back by it.
#[test]
fn a_first_part_whose_rest_never_comes_is_sent_flagged_partial() {
    let mut pod = Pod::cri();
    let trawl = pod.start("out.json");
    let (_, a, _) = split_json_line(3);
    pod.writes(&[("stdout", "F", &line(0)), ("stdout", "P", &a)]);
    trawl.wait_for(20, "the line before", |ev| {
        !with_message(ev, &line(0)).is_empty()
    });
    pod.rotate();
    pod.writes(&[("stderr", "F", &line(1))]);
    let ev = trawl.wait_for(30, "the first part, flagged", |ev| {
        !with_message(ev, &a).is_empty() && !with_message(ev, &line(1)).is_empty()
    });
    let ev = once_let_go(&trawl, ev);
    let part = with_message(&ev, &a);
    assert_eq!(part.len(), 1, "the first part once");
    assert_eq!(flags(part[0]), ["partial"], "{:?}", part[0]);
    assert_eq!(ev.len(), 3, "nothing else: {ev:?}");
}

/// Docker's json-file driver splits long lines too (a `log` without its final newline), and
/// rotates `<id>-json.log` to `<id>-json.log.1`: the same joining across the rotation.
#[test]
fn a_docker_line_split_by_a_rotation_is_one_event() {
    let mut pod = Pod::docker();
    let trawl = pod.start("out.json");
    let (whole, a, b) = split_json_line(4);
    pod.writes(&[("stdout", "F", &line(0)), ("stdout", "P", &a)]);
    trawl.wait_for(20, "the line before", |ev| {
        !with_message(ev, &line(0)).is_empty()
    });
    pod.rotate();
    pod.writes(&[("stdout", "F", &b), ("stdout", "F", &line(1))]);
    let ev = trawl.wait_for(20, "the joined line and the line after it", |ev| {
        !with_message(ev, &whole).is_empty() && !with_message(ev, &line(1)).is_empty()
    });
    let ev = once_let_go(&trawl, ev);
    assert_no_halves(&ev, &whole);
    assert_eq!(with_message(&ev, &whole).len(), 1, "the whole line once");
    assert_eq!(ev.len(), 3, "nothing else: {ev:?}");
}
