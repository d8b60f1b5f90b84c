//! Encapsulations, link types and flows of every IP protocol, on the captures in
//! tests/data/encap/ (made by make_live.sh in network namespaces, and by
//! make_encapsulated.py around the live VXLAN capture's inner frames where this kernel has no
//! tunnel device). Expectations come from what was sent (one GET over TCP, two ICMP echo
//! exchanges through each tunnel) and from tshark's dissection of the same file.

use crate::support;

use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::pcap_run::run_events;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/encap")
        .join(name)
}

fn trawl(pcap: &Path, extra: &[&str]) -> Vec<J> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .args(extra)
        .arg(pcap)
        .output()
        .expect("run trawl pcap");
    assert!(
        out.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn get<'a>(ev: &'a J, path: &str) -> Option<&'a J> {
    path.split('.').try_fold(ev, |v, k| v.get(k))
}

fn s(ev: &J, path: &str) -> String {
    match get(ev, path) {
        Some(J::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// A flow event's packets and IP bytes per direction (client's, server's), exactly.
fn assert_per_direction(f: &J, packets: (i64, i64), bytes: (i64, i64), what: &str) {
    assert_eq!(
        (n(f, "source.packets"), n(f, "destination.packets")),
        packets,
        "{what}: packets per direction"
    );
    assert_eq!(
        (n(f, "source.bytes"), n(f, "destination.bytes")),
        bytes,
        "{what}: IP bytes per direction"
    );
}

fn n(ev: &J, path: &str) -> i64 {
    get(ev, path).and_then(J::as_i64).unwrap_or(-1)
}

fn flows<'a>(evs: &'a [J], transport: &str, src: &str) -> Vec<&'a J> {
    evs.iter()
        .filter(|e| s(e, "event.dataset") == "flow")
        .filter(|e| s(e, "network.transport") == transport && s(e, "source.ip") == src)
        .collect()
}

/// tshark's innermost IP packets matching `filter`: (source, destination, IP length).
/// `occurrence` picks the innermost (`l`) or outermost (`f`) IP header.
fn tshark_ip(pcap: &Path, filter: &str, occurrence: char) -> Vec<(String, String, i64)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "udp.port==9999,vxlan"])
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-E",
            &format!("occurrence={occurrence}"),
        ])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.len"])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark on {}", pcap.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap_or(-1))
        })
        .collect()
}

/// Packets and IP bytes tshark sees from `from` among `packets`.
fn sent_by(packets: &[(String, String, i64)], from: &str) -> (i64, i64) {
    packets
        .iter()
        .filter(|p| p.0 == from)
        .fold((0, 0), |(n, b), p| (n + 1, b + p.2))
}

/// Through every tunnel and link type: one TCP flow and one HTTP transaction keyed by the
/// inner 5-tuple with tshark's per-direction packets and IP bytes, the two echo exchanges as
/// one ICMP flow of 2 + 2 packets, and the tunnel named on the flows.
#[test]
fn inner_flows_and_http_through_every_encapsulation() {
    // (capture, extra arguments, expected tunnel type and id)
    type Case<'a> = (&'a str, &'a [&'a str], Option<(&'a str, Option<&'a str>)>);
    let cases: &[Case] = &[
        ("vxlan.pcap", &[], Some(("vxlan", Some("42")))),
        // Every reserved bit of the VXLAN header set: ignored on receipt (RFC 7348).
        ("vxlan_reserved_bits.pcap", &[], Some(("vxlan", Some("44")))),
        (
            "vxlan_port9999.pcap",
            &["--vxlan-ports", "9999"],
            Some(("vxlan", Some("43"))),
        ),
        ("geneve_options.pcap", &[], Some(("geneve", Some("77")))),
        ("gretap_key_csum_seq.pcap", &[], Some(("gre", Some("5")))),
        ("gre_ip.pcap", &[], Some(("gre", None))),
        ("erspan_i.pcap", &[], Some(("erspan-i", None))),
        ("erspan_ii.pcap", &[], Some(("erspan-ii", Some("123")))),
        ("erspan_iii.pcap", &[], Some(("erspan-iii", Some("321")))),
        ("ipip.pcap", &[], Some(("ipip", None))),
        ("gtp_u.pcap", &[], Some(("gtp", Some("4660")))),
        // S only, PN only, E with two extension headers, no flag; outer fragments; echo and
        // end marker messages (tests/data/encap/make_encapsulated.py).
        ("gtp_u_variants.pcap", &[], Some(("gtp", Some("4660")))),
        ("ayiya.pcap", &[], Some(("ayiya", None))),
        ("gre_udp.pcap", &[], Some(("gre-udp", Some("9")))),
        ("snap.pcap", &[], None),
        ("link_nflog.pcap", &[], None),
        ("mpls.pcap", &[], None),
        ("qinq_pppoe.pcap", &[], None),
        ("link_c_hdlc.pcap", &[], None),
        ("link_ppp.pcap", &[], None),
        ("link_null.pcap", &[], None),
        ("link_loop.pcap", &[], None),
        ("link_raw.pcap", &[], None),
        ("link_ipv4.pcap", &[], None),
    ];
    let mut checked = 0;
    for (file, args, tunnel) in cases {
        // make_live.sh numbers the inner subnet of each live tunnel: 10.99.N.0/24.
        let (client, server) = match *file {
            "vxlan_port9999.pcap" => ("10.99.2.1", "10.99.2.2"),
            _ => ("10.99.1.1", "10.99.1.2"),
        };
        let path = data(file);
        let evs = trawl(&path, args);
        let tcp = tshark_ip(&path, "tcp.port == 8080", 'l');
        let (cp, cb) = sent_by(&tcp, client);
        let (sp, sb) = sent_by(&tcp, server);
        // A handshake, the GET, the response, the closes: how many segments is the kernel's
        // business (delayed ACKs), so tshark counts them.
        assert!(cp >= 4 && sp >= 3, "{file}: tshark sees the connection");

        let t = flows(&evs, "tcp", client);
        assert_eq!(t.len(), 1, "{file}: one TCP flow from the client: {evs:#?}");
        let f = t[0];
        assert_eq!(s(f, "destination.ip"), server, "{file}");
        assert_eq!(n(f, "destination.port"), 8080, "{file}");
        assert_per_direction(f, (cp, sp), (cb, sb), file);
        assert_eq!(s(f, "flow.end_reason"), "fin", "{file}");

        let icmp = flows(&evs, "icmp", client);
        assert_eq!(
            icmp.len(),
            1,
            "{file}: echo requests and replies pair: {evs:#?}"
        );
        assert_eq!(s(icmp[0], "destination.ip"), server, "{file}");
        assert_eq!(
            (
                n(icmp[0], "source.packets"),
                n(icmp[0], "destination.packets")
            ),
            (2, 2),
            "{file}"
        );
        assert!(
            !evs.iter()
                .any(|e| s(e, "network.transport") == "icmp" && s(e, "source.ip") == server),
            "{file}: no flow of the replies alone"
        );

        let http: Vec<&J> = evs
            .iter()
            .filter(|e| s(e, "event.dataset") == "http")
            .collect();
        assert_eq!(http.len(), 1, "{file}: one transaction");
        assert_eq!(s(http[0], "url.original"), "/hello.txt", "{file}");
        assert_eq!(n(http[0], "http.response.status_code"), 200, "{file}");
        assert_eq!(s(http[0], "client.ip"), client, "{file}");

        // HTTP events name the tunnel as flows do, with the client as source.
        for f in [f, icmp[0], http[0]] {
            match tunnel {
                Some((kind, id)) => {
                    assert_eq!(s(f, "tunnel.type"), *kind, "{file}");
                    assert_eq!(get(f, "tunnel.id").and_then(J::as_str), *id, "{file}");
                    assert_eq!(s(f, "tunnel.source.ip"), "192.0.2.1", "{file}");
                    assert_eq!(s(f, "tunnel.destination.ip"), "192.0.2.2", "{file}");
                }
                None => assert!(get(f, "tunnel").is_none(), "{file}: no tunnel"),
            }
        }
        if *file == "qinq_pppoe.pcap" {
            assert_eq!(s(f, "network.vlan.id"), "10");
            assert_eq!(s(f, "network.inner.vlan.id"), "20");
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
}

/// VXLAN on a port the decoder was not told about is what it is on the wire: UDP between the
/// tunnel endpoints, no inner flow.
#[test]
fn vxlan_on_an_unconfigured_port_stays_outer_udp() {
    let evs = trawl(&data("vxlan_port9999.pcap"), &[]);
    assert!(evs
        .iter()
        .all(|e| s(e, "network.transport") == "udp" && s(e, "source.ip").starts_with("192.0.2.")));
    assert!(evs.iter().all(|e| s(e, "event.dataset") == "flow"));
}

/// `trawl run` on `pcap` as a `pcap_file` input with `flows:` settings `flows` (YAML flow
/// mapping), events to stdout.
fn trawl_run(pcap: &Path, flows: &str) -> Vec<J> {
    run_events(pcap, &format!("flows: {flows}"))
}

/// Flow events between the tunnel endpoints (make_live.sh's 192.0.2.0/24).
fn outer_flows(evs: &[J]) -> Vec<&J> {
    evs.iter()
        .filter(|e| s(e, "event.dataset") == "flow" && s(e, "source.ip").starts_with("192.0.2."))
        .collect()
}

/// Frames whose inner packet is not IP (ARP inside the tunnel, an AYIYA heartbeat that
/// forwards nothing) still count on the wire: as the outer flow between the tunnel endpoints,
/// with tshark's packet count. With `outer_tunnel_flows: false`, tunnel packets whose inner
/// packet decodes make no outer flow, so only those frames are in it; tunnels over IP (GRE,
/// ERSPAN) never report theirs.
#[test]
fn undecodable_inner_packets_are_reported_as_the_outer_flow() {
    for (file, proto, undecodable) in [
        ("vxlan.pcap", "udp", "vxlan && arp"),
        ("vxlan_reserved_bits.pcap", "udp", "vxlan && arp"),
        ("gretap_key_csum_seq.pcap", "47", "arp"),
        ("erspan_i.pcap", "47", "arp"),
        ("erspan_ii.pcap", "47", "arp"),
        ("erspan_iii.pcap", "47", "arp"),
        ("geneve_options.pcap", "udp", "arp"),
        ("gre_udp.pcap", "udp", "arp"),
        ("ayiya.pcap", "udp", "ayiya.opcode == 0"),
    ] {
        let path = data(file);
        let evs = trawl_run(&path, "{ outer_tunnel_flows: false }");
        let outer = outer_flows(&evs);
        let arp = tshark_ip(&path, undecodable, 'f');
        assert!(
            !arp.is_empty(),
            "{file}: the capture has undecodable frames"
        );
        let total: i64 = outer
            .iter()
            .map(|e| n(e, "source.packets") + n(e, "destination.packets"))
            .sum();
        assert_eq!(total, arp.len() as i64, "{file}: {outer:#?}");
        assert!(outer.iter().all(|e| s(e, "network.transport") == proto));
        assert!(outer.iter().all(|e| get(e, "tunnel").is_none()), "{file}");
        if proto == "47" {
            // Over IP the default is the same: only UDP tunnels have an outer flow to report.
            let by_default = trawl(&path, &[]);
            let again: i64 = outer_flows(&by_default)
                .iter()
                .map(|e| n(e, "source.packets") + n(e, "destination.packets"))
                .sum();
            assert_eq!(again, total, "{file}");
        }
    }
}

/// A tunnel over UDP is a UDP flow between the tunnel endpoints on the wire, and Suricata and
/// Zeek report it besides the inner flows: by default trawl does too, with every packet that
/// crossed the wire between the endpoints (tunnelled or not decodable) and their outer IP
/// bytes per direction as tshark reads them, marked `tunnel.outer: true` with the tunnel's
/// type so that its bytes, which hold the inner flows' bytes, are not counted twice (an outer
/// 5-tuple whose frames never carried a decodable inner packet stays an unmarked UDP flow).
#[test]
fn udp_tunnels_report_their_outer_flow_besides_the_inner_ones() {
    for (file, args, kind) in [
        ("vxlan.pcap", &[][..], "vxlan"),
        ("vxlan_reserved_bits.pcap", &[], "vxlan"),
        ("vxlan_port9999.pcap", &["--vxlan-ports", "9999"], "vxlan"),
        ("geneve_options.pcap", &[], "geneve"),
        ("gtp_u.pcap", &[], "gtp"),
        ("gtp_u_variants.pcap", &[], "gtp"),
        ("ayiya.pcap", &[], "ayiya"),
        ("gre_udp.pcap", &[], "gre-udp"),
    ] {
        let path = data(file);
        let evs = trawl(&path, args);
        let outer = outer_flows(&evs);
        assert!(!outer.is_empty(), "{file}: an outer flow: {evs:#?}");
        // Every outer packet tshark sees: UDP between the endpoints, outermost IP header;
        // each fragment of an outer datagram (tshark shows UDP on the last one only).
        let wire = tshark_ip(
            &path,
            "(udp || ip.flags.mf == 1 || ip.frag_offset > 0) && ip.src == 192.0.2.0/24",
            'f',
        );
        let mut marked = 0;
        for e in &outer {
            assert_eq!(s(e, "network.transport"), "udp", "{file}: {e}");
            // A flow of frames whose inner packet does not decode (ARP) carries no inner
            // flow's bytes: it stays unmarked, as without the option.
            if get(e, "tunnel").is_some() {
                assert_eq!(s(e, "tunnel.type"), kind, "{file}: {e}");
                assert_eq!(get(e, "tunnel.outer"), Some(&J::Bool(true)), "{file}: {e}");
                assert!(get(e, "tunnel.id").is_none(), "{file}: {e}");
                marked += 1;
            }
        }
        assert!(
            marked >= 1,
            "{file}: the tunnel's outer flow is marked: {outer:#?}"
        );
        let mut got: Vec<(String, i64, i64)> = outer
            .iter()
            .flat_map(|e| {
                [
                    (
                        s(e, "source.ip"),
                        n(e, "source.packets"),
                        n(e, "source.bytes"),
                    ),
                    (
                        s(e, "destination.ip"),
                        n(e, "destination.packets"),
                        n(e, "destination.bytes"),
                    ),
                ]
            })
            .filter(|d| d.1 > 0)
            .fold(Vec::new(), |mut acc: Vec<(String, i64, i64)>, d| {
                match acc.iter_mut().find(|a| a.0 == d.0) {
                    Some(a) => {
                        a.1 += d.1;
                        a.2 += d.2;
                    }
                    None => acc.push(d),
                }
                acc
            });
        got.sort();
        let mut want: Vec<(String, i64, i64)> = ["192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|ip| {
                let (p, b) = sent_by(&wire, ip);
                (ip.to_string(), p, b)
            })
            .filter(|d| d.1 > 0)
            .collect();
        want.sort();
        assert_eq!(
            got, want,
            "{file}: packets and bytes per sender: {outer:#?}"
        );
        // The inner flows are there as without the option (the first test checks them).
        assert_eq!(
            flows(&evs, "tcp", "10.99.1.1").len() + flows(&evs, "tcp", "10.99.2.1").len(),
            1,
            "{file}"
        );
    }
}

/// Without a tunnel: ICMP echo paired by identifier; the ICMP port unreachable counted in
/// the UDP flow it quotes (not a flow of its own); the same 5-tuple re-opened after an RST
/// is a second flow. Per-direction packets and IP bytes as tshark reads the capture.
#[test]
fn icmp_echo_errors_and_reopened_connections() {
    let path = data("flows_plain.pcap");
    let evs = trawl(&path, &[]);
    let (a, b) = ("192.0.2.1", "192.0.2.2");

    let icmp = flows(&evs, "icmp", a);
    assert_eq!(icmp.len(), 1, "{evs:#?}");
    let echo = tshark_ip(&path, "icmp.type == 8 or icmp.type == 0", 'l');
    assert_eq!(
        (n(icmp[0], "source.packets"), n(icmp[0], "source.bytes")),
        sent_by(&echo, a)
    );
    assert_eq!(
        (
            n(icmp[0], "destination.packets"),
            n(icmp[0], "destination.bytes")
        ),
        sent_by(&echo, b)
    );
    assert_eq!(
        evs.iter()
            .filter(|e| s(e, "network.transport") == "icmp")
            .count(),
        1,
        "the port unreachable is no flow of its own"
    );

    let udp = flows(&evs, "udp", a);
    assert_eq!(udp.len(), 1);
    assert_eq!(n(udp[0], "destination.port"), 9);
    let datagram = tshark_ip(&path, "udp.dstport == 9 and not icmp", 'l');
    let unreachable = tshark_ip(&path, "icmp.type == 3", 'f');
    assert_eq!(unreachable.len(), 1);
    assert_eq!(
        (n(udp[0], "source.packets"), n(udp[0], "source.bytes")),
        sent_by(&datagram, a)
    );
    assert_eq!(
        (
            n(udp[0], "destination.packets"),
            n(udp[0], "destination.bytes")
        ),
        (1, unreachable[0].2),
        "the error goes back in the flow's reverse direction"
    );

    let tcp = flows(&evs, "tcp", a);
    assert_eq!(tcp.len(), 2, "two connections on one 5-tuple: {tcp:#?}");
    let segments = tshark_ip(&path, "tcp.port == 8080", 'l');
    // tshark tells the connections apart by the SYN that re-opens the port pair.
    let mut starts = segments.len();
    let syns = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args([
            "-Y",
            "tcp.port == 8080",
            "-T",
            "fields",
            "-e",
            "tcp.flags.syn",
            "-e",
            "tcp.flags.ack",
        ])
        .output()
        .expect("tshark");
    for (i, l) in String::from_utf8_lossy(&syns.stdout).lines().enumerate() {
        if i > 0 && l.starts_with("1\t0") {
            starts = i;
        }
    }
    let (first, second) = segments.split_at(starts);
    for (flow, segs) in [(tcp[0], first), (tcp[1], second)] {
        assert_eq!(s(flow, "source.port"), "40001");
        assert_eq!(s(flow, "flow.end_reason"), "rst");
        assert_eq!(
            (n(flow, "source.packets"), n(flow, "source.bytes")),
            sent_by(segs, a)
        );
        assert_eq!(
            (n(flow, "destination.packets"), n(flow, "destination.bytes")),
            sent_by(segs, b)
        );
    }
    assert_ne!(s(tcp[0], "flow.id"), s(tcp[1], "flow.id"));
    let http = evs
        .iter()
        .filter(|e| s(e, "event.dataset") == "http")
        .count();
    assert_eq!(http, 2);
}

/// An echo exchange belongs to the host that sent the request, whose identifier it is (RFC
/// 792): 192.0.2.1 pinging 192.0.2.2 and 192.0.2.2 pinging 192.0.2.1 with the same identifier
/// are two flows, each with its requester as source and tshark's request/reply pairing.
#[test]
fn echo_exchanges_in_both_directions_are_two_flows() {
    let path = data("icmp_echo_both_ways.pcap");
    let evs = trawl(&path, &[]);
    let (a, b) = ("192.0.2.1", "192.0.2.2");
    for (asker, answerer) in [(a, b), (b, a)] {
        let requests = tshark_ip(&path, &format!("icmp.type == 8 and ip.src == {asker}"), 'l');
        let replies = tshark_ip(&path, &format!("icmp.type == 0 and ip.dst == {asker}"), 'l');
        assert_eq!((requests.len(), replies.len()), (2, 2), "tshark's view");
        let f = flows(&evs, "icmp", asker);
        assert_eq!(f.len(), 1, "one flow asked by {asker}: {evs:#?}");
        assert_eq!(s(f[0], "destination.ip"), answerer);
        assert_eq!(
            (n(f[0], "source.packets"), n(f[0], "source.bytes")),
            sent_by(&requests, asker)
        );
        assert_eq!(
            (n(f[0], "destination.packets"), n(f[0], "destination.bytes")),
            sent_by(&replies, answerer)
        );
    }
    assert_eq!(
        evs.iter()
            .filter(|e| s(e, "event.dataset") == "flow")
            .count(),
        2
    );
}

/// A closed connection's late segments (RFC 9293: the server retransmits its FIN until the
/// client's last ACK arrives, the client answers from TIME-WAIT, up to 25 s after the close;
/// a segment that crossed an RST) stay on that connection's flow; a SYN on the same 5-tuple
/// is a new connection even while the old one lingers. tshark's `tcp.stream` is the oracle.
#[test]
fn late_segments_stay_on_the_closed_connection() {
    let path = data("tcp_late_segments.pcap");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args([
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
        ])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success());
    // Per tshark stream: packets from the client, packets from the server.
    let mut streams = [(0i64, 0i64); 2];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (stream, src) = line.split_once('\t').expect("two fields");
        let st = &mut streams[stream.parse::<usize>().expect("stream index")];
        if src == "192.0.2.1" {
            st.0 += 1;
        } else {
            st.1 += 1;
        }
    }
    assert_eq!(streams, [(11, 10), (3, 2)], "tshark's view of the capture");

    let evs = trawl(&path, &["--only", "flows"]);
    let mut tcp: Vec<&J> = evs
        .iter()
        .filter(|e| s(e, "network.transport") == "tcp")
        .collect();
    tcp.sort_by_key(|e| s(e, "event.start"));
    assert_eq!(
        tcp.len(),
        2,
        "two connections, no flow of late segments alone, no interim report of a closed one: {tcp:#?}"
    );
    assert!(tcp.iter().all(|f| s(f, "source.ip") == "192.0.2.1"));
    for (f, (cp, sp), why) in [(tcp[0], streams[0], "fin"), (tcp[1], streams[1], "rst")] {
        assert_eq!(
            (n(f, "source.packets"), n(f, "destination.packets")),
            (cp, sp),
            "{f:#?}"
        );
        assert_eq!(s(f, "flow.end_reason"), why);
        assert_eq!(s(f, "flow.final"), "true");
    }
}

/// ESP (RFC 4303): each security association is one direction of traffic named by its SPI,
/// so two SAs between the same hosts are two flows, each saying its SPI (`esp.spi`), with the
/// packets and IP bytes tshark counts for that SPI.
#[test]
fn esp_security_associations_are_flows_of_their_own_with_their_spi() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esp.pcap");
    let (a, b) = ([192u8, 0, 2, 1], [192u8, 0, 2, 2]);
    // pcap (Ethernet), then per packet: Ethernet, IPv4 (protocol 50), SPI, sequence, payload.
    let mut pcap: Vec<u8> = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    let packets: [(u32, [u8; 4], [u8; 4], usize); 5] = [
        (0x1000, a, b, 60),
        (0x2000, b, a, 80),
        (0x1000, a, b, 100),
        (0x2000, b, a, 40),
        (0x1000, a, b, 20),
    ];
    for (i, (spi, src, dst, payload)) in packets.iter().enumerate() {
        let ip_len = 20 + 8 + payload;
        let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            i as u8,
            0x40,
            0,
            64,
            50,
            0,
            0,
        ];
        ip.extend_from_slice(src);
        ip.extend_from_slice(dst);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&spi.to_be_bytes());
        frame.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        frame.extend(std::iter::repeat_n(0xab, *payload));
        pcap.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        pcap.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&frame);
    }
    std::fs::write(&path, &pcap).unwrap();

    let evs = trawl(&path, &[]);
    let esp: Vec<&J> = evs
        .iter()
        .filter(|e| s(e, "event.dataset") == "flow" && s(e, "network.iana_number") == "50")
        .collect();
    assert_eq!(esp.len(), 2, "one flow per SPI: {evs:#?}");
    for (spi, from) in [(0x1000, "192.0.2.1"), (0x2000, "192.0.2.2")] {
        let f: Vec<&&J> = esp.iter().filter(|e| n(e, "esp.spi") == spi).collect();
        assert_eq!(f.len(), 1, "the flow of SPI {spi:#x}: {esp:#?}");
        assert_eq!(s(f[0], "source.ip"), from);
        let seen = tshark_ip(&path, &format!("esp.spi == {spi:#x}"), 'l');
        assert_eq!(
            seen.len(),
            if spi == 0x1000 { 3 } else { 2 },
            "tshark's view"
        );
        assert_eq!(
            (n(f[0], "source.packets"), n(f[0], "source.bytes")),
            sent_by(&seen, from)
        );
        assert_eq!(
            n(f[0], "destination.packets"),
            0,
            "an SA carries one direction"
        );
    }
}

/// A mirror port that tags one direction only (vlan_one_side.pcap: the client's frames carry
/// 802.1Q VLAN 3136, the server's none). 802.1Q makes a VLAN a LAN of its own, so by default
/// each side is a conversation of its own: two half flows and two half transactions. With
/// `key_by_vlan: false` (`--key-by-vlan false`) the VLAN is left out of the key: one flow with
/// tshark's packets and bytes per direction, still saying the VLAN it saw, and one complete
/// transaction.
#[test]
fn one_side_tagged_is_one_conversation_with_the_vlan_out_of_the_key() {
    let path = data("vlan_one_side.pcap");
    let (client, server) = ("10.99.1.1", "10.99.1.2");
    let tcp = tshark_ip(&path, "tcp.port == 8080", 'l');
    let (cp, cb) = sent_by(&tcp, client);
    let (sp, sb) = sent_by(&tcp, server);
    let tagged = tshark_ip(&path, "tcp.port == 8080 && vlan.id == 3136", 'l');
    assert!(cp >= 4 && sp >= 3, "tshark sees the connection");
    assert_eq!(
        (sent_by(&tagged, client).0, sent_by(&tagged, server).0),
        (cp, 0),
        "tshark: the client's side tagged, the server's not"
    );
    let tcp_flows = |evs: &[J]| -> Vec<J> {
        evs.iter()
            .filter(|e| s(e, "event.dataset") == "flow" && s(e, "network.transport") == "tcp")
            .cloned()
            .collect()
    };
    let http = |evs: &[J]| -> Vec<J> {
        evs.iter()
            .filter(|e| s(e, "event.dataset") == "http")
            .cloned()
            .collect()
    };

    // Default: each side alone.
    let evs = trawl(&path, &[]);
    let mut halves: Vec<(i64, i64, String)> = tcp_flows(&evs)
        .iter()
        .map(|f| {
            (
                n(f, "source.packets") + n(f, "destination.packets"),
                n(f, "source.bytes") + n(f, "destination.bytes"),
                s(f, "network.vlan.id"),
            )
        })
        .collect();
    halves.sort();
    let mut want = vec![(cp, cb, "3136".to_owned()), (sp, sb, String::new())];
    want.sort();
    assert_eq!(halves, want, "two half flows: {evs:#?}");
    let mut reasons: Vec<String> = http(&evs).iter().map(|e| s(e, "event.reason")).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["request_missing", "response_missing"],
        "two half transactions: {evs:#?}"
    );

    // VLAN out of the key, by option and by configuration.
    for (how, evs) in [
        (
            "--key-by-vlan false",
            trawl(&path, &["--key-by-vlan", "false"]),
        ),
        (
            "key_by_vlan: false",
            run_events(&path, "key_by_vlan: false"),
        ),
    ] {
        let f = tcp_flows(&evs);
        assert_eq!(f.len(), 1, "{how}: one TCP flow: {evs:#?}");
        let f = &f[0];
        assert_eq!(
            (s(f, "source.ip"), n(f, "source.port") > 0),
            (client.to_owned(), true)
        );
        assert_per_direction(f, (cp, sp), (cb, sb), how);
        assert_eq!(s(f, "flow.end_reason"), "fin", "{how}");
        assert_eq!(s(f, "network.vlan.id"), "3136", "{how}: the VLAN it saw");
        let h = http(&evs);
        assert_eq!(h.len(), 1, "{how}: one transaction: {evs:#?}");
        assert!(
            get(&h[0], "event.reason").is_none(),
            "{how}: complete: {h:#?}"
        );
        assert_eq!(s(&h[0], "http.request.method"), "GET", "{how}");
        assert_eq!(s(&h[0], "url.original"), "/hello.txt", "{how}");
        assert_eq!(n(&h[0], "http.response.status_code"), 200, "{how}");
        assert_eq!(s(&h[0], "client.ip"), client, "{how}");
        // The echo exchange too: one flow of 2 + 2.
        let icmp = flows(&evs, "icmp", client);
        assert_eq!(icmp.len(), 1, "{how}: {evs:#?}");
        assert_eq!(
            (
                n(icmp[0], "source.packets"),
                n(icmp[0], "destination.packets")
            ),
            (2, 2),
            "{how}"
        );
    }
}
