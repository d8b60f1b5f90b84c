//! A SIGTERM while Kafka is unreachable and the file input's batches are being given up: the
//! lines trawl could not deliver stay before its registry offset (read again at the next start)
//! and the stop says so with a non-zero exit status, never 0: a clean stop means every line read
//! was delivered, so that a supervisor (and the fault campaign) can tell the two apart.

mod support {
    pub mod kafka;
    pub mod process;
}

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::kafka::Broker;
use support::process::{wait_until, write_file, Trawl};

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
}

fn lines(what: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{what} line {i:04}")).collect()
}

/// How many messages of the topic hold each line.
fn stored(broker: &Broker, topic: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in broker.read_all(topic) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
        if let Some(text) = v["message"].as_str() {
            *m.entry(text.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
}

#[test]
fn a_sigterm_that_could_not_deliver_exits_non_zero_and_the_next_start_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let broker = Broker::start();
    let topic = "drain_incomplete";
    broker.create_topic(topic, 1);
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    poll_interval: 100ms\n    registry_flush: 100ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n    delivery_timeout: 2s\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            bootstrap = broker.bootstrap,
        ),
    );
    let app = logs.join("app.log");
    let before = lines("before", 200);
    append(&app, &before);
    let log1 = dir.path().join("trawl-1.log");
    let mut trawl = Trawl::start(&config, Some(&log1));
    wait_until(
        Duration::from_secs(90),
        "the first 200 lines in Kafka",
        || {
            let m = stored(&broker, topic);
            before.iter().all(|l| m.contains_key(l))
        },
    );
    broker.cut();
    let during = lines("during", 300);
    append(&app, &during);
    wait_until(
        Duration::from_secs(90),
        "a batch given up by the Kafka output (delivery_timeout 2s)",
        || log_has(&log1, "an output failed a batch read from this file"),
    );
    // Stopped while the failed lines wait to be read again: they cannot be delivered now.
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    let status = trawl.wait(Duration::from_secs(120));
    let text = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(
        !status.success(),
        "trawl exited 0 after a SIGTERM that left 300 lines undelivered (a clean stop must mean all was delivered); its log ends:\n{}",
        text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        text.matches("were read and not delivered").count(),
        1,
        "the incomplete drain is logged once, saying what is left; log:\n{text}"
    );
    broker.restore();
    let log2 = dir.path().join("trawl-2.log");
    let mut trawl = Trawl::start(&config, Some(&log2));
    wait_until(
        Duration::from_secs(90),
        "the 300 lines written while Kafka was unreachable delivered by the next start",
        || {
            let m = stored(&broker, topic);
            during.iter().all(|l| m.contains_key(l))
        },
    );
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    let status = trawl.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "a stop after everything was delivered: exit {status}"
    );
    let m = stored(&broker, topic);
    let again = before.iter().filter(|l| m[*l] > 1).count();
    assert_eq!(
        again, 0,
        "{again} lines acknowledged before the outage were sent again: the registry lost them"
    );
}
