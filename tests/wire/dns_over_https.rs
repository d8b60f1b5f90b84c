//! DNS over HTTPS in the clear (RFC 8484) between curl and a hypercorn DoH server, over HTTP/2
//! with prior knowledge and over HTTP/1.1, GET (`dns` parameter) and POST
//! (`application/dns-message` body): each exchange is its HTTP event and a `dns` event with the
//! DNS messages it carried, as tshark's DNS dissector reads them from the same capture. Capture
//! made by tests/data/doh/make_doh.sh.

use crate::support;

use serde_json::Value as J;
use std::process::Command;
use support::pcap_run::{data, pcap_events, run_events};

/// `trawl run` on doh.pcap with `protocols` (a YAML flow mapping).
fn run_with_protocols(protocols: &str) -> Vec<J> {
    run_events(&data("doh/doh.pcap"), &format!("protocols: {protocols}"))
}

/// tshark's DNS responses, decoding the server's port as `proto`: (client port, DNS id,
/// question name, A records).
fn tshark_answers(proto: &str) -> Vec<(u64, u64, String, String)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(data("doh/doh.pcap"))
        .args(["-d", &format!("tcp.port==18053,{proto}")])
        .args(["-Y", "dns.flags.response == 1", "-T", "fields"])
        .args(["-e", "tcp.dstport", "-e", "dns.id", "-e", "dns.qry.name"])
        .args(["-e", "dns.a", "-E", "occurrence=f"])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let id = u64::from_str_radix(f.get(1)?.trim_start_matches("0x"), 16).ok()?;
            Some((
                f[0].parse().ok()?,
                id,
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect()
}

fn port(e: &J) -> u64 {
    e["source"]["port"].as_u64().unwrap_or(0)
}

#[test]
fn doh_get_and_post_over_http2_and_http1_are_dns_events_too() {
    // Decoding the port as HTTP/1.1, tshark still finds HTTP/2 by its preface; as HTTP/2,
    // only the HTTP/2 connections: both, once each.
    let mut want = tshark_answers("http");
    want.extend(tshark_answers("http2"));
    want.sort();
    want.dedup();
    assert_eq!(want.len(), 4, "tshark: four DoH exchanges: {want:?}");
    let evs = pcap_events("http,http2", &data("doh/doh.pcap"));
    let dns: Vec<&J> = evs
        .iter()
        .filter(|e| e["event"]["dataset"] == "dns")
        .collect();
    assert_eq!(dns.len(), 4, "one DNS event per DoH exchange: {evs:#?}");
    for (client_port, id, name, a) in &want {
        let d: Vec<&&J> = dns.iter().filter(|e| port(e) == *client_port).collect();
        assert_eq!(d.len(), 1, "port {client_port}: {dns:#?}");
        let d = d[0];
        assert_eq!(d["dns"]["id"], *id, "{d:#}");
        assert_eq!(d["dns"]["type"], "answer", "{d:#}");
        assert_eq!(d["dns"]["question"]["name"], name.as_str(), "{d:#}");
        assert_eq!(d["dns"]["response_code"], "NOERROR", "{d:#}");
        let resolved = d["dns"]["resolved_ip"].as_array().cloned();
        if a.is_empty() {
            assert_eq!(resolved, None, "{d:#}");
        } else {
            assert_eq!(resolved, Some(vec![J::from(a.as_str())]), "{d:#}");
        }
        assert_eq!(d["tags"], serde_json::json!(["dns_over_https"]), "{d:#}");
        assert_eq!(d["network"]["transport"], "tcp");
        assert_eq!(d["destination"]["port"], 18053);
        assert_eq!(d["event"]["outcome"], "success");
        // The HTTP exchange that carried it is reported as well.
        let http: Vec<&J> = evs
            .iter()
            .filter(|e| e["event"]["dataset"] != "dns" && port(e) == *client_port)
            .collect();
        assert_eq!(http.len(), 1, "port {client_port}: {evs:#?}");
        assert_eq!(
            http[0]["http"]["response"]["mime_type"],
            "application/dns-message"
        );
    }
    // The query types asked, from make_doh.sh: two A over each version, one AAAA (no answer).
    let mut names: Vec<(String, String)> = dns
        .iter()
        .map(|d| {
            (
                d["dns"]["question"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                d["dns"]["question"]["type"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("api.example.net", "A"),
            ("mail.example.org", "AAAA"),
            ("www.example.com", "A"),
            ("www.example.com", "A")
        ]
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
    );
    // The GET of / (a 404 in text/plain) carried no DNS: its HTTP/2 event only.
    let other: Vec<&J> = evs.iter().filter(|e| e["url"]["path"] == "/").collect();
    assert_eq!(other.len(), 1, "{evs:#?}");
    assert_eq!(other[0]["http"]["response"]["status_code"], 404);
}

/// HTTP/1.1 and HTTP/2 given the same port (one listener speaking both, as hypercorn here):
/// each connection goes to the protocol its first bytes are, so every exchange is reported
/// (two HTTP/1.1 and three HTTP/2) with its DNS. A user who does not want DoH counted as DNS
/// turns it off per protocol: the HTTP exchanges are all still reported, no `dns` event;
/// turned off for HTTP/1.x only, the two HTTP/2 exchanges still give theirs.
#[test]
fn dns_over_https_false_reports_the_http_exchanges_only() {
    // (dns events, HTTP/1.1 events, HTTP/2 events)
    let count = |evs: &[J]| -> (usize, usize, usize) {
        let n = |f: &dyn Fn(&J) -> bool| evs.iter().filter(|e| f(e)).count();
        (
            n(&|e| e["event"]["dataset"] == "dns"),
            n(&|e| e["event"]["dataset"] == "http" && e["http"]["version"] == "1.1"),
            n(&|e| e["event"]["dataset"] == "http2" && e["http"]["version"] == "2"),
        )
    };
    let on = run_with_protocols("{ http: { ports: [18053] }, http2: { ports: [18053] } }");
    assert_eq!(count(&on), (4, 2, 3), "{on:#?}");
    let off = run_with_protocols(
        "{ http: { ports: [18053], dns_over_https: false }, http2: { ports: [18053], dns_over_https: false } }",
    );
    assert_eq!(count(&off), (0, 2, 3), "{off:#?}");
    let h1_off = run_with_protocols(
        "{ http: { ports: [18053], dns_over_https: false }, http2: { ports: [18053] } }",
    );
    assert_eq!(count(&h1_off), (2, 2, 3), "{h1_off:#?}");
    let dns: Vec<&J> = h1_off
        .iter()
        .filter(|e| e["event"]["dataset"] == "dns")
        .collect();
    let mut names: Vec<&str> = dns
        .iter()
        .map(|d| d["dns"]["question"]["name"].as_str().unwrap_or(""))
        .collect();
    names.sort();
    // make_doh.sh's two HTTP/2 exchanges.
    assert_eq!(names, ["mail.example.org", "www.example.com"], "{dns:#?}");
}
