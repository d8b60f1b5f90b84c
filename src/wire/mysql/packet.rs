//! Framing of the MySQL/MariaDB client/server protocol and the fields the decoder reads:
//! packets (3-byte length + sequence id, 16 MiB pieces joined, each side's buffer capped),
//! length-encoded integers and strings, the server greeting, the client's handshake
//! response, and OK, ERR and EOF packets.

/// A payload of this length continues in the next packet.
pub const MAX_PACKET: u64 = 0xff_ffff;

// Capability flags (both ends announce theirs; what both have is in force).
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
pub const CLIENT_PROTOCOL_41: u32 = 0x200;
pub const CLIENT_SSL: u32 = 0x800;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
pub const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
pub const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;
pub const CLIENT_SESSION_TRACK: u32 = 0x80_0000;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x800_0000;

// Server status flags (OK and EOF packets).
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x40;
pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

/// One logical packet as the decoder sees it: its sequence id, its payload up to the side's
/// cap, and its length.
#[derive(Debug)]
pub struct Packet<'a> {
    pub seq: u8,
    pub body: &'a [u8],
    /// Payload length (of all its 16 MiB pieces).
    pub len: u64,
    /// Bytes on the wire, headers included.
    pub wire_len: u64,
}

impl Packet<'_> {
    pub fn first(&self) -> Option<u8> {
        self.body.first().copied()
    }

    /// An EOF packet, or an OK packet that ends a result set in its place
    /// (CLIENT_DEPRECATE_EOF): a 0xfe header, and shorter than a row that starts with an
    /// 8-byte length (a string of 16 MiB or more) could be.
    pub fn is_end(&self) -> bool {
        self.first() == Some(0xfe) && self.len < MAX_PACKET
    }

    /// The 5-byte EOF packet that closes column definitions without CLIENT_DEPRECATE_EOF.
    pub fn is_eof(&self) -> bool {
        self.first() == Some(0xfe) && self.len <= 5
    }

    /// An ERR packet, not MariaDB's progress report (error code 0xffff).
    pub fn is_err(&self) -> bool {
        self.first() == Some(0xff) && self.body.get(1..3) != Some(&[0xff, 0xff])
    }
}

/// One direction's framing state: the header and kept payload of the packet in progress.
#[derive(Debug, Default)]
pub struct Framer {
    head: [u8; 4],
    head_len: usize,
    /// Payload bytes of the current piece still to come (kept up to the cap, or skipped).
    left: usize,
    /// The payload so far, at most `cap` bytes.
    body: Vec<u8>,
    /// The logical packet goes on in the next piece (this one was 16 MiB - 1 long).
    more: bool,
    seq: u8,
    len: u64,
    wire_len: u64,
}

impl Framer {
    /// Bytes held for the packet in progress.
    pub fn buffered(&self) -> usize {
        self.body.len() + self.head_len
    }

    /// Feeds `data`, calling `on_packet` for every complete logical packet. What is kept is
    /// bounded by `cap` (the rest of a longer payload is counted, not kept). Framing alone
    /// cannot fail: any 24-bit length is valid.
    pub fn feed(&mut self, mut data: &[u8], cap: usize, on_packet: &mut dyn FnMut(Packet<'_>)) {
        while !data.is_empty() {
            if self.head_len < 4 {
                let n = (4 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                data = &data[n..];
                if self.head_len < 4 {
                    return;
                }
                let len = u32::from_le_bytes([self.head[0], self.head[1], self.head[2], 0]);
                if !self.more {
                    self.seq = self.head[3];
                    self.body.clear();
                    self.len = 0;
                    self.wire_len = 0;
                }
                self.left = len as usize;
                self.more = len as u64 == MAX_PACKET;
                self.len += len as u64;
                self.wire_len += 4 + len as u64;
            } else {
                let n = self.left.min(data.len());
                let keep = n.min(cap.saturating_sub(self.body.len()));
                self.body.extend_from_slice(&data[..keep]);
                self.left -= n;
                data = &data[n..];
            }
            if self.head_len == 4 && self.left == 0 {
                self.head_len = 0;
                if !self.more {
                    on_packet(Packet {
                        seq: self.seq,
                        body: &self.body,
                        len: self.len,
                        wire_len: self.wire_len,
                    });
                }
            }
        }
    }
}

/// A cursor over a payload; every read is bounds-checked (`None` past the end).
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-encoded integer.
    pub fn lenenc(&mut self) -> Option<u64> {
        let n = match self.u8()? {
            b @ 0..=0xfa => return Some(b as u64),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let b = self.bytes(n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    }

    /// A length-encoded string.
    pub fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.bytes(usize::try_from(n).ok()?)
    }

    /// A NUL-terminated string (the rest, when there is no NUL).
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
}

/// Text from the wire, lossy, cut to `max` bytes at a character boundary.
pub fn text(b: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    if b.len() > max {
        // The cut may have split a character into a replacement: harmless.
        s.push('…');
    }
    s
}

/// The server's HandshakeV10 (protocol version 10).
#[derive(Debug, Default, Clone)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    pub capabilities: u32,
}

/// Whether a packet is a greeting: protocol version 10, then a printable version string.
pub fn looks_like_greeting(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] == 10 && body[1].is_ascii_digit()
}

pub fn greeting(body: &[u8]) -> Option<Greeting> {
    let mut r = Reader(body);
    if r.u8()? != 10 {
        return None;
    }
    let version = text(r.cstr(), 64);
    let connection_id = r.u32()?;
    r.bytes(9)?; // auth-plugin-data part 1 and a filler
    let low = r.u16()? as u32;
    // Older servers end here.
    let high = match (r.u8(), r.u16(), r.u16()) {
        (Some(_charset), Some(_status), Some(h)) => h as u32,
        _ => 0,
    };
    Some(Greeting {
        version,
        connection_id,
        capabilities: low | high << 16,
    })
}

/// What the client's HandshakeResponse41 says, without its auth response.
#[derive(Debug, Default, Clone)]
pub struct Login {
    pub capabilities: u32,
    pub user: Option<String>,
    pub database: Option<String>,
    /// Connection attributes (`_client_name`, `program_name`...), the first few.
    pub attributes: Vec<(String, String)>,
}

/// Most connection attributes reported, and the longest key or value kept.
const MAX_ATTRIBUTES: usize = 16;
const MAX_ATTRIBUTE_LEN: usize = 256;

/// A HandshakeResponse41; `None` if it is cut short before the user name. The auth response
/// is skipped over, never read.
pub fn login(body: &[u8]) -> Option<Login> {
    let mut r = Reader(body);
    let capabilities = r.u32()?;
    r.bytes(4 + 1 + 23)?; // max packet, charset, filler
    let user = Some(text(r.cstr(), 256));
    let mut l = Login {
        capabilities,
        user,
        ..Login::default()
    };
    let skipped = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_str().is_some()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        r.u8().and_then(|n| r.bytes(n as usize)).is_some()
    } else {
        r.cstr();
        true
    };
    if !skipped {
        return Some(l);
    }
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 {
        let db = r.cstr();
        if !db.is_empty() {
            l.database = Some(text(db, 256));
        }
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 {
        r.cstr();
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0 {
        let n = r.lenenc().unwrap_or(0);
        let mut attrs = Reader(r.bytes(usize::try_from(n).unwrap_or(0)).unwrap_or(&[]));
        while let (Some(k), Some(v)) = (attrs.lenenc_str(), attrs.lenenc_str()) {
            if l.attributes.len() >= MAX_ATTRIBUTES {
                break;
            }
            l.attributes
                .push((text(k, MAX_ATTRIBUTE_LEN), text(v, MAX_ATTRIBUTE_LEN)));
        }
    }
    Some(l)
}

/// An ERR packet's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct MyError {
    pub code: u16,
    /// Five characters; absent before the 4.1 protocol and in some handshake errors.
    pub sql_state: Option<String>,
    pub message: String,
}

pub fn error(body: &[u8]) -> MyError {
    let mut r = Reader(body.get(1..).unwrap_or(&[]));
    let code = r.u16().unwrap_or(0);
    let sql_state = match r.0.first() {
        Some(b'#') => r.bytes(6).map(|s| text(&s[1..], 5)),
        _ => None,
    };
    MyError {
        code,
        sql_state,
        message: text(r.0, 512),
    }
}

/// An OK packet's fields (also of an EOF packet, which has no row counts).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Ok {
    pub affected_rows: u64,
    pub insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// An OK packet (0x00, or 0xfe in place of an EOF), or a 5-byte EOF packet.
pub fn ok(body: &[u8]) -> Ok {
    let mut r = Reader(body.get(1..).unwrap_or(&[]));
    if body.len() <= 5 {
        let warnings = r.u16().unwrap_or(0);
        return Ok {
            warnings,
            status: r.u16().unwrap_or(0),
            ..Ok::default()
        };
    }
    Ok {
        affected_rows: r.lenenc().unwrap_or(0),
        insert_id: r.lenenc().unwrap_or(0),
        status: r.u16().unwrap_or(0),
        warnings: r.u16().unwrap_or(0),
    }
}

/// The default schema an OK packet says the session moved to (session tracking, after
/// `USE db`), when the client asked for session state.
pub fn tracked_schema(body: &[u8]) -> Option<String> {
    let mut r = Reader(body.get(1..)?);
    r.lenenc()?;
    r.lenenc()?;
    let status = r.u16()?;
    r.u16()?;
    if status & SERVER_SESSION_STATE_CHANGED == 0 {
        return None;
    }
    r.lenenc_str()?; // info
    let mut state = Reader(r.lenenc_str()?);
    while let Some(kind) = state.u8() {
        let data = state.lenenc_str()?;
        if kind == 1 {
            // SESSION_TRACK_SCHEMA
            return Reader(data).lenenc_str().map(|s| text(s, 256));
        }
    }
    None
}
