//! A reload that changes a `kafka` output while its broker is unreachable (a real Apache Kafka
//! behind a proxy the test cuts, `tests/support/kafka/mod.rs`): the old output keeps what it holds,
//! the reload waits for it, and once the broker is back the old producer delivers its lines,
//! then the new one takes over: every line in Kafka once, what the old one held sent by it.

use crate::support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::kafka::Broker;
use support::process::{free_port, http_get, metric, reloads, wait_until, KillOnDrop};

const WAIT: Duration = Duration::from_secs(120);

fn append(path: &Path, prefix: &str, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = (0..n).map(|i| format!("{prefix} {i}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_kafka_output_changed_while_its_broker_is_unreachable_delivers_what_it_held_first() {
    let broker = Broker::start();
    let topic = "reloaded";
    broker.create_topic(topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, cfg) = (d.join("app.log"), d.join("pipeline.yaml"));
    let addr = format!("127.0.0.1:{}", free_port());
    // The output's `headers` differ between the two files: each record names the output
    // instance that produced it.
    let pipeline = |via: &str| {
        format!(
            "data_dir: {}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 60s\ninputs:\n  app:\n    type: file\n    paths: [\"{}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{}\"]\n    topic: {topic}\n    headers: {{ via: {via} }}\n",
            d.join("data").display(),
            app.display(),
            broker.bootstrap
        )
    };
    std::fs::write(&cfg, pipeline("old")).unwrap();
    let log = d.join("trawl.log");
    let trawl = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting trawl"),
    );
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    let count = |name: &str, component: &str| metric(&addr, name, component).unwrap_or(0.0);
    wait_until(WAIT, "the monitoring endpoint", || {
        http_get(&addr, "/health").is_some()
    });

    append(&app, "first", 100);
    wait_until(WAIT, "the first 100 lines delivered", || {
        count("trawl_events_out_total", "k") >= 100.0
    });

    // Read by trawl and handed to the old output, which cannot deliver them.
    broker.cut();
    append(&app, "held", 100);
    wait_until(WAIT, "the held lines handed to the output", || {
        count("trawl_events_in_total", "k") >= 200.0
    });
    std::fs::write(&cfg, pipeline("new")).unwrap();
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    let sent = unsafe { libc::kill(trawl.0.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0, "sending SIGHUP");
    append(&app, "after", 100);
    wait_until(WAIT, "the reload to start", || {
        log().contains("reloading the pipeline")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        reloads(&addr, "success"),
        0,
        "the reload waits while the old output holds undelivered lines: {}",
        log()
    );

    broker.restore();
    wait_until(WAIT, "the reload to end", || reloads(&addr, "success") == 1);
    append(&app, "later", 100);
    wait_until(WAIT, "every line delivered", || {
        count("trawl_events_out_total", "k") >= 400.0
    });
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    for r in broker.read_all(topic) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
        let message = v["message"].as_str().unwrap_or_default().to_owned();
        let via = r
            .headers
            .iter()
            .find(|(k, _)| k == "via")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let e = seen.entry(message).or_insert((0, via));
        e.0 += 1;
    }
    // Lines read between the signal and the router's switch go to the old output, after it to
    // the new one: either is right for `after`.
    for (prefix, via) in [
        ("first", Some("old")),
        ("held", Some("old")),
        ("after", None),
        ("later", Some("new")),
    ] {
        for i in 0..100 {
            let message = format!("{prefix} {i}");
            match seen.get(&message) {
                Some((1, v)) => {
                    if let Some(via) = via {
                        assert_eq!(v, via, "{message} sent by the {v} output");
                    }
                }
                Some((n, _)) => panic!("{message} in Kafka {n} times: {}", log()),
                None => panic!("{message} lost: {}", log()),
            }
        }
    }
    assert_eq!(seen.len(), 400, "nothing else in the topic");
}
