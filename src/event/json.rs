//! Writes a document as compact JSON text straight into a byte buffer, the same bytes serde_json
//! writes: the stdout, file and dead-letter outputs write one object per line, and serde's
//! generic serializer over a chain of writers cost more per event than building the event did.

use super::value::{write_timestamp, Key, Map, Value};
use std::cell::RefCell;
use std::sync::Arc;

/// Shared objects whose text is kept, per writing thread.
const SHARED_TEXTS: usize = 16;

thread_local! {
    /// The text of the shared objects written last (`host`, a file's `log.file`, a container's
    /// `kubernetes`), each with the object itself: holding it keeps its address from being
    /// reused by another object while its text is kept. Every event of a file carries the same
    /// few, and writing `host` field by field was about 300 of the 2,500 instructions a line of
    /// stdin → stdout took.
    static SHARED_TEXT: RefCell<SharedTexts> = const { RefCell::new(SharedTexts { texts: Vec::new(), next: 0 }) };
}

/// A shared object's entries (held) and their JSON text.
struct SharedText {
    object: Arc<[(Key, Value)]>,
    text: Vec<u8>,
}

struct SharedTexts {
    texts: Vec<SharedText>,
    /// The slot the next new text replaces, once all are taken (oldest first).
    next: usize,
}

/// Appends `map` as one JSON object.
pub fn write_map(out: &mut Vec<u8>, map: &Map) {
    match map.shared() {
        Some(shared) => write_shared(out, map, shared),
        None => write_fields(out, map),
    }
}

/// A shared object: its kept text when it has one, else written and kept.
fn write_shared(out: &mut Vec<u8>, map: &Map, shared: &Arc<[(Key, Value)]>) {
    let found = SHARED_TEXT.with(|t| {
        let Ok(t) = t.try_borrow() else {
            return false;
        };
        match t.texts.iter().find(|k| Arc::ptr_eq(&k.object, shared)) {
            Some(kept) => {
                out.extend_from_slice(&kept.text);
                true
            }
            None => false,
        }
    });
    if found {
        return;
    }
    let start = out.len();
    // Written in place first: the object may hold shared objects of its own, which use the
    // kept texts too (the cache is not borrowed meanwhile).
    write_fields(out, map);
    SHARED_TEXT.with(|t| {
        let Ok(mut t) = t.try_borrow_mut() else {
            return;
        };
        let text = &out[start..];
        if t.texts.len() < SHARED_TEXTS {
            t.texts.push(SharedText {
                object: shared.clone(),
                text: text.to_vec(),
            });
            return;
        }
        // Reuses the oldest slot and its buffer: with more shared objects than slots in turn,
        // a miss costs a copy, not an allocation.
        let slot = t.next;
        t.next = (slot + 1) % SHARED_TEXTS;
        let kept = &mut t.texts[slot];
        kept.object = shared.clone();
        kept.text.clear();
        kept.text.extend_from_slice(text);
    });
}

fn write_fields(out: &mut Vec<u8>, map: &Map) {
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
            // Quotes and text as one fixed-size copy: every event has a timestamp.
            let mut quoted = [b'"'; 29];
            if let Ok(text) = <&mut [u8; 27]>::try_from(&mut quoted[1..28]) {
                write_timestamp(t, text);
            }
            out.extend_from_slice(&quoted);
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
/// bytes after one of those, which only a byte-wise look tells): a string with something to
/// escape skips the words with nothing in them.
fn escape_bits(w: u64) -> u64 {
    // A byte below 0x20, or equal to `"` or `\` (zero once XOR-ed with it), borrows in its
    // subtraction; `"` and `\` are ASCII, so one mask of `!w` serves all three tests.
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (w.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
        & !w
        & HIGHS
}

/// Bytes looked at together by `needs_escape`: one SSE2 register, which every x86-64 has.
const BLOCK: usize = 16;

/// True when a block holds a control byte, `"` or `\\`. Written without an early exit so that
/// the compiler turns it into a few vector compares and one mask test per block.
#[inline(always)]
fn block_needs_escape(block: &[u8; BLOCK]) -> bool {
    let mut any = 0u8;
    for &b in block {
        any |= u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    }
    any != 0
}

/// True when `bytes` holds a byte JSON escapes. A block of 16 bytes at a time, the last block
/// overlapping the one before it, a string shorter than a block padded with spaces. Log lines
/// have nothing to escape, so the whole string is usually looked at: 64-bit words with bit
/// tricks took about 270 instructions for a 115-byte line, blocks take about 160.
fn needs_escape(bytes: &[u8]) -> bool {
    if bytes.len() < BLOCK {
        return short_needs_escape(bytes);
    }
    let mut blocks = bytes.chunks_exact(BLOCK);
    for block in &mut blocks {
        if let Ok(block) = block.try_into() {
            // An early exit here (rather than one OR over all blocks) keeps the compiler from
            // vectorising across blocks, which it does badly, with byte gathers.
            if block_needs_escape(block) {
                return true;
            }
        }
    }
    if blocks.remainder().is_empty() {
        return false;
    }
    bytes[bytes.len() - BLOCK..]
        .try_into()
        .is_ok_and(block_needs_escape)
}

/// `needs_escape` for fewer bytes than a block (keys, mostly): two overlapping words (or half
/// words, padded with spaces), not a copy into a padded block, which was a `memcpy` call per key.
fn short_needs_escape(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n >= 8 {
        let word = |c: &[u8]| c.try_into().map_or(0, u64::from_le_bytes);
        return escape_bits(word(&bytes[..8])) | escape_bits(word(&bytes[n - 8..])) != 0;
    }
    if n >= 4 {
        let spaces = (ONES * u64::from(b' ')) << 32;
        let half = |c: &[u8]| u64::from(c.try_into().map_or(0, u32::from_le_bytes)) | spaces;
        return escape_bits(half(&bytes[..4])) | escape_bits(half(&bytes[n - 4..])) != 0;
    }
    bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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

    /// Every byte that JSON (RFC 8259 §7) requires escaped, at every position of a block (and of the blocks after it), with
    /// text around it, multi-byte UTF-8 and DEL (which stays as it is).
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_at_any_position() {
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '€', '😀'])
            .collect();
        for special in specials {
            for (before, after) in (0..49).flat_map(|b| [(b, 0), (b, 1), (b, 9), (b, 17)]) {
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

    /// Shared objects (`host`, `log.file`) are written from their kept text: the same bytes as
    /// serde_json's, also for one inside another, for more objects than texts are kept, and for
    /// an object made after another was dropped (which may get its address).
    #[test]
    fn shared_objects_are_written_as_serde_json_writes_them() {
        let object = |path: String| {
            let mut file = Map::new();
            file.insert("path", Value::String(path));
            file.into_shared()
        };
        let event = |file: &Map, offset: i64| {
            let mut log = Map::new();
            log.insert("file", Value::Object(file.clone()));
            log.insert("offset", Value::Int(offset));
            let mut outer = Map::new();
            outer.insert("nested", Value::Object(log.clone().into_shared()));
            let mut m = Map::new();
            m.insert("message", Value::from("a line"));
            m.insert("log", Value::Object(log));
            m.insert("outer", Value::Object(outer.into_shared()));
            m
        };
        let files: Vec<Map> = (0..2 * SHARED_TEXTS)
            .map(|i| object(format!("/var/log/\"{i}\".log")))
            .collect();
        for round in 0..3i64 {
            for (i, file) in files.iter().enumerate() {
                let m = event(file, round * 100 + i as i64);
                assert_eq!(written(&m), serde_json::to_string(&m).expect("serde_json"));
            }
        }
        for i in 0..100 {
            let file = object(format!("/var/log/new-{i}.log"));
            let m = event(&file, i);
            assert_eq!(written(&m), serde_json::to_string(&m).expect("serde_json"));
            drop(m);
            drop(file);
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
