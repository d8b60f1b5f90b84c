//! The `file` input end to end with the real binary: rotation by rename and by copytruncate,
//! `kill -9` and restart, multiline with the timeout path, container formats and Kubernetes
//! path metadata, a 10 MB line, binary junk. Events are read from trawl's stdout (a file).

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running trawl whose stdout goes to a file; killed when dropped.
struct Trawl {
    child: Child,
    out: PathBuf,
}

impl Trawl {
    fn start(dir: &Path, config: &str, out_name: &str) -> Trawl {
        let cfg = dir.join("pipeline.yaml");
        std::fs::write(&cfg, config).unwrap();
        let out = dir.join(out_name);
        let stdout = std::fs::File::create(&out).unwrap();
        let stderr = std::fs::File::create(dir.join(format!("{out_name}.stderr"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Trawl { child, out }
    }

    fn events(&self) -> Vec<Value> {
        read_events(&self.out)
    }

    /// Waits until `pred` holds for the events written so far, or panics after `secs`.
    fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            if Instant::now() > deadline {
                let err = std::fs::read_to_string(self.out.with_extension("json.stderr"))
                    .unwrap_or_default();
                panic!(
                    "timed out waiting for {what}: {} events so far\nstderr: {err}",
                    ev.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Trawl {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Complete JSON lines of an output file (a last line being written is left out).
fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read(path).unwrap_or_default();
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

fn pipeline(dir: &Path, input: &str) -> String {
    format!(
        "data_dir: {}/data\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n  logs:\n{input}\noutputs:\n  out: {{ type: stdout }}\n",
        dir.display()
    )
}

fn messages(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn counts(ev: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for msg in messages(ev) {
        *m.entry(msg).or_insert(0) += 1;
    }
    m
}

const LINES: usize = 200_000;
const ROTATE_EVERY: usize = 20_000;

fn line(i: usize) -> String {
    format!("line {i:07} the quick brown fox jumps over the lazy dog")
}

/// Writes LINES lines to `dir/app.log`, calling `rotate(n)` every ROTATE_EVERY lines.
fn write_with_rotation(dir: &Path, rotate: impl Fn(usize)) {
    let path = dir.join("app.log");
    let mut w = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap(),
    );
    for i in 0..LINES {
        if i > 0 && i % ROTATE_EVERY == 0 {
            w.flush().unwrap();
            drop(w);
            rotate(i / ROTATE_EVERY);
            w = std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap(),
            );
        }
        writeln!(w, "{}", line(i)).unwrap();
        if i % 5000 == 0 {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
}

fn assert_exactly_once(ev: &[Value]) {
    let c = counts(ev);
    let missing: Vec<usize> = (0..LINES)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    let dups: Vec<(&String, &usize)> = c.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated lines: {dups:?}");
    assert_eq!(ev.len(), LINES, "no other events");
}

#[test]
fn rotation_by_rename_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/app.log\"]\n    scan_interval: 1s\n    poll_interval: 50ms\n    close_removed: 1s",
        d.display()
    ));
    std::fs::write(d.join("app.log"), b"").unwrap();
    let t = Trawl::start(&d, &cfg, "out.json");
    std::thread::sleep(Duration::from_millis(500));
    write_with_rotation(&d, |n| {
        std::fs::rename(d.join("app.log"), d.join(format!("app.log.{n}"))).unwrap()
    });
    let ev = t.wait_for(90, "every line", |ev| ev.len() >= LINES);
    // Let anything extra (a duplicate) arrive before judging.
    std::thread::sleep(Duration::from_millis(1500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly_once(&ev);
}

#[test]
fn copytruncate_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/app.log*\"]\n    scan_interval: 1s\n    poll_interval: 50ms",
        d.display()
    ));
    std::fs::write(d.join("app.log"), b"").unwrap();
    let t = Trawl::start(&d, &cfg, "out.json");
    std::thread::sleep(Duration::from_millis(500));
    write_with_rotation(&d, |n| {
        // What logrotate's copytruncate does: copy, then truncate in place.
        std::fs::copy(d.join("app.log"), d.join(format!("app.log.{n}"))).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("app.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    let ev = t.wait_for(90, "every line", |ev| ev.len() >= LINES);
    std::thread::sleep(Duration::from_millis(1500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly_once(&ev);
}

#[test]
fn kill_9_then_restart_loses_nothing_and_duplicates_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let total = 300_000;
    std::fs::write(d.join("app.log"), b"").unwrap();
    // The application keeps writing (5,000 lines every 30 ms) while trawl is killed.
    // Half of the lines are written only after the kill, so the kill is always mid-stream.
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let path = d.join("app.log");
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            for chunk in 0..total / 5000 {
                if chunk == total / 10_000 {
                    let _ = killed_rx.recv();
                }
                let mut buf = String::new();
                for i in chunk * 5000..(chunk + 1) * 5000 {
                    buf.push_str(&line(i));
                    buf.push('\n');
                }
                f.write_all(buf.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let cfg = pipeline(
        &d,
        &format!(
            "    type: file\n    paths: [\"{}/app.log\"]\n    registry_flush: 100ms",
            d.display()
        ),
    );
    let mut first = Trawl::start(&d, &cfg, "out1.json");
    first.wait_for(60, "a first part", |ev| ev.len() >= 20_000);
    first.kill9();
    let before = first.events();
    killed_tx.send(()).unwrap();
    assert!(
        before.len() <= total / 2,
        "killed mid-stream (got {} of {total})",
        before.len()
    );
    writer.join().unwrap();

    let second = Trawl::start(&d, &cfg, "out2.json");
    let seen = |ev: &[Value]| {
        let mut c = counts(&before);
        for m in messages(ev) {
            *c.entry(m).or_insert(0) += 1;
        }
        c
    };
    let after = second.wait_for(60, "the rest", |ev| seen(ev).len() >= total);
    std::thread::sleep(Duration::from_millis(500));
    let after = if second.events().len() > after.len() {
        second.events()
    } else {
        after
    };
    let c = seen(&after);
    assert_eq!(c.len(), total, "every line delivered across the crash");
    let duplicates = before.len() + after.len() - total;
    // Re-read: what was in flight plus at most one registry flush interval of delivery.
    eprintln!(
        "kill -9: {} before, {} after, {duplicates} duplicates",
        before.len(),
        after.len()
    );
    assert!(
        duplicates <= before.len(),
        "duplicates bounded: {duplicates}"
    );
    assert!(
        duplicates < 60_000,
        "duplicates bounded by what was in flight: {duplicates}"
    );
    // The restart resumed: it did not start over.
    assert_ne!(after[0]["message"], serde_json::json!(line(0)));
}

#[test]
fn multiline_java_traces_including_one_flushed_by_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let trace = "2024-05-01 10:00:00 ERROR request failed\n\
java.lang.IllegalStateException: boom\n\
\tat com.example.Service.handle(Service.java:42)\n\
\tat com.example.Server.run(Server.java:7)\n\
Caused by: java.io.IOException: disk full\n\
\tat com.example.Disk.write(Disk.java:3)\n\
\t... 2 more\n";
    let mut content = String::from("2024-05-01 09:59:59 INFO starting\n");
    content.push_str(trace);
    content.push_str("2024-05-01 10:00:01 INFO next request\n");
    content.push_str(trace); // the last event: only the timeout can end it
    std::fs::write(d.join("app.log"), &content).unwrap();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/app.log\"]\n    multiline: {{ preset: java, timeout: 700ms }}",
        d.display()
    ));
    let t = Trawl::start(&d, &cfg, "out.json");
    let started = Instant::now();
    let ev = t.wait_for(30, "four events", |ev| ev.len() >= 4);
    let msgs = messages(&ev);
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert_eq!(msgs[0], "2024-05-01 09:59:59 INFO starting");
    assert_eq!(msgs[1], trace.trim_end());
    assert_eq!(msgs[2], "2024-05-01 10:00:01 INFO next request");
    assert_eq!(
        msgs[3],
        trace.trim_end(),
        "the trailing trace came out through the timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(ev[1]["log"]["flags"], serde_json::json!(["multiline"]));
    assert_eq!(
        ev[3]["log"]["offset"].as_u64().unwrap() as usize,
        content.len() - trace.len()
    );
}

#[test]
fn cri_partial_lines_docker_json_and_kubernetes_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let id = "0123456789abcdef".repeat(4);
    let containers = d.join("var/log/containers");
    let pods = d.join("var/log/pods/shop_web-5d8f_7a1c-uid-9/nginx");
    std::fs::create_dir_all(&containers).unwrap();
    std::fs::create_dir_all(&pods).unwrap();
    let long = "y".repeat(300);
    let cri = format!(
        "2024-05-01T10:00:00.123456789Z stdout F plain one\n\
2024-05-01T10:00:01.000000000Z stderr P part one, \n\
2024-05-01T10:00:01.100000000Z stderr P part two, \n\
2024-05-01T10:00:01.200000000Z stderr F end\n\
2024-05-01T10:00:02.000000000Z stdout P {long}\n\
2024-05-01T10:00:02.000000000Z stdout P {long}\n\
2024-05-01T10:00:02.000000000Z stdout F {long}\n"
    );
    std::fs::write(
        containers.join(format!("web-5d8f_shop_nginx-{id}.log")),
        cri,
    )
    .unwrap();
    let docker = concat!(
        r#"{"log":"hello from docker\n","stream":"stdout","time":"2024-05-01T11:00:00.5Z"}"#,
        "\n",
        r#"{"log":"split ","stream":"stderr","time":"2024-05-01T11:00:01Z"}"#,
        "\n",
        r#"{"log":"line\n","stream":"stderr","time":"2024-05-01T11:00:01.1Z"}"#,
        "\n",
    );
    std::fs::write(pods.join("0.log"), docker).unwrap();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{0}/var/log/containers/*.log\", \"{0}/var/log/pods/**/*.log\"]\n    max_line_bytes: 512",
        d.display()
    ));
    let t = Trawl::start(&d, &cfg, "out.json");
    let ev = t.wait_for(30, "five events", |ev| ev.len() >= 5);
    let by_msg = |m: &str| {
        ev.iter()
            .find(|e| e["message"] == m)
            .unwrap_or_else(|| panic!("no event {m:?} in {ev:#?}"))
            .clone()
    };

    let e = by_msg("plain one");
    assert_eq!(e["@timestamp"], "2024-05-01T10:00:00.123456Z");
    assert_eq!(e["stream"], "stdout");
    assert_eq!(e["kubernetes"]["pod"]["name"], "web-5d8f");
    assert_eq!(e["kubernetes"]["namespace"], "shop");
    assert_eq!(e["kubernetes"]["container"]["name"], "nginx");
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["log"]["offset"], 0);

    let e = by_msg("part one, part two, end");
    assert_eq!(e["stream"], "stderr");
    assert_eq!(
        e["@timestamp"], "2024-05-01T10:00:01.000000Z",
        "time of the first piece"
    );

    let cut = ev
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with("yyy")))
        .unwrap();
    assert_eq!(
        cut["message"].as_str().unwrap().len(),
        512,
        "joined up to max_line_bytes"
    );
    assert_eq!(cut["log"]["flags"], serde_json::json!(["truncated"]));

    let e = by_msg("hello from docker");
    assert_eq!(e["stream"], "stdout");
    assert_eq!(e["@timestamp"], "2024-05-01T11:00:00.500000Z");
    assert_eq!(e["kubernetes"]["pod"]["uid"], "7a1c-uid-9");
    assert_eq!(e["kubernetes"]["pod"]["name"], "web-5d8f");
    assert_eq!(e["kubernetes"]["container"]["name"], "nginx");
    let e = by_msg("split line");
    assert_eq!(e["stream"], "stderr");
    assert!(e["log"]["file"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/0.log"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.events().len(), 5, "one event per joined line");
}

#[test]
fn ten_megabyte_line_is_cut_at_max_line_bytes_and_binary_junk_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    {
        let mut f = std::fs::File::create(d.join("big.log")).unwrap();
        f.write_all(b"before\n").unwrap();
        f.write_all(&vec![b'x'; 10 << 20]).unwrap();
        f.write_all(b"\nafter\n").unwrap();
        let mut junk = std::fs::File::create(d.join("junk.log")).unwrap();
        // A deterministic byte soup: every byte value, invalid UTF-8, NULs, stray newlines.
        let mut x: u32 = 12345;
        let bytes: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        junk.write_all(&bytes).unwrap();
        junk.write_all(b"\nmarker after junk\n").unwrap();
    }
    let cfg = pipeline(
        &d,
        &format!(
            "    type: file\n    paths: [\"{}/*.log\"]\n    max_line_bytes: 1MiB",
            d.display()
        ),
    );
    let t = Trawl::start(&d, &cfg, "out.json");
    let ev = t.wait_for(60, "the line after the big one and the marker", |ev| {
        let m = messages(ev);
        m.iter().any(|m| m == "after") && m.iter().any(|m| m == "marker after junk")
    });
    let big: Vec<&Value> = ev
        .iter()
        .filter(|e| {
            e["log"]["file"]["path"]
                .as_str()
                .unwrap()
                .ends_with("big.log")
        })
        .collect();
    assert_eq!(
        big.len(),
        3,
        "before, the cut line, after: never dropped whole"
    );
    assert_eq!(big[1]["message"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(big[1]["log"]["flags"], serde_json::json!(["truncated"]));
    assert_eq!(big[2]["log"]["offset"], 7 + (10 << 20) + 1);
    let junk: Vec<&Value> = ev
        .iter()
        .filter(|e| {
            e["log"]["file"]["path"]
                .as_str()
                .unwrap()
                .ends_with("junk.log")
        })
        .collect();
    assert!(
        junk.len() > 100,
        "junk split at its newlines: {}",
        junk.len()
    );
    assert!(
        junk.iter()
            .any(|e| e["message"].as_str().unwrap().contains('\u{FFFD}')),
        "invalid UTF-8 replaced"
    );
}

#[test]
fn start_at_end_exclude_and_a_file_replaced_under_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("app.log"), "old 1\nold 2\n").unwrap();
    std::fs::write(d.join("web_kube-system_x.log"), "excluded\n").unwrap();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/*.log\"]\n    exclude: [\"*_kube-system_*\"]\n    start_at: end\n    poll_interval: 50ms\n    scan_interval: 500ms",
        d.display()
    ));
    let t = Trawl::start(&d, &cfg, "out.json");
    std::thread::sleep(Duration::from_millis(700));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("app.log"))
        .unwrap();
    writeln!(f, "new 1").unwrap();
    drop(f);
    // A file created after startup is read from its start, whatever `start_at` says.
    std::fs::write(d.join("late.log"), "late 1\n").unwrap();
    t.wait_for(20, "the appended and the late lines", |ev| ev.len() >= 2);
    // Same name, new file (the inode may well be reused): read from its start, not resumed.
    std::fs::remove_file(d.join("app.log")).unwrap();
    std::fs::write(
        d.join("app.log"),
        "replaced 1 with a longer first line than before\nreplaced 2\n",
    )
    .unwrap();
    let ev = t.wait_for(20, "the replacement's lines", |ev| ev.len() >= 4);
    std::thread::sleep(Duration::from_millis(500));
    let mut msgs = messages(&t.events());
    msgs.sort();
    assert_eq!(
        msgs,
        vec![
            "late 1",
            "new 1",
            "replaced 1 with a longer first line than before",
            "replaced 2"
        ],
        "{ev:#?}"
    );
}

/// kubelet's layout: `/var/log/containers/*.log` are symlinks into `/var/log/pods`, and kubelet
/// rotates the target (rename, then the runtime creates a new `0.log`), never the link. With
/// scanning effectively off, only the watch on the target's folder can find each new file, and
/// several rotations in a burst must still deliver every line once, labelled from the link's name.
#[test]
fn kubelet_rotation_behind_a_symlink_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target_dir = d.join("pods/shop_web-7d9_0b1c-22/nginx");
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let target = target_dir.join("0.log");
    std::fs::write(&target, b"").unwrap();
    let id = "a".repeat(64);
    std::os::unix::fs::symlink(
        &target,
        d.join(format!("containers/web-7d9_shop_nginx-{id}.log")),
    )
    .unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n    scan_interval: 1h\n",
        d.display()
    );
    let trawl = Trawl::start(d, &pipeline(d, &input), "out.json");
    trawl.wait_for(10, "the first file to be followed", |_| {
        std::fs::read_to_string(d.join("out.json.stderr")).is_ok_and(|s| s.contains("starting"))
    });
    std::thread::sleep(Duration::from_millis(500));

    const ROTATIONS: usize = 6;
    const PER_FILE: usize = 3000;
    let mut n = 0;
    for r in 0..=ROTATIONS {
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&target)
            .unwrap();
        let mut text = String::new();
        for _ in 0..PER_FILE {
            text.push_str(&format!(
                "2026-11-23T10:00:00.000000000Z stdout F {}\n",
                line(n)
            ));
            n += 1;
        }
        w.write_all(text.as_bytes()).unwrap();
        drop(w);
        if r < ROTATIONS {
            std::fs::rename(&target, target_dir.join(format!("0.log.2026112310000{r}"))).unwrap();
        }
    }
    let ev = trawl.wait_for(30, "every line", |ev| ev.len() >= n);
    std::thread::sleep(Duration::from_millis(500));
    drop(ev);
    let ev = trawl.events();
    let c = counts(&ev);
    let missing: Vec<usize> = (0..n)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    assert_eq!(ev.len(), n, "every line exactly once");
    let e = &ev[n - 1];
    assert_eq!(e["kubernetes"]["pod"]["name"], "web-7d9");
    assert_eq!(e["kubernetes"]["namespace"], "shop");
    assert_eq!(e["kubernetes"]["container"]["name"], "nginx");
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["stream"], "stdout");
}

/// `trawl_bytes_in_total` of the input `logs` from trawl's /metrics (None: not served yet).
fn bytes_read(port: u16) -> Option<f64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("trawl_bytes_in_total{") && l.contains("component=\"logs\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// While the output cannot deliver, reading stops at `max_in_flight` even though the queues
/// (`queue_batches: 64`) would hold ~13,000 events; once it delivers again, every line arrives
/// exactly once and in order.
#[test]
fn max_in_flight_holds_reading_back_while_the_output_is_stuck() {
    const N: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&line(i));
        text.push('\n');
    }
    std::fs::write(d.join("app.log"), &text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "data_dir: {dir}/data\nhttp: {{ address: 127.0.0.1:{port} }}\nshutdown_timeout: 5s\n\
         pipeline: {{ batch_size: 100, queue_batches: 64 }}\n\
         inputs:\n  logs:\n    type: file\n    paths: [\"{dir}/app.log\"]\n    read_buffer: 4KiB\n    max_in_flight: 64KiB\n\
         outputs:\n  out: {{ type: stdout }}\n",
        dir = d.display()
    );
    std::fs::write(d.join("pipeline.yaml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(d.join("pipeline.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // Nobody reads trawl's stdout yet: the output blocks once the pipe is full.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    let stalled_at = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = bytes_read(port);
        if now.is_some_and(|n| n > 0.0) && now == last {
            break now.unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "reading never settled: {now:?}");
        last = now;
    };
    let file_bytes = text.len() as f64;
    assert!(
        stalled_at < 300_000.0,
        "read {stalled_at} of {file_bytes} bytes with the output stuck: max_in_flight did not hold reading back"
    );

    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut msgs = Vec::new();
        for l in std::io::BufReader::new(&mut stdout).lines() {
            let Ok(l) = l else { break };
            let v: Value = serde_json::from_str(&l).unwrap();
            msgs.push(v["message"].as_str().unwrap_or_default().to_owned());
            if msgs.len() == N {
                break;
            }
        }
        msgs
    });
    let waited = Instant::now();
    while !reader.is_finished() && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let msgs = reader.join().unwrap();
    assert_eq!(msgs.len(), N, "every line once the output delivers again");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(*m, line(i), "line {i} in order");
    }
}

/// A rolling update of the DaemonSet: trawl is stopped, kubelet rotates a file it was reading,
/// and the restarted trawl resumes the rotated file at its saved offset (it is no longer under
/// `paths`), reads the new one, and leaves alone rotated history it never read.
#[test]
fn a_file_rotated_while_trawl_was_stopped_is_resumed_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, id) =
        kubelet_container(d, "shop_web-7d9_0b1c-22/nginx", "web-7d9_shop_nginx", 'b');
    // History from before trawl ever ran: not in the registry, not to be shipped.
    std::fs::write(
        target_dir.join("0.log.20261122-000000"),
        cri_lines(900_000, 900_010),
    )
    .unwrap();
    std::fs::write(
        target_dir.join("0.log.20261121-000000.gz"),
        b"\x1f\x8b junk",
    )
    .unwrap();
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    let status = first.child.wait().unwrap();
    assert!(status.success(), "graceful stop: {status:?}");

    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap();
    w.write_all(cri_lines(1000, 2000).as_bytes()).unwrap();
    drop(w);
    std::fs::rename(&target, target_dir.join("0.log.20261123-100000")).unwrap();
    std::fs::write(&target, cri_lines(2000, 3000)).unwrap();

    let second = Trawl::start(d, &config, "out2.json");
    let ev2 = second.wait_for(20, "the rotated rest and the new file", |ev| {
        ev.len() >= 2000
    });
    std::thread::sleep(Duration::from_millis(700));
    let ev2 = if second.events().len() > ev2.len() {
        second.events()
    } else {
        ev2
    };
    let all: Vec<Value> = first
        .events()
        .into_iter()
        .chain(ev2.iter().cloned())
        .collect();
    let c = counts(&all);
    let missing: Vec<usize> = (0..3000)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    assert_eq!(
        all.len(),
        3000,
        "every line once, no history: {:?}",
        c.keys().find(|k| k.contains("09000"))
    );
    let resumed = ev2
        .iter()
        .find(|e| e["message"] == line(1000).as_str())
        .expect("line 1000");
    assert_eq!(resumed["kubernetes"]["pod"]["name"], "web-7d9");
    assert_eq!(resumed["container"]["id"], id.as_str());
}

/// kubelet creates `0.log` and renames it away on its own schedule, not trawl's: during a
/// rolling update (or while trawl waited on a full pipeline and was then killed) a `0.log` can
/// be created, written and rotated without trawl ever seeing it. No registry knows it, but it
/// was written after trawl first ran, so its lines are the user's, not history: read at the
/// next start. A rotated file last written before trawl first ran stays unread at every start.
#[test]
fn a_file_created_and_rotated_while_trawl_was_stopped_is_read_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, id) =
        kubelet_container(d, "shop_web-5c1_0a2e-31/app", "web-5c1_shop_app", 'c');
    // History, last written an hour before trawl first ran.
    let history = target_dir.join("0.log.20261122-000000");
    std::fs::write(&history, cri_lines(900_000, 900_010)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&history)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let stop = |t: &mut Trawl| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
        let status = t.child.wait().unwrap();
        assert!(status.success(), "graceful stop: {status:?}");
    };
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    stop(&mut first);

    // While trawl is stopped: the followed 0.log gets more lines and is rotated; kubelet's next
    // 0.log is written and rotated too; a third one is current at the restart.
    let write = |path: &Path, text: String| {
        let mut w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    };
    write(&target, cri_lines(1000, 1500));
    std::fs::rename(&target, target_dir.join("0.log.20261123-100000")).unwrap();
    write(&target, cri_lines(1500, 2500));
    std::fs::rename(&target, target_dir.join("0.log.20261123-110000")).unwrap();
    write(&target, cri_lines(2500, 3000));

    let mut second = Trawl::start(d, &config, "out2.json");
    second.wait_for(
        30,
        "the rest of the first 0.log, all of the unseen one and the current one",
        |ev| ev.len() >= 2000,
    );
    // Anything more (history, a second copy) would come within the scans of the next second.
    std::thread::sleep(Duration::from_millis(1500));
    stop(&mut second);
    let all: Vec<Value> = first.events().into_iter().chain(second.events()).collect();
    let c = counts(&all);
    let missing: Vec<usize> = (0..3000).filter(|i| !c.contains_key(&line(*i))).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, the first: {:?} (1500..2500 are the 0.log created and rotated while trawl was stopped)",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = c
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| l)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "lines delivered twice: {twice:?}");
    assert_eq!(
        all.len(),
        3000,
        "every line once and no history (900000..900010): {:?}",
        c.keys().find(|k| k.contains("90000"))
    );
    let unseen = all
        .iter()
        .find(|e| e["message"] == line(1500).as_str())
        .expect("line 1500");
    assert_eq!(unseen["kubernetes"]["pod"]["name"], "web-5c1");
    assert_eq!(unseen["container"]["id"], id.as_str());
}

/// kubelet's layout under `d`: `pods/<pod>/0.log` and its `/var/log/containers`-style link
/// `containers/<link>-<id>.log`, the container id being 64 times `id_char`. Returns the
/// pod folder, the `0.log` path and the id.
fn kubelet_container(d: &Path, pod: &str, link: &str, id_char: char) -> (PathBuf, PathBuf, String) {
    let target_dir = d.join("pods").join(pod);
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let target = target_dir.join("0.log");
    let id = id_char.to_string().repeat(64);
    std::os::unix::fs::symlink(&target, d.join(format!("containers/{link}-{id}.log"))).unwrap();
    (target_dir, target, id)
}

/// Lines `from..to` as containerd writes them (CRI, full lines).
fn cri_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("2026-11-23T10:00:00.000000000Z stdout F {}\n", line(i)))
        .collect()
}
