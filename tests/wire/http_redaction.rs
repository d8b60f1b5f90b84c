//! Credentials seen on the wire do not leave trawl: API-key and token headers are redacted even
//! with `send_headers: ["*"]`, and token, key and signature parameters are redacted in
//! `url.query` and `url.original`, while the rest of the request stays as sent. The capture is
//! written here packet by packet, and tshark confirms the secrets are really in it.

use std::path::Path;
use std::process::Command;

const SECRET: &str = "s3cr3t-7f9a";

/// One Ethernet/IPv4/TCP packet (checksums left zero: neither trawl nor tshark checks them).
fn packet(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    p.extend_from_slice(&src.0);
    p.extend_from_slice(&dst.0);
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A classic pcap file holding one HTTP exchange on a fresh connection.
fn write_capture(path: &Path, request: &str, response: &str) {
    let c = ([10, 0, 0, 1], 41000);
    let s = ([10, 0, 0, 2], 80);
    let (syn, ack_, psh) = (0x02, 0x10, 0x18);
    let (ci, si) = (1000u32, 5000u32);
    let req = request.as_bytes();
    let resp = response.as_bytes();
    let packets = [
        packet(c, s, ci, 0, syn, b""),
        packet(s, c, si, ci + 1, syn | ack_, b""),
        packet(c, s, ci + 1, si + 1, ack_, b""),
        packet(c, s, ci + 1, si + 1, psh, req),
        packet(s, c, si + 1, ci + 1 + req.len() as u32, psh, resp),
        packet(
            c,
            s,
            ci + 1 + req.len() as u32,
            si + 1 + resp.len() as u32,
            ack_,
            b"",
        ),
    ];
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

fn run_pipeline(dir: &Path, http: &str) -> Vec<serde_json::Value> {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  cap:\n    type: pcap_file\n    path: {}\n    http: {{ ports: [80]{http} }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            dir.join("c.pcap").display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"]["dataset"] == "http")
        .collect()
}

fn capture_with_secrets(dir: &Path) {
    let request = format!(
        "GET /v1/items?page=2&access_token={SECRET}&X-Amz-Signature={SECRET}&sort=asc HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: {SECRET}\r\nX-Auth-Token: {SECRET}\r\nAccept: */*\r\n\r\n"
    );
    let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    write_capture(&dir.join("c.pcap"), &request, response);
    // The oracle: the secret really is on the wire, in the URI tshark decodes.
    let tshark = Command::new("tshark")
        .args(["-r"])
        .arg(dir.join("c.pcap"))
        .args([
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.request.uri",
        ])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    let uri = String::from_utf8_lossy(&tshark.stdout);
    assert!(
        uri.contains(&format!("access_token={SECRET}")),
        "tshark saw: {uri}"
    );
}

#[test]
fn tokens_in_headers_and_query_strings_are_redacted_by_default() {
    let dir = tempfile::tempdir().unwrap();
    capture_with_secrets(dir.path());
    let events = run_pipeline(dir.path(), ", send_headers: [\"*\"]");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    let text = e.to_string();
    assert!(!text.contains(SECRET), "a secret left trawl: {text}");
    assert_eq!(
        e["url"]["query"],
        "page=2&access_token=REDACTED&X-Amz-Signature=REDACTED&sort=asc"
    );
    assert_eq!(
        e["url"]["original"],
        "/v1/items?page=2&access_token=REDACTED&X-Amz-Signature=REDACTED&sort=asc"
    );
    assert_eq!(e["url"]["path"], "/v1/items");
    let headers = &e["http"]["request"]["headers"];
    assert_eq!(headers["x-api-key"], "REDACTED");
    assert_eq!(headers["x-auth-token"], "REDACTED");
    assert_eq!(headers["accept"], "*/*");
    assert_eq!(e["http"]["response"]["status_code"], 200);
}

#[test]
fn the_redaction_lists_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    capture_with_secrets(dir.path());
    // Emptied lists ship what was sent; a custom name is redacted.
    let events = run_pipeline(
        dir.path(),
        ", send_headers: [\"*\"], redact_headers: [], redact_query_params: [page]",
    );
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        e["url"]["query"],
        format!("page=REDACTED&access_token={SECRET}&X-Amz-Signature={SECRET}&sort=asc")
    );
    assert_eq!(e["http"]["request"]["headers"]["x-api-key"], SECRET);
}
