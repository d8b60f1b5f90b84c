//! `multiline:` on the line inputs other than `file`, through the real binary: a Java trace on
//! stdin, two socket connections sending Python tracebacks at once (joined per connection), a
//! Go panic on a tee'd command's stderr while stdout keeps going (joined per stream), the
//! timeout sending an event while the source stays open, and bad patterns at their key.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pipeline(dir: &Path, input: &str) -> PathBuf {
    let cfg = dir.join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {input}\noutputs:\n  out: {{ type: stdout }}\n",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// trawl run on `input`, its events written to `dir/out.json`.
fn start(dir: &Path, input: &str, stdin: Stdio) -> (Running, PathBuf) {
    let cfg = pipeline(dir, input);
    let out = dir.join("out.json");
    let child = Command::new(TRAWL)
        .args(["--log-level", "warn", "run", "-c"])
        .arg(&cfg)
        .stdin(stdin)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), out)
}

fn events(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (at most 30 s) until `pred` holds for the events written so far.
fn wait_for(out: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = events(out);
        if pred(&ev) {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; events so far: {ev:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn messages(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const JAVA: &str = "2026-11-30 10:00:00 ERROR request failed
java.lang.IllegalStateException: pool exhausted
\tat com.shop.db.Pool.take(Pool.java:88)
\tat com.shop.api.Orders.create(Orders.java:41)
Caused by: java.util.concurrent.TimeoutException: 30s
\tat com.shop.db.Pool.wait(Pool.java:120)
\t... 12 more
";

#[test]
fn a_java_trace_on_stdin_is_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, out) = start(
        dir.path(),
        "{ type: stdin, multiline: { preset: java } }",
        Stdio::piped(),
    );
    let mut stdin = run.0.stdin.take().unwrap();
    write!(
        stdin,
        "2026-11-30 09:59:59 INFO started\n{JAVA}2026-11-30 10:00:01 INFO next request\n"
    )
    .unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "trawl did not end at end of stdin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ev = events(&out);
    assert_eq!(
        messages(&ev),
        vec![
            "2026-11-30 09:59:59 INFO started".to_owned(),
            JAVA.trim_end().to_owned(),
            "2026-11-30 10:00:01 INFO next request".to_owned(),
        ]
    );
    assert_eq!(ev[1]["log"]["flags"], serde_json::json!(["multiline"]));
    assert!(ev[0]["log"]["flags"].is_null());
}

/// The end of a trace never comes while stdin stays open: the event is sent after `timeout`,
/// without waiting for the next line or the end of input.
#[test]
fn the_timeout_sends_a_trace_while_stdin_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, out) = start(
        dir.path(),
        "{ type: stdin, multiline: { preset: java, timeout: 1s } }",
        Stdio::piped(),
    );
    let mut stdin = run.0.stdin.take().unwrap();
    stdin.write_all(JAVA.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let ev = wait_for(&out, "the trace sent by the timeout", |ev| !ev.is_empty());
    assert_eq!(messages(&ev), vec![JAVA.trim_end().to_owned()]);
    // The source is still open and still read.
    stdin
        .write_all(b"2026-11-30 10:00:05 INFO later\n")
        .unwrap();
    drop(stdin);
    wait_for(&out, "the line after the trace", |ev| {
        messages(ev).last().map(String::as_str) == Some("2026-11-30 10:00:05 INFO later")
    });
}

fn traceback(tag: &str) -> Vec<String> {
    vec![
        format!("{tag} worker crashed"),
        "Traceback (most recent call last):".into(),
        format!("  File \"/srv/{tag}/app.py\", line 12, in handle"),
        "    process(job)".into(),
        format!("  File \"/srv/{tag}/jobs.py\", line 40, in process"),
        "    raise ValueError(job.id)".into(),
        format!("ValueError: {tag}-job-7"),
    ]
}

/// Two senders write their tracebacks line by line, interleaved: each is joined with its own
/// lines only.
#[test]
fn socket_connections_are_joined_each_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("in.sock");
    let (_run, out) = start(
        dir.path(),
        &format!(
            "{{ type: socket, address: \"unix:{}\", multiline: {{ pattern: '^[a-z]+ worker', negate: true, match: after, timeout: 30s }} }}",
            sock.display()
        ),
        Stdio::null(),
    );
    let connect = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(s) => return s,
                Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    let mut a = connect();
    let mut b = connect();
    let (ta, tb) = (traceback("alpha"), traceback("beta"));
    for (la, lb) in ta.iter().zip(&tb) {
        a.write_all(format!("{la}\n").as_bytes()).unwrap();
        a.flush().unwrap();
        // Each line reaches trawl before the other sender's next one.
        std::thread::sleep(Duration::from_millis(20));
        b.write_all(format!("{lb}\n").as_bytes()).unwrap();
        b.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Closing a connection ends its last event.
    drop(a);
    drop(b);
    let ev = wait_for(&out, "both tracebacks", |ev| ev.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let mut got = messages(&events(&out));
    got.sort();
    assert_eq!(got, vec![ta.join("\n"), tb.join("\n")], "{ev:#?}");
}

const GO_PANIC: &str = "panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.handler(0xc000012345)
\t/src/app/main.go:42 +0x1d
main.main()
\t/src/app/main.go:17 +0x25
exit status 2";

/// A Go panic on stderr, written while stdout keeps printing lines: the panic is one event
/// of stream stderr, and every stdout line is its own event.
#[test]
fn a_go_panic_through_tee_is_joined_on_stderr_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("tee.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}/data\nhttp: {{ enabled: false }}\noutputs:\n  console: {{ type: file, path: {}/events.json }}\n",
            d.display(),
            d.display()
        ),
    )
    .unwrap();
    // One stderr line, then one stdout line, and so on.
    let mut script = String::from("echo 'INFO serving' ;");
    for (i, line) in GO_PANIC.lines().enumerate() {
        script.push_str(&format!(
            "printf '%s\\n' '{}' >&2; sleep 0.02; echo 'INFO tick {i}'; sleep 0.02;",
            line.replace('\t', "\\t").replace('\'', "")
        ));
    }
    // printf does not expand \t in its argument: the script feeds it through %b instead.
    let script = script.replace("printf '%s\\n'", "printf '%b\\n'");
    let status = Command::new(TRAWL)
        .args(["--log-level", "off", "tee", "-c"])
        .arg(&cfg)
        .args([
            "--multiline",
            "{preset: go, timeout: 30s}",
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let ev = events(&d.join("events.json"));
    let stderr: Vec<&Value> = ev.iter().filter(|e| e["stream"] == "stderr").collect();
    let stdout: Vec<String> = ev
        .iter()
        .filter(|e| e["stream"] == "stdout")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(stderr.len(), 1, "{ev:#?}");
    assert_eq!(stderr[0]["message"], GO_PANIC);
    assert_eq!(stderr[0]["log"]["flags"], serde_json::json!(["multiline"]));
    let mut want = vec!["INFO serving".to_owned()];
    want.extend((0..GO_PANIC.lines().count()).map(|i| format!("INFO tick {i}")));
    assert_eq!(stdout, want);
}

#[test]
fn a_bad_pattern_is_reported_at_its_key_for_each_input() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("v.sock");
    for input in [
        "{ type: stdin, multiline: { pattern: 'a(' } }".to_owned(),
        format!(
            "{{ type: socket, address: \"unix:{}\", multiline: {{ pattern: 'a(' }} }}",
            sock.display()
        ),
        format!(
            "{{ type: file, paths: [\"{}/*.log\"], multiline: {{ pattern: 'a(' }} }}",
            dir.path().display()
        ),
    ] {
        let cfg = pipeline(dir.path(), &input);
        let v = Command::new(TRAWL)
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&v.stderr);
        assert_eq!(v.status.code(), Some(1), "{input}: {err}");
        assert!(
            err.contains(&format!("{}:4:", cfg.display()))
                && err.contains("inputs.app.multiline.pattern: invalid pattern"),
            "{input}: {err}"
        );
    }
    // A socket reading JSON objects has no raw lines to join.
    let cfg = pipeline(
        dir.path(),
        &format!(
            "{{ type: socket, address: \"unix:{}\", format: json, multiline: {{ preset: java }} }}",
            sock.display()
        ),
    );
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{err}");
    assert!(
        err.contains("inputs.app.multiline: `multiline` joins raw lines"),
        "{err}"
    );
    // tee takes the same keys on its command line, and refuses a bad pattern before running.
    let out = Command::new(TRAWL)
        .args(["--log-level", "off", "tee", "-c"])
        .arg(&cfg)
        .args(["--multiline", "{pattern: 'a('}", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--multiline.pattern: invalid pattern"),
        "{err}"
    );
}
