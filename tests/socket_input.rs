//! The `socket` input with the real binary: plain lines over TCP (with a cut long line) and JSON
//! lines over a Unix socket.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, input: &str) -> (Running, std::path::PathBuf) {
    let cfg = dir.join("p.yaml");
    std::fs::write(&cfg, format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n  s: {input}\noutputs:\n  out: {{ type: stdout }}\n",
        dir.display()
    )).unwrap();
    let out = dir.join("out.json");
    let child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "warn", "run", "-c"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), out)
}

fn wait_events(out: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let ev: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if ev.len() >= n || Instant::now() > deadline {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn tcp_lines_with_a_cut_long_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_t, out) = start(
        dir.path(),
        &format!("{{ type: socket, address: \"tcp:127.0.0.1:{port}\", max_line_bytes: 16 }}"),
    );
    let mut s = retry(|| std::net::TcpStream::connect(("127.0.0.1", port)));
    s.write_all(b"first\r\nthis line is far longer than sixteen bytes\nlast")
        .unwrap();
    drop(s);
    let ev = wait_events(&out, 3);
    let msgs: Vec<&str> = ev.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(msgs, vec!["first", "this line is far", "last"]);
    assert_eq!(ev[1]["log"]["flags"], serde_json::json!(["truncated"]));
}

#[test]
fn unix_json_lines_become_fields() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("in.sock");
    let (_t, out) = start(
        dir.path(),
        &format!(
            "{{ type: socket, address: \"unix:{}\", format: json }}",
            sock.display()
        ),
    );
    let mut s = retry(|| std::os::unix::net::UnixStream::connect(&sock));
    s.write_all(b"{\"message\":\"hi\",\"stream\":\"stderr\",\"@timestamp\":\"2024-01-02T03:04:05.5Z\"}\nnot json\n").unwrap();
    drop(s);
    let ev = wait_events(&out, 2);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["message"], "hi");
    assert_eq!(ev[0]["stream"], "stderr");
    assert_eq!(ev[0]["@timestamp"], "2024-01-02T03:04:05.500000Z");
    assert_eq!(ev[1]["message"], "not json");
}
