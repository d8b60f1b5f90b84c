//! One port given to two protocols: PostgreSQL on a port also listed for TLS (the README's
//! STARTTLS advice) keeps its queries, and a connection upgraded by an SSLRequest answered `S`
//! gives its handshake to TLS. The events with both sections are those of each alone.
//! Capture: tests/data/pgsql/workload.pcap (a real PostgreSQL server, one connection with TLS).

use crate::support;

use serde_json::Value as J;
use support::pcap_run::{data, run_events};

/// `trawl run` on workload.pcap as a `pcap_file` input with `protocols`, its events without
/// the times of the run.
fn events(protocols: &str) -> Vec<J> {
    let mut evs = run_events(
        &data("pgsql/workload.pcap"),
        &format!("protocols: {protocols}"),
    );
    for e in &mut evs {
        if let Some(o) = e.as_object_mut() {
            o.remove("@timestamp");
        }
        if let Some(o) = e["event"].as_object_mut() {
            o.remove("ingested");
        }
    }
    evs.sort_by_key(|e| e.to_string());
    evs
}

fn of<'a>(evs: &'a [J], dataset: &str) -> Vec<&'a J> {
    evs.iter()
        .filter(|e| e["event"]["dataset"] == dataset)
        .collect()
}

#[test]
fn a_port_for_pgsql_and_tls_gives_each_its_connections() {
    // The server's port in workload.py's capture.
    let pg_alone = events("{ pgsql: { ports: [43469] } }");
    let tls_alone = events("{ tls: { ports: [43469] } }");
    let both = events("{ tls: { ports: [43469] }, pgsql: { ports: [43469] } }");
    assert!(of(&pg_alone, "pgsql").len() > 20, "{pg_alone:#?}");
    assert_eq!(of(&tls_alone, "tls").len(), 1, "{tls_alone:#?}");
    // Every statement as with pgsql alone (was: none, TLS took every connection of the port).
    assert_eq!(of(&both, "pgsql"), of(&pg_alone, "pgsql"));
    // The upgraded connection's handshake as with tls alone, but for the bytes: TLS's count
    // starts at the ClientHello, after the 8-byte SSLRequest and the 1-byte `S`.
    let (t, alone) = (of(&both, "tls"), of(&tls_alone, "tls"));
    assert_eq!(t.len(), 1, "{both:#?}");
    let mut t = t[0].clone();
    assert_eq!(
        t["network"]["bytes"].as_u64().map(|b| b + 9),
        alone[0]["network"]["bytes"].as_u64()
    );
    t["network"]["bytes"] = alone[0]["network"]["bytes"].clone();
    assert_eq!(&t, alone[0]);
    assert_eq!(both.len(), of(&both, "pgsql").len() + 1);
}
