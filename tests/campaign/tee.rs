//! The tee pipeline of the campaign: `trawl tee --forward unix:SOCK -- emitter` ships an app's
//! stdout and stderr lines to a sidecar trawl (`socket` input → `file` output) while the sidecar
//! is killed, stopped and kept down; afterwards every line is looked for in the sidecar's file.
//! The socket input acknowledges what its outputs have, so no loss is allowed, kill -9 included.

use super::node::{rss_kib, Node};
use super::outcome::{Delivered, Outcome, Written};
use super::rng::Rng;
use super::sinks::read_json_files;
use super::writers::{message, LINES_PER_TICK};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Writer ids of the emitter's stdout and stderr lines.
const STDOUT_ID: u32 = 10;
const STDERR_ID: u32 = 11;

/// The app under tee (this test binary run with `--emit TICKS`): every 50 ms, `LINES_PER_TICK`
/// numbered lines to stdout and as many to stderr.
pub fn emit(ticks: u64) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let (mut a, mut b) = (0u64, 0u64);
    for _ in 0..ticks {
        let mut o = String::new();
        let mut e = String::new();
        for _ in 0..LINES_PER_TICK {
            o.push_str(&message(STDOUT_ID, a));
            o.push('\n');
            e.push_str(&message(STDERR_ID, b));
            e.push('\n');
            a += 1;
            b += 1;
        }
        // tee's end of the pipes going away ends the app, as it would a real one.
        if out.write_all(o.as_bytes()).is_err() || err.write_all(e.as_bytes()).is_err() {
            std::process::exit(1);
        }
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(seed: u64, n_faults: u32) -> Outcome {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut o = Outcome {
        pipeline: "tee",
        seed,
        faults_planned: n_faults,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sock = root.join("app.sock");
    let out = root.join("out");
    let addr = format!("127.0.0.1:{}", crate::support::process::free_port());
    let cfg = root.join("sidecar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 3s\npipeline: {{ batch_size: 256, queue_batches: 2 }}\ninputs:\n  app: {{ type: socket, address: \"unix:{sock}\", format: json }}\noutputs:\n  out: {{ type: file, path: \"{out}/events.jsonl\", max_size: 16MiB, max_files: 10000 }}\n",
            data = root.join("data").display(),
            sock = sock.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let mut sidecar = Node::new(
        "sidecar",
        cfg,
        root.join("sidecar.log"),
        Duration::from_secs(3),
    );
    sidecar.start();
    // The app runs for about as long as the faults take (1.5 s each on average).
    let ticks = u64::from(n_faults) * 30 + 40;
    let tee_log = root.join("tee.log");
    let mut tee = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "warn", "tee", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .arg("--spill-dir")
        .arg(root)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--emit", &ticks.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tee_log).unwrap())
        .spawn()
        .expect("starting trawl tee");
    let tee_pid = tee.id();
    let mut tee_rss = 0;
    let mut kills = 0;
    let at = |t: Instant| t.elapsed().as_secs_f64();
    for _ in 0..n_faults {
        std::thread::sleep(Duration::from_millis(rng.range(300, 2000)));
        tee_rss = tee_rss.max(rss_kib(tee_pid).unwrap_or(0));
        sidecar.check_alive();
        sidecar.start();
        let kind = rng.pick(&["sidecar-kill9", "sidecar-sigterm", "sidecar-down"]);
        match kind {
            "sidecar-kill9" => {
                sidecar.kill9();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rng.range(0, 1500)));
            }
            "sidecar-sigterm" => {
                sidecar.term();
                std::thread::sleep(Duration::from_millis(rng.range(0, 1000)));
            }
            _ => {
                sidecar.term();
                // tee keeps the lines in memory, then in its spill file.
                std::thread::sleep(Duration::from_millis(rng.range(1000, 5000)));
            }
        }
        o.crashes += 1;
        sidecar.start();
        o.count(kind, at(started), String::new());
    }
    // The app ends; tee ships what it holds within its flush timeout (10 s) and exits.
    let deadline = Instant::now() + Duration::from_secs(ticks / 20 + 60);
    let status = loop {
        tee_rss = tee_rss.max(rss_kib(tee_pid).unwrap_or(0));
        if let Some(s) = tee.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = tee.kill();
            let _ = tee.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => o.violations.push(format!(
            "trawl tee exited {s}; its log ends with:\n{}",
            super::node::log_tail(&tee_log)
        )),
        None => o
            .violations
            .push("trawl tee did not exit after the app ended".into()),
    }
    o.schedule.push(format!("{:.1}s drain", at(started)));
    // Until the sidecar's file has not grown for 6 s.
    let mut last = u64::MAX;
    let mut idle_since = Instant::now();
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end && idle_since.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(500));
        let size = std::fs::read_dir(&out)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if size != last {
            last = size;
            idle_since = Instant::now();
        }
    }
    sidecar.term();
    o.notes.push(format!(
        "sidecar's exit status after the final SIGTERM: {}",
        sidecar.term_statuses.last().map_or("none", |s| s.as_str())
    ));
    o.max_rss_kib = sidecar.max_rss_kib.load(Ordering::Relaxed).max(tee_rss);
    o.violations.append(&mut sidecar.violations);
    let mut d = Delivered::default();
    read_json_files(&out, "events.jsonl", &mut d);
    let count = ticks * LINES_PER_TICK;
    let none = |_| false;
    let nowhere = |_| String::from("tee");
    let written = [STDOUT_ID, STDERR_ID].map(|id| Written {
        id,
        count,
        excused: &none,
        where_is: &nowhere,
    });
    // After a sidecar restart, `trawl tee --forward` sends again what the sidecar had not
    // acknowledged: what it had written and not yet acknowledged comes twice (a few batches;
    // bounded here as before by one read of the app's pipe, 256 KiB).
    o.duplicates_per_crash = (256 * 1024 / (message(STDOUT_ID, 0).len() + 1)) as u64;
    o.check(&written, &d, false);
    let tee_said = std::fs::read_to_string(&tee_log).unwrap_or_default();
    if tee_said.contains("does not acknowledge") {
        o.violations.push(format!(
            "trawl tee took the sidecar for one that does not acknowledge:\n{}",
            super::node::log_tail(&tee_log)
        ));
    }
    o.notes.push(format!("{kills} sidecar kill -9"));
    o.seconds = at(started);
    o
}
