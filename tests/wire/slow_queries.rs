//! Slow database queries on a real capture (tests/data/db_slow.pcap, made by
//! tests/data/db_slow.py against real PostgreSQL and MariaDB servers): a 40 s report query and a
//! quick one after it on the same connection, on each, and 35 s in another query on a connection
//! of its own. Each query is one transaction with its
//! latency, not a request reported unanswered and a response reported without its request;
//! tshark counts the same queries and answers.

use crate::support;

use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;
use support::pcap_run::{data, pcap_events};

fn capture() -> PathBuf {
    data("db_slow.pcap")
}

fn events(dataset: &str) -> Vec<J> {
    pcap_events(dataset, &capture())
        .into_iter()
        .filter(|e: &J| e["event"]["dataset"] == dataset)
        .collect()
}

fn tshark_count(filter: &str) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture())
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn seconds(e: &J) -> f64 {
    e["event"]["duration"].as_i64().expect("event.duration") as f64 / 1e9
}

/// The report query took 40 s and the one after it was answered at once, on one connection; the
/// one meanwhile on another.
fn check(dataset: &str, events: &[J]) {
    for e in events {
        assert!(e["event"]["reason"].is_null(), "a half transaction: {e:#}");
    }
    assert_eq!(events.len(), 3, "{dataset}: {events:#?}");
    let by = |needle: &str| {
        events
            .iter()
            .find(|e| {
                e["db"]["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains(needle))
            })
            .unwrap_or_else(|| panic!("{dataset}: no statement with {needle}: {events:#?}"))
    };
    let report = by("monthly_report");
    let after = by("after_report");
    assert_eq!(report["event"]["outcome"], "success", "{report:#}");
    assert_eq!(after["event"]["outcome"], "success", "{after:#}");
    let took = seconds(report);
    assert!(
        (40.0..41.0).contains(&took),
        "{dataset}: the query ran 40 s: {took}"
    );
    assert!(seconds(after) < 1.0, "{after:#}");
    assert_eq!(report["source"]["port"], after["source"]["port"]);
    let meanwhile = by("meanwhile");
    assert_eq!(meanwhile["event"]["outcome"], "success", "{meanwhile:#}");
    assert_ne!(meanwhile["source"]["port"], report["source"]["port"]);
}

#[test]
fn a_slow_postgresql_query_is_one_transaction_with_its_latency() {
    check("pgsql", &events("pgsql"));
    assert_eq!(tshark_count("pgsql.type == \"Simple query\""), 3);
    assert_eq!(tshark_count("pgsql.type == \"Command completion\""), 3);
}

#[test]
fn a_slow_mysql_query_is_one_transaction_with_its_latency() {
    check("mysql", &events("mysql"));
    assert_eq!(tshark_count("mysql.command == 3"), 3);
}
