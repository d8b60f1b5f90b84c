//! `trawl top` in a real terminal: tmux runs it against a running trawl that ships lines;
//! the pane shows a row per component, its counts move while lines flow, and `q` quits.

use crate::support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::process::{wait_until, Monitored};

const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of its own (socket `taptop-<pid>-<tag>`: one per test, as a test's drop kills
/// its server), killed and its socket file removed when dropped.
struct Tmux {
    socket: String,
    socket_path: Option<std::path::PathBuf>,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux {
            socket: format!("taptop-{}-{tag}", std::process::id()),
            socket_path: None,
        }
    }

    /// Notes where the server's socket is (the server ends with its last session, leaving it).
    fn note_socket_path(&mut self, session: &str) {
        let out = self.run(&["display-message", "-p", "-t", session, "#{socket_path}"]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if path.contains(&self.socket) {
            self.socket_path = Some(path.into());
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (scripts/setup.sh installs it)")
    }

    fn capture(&self, session: &str) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self, session: &str) -> bool {
        self.run(&["has-session", "-t", session]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The cells of the table row for `kind name`, split on blanks.
fn row(screen: &str, kind: &str, name: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
        (cells.len() > 6 && cells[0] == kind && cells[1] == name).then_some(cells)
    })
}

/// Column 6 of a row is the component's total events out (KIND NAME TYPE IN/s OUT/s IN OUT).
fn out_total(screen: &str, kind: &str, name: &str) -> Option<u64> {
    row(screen, kind, name).and_then(|c| c[6].parse().ok())
}

#[test]
fn top_shows_every_component_and_its_counts_move_until_q() {
    let Monitored {
        dir: _dir,
        addr,
        trawl,
    } = Monitored::start(|d| {
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: add_tags, tags: [x] }}\noutputs:\n  shipped: {{ type: file, path: \"{dd}/out.jsonl\" }}\n",
            dd = d.display()
        )
    });
    let trawl = Arc::new(std::sync::Mutex::new(trawl));
    // Lines keep flowing while top watches.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (trawl, stop) = (trawl.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: String = (0..50).map(|k| format!("line {i} {k}\n")).collect();
                trawl.lock().unwrap().feed(batch.as_bytes());
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut tmux = Tmux::new("top");
    let session = "taptop-top";
    let command = format!(
        "{} top --address {addr} --interval 200ms",
        env!("CARGO_BIN_EXE_trawl")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "200",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.note_socket_path(session);

    let mut screen = String::new();
    wait_until(DEADLINE, "top's rows", || {
        screen = tmux.capture(session);
        row(&screen, "input", "app").is_some()
            && row(&screen, "processor", "#0").is_some()
            && row(&screen, "processor", "pipeline").is_some()
            && row(&screen, "output", "shipped").is_some()
    });
    assert!(screen.contains("trawl top: 127.0.0.1:"), "{screen}");
    for column in [
        "IN/s",
        "OUT/s",
        "ERRORS",
        "DROPPED",
        "QUEUED",
        "FILE LAG",
        "CAP DROPS",
    ] {
        assert!(screen.contains(column), "column {column}:\n{screen}");
    }
    let first = out_total(&screen, "output", "shipped").unwrap();
    // The totals grow, and the rate shows while lines flow.
    let start = Instant::now();
    loop {
        screen = tmux.capture(session);
        let now = out_total(&screen, "output", "shipped").unwrap_or(0);
        let rate: f64 = row(&screen, "output", "shipped")
            .and_then(|c| c[4].parse().ok())
            .unwrap_or(0.0);
        if now > first && rate > 0.0 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the output's counts did not move (first {first}):\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let input_out = out_total(&screen, "input", "app").unwrap();
    assert!(input_out > 0, "{screen}");
    assert_eq!(
        row(&screen, "output", "shipped")
            .unwrap()
            .last()
            .map(String::as_str),
        Some("up")
    );

    let sent = tmux.run(&["send-keys", "-t", session, "q"]);
    assert!(sent.status.success());
    wait_until(DEADLINE, "top to quit on q", || !tmux.alive(session));

    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    trawl.lock().unwrap().finish(DEADLINE);
}

/// A file input whose output is down: reading waits at `max_in_flight` with the whole file
/// undelivered, and top's FILE LAG column shows the file's size on the input's row.
#[test]
fn top_shows_a_file_inputs_lag_while_its_output_is_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let line = "z".repeat(199);
    let body: String = (0..5000).map(|_| format!("{line}\n")).collect();
    let Monitored {
        dir: _dir,
        addr,
        trawl,
    } = Monitored::start(|d| {
        std::fs::write(d.join("big.log"), &body).unwrap();
        format!(
            "inputs:\n  logs: {{ type: file, paths: [\"{dd}/big.log\"], max_in_flight: 64KiB }}\noutputs:\n  es: {{ type: elasticsearch, hosts: [\"http://127.0.0.1:{closed}\"] }}\n",
            dd = d.display()
        )
    });

    let mut tmux = Tmux::new("lag");
    let session = "taptop-lag";
    let command = format!(
        "{} top --address {addr} --interval 200ms",
        env!("CARGO_BIN_EXE_trawl")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "200",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.note_socket_path(session);

    // KIND NAME TYPE IN/s OUT/s IN OUT ERRORS DROPPED FAILED QUEUED FILE LAG CAP DROPS STATE
    let mut screen = String::new();
    let start = Instant::now();
    while row(&screen, "input", "logs").and_then(|c| c.get(11).cloned())
        != Some(body.len().to_string())
    {
        assert!(
            start.elapsed() < DEADLINE,
            "the input's FILE LAG is not the file's {} bytes:\n{screen}",
            body.len()
        );
        std::thread::sleep(Duration::from_millis(100));
        screen = tmux.capture(session);
    }
    assert_eq!(
        row(&screen, "output", "es").and_then(|c| c.get(11).cloned()),
        Some("-".to_owned()),
        "an output has no file lag:\n{screen}"
    );
    let sent = tmux.run(&["send-keys", "-t", session, "q"]);
    assert!(sent.status.success());
    wait_until(DEADLINE, "top to quit on q", || !tmux.alive(session));
    drop(trawl);
}

/// A live capture input's row carries its capture drops (kernel, interface and analyzer drops
/// summed: 0 on an idle loopback), where an input that captures nothing shows `-`.
#[test]
fn top_shows_capture_drops_on_a_capture_inputs_row() {
    if let Err(e) = trawl::wire::capture::probe("lo") {
        panic!("live capture on lo needs CAP_NET_RAW (run as root or with the capability): {e}");
    }
    let Monitored {
        dir: _dir,
        addr,
        trawl,
    } = Monitored::start(|d| {
        format!(
            "inputs:\n  app: {{ type: stdin }}\n  web: {{ type: http, capture: {{ interfaces: [lo] }}, ports: [9] }}\noutputs:\n  shipped: {{ type: file, path: \"{dd}/out.jsonl\" }}\n",
            dd = d.display()
        )
    });

    let mut tmux = Tmux::new("capdrops");
    let session = "taptop-capdrops";
    let command = format!(
        "{} top --address {addr} --interval 200ms",
        env!("CARGO_BIN_EXE_trawl")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "200",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.note_socket_path(session);

    // KIND NAME TYPE IN/s OUT/s IN OUT ERRORS DROPPED FAILED QUEUED FILE LAG CAP DROPS STATE
    let mut screen = String::new();
    wait_until(DEADLINE, "the capture input's row with its drops", || {
        screen = tmux.capture(session);
        row(&screen, "input", "web")
            .and_then(|c| c.get(12).cloned())
            .is_some_and(|cell| cell.parse::<u64>().is_ok())
    });
    assert_eq!(
        row(&screen, "input", "app").and_then(|c| c.get(12).cloned()),
        Some("-".to_owned()),
        "stdin captures nothing:\n{screen}"
    );
    let sent = tmux.run(&["send-keys", "-t", session, "q"]);
    assert!(sent.status.success());
    wait_until(DEADLINE, "top to quit on q", || !tmux.alive(session));
    drop(trawl);
}
