//! The trawl under test as the campaign drives it: started, killed with SIGKILL, stopped with
//! SIGTERM against its shutdown deadline, restarted; it notices when trawl exited on its own or
//! hung, and samples its resident memory from /proc while it runs.

use crate::support::process::Trawl;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Beyond `shutdown_timeout`, how long SIGTERM may take before trawl counts as hung.
const EXIT_MARGIN: Duration = Duration::from_secs(15);

pub struct Node {
    pub name: &'static str,
    cfg: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    trawl: Option<Trawl>,
    shutdown_timeout: Duration,
    pid: Arc<AtomicU32>,
    pub max_rss_kib: Arc<AtomicU64>,
    stop_sampling: Arc<AtomicBool>,
    /// Invariant violations seen while driving it (hangs, exits on its own).
    pub violations: Vec<String>,
    /// Exit statuses after SIGTERM, for the record.
    pub term_statuses: Vec<String>,
    /// How many times trawl was started: each process sees its number in `CAMPAIGN_START`, so
    /// that a pipeline can stamp what each process sent (to tell its duplicates from a crash's).
    pub starts: u64,
}

impl Node {
    pub fn new(name: &'static str, cfg: PathBuf, log: PathBuf, shutdown_timeout: Duration) -> Node {
        let pid = Arc::new(AtomicU32::new(0));
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, m, s) = (pid.clone(), max.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let id = p.load(Ordering::Relaxed);
                if id != 0 {
                    if let Some(kib) = rss_kib(id) {
                        m.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Node {
            name,
            cfg,
            log,
            // Plain logs, so that a violation can quote them.
            env: vec![("NO_COLOR".to_owned(), "1".to_owned())],
            trawl: None,
            shutdown_timeout,
            pid,
            max_rss_kib: max,
            stop_sampling: stop,
            violations: Vec::new(),
            term_statuses: Vec::new(),
            starts: 0,
        }
    }

    /// The running trawl's pid (0 when none runs).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> bool {
        self.trawl.is_some()
    }

    pub fn start(&mut self) {
        self.check_alive();
        if self.trawl.is_none() {
            self.starts += 1;
            let start = self.starts.to_string();
            let mut env: Vec<(&str, &str)> = self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            env.push(("CAMPAIGN_START", &start));
            if std::env::var_os("CAMPAIGN_SNAPSHOTS").is_some() {
                snapshot(&self.cfg, self.starts);
            }
            let t = Trawl::start_env(&self.cfg, Some(&self.log), &env);
            self.pid.store(t.child.id(), Ordering::Relaxed);
            self.trawl = Some(t);
        }
    }

    /// Records a violation when trawl exited without being told to.
    pub fn check_alive(&mut self) {
        let Some(t) = self.trawl.as_mut() else { return };
        if let Ok(Some(status)) = t.child.try_wait() {
            self.pid.store(0, Ordering::Relaxed);
            self.trawl = None;
            self.violations.push(format!(
                "{} exited on its own ({status}); its log ends with:\n{}",
                self.name,
                log_tail(&self.log)
            ));
        }
    }

    pub fn kill9(&mut self) {
        self.check_alive();
        if let Some(mut t) = self.trawl.take() {
            self.pid.store(0, Ordering::Relaxed);
            t.kill9();
        }
    }

    /// SIGHUP: reload the pipeline file.
    pub fn hup(&mut self) {
        self.check_alive();
        if let Some(t) = &self.trawl {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe { libc::kill(t.child.id() as i32, libc::SIGHUP) };
        }
    }

    /// SIGTERM, then waits for the exit up to the shutdown deadline plus a margin; past it,
    /// trawl has hung: a violation, and it is killed.
    pub fn term(&mut self) {
        self.check_alive();
        let Some(mut t) = self.trawl.take() else {
            return;
        };
        self.pid.store(0, Ordering::Relaxed);
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + self.shutdown_timeout + EXIT_MARGIN;
        loop {
            match t.child.try_wait() {
                Ok(Some(status)) => {
                    self.term_statuses.push(status.to_string());
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    self.violations.push(format!(
                        "{} did not exit within shutdown_timeout {:?} + {EXIT_MARGIN:?} of SIGTERM",
                        self.name, self.shutdown_timeout
                    ));
                    t.kill9();
                    return;
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_sampling.store(true, Ordering::Relaxed);
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The last lines of a log file, for a violation's message.
pub fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// With `CAMPAIGN_SNAPSHOTS` set (and `CAMPAIGN_KEEP`, to keep them), what trawl finds at each
/// start: its registries copied to `snapshots/<start>/`, and every file under the run's folder
/// with its inode, birth time, modification time and size, for a post-mortem of a loss.
fn snapshot(cfg: &std::path::Path, start: u64) {
    let Some(dir) = cfg.parent() else { return };
    let to = dir.join("snapshots").join(start.to_string());
    if std::fs::create_dir_all(&to).is_err() {
        return;
    }
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . -path ./snapshots -prune -o -type f -name '*.json' -path '*registry*' -exec cp --parents {{}} '{}' \\; ; \
             find . -path ./snapshots -prune -o -print0 | xargs -0 stat -c '%i %W %Y %s %n' > '{}/files.txt'",
            dir.display(),
            to.display(),
            to.display()
        ))
        .status();
}
