//! Fuzzing the DNS, Redis and MySQL analyzers on damaged real captures: dnsmasq answering dig
//! over UDP and TCP, redis-server answering RESP2 and RESP3 commands, MariaDB running the
//! workload of tests/wire/mysql_real_server.rs (tests/data/captures, recorded by its make.sh). Each
//! capture is cut short, has payload bytes flipped, a packet dropped (a TCP gap) or two packets
//! swapped, and is read by the packet engine as `trawl pcap` reads it. It must never panic, and
//! every transaction that ended before the first damaged packet comes out exactly as from the
//! undamaged capture; a message made invalid is counted in the protocol's parse errors.
//! `TRAWL_FUZZ_CASES` cases per property (default 256).

use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trawl::wire::out::Out;
use trawl::wire::registry::Protocols;
use trawl::wire::section::{ProtocolConfig, Section};
use trawl::wire::{capture, dns, mysql, redis, Analyzers, Engine, Stats};

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// One packet of a classic pcap file (Ethernet, IPv4): its record and where its TCP or UDP
/// payload is.
#[derive(Clone)]
struct Packet {
    /// Capture time in microseconds.
    ts_us: i64,
    /// The record's 16-byte header and the frame.
    record: Vec<u8>,
    /// The payload's range within `record`.
    payload: std::ops::Range<usize>,
    /// Destination port, and whether the packet is a TCP SYN without ACK.
    dst_port: u16,
    syn: bool,
    udp: bool,
}

impl Packet {
    fn payload(&self) -> &[u8] {
        &self.record[self.payload.clone()]
    }
}

/// A capture: its file header, its packets, and the server's port in the whole capture.
#[derive(Clone)]
struct Capture {
    header: Vec<u8>,
    packets: Vec<Packet>,
    server_port: u16,
}

impl Capture {
    fn load(name: &str) -> Capture {
        let path = format!(
            "{}/tests/data/captures/{name}.pcap",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).expect("fixture (tests/data/captures/make.sh)");
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        assert_eq!(
            u32_at(&bytes, 0),
            0xa1b2c3d4,
            "{path}: a little-endian pcap"
        );
        assert_eq!(u32_at(&bytes, 20), 1, "{path}: Ethernet frames");
        let mut packets = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let len = u32_at(&bytes, at + 8) as usize;
            let record = bytes[at..at + 16 + len].to_vec();
            let ts_us = u32_at(&record, 0) as i64 * 1_000_000 + u32_at(&record, 4) as i64;
            let ip = 16 + 14;
            assert_eq!(record[ip] >> 4, 4, "IPv4");
            let ihl = (record[ip] & 0xf) as usize * 4;
            let total = u16::from_be_bytes([record[ip + 2], record[ip + 3]]) as usize;
            let t = ip + ihl;
            let udp = record[ip + 9] == 17;
            let header = if udp {
                8
            } else {
                (record[t + 12] >> 4) as usize * 4
            };
            packets.push(Packet {
                ts_us,
                dst_port: u16::from_be_bytes([record[t + 2], record[t + 3]]),
                syn: !udp && record[t + 13] & 0x12 == 0x02,
                udp,
                payload: t + header..ip + total,
                record,
            });
            at += 16 + len;
        }
        // The server's port: where the first SYN (or, over UDP, the first datagram) went.
        let server_port = packets
            .iter()
            .find(|p| p.syn || p.udp)
            .map(|p| p.dst_port)
            .expect("a connection or a datagram");
        Capture {
            header: bytes[..24].to_vec(),
            packets,
            server_port,
        }
    }

    /// Indexes of the packets that carry payload.
    fn with_payload(&self) -> Vec<usize> {
        (0..self.packets.len())
            .filter(|i| !self.packets[*i].payload.is_empty())
            .collect()
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = self.header.clone();
        for p in &self.packets {
            b.extend_from_slice(&p.record);
        }
        b
    }
}

/// What the analyzer made of a capture: its events (JSON lines) and its parse errors.
struct Decoded {
    events: Vec<serde_json::Value>,
    parse_errors: u64,
}

fn decode(protocol: &str, capture: &Capture) -> Decoded {
    let port = capture.server_port;
    fn on<C: ProtocolConfig>(port: u16) -> Protocols {
        Protocols::default().with(Section::<C>::on_ports(vec![port]))
    }
    let protocols = match protocol {
        "dns" => on::<dns::DnsConfig>(port),
        "redis" => on::<redis::RedisConfig>(port),
        "mysql" => on::<mysql::MysqlConfig>(port),
        other => panic!("no {other}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.pcap");
    std::fs::write(&path, capture.bytes()).expect("write");
    let analyzers = Analyzers {
        protocols,
        ..Default::default()
    };
    let stats = Arc::new(Stats::default());
    let mut engine = Engine::new(Arc::from("t"), analyzers, stats.clone(), None);
    engine.out = Out::json();
    let mut text = Vec::new();
    let summary = capture::read_file(&path, &mut engine, &AtomicBool::new(false), 64, &mut |e| {
        if let Out::Json { buf, lines, .. } = &mut e.out {
            text.extend_from_slice(buf);
            buf.clear();
            *lines = 0;
        }
        true
    })
    .expect("the capture opens");
    assert!(summary.error.is_none(), "{:?}", summary.error);
    let events = String::from_utf8(text)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    let parse_errors = stats
        .protocols
        .lock()
        .expect("stats")
        .iter()
        .find(|p| p.name == protocol)
        .map_or(0, |p| p.parse_errors.load(Ordering::Relaxed));
    Decoded {
        events,
        parse_errors,
    }
}

/// `event.end` in microseconds.
fn end_us(e: &serde_json::Value) -> i64 {
    let text = e["event"]["end"].as_str().expect("event.end");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_micros()
}

/// The transactions of `undamaged` that ended before `damage_us` are in `damaged`, the same.
fn earlier_transactions_unchanged(
    undamaged: &Decoded,
    damaged: &Decoded,
    damage_us: i64,
) -> Result<usize, String> {
    let mut n = 0;
    for e in undamaged.events.iter().filter(|e| end_us(e) < damage_us) {
        if !damaged.events.contains(e) {
            return Err(format!(
                "the transaction {e} ended before the damage at {damage_us} µs and is not in {:#?}",
                damaged.events
            ));
        }
        n += 1;
    }
    Ok(n)
}

/// What is done to the capture.
#[derive(Clone, Debug)]
enum Damage {
    /// The capture ends before this packet.
    Truncate,
    /// Payload bytes XORed: (offset, by), within the payload.
    Flip(Vec<(prop::sample::Index, u8)>),
    /// The payload cut to this many bytes (the rest not captured).
    Cut(prop::sample::Index),
    /// The packet lost.
    Drop,
    /// The packet and the next swapped.
    Swap,
}

/// Damages packet `at` (an index into the packets with payload); returns the time from which
/// the capture differs.
fn damage(capture: &mut Capture, at: prop::sample::Index, how: &Damage) -> i64 {
    let candidates = capture.with_payload();
    let i = candidates[at.index(candidates.len())];
    let ts = capture.packets[i].ts_us;
    match how {
        Damage::Truncate => capture.packets.truncate(i),
        Damage::Flip(flips) => {
            let p = &mut capture.packets[i];
            for (off, by) in flips {
                let at = p.payload.start + off.index(p.payload.len());
                p.record[at] ^= (*by).max(1);
            }
        }
        Damage::Cut(keep) => {
            // The record keeps `keep` payload bytes; its original length still says what was
            // on the wire, as a capture with a short snaplen has it.
            let p = &mut capture.packets[i];
            let keep = keep.index(p.payload.len());
            p.record.truncate(p.payload.start + keep);
            let incl = (p.record.len() - 16) as u32;
            p.record[8..12].copy_from_slice(&incl.to_le_bytes());
        }
        Damage::Drop => {
            capture.packets.remove(i);
        }
        Damage::Swap => {
            if i + 1 < capture.packets.len() {
                capture.packets.swap(i, i + 1);
            }
        }
    }
    ts
}

fn damages() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::Truncate),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
            .prop_map(Damage::Flip),
        any::<prop::sample::Index>().prop_map(Damage::Cut),
        Just(Damage::Drop),
        Just(Damage::Swap),
    ]
}

/// The undamaged captures as trawl reads them: what the damaged ones are compared with.
fn undamaged(protocol: &str) -> (Capture, Decoded) {
    let capture = Capture::load(protocol);
    let decoded = decode(protocol, &capture);
    (capture, decoded)
}

#[test]
fn the_undamaged_captures_are_read_whole_without_a_parse_error() {
    // dig: 8 queries over UDP, 3 over TCP; the Redis script's 22 commands; the MySQL
    // workload's commands and its refused login.
    for (protocol, at_least) in [("dns", 11), ("redis", 22), ("mysql", 30)] {
        let (_, d) = undamaged(protocol);
        assert!(d.events.len() >= at_least, "{protocol}: {:#?}", d.events);
        assert_eq!(d.parse_errors, 0, "{protocol}");
        assert!(
            d.events
                .iter()
                .all(|e| e["network"]["protocol"] == protocol && e["event"]["reason"].is_null()),
            "{protocol}: {:#?}",
            d.events
        );
    }
}

/// Damages the packet `pick` selects among those with payload with `change` (returns whether
/// it applied), and checks the parse error is counted and what ended before is unchanged.
fn counted_malformed(
    protocol: &str,
    pick: impl Fn(&Packet) -> bool,
    change: impl Fn(&mut [u8]),
) -> (Decoded, usize) {
    let (mut capture, before) = undamaged(protocol);
    let i = capture
        .with_payload()
        .into_iter()
        .filter(|i| pick(&capture.packets[*i]))
        .nth(2)
        .unwrap_or_else(|| panic!("{protocol}: no third packet to damage"));
    let p = &mut capture.packets[i];
    let ts = p.ts_us;
    let range = p.payload.clone();
    change(&mut p.record[range]);
    let after = decode(protocol, &capture);
    assert!(
        after.parse_errors >= 1,
        "{protocol}: the damaged message was not counted: {:#?}",
        after.events
    );
    let kept =
        earlier_transactions_unchanged(&before, &after, ts).unwrap_or_else(|e| panic!("{e}"));
    (after, kept)
}

#[test]
fn a_dns_message_with_more_questions_than_bytes_is_counted_and_the_rest_kept() {
    // A UDP datagram (no 2-byte length) of at least a header: QDCOUNT set past its end.
    let (after, kept) = counted_malformed(
        "dns",
        |p| p.udp && p.payload().len() > 12 && p.payload()[2] & 0x80 == 0,
        |payload| payload[4..6].copy_from_slice(&[0xff, 0xff]),
    );
    assert!(kept >= 2, "{kept}");
    // The query is still reported, from its header, with why; its response answers it by id
    // (was: the query dropped, and its response reported alone).
    let damaged: Vec<_> = after
        .events
        .iter()
        .filter(|e| e["dns"]["anomalies"] == serde_json::json!(["short_message"]))
        .collect();
    assert_eq!(damaged.len(), 1, "{:#?}", after.events);
    assert!(damaged[0]["event"]["reason"].is_null(), "{}", damaged[0]);
    assert!(
        damaged[0]["dns"]["question"]["name"].is_string(),
        "{}",
        damaged[0]
    );
}

#[test]
fn a_redis_reply_of_no_known_type_is_counted_and_the_rest_kept() {
    // A server packet (replies start with a RESP type byte), made to start with NUL.
    let (_, kept) = counted_malformed(
        "redis",
        |p| matches!(p.payload().first(), Some(b'+' | b':' | b'$')),
        |payload| payload[0] = 0,
    );
    assert!(kept >= 2, "{kept}");
}

#[test]
fn a_mysql_command_of_no_known_kind_is_counted_and_the_rest_kept() {
    // A COM_QUERY (sequence 0, command 3) made command 0xEE, which no server knows.
    let (_, kept) = counted_malformed(
        "mysql",
        |p| p.payload().len() > 5 && p.payload()[3] == 0 && p.payload()[4] == 3,
        |payload| payload[4] = 0xee,
    );
    assert!(kept >= 2, "{kept}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_captures_never_panic_and_keep_what_came_before(
        protocol in prop::sample::select(vec!["dns", "redis", "mysql"]),
        at in any::<prop::sample::Index>(),
        how in damages(),
    ) {
        let (mut capture, before) = undamaged(protocol);
        let ts = damage(&mut capture, at, &how);
        let after = decode(protocol, &capture);
        prop_assert!(earlier_transactions_unchanged(&before, &after, ts).is_ok(),
            "{protocol} {how:?}: {}", earlier_transactions_unchanged(&before, &after, ts).unwrap_err());
        // Nothing is made up: at most one transaction per message either side could have sent.
        prop_assert!(after.events.len() <= 2 * before.events.len() + 2);
    }
}
