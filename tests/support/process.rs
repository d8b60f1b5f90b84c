//! The output tests' harness: the built `trawl` binary as a child process (killed on drop),
//! free ports, files, polling and `/metrics` reading. Output tests declare
//! `mod support { pub mod es_server; pub mod kafka; pub mod process; }`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running trawl, killed (SIGKILL) when dropped.
pub struct Trawl {
    pub child: Child,
}

impl Trawl {
    /// Starts `trawl run -c config` with stdin piped, stderr to `log` (or inherited).
    pub fn start(config: &Path, log: Option<&Path>) -> Trawl {
        Trawl::start_env(config, log, &[])
    }

    /// `start` with extra environment variables.
    pub fn start_env(config: &Path, log: Option<&Path>, env: &[(&str, &str)]) -> Trawl {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trawl"));
        cmd.envs(env.iter().copied());
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap();
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        Trawl {
            child: cmd.spawn().expect("starting the trawl binary"),
        }
    }

    /// Writes lines to trawl's stdin.
    pub fn feed(&mut self, text: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(text).expect("writing to trawl's stdin");
    }

    /// Closes stdin and waits for trawl to exit; panics after `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("trawl did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (a graceful stop: drain, commit) and the exit status; panics after `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> std::process::ExitStatus {
        sigterm(self);
        self.wait(timeout)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory (VmHWM) in KiB, while running.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Trawl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A trawl with its monitoring address on a free port, in a folder of its own, started and
/// answering on `/metrics`: what the tests of `trawl tap` and `trawl top` watch.
pub struct Monitored {
    pub dir: tempfile::TempDir,
    /// The monitoring address, `127.0.0.1:PORT`.
    pub addr: String,
    pub trawl: Trawl,
}

impl Monitored {
    /// Runs the pipeline `data_dir: DIR/data`, `http: { address: ADDR }` and then what `body`
    /// returns for DIR (inputs, processors, outputs), its stderr in DIR/trawl.log.
    pub fn start(body: impl FnOnce(&Path) -> String) -> Monitored {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = write_file(
            d,
            "p.yaml",
            &format!(
                "data_dir: {}/data\nhttp: {{ address: \"{addr}\" }}\n{}",
                d.display(),
                body(d)
            ),
        );
        let trawl = Trawl::start(&cfg, Some(&d.join("trawl.log")));
        wait_until(Duration::from_secs(60), "the monitoring endpoint", || {
            http_get(&addr, "/metrics")
                .is_some_and(|(_, text)| text.contains("trawl_events_in_total"))
        });
        Monitored { dir, addr, trawl }
    }
}

/// A free TCP port on 127.0.0.1 (bound then released), below the ephemeral range as
/// `server_ports` tells why.
pub fn free_port() -> u16 {
    let [port] = server_ports::<1>();
    port
}

/// `N` free ports, all different (each held until all are found: two searches may give the
/// same port back, which once gave Kafka two listeners on one port). They are taken below the
/// kernel's ephemeral range: a server binds seconds after being told its port (a JVM starting),
/// or binds it again after a restart, and meanwhile an outgoing connection of another test may
/// be given an ephemeral one, as happened to a Kafka listener on 42951 in CI. A process-wide
/// cursor starting at a place of its own (from the pid) keeps the servers of one run, and runs
/// side by side, apart.
#[allow(dead_code)]
pub fn server_ports<const N: usize>() -> [u16; N] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOW: u32 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&h| h > LOW + 1000)
        .unwrap_or(32_768);
    let span = high - LOW;
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let mut held = Vec::with_capacity(N);
    for _ in 0..span {
        let port = (LOW + CURSOR.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            if held.len() == N {
                return std::array::from_fn(|i| held[i].local_addr().unwrap().port());
            }
        }
    }
    panic!("no {N} free ports between {LOW} and {high}");
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shared captures and log samples (`shared/` beside the repository, or
/// `TRAWL_SHARED_DIR`); a test that needs them fails, rather than passes, without them.
pub fn shared_dir() -> PathBuf {
    [
        std::env::var_os("TRAWL_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("data/pcaps/suricata-verify").is_dir())
    .expect("shared/data not found beside the repository: set TRAWL_SHARED_DIR")
}

/// Sends SIGTERM to the running trawl (a graceful stop: drain, commit, exit 0).
pub fn sigterm(t: &Trawl) {
    // SAFETY: kill(2) on the pid of a child the test owns and has not reaped.
    let r = unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0, "sending SIGTERM");
}

/// `trawl_config_reloads_total{result}` from trawl's /metrics at `addr` (0 while it does not
/// answer or has not counted one yet).
pub fn reloads(addr: &str, result: &str) -> u64 {
    let needle = format!("trawl_config_reloads_total{{result=\"{result}\"}} ");
    http_get(addr, "/metrics")
        .map(|(_, text)| text)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The user's day of a reload that fixes a broken output: trawl starts on `broken` (an output
/// that cannot deliver) with 300 lines in `dir/app.log`; once `/health` at `addr` reports it
/// (503), `fixed` replaces the pipeline file at `config` and `POST /-/reload` must answer 200
/// within `wait` and count one success; then 100 more lines are appended. Returns the running
/// trawl (its log in `dir/trawl.log`) and every line written, in order.
pub fn reload_fixing_the_output(
    dir: &Path,
    config: &Path,
    addr: &str,
    (broken, fixed): (&str, &str),
    wait: Duration,
) -> (Trawl, Vec<String>) {
    std::fs::write(config, broken).unwrap();
    let held = numbered_lines("held", 300);
    append(&dir.join("app.log"), &held);
    let log_path = dir.join("trawl.log");
    let trawl = Trawl::start(config, Some(&log_path));
    let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(wait, "/health to report the broken output", || {
        http_get(addr, "/health").is_some_and(|(status, _)| status == 503)
    });
    std::fs::write(config, fixed).unwrap();
    let answer = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .timeout(wait)
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(
        answer.ok(),
        Some(200),
        "the reload fixing the output ends: {}",
        log()
    );
    assert_eq!(reloads(addr, "success"), 1, "{}", log());
    let after = numbered_lines("after", 100);
    append(&dir.join("app.log"), &after);
    let written = held
        .lines()
        .chain(after.lines())
        .map(str::to_owned)
        .collect();
    (trawl, written)
}

/// Appends `text` to the file at `path` (created when missing), as a logging app does.
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Polls `f` every 50 ms until it returns true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `trawl validate -c config`: its exit code and what it wrote on stderr.
pub fn validate(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(config)
        .output()
        .expect("run trawl validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `trawl run -c config` to completion with `input` on stdin (written from a thread, so
/// that a full stdout pipe cannot stall the writer) and returns its stdout as JSON lines;
/// trawl failing fails the test with its stderr.
pub fn run_on_stdin(config: &Path, data_dir: &Path, input: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(config)
        .env("TRAWL_DATA_DIR", data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `n` numbered log lines, `<what> line 0000` to `<what> line <n-1>`.
pub fn numbered_lines(what: &str, n: usize) -> String {
    (0..n).map(|i| format!("{what} line {i:04}\n")).collect()
}

/// The same lines as a container runtime writes them to a kubelet `0.log` (CRI, whole lines).
pub fn numbered_cri_lines(what: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("2026-11-30T13:00:00.000000000Z stdout F {what} line {i:04}\n"))
        .collect()
}

/// How many events delivered to the JSON-lines file `out` carry one of `what`'s numbered lines.
pub fn delivered_lines(out: &Path, what: &str) -> usize {
    let prefix = format!("{what} line ");
    read_json_lines(out)
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&prefix))
        })
        .count()
}

/// Reads a JSON-lines file (missing file: empty). Only whole lines count: a last line without
/// its newline is one trawl is still writing (a test polling the file reads it mid-write).
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// (status, body) of `GET path` on trawl's monitoring address `addr` (`host:port`), or `None`
/// while nothing answers there.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The address of trawl's `/metrics` from its JSON log line `serving /metrics` (`None` for any
/// other line).
#[allow(dead_code)]
pub fn metrics_address(line: &str) -> Option<String> {
    if !line.contains("serving /metrics") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["address"]
        .as_str()
        .or(v["fields"]["address"].as_str())
        .map(str::to_owned)
}

/// The value of a metric line `name{...component="comp"...}` from trawl's /metrics.
pub fn metric(addr: &str, name: &str, component: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics")?;
    let needle = format!("component=\"{component}\"");
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with the openssl command.
pub fn make_certificates(
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (run scripts/setup.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=trawl test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// How long after `since` trawl's `/health` at `addr` first answered 503, with the answer's
/// body; `None` when it had not within `limit` of `since`.
#[allow(dead_code)]
pub fn health_turns_503(addr: &str, since: Instant, limit: Duration) -> Option<(Duration, String)> {
    while since.elapsed() < limit {
        if let Some((503, body)) = http_get(addr, "/health") {
            return Some((since.elapsed(), body.trim().to_owned()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Asserts that every line of `want` was delivered exactly once and nothing else was:
/// `copies` counts each delivered message.
#[allow(dead_code)]
pub fn assert_each_once(copies: &std::collections::HashMap<String, usize>, want: &[String]) {
    let missing: Vec<&String> = want.iter().filter(|l| !copies.contains_key(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} lines lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = copies
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(l, _)| l)
        .collect();
    assert!(
        twice.is_empty(),
        "{} lines delivered twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(copies.len(), want.len(), "only the lines written");
}
