//! The decoder on packets built from the protocol's definition (the real server's traffic is
//! in tests/wire/mysql_real_server.rs): handshake, text and binary result sets, prepared
//! statements, multi-results, errors, split packets, gaps and one-sided captures.

use super::conn::{Conn, ConnStats, Finished, Limits};
use super::packet::{self, Framer};
use super::transaction::{Command, Missing, Transaction};
use crate::wire::analyzer::{Outcome, Transaction as _};
use crate::wire::out::MapFields;

/// A packet: 3-byte length, sequence id, payload.
fn pkt(seq: u8, body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(body);
    v
}

fn lenenc_str(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s);
    v
}

const CAPS: u32 = packet::CLIENT_PROTOCOL_41
    | packet::CLIENT_SECURE_CONNECTION
    | packet::CLIENT_PLUGIN_AUTH
    | packet::CLIENT_CONNECT_WITH_DB
    | packet::CLIENT_CONNECT_ATTRS;

fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let mut b = vec![10];
    b.extend_from_slice(version.as_bytes());
    b.push(0);
    b.extend_from_slice(&42u32.to_le_bytes());
    b.extend_from_slice(b"abcdefgh\0");
    b.extend_from_slice(&(caps as u16).to_le_bytes());
    b.push(33);
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    b.push(21);
    b.extend_from_slice(&[0; 10]);
    b.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    pkt(0, &b)
}

fn login(user: &str, db: &str, caps: u32) -> Vec<u8> {
    let mut b = caps.to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 24).to_le_bytes());
    b.push(33);
    b.extend_from_slice(&[0; 23]);
    b.extend_from_slice(user.as_bytes());
    b.push(0);
    b.push(20);
    b.extend_from_slice(b"SECRET-AUTH-RESPONSE");
    b.extend_from_slice(db.as_bytes());
    b.push(0);
    b.extend_from_slice(b"mysql_native_password\0");
    let mut attrs = lenenc_str(b"_client_name");
    attrs.extend(lenenc_str(b"libmariadb"));
    attrs.extend(lenenc_str(b"program_name"));
    attrs.extend(lenenc_str(b"shop-api"));
    b.push(attrs.len() as u8);
    b.extend(attrs);
    pkt(1, &b)
}

fn ok(seq: u8, affected: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0, affected, 0];
    b.extend_from_slice(&status.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    pkt(seq, &b)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0xfe, 0, 0];
    b.extend_from_slice(&status.to_le_bytes());
    pkt(seq, &b)
}

fn err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut b = vec![0xff];
    b.extend_from_slice(&code.to_le_bytes());
    b.push(b'#');
    b.extend_from_slice(state.as_bytes());
    b.extend_from_slice(msg.as_bytes());
    pkt(seq, &b)
}

fn column(seq: u8, name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for s in [
        b"def" as &[u8],
        b"shop",
        b"items",
        b"items",
        name.as_bytes(),
        name.as_bytes(),
    ] {
        b.extend(lenenc_str(s));
    }
    b.extend_from_slice(&[0x0c, 33, 0, 50, 0, 0, 0, 253, 0, 0, 0, 0, 0]);
    pkt(seq, &b)
}

fn command(cmd: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![cmd];
    b.extend_from_slice(body);
    pkt(0, &b)
}

/// A text result set of `rows` one-column rows, answering at sequence 1; classic EOFs.
fn result_set(rows: usize, more: bool) -> Vec<u8> {
    let mut v = pkt(1, &[1]);
    v.extend(column(2, "name"));
    v.extend(eof(3, 2));
    let mut seq = 4;
    for i in 0..rows {
        v.extend(pkt(seq, &lenenc_str(format!("row{i}").as_bytes())));
        seq += 1;
    }
    let status = if more {
        2 | packet::SERVER_MORE_RESULTS_EXISTS
    } else {
        2
    };
    v.extend(eof(seq, status));
    v
}

/// Replays (client?, bytes) chunks 1 ms apart, then closes.
fn replay(chunks: &[(bool, Vec<u8>)]) -> (Finished, ConnStats, Conn) {
    replay_with(chunks, &Limits::default())
}

fn replay_with(chunks: &[(bool, Vec<u8>)], l: &Limits) -> (Finished, ConnStats, Conn) {
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

fn handshake() -> Vec<(bool, Vec<u8>)> {
    vec![
        (false, greeting("5.5.5-10.11.19-MariaDB-0+deb12u1", CAPS)),
        (true, login("shop", "shop", CAPS)),
        (false, ok(2, 0, 2)),
    ]
}

/// `command | statement | operation | rows | affected | error | reason`.
fn summary(t: &Transaction) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {}",
        t.command.as_str(),
        t.statement.as_deref().unwrap_or("-"),
        t.operation.as_deref().unwrap_or("-"),
        if t.result_set {
            t.rows.to_string()
        } else {
            "-".into()
        },
        t.affected_rows.map_or("-".into(), |n| n.to_string()),
        t.error.as_ref().map_or("-".into(), |e| e.code.to_string()),
        t.missing.map_or("-", Missing::as_str),
    )
}

fn fields(t: &Transaction) -> crate::event::Event {
    let mut f = MapFields::new();
    crate::wire::analyzer::Transaction::write_fields(t, &mut f);
    f.finish(&std::sync::Arc::from("t"))
}

#[test]
fn a_session_of_queries_reports_each_command_with_rows_and_errors() {
    let mut chunks = handshake();
    chunks.extend([
        (
            true,
            command(3, b"INSERT INTO items (name) VALUES ('apple'), (\"pear\")"),
        ),
        (false, ok(1, 2, 2)),
        (true, command(3, b"SELECT name FROM items WHERE id > 1")),
        (false, result_set(3, false)),
        (true, command(3, b"SELECT nosuch FROM items")),
        (
            false,
            err(1, 1054, "42S22", "Unknown column 'nosuch' in 'SELECT'"),
        ),
        (true, command(0x0e, b"")),
        (false, ok(1, 0, 2)),
        (true, command(0x02, b"other")),
        (false, ok(1, 0, 2)),
        (true, command(3, b"SELECT 1")),
        (false, result_set(1, false)),
        (true, command(1, b"")),
    ]);
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | INSERT INTO items (name) VALUES (?), (?) | INSERT | - | 2 | - | -",
            "query | SELECT name FROM items WHERE id > ? | SELECT | 3 | - | - | -",
            "query | SELECT nosuch FROM items | SELECT | - | - | 1054 | -",
            "ping | - | PING | - | 0 | - | -",
            "init_db | - | INIT DB | - | 0 | - | -",
            "query | SELECT ? | SELECT | 1 | - | - | -",
        ]
    );
    let e = fields(&out[0]);
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(String::from);
    assert_eq!(s("db.system").as_deref(), Some("mariadb"));
    assert_eq!(s("db.user").as_deref(), Some("shop"));
    assert_eq!(s("db.name").as_deref(), Some("shop"));
    assert_eq!(
        s("mysql.server_version").as_deref(),
        Some("10.11.19-MariaDB-0+deb12u1")
    );
    assert_eq!(s("mysql.client.program_name").as_deref(), Some("shop-api"));
    assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
    let err = fields(&out[2]);
    assert_eq!(
        err.get("mysql.error.sql_state")
            .and_then(|v| v.as_str())
            .map(String::from)
            .as_deref(),
        Some("42S22")
    );
    assert_eq!(out[2].outcome(), Outcome::Failure);
    assert_eq!(out[2].record().status, "42");
    assert_eq!(out[1].record().status, "00");
    // COM_INIT_DB moved the session: the next query is in `other`.
    assert_eq!(
        fields(&out[5])
            .get("db.name")
            .and_then(|v| v.as_str())
            .map(String::from)
            .as_deref(),
        Some("other")
    );
    // Request and response bytes are the packets' (headers included).
    assert_eq!(out[1].req_bytes, 4 + 1 + 35);
    assert_eq!(out[1].resp_bytes, result_set(3, false).len() as u64);
}

#[test]
fn multi_statement_queries_are_one_transaction_with_every_result() {
    let mut chunks = handshake();
    let mut answer = result_set(2, true);
    answer.extend(ok(7, 5, 2 | packet::SERVER_MORE_RESULTS_EXISTS));
    // The third result starts at sequence 8: re-number a result set.
    let mut third = pkt(8, &[1]);
    third.extend(column(9, "x"));
    third.extend(eof(10, 2));
    third.extend(pkt(11, &lenenc_str(b"done")));
    third.extend(eof(12, 2));
    answer.extend(third);
    chunks.extend([
        (
            true,
            command(3, b"SELECT a FROM t; UPDATE t SET a = 'x'; SELECT 'done'"),
        ),
        (false, answer),
        (
            true,
            command(3, b"SELECT 1; SELECT * FROM nosuch; SELECT 2"),
        ),
        (false, {
            let mut v = result_set(1, true);
            v.extend(err(6, 1146, "42S02", "Table 'shop.nosuch' doesn't exist"));
            v
        }),
    ]);
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | SELECT a FROM t; UPDATE t SET a = ?; SELECT ? | SELECT | 3 | 5 | - | -",
            "query | SELECT ?; SELECT * FROM nosuch; SELECT ? | SELECT | 1 | - | 1146 | -",
        ]
    );
    assert_eq!(out[0].results, 3);
}

#[test]
fn prepared_statements_are_executed_with_the_text_of_their_prepare() {
    let mut chunks = handshake();
    let prepare_ok = |id: u32, cols: u16, params: u16| {
        let mut b = vec![0];
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&cols.to_le_bytes());
        b.extend_from_slice(&params.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0]);
        pkt(1, &b)
    };
    let exec = |id: u32| {
        let mut b = id.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 7, 0, 0, 0]);
        command(0x17, &b)
    };
    // Two parameters, one column, classic EOFs after each block.
    let mut answer = prepare_ok(7, 1, 2);
    answer.extend(column(2, "?"));
    answer.extend(column(3, "?"));
    answer.extend(eof(4, 2));
    answer.extend(column(5, "name"));
    answer.extend(eof(6, 2));
    // The binary result: column count, definition, EOF, two rows starting with 0x00, EOF.
    let mut rows = pkt(1, &[1]);
    rows.extend(column(2, "name"));
    rows.extend(eof(3, 2));
    rows.extend(pkt(4, &[0, 0, 3, b'f', b'i', b'g']));
    rows.extend(pkt(5, &[0, 0, 4, b'k', b'i', b'w', b'i']));
    rows.extend(eof(6, 2));
    chunks.extend([
        (
            true,
            command(0x16, b"SELECT name FROM items WHERE id = ? AND kind = 'x'"),
        ),
        (false, answer),
        (true, exec(7)),
        (false, rows),
        (true, command(0x1a, &7u32.to_le_bytes())),
        (false, ok(1, 0, 2)),
        (true, exec(7)),
        (
            false,
            err(1, 1062, "23000", "Duplicate entry '1' for key 'PRIMARY'"),
        ),
        (true, command(0x19, &7u32.to_le_bytes())),
        (true, exec(7)),
        (false, ok(1, 0, 2)),
        (true, command(0x16, b"SELECT nosuch FROM t")),
        (false, err(1, 1054, "42S22", "Unknown column")),
    ]);
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    let text = "SELECT name FROM items WHERE id = ? AND kind = ?";
    assert_eq!(
        got,
        vec![
            format!("stmt_prepare | {text} | PREPARE | - | - | - | -"),
            format!("stmt_execute | {text} | SELECT | 2 | - | - | -"),
            format!("stmt_reset | {text} | RESET STATEMENT | - | 0 | - | -"),
            format!("stmt_execute | {text} | SELECT | - | - | 1062 | -"),
            // Closed: executed without a known text.
            "stmt_execute | - | - | - | 0 | - | -".to_owned(),
            "stmt_prepare | SELECT nosuch FROM t | PREPARE | - | - | 1054 | -".to_owned(),
        ]
    );
    assert_eq!(out[0].prepared, Some((2, 1)));
    assert_eq!(out[1].statement_id, Some(7));
}

#[test]
fn deprecate_eof_result_sets_end_with_an_ok_packet() {
    let caps = CAPS | packet::CLIENT_DEPRECATE_EOF;
    let mut answer = pkt(1, &[2]);
    answer.extend(column(2, "a"));
    answer.extend(column(3, "b"));
    answer.extend(pkt(4, &[1, b'x', 1, b'y']));
    // OK in place of EOF: 0xfe, affected 0, insert id 0, status, warnings.
    answer.extend(pkt(5, &[0xfe, 0, 0, 2, 0, 0, 0]));
    let mut empty = pkt(1, &[1]);
    empty.extend(column(2, "a"));
    empty.extend(pkt(3, &[0xfe, 0, 0, 2, 0, 0, 0]));
    let chunks = vec![
        (false, greeting("8.0.36", caps)),
        (true, login("app", "", caps)),
        (false, ok(2, 0, 2)),
        (true, command(3, b"SELECT a, b FROM t")),
        (false, answer),
        (true, command(3, b"SELECT a FROM t WHERE 0")),
        (false, empty),
    ];
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | SELECT a, b FROM t | SELECT | 1 | - | - | -",
            "query | SELECT a FROM t WHERE ? | SELECT | 0 | - | - | -",
        ]
    );
    assert_eq!(out[0].session.system, "mysql");
    assert_eq!(out[0].session.database, None);
}

#[test]
fn a_refused_login_is_a_failed_connect_and_tls_stops_decoding() {
    let chunks = vec![
        (false, greeting("10.11.19-MariaDB", CAPS)),
        (true, login("shop", "shop", CAPS)),
        // Auth switch, the client's answer (never read), then the refusal.
        (
            false,
            pkt(2, b"\xfemysql_native_password\0abcdefghijklmnopqrst\0"),
        ),
        (true, pkt(3, b"SECRET-SCRAMBLE-20B!")),
        (
            false,
            err(
                4,
                1045,
                "28000",
                "Access denied for user 'shop'@'localhost'",
            ),
        ),
    ];
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].command, Command::Connect);
    assert_eq!(out[0].error.as_ref().map(|e| e.code), Some(1045));
    assert_eq!(out[0].record().operation, "CONNECT");
    assert!(!format!("{:?}", fields(&out[0])).contains("SECRET"));

    // SSLRequest: 32 bytes with CLIENT_SSL, then TLS records.
    let caps = CAPS | packet::CLIENT_SSL;
    let mut ssl = caps.to_le_bytes().to_vec();
    ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl.push(33);
    ssl.extend_from_slice(&[0; 23]);
    let chunks = vec![
        (false, greeting("8.0.36", caps)),
        (true, pkt(1, &ssl)),
        (true, b"\x16\x03\x01\x00\x05hello".to_vec()),
        (false, b"\x16\x03\x03\x00\x05hello".to_vec()),
    ];
    let (out, st, _) = replay(&chunks);
    assert_eq!((out.len(), st.encrypted, st.parse_errors), (0, 1, 0));
}

#[test]
fn packets_of_16_mib_and_more_are_joined_and_bounded() {
    // A 16 MiB - 1 piece, then the rest of the statement in a second piece.
    let mut statement = b"INSERT INTO blobs VALUES ('".to_vec();
    statement.resize(0xff_ffff - 1, b'a');
    statement.extend_from_slice(b"aaaa')");
    let mut body = vec![3u8];
    body.extend_from_slice(&statement);
    let mut wire = Vec::new();
    wire.extend_from_slice(&[0xff, 0xff, 0xff, 0]);
    wire.extend_from_slice(&body[..0xff_ffff]);
    let rest = &body[0xff_ffff..];
    wire.extend((rest.len() as u32).to_le_bytes()[..3].iter());
    wire.push(1);
    wire.extend_from_slice(rest);
    let mut f = Framer::default();
    let mut seen = Vec::new();
    for chunk in wire.chunks(65_000) {
        f.feed(chunk, 1024, &mut |p| {
            seen.push((p.seq, p.body.len(), p.len))
        });
        assert!(f.buffered() <= 1024 + 4);
    }
    assert_eq!(seen, vec![(0, 1024, body.len() as u64)]);

    let mut chunks = handshake();
    chunks.push((true, wire));
    chunks.push((false, ok(2, 1, 2)));
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    assert_eq!(out.len(), 1);
    let t = &out[0];
    assert!(t.statement_truncated);
    assert_eq!(t.statement.as_deref(), Some("INSERT INTO blobs VALUES (?"));
    assert_eq!(t.affected_rows, Some(1));
    assert_eq!(t.req_bytes, body.len() as u64 + 8);
}

#[test]
fn gaps_mid_connection_starts_and_one_sided_captures() {
    // Started mid-connection: no greeting; a command, then its answer.
    let chunks = vec![
        (true, command(3, b"SELECT 1")),
        (false, result_set(1, false)),
        // The server's answer to a command not captured.
        (false, ok(1, 4, 2)),
    ];
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | SELECT ? | SELECT | 1 | - | - | -",
            "unknown | - | - | - | 4 | - | request_missing",
        ]
    );

    // A gap in the server's answer: the query is reported without it; the next command and
    // answer (starting at a packet boundary) are back in step.
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    let l = Limits::default();
    for (client, d) in handshake() {
        if client {
            c.client_data(&d, 1, &l, &mut st, &mut out);
        } else {
            c.server_data(&d, 1, &l, &mut st, &mut out);
        }
    }
    c.client_data(&command(3, b"SELECT a FROM big"), 2, &l, &mut st, &mut out);
    let rs = result_set(5, false);
    c.server_data(&rs[..30], 3, &l, &mut st, &mut out);
    c.server_gap(100, &mut st, &mut out);
    c.server_data(&rs[60..], 4, &l, &mut st, &mut out);
    c.client_data(&command(0x0e, b""), 5, &l, &mut st, &mut out);
    c.server_data(&ok(1, 0, 2), 6, &l, &mut st, &mut out);
    // A gap in the client's stream: the next command that starts a segment is read.
    c.client_gap(10, &mut st);
    c.client_data(b"garbage", 7, &l, &mut st, &mut out);
    c.client_data(&command(3, b"SELECT 2"), 8, &l, &mut st, &mut out);
    c.server_data(&result_set(1, false), 9, &l, &mut st, &mut out);
    c.close(10, &mut out);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | SELECT a FROM big | SELECT | 0 | - | - | response_missing",
            "ping | - | PING | - | 0 | - | -",
            "query | SELECT ? | SELECT | 1 | - | - | -",
        ]
    );
    assert!(out[0].gap && !out[1].gap && !out[2].gap);
    assert_eq!(st.gaps, 2);

    // Client side only: every command is reported unanswered at the end.
    let chunks = vec![(true, command(3, b"SELECT 1")), (true, command(0x0e, b""))];
    let (out, _, _) = replay(&chunks);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|t| t.missing == Some(Missing::Response)));
}

#[test]
fn local_infile_and_pipelined_commands_are_answered_in_order() {
    let mut chunks = handshake();
    chunks.extend([
        (
            true,
            command(3, b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t"),
        ),
        (false, pkt(1, b"\xfb/tmp/x.csv")),
        (true, pkt(2, b"secret,1\n")),
        (true, pkt(3, b"")),
        (false, ok(4, 1, 2)),
        // Pipelined: two commands before either answer.
        (true, {
            let mut v = command(3, b"SELECT 1");
            v.extend(command(0x0e, b""));
            v
        }),
        (false, {
            let mut v = result_set(1, false);
            v.extend(ok(1, 0, 2));
            v
        }),
    ]);
    let (out, st, _) = replay(&chunks);
    assert_eq!(st.parse_errors, 0);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | LOAD DATA LOCAL INFILE ? INTO TABLE t | LOAD | - | 1 | - | -",
            "query | SELECT ? | SELECT | 1 | - | - | -",
            "ping | - | PING | - | 0 | - | -",
        ]
    );
    assert!(out[0].local_infile);
    assert_eq!(out[0].req_bytes, (4 + 49 + 4 + 9 + 4) as u64);
}

/// Random bytes and mutated real sessions never panic, and what is buffered stays bounded.
/// `TRAWL_FUZZ_CASES=100000 cargo test --release --lib wire::mysql::tests::fuzz`.
#[test]
fn fuzz_never_panics_and_stays_bounded() {
    let cases: usize = std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut base: Vec<(bool, Vec<u8>)> = handshake();
    base.push((true, command(3, b"SELECT a FROM t; SELECT 'b'")));
    base.push((false, result_set(3, true)));
    base.push((false, result_set(1, false)));
    base.push((true, command(0x16, b"SELECT ? FROM t")));
    base.push((false, pkt(1, &[0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0])));
    base.push((true, command(0x17, &[1, 0, 0, 0, 0, 1, 0, 0, 0])));
    base.push((false, err(1, 1064, "42000", "syntax")));
    let l = Limits {
        max_message_bytes: 256,
        ..Limits::default()
    };
    for case in 0..cases {
        let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
        for (i, (client, data)) in base.iter().enumerate() {
            let mut d = data.clone();
            match next() % 4 {
                0 => {
                    for _ in 0..(next() % 4) {
                        if !d.is_empty() {
                            let at = (next() as usize) % d.len();
                            d[at] = next() as u8;
                        }
                    }
                }
                1 => d = (0..(next() % 64)).map(|_| next() as u8).collect(),
                2 => d.truncate((next() as usize) % (d.len() + 1)),
                _ => {}
            }
            let ts = i as i64;
            match (next() % 16, *client) {
                (0, true) => c.client_gap(7, &mut st),
                (0, false) => c.server_gap(7, &mut st, &mut out),
                (_, true) => c.client_data(&d, ts, &l, &mut st, &mut out),
                (_, false) => c.server_data(&d, ts, &l, &mut st, &mut out),
            }
            assert!(c.buffered() <= 2 * (256 + 4), "case {case}");
            let (waiting, kept) = c.pending();
            assert!(waiting <= l.max_pending && kept <= l.max_pending);
        }
        c.close(1 << 40, &mut out);
        for t in &out {
            let _ = fields(t);
        }
    }
}

/// A COM_STMT_PREPARE answer: statement id, columns, parameters, then the definitions with
/// classic EOFs after each block.
fn prepare_answer(id: u32, columns: u16, params: u16) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&columns.to_le_bytes());
    b.extend_from_slice(&params.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    let mut v = pkt(1, &b);
    let mut seq = 2;
    for (n, name) in [(params, "?"), (columns, "name")] {
        if n > 0 {
            for _ in 0..n {
                v.extend(column(seq, name));
                seq += 1;
            }
            v.extend(eof(seq, 2));
            seq += 1;
        }
    }
    v
}

/// A server answers commands in order, so once the queue is full and the oldest command is
/// reported unanswered, the next answer is still that command's: read by its shape (a result
/// set, a prepare's definitions, a field list) and reported alone, never given to the next.
#[test]
fn answers_to_commands_pushed_out_of_a_full_queue_are_not_given_to_the_others() {
    let mut chunks = handshake();
    let commands = [
        command(3, b"SELECT 1"),
        command(3, b"INSERT INTO t VALUES (1), (2)"),
        command(0x16, b"SELECT name FROM t WHERE id = ?"),
        command(0x04, b"t\0"),
        command(0x0e, b""),
        command(3, b"SELECT a FROM t"),
        command(3, b"DELETE FROM t WHERE id < 8"),
        command(3, b"SELECT b FROM t"),
        command(3, b"UPDATE t SET a = 9"),
        command(3, b"SELECT nosuch FROM t"),
    ];
    let mut field_list = column(1, "name");
    field_list.extend(eof(2, 2));
    let answers = [
        result_set(1, false),
        ok(1, 2, 2),
        prepare_answer(5, 1, 1),
        field_list,
        ok(1, 0, 2),
        result_set(3, false),
        ok(1, 7, 2),
        result_set(2, false),
        ok(1, 9, 2),
        err(1, 1054, "42S22", "Unknown column"),
    ];
    chunks.extend(commands.into_iter().map(|c| (true, c)));
    chunks.extend(answers.into_iter().map(|a| (false, a)));
    let mut exec = 5u32.to_le_bytes().to_vec();
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 7, 0, 0, 0]);
    chunks.push((true, command(0x17, &exec)));
    chunks.push((false, result_set(4, false)));
    let l = Limits {
        max_pending: 6,
        ..Limits::default()
    };
    let (out, st, c) = replay_with(&chunks, &l);
    assert_eq!(st.parse_errors, 0);
    assert_eq!(st.overflowed, 4);
    assert_eq!(c.pending(), (0, 0));
    let got: Vec<String> = out.iter().map(summary).collect();
    let text = "SELECT name FROM t WHERE id = ?";
    assert_eq!(
        got,
        vec![
            // The four oldest, reported unanswered as the seventh to tenth come.
            "query | SELECT ? | SELECT | - | - | - | response_missing".to_owned(),
            "query | INSERT INTO t VALUES (?), (?) | INSERT | - | - | - | response_missing".into(),
            format!("stmt_prepare | {text} | PREPARE | - | - | - | response_missing"),
            "field_list | - | FIELD LIST | - | - | - | response_missing".into(),
            // Their answers, alone and in order.
            "query | - | - | 1 | - | - | request_missing".into(),
            "query | - | - | - | 2 | - | request_missing".into(),
            "stmt_prepare | - | PREPARE | - | - | - | request_missing".into(),
            "field_list | - | FIELD LIST | - | - | - | request_missing".into(),
            // The six still waiting get their own.
            "ping | - | PING | - | 0 | - | -".into(),
            "query | SELECT a FROM t | SELECT | 3 | - | - | -".into(),
            "query | DELETE FROM t WHERE id < ? | DELETE | - | 7 | - | -".into(),
            "query | SELECT b FROM t | SELECT | 2 | - | - | -".into(),
            "query | UPDATE t SET a = ? | UPDATE | - | 9 | - | -".into(),
            "query | SELECT nosuch FROM t | SELECT | - | - | 1054 | -".into(),
            // The prepare answered alone still gave its statement an id to run by.
            format!("stmt_execute | {text} | SELECT | 4 | - | - | -"),
        ]
    );
    // An answer alone lasts from its first packet to its last.
    let alone = &out[4];
    assert!(alone.start_ns > 0 && alone.end_ns == alone.start_ns);
    // Counted in the metrics with their commands, not again.
    let late: Vec<bool> = out.iter().map(|t| t.late).collect();
    assert_eq!(
        late,
        [vec![false; 4], vec![true; 4], vec![false; 7]].concat()
    );
    assert_eq!(out[6].statement_id, Some(5));
    assert_eq!(out[6].prepared, Some((1, 1)));
}

/// A command answered after the transaction timeout was reported unanswered; its late answer
/// is reported alone and the command sent after it meets its own.
#[test]
fn a_late_answer_to_an_expired_command_is_not_given_to_the_next() {
    let l = Limits::default();
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    let ms = 1_000_000;
    for (i, (client, data)) in handshake().iter().enumerate() {
        match client {
            true => c.client_data(data, i as i64 * ms, &l, &mut st, &mut out),
            false => c.server_data(data, i as i64 * ms, &l, &mut st, &mut out),
        }
    }
    c.client_data(
        &command(3, b"SELECT sleep(900)"),
        10 * ms,
        &l,
        &mut st,
        &mut out,
    );
    assert!(c.expires(20 * ms));
    c.expire(20 * ms, &l, &mut out);
    assert!(
        !c.expires(i64::MAX),
        "a command reported waits for no deadline"
    );
    c.client_data(
        &command(3, b"DELETE FROM t"),
        30 * ms,
        &l,
        &mut st,
        &mut out,
    );
    c.server_data(&result_set(1, false), 40 * ms, &l, &mut st, &mut out);
    c.server_data(&ok(1, 5, 2), 50 * ms, &l, &mut st, &mut out);
    c.close(60 * ms, &mut out);
    let got: Vec<String> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            "query | SELECT sleep(?) | SELECT | - | - | - | response_missing",
            "query | - | - | 1 | - | - | request_missing",
            "query | DELETE FROM t | DELETE | - | 5 | - | -",
        ]
    );
    assert_eq!((out[1].start_ns, out[1].end_ns), (40 * ms, 40 * ms));
    assert_eq!((out[2].start_ns, out[2].end_ns), (30 * ms, 50 * ms));
}

/// A capture with only the client's side: every command is reported once, unanswered, and
/// what the connection holds stays bounded however many come.
#[test]
fn commands_never_answered_are_each_reported_once_and_the_queue_stays_bounded() {
    let l = Limits {
        max_pending: 4,
        ..Limits::default()
    };
    let (mut c, mut st, mut out) = (Conn::new(), ConnStats::default(), Vec::new());
    for i in 0..50i64 {
        let q = format!("SELECT c{i} FROM t");
        c.client_data(&command(3, q.as_bytes()), i, &l, &mut st, &mut out);
        let (waiting, kept) = c.pending();
        assert!(waiting <= 4 && kept <= 4, "{waiting} waiting, {kept} kept");
    }
    c.close(100, &mut out);
    let got: Vec<String> = out
        .iter()
        .filter_map(|t| t.statement.as_deref().map(String::from))
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("SELECT c{i} FROM t")).collect();
    let mut sorted = got.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted, "each command once");
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|t| t.missing == Some(Missing::Response)));
}
