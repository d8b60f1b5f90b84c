//! Decoding of crafted DNS messages: compression, damage, limits of RFC 1035.

use super::*;

/// A response for `www.example.com A` with a compressed CNAME and A record.
fn response() -> Vec<u8> {
    let mut m = vec![
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0, // header: QR RD RA, 1 q, 2 an
    ];
    m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    // CNAME www.example.com -> web.example.com (web + pointer to example.com at 16)
    m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
    m.extend_from_slice(b"\x03web\xc0\x10");
    // A web.example.com 192.0.2.7 (pointer to the CNAME's data at 45)
    m.extend_from_slice(&[0xc0, 45, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0, 2, 7]);
    m
}

#[test]
fn compressed_names_and_records_decode() {
    let m = parse(&response()).unwrap();
    assert_eq!(m.id, 0x1234);
    assert!(m.is_response());
    assert_eq!(m.rcode(), 0);
    assert_eq!(m.header_flags(), ["RD", "RA"]);
    assert_eq!(m.question, Some(("www.example.com".into(), 1, 1)));
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].data, "web.example.com");
    assert_eq!(m.answers[0].ttl, 60);
    assert_eq!(m.answers[1].name, "web.example.com");
    assert_eq!(m.answers[1].data, "192.0.2.7");
    assert_eq!(m.answers[1].ttl, 256);
}

/// RFC 6891 section 6.1.3: the OPT record's TTL carries the upper 8 bits of the response
/// code. BADVERS (16) is a header code of 0 under an extended code of 1; BADCOOKIE (23,
/// RFC 7873) is 7 under 1. Without OPT the header's 4 bits are the whole code.
#[test]
fn the_opt_record_extends_the_response_code() {
    let with_opt = |header_rcode: u8, extended: u8| {
        let mut m = vec![
            0xab,
            0xcd,
            0x81,
            0x80 | header_rcode,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            1,
        ];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        // OPT: root name, type 41, class (UDP size) 1232, TTL = ext rcode, version 0, DO.
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, extended, 0, 0x80, 0, 0, 0]);
        parse(&m).unwrap()
    };
    let badvers = with_opt(0, 1);
    assert_eq!(badvers.rcode(), 16);
    assert_eq!(rcode_name(badvers.rcode()), "BADVERS");
    assert!(badvers.dnssec_ok);
    let cookie = with_opt(7, 1);
    assert_eq!(rcode_name(cookie.rcode()), "BADCOOKIE");
    let plain = with_opt(3, 0);
    assert_eq!(rcode_name(plain.rcode()), "NXDOMAIN");
    assert_eq!(parse(&response()).unwrap().rcode(), 0);
}

#[test]
fn pointer_loops_are_errors() {
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
    assert_eq!(parse(&m), Err(Malformed::PointerLoop));
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]); // forward, then back
    assert_eq!(parse(&m), Err(Malformed::PointerLoop));
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]); // past the end
    assert_eq!(parse(&m), Err(Malformed::PointerOutside));
}

/// tcpdump's dns_fwdptr.pcap in small: thousands of questions pointing into one long run
/// of labels. Each name is read only to its cut (the first's text, the others' 255
/// octets): what the run holds further on is never walked, so it costs nothing per name,
/// and damage there is not the questions' damage.
#[test]
fn names_pointing_into_a_long_run_of_labels_are_read_to_their_cut_only() {
    let questions: u16 = 2000;
    let run_at = 12 + 6 * questions as usize;
    let mut m = vec![0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    m[4..6].copy_from_slice(&questions.to_be_bytes());
    for _ in 0..questions {
        m.extend_from_slice(&[0xc0 | (run_at >> 8) as u8, run_at as u8, 0, 1, 0, 1]);
    }
    for _ in 0..20_000 {
        m.extend_from_slice(&[1, 0xfb]);
    }
    m.push(0);
    let whole = parse(&m).unwrap();
    let (text, qtype, _) = whole.question.clone().unwrap();
    assert!(
        text.starts_with("\\251.\\251.") && text.len() <= MAX_NAME_TEXT,
        "{text}"
    );
    assert!(whole.question_truncated && whole.name_too_long);
    assert_eq!((qtype, whole.damaged), (1, None));
    // An extended label type (an error wherever a name reaches it) 400 labels into the run:
    // past every name's cut (1,025 characters of `\251` labels is 205 labels; 255 octets 128).
    let mut damaged = m.clone();
    damaged[run_at + 2 * 400] = 0x40;
    assert_eq!(parse(&damaged), Ok(whole.clone()));
    // Before the cut, it is the questions' error.
    damaged[run_at + 2 * 100] = 0x40;
    assert_eq!(parse(&damaged), Err(Malformed::LabelType));
}

#[test]
fn a_forward_pointer_is_followed() {
    // Two questions, the first naming the second's name further on.
    let mut m = vec![0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1]);
    m.extend_from_slice(b"\x03www\x07example\x00\x00\x1c\x00\x01");
    let q = parse(&m).unwrap().question.unwrap();
    assert_eq!(q, ("www.example".into(), 1, 1));
}

#[test]
fn a_truncation_is_an_error_in_the_question_and_damage_after_it() {
    let full = response();
    // Header (12) and question (21 bytes of name, type, class).
    let question_end = 12 + 17 + 4;
    for n in 0..full.len() {
        match parse(&full[..n]) {
            Err(_) => assert!(n < question_end, "{n} bytes"),
            Ok(m) => {
                assert!(n >= question_end, "{n} bytes");
                assert_eq!(m.damaged, Some(Malformed::Short), "{n} bytes");
                // The CNAME (to byte 51) is kept once whole, the A record never.
                assert_eq!(m.answers.len(), usize::from(n >= 51), "{n} bytes");
            }
        }
    }
    assert_eq!(parse(&full).unwrap().damaged, None);
}

#[test]
fn a_name_past_255_octets_is_cut_and_flagged_not_refused() {
    // 40 labels of 30 characters: 1,240 octets, then an answer whose owner points at it.
    let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for _ in 0..40 {
        m.push(30);
        m.extend_from_slice(&[b'a'; 30]);
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    let p = parse(&m).unwrap();
    let q = p.question.unwrap();
    assert_eq!(q.0.len(), MAX_NAME_TEXT);
    assert!(q.0.starts_with("aaa") && q.0.split('.').all(|l| l.len() <= 30));
    assert!(p.question_truncated && p.name_too_long);
    assert_eq!(p.damaged, None);
    // The record after the long name is read from where the name's bytes end.
    assert_eq!(p.answers[0].data, "192.0.2.1");
    assert!(p.answers[0].name_truncated);
    // 300 octets: past the limit, whole as text, not cut.
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..10 {
        m.push(29);
        m.extend_from_slice(&[b'b'; 29]);
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    let p = parse(&m).unwrap();
    assert_eq!(p.question.unwrap().0.len(), 10 * 30 - 1);
    assert!(!p.question_truncated && p.name_too_long);
}

#[test]
fn an_update_reads_its_prerequisites_without_taking_them_for_answers() {
    // RFC 2136: zone trawl.test SOA; prerequisite "no CNAME at host" (class NONE, no
    // data); update "delete host's A RRset" (class ANY, no data).
    let mut m = vec![0, 9, 0x28, 0, 0, 1, 0, 1, 0, 1, 0, 0];
    m.extend_from_slice(b"\x05trawl\x04test\x00\x00\x06\x00\x01");
    m.extend_from_slice(b"\x04host\xc0\x0c\x00\x05\x00\xfe\x00\x00\x00\x00\x00\x00");
    m.extend_from_slice(b"\xc0\x1c\x00\x01\x00\xff\x00\x00\x00\x00\x00\x00");
    let p = parse(&m).unwrap();
    assert_eq!(opcode_name(p.opcode()), "UPDATE");
    assert_eq!(p.question, Some(("trawl.test".into(), 6, 1)));
    assert_eq!(p.damaged, None);
    assert!(p.answers.is_empty());
    assert_eq!(p.counts, [1, 1, 0]);
}

#[test]
fn odd_labels_are_escaped() {
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(b"\x03a.b\x02\x00z\x00\x00\x01\x00\x01");
    let q = parse(&m).unwrap().question.unwrap();
    assert_eq!(q.0, "a\\.b.\\000z");
    let mut root = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    root.extend_from_slice(b"\x00\x00\x02\x00\x01");
    assert_eq!(parse(&root).unwrap().question.unwrap().0, ".");
}

/// RFC 2181 9: a truncated (TC) message may end inside a record; without TC that is damage.
#[test]
fn a_truncated_answer_may_end_inside_a_record() {
    let full = response();
    let mut cut = full[..full.len() - 3].to_vec();
    let m = parse(&cut).unwrap();
    assert!(m.is_malformed());
    assert_eq!(m.anomalies(), ["short_message"]);
    cut[2] |= 0x02;
    let m = parse(&cut).unwrap();
    assert!(m.header_flags().contains(&"TC"));
    assert!(!m.is_malformed() && m.anomalies().is_empty(), "{m:?}");
}

/// A message whose question does not decode is still a message: its header, and why.
#[test]
fn a_message_whose_question_does_not_decode_keeps_its_header() {
    let mut m = vec![0, 9, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let why = parse(&m).unwrap_err();
    let u = undecodable(&m, why).unwrap();
    assert_eq!((u.id, u.is_response(), u.question.clone()), (9, true, None));
    assert_eq!(u.anomalies(), ["pointer_loop"]);
    assert!(u.is_malformed());
    assert!(undecodable(&m[..11], why).is_none());
}

/// RFC 1035 4.1.4 has a pointer lead to a prior occurrence: one forward is followed, listed.
#[test]
fn a_forward_pointer_is_listed() {
    let mut m = vec![0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1]);
    m.extend_from_slice(b"\x03www\x07example\x00\x00\x1c\x00\x01");
    let m = parse(&m).unwrap();
    assert_eq!(m.anomalies(), ["forward_pointer"]);
    assert!(!m.is_malformed());
    assert!(parse(&response()).unwrap().anomalies().is_empty());
}
