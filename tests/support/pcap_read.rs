//! A capture file read back by the real trawl binary through a pipeline (`trawl run` with a
//! `pcap_file` input and a stdout output), as the protocol tests compare it with the server's
//! own record. Tests declare `mod support { pub mod pcap_read; }`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// trawl's stdout for `pcap` read by a `pcap_file` input with `keys` beside `path` (a YAML flow
/// map's entries, such as `protocols: { mysql: { ports: [3306] } }`); `dir` holds the pipeline
/// and the data directory. Fails the test when trawl does not exit 0.
pub fn events_of(pcap: &Path, keys: &str, dir: &Path) -> String {
    let pipeline = dir.join("pcap_read.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  cap: {{ type: pcap_file, path: \"{}\", {keys} }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            pcap.display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trawl reading {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
