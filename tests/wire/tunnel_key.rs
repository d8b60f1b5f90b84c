//! Flows and connections keyed by tunnel (`key_by_tunnel`) on tests/data/encap/vni_overlap.pcap,
//! two VXLAN tenants using the same inner addresses and ports (make_vni_overlap.sh, real
//! devices in namespaces), and IPv6 inside GTP-U with a TEID per direction over IPv4 and IPv6
//! underlays (gtp_u_ipv6*.pcap, make_gtp_ipv6.sh). Counts per tenant from tshark filtered by
//! VNI; the HTTP exchanges from what the script sent (tshark, keying TCP by the 5-tuple,
//! merges the tenants' streams too).

use crate::support;

use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::pcap_run::{json_lines as lines, run_events as trawl_run};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/encap")
        .join(name)
}

fn trawl_pcap(pcap: &Path, extra: &[&str]) -> Vec<J> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .args(extra)
        .arg(pcap)
        .output()
        .expect("run trawl pcap");
    lines(out, &format!("trawl pcap {extra:?}"))
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

fn n(ev: &J, path: &str) -> i64 {
    get(ev, path).and_then(J::as_i64).unwrap_or(-1)
}

fn of<'a>(evs: &'a [J], dataset: &str, transport: &str) -> Vec<&'a J> {
    evs.iter()
        .filter(|e| s(e, "event.dataset") == dataset && s(e, "network.transport") == transport)
        .collect()
}

/// Per sender, the packets and IP bytes of the innermost IPv4 packets tshark shows for
/// `filter`: `(sender, packets, bytes)`, sorted.
fn tshark_by_sender(pcap: &Path, filter: &str) -> Vec<(String, i64, i64)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", filter, "-T", "fields", "-E", "occurrence=l"])
        .args(["-e", "ip.src", "-e", "ip.len"])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark -Y {filter}");
    let mut by: Vec<(String, i64, i64)> = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let (ip, bytes) = l.split_once('\t').expect("two fields");
        add(&mut by, ip, bytes.parse().expect("a length"));
    }
    by.sort();
    by
}

/// One more packet of `bytes` from `ip` in a `(sender, packets, bytes)` list.
fn add(to: &mut Vec<(String, i64, i64)>, ip: &str, bytes: i64) {
    match to.iter_mut().find(|b| b.0 == ip) {
        Some(b) => {
            b.1 += 1;
            b.2 += bytes;
        }
        None => to.push((ip.to_owned(), 1, bytes)),
    }
}

/// A flow's `(sender, packets, bytes)` for each direction that sent something, sorted.
fn flow_by_sender(f: &J) -> Vec<(String, i64, i64)> {
    let mut by: Vec<(String, i64, i64)> = ["source", "destination"]
        .iter()
        .map(|side| {
            (
                s(f, &format!("{side}.ip")),
                n(f, &format!("{side}.packets")),
                n(f, &format!("{side}.bytes")),
            )
        })
        .filter(|d| d.1 > 0)
        .collect();
    by.sort();
    by
}

/// What make_vni_overlap.sh exchanged: per tenant (VNI), its paths and its server's status.
const TENANTS: [(&str, u16); 2] = [("100", 200), ("200", 404)];

/// Two tenants of a VXLAN overlay (VNI 100 and 200), the same client 10.0.0.5:40000 and server
/// 10.0.0.9:80 in both, at the same time; the same tenants' frames carried in Geneve (VNI 100,
/// 200) and in GRE (keys 100, 200, make_encapsulated.py). Keyed by tunnel
/// (`--key-by-tunnel true`, and `key_by_tunnel: true` beside a `pcap_file`'s path): one TCP
/// flow and one echo flow per tenant with tshark's packets and bytes for that VNI or key in
/// each direction, each saying its id, and each tenant's three requests paired with its own
/// server's responses.
#[test]
fn overlapping_tenants_are_conversations_of_their_own_keyed_by_tunnel() {
    for (file, kind, id_field) in [
        ("vni_overlap.pcap", "vxlan", "vxlan.vni"),
        ("geneve_overlap.pcap", "geneve", "geneve.vni"),
        ("gretap_overlap.pcap", "gre", "gre.key"),
    ] {
        tenants_apart(file, kind, id_field);
    }
}

/// The checks of `overlapping_tenants_are_conversations_of_their_own_keyed_by_tunnel` on
/// `file`, whose tunnels are of `kind` with their id in tshark's `id_field`.
fn tenants_apart(file: &str, kind: &str, id_field: &str) {
    let path = data(file);
    // tshark's per-direction counts of each tenant's TCP and echo packets, by tunnel id.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-Y", "tcp || icmp", "-T", "fields", "-E", "occurrence=l"])
        .args([
            "-e", id_field, "-e", "ip.proto", "-e", "ip.src", "-e", "ip.len",
        ])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark on {file}");
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    let tshark: Vec<_> = TENANTS
        .iter()
        .map(|(vni, _)| {
            let of_proto = |proto: &str| {
                let mut by = Vec::new();
                // tshark prints a VNI in decimal, Geneve's VNI and a GRE key in hex.
                let id = |v: &str| match v.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => v.parse().ok(),
                };
                let same = |r: &&Vec<String>| id(&r[0]) == id(vni) && r[1] == proto;
                for r in rows.iter().filter(same) {
                    add(&mut by, &r[2], r[3].parse().expect("a length"));
                }
                by.sort();
                by
            };
            (of_proto("6"), of_proto("1"))
        })
        .collect();
    let mut runs = vec![(
        format!("{file} --key-by-tunnel true"),
        trawl_pcap(&path, &["--key-by-tunnel", "true"]),
    )];
    if kind == "vxlan" {
        runs.push((
            format!("{file} key_by_tunnel: true"),
            trawl_run(&path, "key_by_tunnel: true"),
        ));
    }
    for (how, evs) in runs {
        let tcp = of(&evs, "flow", "tcp");
        let icmp = of(&evs, "flow", "icmp");
        assert_eq!(tcp.len(), 2, "{how}: a TCP flow per tenant: {tcp:#?}");
        assert_eq!(icmp.len(), 2, "{how}: an echo flow per tenant: {icmp:#?}");
        for ((vni, status), (want_tcp, want_echo)) in TENANTS.iter().zip(&tshark) {
            let t: Vec<&&J> = tcp.iter().filter(|f| s(f, "tunnel.id") == *vni).collect();
            assert_eq!(t.len(), 1, "{how}: the TCP flow of VNI {vni}: {tcp:#?}");
            let f = t[0];
            assert_eq!(
                (s(f, "source.ip"), n(f, "source.port")),
                ("10.0.0.5".to_owned(), 40000),
                "{how}"
            );
            assert_eq!(n(f, "destination.port"), 80, "{how}");
            assert_eq!(s(f, "tunnel.type"), kind, "{how}");
            assert_eq!(s(f, "flow.end_reason"), "fin", "{how}");
            assert_eq!(want_tcp.len(), 2, "tshark sees both sides of VNI {vni}");
            assert_eq!(&flow_by_sender(f), want_tcp, "{how}: VNI {vni}: {f:#}");

            let e: Vec<&&J> = icmp.iter().filter(|f| s(f, "tunnel.id") == *vni).collect();
            assert_eq!(e.len(), 1, "{how}: the echo flow of VNI {vni}: {icmp:#?}");
            assert_eq!(&flow_by_sender(e[0]), want_echo, "{how}: echo in VNI {vni}");
            assert_eq!(
                (n(e[0], "source.packets"), n(e[0], "destination.packets")),
                (2, 2),
                "{how}"
            );

            let mut paths: Vec<String> = Vec::new();
            for h in of(&evs, "http", "tcp")
                .into_iter()
                .filter(|h| s(h, "tunnel.id") == *vni)
            {
                assert!(get(h, "event.reason").is_none(), "{how}: complete: {h:#}");
                assert_eq!(
                    n(h, "http.response.status_code"),
                    i64::from(*status),
                    "{how}: VNI {vni}'s request answered by its own server: {h:#}"
                );
                assert_eq!(s(h, "client.ip"), "10.0.0.5", "{how}");
                paths.push(s(h, "url.original"));
            }
            let want: Vec<String> = ["one", "two", "three"]
                .iter()
                .map(|p| format!("/t{vni}/{p}"))
                .collect();
            assert_eq!(paths, want, "{how}: VNI {vni}'s requests, in order");
        }
        assert_eq!(of(&evs, "http", "tcp").len(), 6, "{how}");
        assert_ne!(
            s(tcp[0], "flow.id"),
            s(tcp[1], "flow.id"),
            "{how}: two flows, two ids"
        );
        // Community ID v1 hashes the 5-tuple only: the same for both, as the spec makes it.
        assert_eq!(
            s(tcp[0], "network.community_id"),
            s(tcp[1], "network.community_id")
        );
    }
}

/// By default the tunnel is not part of the key (a node sees one packet plain on a veth and
/// in VXLAN on its uplink): the two tenants' connections are one flow holding both tenants'
/// packets, as tshark counts them over both VNIs, named by the first packet's VNI, and the two
/// byte streams are mixed, so the six transactions do not come out as exchanged.
#[test]
fn overlapping_tenants_are_one_conversation_by_default() {
    let path = data("vni_overlap.pcap");
    let evs = trawl_pcap(&path, &[]);
    let tcp = of(&evs, "flow", "tcp");
    assert_eq!(tcp.len(), 1, "{tcp:#?}");
    let want = tshark_by_sender(&path, "vxlan && tcp");
    assert_eq!(flow_by_sender(tcp[0]), want, "{:#}", tcp[0]);
    assert_eq!(s(tcp[0], "tunnel.id"), "100");
    let echo = of(&evs, "flow", "icmp");
    assert_eq!(echo.len(), 1);
    assert_eq!(
        (
            n(echo[0], "source.packets"),
            n(echo[0], "destination.packets")
        ),
        (4, 4)
    );
    let right = of(&evs, "http", "tcp")
        .iter()
        .filter(|h| {
            TENANTS.iter().any(|(vni, status)| {
                s(h, "url.original").starts_with(&format!("/t{vni}/"))
                    && n(h, "http.response.status_code") == i64::from(*status)
                    && get(h, "event.reason").is_none()
            })
        })
        .count();
    assert!(right < 6, "merged streams: {evs:#?}");
}

/// What tshark reads in a GTP-U capture with IPv6 inside, in one run: per sender, the inner
/// TCP and ICMPv6 packets and their IPv6 bytes, and every frame between the tunnel endpoints
/// and its outer IP bytes (`(sender, packets, bytes)`, sorted); and the HTTP messages as
/// `teid method uri host status`.
struct GtpView {
    tcp: Vec<(String, i64, i64)>,
    echo: Vec<(String, i64, i64)>,
    wire: Vec<(String, i64, i64)>,
    http: Vec<String>,
}

fn gtp_view(pcap: &Path) -> GtpView {
    let fields = [
        "ip.src",
        "ip.len",
        "ipv6.src",
        "ipv6.plen",
        "tcp.srcport",
        "icmpv6.type",
        "gtp.teid",
        "http.request.method",
        "http.request.uri",
        "http.host",
        "http.response.code",
    ];
    let mut c = Command::new("tshark");
    c.arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-E", "occurrence=a"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark on {}", pcap.display());
    let mut v = GtpView {
        tcp: Vec::new(),
        echo: Vec::new(),
        wire: Vec::new(),
        http: Vec::new(),
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let v6: Vec<&str> = f[2].split(',').collect();
        let plen: Vec<i64> = f[3].split(',').filter_map(|l| l.parse().ok()).collect();
        let len = |i: usize| plen.get(i).copied().unwrap_or(-1) + 40;
        // The outer header: IPv4's when there is one, else the first IPv6 header.
        match f[0] {
            "" => add(&mut v.wire, v6[0], len(0)),
            ip => add(&mut v.wire, ip, f[1].parse().unwrap_or(-1)),
        }
        let inner = (v6[v6.len() - 1], len(plen.len().saturating_sub(1)));
        if !f[4].is_empty() {
            add(&mut v.tcp, inner.0, inner.1);
        }
        if !f[5].is_empty() {
            add(&mut v.echo, inner.0, inner.1);
        }
        if !f[7].is_empty() || !f[10].is_empty() {
            v.http.push(f[6..].join(" "));
        }
    }
    for by in [&mut v.tcp, &mut v.echo, &mut v.wire] {
        by.sort();
    }
    v
}

/// IPv6 inside GTP-U (the user plane of an IPv6 PDN connection or PDU session), the uplink
/// G-PDUs with a PDU session container, the TEID different per direction as 3GPP has it (each
/// end picks the TEID it receives on), over an IPv4 underlay and over an IPv6 one whose larger
/// datagrams are fragmented: one TCP flow and one ICMPv6 echo flow with tshark's packets and
/// IPv6 bytes per direction, one HTTP transaction as tshark reads it, and the outer UDP flow
/// with every frame between the base station and the gateway. The same with
/// `--key-by-tunnel true`: a GTP TEID is not part of the key (it would cut each connection
/// into two one-way halves).
#[test]
fn ipv6_inside_gtp_u_with_a_teid_per_direction() {
    let (ue, server) = ("2001:db8:a::10", "2001:db8:a::80");
    for file in ["gtp_u_ipv6.pcap", "gtp_u_ipv6_outer6.pcap"] {
        let path = data(file);
        let tshark = gtp_view(&path);
        assert_eq!(
            tshark.http,
            [
                "0x00001001 GET /hello.txt [2001:db8:a::80]:8080 ",
                "0x00002002    200"
            ],
            "{file}: tshark's view: the request uplink, the response downlink"
        );
        assert_eq!(tshark.tcp.len(), 2, "{file}: tshark sees both sides");
        for args in [&[][..], &["--key-by-tunnel", "true"]] {
            let what = format!("{file} {args:?}");
            let evs = trawl_pcap(&path, args);
            let tcp = of(&evs, "flow", "tcp");
            assert_eq!(tcp.len(), 1, "{what}: one TCP flow: {evs:#?}");
            let f = tcp[0];
            assert_eq!(
                (s(f, "source.ip"), s(f, "destination.ip")),
                (ue.to_owned(), server.to_owned()),
                "{what}"
            );
            assert_eq!(n(f, "destination.port"), 8080, "{what}");
            assert_eq!(s(f, "network.type"), "ipv6", "{what}");
            assert_eq!(s(f, "flow.end_reason"), "fin", "{what}");
            assert_eq!(flow_by_sender(f), tshark.tcp, "{what}: {f:#}");
            // The flow's tunnel is its first packet's: the uplink TEID.
            assert_eq!(
                (s(f, "tunnel.type"), s(f, "tunnel.id")),
                ("gtp".to_owned(), "4097".to_owned()),
                "{what}"
            );
            let echo = of(&evs, "flow", "ipv6-icmp");
            assert_eq!(echo.len(), 1, "{what}: {evs:#?}");
            assert_eq!(s(echo[0], "source.ip"), ue, "{what}");
            assert_eq!(flow_by_sender(echo[0]), tshark.echo, "{what}");
            let http = of(&evs, "http", "tcp");
            assert_eq!(http.len(), 1, "{what}: {evs:#?}");
            let h = http[0];
            assert!(get(h, "event.reason").is_none(), "{what}: {h:#}");
            assert_eq!(s(h, "http.request.method"), "GET", "{what}");
            assert_eq!(s(h, "url.original"), "/hello.txt", "{what}");
            assert_eq!(n(h, "http.response.status_code"), 200, "{what}");
            assert_eq!(
                (s(h, "url.domain"), n(h, "url.port")),
                (format!("[{server}]"), 8080),
                "{what}"
            );
            assert_eq!(s(h, "client.ip"), ue, "{what}");
            let outer = of(&evs, "flow", "udp");
            assert_eq!(outer.len(), 1, "{what}: {outer:#?}");
            assert_eq!(
                flow_by_sender(outer[0]),
                tshark.wire,
                "{what}: every frame between the base station and the gateway"
            );
        }
    }
}
