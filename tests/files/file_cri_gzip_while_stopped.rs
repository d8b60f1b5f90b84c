//! kubelet keeps rotating while trawl is stopped (a DaemonSet rollout that waits on an image
//! pull, a crash loop): at each rotation it gzips the rotated file still plain and deletes it,
//! and ext4 gives freed inodes to the files created next. After the restart every line the
//! runtime wrote since trawl first ran is delivered once, also those only in a `.gz` trawl
//! never saw; older compressed history is left alone.

use crate::pod::Pod;
use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::stdout_run::{counts, line, Trawl};

/// Lines `from..to` written by the runtime, one record each.
fn write_lines(pod: &Pod, from: usize, to: usize) {
    let texts: Vec<String> = (from..to).map(line).collect();
    let records: Vec<(&str, &str, &str)> =
        texts.iter().map(|t| ("stdout", "F", t.as_str())).collect();
    pod.writes(&records);
}

/// Stops trawl after its registry has what it delivered (flushed every second), and lets a
/// second pass, so that files created from now on are born after trawl last saw its files.
fn stop_after_flush(trawl: &mut Trawl) {
    std::thread::sleep(Duration::from_millis(1500));
    trawl.stop();
    std::thread::sleep(Duration::from_millis(1100));
}

fn all_of(runs: &[&Trawl]) -> Vec<Value> {
    runs.iter().flat_map(|t| t.events()).collect()
}

fn assert_each_once(all: &[Value], lines: impl Iterator<Item = usize>) {
    let c = counts(all);
    let mut want = 0;
    for i in lines {
        want += 1;
        assert_eq!(c.get(&line(i)), Some(&1), "line {i} once: {:?}", c);
    }
    assert_eq!(all.len(), want, "nothing else: {c:?}");
}

#[test]
fn a_container_rotated_three_times_while_trawl_was_stopped_loses_no_line() {
    let mut pod = Pod::cri();
    let mut first = pod.start("out1.json");
    write_lines(&pod, 0, 10);
    first.wait_for(20, "the first lines", |ev| ev.len() >= 10);
    stop_after_flush(&mut first);
    // 10..20 in the file trawl was reading, gzipped at the second rotation; 20..30 in a file
    // trawl never saw, gzipped at the third; 30..40 rotated, plain; 40..50 in the new log.
    for r in 0..3 {
        write_lines(&pod, 10 + r * 10, 20 + r * 10);
        pod.kubelet_rotate();
    }
    write_lines(&pod, 40, 50);
    let mut second = pod.start("out2.json");
    second.wait_for(20, "every line written while trawl was stopped", |ev| {
        let c = counts(ev);
        (10..50).all(|i| c.contains_key(&line(i)))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_each_once(&all_of(&[&first, &second]), 0..50);
    let log = second.stderr();
    assert!(
        log.contains("reading a compressed rotated file trawl never saw"),
        "the .gz trawl never saw is named: {log}"
    );
    stop_after_flush(&mut second);

    // The next start knows the compressed files: nothing is read again.
    let third = pod.start("out3.json");
    write_lines(&pod, 50, 51);
    third.wait_for(20, "the line written after the third start", |ev| {
        counts(ev).contains_key(&line(50))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_each_once(&third.events(), 50..51);
}

#[test]
fn a_container_created_and_rotated_twice_while_trawl_was_stopped_loses_no_line() {
    let pod = Pod::cri();
    let mut first = pod.start("out1.json");
    write_lines(&pod, 0, 1);
    first.wait_for(20, "the first line", |ev| !ev.is_empty());
    stop_after_flush(&mut first);
    // A pod scheduled while trawl is stopped, whose first log kubelet rotates twice: its
    // first lines are only in a `.gz`.
    let mut job = pod.another_cri("batch-5f2", "job");
    write_lines(&job, 100, 110);
    job.kubelet_rotate();
    write_lines(&job, 110, 120);
    job.kubelet_rotate();
    write_lines(&job, 120, 130);
    let second = pod.start("out2.json");
    second.wait_for(20, "the new pod's lines", |ev| {
        let c = counts(ev);
        (100..130).all(|i| c.contains_key(&line(i)))
    });
    std::thread::sleep(Duration::from_secs(2));
    let all = all_of(&[&first, &second]);
    assert_each_once(&all, (0..1).chain(100..130));
    // Under the pod's link: its Kubernetes fields, as for the lines read from its plain files.
    let from_gz = all
        .iter()
        .find(|e| e["message"] == line(100).as_str())
        .unwrap();
    assert_eq!(
        from_gz["kubernetes"]["pod"]["name"], "batch-5f2",
        "{from_gz}"
    );
    assert_eq!(
        from_gz["kubernetes"]["container"]["name"], "job",
        "{from_gz}"
    );
}

#[test]
fn compressed_history_from_before_trawl_first_ran_is_not_read() {
    let mut pod = Pod::cri();
    // History: rotated before trawl ever ran on this node.
    write_lines(&pod, 900, 910);
    pod.kubelet_rotate();
    std::thread::sleep(Duration::from_millis(50));
    write_lines(&pod, 0, 1);
    let mut first = pod.start("out1.json");
    first.wait_for(20, "the first line", |ev| counts(ev).contains_key(&line(0)));
    stop_after_flush(&mut first);
    // kubelet gzips the history file now: the `.gz` is new, its lines are not.
    write_lines(&pod, 1, 2);
    pod.kubelet_rotate();
    write_lines(&pod, 2, 3);
    let second = pod.start("out2.json");
    second.wait_for(20, "the lines after the restart", |ev| {
        let c = counts(ev);
        c.contains_key(&line(1)) && c.contains_key(&line(2))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_each_once(&all_of(&[&first, &second]), 0..3);
}
