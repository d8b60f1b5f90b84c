//! Hot reload through the real binary: files tailed into a file output while the pipeline file
//! is replaced and trawl asked to reload (SIGHUP, `POST /-/reload`, `--watch-config`). A refused
//! file keeps the running pipeline; an accepted one replaces only what changed; many reloads in
//! a row lose no line and leak no descriptor, thread or memory.

use crate::support;

use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{free_port, read_json_lines, wait_until, KillOnDrop};

const WAIT: Duration = Duration::from_secs(60);

/// A running `trawl run -c pipeline.yaml` with its monitoring address.
struct Running {
    child: KillOnDrop,
    addr: String,
    log: PathBuf,
}

fn start(cfg: &Path, log: &Path, extra: &[&str]) -> KillOnDrop {
    let err = std::fs::File::create(log).unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(cfg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("starting trawl"),
    )
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sighup(&self) {
        // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
        let r = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(r, 0, "sending SIGHUP");
    }

    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connecting to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    fn metrics(&self) -> String {
        self.http("GET", "/metrics").1
    }

    fn reloads(&self, result: &str) -> u64 {
        let needle = format!("trawl_config_reloads_total{{result=\"{result}\"}} ");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }

    fn wait_reloads(&self, result: &str, n: u64) {
        wait_until(WAIT, &format!("{n} reloads with result {result}"), || {
            self.reloads(result) >= n
        });
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn status(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Descriptors, threads and resident KiB, each the least of ten samples over a second: a
    /// leak stays in every sample, while a reload's passing worker threads (a retiring
    /// input's, one shipping a batch) are gone from some, on a loaded machine too.
    fn settled(&self) -> (usize, u64, u64) {
        let mut least = (usize::MAX, u64::MAX, u64::MAX);
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            least.0 = least.0.min(self.fds());
            least.1 = least.1.min(self.status("Threads:"));
            least.2 = least.2.min(self.status("VmRSS:"));
        }
        least
    }
}

fn append(path: &Path, prefix: &str, range: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = range.map(|i| format!("{prefix} {i}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// How many times each message was delivered to a JSON-lines output.
fn counts(out: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in read_json_lines(out) {
        if let Some(s) = v["message"].as_str() {
            *m.entry(s.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

fn by_message(out: &Path, message: &str) -> Vec<Value> {
    read_json_lines(out)
        .into_iter()
        .filter(|v| v["message"] == message)
        .collect()
}

fn file_input(name: &str, path: &Path) -> String {
    format!(
        "  {name}:\n    type: file\n    paths: [\"{}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\n    registry_flush: 100ms\n",
        path.display()
    )
}

fn global(dir: &Path, port: u16) -> String {
    format!(
        "data_dir: {}\nhttp: {{ address: \"127.0.0.1:{port}\" }}\nshutdown_timeout: 20s\n",
        dir.join("data").display()
    )
}

fn begin(dir: &Path, pipeline: &str, extra: &[&str]) -> (Running, PathBuf) {
    let port = free_port();
    let cfg = dir.join("pipeline.yaml");
    std::fs::write(&cfg, format!("{}{pipeline}", global(dir, port))).unwrap();
    let log = dir.join("trawl.log");
    let child = start(&cfg, &log, extra);
    let t = Running {
        child,
        addr: format!("127.0.0.1:{port}"),
        log,
    };
    wait_until(WAIT, "the monitoring endpoint", || {
        std::net::TcpStream::connect(&t.addr).is_ok()
    });
    (t, cfg)
}

fn rewrite(cfg: &Path, dir: &Path, t: &Running, pipeline: &str) {
    let port = t.addr.rsplit(':').next().unwrap();
    let text = format!("{}{pipeline}", global(dir, port.parse().unwrap()));
    // Written aside then renamed, as editors and ConfigMaps do.
    let tmp = cfg.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, cfg).unwrap();
}

fn wait_lines(out: &Path, prefix: &str, n: usize) {
    wait_until(WAIT, &format!("{n} lines `{prefix} *`"), || {
        let c = counts(out);
        (0..n).all(|i| c.contains_key(&format!("{prefix} {i}")))
    });
}

#[test]
fn an_invalid_file_or_a_setting_that_cannot_change_is_refused_and_the_pipeline_keeps_shipping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
    let good = format!(
        "inputs:\n{}outputs:\n  sink: {{ type: file, path: \"{}\" }}\n",
        file_input("app", &app),
        out.display()
    );
    let (t, cfg) = begin(d, &good, &[]);
    append(&app, "before", 0..10);
    wait_lines(&out, "before", 10);

    // An unknown key on line 11 (3 global lines, `inputs:`, 6 lines of `app`) and an output
    // that names no input.
    let bad = format!(
        "inputs:\n{}    colour: blue\noutputs:\n  sink: {{ type: file, path: \"{}\", inputs: [nope] }}\n",
        file_input("app", &app),
        out.display()
    );
    rewrite(&cfg, d, &t, &bad);
    t.sighup();
    t.wait_reloads("failure", 1);
    let log = t.log();
    let file = cfg.display().to_string();
    assert!(
        log.contains(&format!("{file}:11:5")) && log.contains("colour"),
        "the unknown key is named with file:line:col: {log}"
    );
    assert!(log.contains("unknown input `nope`"), "{log}");
    assert!(log.contains("running pipeline is unchanged"), "{log}");
    assert_eq!(t.reloads("success"), 0);
    assert!(t
        .metrics()
        .contains("trawl_config_last_reload_successful 0"));

    // The same refusal through the monitoring API, with the errors in the answer.
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown input `nope`"), "{body}");

    // data_dir cannot move under running registries.
    let moved = good.clone();
    let port: u16 = t.addr.rsplit(':').next().unwrap().parse().unwrap();
    let text = format!(
        "data_dir: {}\nhttp: {{ address: \"127.0.0.1:{port}\" }}\nshutdown_timeout: 20s\n{moved}",
        d.join("elsewhere").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("data_dir: cannot change while trawl runs"),
        "{body}"
    );
    assert_eq!(t.reloads("failure"), 3);

    append(&app, "after", 0..10);
    wait_lines(&out, "after", 10);
    let c = counts(&out);
    assert!(c.values().all(|&n| n == 1), "no line twice: {c:?}");
    assert!(
        !d.join("elsewhere").exists(),
        "the refused data_dir was never used"
    );

    // The good file again: accepted, nothing to change.
    rewrite(&cfg, d, &t, &good);
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nothing changed"), "{body}");
    assert!(t
        .metrics()
        .contains("trawl_config_last_reload_successful 1"));
}

#[test]
fn components_are_added_changed_and_removed_and_the_unchanged_ones_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, side) = (d.join("app.log"), d.join("side.log"));
    let (out, side_out) = (d.join("out.jsonl"), d.join("side.jsonl"));
    let processor = |v: &str| {
        format!("processors:\n  - {{ type: add_fields, fields: {{ labels.version: \"{v}\" }} }}\n")
    };
    let sink = format!(
        "  sink: {{ type: file, path: \"{}\", inputs: [app] }}\n",
        out.display()
    );
    let one = format!(
        "inputs:\n{}{}outputs:\n{sink}",
        file_input("app", &app),
        processor("v1")
    );
    let (t, cfg) = begin(d, &one, &["--watch-config"]);
    append(&app, "one", 0..20);
    wait_lines(&out, "one", 20);

    // Added: an input and an output of its own; the file watch sees the change.
    let two = format!(
        "inputs:\n{}{}{}outputs:\n{sink}  side_sink: {{ type: file, path: \"{}\", inputs: [side] }}\n",
        file_input("app", &app),
        file_input("side", &side),
        processor("v1"),
        side_out.display()
    );
    append(&side, "side", 0..10);
    rewrite(&cfg, d, &t, &two);
    t.wait_reloads("success", 1);
    wait_lines(&side_out, "side", 10);
    assert!(t.log().contains("outputs added: side_sink"), "{}", t.log());

    // Changed: the processor only.
    append(&app, "two", 0..20);
    wait_lines(&out, "two", 20);
    rewrite(&cfg, d, &t, &two.replace("\"v1\"", "\"v2\""));
    t.wait_reloads("success", 2);
    append(&app, "three", 0..20);
    wait_lines(&out, "three", 20);
    assert_eq!(by_message(&out, "two 3")[0]["labels"]["version"], "v1");
    assert_eq!(by_message(&out, "three 3")[0]["labels"]["version"], "v2");

    // Removed: the side input and its output; its lines written after are not read.
    let three = format!(
        "inputs:\n{}{}outputs:\n{sink}",
        file_input("app", &app),
        processor("v2")
    );
    rewrite(&cfg, d, &t, &three);
    t.wait_reloads("success", 3);
    append(&side, "gone", 0..10);
    append(&app, "four", 0..20);
    wait_lines(&out, "four", 20);
    assert!(!counts(&side_out).keys().any(|k| k.starts_with("gone")));
    let metrics = t.metrics();
    assert!(
        !metrics.contains("component=\"side\"") && !metrics.contains("component=\"side_sink\""),
        "removed components leave /metrics: {metrics}"
    );

    // The app input was never restarted: it started once and delivered every line once.
    let log = t.log();
    assert_eq!(
        log.matches("file input starting").count(),
        2,
        "app once, side once: {log}"
    );
    let c = counts(&out);
    assert_eq!(c.len(), 80, "{c:?}");
    assert!(c.values().all(|&n| n == 1), "no line twice: {c:?}");
    assert_eq!(counts(&side_out).len(), 10);
}

/// A local HTTP server answering every request `200 ok` on its own connection.
fn http_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

fn get(port: u16, path: &str) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("ok"), "{answer}");
}

/// Alternates between two pipelines 100 times while lines are written and HTTP requests are
/// captured on `lo`: `app` (a file) and `web` (a capture) → `sink` never change; pipeline B adds
/// the input `extra` and changes the processor. No line of either file and no transaction is
/// lost, `app`'s and `web`'s are never duplicated, and the process does not grow.
#[test]
fn a_hundred_reloads_while_shipping_lose_nothing_and_leak_nothing() {
    let capture = match trawl::wire::capture::probe("lo") {
        Ok(_) => true,
        Err(e) => {
            // Without CAP_NET_RAW the files are still tested; say so rather than pass quietly.
            eprintln!("NOT TESTED: the capture part needs CAP_NET_RAW on lo: {e}");
            false
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, extra, out) = (d.join("app.log"), d.join("extra.log"), d.join("out.jsonl"));
    let port = http_server();
    let web = if capture {
        format!("  web:\n    type: http\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    ports: [{port}]\n")
    } else {
        String::new()
    };
    let sink = format!("  sink: {{ type: file, path: \"{}\" }}\n", out.display());
    let a = format!(
        "inputs:\n{}{web}processors:\n  - {{ type: add_tags, tags: [a] }}\noutputs:\n{sink}",
        file_input("app", &app)
    );
    let b = format!(
        "inputs:\n{}{web}{}processors:\n  - {{ type: add_tags, tags: [b] }}\noutputs:\n{sink}",
        file_input("app", &app),
        file_input("extra", &extra)
    );
    let (t, cfg) = begin(d, &a, &[]);
    append(&app, "app", 0..1);
    append(&extra, "extra", 0..1);
    wait_lines(&out, "app", 1);
    let transactions = |out: &Path| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for v in read_json_lines(out) {
            if let Some(u) = v["url"]["original"].as_str() {
                *m.entry(u.to_owned()).or_insert(0) += 1;
            }
        }
        m
    };
    if capture {
        wait_until(WAIT, "the capture on lo to start", || {
            t.log().contains("capturing")
        });
        // The capture sees a request once it runs: the first one may come before that.
        let mut k = 0;
        wait_until(WAIT, "a first transaction", || {
            k += 1;
            get(port, &format!("/warm/{k}"));
            std::thread::sleep(Duration::from_millis(100));
            !transactions(&out).is_empty()
        });
    }
    let requests = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while capture && !s.load(std::sync::atomic::Ordering::Relaxed) {
                get(port, &format!("/r/{n}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        });
        (stop, thread)
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, app, extra) = (stop.clone(), app.clone(), extra.clone());
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&app, "app", n..n + 20);
                append(&extra, "extra", n..n + 20);
                n += 20;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    let mut baseline = None;
    for i in 0..100u64 {
        rewrite(&cfg, d, &t, if i % 2 == 0 { &b } else { &a });
        t.sighup();
        t.wait_reloads("success", i + 1);
        if i == 9 {
            baseline = Some(t.settled());
        }
    }
    assert_eq!(t.reloads("failure"), 0, "{}", t.log());
    let after = t.settled();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    requests.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let requested = requests.1.join().unwrap();
    // The last reload (i = 99) left pipeline A: `extra` is not read; B once more reads the rest.
    rewrite(&cfg, d, &t, &b);
    t.sighup();
    t.wait_reloads("success", 101);
    wait_lines(&out, "app", written);
    wait_lines(&out, "extra", written);
    if capture {
        let start = std::time::Instant::now();
        loop {
            let seen = transactions(&out);
            let missing: Vec<usize> = (0..requested)
                .filter(|n| !seen.contains_key(&format!("/r/{n}")))
                .collect();
            if missing.is_empty() {
                break;
            }
            if start.elapsed() > WAIT {
                // What the capture saw and dropped tells trawl's losses from the kernel's.
                let counters: Vec<String> = t
                    .metrics()
                    .lines()
                    .filter(|l| {
                        !l.starts_with('#')
                            && (l.starts_with("trawl_capture") || l.starts_with("trawl_packet"))
                    })
                    .map(str::to_owned)
                    .collect();
                panic!(
                    "{} of {requested} transactions missing after {WAIT:?}: {missing:?}\n{}\n{}",
                    missing.len(),
                    counters.join("\n"),
                    t.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let seen = transactions(&out);
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "the unchanged capture repeated transactions: {twice:?}"
        );
        assert_eq!(
            t.log().matches("capturing").count(),
            1,
            "the capture was opened once: {}",
            t.log()
        );
    }
    let c = counts(&out);
    let app_dups: Vec<_> = c
        .iter()
        .filter(|(k, n)| k.starts_with("app ") && **n > 1)
        .collect();
    assert!(
        app_dups.is_empty(),
        "the unchanged input repeated lines: {app_dups:?}"
    );
    let extra_dups = c
        .iter()
        .filter(|(k, n)| k.starts_with("extra ") && **n > 1)
        .count();
    eprintln!(
        "{written} lines per file, {requested} HTTP requests; extra lines delivered twice: {extra_dups}; fds/threads/RSS KiB after 10 reloads {baseline:?}, after 100 {after:?}"
    );
    let (fds, threads, rss) = baseline.unwrap();
    assert!(after.0 <= fds + 4, "descriptors grew: {fds} → {}", after.0);
    assert!(
        after.1 <= threads + 2,
        "threads grew: {threads} → {}",
        after.1
    );
    assert!(
        after.2 <= rss + 16 * 1024,
        "resident memory grew: {rss} KiB → {} KiB",
        after.2
    );
}

#[test]
fn post_reload_takes_the_monitoring_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
    let port = free_port();
    let cfg = d.join("pipeline.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\nhttp: {{ address: \"127.0.0.1:{port}\", bearer_token: s3cret }}\ninputs:\n{}outputs:\n  sink: {{ type: file, path: \"{}\" }}\n",
            d.join("data").display(),
            file_input("app", &app),
            out.display()
        ),
    )
    .unwrap();
    let log = d.join("trawl.log");
    let _child = start(&cfg, &log, &[]);
    let addr = format!("127.0.0.1:{port}");
    let post = |auth: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /-/reload HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    wait_until(WAIT, "the monitoring endpoint", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let refused = post("");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let wrong = post("Authorization: Bearer nope\r\n");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = post("Authorization: Bearer s3cret\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("reloaded: nothing changed"), "{ok}");
}

/// Runs `trawl tap ARGS` until it says it is attached; its stdout and stderr go to files.
fn attach_tap(d: &Path, name: &str, args: &[&str]) -> (KillOnDrop, PathBuf) {
    let (out, err) = (d.join(format!("{name}.out")), d.join(format!("{name}.err")));
    let child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg("tap")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("starting trawl tap"),
    );
    wait_until(WAIT, &format!("trawl tap {args:?} attached"), || {
        std::fs::read_to_string(&err).is_ok_and(|e| e.contains("tap: watching"))
    });
    (child, out)
}

/// Waits for a tap to stop at its `--limit`; the events it printed.
fn tap_events(mut tap: KillOnDrop, out: &Path) -> Vec<Value> {
    let mut status = None;
    wait_until(WAIT, "trawl tap to stop at its limit", || {
        status = tap.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "trawl tap: {status:?}");
    read_json_lines(out)
}

#[test]
fn a_tap_attached_before_a_reload_goes_on_streaming_the_rebuilt_components() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
    let pipeline = |version: &str, max_files: u32| {
        format!(
            "inputs:\n{}processors:\n  - {{ type: add_fields, fields: {{ labels.version: \"{version}\" }} }}\noutputs:\n  sink: {{ type: file, path: \"{}\", max_files: {max_files} }}\n",
            file_input("app", &app),
            out.display()
        )
    };
    let (t, cfg) = begin(d, &pipeline("v1", 7), &[]);
    append(&app, "before", 0..5);
    wait_lines(&out, "before", 5);

    let addr = ["--address", t.addr.as_str()];
    let (at_output, output_lines) = attach_tap(
        d,
        "at-output",
        &[&addr[..], &["--output", "sink", "--limit", "10"]].concat(),
    );
    let (at_processor, processor_lines) = attach_tap(
        d,
        "at-processor",
        &[&addr[..], &["--processor", "add_fields", "--limit", "10"]].concat(),
    );
    append(&app, "old", 0..5);
    wait_lines(&out, "old", 5);

    // The input (poll_interval), the processor and the output all change: every one of them is
    // rebuilt under its name.
    let changed = pipeline("v2", 8).replace("poll_interval: 50ms", "poll_interval: 60ms");
    rewrite(&cfg, d, &t, &changed);
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 200, "{body}");
    for what in [
        "inputs replaced: app",
        "processors built: #0",
        "outputs replaced: sink",
    ] {
        assert!(body.contains(what), "{what} in {body}");
    }
    append(&app, "new", 0..5);
    wait_lines(&out, "new", 5);

    let expected: Vec<String> = (0..5)
        .map(|i| format!("old {i}"))
        .chain((0..5).map(|i| format!("new {i}")))
        .collect();
    for (tap, lines) in [(at_output, output_lines), (at_processor, processor_lines)] {
        let events = tap_events(tap, &lines);
        let got: Vec<String> = events
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            got, expected,
            "the tap saw the events before and after the reload"
        );
        assert_eq!(events[4]["labels"]["version"], "v1");
        assert_eq!(events[5]["labels"]["version"], "v2");
    }
    let c = counts(&out);
    assert!(c.values().all(|&n| n == 1), "no line twice: {c:?}");
}

#[test]
fn a_conf_d_folder_is_reloaded_as_a_whole_when_one_of_its_files_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
    let port = free_port();
    std::fs::write(
        conf.join("00-input.yaml"),
        format!("{}inputs:\n{}", global(d, port), file_input("app", &app)),
    )
    .unwrap();
    let second = |version: &str, extra: &str| {
        format!(
            "processors:\n  - {{ type: add_fields, fields: {{ labels.version: \"{version}\" }}{extra} }}\noutputs:\n  sink: {{ type: file, path: \"{}\" }}\n",
            out.display()
        )
    };
    // Written beside the folder then renamed in, as a ConfigMap update or an editor would.
    let replace_second = |text: String| {
        let tmp = d.join("10-output.yaml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, conf.join("10-output.yaml")).unwrap();
    };
    replace_second(second("v1", ""));
    let log = d.join("trawl.log");
    let t = Running {
        child: start(&conf, &log, &["--watch-config"]),
        addr: format!("127.0.0.1:{port}"),
        log,
    };
    wait_until(WAIT, "the monitoring endpoint", || {
        std::net::TcpStream::connect(&t.addr).is_ok()
    });
    append(&app, "one", 0..10);
    wait_lines(&out, "one", 10);

    // Only the second file changes; the folder watch sees it.
    replace_second(second("v2", ""));
    t.wait_reloads("success", 1);
    assert!(t.log().contains("processors built: #0"), "{}", t.log());
    append(&app, "two", 0..10);
    wait_lines(&out, "two", 10);
    assert_eq!(by_message(&out, "one 3")[0]["labels"]["version"], "v1");
    assert_eq!(by_message(&out, "two 3")[0]["labels"]["version"], "v2");

    // A mistake in that file is refused, named with that file's own path and line.
    replace_second(second("v3", ", colour: blue"));
    t.wait_reloads("failure", 1);
    let named = format!("{}:2:", conf.join("10-output.yaml").display());
    assert!(
        t.log().contains(&named) && t.log().contains("colour"),
        "{named} in {}",
        t.log()
    );
    append(&app, "three", 0..10);
    wait_lines(&out, "three", 10);
    assert_eq!(by_message(&out, "three 3")[0]["labels"]["version"], "v2");

    // The input in the unchanged file was never restarted: every line once.
    let c = counts(&out);
    assert!(c.values().all(|&n| n == 1), "no line twice: {c:?}");
    assert_eq!(c.len(), 30);
}

/// Sends `lines` to a TCP socket input, one connection.
fn send_tcp(port: u16, lines: &str) {
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the socket input");
    s.write_all(lines.as_bytes()).unwrap();
}

/// An operator edits the port of a socket input and reloads. A port that cannot exist is
/// refused like any invalid file (the old listener keeps serving). A port another process
/// holds is only found when the new listener binds, after the old one stopped: trawl must stay
/// up, report it, and take the corrected file at the next reload.
#[test]
fn a_socket_input_reloaded_onto_a_bad_or_taken_port_leaves_trawl_able_to_reload() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.jsonl");
    let [good, taken] = support::process::server_ports::<2>();
    let pipeline = |address: &str| {
        format!(
            "inputs:\n  app: {{type: socket, address: \"{address}\"}}\noutputs:\n  f: {{type: file, path: {}}}\n",
            out.display()
        )
    };
    let (t, cfg) = begin(d.path(), &pipeline(&format!("tcp:127.0.0.1:{good}")), &[]);
    wait_until(WAIT, "the socket input listening", || {
        std::net::TcpStream::connect(("127.0.0.1", good)).is_ok()
    });
    send_tcp(good, "before 0\n");
    wait_lines(&out, "before", 1);

    rewrite(&cfg, d.path(), &t, &pipeline("tcp:127.0.0.1:70000"));
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 400, "a port above 65535 is refused: {body}");
    assert!(
        body.contains("inputs.app.address") && body.contains("70000"),
        "the refusal names the key and the value: {body}"
    );
    send_tcp(good, "refused 0\n");
    wait_lines(&out, "refused", 1);

    let holder = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    rewrite(
        &cfg,
        d.path(),
        &t,
        &pipeline(&format!("tcp:127.0.0.1:{taken}")),
    );
    let _ = t.http("POST", "/-/reload");
    wait_until(WAIT, "the failed listen logged", || {
        t.log().contains("cannot listen on tcp:127.0.0.1:")
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut child = t.child;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "trawl exited after the reload onto a taken port:\n{}",
        std::fs::read_to_string(d.path().join("trawl.log")).unwrap_or_default()
    );
    let t = Running {
        child,
        addr: t.addr,
        log: t.log,
    };
    let (health, _) = t.http("GET", "/health");
    assert_eq!(health, 503, "the failed input shows in /health");

    drop(holder);
    rewrite(
        &cfg,
        d.path(),
        &t,
        &pipeline(&format!("tcp:127.0.0.1:{good}")),
    );
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 200, "the corrected file is taken: {body}");
    wait_until(WAIT, "the socket input listening again", || {
        std::net::TcpStream::connect(("127.0.0.1", good)).is_ok()
    });
    send_tcp(good, "after 0\n");
    wait_lines(&out, "after", 1);
    wait_until(WAIT, "/health back to 200", || {
        t.http("GET", "/health").0 == 200
    });
}

/// A pipeline file replaced by a FIFO (or a device) must not block the reload until someone
/// writes it: the reload is refused naming the file, trawl goes on shipping, and a SIGTERM
/// afterwards drains and exits 0 as usual.
#[test]
fn a_pipeline_file_replaced_by_a_fifo_is_refused_not_waited_for() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let out = d.path().join("out.jsonl");
    append(&log, "first", 0..3);
    let pipeline = format!(
        "inputs:\n{}outputs:\n  f: {{type: file, path: {}}}\n",
        file_input("app", &log),
        out.display()
    );
    let (t, cfg) = begin(d.path(), &pipeline, &[]);
    wait_lines(&out, "first", 3);
    std::fs::remove_file(&cfg).unwrap();
    let made = std::ffi::CString::new(cfg.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
    let (status, body) = t.http("POST", "/-/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    append(&log, "second", 0..3);
    wait_lines(&out, "second", 3);
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    assert_eq!(
        unsafe { libc::kill(t.pid() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let mut child = t.child;
    wait_until(WAIT, "trawl exiting after SIGTERM", || {
        child.0.try_wait().unwrap().is_some()
    });
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}
