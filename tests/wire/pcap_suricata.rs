//! Runs `trawl pcap` over the suricata-verify captures in shared/ and checks every HTTP filter
//! of each `test.yaml` (method, url, hostname, status, user agent, protocol, endpoints, and how
//! many): reports the pass ratio and the misses, and requires the ratio to stay high.

use crate::support;

use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;
use support::process::shared_dir;
use yaml_rust2::{Yaml, YamlLoader};

/// Flattens a YAML map into dotted keys with scalar values as strings.
fn flatten(prefix: &str, y: &Yaml, out: &mut Vec<(String, String)>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Yaml::String(s) => out.push((prefix.to_owned(), s.clone())),
        Yaml::Integer(i) => out.push((prefix.to_owned(), i.to_string())),
        Yaml::Boolean(b) => out.push((prefix.to_owned(), b.to_string())),
        Yaml::Real(r) => out.push((prefix.to_owned(), r.clone())),
        _ => {}
    }
}

/// The ECS field a suricata-verify key maps to (README of shared/).
fn ecs(key: &str) -> Option<&'static str> {
    Some(match key {
        "http.http_method" => "http.request.method",
        "http.url" => "url.original",
        "http.hostname" => "url.domain",
        "http.status" => "http.response.status_code",
        "http.http_user_agent" => "user_agent.original",
        "http.protocol" => "http.version",
        "src_ip" => "source.ip",
        "src_port" => "source.port",
        "dest_ip" => "destination.ip",
        "dest_port" => "destination.port",
        _ => return None,
    })
}

fn get<'a>(ev: &'a J, path: &str) -> Option<&'a J> {
    path.split('.').try_fold(ev, |v, k| v.get(k))
}

fn text(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn matches(ev: &J, conds: &[(&'static str, String)]) -> bool {
    conds.iter().all(|(field, want)| {
        let Some(v) = get(ev, field) else {
            return false;
        };
        let have = text(v);
        if *field == "http.version" {
            return want.strip_prefix("HTTP/").is_some_and(|w| w == have);
        }
        if *field == "source.ip" || *field == "destination.ip" {
            // Suricata writes IPv6 in full form; compare parsed addresses.
            return want.parse::<std::net::IpAddr>().ok() == have.parse::<std::net::IpAddr>().ok();
        }
        have == *want
    })
}

#[test]
fn suricata_expected_http_transactions() {
    let shared = shared_dir();
    let root = shared.join("data/pcaps/suricata-verify");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("test.yaml").exists())
        .collect();
    dirs.sort();
    let (mut total, mut passed) = (0, 0);
    let mut misses = Vec::new();
    let mut not_applicable = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["pcap", "--only", "http"])
            .arg(dir.join("input.pcap"))
            .output()
            .unwrap();
        assert!(
            out.status.success() || out.status.code() == Some(1),
            "{name}: trawl crashed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events: Vec<J> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        let yaml = std::fs::read_to_string(dir.join("test.yaml")).unwrap();
        let docs = YamlLoader::load_from_str(&yaml).unwrap();
        // Suricata run as an IPS, or told to ignore flows picked up mid-stream, logs nothing
        // for them on purpose: a passive shipper has no such policy and reports them.
        let policy = docs[0]["args"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .any(|a| a.contains("midstream=false") || a.contains("simulate-ips"));
        for check in docs[0]["checks"].as_vec().into_iter().flatten() {
            let f = &check["filter"];
            let mut kv = Vec::new();
            flatten("", &f["match"], &mut kv);
            if !kv.iter().any(|(k, v)| k == "event_type" && v == "http") {
                continue;
            }
            // Filters for older Suricata versions describe behaviour since changed.
            if !f["requires"]["lt-version"].is_badvalue() {
                continue;
            }
            if policy && f["count"].as_i64() == Some(0) {
                not_applicable.push(format!(
                    "{name}: count 0 under Suricata's IPS/midstream policy ({:?})",
                    kv
                ));
                continue;
            }
            let conds: Vec<(&'static str, String)> = kv
                .iter()
                .filter_map(|(k, v)| ecs(k).map(|e| (e, v.clone())))
                .collect();
            let n = events.iter().filter(|e| matches(e, &conds)).count();
            let ok = match f["count"].as_i64() {
                Some(c) => n as i64 == c,
                None => n > 0,
            };
            total += 1;
            if ok {
                passed += 1;
            } else {
                misses.push(format!(
                    "{name}: expected {:?} matching {:?}, got {n} (trawl emitted {} http events)",
                    f["count"].as_i64(),
                    conds,
                    events.len()
                ));
            }
        }
    }
    println!(
        "suricata-verify HTTP filters: {passed}/{total} passed ({:.0}%)",
        100.0 * passed as f64 / total.max(1) as f64
    );
    for m in &misses {
        println!("miss: {m}");
    }
    for m in &not_applicable {
        println!("not applicable: {m}");
    }
    assert!(
        total >= 30,
        "expected the shared captures to hold at least 30 HTTP filters, found {total}"
    );
    assert!(
        passed * 100 >= total * 90,
        "pass ratio below 90%: {passed}/{total}\n{}",
        misses.join("\n")
    );
}
