//! The RESP reader against the examples of the RESP2 and RESP3 specifications (redis.io
//! "Redis serialization protocol specification"), in one piece and one byte at a time.

use super::*;

fn read_all(client: bool, bytes: &[u8]) -> (Vec<Message>, Result<(), Malformed>) {
    let mut r = Reader::new(client, Limits::default());
    let mut out = Vec::new();
    let res = r.feed(bytes, 7, &mut |m| out.push(m));
    (out, res)
}

/// The same bytes fed one at a time give the same messages.
fn read_bytewise(client: bool, bytes: &[u8]) -> Vec<Message> {
    let mut r = Reader::new(client, Limits::default());
    let mut out = Vec::new();
    for b in bytes {
        r.feed(std::slice::from_ref(b), 7, &mut |m| out.push(m))
            .expect("well-formed");
    }
    out
}

fn one(client: bool, bytes: &[u8]) -> Message {
    let (msgs, res) = read_all(client, bytes);
    assert_eq!(res, Ok(()), "{:?}", String::from_utf8_lossy(bytes));
    assert_eq!(msgs.len(), 1, "{:?}", String::from_utf8_lossy(bytes));
    assert_eq!(read_bytewise(client, bytes), msgs);
    assert_eq!(msgs[0].bytes, bytes.len() as u64);
    msgs.into_iter().next().unwrap_or_else(|| unreachable!())
}

#[test]
fn resp2_replies() {
    let m = one(false, b"+OK\r\n");
    assert_eq!(
        (m.kind, m.text.as_slice()),
        (Kind::SimpleString, &b"OK"[..])
    );
    let m = one(false, b"-WRONGTYPE Operation against a key\r\n");
    assert_eq!(m.kind, Kind::Error);
    assert_eq!(m.text, b"WRONGTYPE Operation against a key");
    let m = one(false, b":-42\r\n");
    assert_eq!((m.kind, m.text.as_slice()), (Kind::Integer, &b"-42"[..]));
    let m = one(false, b"$5\r\nhello\r\n");
    assert_eq!((m.kind, m.len), (Kind::BulkString, 5));
    assert!(
        m.items.is_empty() && m.text.is_empty(),
        "values are not kept"
    );
    let m = one(false, b"$0\r\n\r\n");
    assert_eq!((m.kind, m.len), (Kind::BulkString, 0));
    assert_eq!(one(false, b"$-1\r\n").kind, Kind::Null);
    assert_eq!(one(false, b"*-1\r\n").kind, Kind::Null);
    let m = one(false, b"*0\r\n");
    assert_eq!((m.kind, m.len), (Kind::Array, 0));
    let m = one(
        false,
        b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
    );
    assert_eq!((m.kind, m.len), (Kind::Array, 2));
    let m = one(false, b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n");
    assert_eq!((m.kind, m.len), (Kind::Array, 3));
}

#[test]
fn resp3_replies() {
    assert_eq!(one(false, b"_\r\n").kind, Kind::Null);
    assert_eq!(one(false, b"#t\r\n").kind, Kind::Boolean);
    assert_eq!(one(false, b",1.23\r\n").kind, Kind::Double);
    assert_eq!(one(false, b",-inf\r\n").kind, Kind::Double);
    assert_eq!(
        one(false, b"(3492890328409238509324850943850943825024385\r\n").kind,
        Kind::BigNumber
    );
    let m = one(false, b"!21\r\nSYNTAX invalid syntax\r\n");
    assert_eq!(m.kind, Kind::BulkError);
    assert_eq!(m.items, vec![b"SYNTAX invalid syntax".to_vec()]);
    let m = one(false, b"=15\r\ntxt:Some string\r\n");
    assert_eq!((m.kind, m.len), (Kind::Verbatim, 15));
    let m = one(false, b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n");
    assert_eq!((m.kind, m.len), (Kind::Map, 2));
    let m = one(false, b"~5\r\n+orange\r\n+apple\r\n#t\r\n:100\r\n:999\r\n");
    assert_eq!((m.kind, m.len), (Kind::Set, 5));
    let m = one(false, b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n");
    assert_eq!((m.kind, m.len), (Kind::Push, 3));
    assert_eq!(m.items[..2], [b"message".to_vec(), b"ch".to_vec()]);
}

#[test]
fn attributes_are_not_the_value_they_describe() {
    // The spec's example: a reply with key-popularity attributes, then the array.
    let bytes = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n";
    let m = one(false, bytes);
    assert_eq!((m.kind, m.len), (Kind::Array, 2));
    assert_eq!(m.items, vec![b"2039123".to_vec(), b"9543892".to_vec()]);
    // Inside an aggregate, an attribute is not one of its elements.
    let m = one(false, b"*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n");
    assert_eq!((m.kind, m.items.len()), (Kind::Array, 2));
}

#[test]
fn commands_keep_their_first_words() {
    let m = one(true, b"*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$7\r\nmyvalue\r\n");
    assert_eq!((m.kind, m.len), (Kind::Array, 3));
    assert_eq!(m.items[..2], [b"SET".to_vec(), b"mykey".to_vec()]);
    let m = one(true, b"PING\r\n");
    assert_eq!(
        (m.kind, m.items.clone()),
        (Kind::Inline, vec![b"PING".to_vec()])
    );
    let m = one(true, b"set 'a b' \"c\\nd\" e\n");
    assert_eq!(
        m.items,
        vec![
            b"set".to_vec(),
            b"a b".to_vec(),
            b"c\nd".to_vec(),
            b"e".to_vec()
        ]
    );
}

#[test]
fn pipelined_messages_in_any_slicing() {
    let bytes = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\r\nECHO hi\r\n";
    let (msgs, res) = read_all(true, bytes);
    assert_eq!(res, Ok(()));
    assert_eq!(
        msgs.len(),
        3,
        "empty lines between inline commands are no command"
    );
    assert_eq!(read_bytewise(true, bytes), msgs);
    let total: u64 = msgs.iter().map(|m| m.bytes).sum();
    assert_eq!(total, bytes.len() as u64 - 2);
}

#[test]
fn kept_bytes_are_capped() {
    let limits = Limits {
        items: 2,
        item_bytes: 4,
    };
    let mut r = Reader::new(true, limits);
    let mut out = Vec::new();
    r.feed(
        b"*3\r\n$3\r\nSET\r\n$10\r\nlongkeyxyz\r\n$1\r\nv\r\n",
        0,
        &mut |m| out.push(m),
    )
    .expect("well-formed");
    assert_eq!(out[0].items, vec![b"SET".to_vec(), b"long".to_vec()]);
    assert_eq!(out[0].len, 3);
}

#[test]
fn a_huge_claimed_length_is_skipped_not_allocated() {
    let mut r = Reader::new(false, Limits::default());
    let mut out = Vec::new();
    r.feed(b"$4000000000\r\n", 0, &mut |m| out.push(m))
        .expect("a legal length");
    r.feed(&[b'x'; 4096], 0, &mut |m| out.push(m))
        .expect("payload");
    assert!(out.is_empty());
    assert!(r.held() < 4096, "held {}", r.held());
    let (_, res) = read_all(false, b"$99999999999999999\r\n");
    assert_eq!(res, Err(Malformed::BadLength));
}

#[test]
fn a_gap_inside_a_bulk_payload_keeps_step() {
    let mut r = Reader::new(false, Limits::default());
    let mut out = Vec::new();
    r.feed(b"$10\r\nabc", 1, &mut |m| out.push(m)).expect("ok");
    assert_eq!(r.gap(4), AfterGap::InStep);
    r.feed(b"xyz\r\n+OK\r\n", 2, &mut |m| out.push(m))
        .expect("ok");
    assert_eq!(out.len(), 2);
    assert!(out[0].gap && out[0].bytes == 17);
    assert!(!out[1].gap);
    // A gap where a header was: boundaries are lost.
    let mut r = Reader::new(false, Limits::default());
    r.feed(b"+OK\r\n", 1, &mut |_| {}).expect("ok");
    assert_eq!(r.gap(10), AfterGap::Lost);
    assert!(r.broken());
}

#[test]
fn malformed_streams_stop_the_reader() {
    let cases: [(&[u8], Malformed); 6] = [
        (b"hello\r\n", Malformed::BadType(b'h')),
        (b"$3\r\nabcd\r\n", Malformed::BadTerminator),
        (b"*x\r\n", Malformed::BadLength),
        (b"$-2\r\n", Malformed::BadLength),
        (b"$?\r\n", Malformed::Streamed),
        (b"_x\r\n", Malformed::BadLength),
    ];
    for (bytes, why) in cases {
        let (msgs, res) = read_all(false, bytes);
        assert_eq!(res, Err(why), "{:?}", String::from_utf8_lossy(bytes));
        assert!(msgs.is_empty());
    }
    let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
    assert_eq!(read_all(false, deep.as_bytes()).1, Err(Malformed::TooLarge));
    let long = vec![b'+'; (MAX_LINE + 2) as usize];
    assert_eq!(read_all(false, &long).1, Err(Malformed::TooLarge));
}
