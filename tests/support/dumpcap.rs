//! dumpcap writing a test's loopback traffic to a pcap file, the capture that trawl and tshark
//! then read back: started and waited for until it captures, stopped with SIGTERM so that it
//! writes what it holds, killed if the test fails first. Tests declare
//! `mod support { pub mod dumpcap; }`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dumpcap may take to start capturing, and to stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running dumpcap on `lo`.
pub struct Dumpcap {
    child: Child,
    pub path: PathBuf,
}

impl Dumpcap {
    /// Captures what `filter` (a capture filter: `tcp port 6379`) selects on `lo` into `path`
    /// (classic pcap), and returns once dumpcap has written the file's header, which it does
    /// when it captures.
    pub fn on_lo(path: &Path, filter: &str) -> Dumpcap {
        Dumpcap::on("lo", path, filter)
    }

    /// As `on_lo`, on `interface`.
    pub fn on(interface: &str, path: &Path, filter: &str) -> Dumpcap {
        Dumpcap::with(&["-P", "-i", interface, "-f", filter], path)
    }

    /// dumpcap with `args` (interfaces and their options; without `-P`, pcapng), writing
    /// into `path`, started as `on_lo` is.
    pub fn with(args: &[&str], path: &Path) -> Dumpcap {
        let interface = args.join(" ");
        let child = Command::new("dumpcap")
            .arg("-q")
            .args(args)
            .arg("-w")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dumpcap is installed (scripts/setup.sh: tshark)");
        let mut cap = Dumpcap {
            child,
            path: path.to_owned(),
        };
        let start = Instant::now();
        while std::fs::metadata(path).map_or(0, |m| m.len()) < 24 {
            if let Ok(Some(status)) = cap.child.try_wait() {
                panic!("dumpcap exited before capturing ({status}): may this user capture on {interface}?");
            }
            assert!(
                start.elapsed() < DEADLINE,
                "dumpcap did not start capturing within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cap
    }

    /// dumpcap's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops dumpcap with SIGTERM and waits for it to exit, so that the file holds everything
    /// it captured.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("dumpcap did not stop within {DEADLINE:?}");
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
