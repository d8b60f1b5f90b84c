//! The decoder on real server traffic (tests/data/pgsql: a PostgreSQL 15 capture of
//! `workload.py`, see its README) and on messages built from the protocol's definition.

use super::conn::{Conn, ConnStats, Finished, Limits};
use super::transaction::{Missing, Protocol, Transaction};
use crate::wire::analyzer;
use crate::wire::out::MapFields;

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

/// The operations the server logged (`log_statement=all`), in order: a simple Query's line
/// split into its statements, an Execute's line, and a statement that failed before its
/// Execute was logged (extended protocol). Literals redacted, as trawl reports them.
fn server_log() -> (Vec<String>, Vec<String>) {
    let path = format!(
        "{}/tests/data/pgsql/workload.server.log",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (mut ops, mut failed) = (Vec::new(), Vec::new());
    let mut last = String::new();
    let mut error = false;
    for line in text.lines() {
        if let Some(q) = line.strip_prefix("LOG:  statement: ") {
            ops.extend(
                sql::split(sql::Dialect::Postgres, q)
                    .into_iter()
                    .map(|s| sql::redact(sql::Dialect::Postgres, s)),
            );
            last = q.to_owned();
        } else if let Some(rest) = line.strip_prefix("LOG:  execute ") {
            let q = &rest[rest.find(": ").unwrap() + 2..];
            ops.push(sql::redact(sql::Dialect::Postgres, q));
            last = q.to_owned();
        } else if line.starts_with("ERROR:  ") {
            error = true;
        } else if let Some(q) = line.strip_prefix("STATEMENT:  ") {
            if error && q != last {
                ops.push(sql::redact(sql::Dialect::Postgres, q));
            }
            if error {
                failed.push(sql::redact(sql::Dialect::Postgres, q));
            }
            error = false;
        }
    }
    (ops, failed)
}

use super::sql;

/// Every operation in the server's log is one transaction, in the same order, with the
/// same statement; the errors are the statements the server logged as failing. The one
/// connection that went over to TLS is counted and not decoded.
#[test]
fn real_server_traffic_matches_the_servers_own_log_one_for_one() {
    let (ops, failed) = server_log();
    let (mut seen, mut errors, mut encrypted) = (Vec::new(), Vec::new(), 0);
    for n in 0..12 {
        let (out, st, _) = replay(&follow(&format!("stream{n}")), &Limits::default());
        assert_eq!((st.parse_errors, st.gaps), (0, 0), "stream {n}");
        encrypted += st.encrypted;
        for t in &out {
            assert_eq!(t.missing, None, "stream {n}: {}", summary(t));
            seen.push(t.statement.as_deref().unwrap().to_owned());
            if t.error.is_some() {
                errors.push(t.statement.as_deref().unwrap().to_owned());
            }
        }
    }
    // The statement sent over TLS is in the server's log only.
    let tls = "SELECT count(*) FROM items";
    assert_eq!(ops.iter().filter(|o| *o == tls).count(), 1);
    let ops: Vec<String> = ops.into_iter().filter(|o| o != tls).collect();
    assert_eq!(seen, ops);
    assert_eq!(errors, failed);
    assert_eq!(encrypted, 1);
}

/// Rows, errors and operations where the protocol gives them, on the real traffic.
#[test]
fn real_server_traffic_gives_rows_errors_and_sessions() {
    assert_eq!(
        summaries(&stream(5)),
        [
            "SELECT ? | SELECT | 1 | - | -",
            "UPDATE items SET price = price * ? WHERE id < ? | UPDATE | 2 | - | -",
            "SELECT name FROM items WHERE id = ? | SELECT | 0 | - | -",
        ]
    );
    // A NOTICE is not an error.
    assert_eq!(
        summaries(&stream(0)),
        ["DROP TABLE IF EXISTS never_there | DROP TABLE | - | - | -"]
    );
    assert_eq!(
        summaries(&stream(3)),
        ["INSERT INTO items VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?) | INSERT | 3 | - | -"]
    );
    assert_eq!(
        summaries(&stream(6)),
        ["SELECT * FROM no_such_table | SELECT | - | 42P01 | -"]
    );
    assert_eq!(
        summaries(&stream(7)),
        ["INSERT INTO items VALUES (?, ?, ?) | INSERT | - | 23505 | -"]
    );
    assert_eq!(
        summaries(&stream(8)),
        ["COPY items (id, name, price) FROM STDIN | COPY | 2 | - | -"]
    );
    assert_eq!(
        summaries(&stream(9)),
        ["COPY items TO STDOUT | COPY | 5 | - | -"]
    );
    let e = stream(6)[0].error.clone().unwrap();
    assert_eq!(
        (e.severity.as_str(), e.message.as_str()),
        ("ERROR", "relation \"no_such_table\" does not exist")
    );
    let ext = stream(11);
    assert_eq!(ext.len(), 15);
    let exec: Vec<String> = ext
        .iter()
        .filter(|t| t.protocol == Protocol::Extended)
        .map(summary)
        .collect();
    assert_eq!(
        exec,
        [
            "SELECT name, price FROM items WHERE id = $1 | SELECT | 1 | - | -",
            "SELECT name, price FROM items WHERE id = $1 | SELECT | 1 | - | -",
            "SELECT name, price FROM items WHERE id = $1 | SELECT | 1 | - | -",
            "UPDATE items SET name = $1 WHERE id = $2 | UPDATE | 1 | - | -",
            "SELECT ? / $1 | SELECT | - | 22012 | -",
            "BEGIN | BEGIN | - | - | -",
            "INSERT INTO items VALUES ($1, $2, $3) | INSERT | 1 | - | -",
            "INSERT INTO items VALUES ($1, $2, $3) | INSERT | 1 | - | -",
            "DELETE FROM items WHERE id >= $1 | DELETE | 2 | - | -",
        ]
    );
    for t in &ext {
        assert_eq!(t.session.user.as_deref(), Some("postgres"));
        assert_eq!(t.session.database.as_deref(), Some("shop"));
        assert_eq!(t.session.application.as_deref(), Some("wl-psycopg"));
        assert!(
            t.end_ns > t.start_ns || t.protocol == Protocol::Extended,
            "{}",
            summary(t)
        );
        assert!(t.req_bytes > 0 && t.resp_bytes > 0, "{}", summary(t));
    }
}

/// The same streams cut into single bytes give the same transactions.
#[test]
fn real_streams_cut_into_single_bytes_give_the_same_transactions() {
    for n in [5, 8, 9, 11] {
        let chunks = follow(&format!("stream{n}"));
        let bytes: Vec<(bool, Vec<u8>)> = chunks
            .iter()
            .flat_map(|(c, d)| d.iter().map(move |b| (*c, vec![*b])))
            .collect();
        let whole = summaries(&replay(&chunks, &Limits::default()).0);
        let (out, st, _) = replay(&bytes, &Limits::default());
        assert_eq!(st.parse_errors, 0);
        assert_eq!(summaries(&out), whole, "stream {n}");
    }
}

/// The secrets of authentication are never reported: the SCRAM exchange of the real
/// connections appears in no field.
#[test]
fn authentication_is_never_recorded() {
    for n in [0, 11] {
        let chunks = follow(&format!("stream{n}"));
        for t in &replay(&chunks, &Limits::default()).0 {
            let mut m = MapFields::new();
            analyzer::Transaction::write_fields(t, &mut m);
            let text = serde_json::to_string(&m.finish(&"t".into()).fields).unwrap();
            assert!(
                !text.contains("n,,n=") && !text.contains("c=biws") && !text.contains("sekret"),
                "{text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages built from the protocol's definition (PostgreSQL docs, "Message Formats").

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstrs(parts: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p);
        b.push(0);
    }
    b
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend(cstrs(&[
        b"user",
        user.as_bytes(),
        b"database",
        db.as_bytes(),
        b"",
    ]));
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend(body);
    m
}

fn ssl_request() -> Vec<u8> {
    [8u32.to_be_bytes(), 80_877_103u32.to_be_bytes()].concat()
}

fn query(q: &str) -> Vec<u8> {
    msg(b'Q', &cstrs(&[q.as_bytes()]))
}
fn parse(name: &str, q: &str) -> Vec<u8> {
    let mut b = cstrs(&[name.as_bytes(), q.as_bytes()]);
    b.extend_from_slice(&[0, 0]);
    msg(b'P', &b)
}
fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal.as_bytes(), stmt.as_bytes()]);
    // No parameter formats, one parameter "42", no result formats.
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, b'4', b'2', 0, 0]);
    msg(b'B', &b)
}
fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstrs(&[portal.as_bytes()]));
    msg(b'D', &b)
}
fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal.as_bytes()]);
    b.extend_from_slice(&[0, 0, 0, 0]);
    msg(b'E', &b)
}
fn sync() -> Vec<u8> {
    msg(b'S', b"")
}
fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstrs(&[tag.as_bytes()]))
}
fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}
fn error(code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        b.push(k);
        b.extend(cstrs(&[v.as_bytes()]));
    }
    b.push(0);
    msg(b'E', &b)
}
fn data_row() -> Vec<u8> {
    msg(b'D', &[0, 1, 0, 0, 0, 1, b'7'])
}
fn auth_ok() -> Vec<u8> {
    msg(b'R', &[0, 0, 0, 0])
}

fn run(steps: &[(bool, Vec<u8>)]) -> (Finished, ConnStats) {
    let (out, st, _) = replay(steps, &Limits::default());
    (out, st)
}

#[test]
fn ssl_refused_goes_on_in_clear_and_ssl_accepted_stops_decoding() {
    let (out, st) = run(&[
        (true, ssl_request()),
        (false, b"N".to_vec()),
        (true, startup("app", "orders")),
        (false, [auth_ok(), ready()].concat()),
        (true, query("SELECT 1")),
        (
            false,
            [
                msg(b'T', &[0, 0]),
                data_row(),
                complete("SELECT 1"),
                ready(),
            ]
            .concat(),
        ),
    ]);
    assert_eq!(summaries(&out), ["SELECT ? | SELECT | 1 | - | -"]);
    assert_eq!(out[0].session.database.as_deref(), Some("orders"));
    assert_eq!(st.encrypted, 0);
    let (out, st) = run(&[
        (true, ssl_request()),
        (false, b"S".to_vec()),
        (true, vec![0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5]),
        (false, vec![0x16, 3, 3, 0, 2, 9, 9]),
    ]);
    assert!(out.is_empty());
    assert_eq!((st.encrypted, st.parse_errors), (1, 0));
}

/// A pipeline of three Parse/Bind/Describe/Execute/Sync groups whose second Parse fails: the
/// server skips to Sync, so the failure answers the second Execute.
#[test]
fn extended_pipeline_with_a_failed_parse() {
    let group = |q: &str| {
        [
            parse("", q),
            bind("", ""),
            describe_portal(""),
            execute(""),
            sync(),
        ]
        .concat()
    };
    let (out, _) = run(&[
        (true, startup("u", "d")),
        (false, [auth_ok(), ready()].concat()),
        (
            true,
            [
                group("SELECT a FROM t WHERE id = $1"),
                group("SELEC oops"),
                group("DELETE FROM t WHERE id = $1"),
            ]
            .concat(),
        ),
        (
            false,
            [
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'T', &[0, 0]),
                data_row(),
                complete("SELECT 1"),
                ready(),
                error("42601", "syntax error at or near \"SELEC\""),
                ready(),
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'n', b""),
                complete("DELETE 4"),
                ready(),
            ]
            .concat(),
        ),
    ]);
    assert_eq!(
        summaries(&out),
        [
            "SELECT a FROM t WHERE id = $1 | SELECT | 1 | - | -",
            "SELEC oops | SELEC | - | 42601 | -",
            "DELETE FROM t WHERE id = $1 | DELETE | 4 | - | -",
        ]
    );
    assert!(out.iter().all(|t| t.protocol == Protocol::Extended));
    assert_eq!(out[1].outcome(), "failure");
}

/// A named statement prepared once and executed through two portals; an error in the middle
/// of a simple Query ends it (the statements after it do not run).
#[test]
fn named_statements_portals_and_a_query_that_fails_halfway() {
    let (out, _) = run(&[
        (
            true,
            [parse("s1", "UPDATE t SET n = n + 1 WHERE id = $1"), sync()].concat(),
        ),
        (false, [msg(b'1', b""), ready()].concat()),
        (
            true,
            [
                bind("p1", "s1"),
                bind("p2", "s1"),
                execute("p2"),
                execute("p1"),
                sync(),
            ]
            .concat(),
        ),
        (
            false,
            [
                msg(b'2', b""),
                msg(b'2', b""),
                complete("UPDATE 1"),
                complete("UPDATE 0"),
                ready(),
            ]
            .concat(),
        ),
        (
            true,
            query("INSERT INTO t VALUES (1); SELECT 1/0; DELETE FROM t"),
        ),
        (
            false,
            [
                complete("INSERT 0 1"),
                error("22012", "division by zero"),
                ready(),
            ]
            .concat(),
        ),
    ]);
    assert_eq!(
        summaries(&out),
        [
            "UPDATE t SET n = n + ? WHERE id = $1 | UPDATE | 1 | - | -",
            "UPDATE t SET n = n + ? WHERE id = $1 | UPDATE | 0 | - | -",
            "INSERT INTO t VALUES (?) | INSERT | 1 | - | -",
            "SELECT ?/? | SELECT | - | 22012 | -",
        ]
    );
}

#[test]
fn a_refused_login_is_a_failed_startup_and_its_password_is_not_kept() {
    let (out, _) = run(&[
        (true, startup("mallory", "bank")),
        (false, msg(b'R', &[0, 0, 0, 3])),
        (true, msg(b'p', b"hunter2\0")),
        (
            false,
            error(
                "28P01",
                "password authentication failed for user \"mallory\"",
            ),
        ),
    ]);
    assert_eq!(summaries(&out), ["- | STARTUP | - | 28P01 | -"]);
    assert_eq!(out[0].protocol, Protocol::Startup);
    assert_eq!(out[0].session.user.as_deref(), Some("mallory"));
    let mut m = MapFields::new();
    analyzer::Transaction::write_fields(&out[0], &mut m);
    assert!(!serde_json::to_string(&m.finish(&"t".into()).fields)
        .unwrap()
        .contains("hunter2"));
}

/// Literals kept when configured; a statement past the cap is cut and tagged; a Query
/// message past the buffer is read up to it and still answered.
#[test]
fn literals_kept_on_request_and_long_statements_cut() {
    let l = Limits {
        keep_literals: true,
        ..Limits::default()
    };
    let steps = [
        (true, query("SELECT 'x', 42")),
        (false, [complete("SELECT 1"), ready()].concat()),
    ];
    let (out, _, _) = replay(&steps, &l);
    assert_eq!(summaries(&out), ["SELECT 'x', 42 | SELECT | 1 | - | -"]);
    let long = format!("SELECT {} FROM t", "col, ".repeat(20_000));
    let l = Limits {
        max_message_bytes: 4096,
        max_statement_bytes: 100,
        ..Limits::default()
    };
    let steps = [
        (true, query(&long)),
        (false, [complete("SELECT 3"), ready()].concat()),
    ];
    let (out, st, _) = replay(&steps, &l);
    assert_eq!(st.parse_errors, 0);
    assert_eq!(out.len(), 1);
    assert!(out[0].statement_truncated);
    assert_eq!(out[0].statement.as_deref().unwrap().len(), 100);
    assert_eq!(out[0].rows(), Some(3));
}

/// A capture that sees only the server (or starts mid-connection) still reports each
/// answer; a client gap loses the requests after it, a server gap the answers.
#[test]
fn one_sided_streams_and_gaps() {
    let (out, _) = run(&[(
        false,
        [
            data_row(),
            complete("SELECT 1"),
            ready(),
            error("40P01", "deadlock detected"),
            ready(),
        ]
        .concat(),
    )]);
    assert_eq!(
        summaries(&out),
        [
            "- | SELECT | 1 | - | request_missing",
            "- | - | - | 40P01 | request_missing"
        ]
    );
    assert_eq!(out[1].outcome(), "failure");

    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    let l = Limits::default();
    c.client_data(&query("SELECT 1"), 1, &l, &mut st, &mut out);
    c.client_gap(100, &mut st);
    c.client_data(&query("SELECT 2"), 2, &l, &mut st, &mut out);
    c.server_data(
        &[complete("SELECT 1"), ready(), complete("SELECT 1"), ready()].concat(),
        3,
        &l,
        &mut st,
        &mut out,
    );
    assert_eq!(st.gaps, 1);
    assert_eq!(
        summaries(&out),
        [
            "SELECT ? | SELECT | 1 | - | -",
            "- | SELECT | 1 | - | request_missing"
        ]
    );
    assert!(out[1].gap);

    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    c.client_data(&query("SELECT 1"), 1, &l, &mut st, &mut out);
    c.server_gap(10, &mut st, &mut out);
    c.client_data(&query("SELECT 2"), 2, &l, &mut st, &mut out);
    assert_eq!(
        summaries(&out),
        [
            "SELECT ? | SELECT | - | - | response_missing",
            "SELECT ? | SELECT | - | - | response_missing"
        ]
    );
    assert!(out.iter().all(|t| t.gap && t.outcome() == "unknown"));
}

#[test]
fn unanswered_statements_expire_and_garbage_is_counted() {
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    let l = Limits::default();
    c.client_data(&query("SELECT pg_sleep(100)"), 1_000, &l, &mut st, &mut out);
    assert!(!c.expires(1_000) && c.expires(1_001));
    c.expire(1_001, &mut out);
    assert_eq!(
        summaries(&out),
        ["SELECT pg_sleep(?) | SELECT | - | - | response_missing"]
    );
    assert_eq!(c.pending(), 0);
    c.server_data(b"HTTP/1.1 200 OK\r\n\r\n", 2_000, &l, &mut st, &mut out);
    assert_eq!(st.parse_errors, 1);
}

#[test]
fn a_long_pipeline_is_bounded() {
    let l = Limits {
        max_pending: 10,
        ..Limits::default()
    };
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    for i in 0..25 {
        c.client_data(&query("SELECT 1"), i, &l, &mut st, &mut out);
        assert!(c.pending() <= 10);
    }
    assert_eq!((out.len(), st.overflowed), (15, 15));
}

/// The event as the driver writes it: the common part, then `db.*` and `pgsql.*`.
#[test]
fn the_event_has_otel_db_fields() {
    use crate::wire::decode::Addr;
    let out = stream(6);
    let conn = analyzer::Conn::new(
        "pgsql",
        analyzer::Transport::Tcp,
        (Addr::v4([10, 0, 0, 1]), 40000),
        (Addr::v4([10, 0, 0, 2]), 5432),
    );
    let mut m = MapFields::new();
    analyzer::Transaction::write(&out[0], &conn, &mut m);
    let j = serde_json::to_value(&m.finish(&"t".into()).fields).unwrap();
    assert_eq!(j["db"]["system"], "postgresql");
    assert_eq!(j["db"]["name"], "shop");
    assert_eq!(j["db"]["user"], "postgres");
    assert_eq!(j["db"]["statement"], "SELECT * FROM no_such_table");
    assert_eq!(j["db"]["operation"], "SELECT");
    assert_eq!(j["pgsql"]["error"]["code"], "42P01");
    assert_eq!(j["pgsql"]["error"]["severity"], "ERROR");
    assert_eq!(j["pgsql"]["application_name"], "wl-psql");
    assert_eq!(j["event"]["outcome"], "failure");
    assert_eq!(j["event"]["dataset"], "pgsql");
    assert_eq!(j["network"]["protocol"], "pgsql");
    assert_eq!(j["destination"]["port"], 5432);
    let r = analyzer::Transaction::record(&out[0]);
    assert_eq!((r.operation, r.status), ("SELECT", "42"));
    assert_eq!(
        j["network"]["bytes"],
        (r.request_bytes + r.response_bytes) as i64
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// `TRAWL_FUZZ_CASES` cases (default 256), as tests/wire/fuzz.rs: the long run is
    /// `TRAWL_FUZZ_CASES=100000 cargo test --release --lib wire::pgsql::tests::fuzz`.
    fn cases() -> u32 {
        std::env::var("TRAWL_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    }

    /// The real streams' bytes, for mutation.
    fn corpus() -> Vec<Vec<(bool, Vec<u8>)>> {
        (0..12).map(|n| follow(&format!("stream{n}"))).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]
        /// Real streams with bytes flipped, cut anywhere, with gaps, and random bytes: no
        /// panic, buffers and queues within their caps, nothing left open after close.
        #[test]
        fn mutated_and_random_streams_never_panic_and_stay_bounded(
            which in 0usize..12,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cuts in prop::collection::vec(1usize..64, 1..8),
            gap_at in prop::option::of(any::<prop::sample::Index>()),
            random in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)), 0..6),
        ) {
            let l = Limits { max_message_bytes: 256, max_pending: 16, max_prepared: 4, ..Limits::default() };
            let mut chunks = corpus().swap_remove(which);
            let total: usize = chunks.iter().map(|c| c.1.len()).sum();
            for (at, b) in flips {
                let mut i = at.index(total);
                for c in chunks.iter_mut() {
                    if i < c.1.len() { c.1[i] = b; break; }
                    i -= c.1.len();
                }
            }
            chunks.extend(random);
            let gap = gap_at.map(|g| g.index(chunks.len().max(1)));
            let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
            for (i, (client, data)) in chunks.iter().enumerate() {
                let mut rest = &data[..];
                let mut k = 0;
                while !rest.is_empty() {
                    let n = cuts[k % cuts.len()].min(rest.len());
                    k += 1;
                    if *client {
                        c.client_data(&rest[..n], i as i64, &l, &mut st, &mut out);
                    } else {
                        c.server_data(&rest[..n], i as i64, &l, &mut st, &mut out);
                    }
                    rest = &rest[n..];
                    prop_assert!(c.buffered() <= 2 * (l.max_message_bytes + 5));
                    prop_assert!(c.pending() <= l.max_pending);
                }
                if gap == Some(i) {
                    if *client { c.client_gap(7, &mut st) } else { c.server_gap(7, &mut st, &mut out) }
                }
            }
            c.close(1 << 40, &mut out);
            prop_assert_eq!(c.pending(), 0);
            for t in &out {
                prop_assert!(t.statement.as_ref().is_none_or(|s| s.len() <= l.max_statement_bytes));
            }
        }

        /// Redaction and splitting of arbitrary text: no panic, and no digit survives outside
        /// identifiers, parameters, quoted names and comments of text without those.
        #[test]
        fn sql_of_any_text_never_panics(s in "\\PC{0,80}") {
            let r = sql::redact(sql::Dialect::Postgres, &s);
            let _ = sql::split(sql::Dialect::Postgres, &s);
            let _ = sql::first_keyword(sql::Dialect::Postgres, &r);
        }
    }
}

/// A pipeline longer than `max_pending` (10 here): answers are matched by their order within
/// a group (the requests up to a Sync), so the oldest group is given up whole, reported without
/// answers, and its answers are skipped up to its ReadyForQuery. Every answer reported meets
/// its own request: `DELETE FROM t<i>` is answered `DELETE <i>`, never another's.
#[test]
fn a_pipeline_past_max_pending_gives_up_whole_groups_and_never_mispairs() {
    let l = Limits {
        max_pending: 10,
        ..Limits::default()
    };
    let exchange = |groups: &[&[usize]]| {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        for group in groups {
            for i in group.iter() {
                client.extend(parse("", &format!("DELETE FROM t{i}")));
                client.extend(bind("", ""));
                client.extend(execute(""));
                server.extend(msg(b'1', b""));
                server.extend(msg(b'2', b""));
                server.extend(complete(&format!("DELETE {i}")));
            }
            client.extend(sync());
            server.extend(ready());
        }
        let (out, st, c) = replay(
            &[
                (true, startup("u", "d")),
                (false, [auth_ok(), ready()].concat()),
                (true, client),
                (false, server),
            ],
            &l,
        );
        assert_eq!(c.pending(), 0);
        (summaries(&out), st.overflowed)
    };
    let answered = |i: usize| format!("DELETE FROM t{i} | DELETE | {i} | - | -");
    let given_up = |i: usize| format!("DELETE FROM t{i} | DELETE | - | - | response_missing");

    // One group of 19 requests, then one of 4: the first is given up as it is sent.
    let (s, overflowed) = exchange(&[&[1, 2, 3, 4, 5, 6], &[7]]);
    let mut want: Vec<String> = (1..=6).map(given_up).collect();
    want.push(answered(7));
    assert_eq!((s, overflowed), (want, 19));

    // Groups of 4 requests each: the oldest whole groups are given up, the rest answered.
    let groups: Vec<Vec<usize>> = (1..=6).map(|i| vec![i]).collect();
    let refs: Vec<&[usize]> = groups.iter().map(|g| &g[..]).collect();
    let (s, overflowed) = exchange(&refs);
    assert_eq!(s.len(), 6, "{s:#?}");
    let n = s
        .iter()
        .take_while(|t| t.ends_with("response_missing"))
        .count();
    assert!(n > 0 && n < 6, "{s:#?}");
    let want: Vec<String> = (1..=6)
        .map(|i| if i <= n { given_up(i) } else { answered(i) })
        .collect();
    assert_eq!(s, want);
    assert_eq!(overflowed, 4 * n as u64);
}

/// A group of requests reported unanswered at `transaction_timeout` while the next group waits
/// behind it: its late answer is reported apart (`request_missing`), and the next group meets
/// its own answers.
#[test]
fn late_answers_to_an_expired_group_are_not_given_to_the_next() {
    let l = Limits::default();
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    c.client_data(&startup("u", "d"), 0, &l, &mut st, &mut out);
    c.server_data(&[auth_ok(), ready()].concat(), 1, &l, &mut st, &mut out);
    let group = |q: &str| [parse("", q), bind("", ""), execute(""), sync()].concat();
    c.client_data(&group("DELETE FROM slow"), 1_000, &l, &mut st, &mut out);
    c.client_data(&group("DELETE FROM next"), 5_000, &l, &mut st, &mut out);
    c.expire(2_000, &mut out);
    assert!(!c.expires(2_000), "the second group is not due yet");
    let answer = |tag: &str| [msg(b'1', b""), msg(b'2', b""), complete(tag), ready()].concat();
    c.server_data(&answer("DELETE 1"), 9_000, &l, &mut st, &mut out);
    c.server_data(&answer("DELETE 2"), 9_001, &l, &mut st, &mut out);
    c.close(10_000, &mut out);
    assert_eq!(
        summaries(&out),
        [
            "DELETE FROM slow | DELETE | - | - | response_missing",
            "- | DELETE | 1 | - | request_missing",
            "DELETE FROM next | DELETE | 2 | - | -",
        ]
    );
}
