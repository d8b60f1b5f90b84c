//! IP fragments on a real link: a network namespace (`ns-frag-*`) behind a veth with a
//! 1,500-byte MTU, and the kernel fragmenting what is bigger: UDP datagrams of 3,000 and
//! 9,000 bytes echoed back over IPv4 and IPv6, ICMP and ICMPv6 echoes of 4,000 bytes, and a
//! DNS answer (dnsmasq, a 2.5 KB TXT record over UDP). trawl captures the veth live
//! (`flows` and `dns` inputs) while dumpcap writes the same traffic to a file; tshark, which
//! reassembles by default, is the oracle for the datagrams and the flows' packets and bytes
//! (every fragment a packet). `/metrics` counts every fragment as reassembled.

use crate::support;

use serde_json::Value as J;
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::netns::{lines_of, metric, run, wait_line, Link, ECHO};
use support::process::{http_get, KillOnDrop};

const HOST4: &str = "10.213.7.1";
const PEER4: &str = "10.213.7.2";
const HOST6: &str = "fd00:f7a9::1";
const PEER6: &str = "fd00:f7a9::2";

/// The workload: per family, three 3,000-byte and three 9,000-byte datagrams (each size from
/// its own port) echoed back; three 4,000-byte ICMP echoes (identifier 0x4a4b). Fails when an
/// answer does not come back whole.
const CLIENT: &str = r#"
import socket, struct, sys, os
peer4, peer6 = sys.argv[1], sys.argv[2]
def udp(fam, peer, size):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.bind(("", 0))
    for i in range(3):
        data = bytes((i * 31 + n) % 256 for n in range(size))
        s.sendto(data, (peer, 7007))
        back, _ = s.recvfrom(65535)
        assert back == data, (peer, size, len(back))
    print("udp", fam == socket.AF_INET6, size, s.getsockname()[1], flush=True)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def ping(v6, peer, size, ident):
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(5)
    for seq in range(3):
        body = bytes((seq + n) % 256 for n in range(size))
        t = 128 if v6 else 8
        h = struct.pack("!BBHHH", t, 0, 0, ident, seq)
        if not v6:
            h = struct.pack("!BBHHH", t, 0, csum(h + body), ident, seq)
        s.sendto(h + body, (peer, 0))
        while True:
            back, _ = s.recvfrom(65535)
            if not v6:
                back = back[(back[0] & 15) * 4:]
            want = 129 if v6 else 0
            if back[0] == want and struct.unpack("!H", back[4:6])[0] == ident:
                assert back[8:] == body, (v6, len(back))
                break
    print("icmp", v6, size, ident, flush=True)
for fam, peer in ((socket.AF_INET, peer4), (socket.AF_INET6, peer6)):
    for size in (3000, 9000):
        udp(fam, peer, size)
ping(False, peer4, 4000, 0x4a4b)
ping(True, peer6, 4000, 0x4a4b)
"#;

/// One datagram as tshark reassembled it: its endpoints and the frames of its fragments.
#[derive(Debug)]
struct Datagram {
    src: String,
    dst: String,
    /// UDP ports, or for ICMP the echo identifier twice.
    sport: u64,
    dport: u64,
    icmp: bool,
    udp_len: u64,
    frames: Vec<u64>,
}

/// tshark's reading of the capture: the datagrams it reassembled (or that came whole), each
/// frame's IP length, and how many frames were fragments.
fn tshark_datagrams(pcap: &std::path::Path) -> (Vec<Datagram>, HashMap<u64, u64>, u64) {
    let fields = [
        "frame.number",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.len",
        "ipv6.plen",
        "udp.srcport",
        "udp.dstport",
        "udp.length",
        "icmp.ident",
        "icmpv6.echo.identifier",
        "ip.fragment",
        "ipv6.fragment",
        "ip.flags.mf",
        "ip.frag_offset",
        "ipv6.fraghdr.offset",
    ];
    let mut args = vec!["-n", "-r"];
    let path = pcap.to_string_lossy().into_owned();
    args.push(&path);
    args.extend_from_slice(&["-T", "fields", "-E", "separator=/t", "-E", "aggregator=,"]);
    for f in fields {
        args.extend_from_slice(&["-e", f]);
    }
    let out = run("tshark", &args).expect("tshark reads the capture");
    let mut datagrams = Vec::new();
    let mut ip_len = HashMap::new();
    let mut fragments = 0;
    for line in out.lines() {
        let c: Vec<&str> = line.split('\t').collect();
        // tshark prints some fields in hexadecimal (ICMPv6's echo identifier).
        let num = |i: usize| {
            let v = c.get(i)?;
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse::<u64>().ok(),
            }
        };
        let Some(frame) = num(0) else { continue };
        let v6 = c.get(3).is_some_and(|v| !v.is_empty());
        let (src, dst) = if v6 { (c[3], c[4]) } else { (c[1], c[2]) };
        let len = if v6 { num(6).map(|l| l + 40) } else { num(5) };
        let Some(len) = len else { continue };
        ip_len.insert(frame, len);
        let offset = if v6 { num(16) } else { num(15) };
        if num(14) == Some(1) || offset.is_some_and(|o| o > 0) || (v6 && offset.is_some()) {
            fragments += 1;
        }
        let frames_of = |i: usize| -> Vec<u64> {
            c.get(i)
                .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default()
        };
        let mut frames = frames_of(12);
        frames.extend(frames_of(13));
        if frames.is_empty() {
            frames.push(frame);
        }
        let (sport, dport, icmp) = match (num(7), num(8), num(10).or(num(11))) {
            (Some(s), Some(d), _) => (s, d, false),
            (_, _, Some(id)) => (id, id, true),
            _ => continue,
        };
        datagrams.push(Datagram {
            src: src.to_owned(),
            dst: dst.to_owned(),
            sport,
            dport,
            icmp,
            udp_len: num(9).unwrap_or(0),
            frames,
        });
    }
    (datagrams, ip_len, fragments)
}

/// (packets, bytes) per direction of the flow between `a` (port `ap`) and `b`, as tshark's
/// datagrams add up: every fragment frame a packet, its IP length its bytes.
fn oracle_flow(
    datagrams: &[Datagram],
    ip_len: &HashMap<u64, u64>,
    a: (&str, u64),
    b: (&str, u64),
    icmp: bool,
) -> [(u64, u64); 2] {
    let mut dirs = [(0, 0); 2];
    for d in datagrams.iter().filter(|d| d.icmp == icmp) {
        let dir = if (d.src.as_str(), d.sport) == a && (d.dst.as_str(), d.dport) == b {
            0
        } else if (d.src.as_str(), d.sport) == b && (d.dst.as_str(), d.dport) == a {
            1
        } else {
            continue;
        };
        dirs[dir].0 += d.frames.len() as u64;
        dirs[dir].1 += d.frames.iter().map(|f| ip_len[f]).sum::<u64>();
    }
    dirs
}

#[test]
fn fragmented_udp_icmp_and_dns_on_a_veth_are_reassembled() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: a namespace and a veth need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        return;
    }
    let link = Link::veth(
        &format!("frag-{}", std::process::id() % 10_000),
        &[&format!("{HOST4}/24"), &format!("{HOST6}/64")],
        &[&format!("{PEER4}/24"), &format!("{PEER6}/64")],
    )
    .unwrap_or_else(|e| panic!("cannot build the veth: {e}"));
    let dir = tempfile::tempdir().unwrap();

    // The DNS server: one TXT record of ten 250-byte strings.
    let txt: Vec<String> = (0..10)
        .map(|i| ((b'a' + i) as char).to_string().repeat(250))
        .collect();
    let mut dnsmasq = KillOnDrop(
        link.exec(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={PEER4}"),
            "--port=53",
            // 1,232 by default since dnsmasq 2.87 (DNS flag day 2020): the answer would be cut.
            "--edns-packet-max=4096",
            &format!("--txt-record=big.frag.test,{}", txt.join(",")),
            "--pid-file=",
            "--local=/frag.test/",
            "--user=root",
            "--log-facility=-",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq is not installed"),
    );
    let dnsmasq_log = lines_of(dnsmasq.0.stderr.take().expect("stderr"));
    wait_line(&dnsmasq_log, "started", "dnsmasq did not start");
    let mut echo = KillOnDrop(
        link.exec(&["python3", "-c", ECHO, PEER4, PEER6])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    wait_line(
        &lines_of(echo.0.stdout.take().expect("stdout")),
        "ready",
        "the echo server did not start",
    );

    let pcap = dir.path().join("veth.pcap");
    let mut dumpcap = KillOnDrop(
        Command::new("dumpcap")
            .args(["-q", "-i", &link.host, "-P", "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dumpcap (tshark) is not installed"),
    );
    let dumpcap_err = lines_of(dumpcap.0.stderr.take().expect("stderr"));
    wait_line(&dumpcap_err, "Capturing on", "dumpcap did not start");

    let pipeline = dir.path().join("p.yaml");
    let capture = format!("{{ interfaces: [\"{}\"] }}", link.host);
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  flows:\n    type: flows\n    capture: {capture}\n    period: -1s\n  dns:\n    type: dns\n    capture: {capture}\n    ports: [53]\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
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
    let log = lines_of(trawl.0.stderr.take().expect("stderr"));
    let stdout = lines_of(trawl.0.stdout.take().expect("stdout"));
    let mut metrics_addr = None;
    let mut capturing = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while capturing < 2 || metrics_addr.is_none() {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("trawl did not start capturing on the veth within 30 s");
        if line.contains("\"capturing\"") {
            capturing += 1;
        }
        if let Some(a) = support::process::metrics_address(&line) {
            metrics_addr = Some(a);
        }
    }
    let metrics_addr = metrics_addr.unwrap_or_default();

    let client = run("python3", &["-c", CLIENT, PEER4, PEER6])
        .unwrap_or_else(|e| panic!("the fragmented workload failed: {e}"));
    let dig = run(
        "dig",
        &[
            &format!("@{PEER4}"),
            "big.frag.test",
            "TXT",
            "+bufsize=4096",
            "+notcp",
            "+ignore",
            "+tries=1",
            "+time=5",
        ],
    )
    .expect("dig (bind9-dnsutils) is not installed or failed");
    assert!(
        dig.contains(&"j".repeat(250)) && !dig.contains("flags: qr aa tc"),
        "dig got the whole answer over UDP: {dig}"
    );
    // The capture threads hand on their last blocks.
    std::thread::sleep(Duration::from_secs(2));
    let metrics = http_get(&metrics_addr, "/metrics").unwrap_or_default().1;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(trawl.0.id() as i32, libc::SIGTERM) };
    let status = trawl.0.wait().expect("wait for trawl");
    assert!(status.success(), "trawl exited with {status}");
    // SAFETY: kill(2) on our own child's pid: dumpcap ends its file on SIGTERM.
    unsafe { libc::kill(dumpcap.0.id() as i32, libc::SIGTERM) };
    let _ = dumpcap.0.wait();
    let mut events = Vec::new();
    while let Ok(l) = stdout.recv_timeout(Duration::from_secs(5)) {
        if let Ok(v) = serde_json::from_str::<J>(&l) {
            events.push(v);
        }
    }

    let (datagrams, ip_len, fragment_frames) = tshark_datagrams(&pcap);
    // The workload was fragmented as planned: tshark reassembled 6 datagrams of 3,000 bytes
    // and 6 of 9,000 each way per family (UDP length includes its 8-byte header).
    for size in [3008, 9008] {
        let n = datagrams.iter().filter(|d| d.udp_len == size).count();
        assert_eq!(n, 12, "tshark's {size}-byte UDP datagrams");
    }
    let reassembled: Vec<&Datagram> = datagrams.iter().filter(|d| d.frames.len() > 1).collect();
    // 24 UDP datagrams, 12 ICMP echoes (requests and replies), one DNS answer.
    assert_eq!(
        reassembled.len(),
        24 + 12 + 1,
        "UDP, ICMP and DNS datagrams were fragmented: {reassembled:#?}"
    );
    let all_pieces: u64 = reassembled.iter().map(|d| d.frames.len() as u64).sum();
    assert_eq!(
        all_pieces, fragment_frames,
        "every fragment frame is in a datagram"
    );
    eprintln!(
        "tshark: {fragment_frames} fragment frames in {} reassembled datagrams",
        reassembled.len()
    );

    // Each flow of the workload counts, per direction, every fragment as tshark does.
    let flows: Vec<&J> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "flow")
        .collect();
    let mut checked = BTreeMap::new();
    for line in client.lines().chain(std::iter::once("dns")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (icmp, v6, port) = match w.as_slice() {
            ["udp", v6, _, port] => (false, *v6 == "True", port.parse::<u64>().unwrap()),
            ["icmp", v6, _, ident] => (true, *v6 == "True", ident.parse::<u64>().unwrap()),
            ["dns"] => (false, false, 0),
            _ => continue,
        };
        let (host, peer) = if v6 { (HOST6, PEER6) } else { (HOST4, PEER4) };
        let (a, b) = match (icmp, line) {
            (true, _) => ((host, port), (peer, port)),
            (false, "dns") => {
                let d = datagrams
                    .iter()
                    .find(|d| d.dport == 53 && d.dst == PEER4)
                    .expect("tshark saw the DNS query");
                ((host, d.sport), (peer, 53))
            }
            (false, _) => ((host, port), (peer, 7007)),
        };
        let want = oracle_flow(&datagrams, &ip_len, a, b, icmp);
        assert!(
            want[1].0 > 1,
            "{line}: the answers were fragmented: {want:?}"
        );
        let transport = match (icmp, v6) {
            (false, _) => "udp",
            (true, false) => "icmp",
            (true, true) => "ipv6-icmp",
        };
        // ICMP flows carry no identifier: the echoes' is the biggest (neighbour discovery
        // has flows of its own between the same addresses).
        let flow = flows
            .iter()
            .filter(|f| {
                f["source"]["ip"] == a.0
                    && f["destination"]["ip"] == b.0
                    && (icmp || f["source"]["port"] == a.1 && f["destination"]["port"] == b.1)
                    && f["network"]["transport"] == transport
            })
            .max_by_key(|f| f["network"]["bytes"].as_u64())
            .unwrap_or_else(|| panic!("{line}: no flow {a:?} -> {b:?} in {flows:#?}"));
        let got = [
            (
                flow["source"]["packets"].as_u64().unwrap_or(0),
                flow["source"]["bytes"].as_u64().unwrap_or(0),
            ),
            (
                flow["destination"]["packets"].as_u64().unwrap_or(0),
                flow["destination"]["bytes"].as_u64().unwrap_or(0),
            ),
        ];
        assert_eq!(got, want, "{line}: trawl's flow against tshark's: {flow:#}");
        checked.insert(line.to_owned(), got);
    }
    assert_eq!(checked.len(), 4 + 2 + 1, "flows checked: {checked:?}");

    // The DNS answer, reassembled, is a transaction with the whole TXT record.
    let dns: Vec<&J> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "dns")
        .collect();
    assert_eq!(dns.len(), 1, "one DNS transaction: {dns:#?}");
    assert_eq!(dns[0]["dns"]["response_code"], "NOERROR", "{:#}", dns[0]);
    let data = dns[0]["dns"]["answers"][0]["data"].as_str().unwrap_or("");
    let quoted: Vec<String> = txt.iter().map(|t| format!("\"{t}\"")).collect();
    assert_eq!(data, quoted.join(" "), "{:#}", dns[0]);
    // Every fragment is reassembled, and the datagrams are tshark's.
    let fragments = |result: &str| {
        metric(
            &metrics,
            &format!("trawl_ip_fragments_total{{input=\"flows\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(
        fragments("reassembled"),
        Some(fragment_frames as f64),
        "/metrics: {metrics}"
    );
    for result in [
        "overlap",
        "invalid",
        "timeout",
        "dropped_limit",
        "duplicate",
    ] {
        assert_eq!(fragments(result), Some(0.0), "{result}: {metrics}");
    }
    assert_eq!(
        metric(
            &metrics,
            "trawl_ip_datagrams_reassembled_total{input=\"flows\"}"
        ),
        Some(reassembled.len() as f64),
        "/metrics: {metrics}"
    );

    drop(link);
}
