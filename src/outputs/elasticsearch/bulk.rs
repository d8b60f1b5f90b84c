//! Building `_bulk` requests: each event becomes an action line (`index` or `create`, with its
//! index rendered from the event and a deterministic `_id`) and a document line. A request keeps
//! its items apart so that only the failed ones are sent again, in a later request.

use super::{IdFrom, OpType};
use crate::event::{BatchAck, Event, Origin, Value};
use crate::outputs::template::Template;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// One event ready to send: its two NDJSON lines, and what else its dead letter would need.
/// The event itself is not kept: its document line says the same in a third of the memory, and
/// requests waiting for a slow cluster hold many items.
pub struct Item {
    pub lines: Vec<u8>,
    /// Where the document line starts in `lines`.
    pub doc: usize,
    pub input: Arc<str>,
    pub origin: Option<Origin>,
    /// This event's copy of its batch's handle: the batch is settled when all its events are.
    pub ack: BatchAck,
    /// Times Elasticsearch answered this item 5xx, and 429.
    pub failures: u32,
    pub throttled: u32,
    /// When it was first answered 429 or 5xx: it is being retried.
    pub first_refused: Option<Instant>,
    /// Not to be sent again before this (its own back-off).
    pub ready_at: Instant,
}

impl Item {
    /// A new item for an event encoded into `lines`.
    pub fn new(lines: Vec<u8>, doc: usize, event: &Event, ack: BatchAck) -> Item {
        Item {
            lines,
            doc,
            input: event.meta.input.clone(),
            origin: event.meta.origin.clone(),
            ack,
            failures: 0,
            throttled: 0,
            first_refused: None,
            ready_at: Instant::now(),
        }
    }

    /// The event again, from its document line, for the dead letters.
    pub fn event(&self) -> Event {
        let doc = &self.lines[self.doc.min(self.lines.len())..];
        let mut e = Event::new(self.input.clone(), chrono::Utc::now());
        e.meta.origin = self.origin.clone();
        let parsed = serde_json::from_slice::<serde_json::Value>(doc).map(Value::from_json);
        if let Ok(Value::Object(fields)) = parsed {
            e.fields = fields;
            let ts = e.get("@timestamp").and_then(|t| t.as_str()).and_then(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            });
            if let Some(ts) = ts {
                e.insert("@timestamp", ts);
            }
        } else {
            // Cannot happen for lines this output wrote; keep the text rather than nothing.
            e.insert(
                "message",
                String::from_utf8_lossy(doc).trim_end().to_owned(),
            );
        }
        e
    }
}

/// Items for one `_bulk` request (new events and retried ones alike).
#[derive(Default)]
pub struct BulkRequest {
    pub items: Vec<Item>,
    /// Uncompressed size of all items.
    pub bytes: usize,
}

impl BulkRequest {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, item: Item) {
        self.bytes += item.lines.len();
        self.items.push(item);
    }
}

/// Turns events into bulk items.
pub struct Encoder {
    pub index: Template,
    pub op_type: OpType,
    pub id_from: IdFrom,
    pub id_fields: Vec<String>,
    index_buf: String,
}

#[derive(serde::Serialize)]
struct Meta<'a> {
    _index: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    _id: Option<&'a str>,
}

impl Encoder {
    pub fn new(
        index: Template,
        op_type: OpType,
        id_from: IdFrom,
        id_fields: Vec<String>,
    ) -> Encoder {
        Encoder {
            index,
            op_type,
            id_from,
            id_fields,
            index_buf: String::new(),
        }
    }

    /// The action and document lines for `event` (returns where the document line starts), or
    /// why it cannot be sent.
    pub fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<usize, String> {
        self.index
            .render_into(event, &mut self.index_buf)
            .map_err(|e| format!("index `{}`: {e}", self.index.source()))?;
        let id = self.document_id(event);
        let action = match self.op_type {
            OpType::Index => "index",
            OpType::Create => "create",
        };
        let meta = Meta {
            _index: &self.index_buf,
            _id: id.as_deref(),
        };
        out.clear();
        let _ = write!(out, "{{\"{action}\":");
        serde_json::to_writer(&mut *out, &meta).map_err(|e| e.to_string())?;
        out.extend_from_slice(b"}\n");
        let doc = out.len();
        serde_json::to_writer(&mut *out, &event.fields).map_err(|e| e.to_string())?;
        out.push(b'\n');
        Ok(doc)
    }

    /// A stable id, so that an event sent again after a crash overwrites its first copy.
    pub fn document_id(&self, event: &Event) -> Option<String> {
        match self.id_from {
            IdFrom::None => None,
            IdFrom::Origin => event
                .meta
                .origin
                .as_ref()
                .map(|o| format!("{:016x}{:016x}", o.stream, o.offset)),
            IdFrom::Fields => {
                let mut h = Fnv128::new();
                for f in &self.id_fields {
                    match event.get(f) {
                        Some(v) => {
                            let _ = serde_json::to_writer(&mut h, v);
                        }
                        None => h.write_bytes(b"null"),
                    }
                    // A separator no JSON text contains keeps ["ab","c"] apart from ["a","bc"].
                    h.write_bytes(&[0xff]);
                }
                Some(format!("{:032x}", h.0))
            }
        }
    }
}

/// FNV-1a, 128 bits: stable across builds and versions (unlike std's hasher), and wide enough
/// that ids of distinct events do not collide in practice.
struct Fnv128(u128);

impl Fnv128 {
    fn new() -> Fnv128 {
        Fnv128(0x6c62272e07bb014262b821756295c58d)
    }
    fn write_bytes(&mut self, b: &[u8]) {
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        for &x in b {
            self.0 ^= x as u128;
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }
}

impl Write for Fnv128 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_bytes(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request body for `items`, gzip-compressed when asked.
pub fn body<'a>(items: impl Iterator<Item = &'a Item>, gzip: bool) -> std::io::Result<Vec<u8>> {
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(64 * 1024),
            flate2::Compression::fast(),
        );
        for i in items {
            enc.write_all(&i.lines)?;
        }
        enc.finish()
    } else {
        let mut out = Vec::with_capacity(64 * 1024);
        for i in items {
            out.extend_from_slice(&i.lines);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use chrono::{TimeZone, Utc};

    fn event() -> Event {
        let mut e = Event::from_message(
            "t".into(),
            Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
            "hi \"x\"".into(),
        );
        e.insert("kubernetes.namespace", "prod");
        e
    }

    #[test]
    fn action_and_document_lines() {
        let mut enc = Encoder::new(
            Template::parse("logs-%{[kubernetes.namespace]}-%Y.%m.%d").unwrap(),
            OpType::Create,
            IdFrom::Origin,
            vec![],
        );
        let mut e = event();
        e.meta.origin = Some(Origin {
            stream: 1,
            offset: 255,
        });
        let mut out = Vec::new();
        enc.encode(&e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"create":{"_index":"logs-prod-2026.03.04","_id":"000000000000000100000000000000ff"}}"#
        );
        let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(doc["message"], "hi \"x\"");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn an_item_gives_back_its_event_for_the_dead_letters() {
        let mut enc = Encoder::new(
            Template::parse("i").unwrap(),
            OpType::Index,
            IdFrom::Origin,
            vec![],
        );
        let mut e = event();
        e.insert("n", 3i64);
        e.meta.origin = Some(Origin {
            stream: 9,
            offset: 10,
        });
        let mut lines = Vec::new();
        let doc = enc.encode(&e, &mut lines).unwrap();
        let item = Item::new(lines, doc, &e, BatchAck::none());
        let back = item.event();
        let json =
            |e: &Event| serde_json::from_str::<serde_json::Value>(&e.to_json_string()).unwrap();
        assert_eq!(json(&back), json(&e), "same fields (key order aside)");
        assert!(matches!(back.get("@timestamp"), Some(Value::Timestamp(_))));
        assert_eq!(back.timestamp(), e.timestamp());
        assert_eq!(back.meta.origin, e.meta.origin);
        assert_eq!(&*back.meta.input, "t");
    }

    #[test]
    fn ids_from_fields_are_stable_and_distinct() {
        let enc = Encoder::new(
            Template::parse("i").unwrap(),
            OpType::Index,
            IdFrom::Fields,
            vec!["message".into(), "kubernetes.namespace".into()],
        );
        let a = enc.document_id(&event()).unwrap();
        assert_eq!(a, enc.document_id(&event()).unwrap());
        let mut other = event();
        other.insert("kubernetes.namespace", "dev");
        assert_ne!(a, enc.document_id(&other).unwrap());
        assert_eq!(a.len(), 32);
        let none = Encoder::new(
            Template::parse("i").unwrap(),
            OpType::Index,
            IdFrom::Origin,
            vec![],
        );
        assert_eq!(
            none.document_id(&event()),
            None,
            "no origin: Elasticsearch picks the id"
        );
    }

    #[test]
    fn missing_index_field_is_an_error() {
        let mut enc = Encoder::new(
            Template::parse("logs-%{[nope]}").unwrap(),
            OpType::Index,
            IdFrom::None,
            vec![],
        );
        let err = enc.encode(&event(), &mut Vec::new()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
