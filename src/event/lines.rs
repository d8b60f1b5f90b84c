//! A batch of lines not yet made into events: their text in one buffer, each line's offsets
//! and flags, and what its file gives every line (`log.file`, `kubernetes.*`) kept once per
//! file. Events are built from it only where a processor, a condition or an output reads
//! fields; `null` never builds them, and outputs writing JSON lines write it as it is.

use super::{json, Event, EventMeta, Key, Map, Origin, Value};
use chrono::{DateTime, Utc};
use std::sync::Arc;

const TIMESTAMP: Key = Key::const_new("@timestamp");
const MESSAGE: Key = Key::const_new("message");
const LOG: Key = Key::const_new("log");
const FILE: Key = Key::const_new("file");
const OFFSET: Key = Key::const_new("offset");
const FLAGS: Key = Key::const_new("flags");
const STREAM: Key = Key::const_new("stream");
const HOST: Key = Key::const_new("host");

/// What every line read from one file (one stream of it, under one path) shares.
#[derive(Clone, Debug)]
struct LineSource {
    /// The stream's identity (`Origin::stream`), when lines can be named again after a restart
    /// (a file's; not a pipe's): its events then carry `log.offset`.
    stream: Option<u64>,
    /// `log.file`, shared by the file's events.
    log_file: Option<Value>,
    /// `kubernetes.*` and `container.id` for container logs, their objects shared.
    k8s: Option<Map>,
}

/// One line of a `LineBlock` (its text is in the block's buffer).
#[derive(Clone, Debug)]
pub struct BlockLine {
    /// Where its text ends in the block's buffer (it starts where the line before ends).
    end: usize,
    /// Offset of the line's first byte in its stream.
    pub start: u64,
    pub time: DateTime<Utc>,
    pub stream: Option<&'static str>,
    pub truncated: bool,
    pub multiline: bool,
    /// A piece of a container line whose other parts never came (`log.flags: [partial]`).
    pub partial: bool,
    /// Index of its `LineSource` in the block.
    source: u32,
}

/// Lines of one input, in order, with their sources: the events they stand for, unbuilt.
#[derive(Clone, Debug)]
pub struct LineBlock {
    input: Arc<str>,
    /// The lines' text, one after the other: one allocation for the batch rather than one per
    /// line, written on the reading thread and freed on the output's.
    text: String,
    lines: Vec<BlockLine>,
    sources: Vec<LineSource>,
    /// `host`, given to every event built that has none of its own (the router's step).
    host: Option<Value>,
}

impl LineBlock {
    /// A block with room for `lines` lines and `text` bytes of their text.
    pub fn with_capacity(input: Arc<str>, lines: usize, text: usize) -> LineBlock {
        LineBlock {
            input,
            text: String::with_capacity(text),
            lines: Vec::with_capacity(lines),
            sources: Vec::new(),
            host: None,
        }
    }

    pub fn input(&self) -> &Arc<str> {
        &self.input
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes of text the lines hold.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Appends a line read from `stream` (`log_file`, `k8s`: see `LineSource`). The source is
    /// stored once for the lines that follow each other from it (same stream, same shared
    /// `log.file`).
    pub fn push(
        &mut self,
        stream: Option<u64>,
        log_file: Option<&Value>,
        k8s: Option<&Map>,
        text: &str,
        line: BlockLine,
    ) {
        self.text.push_str(text);
        self.add(stream, log_file, k8s, line);
    }

    /// `push` for a line still in bytes: checked as UTF-8 where it lands, invalid sequences
    /// replaced by U+FFFD (true then, for the caller to count).
    pub fn push_bytes(
        &mut self,
        stream: Option<u64>,
        log_file: Option<&Value>,
        k8s: Option<&Map>,
        bytes: &[u8],
        line: BlockLine,
    ) -> bool {
        let replaced = match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => {
                self.text.push_str(text);
                false
            }
            Err(_) => {
                self.text.push_str(&String::from_utf8_lossy(bytes));
                true
            }
        };
        self.add(stream, log_file, k8s, line);
        replaced
    }

    /// Records a line whose text was just appended.
    fn add(
        &mut self,
        stream: Option<u64>,
        log_file: Option<&Value>,
        k8s: Option<&Map>,
        line: BlockLine,
    ) {
        let same = self.sources.last().is_some_and(|s| {
            s.stream == stream
                && match (&s.log_file, log_file) {
                    (Some(a), Some(b)) => same_shared(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if !same {
            self.sources.push(LineSource {
                stream,
                log_file: log_file.cloned(),
                k8s: k8s.cloned(),
            });
        }
        let mut line = line;
        line.source = (self.sources.len() - 1) as u32;
        line.end = self.text.len();
        self.lines.push(line);
    }

    /// Line `i`'s text (its event's `message`).
    pub fn message(&self, i: usize) -> Option<&str> {
        self.get(i).map(|(text, _, _)| text)
    }

    /// Line `i`: its text, the line, its source.
    fn get(&self, i: usize) -> Option<(&str, &BlockLine, &LineSource)> {
        let line = self.lines.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.lines.get(i - 1)?.end,
        };
        let text = self.text.get(start..line.end)?;
        Some((text, line, self.sources.get(line.source as usize)?))
    }

    /// Appends line `i`'s event as one JSON object, the same bytes `json::write_map` writes for
    /// the event `into_events` builds, without building it (outputs that write JSON lines).
    pub fn write_json(&self, i: usize, out: &mut Vec<u8>) {
        let Some((text, line, source)) = self.get(i) else {
            return;
        };
        if source.k8s.as_ref().is_some_and(|k| {
            k.iter()
                .any(|(k, _)| matches!(k.as_str(), "@timestamp" | "message" | "log" | "stream"))
        }) {
            // A container field named like one of the line's own replaces it in place: the
            // built event says where.
            let event = build(&self.input, source, text, line, self.host.as_ref());
            json::write_map(out, &event.fields);
            return;
        }
        out.extend_from_slice(b"{\"@timestamp\":");
        json::write_value(out, &Value::Timestamp(line.time));
        out.extend_from_slice(b",\"message\":");
        json::write_str(out, text);
        let flagged = line.truncated || line.multiline || line.partial;
        if source.log_file.is_some() || source.stream.is_some() || flagged {
            out.extend_from_slice(b",\"log\":{");
            let mut first = true;
            let mut key = |out: &mut Vec<u8>, k: &[u8]| {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(k);
            };
            if let Some(file) = &source.log_file {
                key(out, b"\"file\":");
                json::write_value(out, file);
            }
            if source.stream.is_some() {
                key(out, b"\"offset\":");
                json::write_value(out, &Value::Int(line.start as i64));
            }
            if flagged {
                key(out, b"\"flags\":[");
                let mut sep = "";
                for name in line.flag_names() {
                    out.extend_from_slice(sep.as_bytes());
                    json::write_str(out, name);
                    sep = ",";
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        if let Some(s) = line.stream {
            out.extend_from_slice(b",\"stream\":");
            json::write_str(out, s);
        }
        let mut has_host = false;
        if let Some(k8s) = &source.k8s {
            for (k, v) in k8s.iter() {
                has_host |= k.as_str() == "host";
                out.push(b',');
                json::write_str(out, k);
                out.push(b':');
                json::write_value(out, v);
            }
        }
        if let (Some(host), false) = (&self.host, has_host) {
            out.extend_from_slice(b",\"host\":");
            json::write_value(out, host);
        }
        out.push(b'}');
    }

    /// Gives `host` to the events this block will make (those without a `host` of their own).
    pub fn set_host(&mut self, host: &Value) {
        self.host = Some(host.clone());
    }

    /// The events, built: `@timestamp`, `message`, `log` (`file`, `offset` for a file's lines,
    /// `flags` when the line was joined or cut), `stream`, the container's fields, then `host`.
    pub fn into_events(self) -> Vec<Event> {
        let mut events = Vec::with_capacity(self.lines.len());
        for i in 0..self.lines.len() {
            if let Some((text, line, source)) = self.get(i) {
                events.push(build(&self.input, source, text, line, self.host.as_ref()));
            }
        }
        events
    }
}

impl BlockLine {
    pub fn new(
        start: u64,
        time: DateTime<Utc>,
        stream: Option<&'static str>,
        truncated: bool,
        multiline: bool,
    ) -> BlockLine {
        BlockLine {
            end: 0,
            start,
            time,
            stream,
            truncated,
            multiline,
            partial: false,
            source: 0,
        }
    }
}

impl BlockLine {
    /// `log.flags`, in the order they are written.
    fn flag_names(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.multiline, "multiline"),
            (self.partial, "partial"),
            (self.truncated, "truncated"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
    }
}

/// Whether two values are the same shared object (one allocation), as a file's `log.file` is
/// for all its lines until it is renamed.
fn same_shared(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => match (a.shared(), b.shared()) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        },
        _ => false,
    }
}

fn build(
    input: &Arc<str>,
    source: &LineSource,
    text: &str,
    line: &BlockLine,
    host: Option<&Value>,
) -> Event {
    let k8s_fields = source.k8s.as_ref().map_or(0, |m| m.len());
    // Exact capacity (spare slots in a million events in flight are megabytes), with the
    // `host` slot: without it, adding `host` reallocates every event.
    let mut fields = Map::with_capacity(4 + usize::from(line.stream.is_some()) + k8s_fields);
    // The keys are distinct and static: appended without a search, and without a copy.
    fields.push_new(TIMESTAMP, Value::Timestamp(line.time));
    fields.push_new(MESSAGE, Value::String(text.to_owned()));
    let flagged = line.truncated || line.multiline || line.partial;
    let log_fields = usize::from(source.log_file.is_some())
        + usize::from(source.stream.is_some())
        + usize::from(flagged);
    let mut log = Map::with_capacity(log_fields);
    if let Some(file) = &source.log_file {
        log.push_new(FILE, file.clone());
    }
    if source.stream.is_some() {
        log.push_new(OFFSET, Value::Int(line.start as i64));
    }
    if flagged {
        let flags = line.flag_names().map(Value::from).collect();
        log.push_new(FLAGS, Value::Array(flags));
    }
    if log_fields > 0 {
        fields.push_new(LOG, Value::Object(log));
    }
    if let Some(s) = line.stream {
        fields.push_new(STREAM, Value::from(s));
    }
    if let Some(k8s) = &source.k8s {
        for (k, v) in k8s.iter() {
            fields.insert(k.clone(), v.clone());
        }
    }
    if let Some(host) = host {
        if fields.get("host").is_none() {
            fields.push_new(HOST, host.clone());
        }
    }
    Event {
        fields,
        meta: EventMeta {
            input: input.clone(),
            origin: source.stream.map(|stream| Origin {
                stream,
                offset: line.start,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shared_path(path: &str) -> Value {
        let mut m = Map::with_capacity(1);
        m.push_new("path", Value::from(path));
        Value::Object(m.into_shared())
    }

    /// The events as their JSON documents (objects compare as maps).
    fn documents(events: &[Event]) -> Vec<serde_json::Value> {
        events
            .iter()
            .map(|e| serde_json::from_str(&e.to_json_string()).expect("json"))
            .collect()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// A file's lines become the documents a file input promises (README: `@timestamp`,
    /// `message`, `log.file.path`, `log.offset`, `log.flags`, `stream`, the container's
    /// fields, `host`), each named by its stream and offset; a rename between two lines
    /// shows in the second one's path.
    #[test]
    fn lines_become_file_events_in_order_with_their_sources() {
        let old = shared_path("/var/log/app.log");
        let new = shared_path("/var/log/app.log.1");
        let mut k8s = Map::new();
        k8s.push_new("container", Value::from("c1"));
        let mut block = LineBlock::with_capacity("logs".into(), 4, 0);
        let t = at("2026-12-01T10:00:00.000001Z");
        block.push(
            Some(7),
            Some(&old),
            None,
            "first",
            BlockLine::new(0, t, None, false, false),
        );
        block.push(
            Some(7),
            Some(&old),
            None,
            "cut",
            BlockLine::new(6, t, None, true, true),
        );
        block.push(
            Some(7),
            Some(&new),
            Some(&k8s),
            "moved",
            BlockLine::new(20, t, Some("stderr"), false, false),
        );
        assert_eq!(block.len(), 3);
        assert_eq!(
            block.sources.len(),
            2,
            "one source per run of lines from one path"
        );
        let mut host = Map::new();
        host.push_new("name", Value::from("node-1"));
        block.set_host(&Value::Object(host));
        let events = block.into_events();
        let docs = documents(&events);
        assert_eq!(
            docs,
            [
                json!({"@timestamp": "2026-12-01T10:00:00.000001Z", "message": "first",
                       "log": {"file": {"path": "/var/log/app.log"}, "offset": 0},
                       "host": {"name": "node-1"}}),
                json!({"@timestamp": "2026-12-01T10:00:00.000001Z", "message": "cut",
                       "log": {"file": {"path": "/var/log/app.log"}, "offset": 6,
                               "flags": ["multiline", "truncated"]},
                       "host": {"name": "node-1"}}),
                json!({"@timestamp": "2026-12-01T10:00:00.000001Z", "message": "moved",
                       "log": {"file": {"path": "/var/log/app.log.1"}, "offset": 20},
                       "stream": "stderr", "container": "c1", "host": {"name": "node-1"}}),
            ]
        );
        let origins: Vec<_> = events.iter().map(|e| e.meta.origin.clone()).collect();
        assert_eq!(
            origins,
            [0, 6, 20].map(|offset| Some(Origin { stream: 7, offset }))
        );
        assert!(events.iter().all(|e| &*e.meta.input == "logs"));
        // Key order as listed (documents are compared as maps above).
        let keys: Vec<&str> = events[2].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "@timestamp",
                "message",
                "log",
                "stream",
                "container",
                "host"
            ]
        );
    }

    /// A pipe's lines (stdin) have no file and no offset to be named by: only `log.flags`
    /// when a line was cut, and no origin.
    #[test]
    fn lines_without_a_file_carry_no_log_file_nor_offset() {
        let mut block = LineBlock::with_capacity("in".into(), 2, 0);
        let t = at("2026-12-01T10:00:00Z");
        block.push(
            None,
            None,
            None,
            "a",
            BlockLine::new(0, t, None, false, false),
        );
        let replaced = block.push_bytes(
            None,
            None,
            None,
            b"b\xff",
            BlockLine::new(2, t, None, true, false),
        );
        assert!(replaced, "invalid UTF-8 is reported");
        let events = block.into_events();
        let docs = documents(&events);
        assert_eq!(
            docs,
            [
                json!({"@timestamp": "2026-12-01T10:00:00.000000Z", "message": "a"}),
                json!({"@timestamp": "2026-12-01T10:00:00.000000Z", "message": "b\u{fffd}",
                       "log": {"flags": ["truncated"]}}),
            ]
        );
        assert!(events.iter().all(|e| e.meta.origin.is_none()));
    }

    /// Outputs that write JSON lines write a block's lines without building their events:
    /// the bytes must be those of the built events, whatever the line holds.
    #[test]
    fn json_written_from_lines_is_the_built_events_json() {
        let path = shared_path("/var/log/pods/ns_pod_uid/c/0.log");
        let mut k8s = Map::new();
        let mut pod = Map::new();
        pod.push_new("name", Value::from("pod"));
        k8s.push_new("kubernetes", Value::Object(pod.into_shared()));
        k8s.push_new("container", Value::from("c"));
        let mut host = Map::new();
        host.push_new("name", Value::from("node-1"));
        let host = Value::Object(host.into_shared());
        let t = at("2026-12-01T23:59:59.999999Z");
        let texts = [
            "plain",
            "",
            "quote \" back\\slash\ttab\u{1}ctl é ✓ \u{2028}",
            "{\"json\": [1, 2]}",
        ];
        for with_host in [false, true] {
            let mut block = LineBlock::with_capacity("in".into(), 16, 0);
            for (n, text) in texts.iter().enumerate() {
                let n = n as u64;
                let line = |stream, cut, joined| BlockLine::new(n * 100, t, stream, cut, joined);
                let p = Some(&path);
                let k = Some(&k8s);
                block.push(Some(3), p, None, text, line(None, false, false));
                block.push(Some(3), p, k, text, line(Some("stdout"), true, false));
                block.push(Some(4), p, k, text, line(Some("stderr"), false, true));
                block.push(None, None, None, text, line(None, true, true));
                block.push_bytes(None, None, None, text.as_bytes(), line(None, false, false));
            }
            if with_host {
                block.set_host(&host);
            }
            let direct: Vec<Vec<u8>> = (0..block.len())
                .map(|i| {
                    let mut out = Vec::new();
                    block.write_json(i, &mut out);
                    out
                })
                .collect();
            let built: Vec<Vec<u8>> = block
                .clone()
                .into_events()
                .iter()
                .map(|e| {
                    let mut out = Vec::new();
                    json::write_map(&mut out, &e.fields);
                    out
                })
                .collect();
            assert_eq!(direct.len(), texts.len() * 5);
            for (d, b) in direct.iter().zip(&built) {
                assert_eq!(String::from_utf8_lossy(d), String::from_utf8_lossy(b));
                let v: serde_json::Value = serde_json::from_slice(d).expect("valid JSON");
                assert_eq!(v["host"].is_object(), with_host);
            }
        }
    }

    /// The keys of a JSON object in the order written, duplicates kept (a `serde_json::Value`
    /// would keep only the last of two equal keys).
    fn top_level_keys(json: &[u8]) -> Vec<String> {
        struct Keys(Vec<String>);
        impl<'de> serde::Deserialize<'de> for Keys {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = Keys;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Keys, A::Error> {
                        let mut keys = Vec::new();
                        while let Some(k) = map.next_key::<String>()? {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            keys.push(k);
                        }
                        Ok(Keys(keys))
                    }
                }
                d.deserialize_map(Visit)
            }
        }
        serde_json::from_slice::<Keys>(json)
            .expect("a JSON object")
            .0
    }

    /// Source fields named like the line's own (`stream`, `host`, `message`): one key each in
    /// the JSON, the source's value where the line's would be, as in the built event.
    #[test]
    fn json_from_lines_whose_source_names_a_field_of_the_line_has_each_key_once() {
        let t = at("2026-12-01T10:00:00Z");
        let mut own_host = Map::new();
        own_host.push_new("name", Value::from("from-source"));
        let mut node = Map::new();
        node.push_new("name", Value::from("node-1"));
        let sources = [
            vec![("stream", Value::from("from-source"))],
            vec![("host", Value::Object(own_host.into_shared()))],
            vec![("message", Value::from("from-source"))],
            vec![("container", Value::from("c"))],
        ];
        for fields in sources {
            let mut k8s = Map::new();
            for (k, v) in &fields {
                k8s.push_new(*k, v.clone());
            }
            let mut block = LineBlock::with_capacity("in".into(), 4, 0);
            let line = BlockLine::new(0, t, Some("stdout"), false, false);
            block.push(Some(1), None, Some(&k8s), "text", line);
            block.set_host(&Value::Object(node.clone().into_shared()));
            let mut direct = Vec::new();
            block.write_json(0, &mut direct);
            let keys = top_level_keys(&direct);
            let unique: std::collections::HashSet<&String> = keys.iter().collect();
            assert_eq!(
                unique.len(),
                keys.len(),
                "{}",
                String::from_utf8_lossy(&direct)
            );
            let v: serde_json::Value = serde_json::from_slice(&direct).expect("valid JSON");
            for (k, want) in &fields {
                let want = serde_json::to_value(want).expect("a JSON value");
                assert_eq!(v[*k], want, "{}", String::from_utf8_lossy(&direct));
            }
            if !fields.iter().any(|(k, _)| *k == "host") {
                assert_eq!(v["host"]["name"], "node-1");
            }
            let mut built = Vec::new();
            json::write_map(&mut built, &block.into_events()[0].fields);
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&built)
            );
        }
    }
}
