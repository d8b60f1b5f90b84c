//! A SIGTERM while Kafka is unreachable and the file input's batches are being given up: during
//! the drain trawl reads those batches again and delivers them if Kafka comes back before the
//! shutdown deadline (exit 0, every line once); if it does not, the lines stay before the
//! registry offset (read again at the next start) and the stop says so with a non-zero exit
//! status, never 0: a clean stop means every line read was delivered, so that a supervisor (and
//! the fault campaign) can tell the two apart. Neither is a failure of the input on `/health`.

use crate::support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::kafka::Broker;
use support::process::{free_port, http_get, wait_until, write_file, Trawl};

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
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 8s\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    poll_interval: 100ms\n    registry_flush: 100ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n    delivery_timeout: 2s\n",
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
    // Stopped while the failed lines wait to be read again: read again through the drain, they
    // cannot be delivered before its deadline.
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
    assert!(
        text.contains("drain incomplete: input logs:") && !text.contains("failed: input logs"),
        "said as the stop's own state, not as a failure of the input; log:\n{text}"
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

#[test]
fn batches_given_up_before_the_stop_are_delivered_during_the_drain_when_kafka_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let broker = Broker::start();
    let topic = "drain_redelivered";
    broker.create_topic(topic, 1);
    let addr = format!("127.0.0.1:{}", free_port());
    // One batch holds the 300 lines written during the outage: each reading of them again is
    // one batch whose messages all fail together, so no copy of an earlier reading is still
    // queued in the producer when Kafka comes back, and every line is stored exactly once.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 60s\npipeline: {{ batch_size: 1000 }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    poll_interval: 100ms\n    registry_flush: 100ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n    delivery_timeout: 2s\n",
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
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    wait_until(Duration::from_secs(30), "the drain to start", || {
        log_has(&log1, "shutting down: stopping inputs and draining")
    });
    // Kafka is still away for a while of the drain: the failed lines are read again and fail
    // again meanwhile; the input is not failed for that.
    for _ in 0..6 {
        if let Some((_, body)) = http_get(&addr, "/health") {
            assert!(
                !body.contains("input logs"),
                "/health names the input as failed while it drains: {body}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.restore();
    let status = trawl.wait(Duration::from_secs(120));
    let text = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(
        status.success(),
        "Kafka came back within the shutdown deadline, yet the stop exited {status}; log:\n{text}"
    );
    let m = stored(&broker, topic);
    let missing: Vec<&String> = during.iter().filter(|l| !m.contains_key(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} of the 300 lines given up before the stop were not delivered by the drain (first: {:?}); log:\n{text}",
        missing.len(),
        missing.first()
    );
    let twice: Vec<&String> = before.iter().chain(&during).filter(|l| m[*l] > 1).collect();
    assert!(
        twice.is_empty(),
        "{} lines stored more than once (first: {:?})",
        twice.len(),
        twice.first()
    );
    // Exit 0 said the registry holds the end of what was read: the next start sends only what
    // is new.
    let log2 = dir.path().join("trawl-2.log");
    let mut trawl = Trawl::start(&config, Some(&log2));
    let after = lines("after", 1);
    append(&app, &after);
    wait_until(
        Duration::from_secs(90),
        "the line written after the restart",
        || stored(&broker, topic).contains_key(&after[0]),
    );
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    assert!(trawl.wait(Duration::from_secs(120)).success());
    let m = stored(&broker, topic);
    let again = before.iter().chain(&during).filter(|l| m[*l] > 1).count();
    assert_eq!(
        again, 0,
        "{again} lines sent again by the next start: the drain's deliveries did not reach the registry"
    );
}

/// A reload that replaces the file input (its settings changed) while Kafka is unreachable and
/// batches are being given up: the old input does not hold the reload until Kafka comes back
/// (only a stop of trawl reads failed batches again in its drain); its registry stays before the
/// failed lines, and the input that replaces it delivers them once Kafka is back.
#[test]
fn a_reload_does_not_wait_for_given_up_batches_and_the_new_input_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let broker = Broker::start();
    let topic = "drain_reload";
    broker.create_topic(topic, 1);
    let config_text = |poll: &str| {
        format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    poll_interval: {poll}\n    registry_flush: 100ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n    delivery_timeout: 2s\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            bootstrap = broker.bootstrap,
        )
    };
    let config = write_file(dir.path(), "pipeline.yaml", &config_text("100ms"));
    let app = logs.join("app.log");
    let before = lines("before", 100);
    append(&app, &before);
    let log = dir.path().join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(
        Duration::from_secs(90),
        "the first 100 lines in Kafka",
        || {
            let m = stored(&broker, topic);
            before.iter().all(|l| m.contains_key(l))
        },
    );
    broker.cut();
    let during = lines("during", 200);
    append(&app, &during);
    wait_until(
        Duration::from_secs(90),
        "a batch given up by the Kafka output (delivery_timeout 2s)",
        || log_has(&log, "an output failed a batch read from this file"),
    );
    write_file(dir.path(), "pipeline.yaml", &config_text("150ms"));
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGHUP) };
    wait_until(
        Duration::from_secs(60),
        "the reload to finish while Kafka is still unreachable",
        || log_has(&log, "reloaded:"),
    );
    broker.restore();
    wait_until(
        Duration::from_secs(90),
        "the 200 lines given up before the reload, delivered by the new input",
        || {
            let m = stored(&broker, topic);
            during.iter().all(|l| m.contains_key(l))
        },
    );
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGTERM) };
    let status = trawl.wait(Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}; log:\n{text}");
    assert!(
        !text.contains("failed: input logs"),
        "the reload left the input marked failed; log:\n{text}"
    );
}
