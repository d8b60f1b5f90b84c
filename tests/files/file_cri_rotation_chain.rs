//! trawl stops (SIGTERM or a crash) after reading a line's first part (`P`); kubelet then
//! rotates the container's log twice before trawl starts again, the line's rest (`F`) being in
//! the second rotated file, and may gzip the first. After the restart the line is one event.

use crate::support;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::stdout_run::{counts, line, pipeline, Trawl};

fn cri(stream: &str, tag: &str, text: &str) -> String {
    format!("2026-11-23T10:00:00.000000000Z {stream} {tag} {text}\n")
}

fn append(path: &Path, text: &str) {
    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    w.write_all(text.as_bytes()).unwrap();
}

/// kubelet's gzip of an older rotated file: `<name>.gz` written, the plain file deleted.
fn gzip(plain: &Path) {
    let data = std::fs::read(plain).unwrap();
    let gz = plain.with_file_name(format!(
        "{}.gz",
        plain.file_name().unwrap().to_string_lossy()
    ));
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
    std::fs::remove_file(plain).unwrap();
}

fn two_rotations_while_stopped(kill: bool, gzipped: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pod = d.join("pods/shop_web-7d9_0b1c-22/nginx");
    std::fs::create_dir_all(&pod).unwrap();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let target = pod.join("0.log");
    std::fs::write(&target, b"").unwrap();
    let id = "c".repeat(64);
    std::os::unix::fs::symlink(
        &target,
        d.join(format!("containers/web-7d9_shop_nginx-{id}.log")),
    )
    .unwrap();
    let config = pipeline(
        d,
        &format!(
            "    type: file\n    paths: [\"{}/containers/*.log\"]\n    close_removed: 2s\n",
            d.display()
        ),
    );
    let mut first = Trawl::start(d, &config, "out1.json");
    let whole = format!("{{\"level\":\"info\",\"msg\":\"{}\"}}", "x".repeat(300));
    let (a, b) = whole.split_at(150);
    append(
        &target,
        &(cri("stdout", "F", &line(0)) + &cri("stdout", "P", a)),
    );
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
    let t1 = pod.join("0.log.20261123-100001");
    std::fs::rename(&target, &t1).unwrap();
    append(
        &target,
        &(cri("stdout", "F", b) + &cri("stderr", "F", &line(1))),
    );
    std::fs::rename(&target, pod.join("0.log.20261123-100002")).unwrap();
    append(&target, &cri("stdout", "F", &line(2)));
    if gzipped {
        gzip(&t1);
    }
    let second = Trawl::start(d, &config, "out2.json");
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
