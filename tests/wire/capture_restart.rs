//! A live capture restarted in the middle of a keep-alive connection, as a DaemonSet rollout or
//! an OOM kill does: a client in this process asks a real HTTP server (python, in a network
//! namespace behind a veth) for a request every 50 ms on one connection, and trawl, capturing
//! the veth, is stopped (SIGTERM, then SIGKILL) and started again while a slow response body is
//! on the wire. Counted against the client's own log of what it sent and got back.

use crate::support;

use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::netns::{lines_of, wait_line, Link};
use support::process::{KillOnDrop, Trawl};

const CLIENT_IP: &str = "10.213.31.1";
const SERVER_IP: &str = "10.213.31.2";
const PORT: u16 = 8080;

/// Every third answer is 300,000 bytes written in 20 pieces 50 ms apart (1 s: trawl's start takes a
/// fraction of that, even on a loaded machine), so that a capture
/// started or stopped while it is on the wire sees only a part of it; the others are small.
const SERVER: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[1])
        slow = n % 3 == 0
        size = 300000 if slow else 120
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        if slow:
            for _ in range(20):
                time.sleep(0.05)
                self.wfile.write(b"s" * (size // 20))
                self.wfile.flush()
        else:
            self.wfile.write(b"q" * size)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
srv.serve_forever()
"#;

/// One exchange as the client saw it.
struct Exchange {
    n: u64,
    sent: Instant,
    done: Instant,
    status: u16,
}

/// The client's log, and whether it is inside a slow answer right now (the moment to
/// start or stop trawl).
#[derive(Default)]
struct ClientLog {
    done: Vec<Exchange>,
    /// When the head of the slow answer now being read arrived.
    in_slow_body: Option<Instant>,
}

/// Requests `/r/<n>` one after the other on one connection, 50 ms apart, until `stop`.
fn client(log: Arc<Mutex<ClientLog>>, stop: Arc<AtomicBool>) -> Result<(), String> {
    let s = TcpStream::connect((SERVER_IP, PORT)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sent = Instant::now();
        write!(
            w,
            "GET /r/{n} HTTP/1.1\r\nHost: {SERVER_IP}:{PORT}\r\nUser-Agent: restart-test\r\n\r\n"
        )
        .map_err(|e| format!("request {n}: {e}"))?;
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("status line {n}: {e}"))?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("status line {n}: {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            r.read_line(&mut line)
                .map_err(|e| format!("header {n}: {e}"))?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| format!("length {line:?}"))?;
            }
        }
        log.lock().unwrap().in_slow_body = n.is_multiple_of(3).then(Instant::now);
        let mut body = vec![0u8; length];
        r.read_exact(&mut body)
            .map_err(|e| format!("body {n}: {e}"))?;
        let mut l = log.lock().unwrap();
        l.in_slow_body = None;
        l.done.push(Exchange {
            n,
            sent,
            done: Instant::now(),
            status,
        });
        drop(l);
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until the client has just started reading a slow answer's body (not one it is at the
/// end of).
fn wait_for_slow_body(log: &Mutex<ClientLog>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = |l: &ClientLog| {
        l.in_slow_body
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
    };
    while !fresh(&log.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the client never got a slow answer"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One run of trawl: when its capture started and when it was stopped, and its events.
struct Run {
    capturing: Instant,
    stopped: Instant,
    events: Vec<J>,
    graceful: bool,
}

fn start(dir: &Path, i: usize, host_if: &str) -> (Trawl, Instant) {
    let out = dir.join(format!("out{i}.jsonl"));
    let log = dir.join(format!("trawl{i}.log"));
    let pipeline = dir.join(format!("p{i}.yaml"));
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [{host_if}] }}\n    flows: {{ period: -1s }}\n    protocols:\n      http: {{ ports: [{PORT}] }}\noutputs:\n  out: {{ type: file, path: {} }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            out.display(),
            dir.display()
        ),
    )
    .unwrap();
    let spawned = Instant::now();
    let t = Trawl::start(&pipeline, Some(&log));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("capturing") {
            println!("run {i}: capturing {:?} after the start", spawned.elapsed());
            return (t, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "trawl run {i} did not start capturing {host_if}: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The whole JSON lines of an output file (a kill -9 may leave a last line half written).
fn events(path: &Path) -> Vec<J> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn request_number(e: &J) -> Option<u64> {
    let path = e["url"]["path"]
        .as_str()
        .or(e["url"]["original"].as_str())?;
    path.strip_prefix("/r/")?.parse().ok()
}

#[test]
fn a_capture_restarted_mid_connection_decodes_what_follows_and_keeps_the_client_side() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: network namespaces need root");
        return;
    }
    let link = Link::veth(
        &format!("rst-{}", std::process::id() % 10_000),
        &[&format!("{CLIENT_IP}/24")],
        &[&format!("{SERVER_IP}/24")],
    )
    .expect("a network namespace behind a veth");
    let mut server = KillOnDrop(
        link.exec(&["python3", "-c", SERVER, SERVER_IP, &PORT.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3"),
    );
    let ready = lines_of(server.0.stdout.take().unwrap());
    wait_line(&ready, "ready", "the HTTP server in the namespace");

    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(ClientLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut client_thread = Some({
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || client(log, stop))
    });

    // Three runs, each started while a slow body is on the wire; the first stopped by SIGTERM
    // and the second by SIGKILL, each in the middle of a slow body; the last one stopped
    // after the client is done.
    let mut runs = Vec::new();
    for i in 0..3 {
        wait_for_slow_body(&log);
        let (mut t, capturing) = start(dir.path(), i, &link.host);
        std::thread::sleep(Duration::from_millis(5000));
        if i < 2 {
            wait_for_slow_body(&log);
        } else {
            stop.store(true, Ordering::Relaxed);
            let r = client_thread.take().unwrap().join().unwrap();
            r.expect("the client's exchanges");
            std::thread::sleep(Duration::from_millis(300));
        }
        let stopped = Instant::now();
        let graceful = i != 1;
        if graceful {
            let status = t.stop(Duration::from_secs(20));
            assert!(status.success(), "run {i}: trawl exited {status}");
        } else {
            t.kill9();
        }
        runs.push(Run {
            capturing,
            stopped,
            events: events(&dir.path().join(format!("out{i}.jsonl"))),
            graceful,
        });
    }
    drop(server);

    let log = log.lock().unwrap();
    let sent: BTreeMap<u64, &Exchange> = log.done.iter().map(|x| (x.n, x)).collect();
    assert!(
        sent.len() > 25,
        "the client made only {} requests",
        sent.len()
    );
    let mut decoded_in: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let http: Vec<&J> = run
            .events
            .iter()
            .filter(|e| e["event"]["dataset"] == "http" || e.get("http").is_some())
            .collect();
        let mut whole = BTreeSet::new();
        let mut partial = Vec::new();
        for e in &http {
            // Every transaction is oriented as the connection is: the client is this side.
            assert_eq!(
                (
                    e["source"]["ip"].as_str(),
                    e["destination"]["ip"].as_str(),
                    e["destination"]["port"].as_u64()
                ),
                (Some(CLIENT_IP), Some(SERVER_IP), Some(u64::from(PORT))),
                "run {i}: a transaction with the sides swapped: {e}"
            );
            if e["event"]["reason"].is_string() {
                partial.push(*e);
                continue;
            }
            let n = request_number(e).unwrap_or_else(|| panic!("run {i}: no /r/<n>: {e}"));
            let x = sent
                .get(&n)
                .unwrap_or_else(|| panic!("run {i}: request {n} was not sent: {e}"));
            assert_eq!(
                e["http"]["response"]["status_code"].as_u64(),
                Some(u64::from(x.status)),
                "run {i}: request {n}"
            );
            let want_bytes = if n.is_multiple_of(3) { 300_000 } else { 120 };
            assert_eq!(
                e["http"]["response"]["body"]["bytes"].as_u64(),
                Some(want_bytes),
                "run {i}: request {n}'s body"
            );
            assert!(whole.insert(n), "run {i}: request {n} reported twice");
            *decoded_in.entry(n).or_default() += 1;
        }
        // At most the exchange cut by the start and the one cut by the stop are partial.
        assert!(
            partial.len() <= 2,
            "run {i}: {} partial transactions: {partial:#?}",
            partial.len()
        );
        // Every exchange made wholly while this run captured is reported whole (a run killed
        // by SIGKILL loses what it had not yet written: only its order is checked).
        let margin = Duration::from_millis(200);
        let within: Vec<u64> = sent
            .values()
            .filter(|x| x.sent > run.capturing + margin && x.done + margin < run.stopped)
            .map(|x| x.n)
            .collect();
        assert!(within.len() > 6, "run {i}: only {} exchanges", within.len());
        // The run did start inside a slow answer (else this test would not test the pick-up).
        let straddling = sent
            .values()
            .filter(|x| x.n.is_multiple_of(3) && x.sent < run.capturing && x.done > run.capturing)
            .count();
        assert_eq!(straddling, 1, "run {i} did not start inside a slow answer");
        if run.graceful {
            let missing: Vec<&u64> = within.iter().filter(|n| !whole.contains(n)).collect();
            assert!(
                missing.is_empty(),
                "run {i}: {} of {} exchanges not reported: {missing:?}; partial: {partial:#?}",
                missing.len(),
                within.len()
            );
        } else {
            assert!(!whole.is_empty(), "run {i} (killed) reported nothing");
        }
        // The connection's flow, reported at the stop (or not at all when killed), is the
        // client's.
        let flows: Vec<&J> = run
            .events
            .iter()
            .filter(|e| e["event"]["dataset"] == "flow" || e.get("flow").is_some())
            .filter(|e| e["network"]["transport"] == "tcp")
            .collect();
        if run.graceful {
            assert_eq!(flows.len(), 1, "run {i}: flows {flows:#?}");
        }
        for f in flows {
            assert_eq!(
                (
                    f["source"]["ip"].as_str(),
                    f["destination"]["port"].as_u64()
                ),
                (Some(CLIENT_IP), Some(u64::from(PORT))),
                "run {i}: the flow's sides: {f}"
            );
        }
        let reasons: Vec<&str> = partial
            .iter()
            .filter_map(|e| e["event"]["reason"].as_str())
            .collect();
        println!(
            "run {i}: {} whole, partial {reasons:?}, {} exchanges within its capture",
            whole.len(),
            within.len()
        );
    }
    assert!(
        decoded_in.values().all(|&c| c == 1),
        "a request reported by two runs"
    );
}

/// Sends the frames of a classic pcap (argv 1) out of an interface (argv 2) for argv 3 seconds,
/// over and over, as fast as one Python process can.
const BURST: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
d = open(sys.argv[1], "rb").read()
o, frames = 24, []
while o + 16 <= len(d):
    n = struct.unpack("<I", d[o + 8:o + 12])[0]
    frames.append(d[o + 16:o + 16 + n])
    o += 16 + n
print("ready", flush=True)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    for f in frames:
        s.send(f)
"#;

/// A stop that comes while the analyzer is behind (a rollout's SIGTERM right after the node
/// had trawl's CPU for a moment: held still 0.3 s, the kernel's ring filling meanwhile): every
/// block a capture thread already read is analyzed, none dropped as if the analyzer had
/// fallen behind. Session 36's binary, whose threads dropped their block once told to stop,
/// logged "the analyzer fell behind" after the SIGTERM in each of 4 runs here.
#[test]
fn a_stop_while_the_analyzer_is_behind_drops_no_captured_block() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: network namespaces need root");
        return;
    }
    let tag = format!("rsb-{}", std::process::id() % 10_000);
    let link = Link::veth(&tag, &["10.213.32.1/24"], &["10.213.32.2/24"])
        .expect("a network namespace behind a veth");
    let dir = tempfile::tempdir().unwrap();
    // HTTP on port 8080, keep-alive connections of 5 to 15 exchanges: real work for the
    // analyzer, so that a burst puts it behind the capture thread.
    let frames = dir.path().join("burst.pcap");
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/gen_http_pcap.py");
    support::netns::run(
        "python3",
        &[
            gen.to_str().unwrap(),
            frames.to_str().unwrap(),
            "60000",
            "small",
        ],
    )
    .expect("benches/gen_http_pcap.py");
    let (mut t, _) = start(dir.path(), 0, &link.host);
    let mut burst = KillOnDrop(
        link.exec(&[
            "python3",
            "-c",
            BURST,
            frames.to_str().unwrap(),
            &format!("{tag}-p"),
            "6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3"),
    );
    let ready = lines_of(burst.0.stdout.take().unwrap());
    wait_line(&ready, "ready", "the burst sender in the namespace");
    std::thread::sleep(Duration::from_millis(1500));
    let pid = t.child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child the test owns and has not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    support::process::sigterm(&t);
    let status = t.wait(Duration::from_secs(60));
    drop(burst);
    let log = std::fs::read_to_string(dir.path().join("trawl0.log")).unwrap();
    assert!(status.success(), "trawl's exit: {status}\n{log}");
    let (_, after) = log
        .split_once("SIGTERM received")
        .unwrap_or_else(|| panic!("no SIGTERM in trawl's log:\n{log}"));
    assert!(
        !after.contains("fell behind"),
        "a block captured before the stop was dropped:\n{after}"
    );
    // (The first lines suffice: the burst makes a file of tens of MB.)
    let out = std::fs::read_to_string(dir.path().join("out0.jsonl")).unwrap_or_default();
    let first: Vec<J> = out
        .lines()
        .take(1000)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        first.iter().any(|e| e["url"]["path"].is_string()),
        "the burst was not decoded as HTTP before the stop: {} events",
        first.len()
    );
}

/// A stop (a rollout's SIGTERM) reports every flow still open, as `end_of_capture`: on a busy
/// node that final flush is many batches, more than the pipeline's queues hold, and the output
/// drains them while trawl stops. With every output up, none may be dropped. Session 38's
/// binary dropped each batch of the flush that found the queue full: here (30,000 open UDP
/// flows, `queue_batches: 1`, a file output) it wrote 28,978 of them and dropped a batch of
/// 1,024 (counted in `trawl_events_dropped_total`); with 100,000 flows and the default queues,
/// 81,568.
#[test]
fn a_stop_reports_every_open_flow_even_past_what_the_queues_hold() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: network namespaces need root");
        return;
    }
    const FLOWS: u16 = 30_000;
    let tag = format!("rsf-{}", std::process::id() % 10_000);
    let link = Link::veth(&tag, &["10.213.33.1/24"], &["10.213.33.2/24"])
        .expect("a network namespace behind a veth");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("trawl.log");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [{}] }}\n    flows: {{ period: -1s, timeout: 5m }}\noutputs:\n  out: {{ type: file, path: {} }}\npipeline: {{ queue_batches: 1 }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            link.host,
            out.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut t = Trawl::start(&pipeline, Some(&log));
    support::process::wait_until(Duration::from_secs(20), "trawl capturing", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("capturing")
    });
    // One datagram to each of FLOWS ports of the pod: FLOWS flows, none of which ends before
    // the stop (nothing listens; the pod's ICMP answers belong to the flow they quote).
    let socket = std::net::UdpSocket::bind("10.213.33.1:0").unwrap();
    for i in 0..FLOWS {
        socket
            .send_to(b"x", ("10.213.33.2", 20_000 + i))
            .expect("sending to the pod");
        if i % 2_000 == 1_999 {
            // Paced, so that the kernel's ring takes them all.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    support::process::sigterm(&t);
    let status = t.wait(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "trawl's exit: {status}\n{text}");
    assert!(
        !text.contains("packets lost before trawl read them"),
        "the capture itself lost packets, which this test is not about:\n{text}"
    );
    let ports: BTreeSet<u64> = events(&out)
        .iter()
        .filter(|e| e["event"]["dataset"] == "flow" && e["network"]["transport"] == "udp")
        .filter(|e| e["destination"]["ip"] == "10.213.33.2")
        .filter_map(|e| e["destination"]["port"].as_u64())
        .collect();
    assert_eq!(
        ports.len(),
        FLOWS as usize,
        "open flows reported at the stop, of {FLOWS}; trawl's log:\n{}",
        text.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !text.contains("pipeline full"),
        "a batch of the final flush was dropped:\n{text}"
    );
}
