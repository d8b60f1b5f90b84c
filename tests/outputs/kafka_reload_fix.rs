//! A reload that fixes a broken `kafka` output (a wrong port in `brokers`, a typo) against a
//! real Apache Kafka broker (`tests/support/kafka/mod.rs`): the old output cannot deliver, so
//! the reload retires it instead of waiting for it for ever, and the fixed output delivers the
//! lines the old one held (read again from the file, or replayed from its disk buffer) and
//! what follows, each once.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use support::kafka::Broker;
use support::process::{assert_each_once, free_port, metric, reload_fixing_the_output, wait_until};

const WAIT: Duration = Duration::from_secs(120);

fn pipeline(d: &Path, addr: &str, broker: &str, topic: &str, buffer: &str) -> String {
    format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\", health: {{ output_failure_threshold: 1s }} }}\nshutdown_timeout: 2s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{broker}\"]\n    topic: {topic}\n{buffer}    dead_letter: dead\n  dead:\n    type: file\n    path: {dl}\n",
        data = d.join("data").display(),
        app = d.join("app.log").display(),
        dl = d.join("dead.jsonl").display(),
    )
}

/// The user's day: a new pipeline goes out with a typo in the broker's port; nothing arrives,
/// `/health` says so, the user fixes the file and reloads. The reload must take effect (before,
/// it waited for the broken output to deliver what it held, which it never could, and only a
/// restart helped) and every line must be in Kafka once: the held ones too, none dead-lettered.
#[test]
fn a_reload_fixing_a_wrong_broker_delivers_what_the_broken_output_held() {
    fix_a_wrong_broker("reload-fixed-broker", "");
}

/// The same with a disk buffer: the file input's lines were acknowledged once on disk, so the
/// buffer, not the file, holds them: the fixed output replays them from it.
#[test]
fn a_reload_fixing_a_wrong_broker_delivers_what_the_disk_buffer_held() {
    fix_a_wrong_broker("reload-fixed-broker-disk", "    buffer: { type: disk }\n");
}

fn fix_a_wrong_broker(topic: &str, buffer: &str) {
    let broker = Broker::shared();
    broker.create_topic(topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("pipeline.yaml");
    let addr = format!("127.0.0.1:{}", free_port());
    // Nothing listens there: every connection is refused.
    let wrong = format!("127.0.0.1:{}", free_port());
    let (_trawl, want) = reload_fixing_the_output(
        d,
        &cfg,
        &addr,
        (
            &pipeline(d, &addr, &wrong, topic, buffer),
            &pipeline(d, &addr, &broker.bootstrap, topic, buffer),
        ),
        WAIT,
    );
    let copies = || {
        let mut copies: HashMap<String, usize> = HashMap::new();
        for r in broker.read_all(topic) {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
            let m = v["message"].as_str().unwrap_or_default().to_owned();
            *copies.entry(m).or_default() += 1;
        }
        copies
    };
    wait_until(WAIT, "every line delivered", || {
        metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) >= want.len() as f64
    });
    assert_each_once(&copies(), &want);
    assert!(
        std::fs::read_to_string(d.join("dead.jsonl"))
            .unwrap_or_default()
            .is_empty(),
        "nothing dead-lettered"
    );
}
