//! `trawl tap` against the real binary while it ships: the events seen at an input, after a
//! processor, after every processor and at an output are the ones that really passed there
//! (compared with what the outputs wrote); `--limit` and `--sample` are exact; a client that
//! never reads drops tap events (counted) without slowing delivery; bearer token and unix
//! socket addresses work as for the other monitoring endpoints.

use crate::support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::process::{
    free_port, read_json_lines, wait_until, write_file, KillOnDrop, Monitored, Trawl,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// A running `trawl tap`: its stderr lines arrive on a channel, its stdout is collected.
struct Tap {
    child: KillOnDrop,
    stderr: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
    seen_stderr: Vec<String>,
}

impl Tap {
    /// Starts `trawl tap ARGS` and waits until trawl says it is attached.
    fn attach(args: &[&str]) -> Tap {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg("tap")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut tap = Tap {
            child: KillOnDrop(child),
            stderr: rx,
            stdout,
            seen_stderr: Vec::new(),
        };
        let start = Instant::now();
        loop {
            match tap.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.starts_with("tap: watching") => {
                    tap.seen_stderr.push(l);
                    return tap;
                }
                Ok(l) => tap.seen_stderr.push(l),
                Err(_) => {}
            }
            if let Some(status) = tap.child.0.try_wait().unwrap() {
                panic!(
                    "trawl tap {args:?} exited ({status}) before attaching: {:?}",
                    tap.seen_stderr
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "trawl tap {args:?} did not attach: {:?}",
                tap.seen_stderr
            );
        }
    }

    /// Waits for the tap to exit on its own (its limit reached); its status and JSON lines.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<Value>, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "trawl tap did not stop at its limit"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.stdout.join().unwrap();
        self.seen_stderr.extend(self.stderr.try_iter());
        // One JSON value per line, or indented over several with --pretty.
        let lines = serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .map(|v| v.unwrap_or_else(|e| panic!("{out:?}: {e}")))
            .collect();
        (status, lines, self.seen_stderr)
    }
}

/// The raw `/metrics` text (or empty when not answering yet).
fn metrics_text(addr: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The value of an unlabelled sample.
fn plain_metric(addr: &str, name: &str) -> Option<f64> {
    metrics_text(addr)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_for_server(addr: &str) {
    wait_until(DEADLINE, "the monitoring endpoint", || {
        metrics_text(addr).contains("trawl_events_in_total")
    });
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn tap_shows_each_point_with_limit_and_sample() {
    let Monitored {
        dir,
        addr,
        mut trawl,
    } = Monitored::start(|d| {
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: add_tags, tags: [seen] }}\n  - {{ type: drop, when: {{ contains: {{ message: noise }} }} }}\noutputs:\n  all: {{ type: file, path: \"{dd}/all.jsonl\" }}\n  errors: {{ type: file, path: \"{dd}/errors.jsonl\", when: {{ contains: {{ message: ERROR }} }} }}\n",
            dd = d.display()
        )
    });
    let d = dir.path();
    let a = ["--address", addr.as_str()];
    let tap = |extra: &[&str]| Tap::attach(&[&a[..], extra].concat());
    let at_input = tap(&["--input", "app", "--limit", "12"]);
    let after_tags = tap(&["--processor", "add_tags", "--limit", "12"]);
    let after_drop = tap(&["--processor", "#1", "--limit", "9"]);
    let after_all = tap(&["--processor", "pipeline", "--limit", "9"]);
    let at_errors = tap(&["--output", "errors", "--limit", "3", "--meta"]);
    let at_all = tap(&["--output", "all", "--limit", "9"]);
    let sampled = tap(&["--input", "app", "--sample", "4", "--limit", "3"]);
    let sent: Vec<String> = (0..12)
        .map(|i| match i % 4 {
            0 | 1 => format!("INFO ok {i}"),
            2 => format!("ERROR bad {i}"),
            _ => format!("noise {i}"),
        })
        .collect();
    trawl.feed(format!("{}\n", sent.join("\n")).as_bytes());

    let (st, input_events, _) = at_input.finish();
    assert!(st.success());
    assert_eq!(
        messages(&input_events),
        sent,
        "the input's events, in order"
    );
    for e in &input_events {
        assert!(e.get("tags").is_none() && e.get("host").is_none(), "{e}");
    }
    let (st, tagged, _) = after_tags.finish();
    assert!(st.success());
    assert_eq!(messages(&tagged), sent, "add_tags drops nothing");
    assert!(tagged
        .iter()
        .all(|e| e["tags"] == serde_json::json!(["seen"])));
    let kept: Vec<String> = sent
        .iter()
        .filter(|m| !m.contains("noise"))
        .cloned()
        .collect();
    let (st, after_drop_events, _) = after_drop.finish();
    assert!(st.success());
    assert_eq!(
        messages(&after_drop_events),
        kept,
        "after the drop processor"
    );
    let (st, after_all_events, _) = after_all.finish();
    assert!(st.success());
    assert_eq!(after_all_events, after_drop_events);

    let (st, errors, _) = at_errors.finish();
    assert!(st.success());
    let (st, all, _) = at_all.finish();
    assert!(st.success());
    let (st, sample, _) = sampled.finish();
    assert!(st.success());
    assert_eq!(
        messages(&sample),
        [sent[0].as_str(), sent[4].as_str(), sent[8].as_str()],
        "one in four, from the first"
    );

    // What the outputs were handed is what they wrote.
    wait_until(DEADLINE, "both outputs written", || {
        read_json_lines(&d.join("all.jsonl")).len() == 9
            && read_json_lines(&d.join("errors.jsonl")).len() == 3
    });
    assert_eq!(all, read_json_lines(&d.join("all.jsonl")));
    for e in &errors {
        assert_eq!(e["component_kind"], "output");
        assert_eq!(e["component"], "errors");
    }
    let errors: Vec<Value> = errors.into_iter().map(|e| e["event"].clone()).collect();
    assert_eq!(errors, read_json_lines(&d.join("errors.jsonl")));

    // Every client detached once its limit was reached; all it was sent is counted.
    wait_until(DEADLINE, "tap clients detached", || {
        plain_metric(&addr, "trawl_tap_clients") == Some(0.0)
    });
    assert_eq!(
        plain_metric(&addr, "trawl_tap_events_sent_total"),
        Some((12 + 12 + 9 + 9 + 3 + 9 + 3) as f64)
    );
    assert_eq!(
        plain_metric(&addr, "trawl_tap_events_dropped_total"),
        Some(0.0)
    );

    // A name that matches nothing is refused with the points that exist.
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["tap", "--address", &addr, "--output", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no component matches output `nope`"), "{err}");
    assert!(err.contains("output `errors` (file)"), "{err}");
    trawl.finish(DEADLINE);
}

#[test]
fn a_client_that_never_reads_does_not_slow_delivery() {
    let Monitored {
        dir,
        addr,
        mut trawl,
    } = Monitored::start(|d| {
        format!(
            "inputs:\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: file, path: \"{dd}/out.jsonl\" }}\n",
            dd = d.display()
        )
    });
    let d = dir.path();
    // Attached, and then never read: its socket buffers and its queue in trawl fill up.
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    write!(stuck, "GET /api/tap?input=app HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_until(DEADLINE, "the client attached", || {
        plain_metric(&addr, "trawl_tap_clients") == Some(1.0)
    });
    const LINES: usize = 100_000;
    let pad = "x".repeat(200);
    let mut text = String::with_capacity(LINES * 220);
    for i in 0..LINES {
        text.push_str(&format!("line {i} {pad}\n"));
    }
    trawl.feed(text.as_bytes());
    let delivered = || support::process::metric(&addr, "trawl_events_out_total", "out");
    wait_until(
        Duration::from_secs(180),
        "every line delivered while the tap client reads nothing",
        || delivered() == Some(LINES as f64),
    );
    let dropped = plain_metric(&addr, "trawl_tap_events_dropped_total").unwrap();
    let sent = plain_metric(&addr, "trawl_tap_events_sent_total").unwrap();
    assert!(dropped > 0.0, "the stuck client's events were dropped");
    assert_eq!(
        dropped + sent,
        LINES as f64,
        "every event is sent or counted as dropped"
    );
    assert_eq!(plain_metric(&addr, "trawl_tap_clients"), Some(1.0));

    // The client reads at last: what was queued for it, then a notice of what it missed.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stuck.try_clone().unwrap());
    let mut head = String::new();
    reader.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut events = 0u64;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["component"] == "app" {
                events += 1;
            }
        }
        line.clear();
        if events as f64 == sent {
            break;
        }
    }
    assert_eq!(
        events as f64, sent,
        "what was counted as sent was delivered to the client"
    );
    drop(reader);
    drop(stuck);
    // One more line: the closed connection is noticed and the client detached.
    trawl.feed(b"after\n");
    wait_until(DEADLINE, "the gone client detached", || {
        plain_metric(&addr, "trawl_tap_clients") == Some(0.0)
    });
    trawl.finish(DEADLINE);
    assert_eq!(read_json_lines(&d.join("out.jsonl")).len(), LINES + 1);
}

#[test]
fn tap_uses_the_bearer_token_and_unix_socket_of_the_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("monitor.sock");
    let cfg = write_file(
        d,
        "p.yaml",
        &format!(
            "data_dir: {dd}/data\nhttp: {{ address: \"unix:{sock}\", bearer_token: \"${{TAPTOP_TEST_TOKEN:-s3cret}}\" }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: \"null\" }}\n",
            dd = d.display(),
            sock = sock.display()
        ),
    );
    let mut trawl = Trawl::start(&cfg, Some(&d.join("trawl.log")));
    wait_until(DEADLINE, "the monitoring socket", || sock.exists());
    let unix = format!("unix:{}", sock.display());
    // Without the token: refused, saying how to give one.
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["tap", "--address", &unix, "--input", "app"])
        .env_remove("TRAWL_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bearer token"), "{err}");
    // A wrong token from the environment: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["tap", "--address", &unix, "--input", "app"])
        .env("TRAWL_HTTP_TOKEN", "s3cre7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the bearer token"));
    // Address and token from the pipeline file; and a token file.
    let from_file = Tap::attach(&[
        "-c",
        cfg.to_str().unwrap(),
        "--input",
        "app",
        "--limit",
        "2",
    ]);
    let token = write_file(d, "token", "s3cret\n");
    let from_token_file = Tap::attach(&[
        "--address",
        &unix,
        "--token-file",
        token.to_str().unwrap(),
        "--output",
        "out",
        "--limit",
        "2",
        "--pretty",
    ]);
    trawl.feed(b"one\ntwo\n");
    let (st, events, _) = from_file.finish();
    assert!(st.success());
    assert_eq!(messages(&events), ["one", "two"]);
    let (st, events, _) = from_token_file.finish();
    assert!(st.success());
    assert_eq!(messages(&events), ["one", "two"]);
    trawl.finish(DEADLINE);
}

/// `--pretty` prints each event as indented JSON (several lines per event).
#[test]
fn pretty_output_is_indented_json() {
    let Monitored {
        dir: _dir,
        addr,
        mut trawl,
    } = Monitored::start(|_| {
        "inputs:\n  app: { type: stdin }\noutputs:\n  out: { type: \"null\" }\n".into()
    });
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["tap", "--address", &addr, "--limit", "1", "--pretty"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = child.0.stderr.take().unwrap();
    let mut first = String::new();
    BufReader::new(err).read_line(&mut first).unwrap();
    assert!(first.starts_with("tap: watching output out"), "{first}");
    trawl.feed(b"hello\n");
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["message"], "hello");
    assert!(out.lines().count() > 3, "{out}");
    assert!(out.contains("\n  \"message\": \"hello\""), "{out}");
    trawl.finish(DEADLINE);
}

/// What `trawl tap` answers for a point that matches nothing: exit 1 and the points it lists.
fn points_listed(addr: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["tap", "--address", addr, "--input", "no-such-input"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A reload that removes an input, a processor (the second, `#1`) and an output takes their
/// tap points away: `trawl tap` neither lists nor matches them any more, and what stays is
/// still tapped.
#[test]
fn a_reload_takes_away_the_tap_points_of_removed_components() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let app = write_file(d, "app.log", "");
    let old = write_file(d, "old.log", "");
    let pipeline = |with_old: bool| {
        let (input, processor, output) = if with_old {
            (
                format!("  old: {{ type: file, paths: [\"{}\"] }}\n", old.display()),
                "  - { type: add_tags, tags: [old], when: { input: old } }\n",
                format!(
                    "  gone: {{ type: file, path: \"{}/gone.jsonl\", inputs: [old] }}\n",
                    d.display()
                ),
            )
        } else {
            (String::new(), "", String::new())
        };
        format!(
            "data_dir: {d}/data\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app: {{ type: file, paths: [\"{app}\"] }}\n{input}\
             processors:\n  - {{ type: add_tags, tags: [app] }}\n{processor}\
             outputs:\n  out: {{ type: file, path: \"{d}/out.jsonl\", inputs: [app] }}\n{output}",
            d = d.display(),
            app = app.display(),
        )
    };
    let cfg = write_file(d, "p.yaml", &pipeline(true));
    let trawl = Trawl::start(&cfg, Some(&d.join("trawl.log")));
    wait_for_server(&addr);
    let before = points_listed(&addr);
    for point in [
        "input `old`",
        "processor `#1`",
        "output `gone`",
        "input `app`",
    ] {
        assert!(before.contains(point), "{point} not listed: {before}");
    }

    write_file(d, "p.yaml", &pipeline(false));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGHUP) };
    wait_until(DEADLINE, "the reload", || {
        metrics_text(&addr).contains("trawl_config_reloads_total{result=\"success\"} 1")
    });
    let after = points_listed(&addr);
    for point in ["input `old`", "processor `#1`", "output `gone`"] {
        assert!(!after.contains(point), "{point} still listed: {after}");
    }
    for point in ["input `app`", "processor `#0`", "output `out`"] {
        assert!(after.contains(point), "{point} no longer listed: {after}");
    }
    for (flag, name) in [
        ("--input", "old"),
        ("--processor", "#1"),
        ("--output", "gone"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["tap", "--address", &addr, flag, name])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag} {name}: {out:?}");
    }
    // What stays is tapped as before.
    let tap = Tap::attach(&["--address", &addr, "--input", "app", "--limit", "1"]);
    support::process::append(&app, "after the reload\n");
    let (status, events, _) = tap.finish();
    assert!(status.success());
    assert_eq!(messages(&events), ["after the reload"]);
}
