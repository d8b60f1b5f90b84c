//! Writes a document as compact JSON text straight into a byte buffer, the same bytes serde_json
//! writes: the stdout, file and dead-letter outputs write one object per line, and serde's
//! generic serializer over a chain of writers cost more per event than building the event did.

use super::value::{write_timestamp, Map, Value};

/// Appends `map` as one JSON object.
pub fn write_map(out: &mut Vec<u8>, map: &Map) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k.as_str());
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends one value. Non-finite floats are written as `null`, as `Value`'s `Serialize` does.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // serde_json's own float text (its exponents differ from ryu's: `1e+20`); floats are
        // rare in events, and writing into a `Vec` cannot fail.
        Value::Float(f) if f.is_finite() => {
            if serde_json::to_writer(&mut *out, f).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::String(s) => write_str(out, s),
        Value::Timestamp(t) => {
            let mut buf = [0u8; 27];
            write_timestamp(t, &mut buf);
            out.push(b'"');
            out.extend_from_slice(&buf);
            out.push(b'"');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, v);
            }
            out.push(b']');
        }
        Value::Object(m) => write_map(out, m),
    }
}

/// What a byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, otherwise the letter
/// after the backslash. The same choices as serde_json (short forms for \b \t \n \f \r).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit set for the bytes of `w` that are a control byte, `"` or `\` (and possibly for
/// bytes after one of those, which only a byte-wise look tells): log lines have none,
/// so strings are checked a word at a time and copied whole.
fn escape_bits(w: u64) -> u64 {
    // A byte below 0x20, or equal to `"` or `\` (zero once XOR-ed with it), borrows in its
    // subtraction; `"` and `\` are ASCII, so one mask of `!w` serves all three tests.
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (w.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
        & !w
        & HIGHS
}

/// True when `bytes` holds a byte JSON escapes. Every word is looked at, flags OR-ed, one test
/// at the end; the last bytes are the last word again (overlapping), or, in a string shorter
/// than a word, padded with spaces. A byte at a time, the test was a third of the stdout
/// output's instructions.
fn needs_escape(bytes: &[u8]) -> bool {
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    let mut flags = 0u64;
    if bytes.len() < 8 {
        let mut w = [b' '; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        return escape_bits(u64::from_le_bytes(w)) != 0;
    }
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        flags |= escape_bits(word(c));
    }
    if !chunks.remainder().is_empty() {
        flags |= escape_bits(word(&bytes[bytes.len() - 8..]));
    }
    flags != 0
}

/// Appends `s` as a quoted JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    write_escaped(out, bytes);
}

/// `write_str` for text with something to escape.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if escape_bits(u64::from_le_bytes(w)) == 0 {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape = ESCAPE[usize::from(b)];
        if escape != 0 {
            out.extend_from_slice(&bytes[copied..i]);
            out.push(b'\\');
            out.push(escape);
            if escape == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            copied = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn written(m: &Map) -> String {
        let mut out = Vec::new();
        write_map(&mut out, m);
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// Every byte that JSON (RFC 8259 §7) requires escaped, at every position of a word, with
    /// text around it, multi-byte UTF-8 and DEL (which stays as it is).
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_at_any_position() {
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '€', '😀'])
            .collect();
        for special in specials {
            for (before, after) in (0..17).flat_map(|b| [(b, 0), (b, 1), (b, 9)]) {
                let s = format!("{}{special}{}", "a".repeat(before), "b".repeat(after));
                let mut m = Map::new();
                m.insert("message", Value::String(s.clone()));
                let ours = written(&m);
                assert_eq!(
                    ours,
                    serde_json::to_string(&m).expect("serde_json"),
                    "{s:?}"
                );
                let back: serde_json::Value = serde_json::from_str(&ours).expect("valid JSON");
                assert_eq!(back["message"], serde_json::Value::String(s));
            }
        }
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T11:18:01.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let doc = serde_json::json!({
            "a": [1, -2, 9_223_372_036_854_775_807i64, 2.5, 1e20, 1.0e-7, 0.1, "x", null, true, false],
            "b": {"c": "d", "e": {}, "f": []},
            "k\"ey\n": "v\u{1}",
        });
        let Value::Object(mut m) = Value::from_json(doc) else {
            panic!("an object")
        };
        m.insert("@timestamp", Value::Timestamp(t));
        m.insert("nan", Value::Float(f64::NAN));
        m.insert("inf", Value::Float(f64::INFINITY));
        m.insert("neg", Value::Float(-0.0));
        let ours = written(&m);
        assert_eq!(ours, serde_json::to_string(&m).expect("serde_json"));
        assert!(ours.contains(r#""@timestamp":"2026-11-23T11:18:01.123456Z""#));
        assert!(ours.contains(r#""nan":null,"inf":null"#));
    }
}
