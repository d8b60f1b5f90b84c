//! An incremental RESP2/RESP3 reader for one direction of a connection: bytes in, in any slicing,
//! one `Message` summary out per top-level value. Bulk payloads are skipped, never buffered: only
//! the first elements of a message (a command's name and key, a push's kind) are kept, capped.

/// The type of a top-level value (after any RESP3 attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SimpleString,
    Error,
    Integer,
    BulkString,
    Array,
    /// RESP3 `_`, and RESP2's null bulk string (`$-1`) and null array (`*-1`).
    Null,
    Boolean,
    Double,
    BigNumber,
    BulkError,
    Verbatim,
    Map,
    Set,
    Push,
    /// A command sent as a plain line (`PING\r\n`) rather than an array.
    Inline,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SimpleString => "simple_string",
            Kind::Error => "error",
            Kind::Integer => "integer",
            Kind::BulkString => "bulk_string",
            Kind::Array => "array",
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Double => "double",
            Kind::BigNumber => "big_number",
            Kind::BulkError => "bulk_error",
            Kind::Verbatim => "verbatim_string",
            Kind::Map => "map",
            Kind::Set => "set",
            Kind::Push => "push",
            Kind::Inline => "inline",
        }
    }

    pub fn is_error(self) -> bool {
        matches!(self, Kind::Error | Kind::BulkError)
    }
}

/// What the reader keeps of one top-level value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// Bytes on the wire, attributes included.
    pub bytes: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Elements of an aggregate (pairs for a map), length of a bulk string; -1 for RESP2 nulls.
    pub len: i64,
    /// The first bytes of a simple string, error, integer, double, big number or bulk error.
    pub text: Vec<u8>,
    /// The first elements of a top-level aggregate (or the words of an inline command), each
    /// cut at `Limits::item_bytes`; nested aggregates are kept as empty items.
    pub items: Vec<Vec<u8>>,
    /// Some bytes of the value were never captured (a gap inside a bulk payload).
    pub gap: bool,
}

/// How much of a message is kept, and the longest lengths believed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Top-level elements kept (a command's name, subcommand, key...).
    pub items: usize,
    /// Bytes kept of each element and of a text.
    pub item_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            items: 16,
            item_bytes: 256,
        }
    }
}

/// Longest line (simple string, error, inline command) followed; Redis itself refuses inline
/// commands past 64 KiB.
pub const MAX_LINE: u64 = 1 << 20;
/// Largest bulk length believed (Redis's `proto-max-bulk-len` tops out at 512 MiB by default).
pub const MAX_BULK: i64 = 1 << 34;
/// Largest aggregate length believed (Redis refuses more than 2^31 elements).
pub const MAX_AGGREGATE: i64 = 1 << 32;
/// Deepest nesting followed.
pub const MAX_DEPTH: usize = 64;

/// Why a stream stopped being RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A byte that starts no RESP type (server side).
    BadType(u8),
    /// A length or number that does not parse, or is out of bounds.
    BadLength,
    /// A bulk payload not followed by CRLF.
    BadTerminator,
    /// A line past `MAX_LINE`, nesting past `MAX_DEPTH`.
    TooLarge,
    /// RESP3 streamed strings and aggregates (`$?`, `*?`), which servers do not send.
    Streamed,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::BadType(b) => write!(f, "byte 0x{b:02x} starts no RESP value"),
            Malformed::BadLength => f.write_str("bad length"),
            Malformed::BadTerminator => f.write_str("bulk payload not followed by CRLF"),
            Malformed::TooLarge => f.write_str("line or nesting too large"),
            Malformed::Streamed => f.write_str("streamed RESP3 value"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a type byte.
    Type,
    /// Reading the rest of a line started by `kind_byte` (0: an inline command).
    Line { kind_byte: u8 },
    /// Skipping (and keeping the start of) a bulk payload.
    Bulk { remaining: u64 },
    /// Expecting the CRLF after a bulk payload: how many of its two bytes were seen.
    BulkEnd { seen: u8 },
    /// Not RESP any more: nothing more is read.
    Broken,
}

/// An open aggregate: elements still to come, and whether it is an attribute (which does not
/// count as an element of its parent).
#[derive(Debug, Clone, Copy)]
struct Frame {
    remaining: i64,
    attribute: bool,
}

/// Reads one direction of a connection.
#[derive(Debug)]
pub struct Reader {
    state: State,
    /// Requests may be inline commands; replies may not.
    client: bool,
    limits: Limits,
    /// The kept start of the current line, and its full length.
    line: Vec<u8>,
    line_len: u64,
    stack: Vec<Frame>,
    msg: Option<Message>,
    /// The element being kept (depth 1 of the top-level aggregate), if any.
    keeping_item: bool,
}

/// What `Reader::gap` did to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterGap {
    /// The gap fell inside a bulk payload of known length: still in step.
    InStep,
    /// Message boundaries are lost.
    Lost,
}

impl Reader {
    pub fn new(client: bool, limits: Limits) -> Reader {
        Reader {
            state: State::Type,
            client,
            limits,
            line: Vec::new(),
            line_len: 0,
            stack: Vec::new(),
            msg: None,
            keeping_item: false,
        }
    }

    /// Between two messages (nothing of a message read yet).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Type && self.msg.is_none()
    }

    pub fn broken(&self) -> bool {
        self.state == State::Broken
    }

    /// Bytes held (kept line and items), for the memory bound.
    pub fn held(&self) -> usize {
        self.line.capacity()
            + self.stack.capacity() * std::mem::size_of::<Frame>()
            + self.msg.as_ref().map_or(0, |m| {
                m.text.capacity() + m.items.iter().map(|i| i.capacity() + 24).sum::<usize>()
            })
    }

    /// `n` bytes of this direction were never captured.
    pub fn gap(&mut self, n: u64) -> AfterGap {
        match self.state {
            State::Bulk { remaining } if n <= remaining => {
                self.state = if n == remaining {
                    State::BulkEnd { seen: 0 }
                } else {
                    State::Bulk {
                        remaining: remaining - n,
                    }
                };
                if let Some(m) = &mut self.msg {
                    m.gap = true;
                    m.bytes += n;
                }
                AfterGap::InStep
            }
            _ => {
                self.state = State::Broken;
                self.msg = None;
                AfterGap::Lost
            }
        }
    }

    /// Reads `data` (received at `ts`), handing each complete message to `done`. On a
    /// malformed stream the reader stops for good and says why.
    pub fn feed(
        &mut self,
        data: &[u8],
        ts: i64,
        done: &mut dyn FnMut(Message),
    ) -> Result<(), Malformed> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Broken => return Ok(()),
                State::Type => {
                    let b = data[i];
                    if self.msg.is_none() {
                        if self.client && b != b'*' {
                            // Redis skips the empty lines between inline commands.
                            if b == b'\r' || b == b'\n' {
                                i += 1;
                                continue;
                            }
                            self.begin(Kind::Inline, ts);
                            self.start_line(0);
                            continue;
                        }
                        self.begin(Kind::Null, ts);
                    }
                    if !is_type_byte(b) {
                        return self.fail(Malformed::BadType(b));
                    }
                    self.count(1);
                    i += 1;
                    self.start_line(b);
                }
                State::Line { kind_byte } => {
                    let rest = &data[i..];
                    let (end, found) = match memchr::memchr(b'\n', rest) {
                        Some(j) => (j + 1, true),
                        None => (rest.len(), false),
                    };
                    let room = self.line_room(kind_byte).saturating_sub(self.line.len());
                    self.line.extend_from_slice(&rest[..end.min(room)]);
                    self.line_len += end as u64;
                    self.count(end as u64);
                    i += end;
                    if self.line_len > MAX_LINE {
                        return self.fail(Malformed::TooLarge);
                    }
                    if found {
                        self.end_line(kind_byte, ts, done)?;
                    }
                }
                State::Bulk { remaining } => {
                    let take = (remaining).min((data.len() - i) as u64) as usize;
                    if self.keeping_item {
                        self.keep(&data[i..i + take]);
                    }
                    self.count(take as u64);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::BulkEnd { seen: 0 }
                    } else {
                        State::Bulk { remaining }
                    };
                }
                State::BulkEnd { seen } => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if data[i] != want {
                        return self.fail(Malformed::BadTerminator);
                    }
                    self.count(1);
                    i += 1;
                    if seen == 0 {
                        self.state = State::BulkEnd { seen: 1 };
                    } else {
                        self.state = State::Type;
                        self.value_done(ts, done);
                    }
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, why: Malformed) -> Result<(), Malformed> {
        self.state = State::Broken;
        self.msg = None;
        self.stack.clear();
        Err(why)
    }

    fn begin(&mut self, kind: Kind, ts: i64) {
        self.msg = Some(Message {
            kind,
            bytes: 0,
            start_ns: ts,
            end_ns: ts,
            len: 0,
            text: Vec::new(),
            items: Vec::new(),
            gap: false,
        });
    }

    fn count(&mut self, n: u64) {
        if let Some(m) = &mut self.msg {
            m.bytes += n;
        }
    }

    fn start_line(&mut self, kind_byte: u8) {
        self.line.clear();
        self.line_len = 0;
        self.state = State::Line { kind_byte };
    }

    /// How much of a line is kept: numbers whole (they are parsed), texts cut.
    fn line_room(&self, kind_byte: u8) -> usize {
        match kind_byte {
            b'+' | b'-' | b',' | b'(' => self.limits.item_bytes + 2,
            // An inline command's words.
            0 => (self.limits.items * (self.limits.item_bytes + 1)).max(64) + 2,
            _ => 24,
        }
    }

    /// The element being read is a direct child of the top-level aggregate.
    fn at_item_depth(&self) -> bool {
        self.stack.len() == 1 && !self.stack[0].attribute
    }

    fn keep(&mut self, bytes: &[u8]) {
        let cap = self.limits.item_bytes;
        if let Some(item) = self.msg.as_mut().and_then(|m| m.items.last_mut()) {
            let room = cap.saturating_sub(item.len());
            item.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
    }

    /// Starts keeping the element about to be read, if it is one of the first top-level ones.
    fn open_item(&mut self) {
        self.keeping_item = false;
        if !self.at_item_depth() {
            return;
        }
        let max = self.limits.items;
        if let Some(m) = &mut self.msg {
            if m.items.len() < max {
                m.items.push(Vec::new());
                self.keeping_item = true;
            }
        }
    }

    fn end_line(
        &mut self,
        kind_byte: u8,
        ts: i64,
        done: &mut dyn FnMut(Message),
    ) -> Result<(), Malformed> {
        let mut line = std::mem::take(&mut self.line);
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let top = self.stack.is_empty();
        let result = self.line_value(kind_byte, &line, top, ts, done);
        line.clear();
        self.line = line;
        result
    }

    fn line_value(
        &mut self,
        kind_byte: u8,
        line: &[u8],
        top: bool,
        ts: i64,
        done: &mut dyn FnMut(Message),
    ) -> Result<(), Malformed> {
        match kind_byte {
            0 => {
                let words = split_inline(line, self.limits);
                if words.is_empty() {
                    // An empty (or blank) line: no command, as in Redis.
                    self.msg = None;
                    self.state = State::Type;
                    return Ok(());
                }
                if let Some(m) = &mut self.msg {
                    m.len = words.len() as i64;
                    m.items = words;
                }
                self.state = State::Type;
                self.value_done(ts, done);
            }
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                if kind_byte == b'_' && !line.is_empty() {
                    return self.fail(Malformed::BadLength);
                }
                if top {
                    if let Some(m) = &mut self.msg {
                        m.kind = match kind_byte {
                            b'+' => Kind::SimpleString,
                            b'-' => Kind::Error,
                            b':' => Kind::Integer,
                            b',' => Kind::Double,
                            b'(' => Kind::BigNumber,
                            b'#' => Kind::Boolean,
                            _ => Kind::Null,
                        };
                        let n = line.len().min(self.limits.item_bytes);
                        m.text = line[..n].to_vec();
                    }
                } else {
                    self.open_item();
                    if self.keeping_item {
                        self.keep(line);
                    }
                }
                self.state = State::Type;
                self.value_done(ts, done);
            }
            b'$' | b'=' | b'!' => {
                if line == b"?" {
                    return self.fail(Malformed::Streamed);
                }
                let n = parse_len(line, MAX_BULK).ok_or(Malformed::BadLength);
                let n = match n {
                    Ok(n) => n,
                    Err(e) => return self.fail(e),
                };
                if top {
                    if let Some(m) = &mut self.msg {
                        m.len = n;
                        m.kind = match (kind_byte, n) {
                            (_, -1) => Kind::Null,
                            (b'$', _) => Kind::BulkString,
                            (b'=', _) => Kind::Verbatim,
                            _ => Kind::BulkError,
                        };
                        if kind_byte == b'!' && n >= 0 {
                            // The error text is kept like a simple error's.
                            m.items.push(Vec::new());
                            self.keeping_item = true;
                        } else {
                            self.keeping_item = false;
                        }
                    }
                } else {
                    self.open_item();
                }
                if n == -1 {
                    self.state = State::Type;
                    self.value_done(ts, done);
                } else if n == 0 {
                    self.state = State::BulkEnd { seen: 0 };
                } else {
                    self.state = State::Bulk {
                        remaining: n as u64,
                    };
                }
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                if line == b"?" {
                    return self.fail(Malformed::Streamed);
                }
                let n = match parse_len(line, MAX_AGGREGATE) {
                    Some(n) => n,
                    None => return self.fail(Malformed::BadLength),
                };
                let attribute = kind_byte == b'|';
                if n == -1 && kind_byte != b'*' {
                    return self.fail(Malformed::BadLength);
                }
                if top && !attribute {
                    if let Some(m) = &mut self.msg {
                        m.len = n;
                        m.kind = match (kind_byte, n) {
                            (_, -1) => Kind::Null,
                            (b'*', _) => Kind::Array,
                            (b'%', _) => Kind::Map,
                            (b'~', _) => Kind::Set,
                            _ => Kind::Push,
                        };
                    }
                } else if !attribute {
                    // A nested aggregate is kept as an empty item.
                    self.open_item();
                }
                self.state = State::Type;
                let elements = if kind_byte == b'%' || attribute {
                    n.saturating_mul(2)
                } else {
                    n
                };
                if elements <= 0 {
                    self.value_done(ts, done);
                } else {
                    if self.stack.len() >= MAX_DEPTH {
                        return self.fail(Malformed::TooLarge);
                    }
                    self.stack.push(Frame {
                        remaining: elements,
                        attribute,
                    });
                }
            }
            _ => return self.fail(Malformed::BadType(kind_byte)),
        }
        Ok(())
    }

    /// A value (scalar or aggregate) ended: close the aggregates it completes, and hand the
    /// message over when it was the top-level value.
    fn value_done(&mut self, ts: i64, done: &mut dyn FnMut(Message)) {
        self.keeping_item = false;
        loop {
            let Some(top) = self.stack.last_mut() else {
                if let Some(mut m) = self.msg.take() {
                    m.end_ns = ts;
                    done(m);
                }
                return;
            };
            top.remaining -= 1;
            if top.remaining > 0 {
                return;
            }
            let finished = self.stack.pop();
            if finished.is_some_and(|f| f.attribute) {
                // An attribute is not an element of its parent, nor the message itself: a
                // top-level one precedes the value it describes, and the message goes on.
                return;
            }
        }
    }
}

fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// A length: -1 (null) up to `max`.
fn parse_len(line: &[u8], max: i64) -> Option<i64> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    match (neg, n) {
        (true, 1) => Some(-1),
        (true, _) => None,
        (false, n) if n <= max => Some(n),
        _ => None,
    }
}

/// The words of an inline command, as Redis's `sdssplitargs` splits them: blanks separate,
/// double quotes take `\` escapes, single quotes are literal. Unbalanced quotes keep the rest.
pub fn split_inline(line: &[u8], limits: Limits) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() && words.len() < limits.items {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut w = Vec::new();
        let quote = match line[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                Some(q)
            }
            _ => None,
        };
        while i < line.len() {
            let b = line[i];
            match quote {
                None if b.is_ascii_whitespace() => break,
                Some(q) if b == q => {
                    i += 1;
                    break;
                }
                Some(b'"') if b == b'\\' && i + 1 < line.len() => {
                    i += 1;
                    let e = match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    };
                    if w.len() < limits.item_bytes {
                        w.push(e);
                    }
                }
                _ => {
                    if w.len() < limits.item_bytes {
                        w.push(b);
                    }
                }
            }
            i += 1;
        }
        words.push(w);
    }
    words
}

#[cfg(test)]
mod tests;
