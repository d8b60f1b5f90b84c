//! TLS 1.2 resumption as the handshake's messages tell it, on tests/data/tls_resumed.pcap
//! (tests/data/tls_resumed.py, written from RFC 5246 7.3): a full handshake whose server sends
//! its ChangeCipherSpec before the client's is not resumed (the server's Certificate and
//! ServerHelloDone say it is figure 1's handshake); an abbreviated one (the ServerHello echoes
//! the client's session id, the server finishes first) is. tshark's `tls.resumed` is the
//! second oracle.

use crate::support::pcap_run::pcap_events;
use serde_json::Value as J;
use std::path::Path;
use std::process::Command;

const PCAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls_resumed.pcap");

fn tls_events() -> Vec<J> {
    pcap_events("tls", Path::new(PCAP))
}

/// The client ports of the connections tshark takes for resumed sessions.
fn tshark_resumed() -> Vec<u64> {
    let out = Command::new("tshark")
        .args([
            "-r",
            PCAP,
            "-Y",
            "tls.resumed",
            "-T",
            "fields",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark on {PCAP}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("a port"))
        .collect()
}

#[test]
fn a_server_finishing_first_after_its_certificate_is_no_resumption() {
    let events = tls_events();
    assert_eq!(events.len(), 2, "{events:?}");
    let by_port = |p: u64| {
        events
            .iter()
            .find(|e| e["source"]["port"] == p)
            .unwrap_or_else(|| panic!("a handshake from port {p}: {events:?}"))
    };
    assert_eq!(tshark_resumed(), [40002]);

    let full = &by_port(40001)["tls"];
    assert_eq!(full["cipher"], "TLS_RSA_WITH_RC4_128_MD5");
    assert_eq!(full["server"]["subject"], "CN=late.example");
    assert_eq!(full["resumed"], false, "{full}");
    assert_eq!(full["established"], false, "{full}");

    let abbreviated = &by_port(40002)["tls"];
    assert_eq!(abbreviated["cipher"], "TLS_RSA_WITH_AES_128_CBC_SHA");
    assert_eq!(abbreviated["resumed"], true, "{abbreviated}");
    assert_eq!(abbreviated["established"], true, "{abbreviated}");
}
