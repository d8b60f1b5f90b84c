//! Unit tests of the flow table: reports, timeouts, and how long closed flows are kept.
use super::report::{hex16, iana_number};
use super::*;
use crate::wire::decode::{decode, linktype, tests::eth_tcp, Addr};

#[test]
fn ids_and_protocol_numbers_print_as_the_formatter_would() {
    for v in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
        assert_eq!(hex16(v, &mut [0; 16]), format!("{v:016x}"));
    }
    for p in 0..=255u8 {
        assert_eq!(iana_number(p), p.to_string());
    }
}

fn feed(t: &mut FlowTable, frames: &[(i64, Vec<u8>)], out: &mut Out) {
    for (ts, f) in frames {
        let p = decode(linktype::ETHERNET, f).unwrap();
        let key = FlowKey::of(&p, KeyBy::default());
        t.packet(&p, key, &mut KeyHash::default(), *ts, out);
        t.sweep(*ts, out);
    }
}

#[test]
fn handshake_exchange_and_fin_make_one_final_flow() {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(
        FlowsConfig {
            period: Duration::from_millis(-1000),
            ..Default::default()
        },
        KeyBy::default(),
        "f".into(),
        stats,
    );
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let ms = 1_000_000;
    let frames = vec![
        (0, eth_tcp(c, 40000, s, 80, 1, 0, tcp_flags::SYN, b"")),
        (
            ms,
            eth_tcp(s, 80, c, 40000, 9, 2, tcp_flags::SYN | tcp_flags::ACK, b""),
        ),
        (2 * ms, eth_tcp(c, 40000, s, 80, 2, 10, tcp_flags::ACK, b"")),
        (
            3 * ms,
            eth_tcp(
                c,
                40000,
                s,
                80,
                2,
                10,
                tcp_flags::ACK | tcp_flags::PSH,
                b"GET / HTTP/1.0\r\n\r\n",
            ),
        ),
        (
            4 * ms,
            eth_tcp(
                s,
                80,
                c,
                40000,
                10,
                20,
                tcp_flags::ACK | tcp_flags::FIN,
                b"",
            ),
        ),
        (
            5 * ms,
            eth_tcp(
                c,
                40000,
                s,
                80,
                20,
                11,
                tcp_flags::ACK | tcp_flags::FIN,
                b"",
            ),
        ),
        (
            6 * ms,
            eth_tcp(s, 80, c, 40000, 11, 21, tcp_flags::ACK, b""),
        ),
    ];
    let mut out = Out::Events(Vec::new());
    feed(&mut t, &frames, &mut out);
    assert!(
        out.events().is_empty(),
        "closed flow lingers for its last ACKs"
    );
    t.sweep(2_000 * ms, &mut out);
    assert!(
        out.events().is_empty(),
        "and for late segments, `closed_linger` after its last packet"
    );
    t.sweep(30_007 * ms, &mut out);
    assert_eq!(out.events().len(), 1);
    let e = &out.events()[0];
    assert_eq!(e.get("source.ip").unwrap().as_str(), Some("10.0.0.1"));
    assert_eq!(
        e.get("source.packets").unwrap().to_json(),
        serde_json::json!(4)
    );
    assert_eq!(
        e.get("destination.packets").unwrap().to_json(),
        serde_json::json!(3)
    );
    assert_eq!(e.get("flow.end_reason").unwrap().as_str(), Some("fin"));
    assert_eq!(
        e.get("flow.tcp.setup_duration").unwrap().to_json(),
        serde_json::json!(2 * ms)
    );
    assert_eq!(
        e.get("event.duration").unwrap().to_json(),
        serde_json::json!(6 * ms)
    );
    assert!(e
        .get("network.community_id")
        .unwrap()
        .as_str()
        .unwrap()
        .starts_with("1:"));
}

#[test]
fn idle_flows_time_out_and_period_reports_interim() {
    let stats = Arc::new(Stats::default());
    let cfg = FlowsConfig {
        capture: None,
        timeout: Duration::from_secs(30),
        closed_linger: Duration::from_secs(30),
        period: Duration::from_secs(10),
        max_flows: 1,
        service_map: true,
        outer_tunnel_flows: true,
    };
    let mut t = FlowTable::new(cfg, KeyBy::default(), "f".into(), stats.clone());
    let sec = 1_000_000_000i64;
    let mut out = Out::Events(Vec::new());
    let a = eth_tcp(
        [1, 1, 1, 1],
        1000,
        [2, 2, 2, 2],
        22,
        1,
        1,
        tcp_flags::ACK,
        b"x",
    );
    let b = eth_tcp(
        [3, 3, 3, 3],
        1000,
        [2, 2, 2, 2],
        22,
        1,
        1,
        tcp_flags::ACK,
        b"x",
    );
    feed(
        &mut t,
        &[(0, a.clone()), (5 * sec, b), (11 * sec, a)],
        &mut out,
    );
    assert_eq!(
        stats.flows_untracked.load(Ordering::Relaxed),
        1,
        "max_flows bounds the table"
    );
    assert_eq!(out.events().len(), 1);
    assert_eq!(
        out.events()[0].get("flow.final").unwrap().to_json(),
        serde_json::json!(false)
    );
    t.sweep(42 * sec, &mut out);
    assert_eq!(out.events().len(), 2);
    assert_eq!(
        out.events()[1].get("flow.end_reason").unwrap().as_str(),
        Some("timeout")
    );
    assert_eq!(
        out.events()[1].get("source.packets").unwrap().to_json(),
        serde_json::json!(2)
    );
}

fn closed_conn(sport: u16, t0: i64) -> Vec<(i64, Vec<u8>)> {
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let ms = 1_000_000;
    vec![
        (t0, eth_tcp(c, sport, s, 80, 1, 0, tcp_flags::SYN, b"")),
        (
            t0 + ms,
            eth_tcp(s, 80, c, sport, 9, 2, tcp_flags::SYN | tcp_flags::ACK, b""),
        ),
        (
            t0 + 2 * ms,
            eth_tcp(c, sport, s, 80, 2, 10, tcp_flags::FIN | tcp_flags::ACK, b""),
        ),
        (
            t0 + 3 * ms,
            eth_tcp(s, 80, c, sport, 10, 3, tcp_flags::FIN | tcp_flags::ACK, b""),
        ),
    ]
}

fn ports(out: &Out) -> Vec<i64> {
    out.events()
        .iter()
        .map(|e| {
            e.get("source.port")
                .and_then(|v| v.to_json().as_i64())
                .unwrap_or(-1)
        })
        .collect()
}

#[test]
fn closed_flows_past_the_budget_end_first_closed_first_and_never_before_a_second() {
    let sec = 1_000_000_000i64;
    let mut t = FlowTable::new(
        FlowsConfig {
            // A budget of 2 closed flows past their first second.
            max_flows: 2 * CLOSED_SHARE,
            period: Duration::from_millis(-1000),
            ..Default::default()
        },
        KeyBy::default(),
        "f".into(),
        Arc::new(Stats::default()),
    );
    let mut out = Out::Events(Vec::new());
    for i in 0..10u16 {
        feed(
            &mut t,
            &closed_conn(40000 + i, i as i64 * 10_000_000),
            &mut out,
        );
    }
    t.sweep(sec / 2, &mut out);
    assert!(out.events().is_empty(), "kept a second whatever the load");
    t.sweep(2 * sec, &mut out);
    assert_eq!(ports(&out), (40000..40008).collect::<Vec<i64>>());
    assert!(out
        .events()
        .iter()
        .all(|e| e.get("flow.end_reason").unwrap().as_str() == Some("fin")));
    assert_eq!(t.len(), 2, "the last two closed stay for late segments");
    t.sweep(20 * sec, &mut out);
    assert_eq!(out.events().len(), 8, "no interim report of a closed flow");
    t.sweep(31 * sec, &mut out);
    assert_eq!(ports(&out), (40000..40010).collect::<Vec<i64>>());
    assert!(t.is_empty());
}

#[test]
fn a_full_table_ends_its_oldest_closed_flow_to_track_a_new_one() {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(
        FlowsConfig {
            max_flows: 2,
            ..Default::default()
        },
        KeyBy::default(),
        "f".into(),
        stats.clone(),
    );
    let mut out = Out::Events(Vec::new());
    feed(&mut t, &closed_conn(40000, 0), &mut out);
    let open = |sport| {
        eth_tcp(
            [10, 0, 0, 3],
            sport,
            [10, 0, 0, 2],
            80,
            1,
            0,
            tcp_flags::SYN,
            b"",
        )
    };
    feed(&mut t, &[(5_000_000, open(50000))], &mut out);
    assert!(out.events().is_empty());
    feed(&mut t, &[(6_000_000, open(50001))], &mut out);
    assert_eq!(ports(&out), vec![40000], "the closed flow made room");
    assert_eq!(stats.flows_untracked.load(Ordering::Relaxed), 0);
    feed(&mut t, &[(7_000_000, open(50002))], &mut out);
    assert_eq!(t.len(), 2);
    assert_eq!(
        stats.flows_untracked.load(Ordering::Relaxed),
        1,
        "open flows are never ended to make room"
    );
}

/// SYNs from `n` client ports, 1 µs apart from `t0`: `n` open flows.
fn syns(n: u16, t0: i64) -> Vec<(i64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let syn = eth_tcp(
                [10, 0, 0, 1],
                10000 + i,
                [10, 0, 0, 2],
                80,
                1,
                0,
                tcp_flags::SYN,
                b"",
            );
            (t0 + i as i64 * 1000, syn)
        })
        .collect()
}

#[test]
fn flows_timing_out_together_are_reported_a_batch_at_a_time_in_start_order() {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(FlowsConfig::default(), KeyBy::default(), "f".into(), stats);
    let mut out = Out::Events(Vec::new());
    let n = 3 * SWEEP_BATCH as u16 + 7;
    feed(&mut t, &syns(n, 0), &mut out);
    assert!(out.events().is_empty());
    // Every flow is idle past the 30 s timeout at this sweep: a caller that takes the reports
    // after each call never holds more than a batch.
    let (mut reported, mut now) = (Vec::new(), 40_000_000_000);
    while reported.len() < n as usize {
        t.sweep(now, &mut out);
        let Out::Events(v) = &mut out else {
            unreachable!()
        };
        assert!(!v.is_empty(), "a sweep with flows due reports some");
        assert!(v.len() <= SWEEP_BATCH, "{} reports at once", v.len());
        reported.extend(std::mem::take(v));
        now += 1_000;
    }
    let got: Vec<i64> = reported
        .iter()
        .map(|e| {
            e.get("source.port")
                .and_then(|v| v.to_json().as_i64())
                .unwrap_or(-1)
        })
        .collect();
    let want: Vec<i64> = (0..n as i64).map(|i| 10000 + i).collect();
    assert_eq!(got, want, "each flow once, the first started first");
    assert!(reported.iter().all(|e| e
        .get("flow.end_reason")
        .and_then(|v| v.to_json().as_str().map(String::from))
        == Some("timeout".into())));
    assert!(t.is_empty());
}

#[test]
fn a_flow_found_due_that_gets_a_packet_before_its_report_stays_open() {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(FlowsConfig::default(), KeyBy::default(), "f".into(), stats);
    let mut out = Out::Events(Vec::new());
    let n = SWEEP_BATCH as u16 + 1;
    feed(&mut t, &syns(n, 0), &mut out);
    // The first sweep reports all but the last-started flow, which then gets a packet.
    t.sweep(40_000_000_000, &mut out);
    assert_eq!(out.pending(), SWEEP_BATCH);
    let late = syns(n, 0).pop().unwrap().1;
    let p = decode(linktype::ETHERNET, &late).unwrap();
    let key = FlowKey::of(&p, KeyBy::default());
    t.packet(&p, key, &mut KeyHash::default(), 40_000_000_001, &mut out);
    t.sweep(40_000_000_002, &mut out);
    assert_eq!(out.pending(), SWEEP_BATCH, "not reported as timed out");
    assert_eq!(t.len(), 1);
}

#[test]
fn the_final_flush_in_batches_reports_every_flow_once_in_start_order() {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(FlowsConfig::default(), KeyBy::default(), "f".into(), stats);
    let mut out = Out::Events(Vec::new());
    let n = 2500;
    feed(&mut t, &syns(n, 0), &mut out);
    let mut ports_seen = Vec::new();
    let mut more = true;
    while more {
        more = t.flush_batch(1000, &mut out);
        assert!(out.pending() <= 1000);
        ports_seen.extend(ports(&out));
        out = Out::Events(Vec::new());
    }
    let want: Vec<i64> = (0..n as i64).map(|i| 10000 + i).collect();
    assert_eq!(ports_seen, want);
    assert!(t.is_empty());
}

#[test]
fn a_table_entry_stays_within_its_memory_budget() {
    // Every tracked flow costs its entry over the hash table's load (44–87%), held or closed
    // and lingering: 192 bytes before the compaction, 160 after, 176 with the Community ID
    // the flow keeps for its connection's events.
    let entry = std::mem::size_of::<(FlowKey, Flow)>();
    assert!(entry <= 176, "a flow table entry is {entry} bytes");
}

/// The first packet's sender, ports of the flow event: (source.port, destination.port).
fn endpoints_of_one_flow(frames: &[(i64, Vec<u8>)]) -> (i64, i64) {
    let stats = Arc::new(Stats::default());
    let mut t = FlowTable::new(FlowsConfig::default(), KeyBy::default(), "f".into(), stats);
    let mut out = Out::Events(Vec::new());
    feed(&mut t, frames, &mut out);
    t.flush(&mut out);
    assert_eq!(out.events().len(), 1);
    let e = &out.events()[0];
    let port = |k: &str| e.get(k).and_then(|v| v.to_json().as_i64()).unwrap_or(-1);
    (port("source.port"), port("destination.port"))
}

/// A TCP connection trawl meets mid-way (it started, or restarted, while the connection was
/// open): the client is told by its ephemeral port when the server speaks first; the first
/// sender stays the client when the ports say nothing.
#[test]
fn a_connection_picked_up_mid_way_has_its_client_by_ports() {
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let ack = tcp_flags::ACK | tcp_flags::PSH;
    let from_server = |sport, dport| {
        vec![
            (0, eth_tcp(s, sport, c, dport, 100, 50, ack, b"reply")),
            (1_000, eth_tcp(c, dport, s, sport, 50, 105, ack, b"next")),
        ]
    };
    // PostgreSQL answers a client on a Linux ephemeral port; HTTPS; a NodePort on Windows.
    assert_eq!(
        endpoints_of_one_flow(&from_server(5432, 45000)),
        (45000, 5432)
    );
    assert_eq!(
        endpoints_of_one_flow(&from_server(443, 33000)),
        (33000, 443)
    );
    assert_eq!(
        endpoints_of_one_flow(&from_server(30080, 52000)),
        (52000, 30080)
    );
    // Two ephemeral ports, two service ports, a privileged client port (NFS): the first
    // sender is the client.
    assert_eq!(
        endpoints_of_one_flow(&from_server(40000, 50000)),
        (40000, 50000)
    );
    assert_eq!(
        endpoints_of_one_flow(&from_server(8080, 9090)),
        (8080, 9090)
    );
    assert_eq!(endpoints_of_one_flow(&from_server(722, 2049)), (722, 2049));
    // The client speaks first: unchanged.
    let client_first = vec![(0, eth_tcp(c, 45000, s, 5432, 50, 100, ack, b"query"))];
    assert_eq!(endpoints_of_one_flow(&client_first), (45000, 5432));
    // A SYN says who opened, whatever the ports (a client bound to port 80).
    let syn = vec![(0, eth_tcp(c, 80, s, 40000, 1, 0, tcp_flags::SYN, b""))];
    assert_eq!(endpoints_of_one_flow(&syn), (80, 40000));
}

/// A flow report written from the template is what `JsonFields` writes for every combination
/// of the optional fields it covers (TCP flags and setup, end reasons, ICMP, ports or none,
/// IPv6, VLANs, a Community ID kept or worked out), and a tunnelled flow or an ESP security
/// association is declined with nothing written.
#[test]
fn flow_report_template_writes_the_same_bytes_as_fields_or_declines() {
    use super::report::FlowReport;
    use crate::wire::out::{Clock, JsonFields, Report};
    use crate::wire::tunnel::{Tunnel, TunnelKind};
    let v6 = |last: u8| {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = last;
        Addr(a)
    };
    let addrs = [
        (Addr::v4([10, 0, 0, 1]), Addr::v4([192, 168, 200, 255])),
        (v6(1), v6(2)),
    ];
    let (mut same, mut declined) = (0, 0);
    let mut clock = Clock::default();
    for (a, b) in addrs {
        for proto in [6u8, 17, 1, 58, 132, 47, 50] {
            for shape in 0..64u32 {
                let bit = |n: u32| shape >> n & 1 == 1;
                let ports = matches!(proto, 6 | 17 | 132);
                let key = FlowKey {
                    a,
                    b,
                    ap: if ports { 40000 } else { 0 },
                    bp: if ports { 80 } else { 0 },
                    proto,
                    vlan: if bit(4) { 12 } else { 0 },
                    tunnel: 0,
                    label: u32::from(proto == 50 && bit(5)) * 0xdead,
                };
                let icmp = matches!(proto, 1 | 58);
                let f = Flow {
                    id: 1,
                    first_ns: 1_700_000_000_123_456_789,
                    last_ns: 1_700_000_003_000_000_001 + i64::from(shape),
                    last_report_ns: 0,
                    dirs: [
                        Dir {
                            packets: 3,
                            bytes: 180,
                        },
                        Dir {
                            packets: u64::from(shape),
                            bytes: 1 << 40,
                        },
                    ],
                    syn_ns: 0,
                    setup_ns: if bit(0) { 1_234_567 } else { UNSET },
                    flags: [shape as u8, !(shape as u8)],
                    fin: [bit(1), bit(2)],
                    initiator: u8::from(bit(3)),
                    synack_seen: true,
                    rst: false,
                    tunnel: (bit(5) && proto == 17).then(|| {
                        Box::new((
                            Tunnel {
                                kind: TunnelKind::Vxlan,
                                id: Some(7),
                                src: a,
                                dst: b,
                                udp: Some((1, 4789)),
                                ip_len: 100,
                                vlan: 0,
                            },
                            0,
                        ))
                    }),
                    outer: false,
                    vlan: if bit(4) || bit(5) { 12 } else { 0 },
                    inner_vlan: if bit(5) { 3 } else { 0 },
                    icmp: (icmp && bit(1)).then_some((8, 0, u8::from(bit(2)))),
                    community_id: if icmp {
                        CommunityId::default()
                    } else {
                        CommunityId::of(0, key.a, key.ap, key.b, key.bp, key.proto)
                    },
                };
                let why = [
                    None,
                    Some(EndReason::Fin),
                    Some(EndReason::Rst),
                    Some(EndReason::Timeout),
                    Some(EndReason::EndOfCapture),
                ][shape as usize % 5];
                let r = FlowReport {
                    k: &key,
                    f: &f,
                    fin: why.is_some(),
                    why,
                };
                let mut want = Vec::new();
                let mut j = JsonFields::new(&mut want, &mut clock);
                r.write(&mut j);
                j.finish();
                let mut got = b"before".to_vec();
                if r.write_json(&mut got, &mut clock) {
                    assert_eq!(
                        String::from_utf8_lossy(&got[6..]),
                        String::from_utf8_lossy(&want)
                    );
                    same += 1;
                } else {
                    assert_eq!(got, b"before");
                    assert!(f.tunnel.is_some() || key.label != 0);
                    declined += 1;
                }
            }
        }
    }
    assert!(same > 700 && declined > 40, "{same} {declined}");
}
