//! tshark as an independent oracle on the suricata-verify captures: HTTP requests and response
//! statuses, and per-direction packet counts of TCP flows (`tshark -z conv,tcp`).

use serde_json::Value as J;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn captures() -> Vec<PathBuf> {
    let candidates = [
        std::env::var_os("TRAWL_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    let root = candidates
        .into_iter()
        .flatten()
        .map(|p| p.join("data/pcaps/suricata-verify"))
        .find(|p| p.is_dir())
        .expect("shared/data/pcaps/suricata-verify not found: set TRAWL_SHARED_DIR");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("input.pcap"))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v
}

fn trawl(pcap: &Path) -> Vec<J> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tshark(args: &[String]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get<'a>(ev: &'a J, path: &str) -> Option<&'a J> {
    path.split('.').try_fold(ev, |v, k| v.get(k))
}

fn s(v: Option<&J>) -> String {
    match v {
        Some(J::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Removes one occurrence of `item` from `bag`; false if absent.
fn take(bag: &mut HashMap<String, i64>, item: &str) -> bool {
    match bag.get_mut(item) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Every request and final response tshark decodes, trawl reports too; transactions trawl
/// reports beyond tshark's must say why they are incomplete (a gap, a missing half).
#[test]
fn http_transactions_match_tshark() {
    let mut agree = 0;
    let caps = captures();
    for pcap in &caps {
        let events = trawl(pcap);
        let http: Vec<&J> = events
            .iter()
            .filter(|e| s(get(e, "event.dataset")) == "http")
            .collect();
        let mut ports: Vec<String> = http.iter().map(|e| s(get(e, "destination.port"))).collect();
        ports.sort();
        ports.dedup();
        let mut base = vec!["-r".to_owned(), pcap.display().to_string()];
        for p in &ports {
            base.extend(["-d".to_owned(), format!("tcp.port=={p},http")]);
        }
        let fields = |filter: &str, f: &[&str]| {
            let mut a = base.clone();
            a.extend([
                "-Y".to_owned(),
                filter.to_owned(),
                "-T".to_owned(),
                "fields".to_owned(),
            ]);
            for x in f {
                a.extend(["-e".to_owned(), x.to_string()]);
            }
            tshark(&a)
        };
        let mut trawl_reqs: HashMap<String, i64> = HashMap::new();
        let mut trawl_status: HashMap<String, i64> = HashMap::new();
        for e in &http {
            if get(e, "http.request.method").is_some() {
                *trawl_reqs
                    .entry(format!(
                        "{} {}",
                        s(get(e, "http.request.method")),
                        s(get(e, "url.original"))
                    ))
                    .or_default() += 1;
            }
            if get(e, "http.response.status_code").is_some() {
                *trawl_status
                    .entry(s(get(e, "http.response.status_code")))
                    .or_default() += 1;
            }
        }
        let name = pcap
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut extra = 0;
        for line in fields("http.request", &["http.request.method", "http.request.uri"]).lines() {
            let (m, u) = line.split_once('\t').unwrap_or((line, ""));
            assert!(
                take(&mut trawl_reqs, &format!("{m} {u}")),
                "{name}: tshark's request `{m} {u}` missing from trawl's"
            );
        }
        for line in fields("http.response", &["http.response.code"]).lines() {
            for code in line
                .split(',')
                .filter(|c| !c.is_empty() && !c.starts_with('1'))
            {
                assert!(
                    take(&mut trawl_status, code),
                    "{name}: tshark's response {code} missing from trawl's"
                );
            }
        }
        extra += trawl_reqs.values().sum::<i64>() + trawl_status.values().sum::<i64>();
        if extra == 0 {
            agree += 1;
        } else {
            let flagged = http
                .iter()
                .filter(|e| {
                    get(e, "event.reason").is_some() || s(get(e, "tags")).contains("tcp_gap")
                })
                .count() as i64;
            assert!(flagged > 0, "{name}: trawl reports {extra} transaction halves tshark does not, none flagged incomplete");
            println!("{name}: trawl reports {extra} more request/response halves than tshark, flagged incomplete ({flagged} flagged)");
        }
    }
    println!(
        "tshark agreement: {agree}/{} captures identical, the rest supersets flagged incomplete",
        caps.len()
    );
    assert!(
        agree * 10 >= caps.len() * 8,
        "only {agree}/{} captures agree with tshark",
        caps.len()
    );
}

/// Parses `tshark -q -z conv,tcp`: (endpoint A, endpoint B) → (frames B→A, frames A→B).
fn conversations(pcap: &Path) -> Vec<(String, String, u64, u64)> {
    let text = tshark(&[
        "-q".into(),
        "-z".into(),
        "conv,tcp".into(),
        "-r".into(),
        pcap.display().to_string(),
    ]);
    let mut v = Vec::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 6 || t[1] != "<->" {
            continue;
        }
        // A <-> B  frames_BtoA bytes [unit]  frames_AtoB bytes [unit] ...
        let mut it = t[3..].iter();
        let b_to_a: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let _ = it.next();
        let unit = it.next().copied().unwrap_or("");
        let a_to_b: u64 = if unit.chars().all(|c| c.is_ascii_digit()) {
            unit.parse().unwrap_or(0)
        } else {
            it.next().and_then(|x| x.parse().ok()).unwrap_or(0)
        };
        v.push((t[0].to_owned(), t[2].to_owned(), b_to_a, a_to_b));
    }
    v
}

/// `ip:port` as tshark writes endpoints (IPv6 without brackets too).
fn endpoint(ip: &str, port: &str) -> String {
    format!("{ip}:{port}")
}

#[test]
fn flow_packet_counts_match_tshark_conversations() {
    let mut compared = 0;
    for pcap in captures() {
        let events = trawl(&pcap);
        // Per ordered endpoint pair, packets sent from the first to the second.
        let mut ours: HashMap<(String, String), u64> = HashMap::new();
        for e in events.iter().filter(|e| {
            s(get(e, "event.dataset")) == "flow"
                && s(get(e, "network.transport")) == "tcp"
                && get(e, "flow.final") == Some(&J::Bool(true))
        }) {
            let src = endpoint(&s(get(e, "source.ip")), &s(get(e, "source.port")));
            let dst = endpoint(&s(get(e, "destination.ip")), &s(get(e, "destination.port")));
            *ours.entry((src.clone(), dst.clone())).or_default() +=
                get(e, "source.packets").and_then(J::as_u64).unwrap_or(0);
            *ours.entry((dst, src)).or_default() += get(e, "destination.packets")
                .and_then(J::as_u64)
                .unwrap_or(0);
        }
        let mut theirs: HashMap<(String, String), u64> = HashMap::new();
        for (a, b, b_to_a, a_to_b) in conversations(&pcap) {
            *theirs.entry((a.clone(), b.clone())).or_default() += a_to_b;
            *theirs.entry((b, a)).or_default() += b_to_a;
        }
        let name = pcap
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for (k, n) in &theirs {
            assert_eq!(
                ours.get(k).copied().unwrap_or(0),
                *n,
                "{name}: packets {} -> {}",
                k.0,
                k.1
            );
            compared += 1;
        }
        let ours_total: u64 = ours.values().sum();
        let theirs_total: u64 = theirs.values().sum();
        assert_eq!(ours_total, theirs_total, "{name}: TCP packets in flows");
    }
    println!("compared {compared} flow directions with tshark");
    assert!(compared >= 50);
}
