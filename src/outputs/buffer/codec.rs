//! The disk buffer's record format: a batch of events in a compact binary form that keeps
//! every value's type (timestamps stay timestamps) and the events' metadata (input, origin),
//! framed as `[length u32][crc32 u32][payload]` so that a torn write is detected on replay.

use crate::event::{Event, EventMeta, Key, Map, Origin, Value};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Bytes of the frame header before each payload.
pub const HEADER: usize = 8;

/// Appends one framed record holding `events` to `out`.
pub fn encode_record(events: &[Event], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    put_u32(out, events.len() as u32);
    for e in events {
        put_str(out, &e.meta.input);
        match &e.meta.origin {
            Some(o) => {
                out.push(1);
                out.extend_from_slice(&o.stream.to_le_bytes());
                out.extend_from_slice(&o.offset.to_le_bytes());
            }
            None => out.push(0),
        }
        put_map(out, &e.fields);
    }
    let len = (out.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn put_map(out: &mut Vec<u8>, m: &Map) {
    put_u32(out, m.len() as u32);
    for (k, v) in m.iter() {
        put_str(out, k);
        put_value(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
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
            put_str(out, s);
        }
        Value::Timestamp(t) => {
            out.push(6);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            put_u32(out, t.timestamp_subsec_nanos());
        }
        Value::Array(a) => {
            out.push(7);
            put_u32(out, a.len() as u32);
            for x in a {
                put_value(out, x);
            }
        }
        Value::Object(m) => {
            out.push(8);
            put_map(out, m);
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

/// Nesting deeper than this is not something trawl writes; refusing it bounds recursion.
const MAX_DEPTH: usize = 128;

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
