//! Pairing commands with replies as a Redis server sends them: pipelines, transactions,
//! pub/sub in RESP2 and RESP3, MONITOR, CLIENT REPLY, gaps, timeouts and one-sided streams.

use super::*;
use crate::wire::analyzer::Outcome;

/// A command as a client library encodes it.
fn cmd(words: &[&str]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        b.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    b
}

/// (command, key, reply type, error code) of a reported transaction.
type Summary = (String, Option<String>, Option<&'static str>, Option<String>);

struct Run {
    conn: Conn,
    st: ConnStats,
    out: Finished,
    ts: i64,
}

impl Run {
    fn new() -> Run {
        Run::with(Options::default())
    }
    fn with(opts: Options) -> Run {
        Run {
            conn: Conn::new(opts, true),
            st: ConnStats::default(),
            out: Vec::new(),
            ts: 1_000,
        }
    }
    fn client(&mut self, b: &[u8]) -> &mut Self {
        self.ts += 1_000;
        self.conn
            .client_data(b, self.ts, &mut self.st, &mut self.out);
        self
    }
    fn server(&mut self, b: &[u8]) -> &mut Self {
        self.ts += 1_000;
        self.conn
            .server_data(b, self.ts, &mut self.st, &mut self.out);
        self
    }
    fn summary(&self) -> Vec<Summary> {
        self.out
            .iter()
            .map(|t| {
                let c = t.command.clone().unwrap_or_default();
                let r = t.reply.as_ref();
                (
                    c.name,
                    c.key,
                    r.map(|r| r.kind.as_str()),
                    r.and_then(|r| r.error.as_ref().map(|e| e.0.clone())),
                )
            })
            .collect()
    }
    fn names(&self) -> Vec<String> {
        self.summary().into_iter().map(|s| s.0).collect()
    }
}

#[test]
fn command_reply_and_error() {
    let mut r = Run::new();
    r.client(&cmd(&["set", "user:1", "secret-value"]))
        .server(b"+OK\r\n")
        .client(&cmd(&["LPUSH", "user:1", "x"]))
        .server(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    assert_eq!(
        r.summary(),
        vec![
            (
                "SET".into(),
                Some("user:1".into()),
                Some("simple_string"),
                None
            ),
            (
                "LPUSH".into(),
                Some("user:1".into()),
                Some("error"),
                Some("WRONGTYPE".into())
            ),
        ]
    );
    let t = &r.out[1];
    assert_eq!(t.outcome(), Outcome::Failure);
    assert_eq!(
        t.reply.as_ref().and_then(|r| r.error.clone()),
        Some((
            "WRONGTYPE".into(),
            "Operation against a key holding the wrong kind of value".into()
        ))
    );
    assert_eq!(r.out[0].outcome(), Outcome::Success);
    assert_eq!(
        r.out[0].req_bytes,
        cmd(&["set", "user:1", "secret-value"]).len() as u64
    );
    assert_eq!(r.out[0].resp_bytes, 5);
    assert!(r.out[0].resp_end_ns > r.out[0].req_start_ns);
    let text = format!("{:?}", r.out);
    assert!(!text.contains("secret-value"), "values are never reported");
}

#[test]
fn pipeline_of_n_commands_then_n_replies() {
    let mut r = Run::new();
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend(cmd(&["INCR", &format!("counter:{i}")]));
    }
    r.client(&batch);
    assert!(r.out.is_empty());
    let replies: Vec<u8> = (1..=50)
        .flat_map(|i| format!(":{i}\r\n").into_bytes())
        .collect();
    // The replies arrive cut anywhere.
    for piece in replies.chunks(7) {
        r.server(piece);
    }
    assert_eq!(r.out.len(), 50);
    for (i, t) in r.out.iter().enumerate() {
        let c = t.command.as_ref().expect("command");
        assert_eq!(c.key.as_deref(), Some(format!("counter:{i}").as_str()));
        assert_eq!(t.reply.as_ref().map(|r| r.kind), Some(Kind::Integer));
    }
}

#[test]
fn multi_exec() {
    let mut r = Run::new();
    r.client(&cmd(&["MULTI"]))
        .client(&cmd(&["SET", "a", "1"]))
        .client(&cmd(&["INCR", "a"]))
        .client(&cmd(&["EXEC"]))
        .server(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n");
    assert_eq!(r.names(), ["MULTI", "SET", "INCR", "EXEC"]);
    let statuses: Vec<_> = r
        .out
        .iter()
        .map(|t| t.reply.as_ref().and_then(|r| r.status.clone()))
        .collect();
    assert_eq!(statuses[1].as_deref(), Some("QUEUED"));
    assert_eq!(
        r.out[3].reply.as_ref().map(|r| (r.kind, r.len)),
        Some((Kind::Array, 2))
    );
}

#[test]
fn subcommands_and_keys() {
    let cases: [(&[&str], &str, Option<&str>); 9] = [
        (&["client", "setname", "app"], "CLIENT SETNAME", None),
        (&["CONFIG", "GET", "maxmemory"], "CONFIG GET", None),
        (&["object", "encoding", "k"], "OBJECT ENCODING", Some("k")),
        (&["EVAL", "return 1", "1", "k1", "v"], "EVAL", Some("k1")),
        (&["EVAL", "return 1", "0"], "EVAL", None),
        (
            &["XREAD", "COUNT", "2", "STREAMS", "s1", "0"],
            "XREAD",
            Some("s1"),
        ),
        (&["AUTH", "user", "pass"], "AUTH", None),
        (&["PUBLISH", "chan", "msg"], "PUBLISH", None),
        (&["FOO.BAR", "x"], "FOO.BAR", None),
    ];
    for (words, name, key) in cases {
        let (c, _) = command::describe(
            &words
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect::<Vec<_>>(),
            words.len() as i64,
            false,
        );
        assert_eq!(
            (c.name.as_str(), c.key.as_deref()),
            (name, key),
            "{words:?}"
        );
        assert_eq!(c.args, None);
    }
    let items: Vec<Vec<u8>> = ["AUTH", "u", "p"]
        .iter()
        .map(|w| w.as_bytes().to_vec())
        .collect();
    assert_eq!(
        command::describe(&items, 3, true).0.args,
        None,
        "credentials never copied"
    );
    let items: Vec<Vec<u8>> = ["SET", "k", "v"]
        .iter()
        .map(|w| w.as_bytes().to_vec())
        .collect();
    assert_eq!(
        command::describe(&items, 3, true).0.args,
        Some(vec!["k".into(), "v".into()])
    );
}

#[test]
fn resp2_pubsub_messages_are_not_replies() {
    let mut r = Run::new();
    r.client(&cmd(&["SUBSCRIBE", "news", "sport"]))
        .server(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n")
        .server(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n")
        .server(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
        .client(&cmd(&["PING"]))
        .server(b"*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$2\r\nhi\r\n")
        .server(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        .client(&cmd(&["UNSUBSCRIBE"]))
        .server(b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n")
        .server(b"*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n")
        .client(&cmd(&["GET", "k"]))
        .server(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    assert_eq!(r.names(), ["SUBSCRIBE", "PING", "UNSUBSCRIBE", "GET"]);
    assert_eq!(r.st.pushes, 2);
    assert!(r.out.iter().all(|t| t.missing.is_none()));
    // Not subscribed any more: an array shaped like a message is a reply again.
    assert_eq!(r.out[3].reply.as_ref().map(|r| r.kind), Some(Kind::Array));
}

#[test]
fn resp3_pushes_interleave_with_replies() {
    let mut r = Run::new();
    r.client(&cmd(&["HELLO", "3"]))
        .server(b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n")
        .client(&cmd(&["SUBSCRIBE", "ch"]))
        .server(b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
        .client(&cmd(&["GET", "k"]))
        // A published message arrives before GET's reply: it is not GET's reply.
        .server(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n_\r\n");
    assert_eq!(
        r.summary(),
        vec![
            ("HELLO".into(), None, Some("map"), None),
            ("SUBSCRIBE".into(), None, Some("push"), None),
            ("GET".into(), Some("k".into()), Some("null"), None),
        ]
    );
    assert_eq!(r.st.pushes, 1);
}

#[test]
fn monitor_lines_and_reply_off() {
    let mut r = Run::new();
    r.client(&cmd(&["MONITOR"]))
        .server(b"+OK\r\n+1700000000.1 [0 127.0.0.1:5] \"get\" \"k\"\r\n");
    assert_eq!(r.names(), ["MONITOR"]);
    assert_eq!(r.st.pushes, 1);

    let mut r = Run::new();
    r.client(&cmd(&["CLIENT", "REPLY", "SKIP"]))
        .client(&cmd(&["SET", "a", "1"]))
        .client(&cmd(&["GET", "a"]))
        .server(b"$1\r\n1\r\n");
    let missing: Vec<_> = r.out.iter().map(|t| t.missing).collect();
    assert_eq!(r.names(), ["CLIENT REPLY", "SET", "GET"]);
    assert_eq!(
        missing,
        [Some(Missing::NoReply), Some(Missing::NoReply), None]
    );
}

#[test]
fn timeouts_keep_later_replies_in_step() {
    let mut r = Run::new();
    r.client(&cmd(&["BLPOP", "q", "0"]));
    let t0 = r.ts;
    r.client(&cmd(&["GET", "x"]));
    r.conn.expire(t0 + 1, &mut r.out);
    assert_eq!(r.names(), ["BLPOP"]);
    assert_eq!(r.out[0].missing, Some(Missing::Response));
    // BLPOP's reply comes late: skipped, and GET still gets its own.
    r.server(b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n$-1\r\n");
    assert_eq!(r.names(), ["BLPOP", "GET"]);
    assert_eq!(r.out[1].reply.as_ref().map(|r| r.kind), Some(Kind::Null));
    assert_eq!(r.st.late_replies, 1);
}

#[test]
fn too_many_pending_are_reported_not_held() {
    let mut r = Run::with(Options {
        max_pending: 4,
        ..Options::default()
    });
    for i in 0..10 {
        r.client(&cmd(&["GET", &i.to_string()]));
    }
    assert_eq!(r.out.len(), 6);
    assert!(r.buffered() < 4096);
    r.server(&b"+x\r\n".repeat(10));
    assert_eq!(r.out.len(), 10);
    let keys: Vec<_> = r.out[6..]
        .iter()
        .map(|t| t.command.as_ref().and_then(|c| c.key.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            Some("6".into()),
            Some("7".into()),
            Some("8".into()),
            Some("9".into())
        ]
    );
}

impl Run {
    fn buffered(&self) -> usize {
        self.conn.buffered()
    }
}

#[test]
fn gaps() {
    // Inside a value: nothing lost but bytes.
    let mut r = Run::new();
    r.client(&cmd(&["GET", "big"]))
        .server(b"$100\r\n0123456789");
    r.conn.server_gap(80, &mut r.st, &mut r.out);
    r.server(b"0123456789\r\n");
    assert_eq!(r.out.len(), 1);
    assert!(r.out[0].gap && r.out[0].missing.is_none());
    assert_eq!(r.out[0].resp_bytes, 108);
    // Between messages: the connection is given up, what was waiting reported.
    let mut r = Run::new();
    r.client(&cmd(&["GET", "a"])).client(&cmd(&["GET", "b"]));
    r.conn.client_gap(30, &mut r.st, &mut r.out);
    assert!(r.conn.given_up());
    assert_eq!(r.st.abandoned, 1);
    assert_eq!(r.out.len(), 2);
    assert!(r
        .out
        .iter()
        .all(|t| t.gap && t.missing == Some(Missing::Response)));
    r.server(b"+x\r\n+y\r\n");
    assert_eq!(r.out.len(), 2, "nothing more is paired");
}

#[test]
fn malformed_server_bytes_give_the_connection_up() {
    let mut r = Run::new();
    r.client(&cmd(&["GET", "a"]))
        .server(b"HTTP/1.1 400 Bad Request\r\n");
    assert_eq!(r.st.parse_errors, 1);
    assert_eq!(r.out.len(), 1);
    assert!(r.out[0].malformed);
}

#[test]
fn one_sided_and_mid_stream_captures() {
    // Only the server's side: each reply reported without its command.
    let mut r = Run::new();
    r.server(b"+OK\r\n:1\r\n");
    let missing: Vec<_> = r.out.iter().map(|t| t.missing).collect();
    assert_eq!(missing, [Some(Missing::Request), Some(Missing::Request)]);
    // Only the client's side: commands reported at close.
    let mut r = Run::new();
    r.client(&cmd(&["GET", "a"])).client(b"PING\r\n");
    r.conn.close(&mut r.out);
    assert_eq!(r.names(), ["GET", "PING"]);
    assert!(r.out[1].inline);
    // Picked up mid-stream: the tail of a value and a reply to an unseen command are skipped.
    let mut r = Run {
        conn: Conn::new(Options::default(), false),
        ..Run::new()
    };
    r.client(b"lue\r\n")
        .server(b"+OK\r\n")
        .client(&cmd(&["GET", "a"]))
        .server(b"$1\r\nv\r\n");
    assert_eq!(
        r.summary(),
        [("GET".into(), Some("a".into()), Some("bulk_string"), None)]
    );
}

#[test]
fn a_reply_cut_by_the_end_of_the_connection() {
    let mut r = Run::new();
    r.client(&cmd(&["GET", "a"])).server(b"$10\r\nabc");
    r.conn.close(&mut r.out);
    assert_eq!(r.out[0].missing, Some(Missing::ResponseIncomplete));
}
