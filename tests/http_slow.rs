//! Slow servers are one transaction each, whatever their latency up to `transaction_timeout`:
//! a real capture (tests/data/http_slow.pcap, made by the script beside it) of a blocking query
//! answered after 25 s of silence on a keep-alive connection (Consul, etcd and long-polling
//! APIs do this all day) and of a chunked body trickled over 24 s. Split into a request without
//! response and a response without request, the slowest calls would vanish from latency.

use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;

fn capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/http_slow.pcap")
}

fn http_events() -> Vec<J> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", "http"])
        .arg(capture())
        .output()
        .expect("run trawl pcap");
    assert!(
        out.status.success(),
        "trawl pcap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// What tshark, an independent decoder, counts as requests and responses in the capture.
fn tshark_count(filter: &str) -> usize {
    let out = Command::new("tshark")
        .args(["-r"])
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

fn by_target<'a>(events: &'a [J], target: &str) -> &'a J {
    let found: Vec<&J> = events
        .iter()
        .filter(|e| e["url"]["original"] == target)
        .collect();
    assert_eq!(found.len(), 1, "{target} in {events:#?}");
    found[0]
}

fn seconds(e: &J) -> f64 {
    e["event"]["duration"].as_i64().expect("event.duration") as f64 / 1e9
}

#[test]
fn a_slow_answer_is_one_transaction_with_its_latency() {
    let events = http_events();
    // Every transaction whole: none reported without its request or its response.
    for e in &events {
        assert!(e["event"]["reason"].is_null(), "a half transaction: {e:#}");
    }
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(tshark_count("http.request"), 3);
    assert_eq!(tshark_count("http.response"), 3);

    let blocking = by_target(&events, "/v1/kv/config?index=42&wait=30s");
    assert_eq!(blocking["http"]["response"]["status_code"], 200);
    assert_eq!(blocking["http"]["response"]["body"]["bytes"], 33);
    assert_eq!(blocking["event"]["outcome"], "success");
    let wait = seconds(blocking);
    assert!(
        (25.0..26.0).contains(&wait),
        "the server held it 25 s: {wait}"
    );

    // The next request on the same connection is answered at once, and is its own transaction.
    let leader = by_target(&events, "/v1/status/leader");
    assert_eq!(leader["http"]["response"]["status_code"], 204);
    assert_eq!(leader["source"]["port"], blocking["source"]["port"]);
    assert!(seconds(leader) < 1.0);

    // Head at once, six 107-byte chunks 4 s apart: the body without its chunk framing.
    let report = by_target(&events, "/report");
    assert_eq!(report["http"]["response"]["status_code"], 200);
    assert_eq!(report["http"]["response"]["body"]["bytes"], 6 * 107);
    let took = seconds(report);
    assert!((24.0..25.0).contains(&took), "the body took 24 s: {took}");
}
