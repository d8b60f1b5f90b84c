//! The `pcap_file` input in a real pipeline: `trawl run` reads the capture, reports flows and
//! transactions through the pipeline's output, and exits on its own after draining; and
//! `trawl pcap -c` feeds a capture to a pipeline's processors and outputs.

use std::path::PathBuf;
use std::process::Command;

fn capture() -> PathBuf {
    let candidates = [
        std::env::var_os("TRAWL_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    let root = candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("data/pcaps/suricata-verify").is_dir())
        .expect("shared/ not found: set TRAWL_SHARED_DIR");
    root.join("data/pcaps/suricata-verify/bug-130/input.pcap")
}

#[test]
fn trawl_run_with_pcap_file_exits_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  cap:\n    type: pcap_file\n    path: {}\n    http: {{ ports: [80], send_headers: [\"*\"], include_body_for: [text/html], max_body_bytes: 100 }}\n    flows: {{ period: -1s }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            capture().display(),
            dir.path().display()
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
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let http: Vec<_> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "http")
        .collect();
    let flows: Vec<_> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "flow")
        .collect();
    assert_eq!(http.len(), 1);
    assert_eq!(flows.len(), 1, "period: -1s gives the final report only");
    let t = http[0];
    assert_eq!(t["http"]["response"]["status_code"], 401);
    assert_eq!(t["url"]["domain"], "www.abcdefghij.com");
    assert_eq!(
        t["http"]["request"]["headers"]["host"],
        "www.abcdefghij.com"
    );
    assert_eq!(t["client"]["ip"], "10.100.0.8");
    assert_eq!(t["event"]["outcome"], "failure");
    assert_eq!(t["http"]["response"]["body"]["bytes"], 1483);
    assert_eq!(
        t["http"]["response"]["body"]["content"]
            .as_str()
            .map(str::len),
        Some(100),
        "body kept up to max_body_bytes"
    );
    assert!(t["event"]["duration"].as_i64().unwrap() > 0);
    assert_eq!(flows[0]["flow"]["final"], true);
    assert_eq!(
        flows[0]["network"]["community_id"],
        t["network"]["community_id"]
    );
}

#[test]
fn trawl_pcap_with_a_pipeline_runs_its_processors_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, format!("inputs: {{}}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n", dir.path().display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .arg(capture())
        .arg("-c")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("\"dataset\":\"http\"")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("\"dataset\":\"flow\"")));
}

#[test]
fn capture_settings_in_a_pcap_file_are_rejected_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, "inputs:\n  cap:\n    type: pcap_file\n    path: x.pcap\n    http: { capture: { interfaces: [lo] } }\noutputs:\n  out: { type: stdout }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // A protocol section has no `capture` key (live inputs set it beside their sections):
    // refused at the key, with its line, column and key path.
    assert!(
        err.contains("p.yaml:5:13: inputs.cap.http.capture: unknown field `capture`"),
        "{err}"
    );
}
