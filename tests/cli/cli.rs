//! The real binary: `validate` messages, stdin to stdout, SIGTERM draining, `/metrics` counts
//! and `/health` turning 503 when a component fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

use support::process::{free_port, http_get, KillOnDrop};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

fn write_pipeline(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn wait_http(port: u16, path: &str) -> (u16, String) {
    let start = Instant::now();
    loop {
        if let Some(r) = http_get(&format!("127.0.0.1:{port}"), path) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(text: &str, name: &str, component: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("component=\"{component}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

#[test]
fn validate_reports_every_error_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_pipeline(
        &dir,
        "bad.yaml",
        "inputs:\n  app: { type: stdin, max_line_bytez: 10 }\noutputs:\n  console: { type: stdout, format: 7 }\n  other: { type: stdout, inputs: [ap] }\nshutdown_timeout: later\n",
    );
    let out = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = bad.display().to_string();
    assert!(err.contains(&format!("{f}:2:23: inputs.app.max_line_bytez: unknown field `max_line_bytez`, expected `max_line_bytes`")), "{err}");
    assert!(
        err.contains(&format!(
            "{f}:4:36: outputs.console.format: unknown variant `7`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:5:35: outputs.other.inputs: unknown input `ap`, expected one of `app`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:6:19: shutdown_timeout: `later` is not a duration"
        )),
        "{err}"
    );

    let good = write_pipeline(&dir, "good.yaml", "inputs:\n  app: { type: stdin }\nprocessors:\n  - { type: add_tags, tags: [k8s-beat], when: { input: app } }\noutputs:\n  console: { type: stdout, inputs: [app] }\n");
    let out = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid (1 inputs, 1 processors, 1 outputs)")
    );

    let missing = Command::new(TRAWL)
        .args(["validate", "-c", "/nonexistent/p.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/p.yaml"));
}

#[test]
fn stdin_to_stdout_prints_each_line_and_exits_at_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(
        &dir,
        "p.yaml",
        "inputs:\n  app: { type: stdin }\nprocessors:\n  - { type: add_tags, tags: [\"${TAG:-k8s-beat}\"] }\noutputs:\n  console: { type: stdout }\nhttp: { enabled: false }\n",
    );
    let mut child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(&p)
        .env("TRAWL_HOSTNAME", "node-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a\nb\xff\xfe\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["message"], "a");
    assert_eq!(lines[1]["message"], "b\u{fffd}\u{fffd}");
    assert_eq!(lines[0]["tags"], serde_json::json!(["k8s-beat"]));
    assert_eq!(lines[0]["host"]["name"], "node-1");
    let ts = lines[0]["@timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
}

#[test]
fn sigterm_mid_stream_loses_no_line_stdin_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(&dir, "p.yaml", "inputs:\n  app: { type: stdin }\noutputs:\n  console: { type: stdout, format: text }\nhttp: { enabled: false }\nshutdown_timeout: 10s\n");
    let out_path = dir.path().join("out.txt");
    let child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let mut stdin = guard.0.stdin.take().unwrap();
    // Lines go in in bursts; SIGTERM arrives while the writer still holds the pipe open.
    let mut written = 0u64;
    for burst in 0..20 {
        let mut chunk = String::new();
        for _ in 0..500 {
            chunk.push_str(&format!("line {written}\n"));
            written += 1;
        }
        stdin.write_all(chunk.as_bytes()).unwrap();
        if burst == 10 {
            // Make sure trawl is past start-up and mid-stream.
            let start = Instant::now();
            while std::fs::metadata(&out_path).map(|m| m.len()).unwrap_or(0) == 0 {
                assert!(start.elapsed() < Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    stdin.flush().unwrap();
    signal(&guard.0, libc::SIGTERM);
    let status = guard.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    drop(stdin);
    let text = std::fs::read_to_string(&out_path).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(
        got.len() as u64,
        written,
        "every line written before SIGTERM is in the output"
    );
    for (i, l) in got.iter().enumerate() {
        assert_eq!(*l, format!("line {i}"));
    }
}

#[test]
fn metrics_count_what_passed_and_health_turns_503_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = write_pipeline(
        &dir,
        "p.yaml",
        &format!("inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: add_tags, tags: [x], when: {{ contains: {{ message: keep }} }} }}\noutputs:\n  console: {{ type: stdout }}\nhttp: {{ address: \"127.0.0.1:{port}\" }}\n"),
    );
    let child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let mut stdin = guard.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(guard.0.stdout.take().unwrap());
    assert_eq!(wait_http(port, "/health").0, 200);
    let mut bytes = 0;
    for i in 0..500 {
        let line = format!("keep {i}\n");
        bytes += line.len() as u64;
        stdin.write_all(line.as_bytes()).unwrap();
    }
    stdin.write_all(b"\xff\n").unwrap();
    bytes += 2;
    stdin.flush().unwrap();
    let mut line = String::new();
    for _ in 0..501 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
    }
    // The stdout output counts a batch once it is flushed; give it a moment to update.
    let start = Instant::now();
    let text = loop {
        let (status, text) = wait_http(port, "/metrics");
        assert_eq!(status, 200);
        if metric(&text, "trawl_events_out_total", "console") == Some(501)
            || start.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        metric(&text, "trawl_events_out_total", "app"),
        Some(501),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_bytes_in_total", "app"),
        Some(bytes),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_errors_total", "app"),
        Some(1),
        "invalid UTF-8 is counted\n{text}"
    );
    assert_eq!(
        metric(&text, "trawl_events_in_total", "console"),
        Some(501),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_events_out_total", "console"),
        Some(501),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_events_in_total", "#0"),
        Some(501),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_events_dropped_total", "console"),
        Some(0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trawl_queue_depth", "console"),
        Some(0),
        "{text}"
    );

    // Close the reading end of trawl's stdout: the stdout output fails on its next write. One
    // more line each second while /health is still 200, as from an app that keeps logging: a
    // child that another test is spawning at this moment holds a copy of the reading end until
    // its exec, and a write in that window still fits in the pipe. (Not faster: once failed,
    // trawl stops at the next line its stdin input reads, and /health would be gone.)
    drop(stdout);
    let start = Instant::now();
    let mut written_after = 0;
    let mut last_write: Option<Instant> = None;
    loop {
        if last_write.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            stdin.write_all(b"after close\n").unwrap();
            stdin.flush().unwrap();
            written_after += 1;
            last_write = Some(Instant::now());
        }
        let (status, body) = wait_http(port, "/health");
        if status == 503 {
            assert!(body.contains("output console"), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "health never turned 503: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, text) = wait_http(port, "/metrics");
    assert!(
        text.contains("trawl_component_up{component_kind=\"output\",component=\"console\"} 0"),
        "{text}"
    );
    let failed = metric(&text, "trawl_events_failed_total", "console").unwrap_or(0);
    assert!(
        (1..=written_after).contains(&failed),
        "{failed} failed of {written_after} lines written after the close\n{text}"
    );
    drop(stdin);
    let status = guard.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a failed component makes the exit status 1"
    );
}

#[test]
fn default_pipeline_is_valid_and_runs() {
    let out = Command::new(TRAWL)
        .arg("default-pipeline")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(&dir, "default.yaml", &String::from_utf8_lossy(&out.stdout));
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

/// Starts trawl with stdout connected to a pipe nobody reads, so delivery stalls, and feeds it
/// lines until the pipeline is full.
fn stalled_trawl(
    dir: &tempfile::TempDir,
    shutdown_timeout: &str,
) -> (KillOnDrop, std::process::ChildStdout) {
    let p = write_pipeline(
        dir,
        "p.yaml",
        &format!("inputs:\n  app: {{ type: stdin }}\noutputs:\n  console: {{ type: stdout }}\nhttp: {{ enabled: false }}\nshutdown_timeout: {shutdown_timeout}\n"),
    );
    let mut child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let line = "x".repeat(200) + "\n";
        // Ends with EPIPE once trawl has exited.
        while stdin.write_all(line.as_bytes()).is_ok() {}
    });
    // Enough time for the queues and the pipe to fill.
    std::thread::sleep(Duration::from_millis(1500));
    (KillOnDrop(child), stdout)
}

#[test]
fn shutdown_gives_up_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, _stdout) = stalled_trawl(&dir, "1s");
    let start = Instant::now();
    signal(&guard.0, libc::SIGTERM);
    let status = guard.0.wait().unwrap();
    let took = start.elapsed();
    assert_eq!(
        status.code(),
        Some(1),
        "events were left undelivered: not a clean stop"
    );
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the deadline"
    );
}

#[test]
fn second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, _stdout) = stalled_trawl(&dir, "60s");
    signal(&guard.0, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        guard.0.try_wait().unwrap().is_none(),
        "still draining after the first signal"
    );
    signal(&guard.0, libc::SIGINT);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "second signal did not stop trawl"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
}

#[test]
fn parses_tags_and_routes_by_condition_to_different_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.jsonl");
    let rest = dir.path().join("rest.jsonl");
    let p = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: dissect, tokenizer: \"%{{level}} %{{msg}}\" }}\n  - {{ type: add_tags, tags: [paged], when: {{ equals: {{ level: ERROR }} }} }}\noutputs:\n  pager: {{ type: file, path: \"{}\", when: {{ contains: {{ tags: paged }} }} }}\n  archive: {{ type: file, path: \"{}\", when: {{ not: {{ contains: {{ tags: paged }} }} }} }}\nhttp: {{ enabled: false }}\n",
            errors.display(),
            rest.display()
        ),
    );
    let mut child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"INFO started\nERROR disk full\nINFO serving\nERROR quota\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let paged = read(&errors);
    let archived = read(&rest);
    assert_eq!(
        paged
            .iter()
            .map(|e| e["msg"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["disk full", "quota"]
    );
    assert!(paged
        .iter()
        .all(|e| e["tags"] == serde_json::json!(["paged"])));
    assert_eq!(
        archived
            .iter()
            .map(|e| e["msg"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["started", "serving"]
    );
    assert!(archived
        .iter()
        .all(|e| e["level"] == "INFO" && e.get("tags").is_none()));
}

/// Runs `trawl run -c cfg` until it exits on its own (within 20 s, else `what` fails the test):
/// its status, stdout and stderr.
fn run_to_exit(cfg: &std::path::Path, what: &str) -> (std::process::ExitStatus, String, String) {
    let child = Command::new(TRAWL)
        .args(["run", "-c"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stdout, stderr)
}

/// Tailing without a writable registry would re-send or skip lines after the next restart: the
/// file input refuses to start and says why, and trawl, left with no input, exits non-zero.
#[test]
fn file_input_refuses_to_start_without_a_writable_registry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.log"), "a line\n").unwrap();
    // A folder below a regular file cannot be created, even by root.
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let cfg = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "inputs:\n  logs: {{ type: file, paths: [\"{d}/*.log\"] }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {d}/not-a-dir/data\nhttp: {{ enabled: false }}\n",
            d = dir.path().display()
        ),
    );
    let (status, stdout, stderr) = run_to_exit(&cfg, "trawl kept running without its only input");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("data_dir is not writable") && stderr.contains("not-a-dir"),
        "{stderr}"
    );
    assert!(
        stdout.is_empty(),
        "nothing read without a registry: {stdout}"
    );
}

/// A read-only `data_dir` at start (a read-only mount, a volume mounted without write access)
/// with a file input beside another input: trawl does not start half (the socket input
/// listening, the file input failed, /health 503) but exits 1 at once, naming the folder and
/// what is needed. Without root (no tmpfs to mount), a folder below a regular file stands in.
#[test]
fn a_read_only_data_dir_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.log"), "a line\n").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs"])
        .arg(&data)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    struct Unmount(Option<std::path::PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
    let _unmount = Unmount(mounted.then(|| data.clone()));
    let data = if mounted {
        data
    } else {
        eprintln!(
            "mount -t tmpfs not allowed (needs root): a data_dir below a regular file instead"
        );
        std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
        dir.path().join("not-a-dir/data")
    };
    let cfg = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "inputs:\n  logs: {{ type: file, paths: [\"{d}/*.log\"] }}\n  app: {{ type: socket, address: \"tcp:127.0.0.1:{port}\" }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {data}\nhttp: {{ enabled: false }}\n",
            d = dir.path().display(),
            port = free_port(),
            data = data.display(),
        ),
    );
    let (status, _, stderr) = run_to_exit(
        &cfg,
        "trawl kept running with its file input failed for a read-only data_dir",
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("writable"),
        "the message names the folder and what it needs: {stderr}"
    );
    assert!(!stderr.contains("listening"), "no input started: {stderr}");
}

/// A disk buffer whose folder cannot be created (`data_dir` below a regular file, which even
/// root cannot write through) stops the start with exit 1 and one error line naming the
/// buffer's folder and why: said once, not once by the output and again by the run.
#[test]
fn an_unwritable_disk_buffer_folder_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let cfg = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "inputs:\n  app: {{ type: socket, address: \"tcp:127.0.0.1:{port}\" }}\noutputs:\n  out: {{ type: stdout, buffer: {{ type: disk }} }}\ndata_dir: {d}/not-a-dir/data\nhttp: {{ enabled: false }}\n",
            d = dir.path().display(),
            port = free_port(),
        ),
    );
    let (status, _, stderr) = run_to_exit(&cfg, "trawl ran without its output's disk buffer");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let folder = format!("{}/not-a-dir/data/buffers/out", dir.path().display());
    let naming: Vec<&str> = stderr.lines().filter(|l| l.contains(&folder)).collect();
    assert_eq!(naming.len(), 1, "one line names the folder: {stderr}");
    assert!(
        naming[0].contains("ERROR") && naming[0].contains("Not a directory"),
        "with the error: {stderr}"
    );
}

/// Runs trawl with `args`, stdout and stderr given, stdin empty, until it exits (20 s at most,
/// else the test fails naming `what`): its exit code.
fn exit_code_with(args: &[&std::ffi::OsStr], stdout: Stdio, stderr: Stdio, what: &str) -> i32 {
    let child = Command::new(TRAWL)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still running after 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `trawl run -c x.yaml 2>&1 | head -1` in a script, or stderr on a full disk: the exit status
/// must still say what happened (1 for a pipeline that cannot start, 0 for a valid file), not
/// 101 from a panic on the failed write, and trawl must not hang because the thread that
/// logged the failure died of it.
#[test]
fn an_unwritable_stderr_or_stdout_does_not_change_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file\n").unwrap();
    let bad = write_pipeline(
        &dir,
        "bad.yaml",
        &format!(
            "inputs:\n  a: {{type: pcap_file, path: {}}}\noutputs:\n  c: {{type: stdout}}\nhttp: {{enabled: false}}\n",
            junk.display()
        ),
    );
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Stdio::from(writer)
    };
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let run: [&std::ffi::OsStr; 3] = ["run".as_ref(), "-c".as_ref(), bad.as_os_str()];
    for (stderr, how) in [(closed_pipe(), "a closed pipe"), (full(), "/dev/full")] {
        let what = format!("run of a pipeline that cannot start, stderr {how}");
        assert_eq!(
            exit_code_with(&run, Stdio::null(), stderr, &what),
            1,
            "{what}"
        );
    }
    let good = write_pipeline(
        &dir,
        "good.yaml",
        "inputs:\n  a: {type: stdin}\noutputs:\n  c: {type: stdout}\n",
    );
    let validate: [&std::ffi::OsStr; 3] = ["validate".as_ref(), "-c".as_ref(), good.as_os_str()];
    for (stdout, how) in [(closed_pipe(), "a closed pipe"), (full(), "/dev/full")] {
        let what = format!("validate of a valid file, stdout {how}");
        assert_eq!(
            exit_code_with(&validate, stdout, Stdio::null(), &what),
            0,
            "{what}"
        );
    }
}
