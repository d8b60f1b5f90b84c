//! The decoder on real server traffic (tests/data/pgsql: a PostgreSQL 15 capture of
//! `workload.py`, see its README) and on messages built from the protocol's definition.

use super::conn::{Conn, ConnStats, Finished, Limits};
use super::transaction::{Missing, Protocol, Transaction};
use crate::wire::out::{MapFields, Report};

/// One direction's reassembled bytes as `tshark -z follow,tcp,raw` printed them: the
/// client's lines first in column 0, the server's indented by a tab.
fn follow(name: &str) -> Vec<(bool, Vec<u8>)> {
    let path = format!("{}/tests/data/pgsql/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let server = l.starts_with('\t');
            let hex = l.trim();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (!server, bytes)
        })
        .collect()
}

/// Replays chunks with capture times 1 ms apart, then closes the connection.
fn replay(chunks: &[(bool, Vec<u8>)], l: &Limits) -> (Finished, ConnStats, Conn) {
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    for (i, (client, data)) in chunks.iter().enumerate() {
        let ts = 1_000_000 * (i as i64 + 1);
        if *client {
            c.client_data(data, ts, l, &mut st, &mut out);
        } else {
            c.server_data(data, ts, l, &mut st, &mut out);
        }
    }
    c.close(1 << 40, &mut out);
    (out, st, c)
}

fn stream(n: usize) -> Finished {
    let (out, st, _) = replay(&follow(&format!("stream{n}")), &Limits::default());
    assert_eq!(st.parse_errors, 0, "stream {n}");
    out
}

/// `statement | operation | rows | error code | reason`, one line per transaction.
fn summary(t: &Transaction) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        t.statement.as_deref().unwrap_or("-"),
        t.operation.as_deref().unwrap_or("-"),
        t.rows().map_or("-".into(), |r| r.to_string()),
        t.error.as_ref().map_or("-", |e| e.code.as_str()),
        t.missing.map_or("-", Missing::as_str),
    )
}

fn summaries(out: &Finished) -> Vec<String> {
    out.iter().map(summary).collect()
}

#[test]
fn print_all_streams() {
    for n in 0..12 {
        let out = stream(n);
        eprintln!("stream {n}: {:#?}", summaries(&out));
    }
}
