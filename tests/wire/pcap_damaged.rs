//! Truncated and corrupted capture files are reported, never fatal: the reader stops at the
//! damaged record, everything decoded before it is still reported, and random corruption
//! anywhere in a real capture never panics.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trawl::wire::out::Out;
use trawl::wire::{capture, Analyzers, Engine, Stats};

fn sample() -> Vec<u8> {
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
    std::fs::read(root.join("data/pcaps/suricata-verify/http-all-headers/input.pcap")).unwrap()
}

/// Reads `bytes` as a capture file in-process; returns (events, summary error, open error).
fn read(bytes: &[u8]) -> (usize, Option<String>, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcap");
    std::fs::write(&path, bytes).unwrap();
    let analyzers = Analyzers {
        flows: Some(Default::default()),
        protocols: trawl::wire::registry::Protocols::default()
            .with(trawl::wire::section::Section::<trawl::wire::http::HttpConfig>::default()),
        dedup_window: None,
        ..Default::default()
    };
    let mut engine = Engine::new(Arc::from("t"), analyzers, Arc::new(Stats::default()), None);
    let mut n = 0;
    let r = capture::read_file(&path, &mut engine, &AtomicBool::new(false), 64, &mut |e| {
        if let Out::Events(v) = &mut e.out {
            n += v.drain(..).count();
        }
        true
    });
    match r {
        Ok(s) => (n, s.error, None),
        Err(e) => (n, None, Some(e)),
    }
}

#[test]
fn truncated_files_report_what_came_before() {
    let full = sample();
    let (all, err, open) = read(&full);
    assert!(err.is_none() && open.is_none());
    assert!(all >= 2, "the sample has a flow and a transaction");
    let mut damaged = 0;
    for cut in (0..full.len()).step_by(97) {
        let (n, err, open) = read(&full[..cut]);
        if cut < 24 {
            assert!(
                open.is_some(),
                "a file without a whole header cannot be opened ({cut} bytes)"
            );
            continue;
        }
        if err.is_some() {
            damaged += 1;
        }
        // Every open flow is still flushed at the damaged end.
        if cut > 200 {
            assert!(n >= 1, "{cut} bytes: nothing reported");
        }
    }
    assert!(damaged > 0, "cuts inside a record are reported as damage");
}

#[test]
fn random_corruption_never_panics() {
    let full = sample();
    // A small deterministic generator: the same corruptions on every run.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..150 {
        let mut b = full.clone();
        for _ in 0..(1 + next() % 8) {
            let at = 24 + (next() as usize % (b.len() - 24));
            b[at] = next() as u8;
        }
        let _ = read(&b);
    }
}

#[test]
fn trawl_pcap_exits_1_on_a_damaged_file_and_prints_what_it_decoded() {
    let full = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    std::fs::write(&path, &full[..full.len() * 2 / 3]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("damaged"), "{stderr}");
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines >= 1, "events decoded before the damage are printed");
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
}
