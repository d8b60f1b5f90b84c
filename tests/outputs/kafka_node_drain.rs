//! A node drained while its Kafka broker is down (a real Apache Kafka, SIGKILLed and not
//! started again until trawl has stopped, `tests/support/kafka/mod.rs`): SIGTERM ends trawl
//! at its `shutdown_timeout` with exit 1, and the next start reads the undelivered lines again
//! from the file input's registry and delivers them once the broker is back: nothing lost.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::kafka::Broker;
use support::process::{
    append, assert_each_once, free_port, metric, numbered_lines, wait_until, Trawl,
};

const WAIT: Duration = Duration::from_secs(120);

fn pipeline(d: &Path, addr: &str, broker: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 5s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{broker}\"]\n    topic: drained\n",
        data = d.join("data").display(),
        app = d.join("app.log").display(),
    );
    let cfg = d.join("pipeline.yaml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The user's day: the broker crashes; while it is down the node is drained (SIGTERM). trawl
/// must not hang past its `shutdown_timeout` (the node's grace period would SIGKILL it), says
/// with exit 1 that lines were left undelivered, and loses none of them: the next start (the
/// broker back) delivers them, with the lines delivered before the crash not sent again.
#[test]
fn sigterm_while_the_broker_is_killed_exits_at_the_timeout_and_the_next_start_delivers_the_rest() {
    let mut broker = Broker::start_persistent();
    broker.create_topic("drained", 1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(d, &addr, &broker.bootstrap);
    let log = d.join("trawl.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let before = numbered_lines("before", 200);
    append(&d.join("app.log"), &before);
    let count = |name: &str| metric(&addr, name, "k").unwrap_or(0.0);
    wait_until(WAIT, "the first lines delivered", || {
        count("trawl_events_out_total") >= 200.0
    });

    broker.kill();
    let held = numbered_lines("held", 300);
    append(&d.join("app.log"), &held);
    wait_until(WAIT, "the held lines handed to the output", || {
        count("trawl_events_in_total") >= 500.0
    });
    let stopping = Instant::now();
    let status = trawl.stop(WAIT);
    let took = stopping.elapsed();
    eprintln!("SIGTERM with the broker down: exit {status} after {took:?} (shutdown_timeout 5s)");
    assert_eq!(
        status.code(),
        Some(1),
        "undelivered lines at the deadline: exit 1: {}",
        read_log()
    );
    // Generous for a loaded CI machine: what matters is that the stop does not wait for the
    // broker (librdkafka retries without limit by default).
    assert!(
        took < Duration::from_secs(40),
        "the stop ends near shutdown_timeout, not when the broker returns: {took:?}"
    );
    assert!(
        read_log().contains("300 events undelivered"),
        "the log says how many lines are left for the next start: {}",
        read_log()
    );
    // And where the next start reads again: the file, from the end of the delivered lines.
    let from = format!(
        "{} from offset {}",
        d.join("app.log").display(),
        before.len()
    );
    assert!(
        read_log().lines().any(|l| l.contains("drain incomplete")
            && l.contains("batches in flight")
            && l.contains(&from)),
        "the exit names the file and offset ({from}): {}",
        read_log()
    );

    broker.start_again();
    let _trawl = Trawl::start(&cfg, Some(&log));
    let want: Vec<String> = before
        .lines()
        .chain(held.lines())
        .map(str::to_owned)
        .collect();
    wait_until(WAIT, "the held lines delivered after the restart", || {
        count("trawl_events_out_total") >= 300.0
    });
    let mut copies: HashMap<String, usize> = HashMap::new();
    for r in broker.read_all("drained") {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
        let m = v["message"].as_str().unwrap_or_default().to_owned();
        *copies.entry(m).or_default() += 1;
    }
    assert_each_once(&copies, &want);
}
