//! trawl stops (SIGTERM or a crash) after reading a line's first part (`P`); kubelet then
//! rotates the container's log twice before trawl starts again, the line's rest (`F`) being in
//! the second rotated file, and may gzip the first. After the restart the line is one event.

use crate::pod::{kubelet_gzip, split_json_line, Pod};
use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::stdout_run::{counts, line};

fn two_rotations_while_stopped(kill: bool, gzipped: bool) {
    let mut pod = Pod::cri();
    let mut first = pod.start("out1.json");
    let (whole, a, b) = split_json_line(1);
    pod.writes(&[("stdout", "F", &line(0)), ("stdout", "P", &a)]);
    first.wait_for(20, "the line before the split one", |ev| {
        ev.iter().any(|e| e["message"] == line(0).as_str())
    });
    // The registry is flushed every second: the delivered line is in it before the stop.
    std::thread::sleep(Duration::from_millis(1500));
    if kill {
        first.kill9();
    } else {
        first.stop();
    }
    // Two rotations while trawl is stopped; the rest of the line is in the second file.
    let t1 = pod.rotate();
    pod.writes(&[("stdout", "F", &b), ("stderr", "F", &line(1))]);
    pod.rotate();
    pod.writes(&[("stdout", "F", &line(2))]);
    if gzipped {
        kubelet_gzip(&t1);
    }
    let second = pod.start("out2.json");
    second.wait_for(20, "the lines after the restart", |ev| {
        let c = counts(ev);
        c.contains_key(&line(1)) && c.contains_key(&line(2))
    });
    // The rotated files are let go (`close_removed: 2s`): a part one held would be sent then.
    std::thread::sleep(Duration::from_secs(4));
    let all: Vec<Value> = first.events().into_iter().chain(second.events()).collect();
    let c = counts(&all);
    for m in [whole.clone(), line(0), line(1), line(2)] {
        assert_eq!(c.get(&m), Some(&1), "{m:?} once: {all:#?}");
    }
    assert_eq!(all.len(), 4, "nothing else (no part alone): {all:#?}");
    assert!(all.iter().all(|e| e["log"]["flags"].is_null()), "{all:#?}");
}

#[test]
fn a_line_split_across_two_rotations_while_stopped_is_one_event() {
    two_rotations_while_stopped(false, false);
}

/// kubelet gzipped the first rotated file at the second rotation (it keeps the latest one
/// plain): the first part is read from the `.gz`, and still joined to its rest.
#[test]
fn a_line_split_across_two_rotations_while_stopped_is_one_event_also_from_the_gz() {
    two_rotations_while_stopped(false, true);
}

#[test]
fn a_line_split_across_two_rotations_while_crashed_is_one_event_also_from_the_gz() {
    two_rotations_while_stopped(true, true);
}
