//! `/metrics` of a real trawl with several packet inputs (two live captures on `lo`, one
//! capture file) and a file input must pass `promtool check metrics` (Prometheus' own linter,
//! Debian package `prometheus`): one HELP and TYPE per family, inputs told apart by labels.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::http_get;
use support::stdout_run::Trawl;

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The families (TYPE lines) in an exposition, with how often each is declared.
fn declared(text: &str) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or("").to_owned();
            match v.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += 1,
                None => v.push((name, 1)),
            }
        }
    }
    v
}

#[test]
fn metrics_with_several_packet_inputs_pass_promtool() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.is_ok_and(|o| o.status.success()),
        "promtool not found: install Debian's `prometheus` package (scripts/setup.sh does)"
    );
    let live = trawl::wire::capture::probe("lo").is_ok();
    if !live {
        println!("NOTE: cannot capture on lo here: checking with the capture-file input only");
    }
    let shared = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/pcaps/suricata-verify/http-all-headers/input.pcap");
    let shared = std::env::var("TRAWL_SHARED_DIR")
        .map(|d| {
            std::path::PathBuf::from(d)
                .join("data/pcaps/suricata-verify/http-all-headers/input.pcap")
        })
        .unwrap_or(shared);
    assert!(shared.exists(), "{} missing", shared.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\ntwo\n").expect("write the log");
    let live_inputs = if live {
        concat!(
            "  web:\n    type: http\n    capture: { interfaces: [lo], bpf_filter: \"tcp port 1\" }\n",
            "  flows:\n    type: flows\n    capture: { interfaces: [lo], bpf_filter: \"tcp port 1\" }\n",
        )
    } else {
        ""
    };
    let config = format!(
        "inputs:\n{live_inputs}  capture:\n    type: pcap_file\n    path: {}\n  logs:\n    type: file\n    paths: [{}]\n    start_at: beginning\n\
         outputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
        shared.display(),
        log.display(),
        dir.path().display()
    );
    let trawl = Trawl::start(dir.path(), &config, "events.jsonl");
    trawl.wait_for(30, "the two log lines", |ev| {
        ev.iter()
            .filter(|e| e["message"] == "one" || e["message"] == "two")
            .count()
            == 2
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let err = strip_ansi(&trawl.stderr());
        if let Some(a) = err
            .lines()
            .filter(|l| l.contains("serving /metrics"))
            .find_map(|l| l.split("address=").nth(1))
            .and_then(|a| a.split_whitespace().next())
        {
            break a.trim_matches('"').to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address in the log: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The capture file is read, and the live captures have published their kernel counters.
    let metrics = loop {
        let m = http_get(&addr, "/metrics").unwrap_or_default().1;
        let file_done = m.contains("trawl_http_requests_total{");
        let kernel = !live || m.contains("trawl_capture_kernel_received_total{input=\"flows\"");
        if file_done && kernel {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed every input: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- /metrics:\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let twice: Vec<_> = declared(&metrics)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "families declared more than once: {twice:?}"
    );
    // One family, one series per packet input.
    let inputs: Vec<&str> = if live {
        vec!["web", "flows", "capture"]
    } else {
        vec!["capture"]
    };
    for i in &inputs {
        assert!(
            metrics.contains(&format!("trawl_packet_packets_total{{input=\"{i}\"}}")),
            "{i}: {metrics}"
        );
    }
    // The exact status code is a label beside the class.
    assert!(metrics.contains("status_code=\"200\""), "{metrics}");
}
