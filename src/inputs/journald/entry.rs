//! One journal entry (a line of `journalctl --output=json`) as an event: ECS fields where ECS
//! has a name, `systemd.*` and `journald.custom.*` otherwise, with the entry's cursor and the
//! source (unit, process, container) whose lines `multiline` joins.

use crate::event::{Event, Value};
use crate::processors::syslog::SEVERITIES;
use chrono::{TimeZone, Utc};

/// journald fields and where they go (ECS where it has a name; `systemd.*` otherwise).
const MAPPED: &[(&str, &str, bool)] = &[
    // (journal field, event path, integer)
    ("SYSLOG_IDENTIFIER", "log.syslog.appname", false),
    ("SYSLOG_FACILITY", "log.syslog.facility.code", true),
    ("SYSLOG_PID", "log.syslog.procid", false),
    ("_PID", "process.pid", true),
    ("_COMM", "process.name", false),
    ("_EXE", "process.executable", false),
    ("_CMDLINE", "process.command_line", false),
    ("_UID", "user.id", false),
    ("_GID", "user.group.id", false),
    ("_SYSTEMD_UNIT", "systemd.unit", false),
    ("_SYSTEMD_USER_UNIT", "systemd.user_unit", false),
    ("_SYSTEMD_SLICE", "systemd.slice", false),
    ("_SYSTEMD_CGROUP", "systemd.cgroup", false),
    ("_TRANSPORT", "systemd.transport", false),
    ("_HOSTNAME", "host.hostname", false),
    ("_MACHINE_ID", "host.id", false),
    ("_BOOT_ID", "host.boot.id", false),
    ("CONTAINER_NAME", "container.name", false),
    ("CONTAINER_ID_FULL", "container.id", false),
    ("CONTAINER_TAG", "container.image.tag", false),
    ("CODE_FILE", "log.origin.file.name", false),
    ("CODE_LINE", "log.origin.file.line", true),
    ("CODE_FUNC", "log.origin.function", false),
];

/// A journal field's value: text, or (for binary fields) an array of bytes journalctl prints
/// as numbers; a field given several times is an array of those.
fn field_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Array(items) => items.first().and_then(field_text),
        _ => None,
    }
}

/// One journal entry read.
pub struct Entry {
    pub event: Event,
    /// Where `journalctl --after-cursor` resumes once this entry is acknowledged.
    pub cursor: String,
    /// The stream the entry belongs to (host, boot, unit, identifier, process, container):
    /// `multiline` joins only lines of one source, as journald interleaves every program's.
    pub source: String,
}

/// Fields that together name the stream an entry came from.
const SOURCE_FIELDS: [&str; 6] = [
    "_HOSTNAME",
    "_BOOT_ID",
    "_SYSTEMD_UNIT",
    "SYSLOG_IDENTIFIER",
    "_PID",
    "CONTAINER_ID_FULL",
];

/// One journal entry as an event, with its cursor and source; None for a line that is not a
/// JSON object with a cursor.
pub fn parse(line: &[u8], input: &std::sync::Arc<str>) -> Option<Entry> {
    let serde_json::Value::Object(mut fields) = serde_json::from_slice(line).ok()? else {
        return None;
    };
    let cursor = fields.remove("__CURSOR").as_ref().and_then(field_text)?;
    let mut source = String::new();
    for f in SOURCE_FIELDS {
        if let Some(v) = fields.get(f).and_then(field_text) {
            source.push_str(&v);
        }
        source.push('\0');
    }
    let time = fields
        .get("__REALTIME_TIMESTAMP")
        .and_then(field_text)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|us| Utc.timestamp_micros(us).single())
        .unwrap_or_else(Utc::now);
    let message = fields
        .remove("MESSAGE")
        .as_ref()
        .and_then(field_text)
        .unwrap_or_default();
    let mut event = Event::from_message(input.clone(), time, message);
    event.insert("input.type", Value::from("journald"));
    if let Some(p) = fields
        .get("PRIORITY")
        .and_then(field_text)
        .and_then(|p| p.parse::<usize>().ok())
    {
        event.insert("log.syslog.severity.code", Value::Int(p as i64));
        if let Some(name) = SEVERITIES.get(p) {
            event.insert("log.syslog.severity.name", Value::from(*name));
            event.insert("log.level", Value::from(*name));
        }
    }
    for (field, path, integer) in MAPPED {
        if let Some(text) = fields.get(*field).and_then(field_text) {
            let value = match (integer, text.parse::<i64>()) {
                (true, Ok(n)) => Value::Int(n),
                _ => Value::String(text),
            };
            event.insert(path, value);
        }
    }
    // The application's own fields (`sd_journal_send`, structured logging) are kept; trusted
    // fields (`_*`) and journal internals (`__*`) not mapped above are left out.
    for (k, v) in &fields {
        if k.starts_with('_') || k == "PRIORITY" || MAPPED.iter().any(|(f, _, _)| f == k) {
            continue;
        }
        if let Some(text) = field_text(v) {
            event.insert(
                &format!("journald.custom.{}", k.to_ascii_lowercase()),
                Value::String(text),
            );
        }
    }
    Some(Entry {
        event,
        cursor,
        source,
    })
}

/// Whether `text` is a cursor journalctl can seek to, by the rules of systemd's
/// `sd_journal_seek_cursor`: `;`-separated `k=value` items, `s` and `b` 128-bit ids, `i`, `m`,
/// `t` and `x` hex numbers (other keys ignored), and enough of them to find a place: `s` with
/// `i`, `b` with `m`, or `t`.
pub fn is_cursor(text: &str) -> bool {
    let (mut s, mut i, mut b, mut m, mut t) = (false, false, false, false, false);
    for word in text.split(';') {
        let Some((key, value)) = word.split_once('=') else {
            return false;
        };
        let hex_number = || value.chars().next().is_some_and(|c| c.is_ascii_hexdigit());
        let id = || {
            let digits: Vec<char> = value.chars().filter(|c| *c != '-').collect();
            digits.len() == 32 && digits.iter().all(char::is_ascii_hexdigit)
        };
        let ok = match key {
            "s" => {
                s = true;
                id()
            }
            "b" => {
                b = true;
                id()
            }
            "i" => {
                i = true;
                hex_number()
            }
            "m" => {
                m = true;
                hex_number()
            }
            "t" => {
                t = true;
                hex_number()
            }
            "x" => hex_number(),
            k => k.chars().count() == 1,
        };
        if !ok {
            return false;
        }
    }
    (s && i) || (b && m) || t
}

/// The cursor in the first bytes of an entry too long to parse (journalctl writes it among the
/// first fields), so that the entry skipped can be named in the log and found with
/// `journalctl --cursor`.
pub fn cursor_in(prefix: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"__CURSOR\":\"";
    let start = memchr::memmem::find(prefix, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &prefix[start..])?;
    std::str::from_utf8(&prefix[start..start + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_journalctl_takes_and_text_it_refuses() {
        assert!(is_cursor("s=2bc5afd786ad4784a0e38d5f48e28e03;i=64;b=0123456789abcdef0123456789abcdef;m=60a24181fc2b8;t=60a24181fc2b8;x=8774a5ba45f50d95"));
        assert!(is_cursor("t=60a24181fc2b8"));
        for bad in [
            "garbage",
            "",
            "s=12;i=1",
            "i=1",
            "t=",
            "t=zz",
            "s=2bc5afd786ad4784a0e38d5f48e28e03;i=64\n;junk",
        ] {
            assert!(!is_cursor(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_cursor_of_an_entry_cut_short() {
        let line = br#"{"__MONOTONIC_TIMESTAMP":"17","__CURSOR":"s=ab;i=3;t=60","MESSAGE":"xxxx"#;
        assert_eq!(cursor_in(line), Some("s=ab;i=3;t=60"));
        assert_eq!(cursor_in(br#"{"__CURSOR":"s=ab;i="#), None);
        assert_eq!(cursor_in(br#"{"MESSAGE":"x"#), None);
    }

    #[test]
    fn an_entry_maps_to_ecs() {
        let line = br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764500000123456","MESSAGE":"Accepted publickey","PRIORITY":"6","SYSLOG_FACILITY":"10","SYSLOG_IDENTIFIER":"sshd","_PID":"812","_COMM":"sshd","_SYSTEMD_UNIT":"ssh.service","_HOSTNAME":"node-1","_BOOT_ID":"b1","ORDER_ID":"42","_CAP_EFFECTIVE":"0"}"#;
        let Entry {
            event: e,
            cursor,
            source,
        } = parse(line, &"j".into()).unwrap();
        assert_eq!(cursor, "s=1;i=2");
        assert_eq!(source, "node-1\0b1\0ssh.service\0sshd\0812\0\0");
        let j = serde_json::to_value(&e.fields).unwrap();
        assert_eq!(j["message"], "Accepted publickey");
        assert_eq!(j["process"]["pid"], 812);
        assert_eq!(j["log"]["syslog"]["severity"]["name"], "informational");
        assert_eq!(j["log"]["syslog"]["facility"]["code"], 10);
        assert_eq!(j["systemd"]["unit"], "ssh.service");
        assert_eq!(j["journald"]["custom"]["order_id"], "42");
        assert!(j["journald"]["custom"].get("_cap_effective").is_none());
        assert_eq!(j["@timestamp"], "2025-11-30T10:53:20.123456Z");
    }

    #[test]
    fn binary_messages_and_bad_lines() {
        let line = br#"{"__CURSOR":"c","MESSAGE":[104,105,255]}"#;
        let e = parse(line, &"j".into()).unwrap().event;
        assert_eq!(e.message(), Some("hi\u{fffd}"));
        assert!(parse(b"not json", &"j".into()).is_none());
        assert!(parse(br#"{"MESSAGE":"no cursor"}"#, &"j".into()).is_none());
        assert!(parse(b"[1,2]", &"j".into()).is_none());
    }
}
