//! A node as Kubernetes builds it: a bridge with one veth per workload, workloads in their own
//! network namespaces, trawl capturing every host-side veth (`interfaces: ["<prefix>*"]`, as the
//! DaemonSet pipeline does). Each packet crosses two veths; trawl must count it once. Several
//! runs of a few hundred concurrent requests, with exact transaction, flow, packet (against the
//! kernel's own interface counters) and service-map counts.

use crate::support;

use serde_json::Value as J;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::live_http::{flow_packets, read_response};
use support::process::http_get;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The bridge, the veths and the namespaces of one test, removed however the test ends.
pub(crate) struct Node {
    pub(crate) tag: String,
    bridge: String,
    /// (namespace, host-side veth, address) per workload.
    pub(crate) workloads: Vec<(String, String, String)>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for (ns, host, _) in &self.workloads {
            let _ = ip(&["link", "del", host]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

impl Node {
    /// `n` workloads at `<subnet>.(11..)` behind one bridge, its links named `<prefix>-<pid>-…`. IPv6 is off and neighbours are
    /// static, so that the workloads send nothing but the test's TCP: the kernel's packet
    /// counters are then an exact oracle.
    pub(crate) fn build(n: usize, subnet: &str, prefix: &str) -> Result<Node, String> {
        let tag = format!("{prefix}-{}", std::process::id() % 10_000);
        let bridge = format!("{tag}-br");
        let mut node = Node {
            tag: tag.clone(),
            bridge: bridge.clone(),
            workloads: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        write_sysctl(
            &format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"),
            "1",
        )?;
        ip(&["link", "set", &bridge, "up"])?;
        let mac = |i: usize| format!("02:77:00:00:00:{:02x}", i + 1);
        for i in 0..n {
            let (ns, host, peer) = (
                format!("{tag}-w{i}"),
                format!("{tag}-h{i}"),
                format!("{tag}-p{i}"),
            );
            let addr = format!("{subnet}.{}", 11 + i);
            ip(&["netns", "add", &ns])?;
            node.workloads
                .push((ns.clone(), host.clone(), addr.clone()));
            ip(&[
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "address",
                &mac(i),
                "netns",
                &ns,
            ])?;
            write_sysctl(&format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1")?;
            ip(&["link", "set", &host, "master", &bridge])?;
            ip(&["link", "set", &host, "up"])?;
            let sysctl = Command::new("ip")
                .args(["netns", "exec", &ns, "sh", "-c"])
                .arg(format!(
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/{peer}/disable_ipv6"
                ))
                .status()
                .map_err(|e| e.to_string())?;
            if !sysctl.success() {
                return Err(format!("cannot turn IPv6 off in {ns}"));
            }
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", &peer, "arp", "off", "up"])?;
        }
        for (i, (ns, _, _)) in node.workloads.iter().enumerate() {
            for (j, (_, _, addr)) in node.workloads.iter().enumerate() {
                if i != j {
                    ip(&[
                        "-n",
                        ns,
                        "neigh",
                        "replace",
                        addr,
                        "lladdr",
                        &mac(j),
                        "dev",
                        &format!("{}-p{i}", node.tag),
                        "nud",
                        "permanent",
                    ])?;
                }
            }
        }
        Ok(node)
    }

    /// Packets the workloads have sent so far: what their host-side veths received.
    fn packets_sent(&self) -> u64 {
        self.workloads
            .iter()
            .map(|(_, host, _)| {
                std::fs::read_to_string(format!("/sys/class/net/{host}/statistics/rx_packets"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .expect("rx_packets of a host-side veth")
            })
            .sum()
    }
}

/// Runs `f` on a thread that lives in the network namespace `ns`.
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace file");
        // SAFETY: setns(2) on an open namespace descriptor; it moves only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A keep-alive HTTP/1.1 server: `/fail...` answers 503, anything else 200; closes after a
/// response to `Connection: close` and when the client closes.
pub(crate) fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = handle(stream);
        });
    }
}

fn handle(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let close = head.contains("connection: close");
        if head.starts_with("get /fail") {
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")?;
        } else {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
        }
        if close {
            return Ok(());
        }
    }
}

/// What one client sends: `connections` connections of `per_connection` requests each to
/// `server`; every `fail_every`-th request asks for a 503. Returns (requests, failures).
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) client_ns: String,
    pub(crate) server: String,
    pub(crate) connections: usize,
    pub(crate) per_connection: usize,
    pub(crate) fail_every: usize,
}

pub(crate) fn drive(l: Load) -> std::thread::JoinHandle<(u64, u64)> {
    in_netns(&l.client_ns.clone(), move || {
        let (mut requests, mut failures) = (0u64, 0u64);
        for c in 0..l.connections {
            let s = TcpStream::connect(&l.server)
                .unwrap_or_else(|e| panic!("connect {}: {e}", l.server));
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut w = s;
            for i in 0..l.per_connection {
                let n = c * l.per_connection + i;
                let fail = l.fail_every > 0 && n % l.fail_every == l.fail_every - 1;
                let last = i + 1 == l.per_connection;
                let path = if fail { "/fail" } else { "/ok" };
                let conn = if last && l.per_connection == 1 {
                    "Connection: close\r\n"
                } else {
                    ""
                };
                write!(w, "GET {path}/{n} HTTP/1.1\r\nHost: svc\r\n{conn}\r\n").expect("write");
                let status = read_response(&mut r);
                assert_eq!(status, if fail { 503 } else { 200 });
                requests += 1;
                failures += fail as u64;
            }
            if l.per_connection == 1 {
                // The server closes first: read its FIN before closing ours.
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
            }
            drop(w);
            drop(r);
        }
        (requests, failures)
    })
}

/// A TCP service that is not HTTP: reads what comes until the client closes, answers `done`.
fn serve_raw(listener: TcpListener) {
    for mut s in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            let _ = s.write_all(b"done");
        });
    }
}

/// `connections` connections to the raw service, each sending 1000 bytes.
fn drive_raw(client_ns: &str, server: String, connections: usize) -> std::thread::JoinHandle<()> {
    in_netns(client_ns, move || {
        for _ in 0..connections {
            let mut s = TcpStream::connect(&server).expect("connect to the raw service");
            s.write_all(&[b'z'; 1000]).expect("write");
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).expect("read");
            assert_eq!(answer, b"done");
        }
    })
}

fn start_trawl(
    pipeline: &std::path::Path,
) -> (KillOnDrop, mpsc::Receiver<String>, mpsc::Receiver<J>) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trawl"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stdout = child.0.stdout.take().expect("stdout");
    let (etx, erx) = mpsc::channel::<J>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = etx.send(v);
            }
        }
    });
    (child, rx, erx)
}

/// One run: trawl started, capturing every host-side veth; the load; trawl stopped. Returns
/// the events, `/api/graph/data` and the packets the workloads sent meanwhile.
fn run_once(
    node: &Node,
    loads: &[Load],
    raw: (&str, &str, usize),
    dir: &std::path::Path,
    subnet: &str,
) -> (Vec<J>, J, u64) {
    let pipeline = dir.join("node.yaml");
    // The shipped DaemonSet pipeline's shape: one `packet` input, flows and HTTP from one
    // capture, the kernel buffer left at its default (shared by the veths).
    let capture = format!(
        "{{ interfaces: [\"{}-h*\"], bpf_filter: \"tcp and net {subnet}.0/24\", refresh_interfaces: 1s }}",
        node.tag
    );
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {capture}\n    flows: {{ period: -1s, closed_linger: 1s }}\n    protocols:\n      http: {{ ports: [8080] }}\n\
             outputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.display()
        ),
    )
    .expect("write the pipeline");
    let (mut child, rx, erx) = start_trawl(&pipeline);
    // The input captures on every veth, and the monitoring address is known, before any load.
    let mut log = Vec::new();
    let mut metrics = None;
    let mut capturing = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while capturing < node.workloads.len() || metrics.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("trawl did not start capturing on every veth: {log:#?}"));
        if line.contains("\"capturing\"") || line.contains("capturing\"") {
            capturing += 1;
        }
        if line.contains("serving /metrics") {
            let v: J = serde_json::from_str(&line).unwrap_or(J::Null);
            metrics = v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .map(str::to_owned);
        }
        log.push(line);
    }
    let metrics = metrics.expect("metrics address");
    let before = node.packets_sent();
    let drivers: Vec<_> = loads.iter().cloned().map(drive).collect();
    let raw = drive_raw(raw.0, raw.1.to_owned(), raw.2);
    for d in drivers {
        d.join().expect("a client failed");
    }
    raw.join().expect("the raw TCP client failed");
    // The last FIN/ACKs leave within milliseconds; the capture threads hand on their last
    // blocks, and closed flows linger a second (`closed_linger: 1s`: nothing is lost between
    // veths on one host, so no late segment is waited for) before they are reported.
    std::thread::sleep(Duration::from_secs(3));
    let sent = node.packets_sent() - before;
    let graph: J =
        serde_json::from_str(&http_get(&metrics, "/api/graph/data").unwrap_or_default().1)
            .unwrap_or(J::Null);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().expect("wait for trawl");
    assert!(status.success(), "trawl exited with {status}");
    let mut events = Vec::new();
    while let Ok(e) = erx.recv_timeout(Duration::from_secs(5)) {
        events.push(e);
    }
    (events, graph, sent)
}

#[test]
fn a_node_bridge_with_one_veth_per_workload_counts_every_packet_once() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: namespaces and veths need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        return;
    }
    // 10.213.x is taken by the other live tests of this binary (capture_interfaces.rs puts
    // 10.213.200-249 beside this test), so the second octet stays off 213.
    let subnet = format!(
        "10.{}.{}",
        220 + std::process::id() % 30,
        std::process::id() % 250
    );
    let node = match Node::build(4, &subnet, "node") {
        Ok(n) => n,
        Err(e) => panic!("cannot build the node (bridge, veths, namespaces): {e}"),
    };
    let ns = |i: usize| node.workloads[i].0.clone();
    let addr = |i: usize| node.workloads[i].2.clone();
    // Workloads 0 and 1 serve on 8080; 2 and 3 are clients; 0 also calls 1 (a chain).
    for i in [0, 1] {
        let bind = format!("{}:8080", addr(i));
        in_netns(&ns(i), move || match TcpListener::bind(&bind) {
            Ok(l) => serve(l),
            Err(e) => panic!("bind {bind}: {e}"),
        });
    }
    let svc = |i: usize| format!("{}:8080", addr(i));
    let raw_bind = format!("{}:7000", addr(1));
    in_netns(&ns(1), move || match TcpListener::bind(&raw_bind) {
        Ok(l) => serve_raw(l),
        Err(e) => panic!("bind {raw_bind}: {e}"),
    });
    // Besides HTTP, workload 2 sends plain TCP to workload 1's port 7000.
    let raw_service = format!("{}:7000", addr(1));
    let raw_connections = 5;
    let loads = vec![
        // One connection per request, the server closes first.
        Load {
            client_ns: ns(2),
            server: svc(0),
            connections: 100,
            per_connection: 1,
            fail_every: 0,
        },
        // Keep-alive: ten requests per connection, the client closes first.
        Load {
            client_ns: ns(3),
            server: svc(0),
            connections: 10,
            per_connection: 10,
            fail_every: 0,
        },
        Load {
            client_ns: ns(3),
            server: svc(1),
            connections: 100,
            per_connection: 1,
            fail_every: 4,
        },
        Load {
            client_ns: ns(0),
            server: svc(1),
            connections: 100,
            per_connection: 1,
            fail_every: 4,
        },
    ];
    let requests: u64 = loads
        .iter()
        .map(|l| (l.connections * l.per_connection) as u64)
        .sum();
    let connections: u64 = loads.iter().map(|l| l.connections as u64).sum();
    // Servers listen before the first run.
    std::thread::sleep(Duration::from_millis(200));
    let dir = tempfile::tempdir().expect("tempdir");
    for run in 1..=3 {
        let (events, graph, sent) = run_once(
            &node,
            &loads,
            (&ns(2), &raw_service, raw_connections),
            dir.path(),
            &subnet,
        );
        let http: Vec<&J> = events
            .iter()
            .filter(|e| e["event"]["dataset"] == "http")
            .collect();
        let flows: Vec<&J> = events
            .iter()
            .filter(|e| e["event"]["dataset"] == "flow" && e["flow"]["final"] == true)
            .collect();
        let incomplete: Vec<String> = http
            .iter()
            .filter(|e| e["event"].get("reason").is_some())
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["event"]["reason"], e["url"]["original"], e["@timestamp"]
                )
            })
            .collect();
        assert!(
            incomplete.is_empty(),
            "run {run}: false incomplete transactions: {incomplete:#?}"
        );
        assert_eq!(http.len() as u64, requests, "run {run}: transactions");
        // Every request exactly once, with the status it got.
        let mut seen: HashMap<(String, String), u64> = HashMap::new();
        for e in &http {
            let key = (
                e["url"]["original"].as_str().unwrap_or("").to_owned(),
                format!(
                    "{}->{}",
                    e["client"]["ip"].as_str().unwrap_or(""),
                    e["server"]["ip"].as_str().unwrap_or("")
                ),
            );
            *seen.entry(key).or_default() += 1;
            let fail = e["url"]["original"]
                .as_str()
                .unwrap_or("")
                .starts_with("/fail");
            assert_eq!(
                e["http"]["response"]["status_code"],
                if fail { 503 } else { 200 },
                "run {run}: {e}"
            );
        }
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            dups.is_empty(),
            "run {run}: transactions reported twice: {dups:?}"
        );
        assert_eq!(
            flows.len() as u64,
            connections + raw_connections as u64,
            "run {run}: TCP flows"
        );
        let raw_bytes: u64 = flows
            .iter()
            .filter(|f| f["destination"]["port"] == 7000)
            .map(|f| f["network"]["bytes"].as_u64().unwrap_or(0))
            .sum();
        let packets = flow_packets(&flows);
        assert_eq!(
            packets, sent,
            "run {run}: packets in flows vs packets the workloads sent (kernel counters)"
        );
        let mut edges: Vec<(String, String, u64)> = graph["edges"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["source"].as_str().unwrap_or("").to_owned(),
                            e["target"].as_str().unwrap_or("").to_owned(),
                            e["mainStat"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        edges.sort();
        let mut want = vec![
            (addr(2), addr(0), 100),
            (addr(3), addr(0), 100),
            (addr(3), addr(1), 100),
            (addr(0), addr(1), 100),
            // Not HTTP: an edge with no requests.
            (addr(2), addr(1), 0),
        ];
        want.sort();
        assert_eq!(edges, want, "run {run}: service map edges: {graph}");
        let nodes: HashMap<String, &J> = graph["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| (n["id"].as_str().unwrap_or("").to_owned(), n))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(nodes.len(), 4, "run {run}: one node per workload: {graph}");
        assert_eq!(
            nodes[&addr(0)]["mainStat"],
            200,
            "run {run}: requests served: {graph}"
        );
        assert_eq!(nodes[&addr(1)]["mainStat"], 200, "run {run}: {graph}");
        assert_eq!(nodes[&addr(2)]["mainStat"], 0, "run {run}: {graph}");
        assert_eq!(nodes[&addr(1)]["arc__failed"], 0.25, "run {run}: {graph}");
        assert_eq!(nodes[&addr(1)]["arc__passed"], 0.75, "run {run}: {graph}");
        assert_eq!(nodes[&addr(0)]["arc__failed"], 0.0, "run {run}: {graph}");
        assert_eq!(nodes[&addr(0)]["subTitle"], ":8080", "run {run}: {graph}");
        assert_eq!(
            nodes[&addr(1)]["subTitle"],
            ":7000, :8080",
            "run {run}: {graph}"
        );
        let tcp_edge = graph["edges"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|e| e["source"] == addr(2).as_str() && e["target"] == addr(1).as_str())
            })
            .cloned()
            .unwrap_or_default();
        assert_eq!(tcp_edge["detail__protocol"], "tcp", "run {run}: {graph}");
        assert_eq!(
            tcp_edge["detail__connections"], raw_connections,
            "run {run}: {graph}"
        );
        assert_eq!(tcp_edge["detail__bytes"], raw_bytes, "run {run}: {graph}");
        println!(
            "run {run}: {requests} transactions, {} TCP flows ({raw_connections} not HTTP), {sent} packets: exact",
            connections + raw_connections as u64
        );
    }
}
