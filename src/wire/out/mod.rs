//! Where the analyzers put what they report: `Event`s for a pipeline, or JSON lines written
//! straight into one buffer for `trawl pcap` (no intermediate maps on the hot path of reading
//! a capture). Event builders write through `Fields`, so both forms carry the same document.

use crate::event::{Event, EventMeta, Key, Map, Value};
use std::sync::Arc;

mod exact;
pub use exact::{Exact, INT_MAX_LEN};

/// The analyzers' output.
pub enum Out {
    Events(Vec<Event>),
    /// JSON lines (each ending in `\n`) and how many there are.
    Json {
        buf: Vec<u8>,
        lines: usize,
        clock: Clock,
    },
}

/// The last timestamp written: consecutive events mostly share its second, and an HTTP event's
/// `@timestamp` is its `event.start`.
#[derive(Default)]
pub struct Clock {
    /// Microseconds since the epoch of `text`.
    micros: Option<i64>,
    text: [u8; 27],
}

impl Out {
    pub fn json() -> Out {
        Out::Json {
            buf: Vec::with_capacity(1 << 20),
            lines: 0,
            clock: Clock::default(),
        }
    }

    /// Reports waiting to be taken.
    pub fn pending(&self) -> usize {
        match self {
            Out::Events(v) => v.len(),
            Out::Json { lines, .. } => *lines,
        }
    }

    /// The events waiting (empty in JSON mode), for the service map.
    pub fn events(&self) -> &[Event] {
        match self {
            Out::Events(v) => v,
            Out::Json { .. } => &[],
        }
    }

    /// Adds one report from input `input`.
    pub fn push(&mut self, input: &Arc<str>, r: &impl Report) {
        match self {
            Out::Events(v) => {
                let mut m = MapFields::new();
                r.write(&mut m);
                v.push(m.finish(input));
            }
            Out::Json { buf, lines, clock } => {
                if !r.write_json(buf, clock) {
                    let mut j = JsonFields::new(buf, clock);
                    r.write(&mut j);
                    j.finish();
                }
                *lines += 1;
            }
        }
    }
}

/// Something the analyzers report (a flow, a transaction), written field by field.
pub trait Report {
    fn write<F: Fields>(&self, f: &mut F);
    /// The JSON line written from a template of its own (`Room`), the same bytes `write`
    /// gives through `JsonFields`; `false`, with nothing written, where the report has none
    /// or this one is not of the shape it covers.
    fn write_json(&self, _buf: &mut Vec<u8>, _clock: &mut Clock) -> bool {
        false
    }
}

/// Receives one event's fields in document order; `open`/`close` bracket a nested object.
pub trait Fields {
    fn open(&mut self, key: &'static str);
    fn close(&mut self);
    fn str(&mut self, key: &'static str, v: &str);
    /// Same as `str`; the owned string is moved rather than copied when building a `Map`.
    fn string(&mut self, key: &'static str, v: String) {
        self.str(key, &v)
    }
    /// A string that never needs escaping (an address, base64, an HTTP token the parser
    /// checked): JSON mode copies it without looking.
    fn word(&mut self, key: &'static str, v: &str) {
        self.str(key, v)
    }
    fn int(&mut self, key: &'static str, v: i64);
    fn bool(&mut self, key: &'static str, v: bool);
    /// Capture time in ns since the epoch, rendered like `Value::Timestamp`.
    fn time(&mut self, key: &'static str, ns: i64);
    fn strs(&mut self, key: &'static str, v: &[&str]);
    /// Same as `strs` for strings that never need escaping (our own names, as TCP flags):
    /// JSON mode copies them without looking.
    fn words(&mut self, key: &'static str, v: &[&str]) {
        self.strs(key, v)
    }
    /// An array of objects: `open_list(key)`, then for each object `open_item()`, its
    /// fields and `close()`, then `close_list()`.
    fn open_list(&mut self, key: &'static str);
    fn open_item(&mut self);
    fn close_list(&mut self);
    /// A string under a key known only at run time (a header name).
    fn entry(&mut self, key: &str, v: &str);
    /// A run of fields that is the same every time `cache` is passed with it (a connection's
    /// endpoints): JSON mode renders it into `cache` the first time and copies it after that.
    fn cached(&mut self, cache: &Cached, write: &dyn Fn(&mut dyn Fields));
    /// A run of fields that is the same in every event.
    fn fixed(&mut self, run: &'static Fixed) {
        self.cached(&run.json, &run.write);
    }
}

/// The JSON of a `Fields::cached` run, kept by its owner (a connection, a `Fixed`).
pub type Cached = std::sync::OnceLock<Box<[u8]>>;

/// A run of fields whose values never change (an event's `kind`, `category`, `type`,
/// `dataset`): a third of an HTTP event. JSON mode renders it once and then copies the bytes.
pub struct Fixed {
    write: fn(&mut dyn Fields),
    json: Cached,
}

impl Fixed {
    pub const fn new(write: fn(&mut dyn Fields)) -> Fixed {
        Fixed {
            write,
            json: Cached::new(),
        }
    }
}

/// Builds an `Event` from `Fields` calls.
///
/// The fields of the objects still open wait in one vector and each object gets a vector of
/// its own, of its exact size, when it closes. A map per object made up front with room for
/// eight fields held 448 bytes for the one to five an object has (`source`: two): about 5.8
/// KB of an HTTP event's 13 objects where 2.3 KB are fields, and so more than twice the memory
/// for every event queued towards the outputs (the queues hold `pipeline.queue_batches`
/// batches of up to `pipeline.batch_size` events, filled whenever the outputs fall behind).
pub struct MapFields {
    root: Map,
    /// The objects open: their key and where their fields start in `fields`.
    open: Vec<(Key, usize)>,
    /// The fields of the open objects, innermost last (kept from one event to the next).
    fields: Vec<(Key, Value)>,
    /// Arrays being built: the depth of `open` they started at (their items are the objects
    /// opened at that depth), their key, their items.
    lists: Vec<(usize, Key, Vec<Value>)>,
}

thread_local! {
    /// `MapFields::fields` between events: the analyzer thread builds one event after another.
    static OPEN_FIELDS: std::cell::Cell<Vec<(Key, Value)>> = const { std::cell::Cell::new(Vec::new()) };
}

impl MapFields {
    pub fn new() -> MapFields {
        MapFields {
            root: Map::with_capacity(12),
            open: Vec::new(),
            fields: OPEN_FIELDS.take(),
            lists: Vec::new(),
        }
    }

    fn put(&mut self, key: impl Into<Key>, v: Value) {
        if self.open.is_empty() {
            self.root.push_new(key, v);
        } else {
            self.fields.push((key.into(), v));
        }
    }

    pub fn finish(mut self, input: &Arc<str>) -> Event {
        while !self.open.is_empty() {
            self.close();
        }
        let fields = std::mem::take(&mut self.fields);
        OPEN_FIELDS.set(fields);
        Event {
            fields: std::mem::take(&mut self.root),
            meta: EventMeta {
                input: input.clone(),
                origin: None,
            },
        }
    }
}

impl Default for MapFields {
    fn default() -> Self {
        MapFields::new()
    }
}

impl Fields for MapFields {
    fn open(&mut self, key: &'static str) {
        self.open.push((key.into(), self.fields.len()));
    }
    fn close(&mut self) {
        if let Some((k, start)) = self.open.pop() {
            // A vector of exactly the fields moved out (`split_off` allocates no more).
            let m = Map::from_distinct(self.fields.split_off(start));
            match self.lists.last_mut() {
                Some(list) if list.0 == self.open.len() => list.2.push(Value::Object(m)),
                _ => self.put(k, Value::Object(m)),
            }
        }
    }
    fn open_list(&mut self, key: &'static str) {
        self.lists.push((self.open.len(), key.into(), Vec::new()));
    }
    fn open_item(&mut self) {
        self.open.push((Key::from(""), self.fields.len()));
    }
    fn close_list(&mut self) {
        if let Some((_, k, items)) = self.lists.pop() {
            self.put(k, Value::Array(items));
        }
    }
    fn str(&mut self, key: &'static str, v: &str) {
        self.put(key, Value::String(v.to_owned()));
    }
    fn string(&mut self, key: &'static str, v: String) {
        self.put(key, Value::String(v));
    }
    fn int(&mut self, key: &'static str, v: i64) {
        self.put(key, Value::Int(v));
    }
    fn bool(&mut self, key: &'static str, v: bool) {
        self.put(key, Value::Bool(v));
    }
    fn time(&mut self, key: &'static str, ns: i64) {
        self.put(key, Value::Timestamp(super::ns_to_time(ns)));
    }
    fn strs(&mut self, key: &'static str, v: &[&str]) {
        self.put(
            key,
            Value::Array(v.iter().map(|s| Value::from(*s)).collect()),
        );
    }
    fn entry(&mut self, key: &str, v: &str) {
        self.put(key, Value::String(v.to_owned()));
    }
    fn cached(&mut self, _: &Cached, write: &dyn Fn(&mut dyn Fields)) {
        write(self);
    }
}

/// Writes one event as a JSON line, byte for byte what `serde_json` makes of its `Map`.
///
/// It holds the buffer itself while it writes (given back when it is dropped) rather than a
/// reference to it: an event's fifty-odd appends each store bytes through the buffer's
/// pointer, and a `Vec` that is part of the writer is known not to be among the bytes stored,
/// so fewer of its loads are repeated (a small gain: about 25 instructions an HTTP event).
pub struct JsonFields<'a> {
    buf: Vec<u8>,
    /// Where `buf` came from and goes back to.
    home: &'a mut Vec<u8>,
    clock: &'a mut Clock,
    comma: bool,
}

impl Drop for JsonFields<'_> {
    fn drop(&mut self) {
        std::mem::swap(self.home, &mut self.buf);
    }
}

impl<'a> JsonFields<'a> {
    pub fn new(home: &'a mut Vec<u8>, clock: &'a mut Clock) -> JsonFields<'a> {
        let mut buf = std::mem::take(home);
        buf.push(b'{');
        JsonFields {
            buf,
            home,
            clock,
            comma: false,
        }
    }

    /// `"key":` and what follows it (`tail`). Our own keys are plain words: no escaping to
    /// look for. Inlined so that each key's length is a constant and its copy a few moves
    /// rather than a call to `memcpy`.
    #[inline(always)]
    fn key_then(&mut self, key: &'static str, tail: &'static [u8]) {
        debug_assert!(!needs_escape(key.as_bytes()), "{key}");
        // Two calls rather than a variable `head`, so that each copy has a constant length.
        if self.comma {
            append(&mut self.buf, b",\"", key.as_bytes(), tail);
        } else {
            append(&mut self.buf, b"\"", key.as_bytes(), tail);
        }
        self.comma = true;
    }

    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        self.key_then(key, b"\":");
    }

    pub fn finish(mut self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

impl Fields for JsonFields<'_> {
    #[inline(always)]
    fn open(&mut self, key: &'static str) {
        self.key_then(key, b"\":{");
        self.comma = false;
    }
    #[inline(always)]
    fn close(&mut self) {
        self.buf.push(b'}');
        self.comma = true;
    }
    #[inline(always)]
    fn str(&mut self, key: &'static str, v: &str) {
        self.key(key);
        json_str(&mut self.buf, v);
    }
    #[inline(always)]
    fn word(&mut self, key: &'static str, v: &str) {
        debug_assert!(!needs_escape(v.as_bytes()), "{v}");
        self.key(key);
        append(&mut self.buf, b"\"", v.as_bytes(), b"\"");
    }
    #[inline(always)]
    fn int(&mut self, key: &'static str, v: i64) {
        self.key(key);
        append(
            &mut self.buf,
            b"",
            itoa::Buffer::new().format(v).as_bytes(),
            b"",
        );
    }
    #[inline(always)]
    fn bool(&mut self, key: &'static str, v: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }
    #[inline(always)]
    fn time(&mut self, key: &'static str, ns: i64) {
        // The opening quote with the key's punctuation, the closing one with the text: one
        // capacity check each rather than three single-byte pushes.
        self.key_then(key, b"\":\"");
        append(&mut self.buf, b"", clock_text(self.clock, ns), b"\"");
    }
    fn open_list(&mut self, key: &'static str) {
        self.key_then(key, b"\":[");
        self.comma = false;
    }
    fn open_item(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
        self.buf.push(b'{');
        self.comma = false;
    }
    fn close_list(&mut self) {
        self.buf.push(b']');
        self.comma = true;
    }
    fn strs(&mut self, key: &'static str, v: &[&str]) {
        self.key(key);
        self.buf.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            json_str(&mut self.buf, s);
        }
        self.buf.push(b']');
    }
    fn words(&mut self, key: &'static str, v: &[&str]) {
        self.key_then(key, b"\":[");
        for (i, w) in v.iter().enumerate() {
            debug_assert!(!needs_escape(w.as_bytes()), "{w}");
            let head: &[u8] = if i > 0 { b",\"" } else { b"\"" };
            append(&mut self.buf, head, w.as_bytes(), b"\"");
        }
        self.buf.push(b']');
    }
    fn entry(&mut self, key: &str, v: &str) {
        if self.comma {
            self.buf.push(b',');
        }
        self.comma = true;
        json_str(&mut self.buf, key);
        self.buf.push(b':');
        json_str(&mut self.buf, v);
    }
    fn cached(&mut self, cache: &Cached, write: &dyn Fn(&mut dyn Fields)) {
        self.splice(cache.get_or_init(|| render(write)));
    }
}

impl JsonFields<'_> {
    /// Fields rendered before (`render`), where the next field would go.
    fn splice(&mut self, json: &[u8]) {
        if json.is_empty() {
            return;
        }
        if self.comma {
            self.buf.push(b',');
        }
        self.comma = true;
        self.buf.extend_from_slice(json);
    }
}

/// A run of fields as the JSON that goes between an object's braces.
pub(crate) fn render(write: &dyn Fn(&mut dyn Fields)) -> Box<[u8]> {
    // Room for a connection's four endpoints without growing.
    let (mut buf, mut clock) = (Vec::new(), Clock::default());
    write(&mut JsonFields {
        buf: Vec::with_capacity(256),
        home: &mut buf,
        clock: &mut clock,
        comma: false,
    });
    buf.into_boxed_slice()
}

/// A JSON string; the common case (nothing to escape) is one copy. Inlined where it is
/// written (three times an HTTP event), the escaping itself left out of line.
#[inline]
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        append(buf, b"\"", s.as_bytes(), b"\"");
    } else {
        json_escaped(buf, s);
    }
}

#[cold]
#[inline(never)]
fn json_escaped(buf: &mut Vec<u8>, s: &str) {
    // serde_json's own escaping, so both output forms agree; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(buf, s);
}

/// Writes one event from a template into room reserved once: each piece (the constant run
/// between two variable fields, or a value already known to need no escaping) is a copy and
/// one compare against the room left, with the write position in a register, where a field
/// through `JsonFields` checks the `Vec`'s capacity, its comma flag and stores its length.
pub struct Room<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the next byte goes, inside `buf`'s capacity.
    at: *mut u8,
    /// Bytes of capacity after `at`.
    left: usize,
}

impl<'a> Room<'a> {
    /// Room after `buf`'s bytes for at least `bound` more (a guess: more is made if needed).
    #[inline(always)]
    pub fn new(buf: &'a mut Vec<u8>, bound: usize) -> Room<'a> {
        buf.reserve(bound);
        let left = buf.capacity() - buf.len();
        // SAFETY: `len` is within the allocation.
        let at = unsafe { buf.as_mut_ptr().add(buf.len()) };
        Room { buf, at, left }
    }

    #[inline(always)]
    pub fn put(&mut self, s: &[u8]) {
        let n = s.len();
        if n > self.left {
            (self.at, self.left) = grow(self.buf, self.left, n);
        }
        // SAFETY: `n <= left` bytes of capacity follow `at`; `s` is not inside `buf`'s
        // spare capacity (nothing borrows it while `Room` holds `buf`).
        unsafe {
            copy_bytes(s.as_ptr(), self.at, n);
            self.at = self.at.add(n);
        }
        self.left -= n;
    }

    /// An integer as JSON writes it. Most of an event's (ports, status, sizes, counts) are
    /// below 100,000: written from a table of digit pairs in line, where `itoa` is a call.
    #[inline(always)]
    pub fn int(&mut self, v: i64) {
        if (0..100_000).contains(&v) {
            let (text, n) = small_int(v as u32);
            self.put(&text[5 - n..]);
        } else {
            self.put(itoa::Buffer::new().format(v).as_bytes());
        }
    }

    /// Makes what was written part of the buffer.
    #[inline(always)]
    pub fn finish(self) {
        let len = self.buf.capacity() - self.left;
        // SAFETY: the bytes up to `len` were all written by `put`.
        unsafe { self.buf.set_len(len) };
    }
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869\
707172737475767778798081828384858687888990919293949596979899";

/// The decimal digits of `v` (below 100,000) at the end of five bytes, and how many there are.
#[inline(always)]
fn small_int(v: u32) -> ([u8; 5], usize) {
    let mut t = [b'0'; 5];
    let pair = |p: u32| [PAIRS[2 * p as usize], PAIRS[2 * p as usize + 1]];
    let (high, low) = (v / 100, v % 100);
    t[3..5].copy_from_slice(&pair(low));
    t[1..3].copy_from_slice(&pair(high % 100));
    t[0] = b'0' + (high / 100) as u8;
    let n = match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        _ => 5,
    };
    (t, n)
}

/// More room for `Room` (`left` bytes were left, `n` are wanted): the new write position and
/// room left. Given and returning values rather than `&mut Room`, so that no `Room` is ever
/// in memory: its position and room stay in registers, not reloaded after each store of
/// bytes (which may alias anything).
#[cold]
#[inline(never)]
fn grow(buf: &mut Vec<u8>, left: usize, n: usize) -> (*mut u8, usize) {
    let len = buf.capacity() - left;
    // SAFETY: the bytes up to `len` were all written by `Room::put`.
    unsafe { buf.set_len(len) };
    buf.reserve(n.max(512));
    // SAFETY: `len` is within the allocation.
    (unsafe { buf.as_mut_ptr().add(len) }, buf.capacity() - len)
}

/// Copies `n` bytes: short runs (most of an event: an address, a port, a method) as two
/// overlapping moves rather than a call to `memcpy`.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, not overlapping.
#[inline(always)]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: each pair of copies reads inside `src` (its first and last `w` bytes, `w <= n`)
    // and, together, writes exactly its `n` bytes to `dst`.
    unsafe {
        let pair = |w: usize| {
            std::ptr::copy_nonoverlapping(src, dst, w);
            std::ptr::copy_nonoverlapping(src.add(n - w), dst.add(n - w), w);
        };
        if n > 32 {
            std::ptr::copy_nonoverlapping(src, dst, n);
        } else if n >= 16 {
            pair(16);
        } else if n >= 8 {
            pair(8);
        } else if n >= 4 {
            pair(4);
        } else if n >= 2 {
            pair(2);
        } else if n == 1 {
            *dst = *src;
        }
    }
}

/// Appends `head`, `s` and `tail` with one capacity check. `head` and `tail` are our own
/// constants (quotes, a key's punctuation), so inlined their copies are a few moves; so is
/// `s` when it is short, as most of an event is (an address, a port, a method): two
/// overlapping moves rather than a call to `memcpy`.
#[inline(always)]
fn append(buf: &mut Vec<u8>, head: &[u8], s: &[u8], tail: &[u8]) {
    let n = s.len();
    buf.reserve(head.len() + n + tail.len());
    // SAFETY: `reserve` made room for all the bytes written here after `len`; `set_len` then
    // covers only what was written.
    unsafe {
        let at = buf.as_mut_ptr().add(buf.len());
        std::ptr::copy_nonoverlapping(head.as_ptr(), at, head.len());
        let dst = at.add(head.len());
        copy_bytes(s.as_ptr(), dst, n);
        std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(n), tail.len());
        buf.set_len(buf.len() + head.len() + n + tail.len());
    }
}

/// Whether `s` has a control character, `"` or `\\`; eight bytes at a time, the last word
/// overlapping the one before. A false alarm would only take the slower exact path.
#[inline]
pub fn needs_escape(s: &[u8]) -> bool {
    // Asked three times an HTTP event (MIME type, domain, user agent): sixteen bytes a step
    // where SSE2 is there (always, on x86-64).
    #[cfg(target_arch = "x86_64")]
    if s.len() >= 16 {
        return needs_escape_16(s);
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if s.len() < 8 {
        return s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let special = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        let x = u64::from_le_bytes(w);
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * b'"' as u64))
            || has_zero(x ^ (ONES * b'\\' as u64))
    };
    let last = s.len() - 8;
    (0..last).step_by(8).any(special) || special(last)
}

/// `needs_escape` for 16 bytes or more: every 16-byte block (the last overlapping the one
/// before) compared with `"`, `\\` and the control range at once, one test at the end.
#[cfg(target_arch = "x86_64")]
fn needs_escape_16(s: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    debug_assert!(s.len() >= 16);
    // SAFETY: SSE2 is part of x86-64; every load reads 16 bytes inside `s` (`at + 16 <=
    // len`, `len >= 16`), unaligned loads allowed.
    unsafe {
        let (quote, backslash, control) = (
            _mm_set1_epi8(b'"' as i8),
            _mm_set1_epi8(b'\\' as i8),
            _mm_set1_epi8(0x1f),
        );
        let special = |at: usize| {
            let x = _mm_loadu_si128(s.as_ptr().add(at) as *const __m128i);
            // Below 0x20 exactly when the unsigned maximum with 0x1f is 0x1f.
            let low = _mm_cmpeq_epi8(_mm_max_epu8(x, control), control);
            _mm_or_si128(
                low,
                _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            )
        };
        let last = s.len() - 16;
        let mut any = special(last);
        let mut at = 0;
        while at < last {
            any = _mm_or_si128(any, special(at));
            at += 16;
        }
        _mm_movemask_epi8(any) != 0
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, UTC), as `Value::Timestamp` serializes.
#[cfg(test)]
fn write_time(buf: &mut Vec<u8>, clock: &mut Clock, ns: i64) {
    buf.extend_from_slice(clock_text(clock, ns));
}

/// The text of `ns` as `write_time` writes it, kept in `clock` for the next time.
#[inline]
pub(crate) fn clock_text(clock: &mut Clock, ns: i64) -> &[u8; 27] {
    let micros = ns.div_euclid(1000);
    if clock.micros != Some(micros) {
        let secs = micros.div_euclid(1_000_000);
        if clock.micros.map(|m| m.div_euclid(1_000_000)) != Some(secs) {
            clock.text[..19].copy_from_slice(&date_time(secs));
            clock.text[19] = b'.';
            clock.text[26] = b'Z';
        }
        clock.micros = Some(micros);
        let v = micros.rem_euclid(1_000_000) as u32;
        for (at, pair) in [(20, v / 10_000), (22, v / 100 % 100), (24, v % 100)] {
            let pair = 2 * pair as usize;
            clock.text[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
    }
    &clock.text
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch.
fn date_time(secs: i64) -> [u8; 19] {
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    let mut out = [0u8; 19];
    let mut put = |at: usize, mut v: i64, width: usize| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, sod / 3600, 2);
    put(14, sod / 60 % 60, 2);
    put(17, sod % 60, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out
}

#[cfg(test)]
mod tests;
