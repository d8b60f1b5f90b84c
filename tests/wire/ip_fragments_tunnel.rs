//! IP fragments inside and around a live VXLAN tunnel (`ns-frag-*-t`): the pod's datagrams
//! fragmented before they enter the tunnel, or the tunnel's packets fragmented on the
//! underlay. trawl reassembles either and keys the flow by the pod's own addresses; the
//! tunnel's own UDP flow counts the packets of the underlay.

use crate::support;

use serde_json::Value as J;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::netns::{lines_of, metric, run, wait_line, Link, ECHO};
use support::process::{http_get, KillOnDrop};

/// A VXLAN tunnel between the host and a namespace, over a 1,500-byte veth, removed however
/// the test ends.
struct Vxlan {
    link: Link,
    device: String,
}

impl Drop for Vxlan {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.device]);
    }
}

impl Vxlan {
    fn build() -> Result<Vxlan, String> {
        let tag = format!("frag-{}", std::process::id() % 10_000);
        let link = Link {
            ns: format!("ns-{tag}-t"),
            host: format!("{tag}-th"),
        };
        let peer = format!("{tag}-tp");
        let vx = Vxlan {
            device: format!("{tag}-vx"),
            link,
        };
        let (ns, host) = (&vx.link.ns, &vx.link.host);
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &["link", "add", host, "type", "veth", "peer", "name", &peer],
        )?;
        run("ip", &["link", "set", &peer, "netns", ns])?;
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns, "ip"];
            a.extend_from_slice(args);
            run("ip", &a)
        };
        // No IPv6 on any of the test's devices, before they come up: a device with IPv6 sends
        // neighbour solicitations, MLD reports and router solicitations of its own, for
        // seconds (a solicitation every 4 s), which then cross the tunnel at any moment. One
        // sent after dumpcap stopped and before trawl did was counted by trawl alone.
        let no_ipv6 = |dev: &str, here: bool| {
            let set = format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
            if here {
                run("sh", &["-c", &set])
            } else {
                run("ip", &["netns", "exec", ns, "sh", "-c", &set])
            }
        };
        no_ipv6(host, true)?;
        no_ipv6(&peer, false)?;
        run("ip", &["addr", "add", "10.213.17.1/24", "dev", host])?;
        run("ip", &["link", "set", host, "mtu", "1500", "up"])?;
        inside(&["addr", "add", "10.213.17.2/24", "dev", &peer])?;
        inside(&["link", "set", &peer, "mtu", "1500", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        // Fixed MACs and permanent neighbours: no ARP inside the tunnel, which would be
        // reported as the outer flow (an inner packet that is not IP).
        let ends = [
            (
                "10.213.17.1",
                "10.213.17.2",
                "10.213.18.1",
                "02:77:00:00:18:01",
                true,
            ),
            (
                "10.213.17.2",
                "10.213.17.1",
                "10.213.18.2",
                "02:77:00:00:18:02",
                false,
            ),
        ];
        for (n, (local, remote, addr, mac, here)) in ends.into_iter().enumerate() {
            let (other_addr, other_mac) = (ends[1 - n].2, ends[1 - n].3);
            let add = [
                "link", "add", &vx.device, "address", mac, "type", "vxlan", "id", "42", "local",
                local, "remote", remote, "dstport", "4789",
            ];
            let cidr = format!("{addr}/24");
            let address = ["addr", "add", &cidr, "dev", &vx.device];
            let up = ["link", "set", &vx.device, "up"];
            let neigh = [
                "neigh",
                "add",
                other_addr,
                "lladdr",
                other_mac,
                "dev",
                &vx.device,
                "nud",
                "permanent",
            ];
            for args in [&add[..], &address[..], &up[..], &neigh[..]] {
                if here {
                    run("ip", args)?;
                } else {
                    inside(args)?;
                }
                if args[0] == "link" && args[1] == "add" {
                    no_ipv6(&vx.device, here)?;
                }
            }
        }
        Ok(vx)
    }

    /// Sets the tunnel device's MTU at both ends.
    fn mtu(&self, mtu: u32) -> Result<(), String> {
        let m = mtu.to_string();
        run("ip", &["link", "set", &self.device, "mtu", &m])?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.link.ns,
                "ip",
                "link",
                "set",
                &self.device,
                "mtu",
                &m,
            ],
        )
        .map(|_| ())
    }
}

/// Three 3,000-byte datagrams echoed back from one port; prints the port.
const TUNNEL_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.bind(("", 0))
for i in range(3):
    data = bytes((i * 17 + n) % 256 for n in range(3000))
    s.sendto(data, (sys.argv[1], 7007))
    back, _ = s.recvfrom(65535)
    assert back == data, len(back)
print(s.getsockname()[1], flush=True)
"#;

/// Inside VXLAN: with the tunnel's MTU at 1,400 the pod's datagrams are fragmented before
/// they enter the tunnel (inner fragments, reassembled inside it); at 1,500 the fragments fit
/// the tunnel but not the 1,500-byte underlay, whose VXLAN packets are fragmented in turn
/// (outer fragments, reassembled before the tunnel is opened). Either way the pod's flow is
/// keyed by its own addresses, comes through `vxlan`, and counts each inner packet once:
/// RFC 791's arithmetic gives how many and their bytes.
#[test]
fn fragments_inside_and_around_a_vxlan_tunnel_are_reassembled() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: a namespace and a veth need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        return;
    }
    let vx = Vxlan::build().unwrap_or_else(|e| panic!("cannot build the tunnel: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut echo = KillOnDrop(
        vx.link
            .exec(&["python3", "-c", ECHO, "10.213.18.2", "::1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    wait_line(
        &lines_of(echo.0.stdout.take().expect("stdout")),
        "ready",
        "the echo server did not start",
    );
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  flows:\n    type: flows\n    capture: {{ interfaces: [\"{}\"] }}\n    period: -1s\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            vx.link.host,
            dir.path().display()
        ),
    )
    .unwrap();
    let mut trawl = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(&pipeline)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The underlay as dumpcap sees it on the same veth: the oracle for the tunnel's own flows.
    let underlay = dir.path().join("underlay.pcap");
    let mut cap = support::dumpcap::Dumpcap::on(
        &vx.link.host,
        &underlay,
        "src net 10.213.17.0/24 and dst net 10.213.17.0/24 and (udp port 4789 or (ip[6:2] & 0x3fff) != 0)",
    );
    let log = lines_of(trawl.0.stderr.take().expect("stderr"));
    let stdout = lines_of(trawl.0.stdout.take().expect("stdout"));
    let (mut capturing, mut metrics_addr) = (false, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !capturing || metrics_addr.is_none() {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("trawl did not start capturing on the veth within 30 s");
        capturing |= line.contains("\"capturing\"");
        if let Some(a) = support::process::metrics_address(&line) {
            metrics_addr = Some(a);
        }
    }
    let metrics_addr = metrics_addr.unwrap_or_default();
    let mut ports = Vec::new();
    for mtu in [1400u32, 1500] {
        vx.mtu(mtu)
            .unwrap_or_else(|e| panic!("tunnel MTU {mtu}: {e}"));
        let out = run("python3", &["-c", TUNNEL_CLIENT, "10.213.18.2"])
            .unwrap_or_else(|e| panic!("the workload through the tunnel (MTU {mtu}) failed: {e}"));
        ports.push((mtu, out.trim().parse::<u64>().expect("the client's port")));
    }
    std::thread::sleep(Duration::from_secs(2));
    cap.stop();
    let metrics = http_get(&metrics_addr, "/metrics").unwrap_or_default().1;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(trawl.0.id() as i32, libc::SIGTERM) };
    let status = trawl.0.wait().expect("wait for trawl");
    assert!(status.success(), "trawl exited with {status}");
    let mut flows = Vec::new();
    while let Ok(l) = stdout.recv_timeout(Duration::from_secs(5)) {
        if let Ok(v) = serde_json::from_str::<J>(&l) {
            flows.push(v);
        }
    }
    for (mtu, port) in ports {
        // RFC 791: pieces of (MTU - 20) rounded down to 8 bytes, each with its own header.
        let piece = (mtu as u64 - 20) / 8 * 8;
        let pieces = 3008u64.div_ceil(piece);
        let want = (3 * pieces, 3 * (3008 + 20 * pieces));
        let flow = flows
            .iter()
            .find(|f| f["source"]["port"] == port && f["destination"]["port"] == 7007)
            .unwrap_or_else(|| panic!("MTU {mtu}: no flow from port {port}: {flows:#?}"));
        assert_eq!(flow["source"]["ip"], "10.213.18.1", "MTU {mtu}: {flow:#}");
        assert_eq!(flow["tunnel"]["type"], "vxlan", "MTU {mtu}: {flow:#}");
        assert_eq!(flow["tunnel"]["id"], "42", "MTU {mtu}: {flow:#}");
        for side in ["source", "destination"] {
            let got = (
                flow[side]["packets"].as_u64().unwrap_or(0),
                flow[side]["bytes"].as_u64().unwrap_or(0),
            );
            assert_eq!(got, want, "MTU {mtu}, {side}: {flow:#}");
        }
    }
    // Inner datagrams: 6 at each MTU. Outer: at 1,500 a full inner fragment (1,550 bytes in
    // VXLAN) is cut in two on the underlay, until the kernel has learnt the tunnel's path MTU
    // (the first datagram each way at least): each outer datagram is two more fragments.
    let datagrams = metric(
        &metrics,
        "trawl_ip_datagrams_reassembled_total{input=\"flows\"}",
    )
    .unwrap_or(0.0) as u64;
    assert!(
        datagrams > 12,
        "outer fragments were reassembled too: {metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "trawl_ip_fragments_total{input=\"flows\",result=\"reassembled\"}"
        ),
        Some((36 + 2 * (datagrams - 12)) as f64),
        "/metrics: {metrics}"
    );
    // The tunnel's own UDP flows (`outer_tunnel_flows`, on by default) count every packet of
    // the underlay, fragments of an outer datagram each, as dumpcap captured them on the same
    // veth. Every one is marked: no packet was left undecoded.
    let outer: Vec<&J> = flows
        .iter()
        .filter(|f| f["destination"]["port"] == 4789 || f["source"]["port"] == 4789)
        .collect();
    assert!(
        outer.iter().all(|f| f["tunnel"]["outer"] == true),
        "no packet left undecoded as an unmarked outer flow: {outer:#?}"
    );
    let outer_packets: u64 = outer
        .iter()
        .map(|f| f["network"]["packets"].as_u64().unwrap_or(0))
        .sum();
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&underlay)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark");
    let on_the_wire = String::from_utf8_lossy(&tshark.stdout).lines().count() as u64;
    assert!(on_the_wire > 36, "dumpcap saw the underlay: {on_the_wire}");
    assert_eq!(outer_packets, on_the_wire, "{outer:#?}");
}
