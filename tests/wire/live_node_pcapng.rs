//! The node of `live_node` (a bridge, one veth per workload) recorded by dumpcap, one per
//! host-side veth, merged by mergecap into one pcapng of two interfaces, and read back by
//! `trawl pcap -c`: each packet is in the file twice and must count once, with exact
//! transaction, flow and packet counts against tshark.

use super::live_node::{drive, in_netns, serve, Load, Node};
use crate::support;

use serde_json::Value as J;
use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::live_http::flow_packets;

/// Packets the kernel dropped for dumpcap, from the statistics it writes at the end of a pcapng
/// (Interface Statistics Blocks: `isb_ifdrop`, `isb_osdrop`; in this machine's byte order).
fn dumpcap_drops(path: &std::path::Path) -> u64 {
    let b = std::fs::read(path).expect("the recording");
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let (mut at, mut dropped) = (0, 0);
    while at + 12 <= b.len() {
        let (kind, len) = (word(at), word(at + 4) as usize);
        if len < 12 || at + len > b.len() {
            break;
        }
        if kind == 5 {
            // Interface id, timestamp (12 bytes), then options.
            let mut o = at + 8 + 12;
            while o + 4 <= at + len - 4 {
                let code = u16::from_ne_bytes([b[o], b[o + 1]]);
                let olen = u16::from_ne_bytes([b[o + 2], b[o + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if (code == 5 || code == 7) && olen == 8 {
                    let mut v = [0u8; 8];
                    v.copy_from_slice(&b[o + 4..o + 12]);
                    dropped += u64::from_ne_bytes(v);
                }
                o += 4 + olen.div_ceil(4) * 4;
            }
        }
        at += len;
    }
    dropped
}

/// The same node recorded by dumpcap on two host-side veths, merged into one pcapng, each veth
/// with its own snapshot length (a file libpcap refuses to read), then decoded by `trawl pcap -c` with a
/// dedup window: each packet is in the file twice, once per interface, and must count once.
/// tshark is the oracle for the packets: every one crossed both veths, and the distinct ones
/// are what the flows must add up to.
#[test]
fn a_pcapng_recorded_on_two_node_veths_counts_every_request_and_packet_once() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: namespaces and veths need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        return;
    }
    let subnet = format!(
        "10.{}.{}",
        190 + std::process::id() % 20,
        std::process::id() % 250
    );
    let node = Node::build(2, &subnet, "png")
        .unwrap_or_else(|e| panic!("cannot build the node (bridge, veths, namespaces): {e}"));
    let (server_ns, client_ns) = (node.workloads[0].0.clone(), node.workloads[1].0.clone());
    let bind = format!("{}:8080", node.workloads[0].2);
    let listen = bind.clone();
    in_netns(&server_ns, move || match TcpListener::bind(&listen) {
        Ok(l) => serve(l),
        Err(e) => panic!("bind {listen}: {e}"),
    });
    std::thread::sleep(Duration::from_millis(200));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.pcapng");
    let (server_veth, client_veth) = (&node.workloads[0].1, &node.workloads[1].1);
    let loads = [
        Load {
            client_ns: client_ns.clone(),
            server: bind.clone(),
            connections: 60,
            per_connection: 1,
            fail_every: 5,
        },
        Load {
            client_ns,
            server: bind,
            connections: 6,
            per_connection: 10,
            fail_every: 3,
        },
    ];
    // The recording is the oracle only when dumpcap lost nothing: one dumpcap on two veths
    // lost hundreds of packets in two runs of three here (its `isb_ifdrop`, even with 64 MiB
    // rings), one dumpcap per veth none. So each veth has its own, with its own snapshot length
    // (both above the veths' 1,514-byte frames, so nothing is cut), and mergecap makes the one
    // pcapng of two interfaces, as it does for a user's recordings.
    let parts = [
        dir.path().join("server.pcapng"),
        dir.path().join("client.pcapng"),
    ];
    let mut recorders = [(server_veth, "1600"), (client_veth, "2048")].map(|(veth, snaplen)| {
        let part = dir.path().join(format!("{veth}.pcapng"));
        support::dumpcap::Dumpcap::with(&["-i", veth, "-s", snaplen, "-B", "64"], &part)
    });
    let mut requests = 0;
    for load in &loads {
        requests += drive(load.clone()).join().expect("a client failed").0;
    }
    // The last FIN/ACKs leave within milliseconds.
    std::thread::sleep(Duration::from_millis(500));
    for (r, part) in recorders.iter_mut().zip(&parts) {
        r.stop();
        std::fs::rename(&r.path, part).expect("rename a recording");
        assert_eq!(
            dumpcap_drops(part),
            0,
            "dumpcap lost packets of {}",
            part.display()
        );
    }
    let merged = Command::new("mergecap")
        .args(["-F", "pcapng", "-w"])
        .arg(&file)
        .args(&parts)
        .status()
        .expect("mergecap is installed (scripts/setup.sh: tshark)");
    assert!(merged.success(), "mergecap failed");

    // The oracle for the packets: tshark's fields of TCP (the bridge's ports send an IGMP
    // report when they come up) that stay the same from one veth to the
    // next (IPv4 identification, ports, sequence and acknowledgment numbers, flags, length).
    // Distinct, they are the packets the workloads sent.
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-Y", "tcp", "-T", "fields", "-e", "frame.interface_id"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.id",
            "-e",
            "tcp.srcport",
        ])
        .args([
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.ack_raw",
        ])
        .args(["-e", "tcp.flags", "-e", "tcp.len"])
        .stderr(Stdio::null())
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(
        tshark.status.success(),
        "tshark cannot read {}",
        file.display()
    );
    let mut per_interface: HashMap<String, u64> = HashMap::new();
    let mut distinct = std::collections::HashSet::new();
    for line in String::from_utf8_lossy(&tshark.stdout).lines() {
        let (id, packet) = line.split_once('\t').unwrap_or((line, ""));
        *per_interface.entry(id.to_owned()).or_default() += 1;
        distinct.insert(packet.to_owned());
    }
    assert_eq!(
        per_interface.len(),
        2,
        "packets on both veths: {per_interface:?}"
    );
    let sent = distinct.len() as u64;

    let pipeline = dir.path().join("node.yaml");
    std::fs::write(
        &pipeline,
        "inputs:\n  node:\n    type: packet\n    capture: { interfaces: [\"png*\"], dedup_window: 100ms }\n    \
         flows: { period: -1s }\n    protocols:\n      http: { ports: [8080] }\n\
         outputs:\n  out: { type: stdout }\n",
    )
    .expect("write the pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "-c"])
        .arg(&pipeline)
        .arg(&file)
        .output()
        .expect("run trawl pcap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "trawl pcap failed: {stderr}");
    let events: Vec<J> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let http: Vec<&J> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "http")
        .collect();
    // Both loads ask for the same paths: a request is its path on its connection.
    let mut seen: HashMap<String, u64> = HashMap::new();
    for e in &http {
        let url = e["url"]["original"].as_str().unwrap_or("").to_owned();
        let request = format!("{url} from port {}", e["client"]["port"]);
        assert!(e["event"].get("reason").is_none(), "incomplete: {e}");
        let fail = url.starts_with("/fail");
        assert_eq!(
            e["http"]["response"]["status_code"],
            if fail { 503 } else { 200 },
            "{e}"
        );
        *seen.entry(request).or_default() += 1;
    }
    assert_eq!(http.len() as u64, requests, "transactions");
    assert!(seen.values().all(|&n| n == 1), "a request twice: {seen:?}");
    let flows: Vec<&J> = events
        .iter()
        .filter(|e| {
            e["event"]["dataset"] == "flow"
                && e["flow"]["final"] == true
                && e["network"]["transport"] == "tcp"
        })
        .collect();
    assert_eq!(flows.len(), 66, "TCP flows, one per connection");
    let packets = flow_packets(&flows);
    assert_eq!(
        packets, sent,
        "packets in flows vs the distinct packets of the file (tshark; per veth: {per_interface:?})"
    );
    println!(
        "{requests} transactions, {} flows, {packets} packets from a pcapng of two veths with {per_interface:?} packets: exact",
        flows.len(),
    );
}
