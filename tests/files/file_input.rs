//! The `file` input end to end with the real binary: multiline with the timeout path,
//! container formats and Kubernetes path metadata, a 10 MB line, binary junk, `start_at`,
//! `exclude`, `max_in_flight`. Events are read from trawl's stdout (a file). Rotation, restarts
//! and what happens while trawl is stopped: tests/files/file_rotation.rs.

use crate::support;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::stdout_run::{line, messages, pipeline, Trawl};

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
2024-05-01T10:00:02.000000000Z stdout F {long}\n\
2024-05-01T10:00:03.000000000Z stdout F\n\
2024-05-01T10:00:03.100000000Z stdout F \n"
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
        // The container printed an empty line: nothing to ship, as a blank line of a file.
        r#"{"log":"\n","stream":"stdout","time":"2024-05-01T11:00:02Z"}"#,
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
