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
    start_in(dir, input, "out", Stdio::null())
}

/// A trawl whose events go to `dir/<name>.json`; several may share `dir`.
fn start_in(dir: &Path, input: &str, name: &str, stderr: Stdio) -> (Running, std::path::PathBuf) {
    let pipeline = format!(
        "data_dir: {}/data-{name}\nhttp: {{ enabled: false }}\ninputs:\n  s: {input}\noutputs:\n  out: {{ type: stdout }}\n",
        dir.display()
    );
    run_pipeline(dir, name, &pipeline, stderr)
}

/// Runs trawl on `pipeline` (written to `dir/<name>.yaml`) at log level warn, its stdout
/// going to `dir/<name>.json`, which is returned.
fn run_pipeline(
    dir: &Path,
    name: &str,
    pipeline: &str,
    stderr: Stdio,
) -> (Running, std::path::PathBuf) {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg, pipeline).unwrap();
    let out = dir.join(format!("{name}.json"));
    let child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "warn", "run", "-c"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(stderr)
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
    s.write_all(b"{\"message\":\"hi\",\"stream\":\"stderr\",\"@timestamp\":\"2024-01-02T03:04:05.5Z\"}\nnot json\n[1,2]\n").unwrap();
    drop(s);
    let ev = wait_events(&out, 3);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0]["message"], "hi");
    assert_eq!(ev[0]["stream"], "stderr");
    assert_eq!(ev[0]["@timestamp"], "2024-01-02T03:04:05.500000Z");
    assert!(ev[0].get("tags").is_none(), "{}", ev[0]);
    // Not an object: kept whole, and marked as the `json` processor marks what it cannot read.
    for (e, text, why) in [(&ev[1], "not json", "not JSON"), (&ev[2], "[1,2]", "array")] {
        assert_eq!(e["message"], text);
        assert_eq!(e["tags"], serde_json::json!(["_json_parse_failure"]), "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{e}"
        );
    }
}

/// Two apps each write plain text to their own `format: json` socket, over several
/// connections: each input says it once, naming itself (a second input's senders were never
/// mentioned: the warning was said once per process), and every line is counted.
#[test]
fn lines_that_are_no_json_object_are_said_once_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let pipeline = format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n  \
         app_a: {{ type: socket, address: \"unix:{}\", format: json }}\n  \
         app_b: {{ type: socket, address: \"unix:{}\", format: json }}\n\
         outputs:\n  out: {{ type: stdout }}\n",
        dir.path().display(),
        a.display(),
        b.display()
    );
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap().into();
    let (_t, out) = run_pipeline(dir.path(), "out", &pipeline, stderr);
    for sock in [&a, &b, &a, &b] {
        let mut s = retry(|| std::os::unix::net::UnixStream::connect(sock));
        s.write_all(b"plain text\n42\n").unwrap();
    }
    let ev = wait_events(&out, 8);
    assert_eq!(ev.len(), 8, "{ev:?}");
    assert!(ev
        .iter()
        .all(|e| e["tags"] == serde_json::json!(["_json_parse_failure"])));
    let text = std::fs::read_to_string(&log).unwrap();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("is no JSON object"))
        .collect();
    assert_eq!(said.len(), 2, "once per input: {text}");
    for input in ["app_a", "app_b"] {
        assert!(
            said.iter().any(|l| l.contains(input)),
            "{input} not named: {text}"
        );
    }
}

#[test]
fn idle_connections_at_the_limit_do_not_lock_out_other_senders() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("in.sock");
    let log = dir.path().join("stderr.log");
    let (_t, out) = start_in(
        dir.path(),
        &format!(
            "{{ type: socket, address: \"unix:{}\", max_connections: 2, idle_timeout: 1s }}",
            sock.display()
        ),
        "out",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // Two clients connect and say nothing: every slot is taken.
    let idle: Vec<_> = (0..2)
        .map(|_| retry(|| std::os::unix::net::UnixStream::connect(&sock)))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut s = retry(|| std::os::unix::net::UnixStream::connect(&sock));
    s.write_all(b"from the third sender\n").unwrap();
    drop(s);
    let ev = wait_events(&out, 1);
    assert_eq!(ev.len(), 1, "the third sender's line never arrived");
    assert_eq!(ev[0]["message"], "from the third sender");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("connection limit reached"), "{text}");
    drop(idle);
}

#[test]
fn a_second_trawl_does_not_take_over_a_live_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("in.sock");
    let input = format!("{{ type: socket, address: \"unix:{}\" }}", sock.display());
    let (_first, out) = start_in(dir.path(), &input, "first", Stdio::null());
    drop(retry(|| std::os::unix::net::UnixStream::connect(&sock)));
    let second_log = dir.path().join("second.log");
    let (mut second, _) = start_in(
        dir.path(),
        &input,
        "second",
        Stdio::from(std::fs::File::create(&second_log).unwrap()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = second.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the second trawl kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&second_log).unwrap();
    assert!(text.contains("another process is listening"), "{text}");
    // The first one still owns its socket: the file is there and its lines arrive.
    let mut s = retry(|| std::os::unix::net::UnixStream::connect(&sock));
    s.write_all(b"still here\n").unwrap();
    drop(s);
    let ev = wait_events(&out, 1);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["message"], "still here");
}

#[test]
fn an_unreadable_timestamp_is_replaced_visibly() {
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
    s.write_all(b"{\"message\":\"a\",\"@timestamp\":\"yesterday at noon\"}\n")
        .unwrap();
    drop(s);
    let ev = wait_events(&out, 1);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["message"], "a");
    assert_eq!(
        ev[0]["tags"],
        serde_json::json!(["_timestamp_parse_failure"])
    );
    assert!(ev[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("yesterday at noon"));
    // The replacement is a real timestamp, not the text.
    assert!(chrono::DateTime::parse_from_rfc3339(ev[0]["@timestamp"].as_str().unwrap()).is_ok());
}

/// The value of `name{component="comp"}` on trawl's `/metrics` at `addr`.
fn metric(addr: &str, name: &str, comp: &str) -> Option<f64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let needle = format!("component=\"{comp}\"");
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Invalid UTF-8 from senders is replaced by U+FFFD, each such line counted in
/// `trawl_errors_total`, and said once per input however many connections send it, plain and
/// joined (`multiline`) alike, as the stdin and file inputs do.
#[test]
fn invalid_utf8_is_replaced_counted_and_said_once_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sock");
    let joined = dir.path().join("joined.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let pipeline = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  plain: {{ type: socket, address: \"unix:{plain}\" }}\n  joined: {{ type: socket, address: \"unix:{joined}\", multiline: {{ pattern: '^\\s', match: after, timeout: 200ms }} }}\noutputs:\n  out: {{ type: stdout }}\n",
        data = dir.path().join("data").display(),
        plain = plain.display(),
        joined = joined.display(),
    );
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap().into();
    let (_trawl, out) = run_pipeline(dir.path(), "out", &pipeline, stderr);
    // Two connections to each input, each with lines whose bytes are not UTF-8.
    for (i, sock) in [&plain, &plain, &joined, &joined].into_iter().enumerate() {
        let mut s = retry(|| std::os::unix::net::UnixStream::connect(sock));
        s.write_all(format!("ok {i}\n").as_bytes()).unwrap();
        s.write_all(b"caf\xe9 ").unwrap();
        s.write_all(format!("{i}\n  ").as_bytes()).unwrap();
        s.write_all(b"\xff\xfe").unwrap();
        s.write_all(format!(" tail {i}\nlast {i}\n").as_bytes())
            .unwrap();
        drop(s);
    }
    let ev = wait_events(&out, 14);
    let mut got: Vec<String> = ev
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want = Vec::new();
    for i in 0..2 {
        want.push(format!("ok {i}"));
        want.push(format!("caf\u{fffd} {i}"));
        want.push(format!("  \u{fffd}\u{fffd} tail {i}"));
        want.push(format!("last {i}"));
    }
    for i in 2..4 {
        want.push(format!("ok {i}"));
        want.push(format!("caf\u{fffd} {i}\n  \u{fffd}\u{fffd} tail {i}"));
        want.push(format!("last {i}"));
    }
    want.sort();
    assert_eq!(got, want);
    // Two lines with invalid bytes per connection.
    for input in ["plain", "joined"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(&addr, "trawl_errors_total", input) != Some(4.0) {
            assert!(
                Instant::now() < deadline,
                "trawl_errors_total of {input}: {:?}, expected 4",
                metric(&addr, "trawl_errors_total", input)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for input in ["plain", "joined"] {
        let said = text
            .lines()
            .filter(|l| {
                l.contains("invalid UTF-8 replaced") && l.contains(&format!("input={input}"))
            })
            .count();
        assert_eq!(said, 1, "said once for input {input}; log:\n{text}");
    }
}
