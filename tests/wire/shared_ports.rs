//! One port given to two protocols: PostgreSQL on a port also listed for TLS (the README's
//! STARTTLS advice) keeps its queries, and a connection upgraded by an SSLRequest answered `S`
//! gives its handshake to TLS. The events with both sections are those of each alone.
//! Capture: tests/data/pgsql/workload.pcap (a real PostgreSQL server, one connection with TLS).

use crate::support;

use serde_json::Value as J;
use support::pcap_run::{data, pcap_events, run_events};
use support::tcp_pcap::{pcap_of, Conn, ACK, FIN, PSH, SYN};

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

/// One TCP connection as a pcap: handshake from `cport` to `sport`, the client's `ask`, the
/// server's `answer`, and the close.
fn one_connection(cport: u16, sport: u16, ask: &[u8], answer: &[u8]) -> Vec<u8> {
    let conn = Conn {
        client_port: cport,
        server_port: sport,
    };
    let frame =
        |client, seq, ack, flags, payload: &[u8]| conn.frame(client, seq, ack, flags, payload);
    let (syn, ack, psh, fin) = (SYN, ACK, PSH, FIN);
    let (c, s) = (1001u32, 5001u32);
    let (ca, sa) = (c + ask.len() as u32, s + answer.len() as u32);
    let frames = [
        frame(true, c - 1, 0, syn, b""),
        frame(false, s - 1, c, syn | ack, b""),
        frame(true, c, s, ack, b""),
        frame(true, c, s, ack | psh, ask),
        frame(false, s, ca, ack | psh, answer),
        frame(true, ca, sa, fin | ack, b""),
        frame(false, sa, ca + 1, fin | ack, b""),
        frame(true, ca + 1, sa + 1, ack, b""),
    ];
    pcap_of(&frames)
}

/// A protocol's port is the server's: a client whose ephemeral port happens to be another
/// protocol's (NAT and Windows pick from ranges that hold 5432, 6379, 3306 and more) talks
/// the server's protocol. An HTTP request from port 6379 was lost to Redis (two false Redis
/// events), from 5432 and 443 lost altogether.
#[test]
fn a_client_port_that_is_another_protocols_port_does_not_take_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let only = "http,pgsql,redis,tls,mysql";
    let http = (
        b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".as_slice(),
    );
    for cport in [5432u16, 6379, 443, 3306, 40000] {
        let path = dir.path().join(format!("http-from-{cport}.pcap"));
        std::fs::write(&path, one_connection(cport, 80, http.0, http.1)).unwrap();
        let evs = pcap_events(only, &path);
        let kinds: Vec<&str> = evs
            .iter()
            .filter_map(|e| e["event"]["dataset"].as_str())
            .collect();
        assert_eq!(kinds, ["http"], "client port {cport}: {evs:#?}");
        assert_eq!(evs[0]["url"]["original"], "/x");
        assert_eq!(evs[0]["http"]["response"]["status_code"], 200);
    }
    // And the other way round: Redis on its port, asked from port 80.
    let path = dir.path().join("redis-from-80.pcap");
    std::fs::write(
        &path,
        one_connection(80, 6379, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
    )
    .unwrap();
    let evs = pcap_events(only, &path);
    let kinds: Vec<&str> = evs
        .iter()
        .filter_map(|e| e["event"]["dataset"].as_str())
        .collect();
    assert_eq!(kinds, ["redis"], "{evs:#?}");
}
