//! The disk buffer's record format: a batch of events in a compact binary form that keeps
//! every value's type (timestamps stay timestamps) and the events' metadata (input, origin),
//! framed as `[length u32][crc32 u32][payload]` so that a torn write is detected on replay.

use crate::event::{Event, EventMeta, Key, Map, Origin, Value};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Bytes of the frame header before each payload.
pub const HEADER: usize = 8;

/// Most bytes of one record (frame header included): the reader takes anything longer for a
/// damaged length, so the writer never makes one.
pub const MAX_RECORD: usize = 256 << 20;

/// Deepest nesting the reader accepts (a field of the event is at depth 1); refusing deeper
/// values bounds its recursion, so the writer refuses them too.
pub const MAX_DEPTH: usize = 128;

/// Why an event cannot be written in a form the reader takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("larger than a disk buffer record may be ({MAX_RECORD} bytes)")]
    TooLarge,
}

/// Appends one event's encoding to `out`, the event bytes of a record being built; on `Err`,
/// `out` is left as it was. `TooLarge` means the record would pass `MAX_RECORD` with this
/// event: retried in an empty record, it tells whether the event alone is too large.
pub fn encode_event(e: &Event, out: &mut Vec<u8>) -> Result<(), Unwritable> {
    let start = out.len();
    let r = match put_event(e, out) {
        Ok(()) if out.len() > MAX_RECORD - HEADER - 4 => Err(Unwritable::TooLarge),
        r => r,
    };
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Appends one framed record to `out`: `count` events whose encodings (from `encode_event`)
/// are `events`. The caller keeps `HEADER + 4 + events.len()` within `MAX_RECORD`.
pub fn frame(count: u32, events: &[u8], out: &mut Vec<u8>) {
    let len = 4 + events.len();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&count.to_le_bytes());
    crc.update(events);
    out.reserve(HEADER + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(events);
}

fn put_event(e: &Event, out: &mut Vec<u8>) -> Result<(), Unwritable> {
    put_str(out, &e.meta.input)?;
    match &e.meta.origin {
        Some(o) => {
            out.push(1);
            out.extend_from_slice(&o.stream.to_le_bytes());
            out.extend_from_slice(&o.offset.to_le_bytes());
        }
        None => out.push(0),
    }
    put_map(out, &e.fields, 0)
}

/// Reads a frame header: (payload length, crc).
pub fn header(b: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    Some((len, crc))
}

pub fn checksum_ok(payload: &[u8], crc: u32) -> bool {
    crc32fast::hash(payload) == crc
}

/// Decodes a payload whose checksum was verified; `None` if it is not a valid record.
pub fn decode_payload(p: &[u8]) -> Option<Vec<Event>> {
    let mut r = Reader { b: p, pos: 0 };
    let n = r.u32()? as usize;
    let mut events = Vec::with_capacity(n.min(65536));
    let mut last_input: Option<Arc<str>> = None;
    for _ in 0..n {
        let input_str = r.str()?;
        // Events of a batch share their input: share the name too.
        let input = match &last_input {
            Some(i) if **i == *input_str => i.clone(),
            _ => {
                let i: Arc<str> = Arc::from(input_str);
                last_input = Some(i.clone());
                i
            }
        };
        let origin = match r.u8()? {
            0 => None,
            _ => Some(Origin {
                stream: r.u64()?,
                offset: r.u64()?,
            }),
        };
        let fields = r.map(0)?;
        events.push(Event {
            fields,
            meta: EventMeta { input, origin },
        });
    }
    (r.pos == p.len()).then_some(events)
}

/// A length as written: anything the reader could not take back is refused before `as u32`
/// could wrap it.
fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), Unwritable> {
    if n > MAX_RECORD {
        return Err(Unwritable::TooLarge);
    }
    out.extend_from_slice(&(n as u32).to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), Unwritable> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

// `depth` follows the reader's: a map's entries are one level below the map's own depth.
fn put_map(out: &mut Vec<u8>, m: &Map, depth: usize) -> Result<(), Unwritable> {
    put_len(out, m.len())?;
    for (k, v) in m.iter() {
        put_str(out, k)?;
        put_value(out, v, depth + 1)?;
    }
    Ok(())
}

fn put_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), Unwritable> {
    if depth > MAX_DEPTH {
        return Err(Unwritable::TooDeep);
    }
    match v {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => {
            out.push(5);
            put_str(out, s)?;
        }
        Value::Timestamp(t) => {
            out.push(6);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        Value::Array(a) => {
            out.push(7);
            put_len(out, a.len())?;
            for x in a {
                put_value(out, x, depth + 1)?;
            }
        }
        Value::Object(m) => {
            out.push(8);
            put_map(out, m, depth)?;
        }
    }
    // A huge value is refused as soon as it passes the limit, not after filling memory.
    if out.len() > MAX_RECORD {
        return Err(Unwritable::TooLarge);
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn map(&mut self, depth: usize) -> Option<Map> {
        let n = self.u32()? as usize;
        let mut m = Map::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = Key::from(self.str()?);
            let v = self.value(depth + 1)?;
            m.insert(k, v);
        }
        Some(m)
    }
    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(i64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            4 => Value::Float(f64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            5 => Value::String(self.str()?.to_owned()),
            6 => {
                let secs = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
                let nanos = self.u32()?;
                Value::Timestamp(DateTime::<Utc>::from_timestamp(secs, nanos)?)
            }
            7 => {
                let n = self.u32()? as usize;
                let mut a = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            8 => Value::Object(self.map(depth)?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_record(events: &[Event], out: &mut Vec<u8>) {
        let mut bytes = Vec::new();
        for e in events {
            encode_event(e, &mut bytes).unwrap();
        }
        frame(events.len() as u32, &bytes, out);
    }

    /// An event whose field `v` holds `levels` objects nested in each other.
    fn nested(levels: usize) -> Event {
        let mut v = Value::Int(1);
        for _ in 1..levels {
            let mut m = Map::new();
            m.insert(Key::from("a"), v);
            v = Value::Object(m);
        }
        let mut e = Event::new("app".into(), Utc::now());
        e.fields.insert(Key::from("v"), v);
        e
    }

    #[test]
    fn the_writer_refuses_exactly_what_the_reader_would_reject() {
        // At the limit: written, and read back as it was.
        let deepest = nested(MAX_DEPTH);
        let mut buf = Vec::new();
        encode_record(std::slice::from_ref(&deepest), &mut buf);
        assert_eq!(decode_payload(&buf[HEADER..]).unwrap(), vec![deepest]);
        // One level more: refused, and nothing is left half-written.
        let mut bytes = vec![9u8; 3];
        let too_deep = nested(MAX_DEPTH + 1);
        assert_eq!(
            encode_event(&too_deep, &mut bytes),
            Err(Unwritable::TooDeep)
        );
        assert_eq!(bytes, vec![9u8; 3]);
        // A record cannot grow past the limit the reader enforces.
        let mut full = vec![0u8; MAX_RECORD - HEADER - 4 - 10];
        let e = Event::from_message("app".into(), Utc::now(), "x".repeat(64));
        assert_eq!(encode_event(&e, &mut full), Err(Unwritable::TooLarge));
        assert_eq!(full.len(), MAX_RECORD - HEADER - 4 - 10);
    }

    #[test]
    fn round_trip_keeps_types_and_meta() {
        let mut e = Event::from_message("app".into(), Utc::now(), "héllo".into());
        e.insert("a.b", 1i64);
        e.insert("f", 1.5f64);
        e.insert("t", true);
        e.insert("l", Value::Array(vec![Value::Null, Value::from("x")]));
        e.meta.origin = Some(Origin {
            stream: 7,
            offset: 99,
        });
        let e2 = Event::new("other".into(), Utc::now());
        let mut buf = Vec::new();
        encode_record(&[e.clone(), e2.clone()], &mut buf);
        let (len, crc) = header(&buf).unwrap();
        assert_eq!(len, buf.len() - HEADER);
        assert!(checksum_ok(&buf[HEADER..], crc));
        let back = decode_payload(&buf[HEADER..]).unwrap();
        assert_eq!(back, vec![e, e2]);
        // A flipped bit is caught by the checksum; a cut payload does not decode.
        let mut bad = buf.clone();
        bad[HEADER + 10] ^= 1;
        assert!(!checksum_ok(&bad[HEADER..], crc));
        assert!(decode_payload(&buf[HEADER..buf.len() - 3]).is_none());
    }
}
