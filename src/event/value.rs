//! The value tree events are made of: JSON-like values with an insertion-ordered object type.
//! Objects are small vectors rather than hash maps because events carry a dozen keys at most
//! and a linear scan over inline keys beats hashing at that size.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Object keys: short ECS names stay inline (no allocation up to 24 bytes).
pub type Key = compact_str::CompactString;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Timestamp(DateTime<Utc>),
    Array(Vec<Value>),
    Object(Map),
}

/// An insertion-ordered map from keys to values.
#[derive(Clone, Debug, Default)]
pub struct Map {
    entries: Entries,
}

/// A map's entries: its own, or shared with other events. Objects that many events carry
/// unchanged (`host`, a file's `log.file`, a container's `kubernetes`) are shared, so that
/// giving one to an event costs a reference count rather than allocations on the reading
/// thread and frees on another; the first change copies them (copy on write).
#[derive(Clone, Debug)]
enum Entries {
    Own(Vec<(Key, Value)>),
    Shared(std::sync::Arc<[(Key, Value)]>),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Own(Vec::new())
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.entries() == other.entries()
    }
}

impl Map {
    pub fn new() -> Self {
        Map {
            entries: Entries::Own(Vec::new()),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Map {
            entries: Entries::Own(Vec::with_capacity(n)),
        }
    }

    /// A map of `entries`, whose keys the caller knows to be distinct (as for `push_new`).
    pub fn from_distinct(entries: Vec<(Key, Value)>) -> Self {
        Map {
            entries: Entries::Own(entries),
        }
    }

    /// Entries there is room for beyond those held, here and in every object inside (what an
    /// event costs beyond its fields, for tests).
    #[cfg(test)]
    pub(crate) fn spare_entries(&self) -> usize {
        let own = match &self.entries {
            Entries::Own(v) => v.capacity() - v.len(),
            Entries::Shared(_) => 0,
        };
        let inner = |v: &Value| match v {
            Value::Object(m) => m.spare_entries(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_object().map_or(0, Map::spare_entries))
                .sum(),
            _ => 0,
        };
        own + self.entries().iter().map(|(_, v)| inner(v)).sum::<usize>()
    }

    /// The same entries, made shared: clones of the result (and of values holding it) cost a
    /// reference count; changing one copies it first.
    pub fn into_shared(self) -> Map {
        match self.entries {
            Entries::Own(v) => Map {
                entries: Entries::Shared(v.into()),
            },
            shared @ Entries::Shared(_) => Map { entries: shared },
        }
    }

    /// The entries, when they are shared with other maps (see `Entries`): the same allocation
    /// for every event that was given this object.
    pub(super) fn shared(&self) -> Option<&std::sync::Arc<[(Key, Value)]>> {
        match &self.entries {
            Entries::Own(_) => None,
            Entries::Shared(a) => Some(a),
        }
    }

    fn entries(&self) -> &[(Key, Value)] {
        match &self.entries {
            Entries::Own(v) => v,
            Entries::Shared(a) => a,
        }
    }

    /// The entries to change, copied out of a shared map first.
    #[inline]
    fn entries_mut(&mut self) -> &mut Vec<(Key, Value)> {
        if let Entries::Shared(a) = &self.entries {
            self.entries = Entries::Own(a.to_vec());
        }
        match &mut self.entries {
            Entries::Own(v) => v,
            Entries::Shared(_) => unreachable!("a shared map was just copied"),
        }
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Where `key` is among the entries (which stay where they are until one is removed).
    pub fn position(&self, key: &str) -> Option<usize> {
        self.entries().iter().position(|(k, _)| k == key)
    }

    /// The value of the entry at `index` (see `position`).
    pub fn value_at_mut(&mut self, index: usize) -> Option<&mut Value> {
        self.entries_mut().get_mut(index).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        // Looked up first: a miss must not copy a shared map.
        let pos = self.entries().iter().position(|(k, _)| k == key)?;
        Some(&mut self.entries_mut()[pos].1)
    }

    /// Inserts or replaces; returns the previous value. The key is only turned into a `Key`
    /// when it is new: looking it up as text costs nothing to build.
    pub fn insert<K: Into<Key> + AsRef<str>>(&mut self, key: K, value: Value) -> Option<Value> {
        let text = key.as_ref();
        match self.entries().iter().position(|(k, _)| k.as_str() == text) {
            Some(pos) => Some(std::mem::replace(&mut self.entries_mut()[pos].1, value)),
            None => {
                self.entries_mut().push((key.into(), value));
                None
            }
        }
    }

    /// Appends without looking for `key` first: for builders whose keys are known to be
    /// distinct (a packet decoder filling a fresh object). A duplicate would be kept twice.
    /// Always inlined: an input builds each event with a handful of these into a map it has
    /// just made, and the copy-on-write check then folds away. As a call (which the fat-LTO
    /// build chose) each field's key and value were copied through the stack twice: about 50
    /// instructions a field, the largest single cost of building a file event.
    #[inline(always)]
    pub fn push_new(&mut self, key: impl Into<Key>, value: Value) {
        let key = key.into();
        debug_assert!(self.get(&key).is_none(), "push_new: duplicate key `{key}`");
        // The map's own vector directly: `entries_mut` was a call per field.
        match &mut self.entries {
            Entries::Own(v) => v.push((key, value)),
            Entries::Shared(_) => self.push_to_shared(key, value),
        }
    }

    /// `push_new` on a shared map: copies it first (rare; kept out of the inlined path).
    #[cold]
    #[inline(never)]
    fn push_to_shared(&mut self, key: Key, value: Value) {
        self.entries_mut().push((key, value));
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self.entries().iter().position(|(k, _)| k == key)?;
        Some(self.entries_mut().remove(pos).1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries().iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut Value)> {
        self.entries_mut().iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The object under `key`, created (replacing a non-object) when needed.
    pub fn object_mut(&mut self, key: &str) -> &mut Map {
        let entries = self.entries_mut();
        let pos = match entries.iter().position(|(k, _)| k == key) {
            Some(p) => {
                if !matches!(entries[p].1, Value::Object(_)) {
                    entries[p].1 = Value::Object(Map::new());
                }
                p
            }
            None => {
                entries.push((Key::from(key), Value::Object(Map::new())));
                entries.len() - 1
            }
        };
        match &mut entries[pos].1 {
            Value::Object(m) => m,
            _ => unreachable!("slot was just made an object"),
        }
    }

    /// Looks up a dotted path (`kubernetes.pod.name`). Walks the path by bytes: a path is a
    /// few ASCII words, looked up for every event by conditions and parsers.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        let mut map = self;
        let mut rest = path;
        while let Some(at) = rest.bytes().position(|b| b == b'.') {
            map = map.get(&rest[..at])?.as_object()?;
            rest = &rest[at + 1..];
        }
        map.get(rest)
    }

    pub fn get_path_mut(&mut self, path: &str) -> Option<&mut Value> {
        let mut map = self;
        let mut rest = path;
        while let Some(at) = rest.bytes().position(|b| b == b'.') {
            map = map.get_mut(&rest[..at])?.as_object_mut()?;
            rest = &rest[at + 1..];
        }
        map.get_mut(rest)
    }

    /// Inserts at a dotted path, creating intermediate objects; returns the previous value.
    pub fn insert_path(&mut self, path: &str, value: Value) -> Option<Value> {
        match last_dot(path) {
            None => self.insert(path, value),
            Some((parents, leaf)) => {
                let mut cur = self;
                for part in parents.split('.') {
                    cur = cur.object_mut(part);
                }
                cur.insert(leaf, value)
            }
        }
    }

    /// Removes the value at a dotted path; empty parent objects are left in place.
    pub fn remove_path(&mut self, path: &str) -> Option<Value> {
        match last_dot(path) {
            None => self.remove(path),
            Some((parents, leaf)) => match self.get_path_mut(parents)? {
                Value::Object(m) => m.remove(leaf),
                _ => None,
            },
        }
    }
}

/// `path.rsplit_once('.')` by bytes: paths are a few ASCII words, and the generic char
/// searcher cost more per event than the insert it served.
fn last_dot(path: &str) -> Option<(&str, &str)> {
    let at = path.bytes().rposition(|b| b == b'.')?;
    Some((&path[..at], &path[at + 1..]))
}

impl IntoIterator for Map {
    type Item = (Key, Value);
    type IntoIter = std::vec::IntoIter<(Key, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        match self.entries {
            Entries::Own(v) => v.into_iter(),
            Entries::Shared(a) => Vec::from(&*a).into_iter(),
        }
    }
}

impl FromIterator<(Key, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (Key, Value)>>(iter: I) -> Self {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The value as text, for templates and conditions (`None` for objects and arrays).
    pub fn to_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(f.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Timestamp(t) => Some(Cow::Owned(format_timestamp(t))),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// Converts from serde_json (decoded JSON, test fixtures).
    pub fn from_json(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => {
                Value::Array(a.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (Key::from(k), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to serde_json (tests, outputs that need a `serde_json::Value`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u64> for Value {
    fn from(i: u64) -> Self {
        Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i as i64)
    }
}
impl From<u16> for Value {
    fn from(i: u16) -> Self {
        Value::Int(i as i64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(t: DateTime<Utc>) -> Self {
        Value::Timestamp(t)
    }
}
impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Object(m)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

/// RFC 3339 in UTC with microseconds (`2026-11-23T11:18:01.123456Z`), written without
/// going through chrono's formatter, which dominated the cost of JSON output.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    let mut buf = [0u8; 27];
    write_timestamp(t, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

thread_local! {
    /// The date and time text of the last second written on this thread: events of a batch
    /// mostly share their second, and the calendar arithmetic was a tenth of writing an event.
    static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> =
        const { std::cell::Cell::new((i64::MIN, [0; 19])) };
}

pub(super) fn write_timestamp(t: &DateTime<Utc>, buf: &mut [u8; 27]) {
    fn put(buf: &mut [u8], mut v: u32, width: usize) {
        for i in (0..width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    // A leap second (nanoseconds past 1e9) has its minute's last second as `timestamp()`
    // and is written as :59 below, so the cached text is the same either way.
    let secs = t.timestamp();
    let (cached, text) = LAST_SECOND.with(|c| c.get());
    let t = t.naive_utc();
    if cached == secs {
        buf[..19].copy_from_slice(&text);
    } else {
        // Every accessor on a `DateTime<Tz>` converts to local time first: take the UTC
        // fields once.
        let year = t.year().clamp(0, 9999) as u32;
        put(&mut buf[0..4], year, 4);
        buf[4] = b'-';
        put(&mut buf[5..7], t.month(), 2);
        buf[7] = b'-';
        put(&mut buf[8..10], t.day(), 2);
        buf[10] = b'T';
        put(&mut buf[11..13], t.hour(), 2);
        buf[13] = b':';
        put(&mut buf[14..16], t.minute(), 2);
        buf[16] = b':';
        put(&mut buf[17..19], t.second().min(59), 2);
        let mut text = [0u8; 19];
        text.copy_from_slice(&buf[..19]);
        LAST_SECOND.with(|c| c.set((secs, text)));
    }
    buf[19] = b'.';
    put(&mut buf[20..26], (t.nanosecond() % 1_000_000_000) / 1000, 6);
    buf[26] = b'Z';
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::String(v) => s.serialize_str(v),
            Value::Timestamp(t) => {
                let mut buf = [0u8; 27];
                write_timestamp(t, &mut buf);
                // The buffer holds only ASCII digits and separators.
                s.serialize_str(std::str::from_utf8(&buf).unwrap_or("1970-01-01T00:00:00.000000Z"))
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(m) => m.serialize(s),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.entries() {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &DateTime<Utc>) -> String {
        let mut buf = [0u8; 27];
        write_timestamp(t, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The text of the last second is kept between calls: timestamps in the same second, the
    /// next one, an earlier one and far dates read as chrono writes them, whatever came before.
    #[test]
    fn timestamps_read_the_same_whatever_was_written_before() {
        let at = |s: i64, ns: u32| DateTime::from_timestamp(s, ns).unwrap_or_default();
        let seq = [
            at(1_764_547_200, 0),
            at(1_764_547_200, 999_999_999),
            at(1_764_547_201, 1_000),
            at(1_764_547_200, 500_000),
            at(0, 0),
            at(253_402_300_799, 123_456_789),
            at(1_764_547_201, 2_000),
            at(1_764_547_201, 2_000),
        ];
        for t in seq {
            assert_eq!(text(&t), t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        }
        // A leap second is written as :59 with its fraction, cached or not.
        let leap = DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap_or_default();
        let _ = text(&at(5, 0));
        let cold = text(&leap);
        let _ = text(&at(1_483_228_799, 0));
        assert_eq!(text(&leap), cold);
        assert_eq!(cold, "2016-12-31T23:59:59.500000Z");
    }

    #[test]
    fn dotted_paths_nest_and_replace() {
        let mut m = Map::new();
        m.insert_path("kubernetes.pod.name", "web-1".into());
        m.insert_path("kubernetes.namespace", "prod".into());
        assert_eq!(
            m.get_path("kubernetes.pod.name").and_then(Value::as_str),
            Some("web-1")
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"kubernetes":{"pod":{"name":"web-1"},"namespace":"prod"}}"#
        );
        // A scalar in the way is replaced by an object.
        m.insert_path("kubernetes.namespace.x", 1i64.into());
        assert_eq!(m.get_path("kubernetes.namespace.x"), Some(&Value::Int(1)));
        assert_eq!(m.remove_path("kubernetes.pod.name"), Some("web-1".into()));
        assert_eq!(m.get_path("kubernetes.pod.name"), None);
    }

    /// A shared object reads, compares and serialises like its own copy, and changing one
    /// holder's copy (through any mutating call) leaves the other holders' unchanged.
    #[test]
    fn shared_objects_are_copied_on_the_first_change() {
        let mut host = Map::new();
        host.push_new("name", "node-1".into());
        let own = Value::Object(host.clone());
        let shared = Value::Object(host.into_shared());
        assert_eq!(shared, own);
        assert_eq!(
            serde_json::to_string(&shared).unwrap(),
            r#"{"name":"node-1"}"#
        );
        let mut a = Map::new();
        a.push_new("host", shared.clone());
        let mut b = a.clone();
        b.insert_path("host.name", "changed".into());
        b.insert_path("host.ip", "10.0.0.1".into());
        let mut c = a.clone();
        if let Some(Value::String(s)) = c.get_path_mut("host.name") {
            s.push_str("-c");
        }
        let mut d = a.clone();
        d.object_mut("host").remove("name");
        let mut e = a.clone();
        for (_, v) in e.object_mut("host").iter_mut() {
            *v = Value::Int(1);
        }
        assert_eq!(
            a.get_path("host.name").and_then(Value::as_str),
            Some("node-1")
        );
        assert_eq!(
            shared.as_object().and_then(|m| m.get("name")),
            Some(&"node-1".into())
        );
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"host":{"name":"changed","ip":"10.0.0.1"}}"#
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"host":{"name":"node-1-c"}}"#
        );
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"host":{}}"#);
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"host":{"name":1}}"#);
        // A miss does not copy, and consuming a shared map gives its entries.
        let mut f = a.clone();
        assert!(f.object_mut("host").get_mut("nope").is_none());
        let entries: Vec<_> = shared
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(entries, vec![(Key::from("name"), Value::from("node-1"))]);
    }

    #[test]
    fn timestamps_render_as_rfc3339_micros() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T11:18:01.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(&t), "2026-11-23T11:18:01.123456Z");
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": "d"}});
        let v = Value::from_json(j.clone());
        assert_eq!(v.to_json(), j);
    }
}
