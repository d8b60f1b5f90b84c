//! The TLS decoder on real handshakes: streams of openssl s_server / s_client / curl captured
//! on loopback (tests/data/tls/make.sh), extracted with `tshark -z follow,tcp,raw`. Expected
//! values come from tshark (JA3, JA3S, cipher) and `openssl x509` (the certificate).

use super::*;
use crate::event::Value;
use crate::wire::addr::Addr;
use crate::wire::analyzer::{self, Transaction, Transport};
use crate::wire::out::MapFields;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/");

/// A `follow,tcp,raw` dump as the chunks each side sent, in order (`true`: the server's,
/// indented by tshark).
fn stream(name: &str) -> Vec<(bool, Vec<u8>)> {
    let text = std::fs::read_to_string(format!("{DATA}{name}.follow")).expect("fixture");
    let mut out = Vec::new();
    for line in text.lines() {
        let server = line.starts_with('\t');
        let hex = line.trim();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        out.push((server, bytes));
    }
    out
}

/// Feeds the chunks cut into pieces of at most `piece` bytes, then closes.
fn run_with(
    chunks: &[(bool, Vec<u8>)],
    piece: usize,
    limits: Limits,
) -> (Vec<Handshake>, ConnStats) {
    let mut conn = Conn::new(limits);
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    for (i, (server, data)) in chunks.iter().enumerate() {
        for p in data.chunks(piece) {
            let ts = 1_000_000 * (i as i64 + 1);
            if *server {
                conn.server_data(ts, p, &mut st, &mut out);
            } else {
                conn.client_data(ts, p, &mut st, &mut out);
            }
        }
    }
    conn.close(1_000_000_000, &mut st, &mut out);
    (out, st)
}

fn run(name: &str) -> Handshake {
    let (mut out, st) = run_with(&stream(name), usize::MAX, Limits::default());
    assert_eq!(out.len(), 1, "{name}: one handshake");
    assert_eq!(st, ConnStats::default(), "{name}: nothing counted");
    out.remove(0)
}

/// The handshake's whole event, as the driver writes it.
fn event(h: &Handshake) -> crate::event::Event {
    let conn = analyzer::Conn::new(
        "tls",
        Transport::Tcp,
        (Addr::v4([10, 0, 0, 1]), 40000),
        (Addr::v4([10, 0, 0, 2]), 443),
    );
    let mut m = MapFields::new();
    h.write(&conn, &mut m);
    m.finish(&"t".into())
}

fn s<'a>(e: &'a crate::event::Event, path: &str) -> Option<&'a str> {
    e.get(path).and_then(Value::as_str)
}

#[test]
fn tls12_full_handshake_with_certificate() {
    let h = run("tls12_http11.0");
    assert!(h.established && !h.resumed);
    let e = event(&h);
    assert_eq!(s(&e, "tls.version"), Some("1.2"));
    assert_eq!(s(&e, "tls.version_protocol"), Some("tls"));
    assert_eq!(
        s(&e, "tls.cipher"),
        Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
    );
    assert_eq!(s(&e, "tls.client.server_name"), Some("tls.trawl.test"));
    assert_eq!(
        s(&e, "tls.client.ja3"),
        Some("87b9bfc7da97115ed2276737b09f8d74")
    );
    assert_eq!(
        s(&e, "tls.server.ja3s"),
        Some("e54965894d6b45ecb4323c7ea3d6c115")
    );
    assert_eq!(s(&e, "event.outcome"), Some("success"));
    assert_eq!(s(&e, "event.dataset"), Some("tls"));
    assert_eq!(s(&e, "network.protocol"), Some("tls"));
    assert_eq!(
        e.get("network.bytes").and_then(Value::as_i64),
        Some(
            stream("tls12_http11.0")
                .iter()
                .take(4)
                .map(|(_, d)| d.len() as i64)
                .sum()
        )
    );
    // `openssl x509 -noout -subject -serial -enddate -nameopt RFC2253` on the server's cert.
    assert_eq!(
        s(&e, "tls.server.subject"),
        Some("CN=tls.trawl.test,O=Trawl Test\\, Inc,C=FR")
    );
    assert_eq!(s(&e, "tls.server.issuer"), s(&e, "tls.server.subject"));
    assert_eq!(
        s(&e, "tls.server.x509.serial_number"),
        Some("6F892AB5F30B73FB256782540D224C50F770218F")
    );
    assert_eq!(s(&e, "tls.server.not_after"), Some("2036-11-27T19:37:37Z"));
    assert_eq!(
        e.get("tls.server.x509.subject.common_name"),
        Some(&Value::Array(vec![Value::from("tls.trawl.test")]))
    );
    match e.get("tls.client.supported_ciphers") {
        Some(Value::Array(v)) => {
            assert_eq!(v.len(), 28);
            assert_eq!(v[0], Value::from("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
        }
        other => panic!("supported_ciphers: {other:?}"),
    }
    // The client offered http/1.1 and the server (no -alpn) chose nothing.
    assert_eq!(s(&e, "tls.next_protocol"), None);
}

#[test]
fn tls12_resumption_is_the_server_finishing_first() {
    let first = run("tls12_resumed.0");
    let second = run("tls12_resumed.1");
    assert!(first.established && !first.resumed);
    assert!(second.established && second.resumed);
    assert!(first.certificate.is_some());
    assert!(
        second.certificate.is_none(),
        "an abbreviated handshake sends no certificate"
    );
    assert_eq!(
        fingerprint::ja3s(second.server.as_ref().unwrap()),
        "fd4bc6cea4877646ccd62f0792ec0b62"
    );
}

#[test]
fn tls13_with_alpn_h2() {
    let h = run("tls13_h2.0");
    assert!(h.established && !h.resumed);
    assert!(h.certificate.is_none(), "TLS 1.3 encrypts the certificate");
    let e = event(&h);
    assert_eq!(s(&e, "tls.version"), Some("1.3"));
    assert_eq!(s(&e, "tls.cipher"), Some("TLS_AES_256_GCM_SHA384"));
    // TLS 1.3 sends the chosen protocol in EncryptedExtensions: only the offer is visible.
    assert_eq!(s(&e, "tls.next_protocol"), None);
    assert_eq!(
        e.get("tls.client.alpn"),
        Some(&Value::Array(vec![
            Value::from("h2"),
            Value::from("http/1.1")
        ]))
    );
    assert_eq!(
        s(&e, "tls.client.ja3"),
        Some("9dffdb8b608a430b774a2ff7d36c1a0c")
    );
    assert_eq!(
        s(&e, "tls.server.ja3s"),
        Some("15af977ce25de452b96affa2addb1036")
    );
}

/// Up to TLS 1.2 the ServerHello carries the protocol the server chose.
#[test]
fn tls12_alpn_is_the_next_protocol() {
    let h = run("tls12_alpn.0");
    let e = event(&h);
    assert_eq!(s(&e, "tls.next_protocol"), Some("h2"));
    assert_eq!(
        s(&e, "tls.server.ja3s"),
        Some("895252f3ce80cebf7a8837be83ec8e16")
    );
}

#[test]
fn tls13_resumption_is_the_accepted_psk() {
    assert!(!run("tls13_resumed.0").resumed);
    let h = run("tls13_resumed.1");
    assert!(h.established && h.resumed);
}

#[test]
fn tls13_hello_retry_request() {
    let h = run("tls13_retry.0");
    assert!(h.established && h.hello_retry);
    assert_eq!(h.version(), Some(("tls", "1.3")));
}

#[test]
fn alerts_end_the_handshake_as_a_failure() {
    for (name, desc) in [
        ("version_alert.0", "protocol_version"),
        ("cipher_alert.0", "handshake_failure"),
    ] {
        let h = run(name);
        assert!(!h.established, "{name}");
        assert_eq!(h.unfinished, Some(Unfinished::Alert), "{name}");
        let e = event(&h);
        assert_eq!(s(&e, "event.outcome"), Some("failure"), "{name}");
        assert_eq!(s(&e, "event.reason"), Some("alert"), "{name}");
        assert_eq!(s(&e, "tls.alert.level"), Some("fatal"), "{name}");
        assert_eq!(s(&e, "tls.alert.description"), Some(desc), "{name}");
        assert_eq!(s(&e, "tls.alert.source"), Some("server"), "{name}");
        assert_eq!(s(&e, "tls.version"), None, "{name}: nothing was negotiated");
    }
}

/// Records cut at every byte (segments), or several records in one chunk, read the same.
#[test]
fn one_byte_at_a_time_reads_the_same() {
    for name in ["tls12_http11.0", "tls13_retry.0", "cipher_alert.0"] {
        let whole = run(name);
        let (bytes, st) = run_with(&stream(name), 1, Limits::default());
        assert_eq!(st, ConnStats::default());
        assert_eq!(bytes.len(), 1);
        let b = &bytes[0];
        assert_eq!(
            (&b.client, &b.server, &b.certificate, b.established, b.alert),
            (
                &whole.client,
                &whole.server,
                &whole.certificate,
                whole.established,
                whole.alert
            ),
            "{name}"
        );
    }
}

/// Splits a stream's records so that every handshake message spans several records of at
/// most `max` bytes (RFC 8446 5.1 allows any fragmentation of handshake messages).
fn refragment(data: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= data.len() {
        let len = u16::from_be_bytes([data[at + 3], data[at + 4]]) as usize;
        let body = &data[at + 5..at + 5 + len];
        if data[at] == 22 && len > max {
            for part in body.chunks(max) {
                out.extend_from_slice(&data[at..at + 3]);
                out.extend_from_slice(&(part.len() as u16).to_be_bytes());
                out.extend_from_slice(part);
            }
        } else {
            out.extend_from_slice(&data[at..at + 5 + len]);
        }
        at += 5 + len;
    }
    out
}

#[test]
fn handshake_messages_spanning_records() {
    let whole = run("tls12_http11.0");
    // The server's first flight holds ServerHello, Certificate, ServerKeyExchange and
    // ServerHelloDone in one record; cut it into 7-byte records.
    let chunks: Vec<(bool, Vec<u8>)> = stream("tls12_http11.0")
        .into_iter()
        .enumerate()
        .map(|(i, (server, d))| (server, if i < 2 { refragment(&d, 7) } else { d }))
        .collect();
    assert!(chunks[1].1.len() > stream("tls12_http11.0")[1].1.len());
    let (out, st) = run_with(&chunks, usize::MAX, Limits::default());
    assert_eq!(st, ConnStats::default());
    assert_eq!(out[0].certificate, whole.certificate);
    assert_eq!(out[0].client, whole.client);
    assert!(out[0].established);
}

/// An SSLv2-compatible ClientHello (RFC 5246 E.2) is counted and passed over; the server's
/// TLS reply and the rest are read as usual.
#[test]
fn sslv2_compatible_hello_is_skipped_and_counted() {
    let mut chunks = stream("tls12_http11.0");
    // msg_type 1, version 3.1, cipher_spec_length 3, session_id_length 0, challenge 16.
    let mut v2 = vec![0x01, 0x03, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10];
    v2.extend_from_slice(&[0x00, 0x00, 0x2f]);
    v2.extend_from_slice(&[0x55; 16]);
    let mut rec = vec![0x80 | (v2.len() >> 8) as u8, v2.len() as u8];
    rec.extend_from_slice(&v2);
    chunks[0].1 = rec;
    let (out, st) = run_with(&chunks, 3, Limits::default());
    assert_eq!(st.sslv2_hellos, 1);
    assert_eq!(st.parse_errors, 0);
    assert_eq!(out.len(), 1);
    assert!(out[0].sslv2_hello && out[0].client.is_none());
    assert!(out[0].established);
    assert_eq!(
        event(&out[0]).get("tls.sslv2_hello"),
        Some(&Value::Bool(true))
    );
}

#[test]
fn a_gap_inside_an_encrypted_record_is_passed_over_exactly() {
    let chunks = stream("tls13_h2.0");
    let mut conn = Conn::new(Limits::default());
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    conn.client_data(1, &chunks[0].1, &mut st, &mut out);
    // The server's flight: ServerHello, CCS and encrypted records. Drop 10 bytes from the
    // middle of its first encrypted record (after the 5-byte header).
    let flight = &chunks[1].1;
    let sh_len = 5 + u16::from_be_bytes([flight[3], flight[4]]) as usize;
    let enc = sh_len + 6; // the CCS record is 6 bytes
    assert_eq!(flight[enc], 23);
    conn.server_data(2, &flight[..enc + 5 + 3], &mut st, &mut out);
    conn.gap(true, 10, &mut st);
    conn.server_data(3, &flight[enc + 5 + 13..], &mut st, &mut out);
    for (server, d) in &chunks[2..] {
        if *server {
            conn.server_data(4, d, &mut st, &mut out);
        } else {
            conn.client_data(4, d, &mut st, &mut out);
        }
    }
    assert_eq!(st, ConnStats::default());
    assert_eq!(out.len(), 1);
    assert!(out[0].established && !out[0].gap);
}

#[test]
fn a_gap_in_the_handshake_gives_the_side_up_and_marks_the_event() {
    let chunks = stream("tls12_http11.0");
    let mut conn = Conn::new(Limits::default());
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    conn.client_data(1, &chunks[0].1, &mut st, &mut out);
    conn.server_data(2, &chunks[1].1[..100], &mut st, &mut out);
    conn.gap(true, 500, &mut st);
    conn.server_data(3, &chunks[1].1[600..], &mut st, &mut out);
    conn.close(4, &mut ConnStats::default(), &mut out);
    assert_eq!(st.gaps, 1);
    assert_eq!(out.len(), 1);
    let h = &out[0];
    assert!(h.gap && !h.established && h.certificate.is_none());
    assert!(h.server.is_some(), "the ServerHello came before the hole");
    let e = event(h);
    assert_eq!(s(&e, "event.outcome"), Some("unknown"));
    assert_eq!(s(&e, "event.reason"), Some("closed_during_handshake"));
    assert_eq!(
        e.get("tags"),
        Some(&Value::Array(vec![Value::from("tcp_gap")]))
    );
}

#[test]
fn only_the_servers_side_still_reports_what_it_said() {
    let chunks: Vec<_> = stream("tls12_http11.0")
        .into_iter()
        .filter(|(server, _)| *server)
        .collect();
    let (out, st) = run_with(&chunks, usize::MAX, Limits::default());
    assert_eq!(st, ConnStats::default());
    assert_eq!(out.len(), 1);
    assert!(out[0].client.is_none() && out[0].certificate.is_some());
    assert_eq!(out[0].version(), Some(("tls", "1.2")));
    assert_eq!(
        event(&out[0]).get("event.outcome"),
        Some(&Value::from("unknown"))
    );
}

#[test]
fn not_tls_is_counted_and_reports_nothing() {
    let (out, st) = run_with(
        &[
            (false, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            (true, b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        ],
        usize::MAX,
        Limits::default(),
    );
    assert!(out.is_empty());
    assert_eq!(st.parse_errors, 2);
}

#[test]
fn a_handshake_after_a_plaintext_upgrade_is_read() {
    // The same handshake behind an SMTP STARTTLS exchange (RFC 3207 4), the server's reply
    // cut mid-line, and behind PostgreSQL's SSLRequest and its one-byte `S`.
    let tls = stream("tls12_http11.0");
    let want = run("tls12_http11.0");
    for preamble in [
        &[
            (true, b"220 mx.example ESMTP\r\n".to_vec()),
            (false, b"EHLO c.example\r\n".to_vec()),
            (true, b"250-mx.example\r\n250 STA".to_vec()),
            (true, b"RTTLS\r\n".to_vec()),
            (false, b"STARTTLS\r\n".to_vec()),
            (true, b"220 2.0.0 go ahead\r\n".to_vec()),
        ][..],
        &[
            (false, vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
            (true, b"S".to_vec()),
        ][..],
    ] {
        let chunks: Vec<_> = preamble
            .iter()
            .cloned()
            .chain(tls.iter().cloned())
            .collect();
        let (out, st) = run_with(&chunks, usize::MAX, Limits::default());
        assert_eq!(st, ConnStats::default());
        assert_eq!(out.len(), 1);
        assert!(out[0].established);
        assert_eq!(out[0].server, want.server);
        assert_eq!(out[0].client, want.client);
    }
}

#[test]
fn plaintext_past_the_bound_gives_the_side_up() {
    let line = b"* OK still not TLS\r\n".to_vec();
    let many = vec![(true, line.repeat(conn::MAX_PLAINTEXT / line.len() + 1))];
    let (out, st) = run_with(&many, 7, Limits::default());
    assert!(out.is_empty());
    assert_eq!(st.parse_errors, 1);
}

#[test]
fn an_oversized_message_is_skipped_and_the_rest_still_read() {
    let (out, st) = run_with(
        &stream("tls12_http11.0"),
        usize::MAX,
        Limits {
            max_message_bytes: 512,
        },
    );
    // The certificate (about 900 bytes) is over the limit; the hellos are not. Its first 512
    // bytes still hold the names, not the digests of the whole.
    assert_eq!(st.oversized, 1);
    let whole = run("tls12_http11.0").certificate.expect("certificate");
    let part = out[0]
        .certificate
        .as_ref()
        .expect("the certificate's first bytes");
    assert!(part.truncated && part.sha1.is_empty(), "{part:?}");
    assert_eq!(
        (&part.subject, &part.issuer),
        (&whole.subject, &whole.issuer)
    );
    assert!(out[0].client.is_some() && out[0].established);
}

#[test]
fn a_handshake_that_does_not_finish_expires() {
    let chunks = stream("tls12_http11.0");
    let mut conn = Conn::new(Limits::default());
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    conn.client_data(1_000, &chunks[0].1, &mut st, &mut out);
    conn.expire(500, &mut out);
    assert!(out.is_empty(), "started after the deadline");
    conn.expire(2_000, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].unfinished, Some(Unfinished::Timeout));
    // Reported once: the connection's end adds nothing.
    conn.close(3_000, &mut ConnStats::default(), &mut out);
    assert_eq!(out.len(), 1);
    assert!(conn.done());
}

#[test]
fn memory_stays_bounded_by_the_record_and_message_caps() {
    // A record header announcing the longest record, then a handshake message header
    // announcing 16 MiB: neither is buffered beyond its caps.
    let mut conn = Conn::new(Limits::default());
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    let mut data = vec![22, 3, 1, 0x48, 0x00, 1, 0xff, 0xff, 0xff];
    data.resize(5 + 0x4800, 0);
    for _ in 0..100 {
        conn.client_data(1, &data, &mut st, &mut out);
        assert!(conn.buffered() < 64 * 1024, "{}", conn.buffered());
    }
    assert_eq!(st.oversized, 1);
}

/// JA4 of every fixture's ClientHello as the `ja4plus` reference implementation (PyPI,
/// 1.4.0) computes it: `generate_ja4(parse_tls_handshake(first client chunk))`.
#[test]
fn ja4_agrees_with_the_reference_implementation() {
    for (name, want) in [
        ("cipher_alert.0", "t12i020400_a047181052cf_847bbcdea70d"),
        ("tls12_alpn.0", "t12d2808h2_d943125447b4_e7e480e5a997"),
        ("tls12_http11.0", "t12d2807h1_d943125447b4_a44c6288192a"),
        ("tls12_resumed.0", "t12d280700_d943125447b4_e7e480e5a997"),
        ("tls12_resumed.1", "t12d280700_d943125447b4_e7e480e5a997"),
        ("tls13_h2.0", "t13d0411h2_16476d049b0b_78f1d400d464"),
        ("tls13_resumed.0", "t13d041000_16476d049b0b_78f1d400d464"),
        ("tls13_resumed.1", "t13d041100_16476d049b0b_6775ac8fe30b"),
        ("tls13_retry.0", "t13d041000_16476d049b0b_78f1d400d464"),
        ("version_alert.0", "t12d280700_d943125447b4_e7e480e5a997"),
    ] {
        let h = run(name);
        assert_eq!(s(&event(&h), "tls.client.ja4"), Some(want), "{name}");
    }
}
