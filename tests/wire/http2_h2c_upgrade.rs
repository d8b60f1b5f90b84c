//! The h2c upgrade against a real server: hypercorn (PyPI) serving a small ASGI app answers
//! curl's `Upgrade: h2c` requests with 101 and HTTP/2, captured by dumpcap on loopback and read
//! by the real trawl binary (`trawl pcap --only http2`). Every request in hypercorn's access
//! log is one transaction: the upgraded request as stream 1, the next on the same connection
//! as stream 3, with method, path and status; each 101 is an HTTP/1.1 exchange of its own.

use crate::support;

use serde_json::Value as J;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A child started in a process group of its own, the whole group killed when dropped:
/// hypercorn serves from a worker process that outlives a master killed alone.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group the child leads; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "{what} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn curl_upgrades_to_h2c_with_hypercorn_and_each_logged_request_is_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http2");
    let access = dir.path().join("access.log");
    let server_log = dir.path().join("hypercorn.log");
    let _server = KillOnDrop(
        Command::new("python3")
            .args(["-m", "hypercorn", "--bind", "127.0.0.1:0"])
            .arg("--access-logfile")
            .arg(&access)
            .args(["--access-logformat", "%(m)s %(U)s %(H)s %(s)s"])
            .arg("--error-logfile")
            .arg(&server_log)
            .arg("h2c_app:app")
            .current_dir(&app_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("python3 with hypercorn (scripts/setup.sh)"),
    );
    let mut port = 0u16;
    wait_for("hypercorn listening", || {
        let log = std::fs::read_to_string(&server_log).unwrap_or_default();
        port = log
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        port != 0
    });

    let pcap = dir.path().join("h2c.pcap");
    let mut cap = support::dumpcap::Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));
    std::thread::sleep(Duration::from_millis(500));
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    // Two requests on one upgraded connection, one on another.
    for urls in [vec![url("/a"), url("/missing")], vec![url("/b?x=1")]] {
        let out = Command::new("curl")
            .args(["-s", "--http2", "--max-time", "20"])
            .args(&urls)
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {urls:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello over 2"),
            "curl {urls:?} did not upgrade: {out:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();

    let mut logged = Vec::new();
    wait_for("hypercorn's access log has the 3 requests", || {
        logged = std::fs::read_to_string(&access)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        logged.len() >= 3
    });

    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", "http2"])
        .arg(&pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "trawl pcap: {status}");
    let got: Vec<J> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Each 101 answered its upgrade request in HTTP/1.1 (RFC 9110 §15.2.2): one exchange per
    // upgraded connection, for the request that became its stream 1 (/a and /b).
    let (switched, streams): (Vec<J>, Vec<J>) = got
        .into_iter()
        .partition(|e| e["http"]["response"]["status_code"] == 101);
    let mut switched_paths: Vec<&str> = switched
        .iter()
        .map(|e| {
            assert_eq!(e["http"]["version"], "1.1", "{e}");
            assert_eq!(e["http"]["request"]["method"], "GET", "{e}");
            assert!(e.get("http2").is_none(), "{e}");
            e["url"]["path"].as_str().unwrap_or("")
        })
        .collect();
    switched_paths.sort();
    assert_eq!(switched_paths, ["/a", "/b"], "{out}");
    let mut got = streams;
    assert_eq!(got.len(), logged.len(), "{logged:#?}\n{out}");
    for line in &logged {
        // "[time] [pid] [INFO] GET /a 2 200": every request reached the application over
        // HTTP/2.
        let f: Vec<&str> = line.split(' ').collect();
        assert!(f.len() >= 4, "{line}");
        let f = &f[f.len() - 4..];
        assert_eq!(f[2], "2", "not upgraded: {line}");
        let status: i64 = f[3].parse().unwrap();
        let i = got
            .iter()
            .position(|e| e["url"]["path"] == f[1] || e["url"]["original"] == f[1])
            .unwrap_or_else(|| panic!("no trawl transaction for {line}: {got:#?}"));
        let e = got.remove(i);
        assert_eq!(e["event"]["dataset"], "http2", "{e}");
        assert_eq!(e["http"]["request"]["method"], f[0], "{e}");
        assert_eq!(e["http"]["response"]["status_code"], status, "{e}");
        assert_eq!(e["server"]["port"], port, "{e}");
        let outcome = if status >= 400 { "failure" } else { "success" };
        assert_eq!(e["event"]["outcome"], outcome, "{e}");
        // The upgraded request is stream 1 of its connection; the next request stream 3.
        let want_stream = if f[1] == "/missing" { 3 } else { 1 };
        assert_eq!(e["http2"]["stream_id"], want_stream, "{e}");
    }
}
