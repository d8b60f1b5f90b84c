//! Unit tests of `wire::out`, kept beside it so that the module
//! itself stays readable.

use super::*;

fn both(write: impl Fn(&mut dyn Fields)) -> (String, String) {
    let mut m = MapFields::new();
    write(&mut m);
    let e = m.finish(&Arc::from("t"));
    let (mut buf, mut clock) = (Vec::new(), Clock::default());
    let mut j = JsonFields::new(&mut buf, &mut clock);
    write(&mut j);
    j.finish();
    (
        serde_json::to_string(&e.fields).unwrap() + "\n",
        String::from_utf8(buf).unwrap(),
    )
}

#[test]
fn json_lines_match_the_serialized_map() {
    let (a, b) = both(|f| {
        f.time("@timestamp", 1_700_000_000_123_456_789);
        f.open("event");
        f.strs("category", &["network", "web"]);
        f.words("flags", &["SYN", "ACK"]);
        f.words("none", &[]);
        f.int("duration", -42);
        f.bool("final", true);
        f.close();
        f.open("empty");
        f.close();
        f.str("quote", "a\"b\\c\n\u{1}\t é \u{7f}");
        f.string("owned", "x".to_owned());
        f.open("dns");
        f.open_list("answers");
        for (name, ttl) in [("a.example", 60), ("b.example", 0)] {
            f.open_item();
            f.str("name", name);
            f.open("nested");
            f.int("ttl", ttl);
            f.close();
            f.close();
        }
        f.close_list();
        f.open_list("empty");
        f.close_list();
        f.int("after", 1);
        f.close();
    });
    assert_eq!(a, b);
    assert!(
        a.contains(r#""dns":{"answers":[{"name":"a.example","nested":{"ttl":60}},{"name":"b.example","nested":{"ttl":0}}],"empty":[],"after":1}"#),
        "{a}"
    );
}

#[test]
fn timestamps_match_chrono_across_eras() {
    for ns in [
        0i64,
        -1,
        -1_000_000_001,
        951_782_400_000_000_000, // 2000-02-29
        4_102_444_799_999_999_999,
        1_700_000_000_999_999_999,
        i64::MIN / 2,
        i64::MAX,
        i64::MIN,
    ] {
        let (a, b) = both(|f| f.time("t", ns));
        assert_eq!(a, b, "ns {ns}");
    }
}

#[test]
fn append_copies_every_length_exactly() {
    let src: Vec<u8> = (0..80u8).collect();
    for start in 0..3 {
        for n in 0..=70 {
            let mut buf = b"head".to_vec();
            append(&mut buf, b"<", &src[start..start + n], b">!");
            assert_eq!(&buf[..5], b"head<");
            assert_eq!(&buf[5..5 + n], &src[start..start + n], "length {n}");
            assert_eq!(&buf[5 + n..], b">!");
        }
    }
}

/// Pieces written into too little room (none reserved, then growing by at least 512
/// bytes) come out whole and in order after what the buffer held.
#[test]
fn room_grows_without_losing_a_byte() {
    let src: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut buf = b"held".to_vec();
    let mut want = buf.clone();
    let mut w = Room::new(&mut buf, 0);
    for n in [0, 1, 7, 33, 600, 2, 1500, 16, 0, 840] {
        w.put(&src[..n]);
        want.extend_from_slice(&src[..n]);
    }
    w.int(-1_234_567);
    w.int(i64::MIN);
    want.extend_from_slice(format!("{}{}", -1_234_567, i64::MIN).as_bytes());
    // Every integer of the digit-pair path and its edges, each followed by a comma.
    for v in (-2..=100_001).chain([i64::MAX, 1 << 40]) {
        w.int(v);
        w.put(b",");
        want.extend_from_slice(format!("{v},").as_bytes());
    }
    w.finish();
    assert_eq!(buf, want);
}

/// `Exact` writes what `Room` writes, piece for piece (every length of the copy's paths and
/// every integer form), into exactly the bound reserved, after what the buffer held.
#[test]
fn exact_writes_what_room_writes() {
    let src: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let lengths = [
        0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 600, 1500, 0, 840,
    ];
    let ints = (-2..=100_001).chain([i64::MIN, i64::MAX, 1 << 40, -1_234_567]);
    let bound = lengths.iter().sum::<usize>() + ints.clone().count() * (INT_MAX_LEN + 1);
    let (mut exact, mut room) = (b"held".to_vec(), b"held".to_vec());
    // SAFETY: `bound` counts every piece at its longest (an integer at `INT_MAX_LEN`).
    let mut e = unsafe { Exact::new(&mut exact, bound) };
    let mut r = Room::new(&mut room, 0);
    for n in lengths {
        e.put(&src[..n]);
        r.put(&src[..n]);
    }
    for v in ints {
        e.int(v);
        e.put(b",");
        r.int(v);
        r.put(b",");
    }
    e.finish();
    r.finish();
    assert_eq!(exact, room);
    assert!(exact.capacity() >= 4 + bound);
}

/// A bound that falls short fails in test builds rather than writing past the room.
#[test]
#[should_panic(expected = "bound short by 1 bytes")]
fn exact_checks_its_bound_in_tests() {
    let mut buf = Vec::new();
    // SAFETY: not held to (the point of the test); test builds check every piece.
    let mut e = unsafe { Exact::new(&mut buf, 8) };
    e.put(b"12345");
    e.put(b"6789");
}

#[test]
fn escape_check_finds_every_special_byte_anywhere() {
    // Past 16 bytes: the 16-byte blocks, the last overlapping.
    for len in 0..50 {
        assert!(!needs_escape(&vec![b'a'; len]));
        assert!(
            !needs_escape(&vec![0xff; len]),
            "high bytes are not control bytes"
        );
        for pos in 0..len {
            for b in [0u8, b'\n', 0x1f, b'"', b'\\'] {
                let mut v = vec![b'a'; len];
                v[pos] = b;
                assert!(needs_escape(&v), "{v:?}");
            }
        }
    }
    assert!(!needs_escape("é ü \u{7f} ~ !#[]{} ÿÿÿÿÿÿÿÿ".as_bytes()));
}

#[test]
fn one_clock_serves_many_timestamps() {
    let mut clock = Clock::default();
    let mut buf = Vec::new();
    let base = 1_700_000_000_000_000_000i64;
    for ns in [
        base,
        base,
        base + 1_000,
        base + 1_999,
        base + 2_000,
        base + 999_999_999,
        base + 1_000_000_000,
        base - 5,
        -7,
        base + 86_400_000_000_000,
    ] {
        buf.clear();
        write_time(&mut buf, &mut clock, ns);
        let want = serde_json::to_string(&Value::Timestamp(super::super::ns_to_time(ns))).unwrap();
        assert_eq!(
            format!("\"{}\"", String::from_utf8_lossy(&buf)),
            want,
            "ns {ns}"
        );
    }
}

/// Both output forms of every suricata-verify capture (flows, and HTTP with headers,
/// bodies, gaps and forwarded addresses) are the same documents, byte for byte.
#[test]
fn json_mode_writes_what_event_mode_builds_for_real_captures() {
    use crate::wire::registry::Protocols;
    use crate::wire::section::Section;
    use crate::wire::{capture, http::HttpConfig, Analyzers, Engine, Stats};
    let root = crate::wire::tests::suricata_captures();
    let analyzers = Analyzers {
        flows: Some(Default::default()),
        protocols: Protocols::default().with(Section {
            config: HttpConfig {
                send_headers: vec!["*".into()],
                include_body_for: vec!["text/".into(), "application/".into()],
                real_ip_header: Some("X-Forwarded-For".into()),
                ..Default::default()
            },
            ..Section::on_ports(Vec::new())
        }),
        dedup_window: None,
        ..Default::default()
    };
    let run = |path: &std::path::Path, json: bool| -> String {
        let mut e = Engine::new(
            "t".into(),
            analyzers.clone(),
            Arc::new(Stats::default()),
            None,
        );
        if json {
            e.out = Out::json();
        }
        let mut text = String::new();
        let mut take = |e: &mut Engine| {
            match &mut e.out {
                Out::Events(v) => {
                    for ev in v.drain(..) {
                        text += &serde_json::to_string(&ev.fields).unwrap();
                        text.push('\n');
                    }
                }
                Out::Json { buf, lines, .. } => {
                    text += std::str::from_utf8(buf).unwrap();
                    buf.clear();
                    *lines = 0;
                }
            }
            true
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let _ = capture::read_file(path, &mut e, &stop, 7, &mut take);
        text
    };
    let (mut captures, mut lines, mut all) = (0, 0, String::new());
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        let pcap = dir.path().join("input.pcap");
        if !pcap.is_file() {
            continue;
        }
        let (a, b) = (run(&pcap, false), run(&pcap, true));
        for (x, y) in a.lines().zip(b.lines()) {
            assert_eq!(x, y, "{}", pcap.display());
        }
        assert_eq!(a.len(), b.len(), "{}", pcap.display());
        captures += 1;
        lines += a.lines().count();
        all += &a;
    }
    // 77 events since closed flows have no interim report (a floor, not an exact count).
    assert!(
        captures >= 25 && lines >= 70,
        "{captures} captures, {lines} events"
    );
    for part in [
        "\"headers\":{",
        "\"tags\":[\"tcp_gap\"]",
        "\"dataset\":\"flow\"",
        "\"content\":",
    ] {
        assert!(all.contains(part), "no event has {part}");
    }
}

/// Both output forms of frames synthesized by the test, as text: JSON lines, and the events
/// serialized.
fn both_modes(analyzers: &crate::wire::Analyzers, frames: &[Vec<u8>]) -> (String, String) {
    use crate::wire::{decode::linktype, Engine, Stats};
    let run = |json: bool| {
        let mut e = Engine::new(
            "t".into(),
            analyzers.clone(),
            Arc::new(Stats::default()),
            None,
        );
        if json {
            e.out = Out::json();
        }
        for (i, f) in frames.iter().enumerate() {
            e.packet(linktype::ETHERNET, 1_000_000 * (i as i64 + 1), f);
        }
        e.finish();
        match &mut e.out {
            Out::Events(v) => v
                .drain(..)
                .map(|ev| serde_json::to_string(&ev.fields).unwrap() + "\n")
                .collect(),
            Out::Json { buf, .. } => String::from_utf8(std::mem::take(buf)).unwrap(),
        }
    };
    (run(true), run(false))
}

/// An HTTP/2 request's `:method` and `:scheme` are whatever its HPACK block says (RFC 9113
/// §8.3.1 leaves a malformed one to the receiver): a quote, a backslash or a control byte in
/// them is escaped in the JSON lines of `trawl pcap` as in the events. Found by fuzzing: JSON
/// mode copied them unescaped, an invalid line.
#[test]
fn http2_pseudo_headers_that_need_escaping_stay_valid_json() {
    use crate::wire::decode::{tcp_flags as fl, tests::eth_tcp};
    use crate::wire::registry::Protocols;
    use crate::wire::section::Section;
    use crate::wire::{http2::Http2Config, Analyzers};
    let analyzers = Analyzers {
        protocols: Protocols::default().with(Section::<Http2Config>::on_ports(vec![8080])),
        ..Default::default()
    };
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let n = payload.len();
        let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    };
    // Literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2).
    let block = |fields: &[(&str, &str)]| {
        let mut v = Vec::new();
        for (n, val) in fields {
            v.extend_from_slice(&[0x00, n.len() as u8]);
            v.extend_from_slice(n.as_bytes());
            v.push(val.len() as u8);
            v.extend_from_slice(val.as_bytes());
        }
        v
    };
    let (method, scheme) = ("GE\"T\\", "ht\u{1}tp");
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend(frame(4, 0, 0, &[]));
    client.extend(frame(
        1,
        0x5,
        1,
        &block(&[
            (":method", method),
            (":scheme", scheme),
            (":path", "/a\"b"),
            (":authority", "svc"),
        ]),
    ));
    let mut server = frame(4, 0, 0, &[]);
    server.extend(frame(1, 0x5, 1, &block(&[(":status", "200")])));
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let frames = [
        eth_tcp(c, 40000, s, 8080, 0, 0, fl::SYN, b""),
        eth_tcp(s, 8080, c, 40000, 0, 1, fl::SYN | fl::ACK, b""),
        eth_tcp(c, 40000, s, 8080, 1, 1, fl::ACK | fl::PSH, &client),
        eth_tcp(
            s,
            8080,
            c,
            40000,
            1,
            1 + client.len() as u32,
            fl::ACK | fl::PSH,
            &server,
        ),
    ];
    let (json, events) = both_modes(&analyzers, &frames);
    assert_eq!(json, events);
    let docs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(docs.len(), 1, "{json}");
    assert_eq!(docs[0]["http"]["request"]["method"], method, "{json}");
    assert_eq!(docs[0]["url"]["scheme"], scheme, "{json}");
    assert_eq!(docs[0]["http"]["response"]["status_code"], 200, "{json}");
}
