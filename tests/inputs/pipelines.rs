//! Every ready-to-use pipeline file in `pipelines/` (and the embedded default) passes
//! `trawl validate`, with the environment a deployment would give it.

use std::path::{Path, PathBuf};
use std::process::Command;

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_pipeline_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("pipelines"), &mut files);
    files.push(root.join("conf/default.yaml"));
    let mut failures = Vec::new();
    for f in &files {
        // Pipelines under pipelines/tee/ are for `trawl tee -c`: their input is the child.
        let tee = f.components().any(|c| c.as_os_str() == "tee");
        let out = Command::new(TRAWL)
            .args(["validate", "-c"])
            .arg(f)
            .args(if tee { &["--tee"][..] } else { &[][..] })
            .env("ELASTICSEARCH_HOST", "es.example")
            .env("ELASTICSEARCH_PORT", "9200")
            .env("ELASTICSEARCH_USERNAME", "elastic")
            .env("ELASTICSEARCH_PASSWORD", "secret")
            .env("TRAWL_HTTP_TOKEN", "token")
            .env("KAFKA_BROKERS", "127.0.0.1:9092")
            .env("NODE_NAME", "node-1")
            .env("POD_NAME", "web-1")
            .env("POD_NAMESPACE", "prod")
            .env("POD_IP", "10.0.0.5")
            .env("PCAP", "capture.pcap")
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}:\n{}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
