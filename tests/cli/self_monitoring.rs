//! trawl watching itself: build info and the standard `process_*` families on `/metrics`, read
//! against what `/proc` says of the real process and checked by `promtool`; its own logs without
//! terminal colours when stderr is not a terminal, and as JSON lines with `--log-format json`.

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::{free_port, KillOnDrop};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

/// stdin to a file, no packet inputs (their families are checked elsewhere), stderr to `log`.
fn start(dir: &Path, port: u16, log: &Path, extra_args: &[&str]) -> KillOnDrop {
    let cfg = dir.join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {d}/data\nhttp: {{ address: \"127.0.0.1:{port}\" }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    KillOnDrop(
        Command::new(TRAWL)
            .args(extra_args)
            .args(["run", "-c"])
            .arg(&cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The body of `GET /metrics`, retried until the endpoint is up (bounded).
fn metrics(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            let (_, body) = out.split_once("\r\n\r\n").unwrap();
            return body.to_owned();
        }
        assert!(Instant::now() < deadline, "/metrics never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| {
            l.starts_with(name) && (name.contains('{') || l[name.len()..].starts_with([' ', '{']))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

fn status_kib(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn process_families_match_proc_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("trawl.log");
    let mut t = start(dir.path(), port, &log, &[]);
    let pid = t.0.id();
    // Enough work that CPU time is past the clock tick.
    {
        let stdin = t.0.stdin.as_mut().unwrap();
        let line = "a line of some length to give the pipeline a little work to do\n".repeat(1000);
        for _ in 0..300 {
            stdin.write_all(line.as_bytes()).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        let body = metrics(port);
        if value(&body, "trawl_events_out_total{component_kind=\"output\"") >= 300_000.0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the lines were not delivered:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    assert!(
        body.contains(&format!(
            "trawl_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    let rss = value(&body, "process_resident_memory_bytes");
    let proc_rss = status_kib(pid, "VmRSS:") * 1024.0;
    assert!(
        rss > proc_rss / 2.0 && rss < proc_rss * 2.0,
        "process_resident_memory_bytes {rss} vs VmRSS {proc_rss}"
    );
    let fds = value(&body, "process_open_fds");
    let proc_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    assert!(
        fds >= 3.0 && (fds - proc_fds).abs() <= 4.0,
        "process_open_fds {fds} vs /proc: {proc_fds}"
    );
    assert!(value(&body, "process_max_fds") >= fds);
    assert!(value(&body, "process_cpu_seconds_total") > 0.0, "{body}");
    let started = value(&body, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "start {started}, now {now}"
    );

    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut check) = check else {
        panic!("promtool is missing: scripts/setup.sh installs it (Debian package prometheus)");
    };
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Logs went to a file: no terminal colour codes in it.
    drop(t.0.stdin.take());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("INFO"), "{log_text}");
    assert!(!log_text.contains('\u{1b}'), "escape codes in:\n{log_text}");
}

#[test]
fn logs_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("trawl.log");
    let mut t = start(dir.path(), port, &log, &["--log-format", "json"]);
    metrics(port);
    drop(t.0.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "trawl did not end after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
}
