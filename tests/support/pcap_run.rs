//! `trawl pcap` run on a capture file, its JSON lines read back: the one runner of the tests
//! that compare trawl's report of a capture with the script that made it or with tshark.
//! Tests declare `mod support { pub mod pcap_run; }`.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A capture under `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The events of `trawl pcap --only ONLY PCAP`, one per stdout line. Fails the test when
/// trawl does not exit 0 (with its stderr) or prints a line that is not JSON.
pub fn pcap_events(only: &str, pcap: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", only])
        .arg(pcap)
        .output()
        .expect("run trawl pcap");
    json_lines(out, &format!("trawl pcap --only {only} {}", pcap.display()))
}

/// The JSON lines trawl printed; fails the test, naming `what` ran, when it did not exit 0
/// (with its stderr) or printed a line that is not JSON.
pub fn json_lines(out: std::process::Output, what: &str) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line {l:?}: {e}")))
        .collect()
}

/// The events of `trawl run` on `pcap` as a `pcap_file` input with `keys` (one line of YAML,
/// e.g. `protocols: { http: {...} }`) beside `path`, written to stdout. Fails the test when
/// trawl does not exit 0 (with its stderr) or prints a line that is not JSON.
pub fn run_events(pcap: &Path, keys: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "inputs:\n  cap:\n    type: pcap_file\n    path: {}\n    {keys}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            pcap.display(),
            dir.path().display()
        ),
    )
    .expect("write pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&cfg)
        .output()
        .expect("run trawl run");
    json_lines(out, &format!("trawl run on {} with {keys}", pcap.display()))
}
