//! `/health` names a component that cannot do its job at run time, through the real binary:
//! a live capture that can open none of its interfaces is a 503, not an input quietly capturing
//! nothing.

use crate::support;

use std::time::Duration;
use support::process::{free_port, http_get as get, wait_until, write_file, Trawl};

#[test]
fn a_capture_on_no_interface_turns_health_503_naming_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  web:\n    type: http\n    capture: {{ interfaces: [trawl-none0] }}\noutputs:\n  out: {{ type: \"null\" }}\n",
            data = dir.path().join("data").display()
        ),
    );
    let _t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    // The first answers may be 503 `starting` (the capture has not given up on its interface
    // yet); then the failure, with its reason, is what /health says.
    let mut last = None;
    wait_until(
        Duration::from_secs(30),
        "/health to answer 503 naming the interface",
        || {
            last = get(&addr, "/health");
            last.as_ref()
                .is_some_and(|(status, body)| *status == 503 && body.contains("trawl-none0"))
        },
    );
    let (_, body) = last.unwrap();
    assert!(body.contains("\"status\":\"failed\""), "{body}");
    assert!(body.contains("input web"), "{body}");
}

/// The monitoring address answers some milliseconds before a live capture has its handle open.
/// Until it has, `/health` answers 503 "starting" naming the input (a Kubernetes readiness
/// probe keeps the pod out, as a CI probe should have waited); from the first 200 on, what is
/// sent to trawl is on the wire trawl reads: probes sent right after it are all captured.
#[test]
fn health_is_starting_until_the_capture_handle_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = dir.path().join("out.jsonl");
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  web:\n    type: http\n    capture: {{ interfaces: [lo] }}\n    ports: [{port}]\noutputs:\n  out: {{ type: file, path: \"{out}\" }}\n",
            data = dir.path().join("data").display(),
            out = out.display()
        ),
    );
    let _t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    // Probed as often as a busy prober would, to meet the window between the two.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut starting_seen = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "/health never answered 200"
        );
        match get(&addr, "/health") {
            Some((200, _)) => break,
            Some((503, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["status"], "starting", "{body}");
                assert_eq!(v["starting"], serde_json::json!(["input web"]), "{body}");
                starting_seen += 1;
            }
            Some(other) => panic!("unexpected answer {other:?}"),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 1..=3 {
        let (status, _) = get(&addr, &format!("/health?probe={i}")).unwrap();
        assert_eq!(status, 200);
    }
    let probes = || -> Vec<String> {
        if !out.exists() {
            return Vec::new();
        }
        support::process::read_json_lines(&out)
            .iter()
            .filter_map(|e| e["url"]["original"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(Duration::from_secs(30), "the three probes captured", || {
        (1..=3).all(|i| probes().contains(&format!("/health?probe={i}")))
    });
    eprintln!("/health answered 503 starting {starting_seen} times before 200");
}
