//! `trawl tee --forward` with acknowledgements, real processes only: a receiving trawl frozen
//! and killed with lines in its buffers gets them again after its restart; a full buffer holds
//! the command instead of dropping; an older sender (no hello) and an older receiver (no
//! greeting) keep working as before.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn trawl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trawl"))
}

/// A receiving trawl: `socket` input (JSON lines) at `sock`, events appended to `out`.
struct Receiver {
    cfg: PathBuf,
    out: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    fn new(dir: &Path, sock: &Path) -> Receiver {
        let cfg = dir.join("receiver.yaml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir: {}/data\nhttp: {{ enabled: false }}\npipeline: {{ batch_size: 100 }}\ninputs:\n  app: {{ type: socket, address: \"unix:{}\", format: json }}\noutputs:\n  out: {{ type: stdout }}\n",
                dir.display(),
                sock.display()
            ),
        )
        .unwrap();
        Receiver {
            cfg,
            out: dir.join("received.jsonl"),
            log: dir.join("receiver.log"),
            child: None,
        }
    }

    fn start(&mut self) {
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        self.child = Some(
            trawl()
                .args(["--log-level", "info", "run", "-c"])
                .arg(&self.cfg)
                .stdout(append(&self.out))
                .stderr(append(&self.log))
                .spawn()
                .unwrap(),
        );
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Messages received so far.
    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits (up to a minute) until every one of `expected` arrived.
    fn wait_for(&self, expected: &[String]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.messages();
            let seen: std::collections::HashSet<&String> = got.iter().collect();
            if expected.iter().all(|m| seen.contains(m)) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn lines(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i:06}")).collect()
}

/// Counts per message; fails naming the missing ones.
fn check_every_line(got: &[String], expected: &[String], log: &Path) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in got {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|m| !counts.contains_key(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} lines never arrived (first: {:?}); receiver log:\n{}",
        missing.len(),
        expected.len(),
        missing.first(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    got.len() - counts.len()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count_lines(p: &Path) -> usize {
    std::fs::read(p)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn lines_in_a_killed_receiver_s_buffers_are_sent_again_after_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("app.sock");
    let mut receiver = Receiver::new(d, &sock);
    receiver.start();
    // 2,000 lines, a pause until `go` exists, 1,000 more: those reach a frozen receiver.
    let script = format!(
        "i=0; while [ $i -lt 2000 ]; do printf 'line %06d\\n' $i; i=$((i+1)); done; \
         while [ ! -e {go} ]; do sleep 0.05; done; \
         while [ $i -lt 3000 ]; do printf 'line %06d\\n' $i; i=$((i+1)); done",
        go = d.join("go").display()
    );
    let passed = d.join("passed.txt");
    let mut tee = trawl()
        .args(["--log-level", "info", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args(["--spill-dir"])
        .arg(d)
        .args(["--", "sh", "-c", &script])
        .stdout(std::fs::File::create(&passed).unwrap())
        .stderr(std::fs::File::create(d.join("tee.log")).unwrap())
        .spawn()
        .unwrap();
    let first = lines(0, 2000);
    check_every_line(&receiver.wait_for(&first), &first, &receiver.log);

    // Frozen, the receiver reads nothing: the next lines wait in its socket's buffers, which a
    // kill -9 throws away. An older tee counted them as shipped once written.
    receiver.signal(libc::SIGSTOP);
    std::fs::write(d.join("go"), b"").unwrap();
    wait_until("the command's 3,000 lines passed through", || {
        count_lines(&passed) == 3000
    });
    // Lets tee write what it holds into the frozen receiver's socket (not an assertion).
    std::thread::sleep(Duration::from_millis(500));
    receiver.kill9();
    let before_restart = receiver.messages().len();
    receiver.start();

    let status = tee.wait().unwrap();
    assert!(status.success(), "tee exited {status}");
    let all = lines(0, 3000);
    let got = receiver.wait_for(&all);
    assert!(
        before_restart < 3000,
        "the frozen receiver had already written every line: nothing was at risk"
    );
    let duplicates = check_every_line(&got, &all, &receiver.log);
    eprintln!(
        "{} lines received before the kill, {} in all, {duplicates} duplicates",
        before_restart,
        got.len()
    );
    let tee_log = std::fs::read_to_string(d.join("tee.log")).unwrap();
    assert!(
        !tee_log.contains("does not acknowledge"),
        "the new receiver was taken for an old one:\n{tee_log}"
    );
}

#[test]
fn a_full_buffer_holds_the_command_until_the_receiver_takes_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("app.sock");
    let pid_file = d.join("app.pid");
    // 200,000 lines (2.4 MB) against 16 KiB of memory, 16 KiB of spill file and the 1 MiB
    // of the command's pipe, nobody listening.
    let script = format!(
        "echo $$ > {pid}; i=0; while [ $i -lt 200000 ]; do printf 'line %06d\\n' $i; i=$((i+1)); done",
        pid = pid_file.display()
    );
    let passed = d.join("passed.txt");
    let mut tee = trawl()
        .args(["--log-level", "warn", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args([
            "--memory-buffer",
            "16KiB",
            "--spill-max",
            "16KiB",
            "--spill-dir",
        ])
        .arg(d)
        .args(["--", "sh", "-c", &script])
        .stdout(std::fs::File::create(&passed).unwrap())
        .stderr(std::fs::File::create(d.join("tee.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the command wrote its pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The command ends up blocked writing to its stdout (syscall 1 = write, fd 1), its output
    // passed through so far: the buffers are full and it waits for room.
    wait_until("the command is blocked writing its stdout", || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.starts_with("1 0x1 "))
            && count_lines(&passed) < 200_000
    });
    assert!(
        tee.try_wait().unwrap().is_none(),
        "tee ended while its command waited"
    );
    let mut receiver = Receiver::new(d, &sock);
    receiver.start();
    let status = tee.wait().unwrap();
    assert!(status.success(), "tee exited {status}");
    assert_eq!(count_lines(&passed), 200_000, "every line passed through");
    let all = lines(0, 200_000);
    let got = receiver.wait_for(&all);
    let duplicates = check_every_line(&got, &all, &receiver.log);
    assert_eq!(duplicates, 0, "no receiver restart, so no line twice");
    let tee_log = std::fs::read_to_string(d.join("tee.log")).unwrap();
    assert!(
        !tee_log.contains("dropped"),
        "nothing may be dropped:\n{tee_log}"
    );
}

#[test]
fn an_older_sender_without_hello_is_read_as_before_and_never_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("app.sock");
    let mut receiver = Receiver::new(d, &sock);
    receiver.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "receiver never listened: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    // What an older `trawl tee --forward` sends: JSON lines from the first byte on.
    let expected = lines(0, 500);
    for m in &expected {
        writeln!(conn, "{{\"message\":\"{m}\",\"stream\":\"stdout\"}}").unwrap();
    }
    let got = receiver.wait_for(&expected);
    assert_eq!(check_every_line(&got, &expected, &receiver.log), 0);
    // Everything was delivered, and nothing came back on the connection.
    conn.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the receiver wrote to a sender that did not say hello: {other:?}"),
    }
}

#[test]
fn a_receiver_that_never_acknowledges_still_gets_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("old.sock");
    // An older trawl on the wire: reads, never writes.
    let listener = UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).unwrap();
        all
    });
    let out = trawl()
        .args(["--log-level", "warn", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args([
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 1000 ]; do printf 'line %06d\\n' $i; i=$((i+1)); done",
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not acknowledge"),
        "no warning that lines are not acknowledged:\n{stderr}"
    );
    assert!(
        !stderr.contains("not shipped"),
        "lines left unshipped:\n{stderr}"
    );
    let bytes = reader.join().unwrap();
    assert!(
        bytes.starts_with(b"\n\r\n"),
        "the hello (two empty lines an older trawl skips) comes first"
    );
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let got: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, lines(0, 1000), "every line once, in order");
}

/// A sidecar that greets, then stops reading (frozen by a debugger, stuck in a full disk):
/// tee's write blocks, and when its flush deadline passes after the app exits, the report on
/// stderr must count every byte the sidecar never acknowledged. It left out those the
/// forwarder held (taken from the spool, stuck in that write): trawl said less was lost than was.
#[test]
fn a_receiver_that_stops_reading_gets_every_unshipped_byte_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("stuck.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 3];
        conn.read_exact(&mut hello).unwrap();
        conn.write_all(b"{\"protocol\":\"trawl-socket\",\"version\":2,\"ack\":\"offset\"}\n")
            .unwrap();
        // Never reads again, never acknowledges, until the test is over.
        let _ = hold.recv();
    });
    // 40,000 lines of 38 bytes: far more than a socket buffer holds.
    let total = 40_000 * 38;
    let out = trawl()
        .args(["--log-level", "error", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args(["--flush-timeout", "1s", "--", "python3", "-c"])
        .arg("import sys\nfor i in range(40000): sys.stdout.write('line %08d padding padding padding\\n' % i)")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let _ = release.send(());
    receiver.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let count = |what: &str| -> u64 {
        stderr
            .split(", ")
            .find_map(|part| part.strip_suffix(what))
            .and_then(|n| n.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` in the report:\n{stderr}"))
    };
    let dropped = count(" bytes of output dropped (buffers full)");
    let unshipped = count(" bytes not shipped");
    assert_eq!(
        dropped + unshipped,
        total,
        "every byte the receiver did not acknowledge is reported:\n{stderr}"
    );
}

/// An app writes Latin-1 text among its UTF-8 lines: the lines arrive with U+FFFD in place of
/// the bad bytes (JSON must be UTF-8), and since the receiver cannot tell, tee says it: once
/// when it happens, with the stream, and with the count when it ends (was: not a word).
#[test]
fn invalid_utf8_forwarded_is_replaced_and_said_by_tee() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("app.sock");
    let mut receiver = Receiver::new(d, &sock);
    receiver.start();
    let tee_log = d.join("tee.log");
    let status = trawl()
        .args(["--log-level", "warn", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args([
            "--",
            "sh",
            "-c",
            r"printf 'ok 1\n'; printf 'caf\351 2\n'; printf 'ok 3\n'; printf 'na\357ve 4\n' >&2",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tee_log).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "tee exited {status}");
    let expected: Vec<String> = ["ok 1", "caf\u{FFFD} 2", "ok 3", "na\u{FFFD}ve 4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got = receiver.wait_for(&expected);
    assert_eq!(check_every_line(&got, &expected, &receiver.log), 0);
    // tee's stderr is the app's too, bad bytes and all.
    let log = String::from_utf8_lossy(&std::fs::read(&tee_log).unwrap()).into_owned();
    let first: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("invalid UTF-8 in the command's output"))
        .collect();
    assert_eq!(first.len(), 1, "said once:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("invalid UTF-8 was replaced") && l.contains("lines=2")),
        "the count at the end:\n{log}"
    );
}
