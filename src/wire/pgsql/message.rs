//! Framing of the PostgreSQL frontend/backend protocol v3 and the fields the decoder reads:
//! the untyped startup packets, `type + length` messages (cut into bounded frames, the rest of
//! an oversized message skipped), startup parameters, error fields and command tags.

/// The protocol version 3.0 in a StartupMessage.
pub const PROTOCOL_3: u32 = 196_608;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Message types a frontend sends after startup.
const CLIENT_TYPES: &[u8] = b"QPBDESHCFpdcfX";
/// Message types a backend sends.
const SERVER_TYPES: &[u8] = b"RSKZTDCIEN123tnsGHWdcVAv";

/// One message as the decoder sees it: its type (0 for untyped startup packets), its body up to
/// the side's cap, and the length it has on the wire.
#[derive(Debug)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
    /// Bytes on the wire, header included.
    pub wire_len: u64,
    /// The body was longer than the cap: `body` is its beginning.
    pub truncated: bool,
}

/// Why a side stopped being decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Malformed {
    /// A length shorter than its own four bytes, or an untyped packet of absurd size.
    Length,
    /// A type byte the protocol does not have.
    Type(u8),
}

/// One direction's framing state: the bytes of an incomplete message, or how much of an
/// oversized one is still to skip.
#[derive(Debug, Default)]
pub struct Framer {
    pub buf: Vec<u8>,
    /// Bytes of the current oversized message still to come (not kept).
    skip: u64,
    /// The next message is an untyped startup packet (client) or a one-byte answer to an
    /// SSLRequest/GSSENCRequest (server).
    pub untyped: bool,
}

/// What `Framer::next` found.
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// More bytes are needed; everything given was used (kept or skipped).
    NeedMore,
    Malformed(Malformed),
}

impl Framer {
    /// Feeds `data`, calling `on_frame` for every complete message (or the capped beginning of
    /// an oversized one). Stops at the first malformed header and returns it. `client` chooses
    /// the set of type bytes; `cap` bounds what is buffered.
    pub fn feed(
        &mut self,
        data: &[u8],
        client: bool,
        cap: usize,
        on_frame: &mut dyn FnMut(&mut Framer, Frame<'_>),
    ) -> Result<(), Malformed> {
        let mut data = data;
        if self.skip > 0 {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.buf.is_empty() {
            let used = self.frames(data, client, cap, on_frame)?;
            self.keep(&data[used..], cap);
        } else {
            let mut b = std::mem::take(&mut self.buf);
            b.extend_from_slice(data);
            let r = self.frames(&b, client, cap, on_frame);
            match r {
                Ok(used) => {
                    let rest = b.split_off(used);
                    b.clear();
                    self.buf = b;
                    self.keep(&rest, cap);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Keeps an incomplete message's bytes; an oversized one is delivered truncated as soon as
    /// `cap` bytes of it are here (see `frames`), so this holds at most `cap + 5`.
    fn keep(&mut self, rest: &[u8], cap: usize) {
        self.buf.extend_from_slice(&rest[..rest.len().min(cap + 5)]);
        if self.buf.capacity() > 4 * cap.max(1 << 16) {
            self.buf.shrink_to(cap + 5);
        }
    }

    /// Complete messages in `data`; returns the bytes used.
    fn frames(
        &mut self,
        data: &[u8],
        client: bool,
        cap: usize,
        on_frame: &mut dyn FnMut(&mut Framer, Frame<'_>),
    ) -> Result<usize, Malformed> {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            if self.untyped && !client {
                // The answer to an SSLRequest or GSSENCRequest: one byte.
                self.untyped = false;
                on_frame(
                    self,
                    Frame {
                        kind: 0,
                        body: &rest[..1],
                        wire_len: 1,
                        truncated: false,
                    },
                );
                at += 1;
                continue;
            }
            let header = if self.untyped { 4 } else { 5 };
            if rest.len() < header {
                return Ok(at);
            }
            let kind = if self.untyped { 0 } else { rest[0] };
            let len_at = header - 4;
            let len = u32::from_be_bytes([
                rest[len_at],
                rest[len_at + 1],
                rest[len_at + 2],
                rest[len_at + 3],
            ]) as u64;
            if self.untyped {
                // Startup packets are small: libpq refuses more than 10000 bytes.
                if !(8..=10_000).contains(&len) {
                    return Err(Malformed::Length);
                }
            } else {
                // No message is over 1 GB (the server's MaxAllocSize): such a length is not
                // PostgreSQL (an HTTP or TLS peer on the port, or lost framing).
                if !(4..=0x4000_0000).contains(&len) {
                    return Err(Malformed::Length);
                }
                let types = if client { CLIENT_TYPES } else { SERVER_TYPES };
                if !types.contains(&kind) {
                    return Err(Malformed::Type(kind));
                }
            }
            let wire_len = len + len_at as u64;
            let body_len = wire_len - header as u64;
            if body_len as usize > cap || body_len > (u32::MAX as u64) {
                // Oversized: deliver the beginning once `cap` bytes are here, skip the rest.
                if rest.len() < header + cap {
                    return Ok(at);
                }
                let have = (rest.len() as u64).min(wire_len) as usize;
                self.untyped = false;
                on_frame(
                    self,
                    Frame {
                        kind,
                        body: &rest[header..header + cap],
                        wire_len,
                        truncated: true,
                    },
                );
                self.skip = wire_len - have as u64;
                at += have;
                continue;
            }
            let end = wire_len as usize;
            if rest.len() < end {
                return Ok(at);
            }
            self.untyped = false;
            on_frame(
                self,
                Frame {
                    kind,
                    body: &rest[header..end],
                    wire_len,
                    truncated: false,
                },
            );
            at += end;
        }
        Ok(at)
    }
}

/// Reads NUL-terminated strings off a message body.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next string (lossily UTF-8); an unterminated one (a truncated body) is the rest.
    pub fn cstr(&mut self) -> &'a [u8] {
        match memchr::memchr(0, self.0) {
            Some(i) => {
                let s = &self.0[..i];
                self.0 = &self.0[i + 1..];
                s
            }
            None => std::mem::take(&mut self.0),
        }
    }

    pub fn u32(&mut self) -> Option<u32> {
        let b = self.0.get(..4)?;
        self.0 = &self.0[4..];
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `user`, `database` and `application_name` of a StartupMessage body (after the
/// version); other parameters (options, replication...) are not kept.
#[derive(Debug, Default, Clone)]
pub struct Startup {
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
}

pub fn startup_params(body: &[u8]) -> Startup {
    let mut r = Reader(body);
    let mut s = Startup::default();
    // At most a few dozen parameters: a bound on a hostile packet's pairs.
    for _ in 0..64 {
        let key = r.cstr();
        if key.is_empty() {
            break;
        }
        let value = text(r.cstr());
        let slot = match key {
            b"user" => &mut s.user,
            b"database" => &mut s.database,
            b"application_name" => &mut s.application,
            _ => continue,
        };
        *slot = Some(value.chars().take(256).collect());
    }
    // The database defaults to the user name.
    if s.database.is_none() {
        s.database = s.user.clone();
    }
    s
}

/// The fields of an ErrorResponse the events carry.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PgError {
    /// `S` (localized) or, preferred, `V` (never localized): ERROR, FATAL, PANIC.
    pub severity: String,
    /// The SQLSTATE (`C`), e.g. `42P01`.
    pub code: String,
    /// The primary message (`M`).
    pub message: String,
}

pub fn error_fields(body: &[u8]) -> PgError {
    let mut r = Reader(body);
    let mut e = PgError::default();
    let mut localized = None;
    // Sixteen field kinds exist; a bound on a hostile message.
    for _ in 0..32 {
        let Some(code) = r.u8() else { break };
        if code == 0 {
            break;
        }
        let v = r.cstr();
        match code {
            b'S' => localized = Some(text(v)),
            b'V' => e.severity = text(v),
            b'C' => e.code = text(v),
            b'M' => e.message = text(v),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized.unwrap_or_default();
    }
    e
}

/// A CommandComplete tag as the command and its row count: `INSERT 0 3` is (`INSERT`, 3),
/// `SELECT 2` (`SELECT`, 2), `CREATE TABLE` (`CREATE TABLE`, none).
pub fn command_tag(body: &[u8]) -> (String, Option<i64>) {
    let tag = text(Reader(body).cstr());
    let mut words: Vec<&str> = tag.split_ascii_whitespace().collect();
    let rows = match words.last().and_then(|w| w.parse::<i64>().ok()) {
        Some(n) => {
            words.pop();
            // `INSERT oid rows`: the oid is always 0 since PostgreSQL 12.
            if words.first() == Some(&"INSERT") && words.len() == 2 {
                words.pop();
            }
            Some(n)
        }
        None => None,
    };
    (words.join(" "), rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(
        f: &mut Framer,
        data: &[u8],
        client: bool,
        cap: usize,
    ) -> Vec<(u8, Vec<u8>, u64, bool)> {
        let mut got = Vec::new();
        f.feed(data, client, cap, &mut |_, fr| {
            got.push((fr.kind, fr.body.to_vec(), fr.wire_len, fr.truncated))
        })
        .unwrap();
        got
    }

    #[test]
    fn messages_cut_anywhere_come_out_whole() {
        let msgs = b"Q\0\0\0\x0eSELECT 1;\0S\0\0\0\x04X\0\0\0\x04";
        for cut in 0..msgs.len() {
            let mut f = Framer::default();
            let mut got = frames(&mut f, &msgs[..cut], true, 1024);
            got.extend(frames(&mut f, &msgs[cut..], true, 1024));
            let kinds: Vec<u8> = got.iter().map(|g| g.0).collect();
            assert_eq!(kinds, b"QSX", "cut at {cut}");
            assert_eq!(got[0].1, b"SELECT 1;\0");
            assert!(f.buf.is_empty());
        }
    }

    #[test]
    fn an_oversized_message_is_delivered_capped_and_the_rest_skipped() {
        let mut m = b"Q\0\0\x10\x04".to_vec();
        m.extend(std::iter::repeat_n(b'a', 0x1000 - 1));
        m.push(0);
        m.extend_from_slice(b"S\0\0\0\x04");
        let mut f = Framer::default();
        let mut got = Vec::new();
        for chunk in m.chunks(100) {
            got.extend(frames(&mut f, chunk, true, 64));
            assert!(f.buf.len() <= 64 + 5);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0, got[0].1.len(), got[0].2, got[0].3),
            (b'Q', 64, 0x1005, true)
        );
        assert_eq!(got[1].0, b'S');
    }

    #[test]
    fn bad_lengths_and_types_are_malformed() {
        let mut f = Framer::default();
        assert_eq!(
            f.feed(b"Q\0\0\0\x02", true, 64, &mut |_, _| {}),
            Err(Malformed::Length)
        );
        let mut f = Framer::default();
        assert_eq!(
            f.feed(b"z\0\0\0\x04", true, 64, &mut |_, _| {}),
            Err(Malformed::Type(b'z'))
        );
        let mut f = Framer {
            untyped: true,
            ..Default::default()
        };
        assert_eq!(
            f.feed(b"\xff\0\0\0\0\0\0\0", true, 64, &mut |_, _| {}),
            Err(Malformed::Length)
        );
    }

    #[test]
    fn fields_of_startup_error_and_tag() {
        let s = startup_params(b"user\0bob\0application_name\0psql\0\0");
        assert_eq!(s.user.as_deref(), Some("bob"));
        assert_eq!(s.database.as_deref(), Some("bob"));
        assert_eq!(s.application.as_deref(), Some("psql"));
        let e = error_fields(b"SERREUR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0P15\0\0");
        assert_eq!(
            e,
            PgError {
                severity: "ERROR".into(),
                code: "42P01".into(),
                message: "relation \"x\" does not exist".into()
            }
        );
        assert_eq!(command_tag(b"INSERT 0 3\0"), ("INSERT".into(), Some(3)));
        assert_eq!(command_tag(b"SELECT 2\0"), ("SELECT".into(), Some(2)));
        assert_eq!(
            command_tag(b"CREATE TABLE\0"),
            ("CREATE TABLE".into(), None)
        );
        assert_eq!(command_tag(b"COPY 2\0"), ("COPY".into(), Some(2)));
    }
}
