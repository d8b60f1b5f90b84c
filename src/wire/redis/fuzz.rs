//! Property-based fuzzing of the Redis decoder: random and mutated RESP fed to a connection in
//! random slices, with random gaps, never panics, keeps its memory bounded, and reports every
//! command at most once; well-formed traffic reads the same whatever the slicing.

use super::conn::{Conn, ConnStats, Options};
use super::resp::{Limits, Reader};
use super::transaction::Finished;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A RESP value as a server might send it, nested.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        "[ -~]{0,10}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        "[A-Z]{1,8} [ -~]{0,10}".prop_map(|s| format!("-{s}\r\n").into_bytes()),
        any::<i64>().prop_map(|i| format!(":{i}\r\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut v = format!("${}\r\n", b.len()).into_bytes();
            v.extend(b);
            v.extend(b"\r\n");
            v
        }),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        Just(b"#f\r\n".to_vec()),
        Just(b",3.14\r\n".to_vec()),
        Just(b"(123456789012345678901234567890\r\n".to_vec()),
        Just(b"!9\r\nERR nope\r\n".to_vec()),
        Just(b"=7\r\ntxt:abc\r\n".to_vec()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        (
            prop::sample::select(vec![b'*', b'%', b'~', b'>', b'|']),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(t, items)| {
                let n = if t == b'%' || t == b'|' {
                    items.len() / 2
                } else {
                    items.len()
                };
                let mut v = format!("{}{n}\r\n", t as char).into_bytes();
                let take = if t == b'%' || t == b'|' { n * 2 } else { n };
                for i in items.into_iter().take(take) {
                    v.extend(i);
                }
                if t == b'|' {
                    // An attribute describes the value that follows it.
                    v.extend(b":1\r\n");
                }
                v
            })
    })
}

/// Commands as clients send them, arrays or inline.
fn command() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec("[a-zA-Z0-9:_]{0,12}", 1..6).prop_map(|words| {
            let mut v = format!("*{}\r\n", words.len()).into_bytes();
            for w in words {
                v.extend(format!("${}\r\n{w}\r\n", w.len()).into_bytes());
            }
            v
        }),
        "[A-Za-z]{1,8}( [a-z'\"]{0,6}){0,3}".prop_map(|s| format!("{s}\r\n").into_bytes()),
    ]
}

/// Bytes with some of them changed, dropped or repeated.
fn mutate(mut b: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        if b.is_empty() {
            break;
        }
        let i = at % b.len();
        match op % 4 {
            0 => b[i] = byte,
            1 => {
                b.remove(i);
            }
            2 => b.insert(i, byte),
            _ => b.truncate(i),
        }
    }
    b
}

/// Feeds `client` and `server` bytes alternately in slices of `cuts`, with gaps where asked.
fn drive(client: &[u8], server: &[u8], cuts: &[usize], gaps: &[bool]) -> (Finished, ConnStats) {
    let mut conn = Conn::new(Options::default(), true);
    let mut st = ConnStats::default();
    let mut out = Vec::new();
    let (mut ci, mut si) = (0, 0);
    let mut k = 0;
    while ci < client.len() || si < server.len() {
        let n = cuts.get(k % cuts.len().max(1)).copied().unwrap_or(7).max(1);
        let gap = gaps.get(k % gaps.len().max(1)).copied().unwrap_or(false);
        let ts = k as i64 * 10;
        if k % 2 == 0 && ci < client.len() {
            let end = (ci + n).min(client.len());
            if gap {
                conn.client_gap((end - ci) as u64, &mut st, &mut out);
            } else {
                conn.client_data(&client[ci..end], ts, &mut st, &mut out);
            }
            ci = end;
        } else if si < server.len() {
            let end = (si + n).min(server.len());
            if gap {
                conn.server_gap((end - si) as u64, &mut st, &mut out);
            } else {
                conn.server_data(&server[si..end], ts, &mut st, &mut out);
            }
            si = end;
        }
        assert!(conn.buffered() < 1 << 20, "held {}", conn.buffered());
        k += 1;
        conn.expire(ts - 50, &mut out);
    }
    conn.close(&mut out);
    (out, st)
}

/// All the client's bytes, then all the server's, in slices of `cuts`: what is reported, times
/// aside.
fn in_order(client: &[u8], server: &[u8], cuts: &[usize]) -> Vec<String> {
    let mut conn = Conn::new(Options::default(), true);
    let mut st = ConnStats::default();
    let mut out = Vec::new();
    let mut k = 0;
    for (side, bytes) in [(true, client), (false, server)] {
        let mut i = 0;
        while i < bytes.len() {
            let end = (i + cuts[k % cuts.len()].max(1)).min(bytes.len());
            if side {
                conn.client_data(&bytes[i..end], 0, &mut st, &mut out);
            } else {
                conn.server_data(&bytes[i..end], 0, &mut st, &mut out);
            }
            i = end;
            k += 1;
        }
    }
    conn.close(&mut out);
    out.iter()
        .map(|t| {
            format!(
                "{:?} {:?} {} {} {:?}",
                t.command, t.reply, t.req_bytes, t.resp_bytes, t.missing
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        client in prop::collection::vec(any::<u8>(), 0..400),
        server in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(1usize..64, 1..8),
        gaps in prop::collection::vec(prop::bool::weighted(0.1), 1..8),
    ) {
        drive(&client, &server, &cuts, &gaps);
    }

    #[test]
    fn mutated_traffic_never_panics_and_reports_each_command_once(
        cmds in prop::collection::vec(command(), 1..12),
        replies in prop::collection::vec(value(), 0..12),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
        cuts in prop::collection::vec(1usize..64, 1..8),
        gaps in prop::collection::vec(prop::bool::weighted(0.05), 1..8),
    ) {
        let client = mutate(cmds.concat(), &edits);
        let server = mutate(replies.concat(), &edits);
        let (out, _) = drive(&client, &server, &cuts, &gaps);
        // Each command is reported at most once: never more commands than the client's bytes
        // could hold.
        let commands = out.iter().filter(|t| t.command.is_some()).count();
        prop_assert!(commands <= client.len());
    }

    #[test]
    fn well_formed_traffic_reads_the_same_in_any_slicing(
        cmds in prop::collection::vec(command(), 1..12),
        replies in prop::collection::vec(value(), 0..12),
        cuts in prop::collection::vec(1usize..64, 1..8),
    ) {
        let (client, server) = (cmds.concat(), replies.concat());
        let whole = in_order(&client, &server, &[usize::MAX >> 1]);
        let sliced = in_order(&client, &server, &cuts);
        prop_assert_eq!(whole, sliced);
    }

    #[test]
    fn reader_held_bytes_stay_bounded(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        client in any::<bool>(),
    ) {
        let mut r = Reader::new(client, Limits::default());
        let _ = r.feed(&data, 0, &mut |_| {});
        prop_assert!(r.held() < 64 * 1024);
    }
}
