//! Files sharing the slots of `max_open_files` are closed when idle and reopened by the name the
//! last scan gave them. Rotated by rename in between (the app renames `app.log`, writes one more
//! chunk to it and starts a new `app.log`), that name is the new file's: trawl must reopen the
//! rotated file under its new name, not the new file as if it were the old one grown. Campaign
//! seed 52 (es) stored the 1,920 lines of a renamed file twice under other `_id`s that way.
//! Checked against a real OpenSearch node with `op_type: create` and deterministic ids.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{append, sigterm, write_file, Trawl};

/// Lines each file gets per tick.
const PER_TICK: usize = 10;

/// One app writing numbered lines to `name` in `dir`, rotating it by rename on demand.
struct App {
    dir: PathBuf,
    name: &'static str,
    next: usize,
    rotations: usize,
}

impl App {
    fn write(&mut self) {
        let mut text = String::new();
        for _ in 0..PER_TICK {
            text.push_str(&format!("{} line {:06}\n", self.name, self.next));
            self.next += 1;
        }
        append(&self.dir.join(self.name), &text);
    }

    /// logrotate `create` as an app sees it: renamed, one more chunk written to the renamed
    /// file (the app still holds it), then the app reopens its path (a new file).
    fn rotate(&mut self) {
        self.rotations += 1;
        let rotated = self.dir.join(format!("{}.{}", self.name, self.rotations));
        std::fs::rename(self.dir.join(self.name), &rotated).unwrap();
        let mut text = String::new();
        for _ in 0..PER_TICK {
            text.push_str(&format!("{} line {:06}\n", self.name, self.next));
            self.next += 1;
        }
        append(&rotated, &text);
        self.write();
    }
}

#[test]
fn a_file_rotated_while_closed_for_another_is_reopened_by_its_new_name() {
    let os = OpenSearch::shared();
    let index = "slots-rotation";
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // One slot for two busy files: each is closed when idle for a `poll_interval` so that the
    // other can be read, and reopened by the name the last scan gave it. Scans only every 5 s
    // (no filesystem events, as on NFS), so that name is often older than a rotation.
    let config = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{l}/*.log\", \"{l}/*.log.*\"]\n    max_open_files: 1\n    poll_interval: 100ms\n    scan_interval: 5s\n    watch_events: false\n    close_inactive: 1h\n    registry_flush: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: {index}\n    op_type: create\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n",
            data = dir.path().join("data").display(),
            l = logs.display(),
            url = os.url
        ),
    );
    let apps: Vec<Arc<Mutex<App>>> = ["app.log", "other.log"]
        .into_iter()
        .map(|name| {
            let mut app = App {
                dir: logs.clone(),
                name,
                next: 0,
                rotations: 0,
            };
            app.write();
            Arc::new(Mutex::new(app))
        })
        .collect();
    let mut trawl = Trawl::start(&config, Some(&dir.path().join("trawl.log")));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (apps, stop) = (apps.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for app in &apps {
                    app.lock().unwrap().write();
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // Rotations at instants unrelated to the scans: most fall between a scan and the reopening
    // of app.log by the name that scan saw.
    for pause_ms in [3700, 4300, 2900, 5100, 3300, 4700] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        apps[0].lock().unwrap().rotate();
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let expected: Vec<String> = apps
        .iter()
        .flat_map(|app| {
            let app = app.lock().unwrap();
            (0..app.next)
                .map(|i| format!("{} line {i:06}", app.name))
                .collect::<Vec<_>>()
        })
        .collect();
    let all_stored = |m: &std::collections::HashMap<String, usize>| {
        expected.iter().filter(|l| !m.contains_key(*l)).count()
    };
    let mut missing = usize::MAX;
    // A scan every 5 s and one slot: everything is read within a few rounds.
    for _ in 0..24 {
        missing = all_stored(&os.copies_by_message(index));
        if missing == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    // What would be read twice is read within two more scans.
    std::thread::sleep(Duration::from_secs(11));
    sigterm(&trawl);
    let status = trawl.wait(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM: trawl exited with {status}");
    let m = os.copies_by_message(index);
    let twice: Vec<&String> = expected
        .iter()
        .filter(|l| m.get(*l).copied().unwrap_or(0) > 1)
        .collect();
    let lost: Vec<&String> = expected.iter().filter(|l| !m.contains_key(*l)).collect();
    assert!(
        twice.is_empty() && lost.is_empty(),
        "of {} lines, {} stored more than once (first: {:?}) and {} never stored (first: {:?}; {missing} missing when waiting ended); trawl's log: {}",
        expected.len(),
        twice.len(),
        twice.first(),
        lost.len(),
        lost.first(),
        log_tail(&dir.path().join("trawl.log"))
    );
}

/// The last lines of trawl's log, for a failure message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
