//! A cleartext HTTP/2 connection with prior knowledge (RFC 9113 section 3.3) while HTTP/1.x is
//! followed on every port too (`--only http,http2`, as a pipeline with both protocols): the
//! connection is HTTP/2 from its preface on, whatever claimed it at its SYN. Capture made by
//! tests/data/http2/make_prior_knowledge.py; tshark dissects the same file as the oracle.

use crate::support;

use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;
use support::pcap_run::{data, pcap_events};

/// The client speaks first, then the server; and the server's SETTINGS first.
const CAPTURES: [&str; 2] = ["h2_prior_knowledge.pcap", "h2_server_settings_first.pcap"];

fn capture(name: &str) -> PathBuf {
    data(&format!("http2/{name}"))
}

fn events(name: &str, only: &str) -> Vec<J> {
    pcap_events(only, &capture(name))
}

/// tshark's requests and responses on the connection: (method, path) and status lines.
fn tshark(name: &str, field: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture(name))
        .args(["-d", "tcp.port==8080,http2", "-T", "fields", "-e", field])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn prior_knowledge_http2_is_http2_when_http1_follows_every_port() {
    for name in CAPTURES {
        let methods = tshark(name, "http2.headers.method");
        let statuses = tshark(name, "http2.headers.status");
        assert_eq!(
            (methods.len(), statuses.len()),
            (1, 1),
            "{name}: tshark's view"
        );
        for only in ["http2", "http,http2"] {
            let evs = events(name, only);
            assert_eq!(evs.len(), 1, "{name} --only {only}: one exchange: {evs:#?}");
            let e = &evs[0];
            assert_eq!(
                e["event"]["dataset"], "http2",
                "{name} --only {only}: {e:#}"
            );
            assert_eq!(e["http"]["request"]["method"], methods[0].as_str());
            assert_eq!(
                e["http"]["response"]["status_code"].to_string(),
                statuses[0],
                "{name} --only {only}"
            );
            assert_eq!(e["url"]["original"], "/");
            assert_eq!(e["http"]["response"]["body"]["bytes"], 14);
        }
    }
}
