//! A Service call on a node: a pod calls a ClusterIP, which the node translates (kube-proxy's
//! DNAT) to the pod behind it. The caller's veth sees the ClusterIP, the callee's the pod, so
//! a capture of every veth sees each packet of the conversation twice under two 5-tuples.
//! Here the node is a network namespace routing between two workload namespaces with an
//! iptables DNAT rule, trawl runs inside it capturing both veths, and every request must be
//! one transaction, to the ClusterIP (the view seen first), and every connection one flow.

use crate::live_node::{in_netns, serve};
use crate::support::live_http::read_response;
use crate::support::netns::{lines_of, run, wait_line};

use serde_json::Value as J;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CLUSTER_IP: &str = "10.96.7.10";

/// The node's and the workloads' namespaces, removed (with their veths) however the test ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// node ── `<tag>-ha` ── caller (10.78.1.2), node ── `<tag>-hb` ── backend (10.78.2.2:8080);
/// the node routes and translates ClusterIP:80 to the backend.
fn build(tag: &str) -> Result<Namespaces, String> {
    let (node, a, b) = (format!("{tag}-n"), format!("{tag}-a"), format!("{tag}-b"));
    let mut made = Namespaces(Vec::new());
    for ns in [&node, &a, &b] {
        run("ip", &["netns", "add", ns])?;
        made.0.push(ns.clone());
    }
    for (ns, side, net) in [(&a, "a", "10.78.1"), (&b, "b", "10.78.2")] {
        let (host, peer) = (format!("{tag}-h{side}"), format!("{tag}-p{side}"));
        run(
            "ip",
            &[
                "link", "add", &host, "netns", &node, "type", "veth", "peer", "name", &peer,
                "netns", ns,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &node,
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                &host,
            ],
        )?;
        run("ip", &["-n", &node, "link", "set", &host, "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &peer,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", &peer, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &format!("{net}.1"),
            ],
        )?;
    }
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    )?;
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            CLUSTER_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            "10.78.2.2:8080",
        ],
    )?;
    Ok(made)
}

#[test]
fn a_service_call_seen_before_and_after_dnat_is_one_transaction() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: namespaces, veths and iptables need root");
        return;
    }
    let tag = format!("tn{}", std::process::id() % 10_000);
    let spaces = match build(&tag) {
        Ok(s) => s,
        Err(e) => {
            println!("SKIPPED: cannot build the node ({e})");
            return;
        }
    };
    let node = &spaces.0[0];
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("node.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [\"{tag}-h*\"], bpf_filter: tcp }}\n    flows: {{ period: -1s, closed_linger: 1s }}\n    protocols:\n      http: {{ ports: [80, 8080] }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut trawl = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", node, env!("CARGO_BIN_EXE_trawl")])
            .args(["--log-format", "json", "run", "-c"])
            .arg(&pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = lines_of(trawl.0.stderr.take().unwrap());
    let events = lines_of(trawl.0.stdout.take().unwrap());
    for _ in 0..2 {
        wait_line(&log, "capturing", "trawl did not capture both veths");
    }

    let listener = in_netns(&format!("{tag}-b"), || TcpListener::bind("0.0.0.0:8080"))
        .join()
        .unwrap()
        .expect("the backend listens");
    std::thread::spawn(move || serve(listener));
    const CONNECTIONS: usize = 20;
    const REQUESTS: usize = 10;
    in_netns(&format!("{tag}-a"), || {
        for c in 0..CONNECTIONS {
            let s = TcpStream::connect((CLUSTER_IP, 80)).expect("connect to the ClusterIP");
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for i in 0..REQUESTS {
                write!(w, "GET /c{c}/r{i} HTTP/1.1\r\nHost: svc\r\n\r\n").unwrap();
                assert_eq!(read_response(&mut r), 200);
            }
        }
    })
    .join()
    .expect("the caller");
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child (`ip netns exec` execs trawl in place).
    unsafe { libc::kill(trawl.0.id() as i32, libc::SIGTERM) };
    let status = trawl.0.wait().unwrap();
    assert!(status.success(), "trawl exited with {status}");
    let events: Vec<J> = events
        .iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let of = |kind: &str| -> Vec<&J> {
        events
            .iter()
            .filter(|e| e["event"]["dataset"] == kind)
            .collect()
    };
    let http = of("http");
    let mut paths: Vec<String> = http
        .iter()
        .map(|e| {
            assert_eq!(e["destination"]["ip"], CLUSTER_IP, "{e}");
            assert_eq!(e["destination"]["port"], 80, "{e}");
            assert_eq!(e["http"]["response"]["status_code"], 200, "{e}");
            assert!(e["event"]["reason"].is_null(), "{e}");
            e["url"]["original"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    paths.sort();
    let mut want: Vec<String> = (0..CONNECTIONS)
        .flat_map(|c| (0..REQUESTS).map(move |i| format!("/c{c}/r{i}")))
        .collect();
    want.sort();
    assert_eq!(paths, want, "every request once");
    let flows: Vec<&J> = of("flow")
        .into_iter()
        .filter(|e| e["network"]["transport"] == "tcp" && e["flow"]["final"] == true)
        .collect();
    assert_eq!(flows.len(), CONNECTIONS, "{flows:#?}");
    for f in flows {
        assert_eq!(f["destination"]["ip"], CLUSTER_IP, "{f}");
    }
}
