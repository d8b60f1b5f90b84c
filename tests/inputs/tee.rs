//! `trawl tee` end to end with the real binary: byte-identical pass-through of binary output,
//! exit codes and forwarded signals (those ignored by the parent left ignored), lines as
//! events in-process, and lines spooled while the sidecar is down delivered once it is up.

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn trawl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trawl"));
    c.args(["--log-level", "off"]);
    c
}

/// `dir/tee.yaml`: a pipeline for `trawl tee -c` with these outputs (one per line, as YAML
/// under `outputs:`), its data in `dir/data`.
fn tee_pipeline(dir: &Path, outputs: &str) -> std::path::PathBuf {
    let p = dir.join("tee.yaml");
    let text = format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\noutputs:\n{outputs}",
        dir.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn null_pipeline(dir: &Path) -> std::path::PathBuf {
    tee_pipeline(dir, "  sink: { type: \"null\" }\n")
}

/// Deterministic bytes of every value, newlines included.
fn soup(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

#[test]
fn binary_output_passes_through_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (soup(4 << 20, 1), soup(1 << 20, 2));
    std::fs::write(d.join("a.bin"), &a).unwrap();
    std::fs::write(d.join("b.bin"), &b).unwrap();
    let out = trawl()
        .arg("tee")
        .arg("-c")
        .arg(null_pipeline(d))
        .arg("--")
        .args([
            "sh",
            "-c",
            &format!("cat {0}/a.bin; cat {0}/b.bin >&2", d.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout == a,
        "stdout differs: {} bytes vs {}",
        out.stdout.len(),
        a.len()
    );
    assert!(
        out.stderr == b,
        "stderr differs: {} bytes vs {}",
        out.stderr.len(),
        b.len()
    );
}

/// With trawl's stdout a file, not a pipe, the pass-through is read-then-write instead of
/// `tee(2)`: still byte-identical.
#[test]
fn binary_output_passes_through_byte_identical_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = soup(3 << 20, 3);
    std::fs::write(d.join("a.bin"), &a).unwrap();
    let status = trawl()
        .arg("tee")
        .arg("-c")
        .arg(null_pipeline(d))
        .arg("--")
        .args(["cat", &format!("{}/a.bin", d.display())])
        .stdout(std::fs::File::create(d.join("out.bin")).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let out = std::fs::read(d.join("out.bin")).unwrap();
    assert!(
        out == a,
        "stdout differs: {} bytes vs {}",
        out.len(),
        a.len()
    );
}

#[test]
fn exit_codes_propagate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = null_pipeline(dir.path());
    let code = |script: &str| {
        trawl()
            .arg("tee")
            .arg("-c")
            .arg(&cfg)
            .args(["--", "sh", "-c", script])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(code("exit 7"), Some(7));
    assert_eq!(code("exit 0"), Some(0));
    assert_eq!(
        code("kill -9 $$"),
        Some(137),
        "killed by a signal: 128 + signal"
    );
    let missing = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&cfg)
        .args(["--", "/no/such/program"])
        .status()
        .unwrap();
    assert_eq!(missing.code(), Some(127));
    // A pipeline that cannot be built stops tee before the command runs.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "outputs:\n  o: { type: stdout, fromat: json }\n").unwrap();
    let marker = dir.path().join("ran");
    let out = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&bad)
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fromat"));
    assert!(!marker.exists(), "the command did not run");
}

/// Starts tee on a child that reports the signals it gets, sends `sig` to trawl, returns
/// trawl's exit code and the child's output.
fn signal_roundtrip(sig: i32, cfg: &Path) -> (Option<i32>, String) {
    let mut child = trawl()
        .arg("tee")
        .arg("-c")
        .arg(cfg)
        .args(["--", "sh", "-c", "trap 'echo got TERM; exit 42' TERM; trap 'echo got HUP; exit 43' HUP; trap 'echo got INT; exit 44' INT; trap 'echo got QUIT; exit 45' QUIT; trap 'echo got USR1; exit 46' USR1; trap 'echo got USR2; exit 47' USR2; echo ready; while :; do sleep 0.05; done"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("ready") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "child ended before it was ready");
        got.extend_from_slice(&buf[..n]);
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
    stdout.read_to_end(&mut got).unwrap();
    let status = child.wait().unwrap();
    (status.code(), String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn signals_are_forwarded_to_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = null_pipeline(dir.path());
    let (code, out) = signal_roundtrip(libc::SIGTERM, &cfg);
    assert_eq!((code, out.contains("got TERM")), (Some(42), true), "{out}");
    let (code, out) = signal_roundtrip(libc::SIGHUP, &cfg);
    assert_eq!((code, out.contains("got HUP")), (Some(43), true), "{out}");
    let (code, out) = signal_roundtrip(libc::SIGINT, &cfg);
    assert_eq!((code, out.contains("got INT")), (Some(44), true), "{out}");
    // What an application is told besides stopping: reopen logs, dump state (as under tini).
    let (code, out) = signal_roundtrip(libc::SIGQUIT, &cfg);
    assert_eq!((code, out.contains("got QUIT")), (Some(45), true), "{out}");
    let (code, out) = signal_roundtrip(libc::SIGUSR1, &cfg);
    assert_eq!((code, out.contains("got USR1")), (Some(46), true), "{out}");
    let (code, out) = signal_roundtrip(libc::SIGUSR2, &cfg);
    assert_eq!((code, out.contains("got USR2")), (Some(47), true), "{out}");
}

/// Waits up to `limit` for `path` to exist.
fn wait_for_file(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_command_that_writes_nothing_is_stopped_when_trawl_is_killed() {
    // Killed outright (OOM, kill -9), trawl cannot pass anything on; a quiet command would run
    // on with nobody reading what it writes next.
    let dir = tempfile::tempdir().unwrap();
    let cfg = null_pipeline(dir.path());
    let ready = dir.path().join("ready");
    let stopped = dir.path().join("stopped");
    let script = format!(
        "trap 'touch {}; exit 0' TERM; touch {}; while :; do sleep 0.05; done",
        stopped.display(),
        ready.display()
    );
    let mut child = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&cfg)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_file(&ready, Duration::from_secs(10)),
        "the command started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_for_file(&stopped, Duration::from_secs(10)),
        "the command got SIGTERM when trawl died"
    );
}

#[test]
fn a_signal_after_the_command_exits_ends_the_wait_for_unshipped_lines() {
    // The output cannot deliver, so the last lines would be waited for the whole (long) flush
    // deadline; the operator's Ctrl-C or SIGTERM ends the wait, and what was not shipped is
    // reported, not passed over in silence.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = tee_pipeline(
        d,
        "  es: { type: elasticsearch, hosts: [\"http://127.0.0.1:9\"] }\n",
    );
    let exited = d.join("exited");
    let script = format!("echo a line to ship; touch {}; exit 3", exited.display());
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let _ = std::fs::remove_file(&exited);
        let child = trawl()
            .arg("tee")
            .arg("-c")
            .arg(&cfg)
            .args(["--flush-timeout", "120s", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_for_file(&exited, Duration::from_secs(10)),
            "the command ran"
        );
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, sig) };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("trawl ended on the signal, not at the 120 s flush deadline")
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "the command's exit code");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("1 events not delivered"),
            "the line the output never took is reported: {stderr}"
        );
    }
}

#[test]
fn a_pipeline_folder_is_checked_and_run_alike_by_validate_and_tee() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("10-processors.yaml"),
        "processors:\n  - { type: add_tags, tags: [teed] }\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("20-outputs.yaml"),
        format!(
            "data_dir: {}/data\nhttp: {{ enabled: false }}\noutputs:\n  console: {{ type: stdout }}\n",
            d.display()
        ),
    )
    .unwrap();
    let validate = trawl()
        .args(["validate", "--tee", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(0), "{validate:?}");
    let out = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&conf)
        .args(["--", "echo", "from the folder"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let event = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "from the folder")
        .unwrap_or_else(|| panic!("no event in {out:?}"));
    assert_eq!(event["tags"], serde_json::json!(["teed"]));

    // A folder whose pipeline cannot run is refused by both, before the command runs.
    std::fs::write(
        conf.join("30-bad.yaml"),
        "outputs:\n  other: { type: stdout, fromat: json }\n",
    )
    .unwrap();
    let validate = trawl()
        .args(["validate", "--tee", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_ne!(validate.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&validate.stderr).contains("fromat"));
    let marker = d.join("ran");
    let out = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&conf)
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fromat"));
    assert!(!marker.exists(), "the command did not run");

    // tee reads its pipeline from -c only; validate --tee checks nothing else either.
    let env_only = trawl()
        .args(["validate", "--tee"])
        .env("TRAWL_CONFIG", d.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(env_only.status.code(), Some(2), "{env_only:?}");
    assert!(String::from_utf8_lossy(&env_only.stderr).contains("-c"));
}

/// A pipeline whose outputs take only another input (`inputs: [s]`) would ship none of the
/// command's lines, and say nothing: validate --tee and tee refuse it before the command runs,
/// as they refuse an input of the file named `tee`, the name of the command's lines.
#[test]
fn a_pipeline_that_would_ship_none_of_the_commands_lines_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (inputs, outputs, says) in [
        (
            format!("  s: {{ type: socket, address: \"tcp:127.0.0.1:{port}\" }}\n"),
            "  c: { type: stdout, inputs: [s] }\n",
            "no output takes the input `tee`",
        ),
        (
            "  tee: { type: stdin }\n".to_owned(),
            "  c: { type: stdout }\n",
            "the name `tee` is the input this command adds",
        ),
    ] {
        let cfg = d.join("p.yaml");
        std::fs::write(
            &cfg,
            format!("data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n{inputs}outputs:\n{outputs}", d.display()),
        )
        .unwrap();
        let validate = trawl()
            .args(["validate", "--tee", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&validate.stderr);
        assert_eq!(validate.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{err}");
        let marker = d.join("ran");
        let out = trawl()
            .arg("tee")
            .arg("-c")
            .arg(&cfg)
            .args(["--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{out:?}"
        );
        assert!(!marker.exists(), "the command did not run");
    }
}

#[test]
fn lines_become_events_of_the_in_process_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("tee.yaml");
    std::fs::write(&cfg, format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\nprocessors:\n  - {{ type: add_tags, tags: [teed] }}\noutputs:\n  console: {{ type: stdout }}\n",
        d.display()
    )).unwrap();
    let out = trawl()
        .arg("tee")
        .arg("-c")
        .arg(&cfg)
        .args([
            "--",
            "sh",
            "-c",
            "echo hello out; echo hello err >&2; printf 'no newline'",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The child's own output shares trawl's stdout here: an event may follow its unterminated line.
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |m: &str| {
        events
            .iter()
            .find(|e| e["message"] == m)
            .unwrap_or_else(|| panic!("no event {m:?} in {stdout}"))
    };
    assert_eq!(find("hello out")["stream"], "stdout");
    assert_eq!(find("hello err")["stream"], "stderr");
    assert_eq!(find("hello err")["tags"], serde_json::json!(["teed"]));
    assert_eq!(
        find("no newline")["stream"],
        "stdout",
        "the unterminated last line is shipped at exit"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hello err"),
        "stderr passed through"
    );
}

#[test]
fn lines_written_while_the_sidecar_is_down_arrive_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("trawl.sock");
    // 2,000 lines while nothing listens (more than the 4 KiB memory buffer: they spill to
    // disk), then a pause during which the sidecar starts, then one more line.
    let script = "i=0; while [ $i -lt 2000 ]; do echo \"early line $i\"; i=$((i+1)); done; sleep 2; echo late line";
    let mut tee = trawl()
        .arg("tee")
        .args([
            "--forward",
            &format!("unix:{}", sock.display()),
            "--memory-buffer",
            "4KiB",
            "--spill-dir",
        ])
        .arg(d)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let side_cfg = d.join("side.yaml");
    std::fs::write(&side_cfg, format!(
        "data_dir: {0}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: socket, address: \"unix:{1}\", format: json }}\noutputs:\n  out: {{ type: stdout }}\n",
        d.display(), sock.display()
    )).unwrap();
    let side_out = d.join("side.json");
    let mut side = trawl()
        .args(["run", "-c"])
        .arg(&side_cfg)
        .stdout(std::fs::File::create(&side_out).unwrap())
        .spawn()
        .unwrap();
    let status = tee.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let text = std::fs::read_to_string(&side_out).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if events.len() >= 2001 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = side.kill();
    let _ = side.wait();
    let mut msgs: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(msgs.len(), 2001, "every line once");
    assert_eq!(msgs.pop().as_deref(), Some("late line"));
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m, &format!("early line {i}"), "in order");
    }
    assert!(events.iter().all(|e| e["stream"] == "stdout"));
    assert!(spill_files(d).is_empty(), "spill file removed at exit");
}

/// The names of the spill files in `dir`.
fn spill_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".spill"))
        .collect()
}

/// The spill file a process has open, if any (by its descriptor: it may have no name).
fn open_spill_file(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(".spill"))
        })
        .map(|e| e.path())
}

/// A tee killed outright (the OOM killer, `kill -9`) while the sidecar is down and its lines
/// wait in the spill file: the file was left in the spill folder (`/tmp` by default), up to
/// `--spill-max` (256 MiB) at every such death, readable by every user of the machine. Now
/// it is the process's alone (mode 0600) and goes with it.
#[test]
fn a_tee_killed_while_spilling_leaves_no_spill_file_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("nobody-listens.sock");
    let mut tee = trawl()
        .arg("tee")
        .args([
            "--forward",
            &format!("unix:{}", sock.display()),
            "--memory-buffer",
            "4KiB",
            "--spill-dir",
        ])
        .arg(d)
        .args(["--", "sh", "-c", "seq 1 200000; exec sleep 60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let open = loop {
        if let Some(p) = open_spill_file(tee.id()) {
            break p;
        }
        assert!(Instant::now() < deadline, "tee never opened a spill file");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mode = std::fs::metadata(&open).unwrap().permissions().mode();
    tee.kill().unwrap();
    tee.wait().unwrap();
    assert_eq!(
        mode & 0o077,
        0,
        "the spill file is readable by others: {mode:o}"
    );
    assert_eq!(
        spill_files(d),
        Vec::<String>::new(),
        "left behind by a killed tee"
    );
}

#[test]
fn what_cannot_be_kept_is_dropped_counted_and_reported_while_output_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Nobody listens, 1 KiB of memory and 2 KiB of spill file: most lines cannot be kept, and
    // with `--when-full drop` the command does not wait for room.
    let out = trawl()
        .arg("tee")
        .args(["--forward", &format!("unix:{}/nobody.sock", d.display())])
        .args([
            "--memory-buffer",
            "1KiB",
            "--spill-max",
            "2KiB",
            "--flush-timeout",
            "300ms",
            "--when-full",
            "drop",
            "--spill-dir",
        ])
        .arg(d)
        .args([
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 1000 ]; do echo \"line $i\"; i=$((i+1)); done",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1000,
        "the application's output is untouched"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr
        .lines()
        .find(|l| l.starts_with("trawl tee:"))
        .unwrap_or_else(|| panic!("no report in {stderr}"));
    let dropped: u64 = report.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(dropped > 0, "{report}");
    let total = 1000 * 8 + 890;
    let not_shipped: u64 = report
        .split(", ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        dropped + not_shipped,
        total as u64,
        "every byte accounted for: {report}"
    );
}

/// `nohup trawl tee -- app`, or `trawl tee -- app &` in a script (the shell starts background
/// jobs with SIGINT and SIGQUIT ignored): a signal ignored when trawl starts stays ignored,
/// by trawl and by the app, as `nice` or `env` leave it. trawl made it forwarded: the app then
/// died at the terminal's hangup (or Ctrl-C) that the user had asked it to survive.
#[test]
fn signals_ignored_by_the_parent_stay_ignored_by_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = null_pipeline(dir.path());
    let stop = dir.path().join("stop");
    let app = format!(
        "grep SigIgn /proc/self/status; echo ready; while [ ! -e {} ]; do sleep 0.05; done; exit 3",
        stop.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' HUP INT; exec \"$0\" --log-level off tee -c \"$1\" -- sh -c \"$2\"")
        .arg(env!("CARGO_BIN_EXE_trawl"))
        .arg(&cfg)
        .arg(&app)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // A failed assertion must not leave trawl and the app waiting for a stop file forever
    // (they would hold the test's output open): killed, trawl takes the app with it.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("ready") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the app ended before it was ready");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let mask = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("the app's SigIgn line");
    let bit = |sig: i32| 1u64 << (sig - 1);
    assert_eq!(
        mask & (bit(libc::SIGHUP) | bit(libc::SIGINT)),
        bit(libc::SIGHUP) | bit(libc::SIGINT),
        "the app does not ignore SIGHUP and SIGINT: {text}"
    );
    // The hangup and Ctrl-C of a closed terminal: nothing is forwarded, the app runs on.
    // SAFETY: signals to our own child process (trawl, exec'd by the shell).
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGHUP);
        libc::kill(child.0.id() as i32, libc::SIGINT);
    }
    std::fs::write(&stop, "").unwrap();
    stdout.read_to_end(&mut got).unwrap();
    assert_eq!(
        child.0.wait().unwrap().code(),
        Some(3),
        "the app did not exit by itself"
    );
}

/// The pipeline of `trawl tee -c` fails (its file output cannot be opened): the report at
/// exit says so. It blamed the flush deadline, which tee never waited for, sending the user
/// to raise `--flush-timeout` instead of reading the output's error.
#[test]
fn a_failed_pipeline_is_named_in_the_exit_report() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tee_pipeline(
        dir.path(),
        "  out: { type: file, path: /proc/no-such-folder/out.jsonl }\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "error", "tee", "-c"])
        .arg(&cfg)
        .args([
            "--flush-timeout",
            "120s",
            "--",
            "sh",
            "-c",
            "echo one; echo two",
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "the app's status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr
        .lines()
        .find(|l| l.starts_with("trawl tee: "))
        .unwrap_or_else(|| panic!("no report:\n{stderr}"));
    assert!(
        report.ends_with("(the pipeline failed, see its error above)"),
        "{report}"
    );
}
