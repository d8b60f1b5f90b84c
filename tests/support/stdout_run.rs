//! The real trawl binary run on a pipeline file with its stdout (the events, one JSON line each)
//! and stderr (its own logs) going to files, for the `file` input's tests: read the events
//! written so far, wait for a condition with a deadline, stop it gracefully or with SIGKILL.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running trawl; killed when dropped.
pub struct Trawl {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Trawl {
    /// Writes `config` to `dir/pipeline.yaml` and runs trawl on it; events go to `dir/<out_name>`
    /// and its logs to `dir/<out_name>.stderr`.
    pub fn start(dir: &Path, config: &str, out_name: &str) -> Trawl {
        let cfg = dir.join("pipeline.yaml");
        std::fs::write(&cfg, config).unwrap();
        let out = dir.join(out_name);
        let err = dir.join(format!("{out_name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Trawl { child, out, err }
    }

    /// The complete JSON lines written so far.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read(&self.out).unwrap_or_default();
        let end = text
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        String::from_utf8_lossy(&text[..end])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// trawl's own log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `pred` holds for the events written so far; panics after `secs` with what
    /// was seen and trawl's log.
    pub fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for {what}: {} events so far\nstderr: {}",
                    ev.len(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits (at most 30 s) for a clean exit.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "graceful stop: {status:?}\n{}",
                    self.stderr()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "trawl did not stop within 30 s of SIGTERM\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash: nothing flushed, no registry written at exit.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether trawl has `path` open (from `/proc/<pid>/fd`).
    pub fn has_open(&self, path: &Path) -> bool {
        has_open(self.child.id(), path)
    }
}

/// Whether process `pid` has `path` open, also once deleted (from `/proc/<pid>/fd`).
pub fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target == path || target.to_string_lossy() == format!("{} (deleted)", path.display())
        })
    })
}

impl Drop for Trawl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline with one `file` input named `logs` (its YAML body, indented by 4) and stdout.
pub fn pipeline(dir: &Path, input: &str) -> String {
    format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n  logs:\n{input}\noutputs:\n  out: {{ type: stdout }}\n",
        dir.display()
    )
}

/// The `message` of each event.
pub fn messages(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// How many times each `message` came.
pub fn counts(ev: &[Value]) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for msg in messages(ev) {
        *m.entry(msg).or_insert(0) += 1;
    }
    m
}

/// The `i`th line of the tests' logs: numbered so that missing and repeated ones can be named.
pub fn line(i: usize) -> String {
    format!("line {i:07} the quick brown fox jumps over the lazy dog")
}
