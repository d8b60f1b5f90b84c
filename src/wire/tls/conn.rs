//! One TLS connection seen from the wire: the record layer of each direction (records spanning
//! segments, handshake messages spanning records), and the handshake they carry, reported
//! once as a `Handshake` when it is established, fails with an alert, or the connection ends.

use super::hello::{self, ClientHello, ServerHello};
use super::x509;

/// A record's content type (RFC 8446 5.1).
mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    pub const HEARTBEAT: u8 = 24;
}

/// A handshake message type (RFC 8446 4).
mod message {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_HELLO_DONE: u8 = 14;
}

/// The largest record allowed on the wire: 2^14 bytes of plaintext plus 2048 of expansion
/// (RFC 5246 6.2.3). Anything longer is not TLS.
const MAX_RECORD: usize = (1 << 14) + 2048;
const HEADER: usize = 5;
/// The longest TLS 1.3 record that can only be an alert: 2 bytes, the inner content type and
/// a 16-byte AEAD tag. The shortest other first record, an empty EncryptedExtensions, is 23.
const MAX_SEALED_ALERT: usize = 19;

/// Most plaintext a side may send before its first TLS record: the commands and replies of
/// a STARTTLS upgrade (SMTP's EHLO reply, IMAP's capabilities) are a few hundred bytes; more
/// is a connection that is not TLS at all.
pub(crate) const MAX_PLAINTEXT: usize = 16 * 1024;

/// PostgreSQL's SSLRequest (its length, 8, and code 80877103): the server answers one byte,
/// `S`, and the TLS handshake follows.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];

/// What the connection needs from the analyzer's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest handshake message read (a Certificate chain is the long one); longer ones are
    /// skipped and counted.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
        }
    }
}

/// Counters the analyzer publishes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnStats {
    /// Handshake messages that did not parse, and streams that were not TLS.
    pub parse_errors: u64,
    /// Holes in a stream that lost handshake bytes (a hole inside an encrypted record is
    /// skipped exactly and not counted).
    pub gaps: u64,
    /// SSLv2-compatible ClientHellos (skipped: the server's reply is read as usual).
    pub sslv2_hellos: u64,
    /// Handshake messages longer than `max_message_bytes`, skipped.
    pub oversized: u64,
}

/// Why a handshake was reported before it was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// A fatal alert.
    Alert,
    /// The connection or capture ended first.
    Closed,
    /// Still not established after `transaction_timeout`.
    Timeout,
}

impl Unfinished {
    pub fn as_str(self) -> &'static str {
        match self {
            Unfinished::Alert => "alert",
            Unfinished::Closed => "closed_during_handshake",
            Unfinished::Timeout => "handshake_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// 1 warning, 2 fatal.
    pub level: u8,
    pub description: u8,
    pub from_server: bool,
}

/// One handshake, as much of it as was seen.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub client: Option<ClientHello>,
    pub server: Option<ServerHello>,
    /// The server's certificate (visible up to TLS 1.2), parsed.
    pub certificate: Option<x509::Certificate>,
    /// The client's certificate, when the server asked for one (mutual TLS) and the client
    /// sent it in clear (TLS <= 1.2; TLS 1.3 encrypts it), parsed.
    pub client_certificate: Option<x509::Certificate>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Both sides finished the handshake (TLS <= 1.2: each sent ChangeCipherSpec and an
    /// encrypted Finished; TLS 1.3: each sent encrypted records after the ServerHello).
    pub established: bool,
    pub resumed: bool,
    /// The first alert seen in clear (a fatal one ends the handshake).
    pub alert: Option<Alert>,
    /// An encrypted alert (level and description hidden) ended the handshake.
    pub encrypted_alert: bool,
    /// The client opened with an SSLv2-compatible hello.
    pub sslv2_hello: bool,
    /// The server asked for a second ClientHello (TLS 1.3 HelloRetryRequest).
    pub hello_retry: bool,
    /// Some handshake bytes were never captured.
    pub gap: bool,
    /// Bytes each side sent until the handshake was reported.
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub unfinished: Option<Unfinished>,
}

impl Handshake {
    /// The certificate the server (`true`) or the client sent.
    fn certificate_of(&mut self, server: bool) -> &mut Option<x509::Certificate> {
        if server {
            &mut self.certificate
        } else {
            &mut self.client_certificate
        }
    }
}

#[derive(Debug, Default)]
struct Side {
    /// The record being read: its header, then (for records read) its body.
    buf: Vec<u8>,
    /// Bytes left of a record that is not read (encrypted, application data).
    skip: usize,
    /// Handshake messages being put together from records.
    hs: Vec<u8>,
    /// Bytes left of an oversized handshake message being passed over.
    hs_skip: usize,
    /// The first bytes of an oversized Certificate message being passed over, kept (up to
    /// the message limit) until the leaf certificate at its start is whole.
    cert_prefix: Option<Vec<u8>>,
    /// Sent ChangeCipherSpec: its later handshake records are encrypted.
    ccs: bool,
    /// Sent a message only a full TLS <= 1.2 handshake has (Certificate, ServerKeyExchange,
    /// CertificateRequest, ServerHelloDone): a server's ChangeCipherSpec after one ends a
    /// full handshake whose client went quiet, not an abbreviated one.
    full_handshake: bool,
    /// Encrypted records sent after ChangeCipherSpec (TLS <= 1.2) or after the ServerHello
    /// was seen (TLS 1.3).
    encrypted: u32,
    seen_bytes: bool,
    /// Plaintext passed over before the side's first record (a STARTTLS upgrade).
    plaintext: usize,
    /// Given up: not TLS, or a hole where the record boundaries were lost.
    dead: bool,
}

impl Side {
    fn buffered(&self) -> usize {
        self.buf.capacity()
            + self.hs.capacity()
            + self.cert_prefix.as_ref().map_or(0, Vec::capacity)
    }
}

#[derive(Debug, Default)]
pub struct Conn {
    limits: Limits,
    client: Side,
    server: Side,
    tx: Handshake,
    /// Something of a handshake was seen (a hello, an SSLv2 hello).
    started: bool,
    /// The handshake was reported; the rest of the connection is passed over.
    reported: bool,
    pub last_ns: i64,
}

impl Conn {
    pub fn new(limits: Limits) -> Conn {
        Conn {
            limits,
            ..Conn::default()
        }
    }

    /// Bytes held for records and messages not yet complete.
    pub fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }

    /// The handshake was reported (or the connection given up): later bytes need not come.
    pub fn done(&self) -> bool {
        self.reported || (self.client.dead && self.server.dead)
    }

    pub fn client_data(
        &mut self,
        ts: i64,
        data: &[u8],
        st: &mut ConnStats,
        out: &mut Vec<Handshake>,
    ) {
        self.data(false, ts, data, st, out)
    }

    pub fn server_data(
        &mut self,
        ts: i64,
        data: &[u8],
        st: &mut ConnStats,
        out: &mut Vec<Handshake>,
    ) {
        self.data(true, ts, data, st, out)
    }

    fn data(
        &mut self,
        server: bool,
        ts: i64,
        mut data: &[u8],
        st: &mut ConnStats,
        out: &mut Vec<Handshake>,
    ) {
        self.last_ns = ts;
        if self.reported {
            return;
        }
        if server {
            self.tx.server_bytes += data.len() as u64;
        } else {
            self.tx.client_bytes += data.len() as u64;
        }
        while !data.is_empty() {
            let side = if server {
                &mut self.server
            } else {
                &mut self.client
            };
            if side.dead {
                return;
            }
            if side.skip > 0 {
                let n = side.skip.min(data.len());
                side.skip -= n;
                data = &data[n..];
                continue;
            }
            if side.buf.is_empty() && !side.seen_bytes && !record_start(server, data) {
                // Not a record: the plaintext before a STARTTLS upgrade (RFC 3207, RFC 2595,
                // RFC 4217, PostgreSQL's SSLRequest), read line by line, or what is left of a
                // chunk (a reply without a line end, PostgreSQL's `S`), up to a bound.
                let n = if data.starts_with(&PG_SSL_REQUEST) {
                    PG_SSL_REQUEST.len()
                } else {
                    data.iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| i + 1)
                };
                side.plaintext += n;
                data = &data[n..];
                if side.plaintext > MAX_PLAINTEXT {
                    side.dead = true;
                    st.parse_errors += 1;
                    return;
                }
                continue;
            }
            if side.buf.len() < HEADER {
                let n = (HEADER - side.buf.len()).min(data.len());
                side.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
                if side.buf.len() < HEADER {
                    return;
                }
                let first = !side.seen_bytes;
                side.seen_bytes = true;
                if !self.header(server, first, ts, st) {
                    self.check(ts, out);
                    if self.reported {
                        return;
                    }
                    continue;
                }
            }
            let side = if server {
                &mut self.server
            } else {
                &mut self.client
            };
            let len = u16::from_be_bytes([side.buf[3], side.buf[4]]) as usize;
            let want = HEADER + len - side.buf.len();
            let n = want.min(data.len());
            side.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if side.buf.len() == HEADER + len {
                let record = std::mem::take(&mut side.buf);
                self.record(server, ts, record[0], &record[HEADER..], st);
                // Keep the allocation for the next record.
                let side = if server {
                    &mut self.server
                } else {
                    &mut self.client
                };
                side.buf = record;
                side.buf.clear();
                self.check(ts, out);
                if self.reported {
                    return;
                }
            }
        }
    }

    /// A complete record header is in the side's buffer: decides whether the record is read
    /// (returns true) or passed over (false: `skip` set, or the side given up).
    fn header(&mut self, server: bool, first: bool, ts: i64, st: &mut ConnStats) -> bool {
        let side = if server {
            &mut self.server
        } else {
            &mut self.client
        };
        let h = [
            side.buf[0],
            side.buf[1],
            side.buf[2],
            side.buf[3],
            side.buf[4],
        ];
        if first && !server && h[0] & 0x80 != 0 && h[2] == message::CLIENT_HELLO {
            // SSLv2-compatible hello (RFC 5246 appendix E.2): two-byte length with the high
            // bit set, then msg_type 1. The reply and the rest are ordinary TLS records.
            let len = ((h[0] & 0x7f) as usize) << 8 | h[1] as usize;
            side.skip = (len + 2).saturating_sub(HEADER);
            side.buf.clear();
            st.sslv2_hellos += 1;
            self.tx.sslv2_hello = true;
            self.start(ts);
            return false;
        }
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if !(content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT).contains(&h[0])
            || h[1] != 3
            || len > MAX_RECORD
        {
            // Not TLS (or a capture that began mid-record): nothing more to read here.
            side.dead = true;
            side.buf = Vec::new();
            st.parse_errors += 1;
            return false;
        }
        // TLS 1.3 encrypts into application data records only; its ChangeCipherSpec is for
        // middleboxes, and handshake records after it (a second ClientHello) are clear.
        let tls13 = self
            .tx
            .server
            .as_ref()
            .is_some_and(|s| s.negotiated() >= 0x0304);
        let read = match h[0] {
            content::CHANGE_CIPHER_SPEC => true,
            content::HANDSHAKE | content::ALERT => !side.ccs || tls13,
            _ => false,
        };
        if !read {
            side.skip = len;
            side.buf.clear();
            if h[0] == content::ALERT {
                // After ChangeCipherSpec an alert is encrypted: level and description are
                // hidden. Sent instead of the side's Finished it ends the handshake; after
                // it, it is the close_notify of a connection whose other side went unseen.
                if side.encrypted == 0 {
                    self.tx.encrypted_alert = true;
                }
            } else if tls13 && h[0] == content::APPLICATION_DATA && len <= MAX_SEALED_ALERT {
                // TLS 1.3 hides alerts in application data records, but one is short: two
                // bytes, the inner type and the AEAD tag. A Finished is at least 32 + 17.
                if side.encrypted == 0 {
                    self.tx.encrypted_alert = true;
                }
            } else if side.ccs || (h[0] == content::APPLICATION_DATA && tls13) {
                side.encrypted += 1;
            }
            return false;
        }
        true
    }

    fn start(&mut self, ts: i64) {
        if !self.started {
            self.started = true;
            self.tx.start_ns = ts;
        }
    }

    fn record(&mut self, server: bool, ts: i64, kind: u8, body: &[u8], st: &mut ConnStats) {
        match kind {
            content::CHANGE_CIPHER_SPEC => {
                let side = if server {
                    &mut self.server
                } else {
                    &mut self.client
                };
                side.ccs = true;
                // An abbreviated (resumed) TLS <= 1.2 handshake: the server finishes first
                // (RFC 5246 7.3, figure 2). TLS 1.3's compatibility CCS says nothing.
                let tls12 = self
                    .tx
                    .server
                    .as_ref()
                    .is_some_and(|s| s.negotiated() < 0x0304);
                if server && tls12 && !self.client.ccs && !self.server.full_handshake {
                    self.tx.resumed = true;
                }
            }
            content::ALERT => {
                if body.len() >= 2 && self.tx.alert.is_none_or(|a| a.level != 2) {
                    self.tx.alert = Some(Alert {
                        level: body[0],
                        description: body[1],
                        from_server: server,
                    });
                }
                self.tx.end_ns = ts;
            }
            content::HANDSHAKE => self.handshake_bytes(server, ts, body, st),
            _ => {}
        }
    }

    fn handshake_bytes(&mut self, server: bool, ts: i64, mut body: &[u8], st: &mut ConnStats) {
        let max = self.limits.max_message_bytes;
        loop {
            let side = if server {
                &mut self.server
            } else {
                &mut self.client
            };
            if side.hs_skip > 0 {
                let n = side.hs_skip.min(body.len());
                side.hs_skip -= n;
                let leaf = side.cert_prefix.as_mut().and_then(|p| {
                    let room = max.saturating_sub(p.len()).min(n);
                    p.extend_from_slice(&body[..room]);
                    hello::leaf_prefix(p)
                });
                let give_up = leaf.is_none()
                    && (side.hs_skip == 0
                        || side.cert_prefix.as_ref().is_some_and(|p| p.len() >= max));
                // The leaf itself is longer than the limit: its first bytes still name whom
                // it was issued to and by whom.
                let partial = give_up
                    .then(|| side.cert_prefix.as_deref()?.get(6..))
                    .flatten()
                    .and_then(x509::parse_prefix);
                if leaf.is_some() || give_up {
                    side.cert_prefix = None;
                }
                body = &body[n..];
                if let Some(c) = partial {
                    *self.tx.certificate_of(server) = Some(c);
                }
                if let Some(leaf) = leaf {
                    match x509::parse(&leaf) {
                        Some(c) => *self.tx.certificate_of(server) = Some(c),
                        None => st.parse_errors += 1,
                    }
                    continue;
                }
            }
            if body.is_empty() && side.hs.len() < 4 {
                return;
            }
            // Take only what completes the current message, so an oversized one is seen
            // from its header before its body is buffered.
            let need = if side.hs.len() < 4 {
                4 - side.hs.len()
            } else {
                let len =
                    (side.hs[1] as usize) << 16 | (side.hs[2] as usize) << 8 | side.hs[3] as usize;
                4 + len - side.hs.len()
            };
            let n = need.min(body.len());
            side.hs.extend_from_slice(&body[..n]);
            body = &body[n..];
            if side.hs.len() < 4 {
                return;
            }
            let len =
                (side.hs[1] as usize) << 16 | (side.hs[2] as usize) << 8 | side.hs[3] as usize;
            if server && (message::CERTIFICATE..=message::SERVER_HELLO_DONE).contains(&side.hs[0]) {
                side.full_handshake = true;
            }
            if len > max {
                st.oversized += 1;
                side.hs_skip = len;
                // A certificate chain past the limit still starts with the sender's own
                // certificate, usually a few KiB: that much is kept to read it.
                if side.hs[0] == message::CERTIFICATE && self.tx.certificate_of(server).is_none() {
                    side.cert_prefix = Some(Vec::new());
                }
                side.hs.clear();
                continue;
            }
            if side.hs.len() < 4 + len {
                if body.is_empty() {
                    return;
                }
                continue;
            }
            let msg = std::mem::take(&mut side.hs);
            self.message(server, ts, msg[0], &msg[4..], st);
            let side = if server {
                &mut self.server
            } else {
                &mut self.client
            };
            side.hs = msg;
            side.hs.clear();
        }
    }

    fn message(&mut self, server: bool, ts: i64, kind: u8, body: &[u8], st: &mut ConnStats) {
        match (server, kind) {
            (false, message::CLIENT_HELLO) => {
                self.start(ts);
                // After a HelloRetryRequest the client says hello again; the first one is
                // the client's fingerprint.
                if self.tx.client.is_none() {
                    match hello::client_hello(body) {
                        Some(h) => self.tx.client = Some(h),
                        None => st.parse_errors += 1,
                    }
                }
            }
            (true, message::SERVER_HELLO) => {
                self.start(ts);
                match hello::server_hello(body) {
                    Some(h) => {
                        self.tx.hello_retry |= h.retry;
                        if h.psk && h.negotiated() >= 0x0304 {
                            self.tx.resumed = true;
                        }
                        self.tx.server = Some(h);
                    }
                    None => st.parse_errors += 1,
                }
            }
            // The client sends its Certificate only when asked (RFC 5246 7.4.6), possibly
            // empty: an empty list is no certificate, not an error.
            (_, message::CERTIFICATE) if self.tx.certificate_of(server).is_none() => {
                let Some(leaf) = hello::leaf_certificate(body) else {
                    if server || !hello::empty_certificate_list(body) {
                        st.parse_errors += 1;
                    }
                    return;
                };
                match x509::parse(leaf) {
                    Some(c) => *self.tx.certificate_of(server) = Some(c),
                    None => st.parse_errors += 1,
                }
            }
            _ => {}
        }
    }

    /// Reports the handshake when a complete record settled it.
    fn check(&mut self, ts: i64, out: &mut Vec<Handshake>) {
        if self.tx.alert.is_some_and(|a| a.level == 2) || self.tx.encrypted_alert {
            self.report(ts, Some(Unfinished::Alert), out);
            return;
        }
        let Some(s) = &self.tx.server else { return };
        if s.retry {
            return;
        }
        // TLS 1.3 needs the server's encrypted flight and the client's Finished; TLS <= 1.2
        // a Finished (encrypted, after ChangeCipherSpec) from both.
        if self.client.encrypted > 0 && self.server.encrypted > 0 {
            self.tx.established = true;
            self.report(ts, None, out);
        }
    }

    fn report(&mut self, ts: i64, why: Option<Unfinished>, out: &mut Vec<Handshake>) {
        if self.reported || !self.started {
            return;
        }
        self.reported = true;
        let mut tx = std::mem::take(&mut self.tx);
        tx.end_ns = tx.end_ns.max(ts).max(tx.start_ns);
        tx.unfinished = why;
        out.push(tx);
        self.client = Side::default();
        self.server = Side::default();
    }

    /// A hole of `n` bytes in one direction. Inside an encrypted record it is passed over
    /// exactly; elsewhere the record boundaries are lost and that direction is given up.
    pub fn gap(&mut self, server: bool, n: u32, st: &mut ConnStats) {
        if self.reported {
            return;
        }
        let side = if server {
            &mut self.server
        } else {
            &mut self.client
        };
        if side.dead {
            return;
        }
        let n = n as usize;
        if side.skip >= n && side.buf.is_empty() {
            side.skip -= n;
            return;
        }
        st.gaps += 1;
        side.dead = true;
        side.buf = Vec::new();
        side.hs = Vec::new();
        self.tx.gap = true;
    }

    /// The connection ended (FIN, RST, end of capture): a handshake not yet reported is. A
    /// side that sent plaintext and never a record was not TLS: counted, as a stream that
    /// does not start like TLS at all is.
    pub fn close(&mut self, ts: i64, st: &mut ConnStats, out: &mut Vec<Handshake>) {
        for side in [&self.client, &self.server] {
            if side.plaintext > 0 && !side.seen_bytes && !side.dead {
                st.parse_errors += 1;
            }
        }
        self.report(ts.max(self.last_ns), Some(Unfinished::Closed), out);
    }

    /// Whether `expire(deadline_ns)` would report the handshake.
    pub fn expires(&self, deadline_ns: i64) -> bool {
        self.started && !self.reported && self.tx.start_ns < deadline_ns
    }

    /// A handshake that started before `deadline_ns` and is still going is reported.
    pub fn expire(&mut self, deadline_ns: i64, out: &mut Vec<Handshake>) {
        if self.expires(deadline_ns) {
            self.report(self.last_ns, Some(Unfinished::Timeout), out);
        }
    }
}

/// Whether `data`, at a side's first byte, can start a record: a content type (RFC 8446 5.1)
/// and major version 3, or from the client an SSLv2-compatible ClientHello (RFC 5246 E.2: the
/// length's high bit set, then type 1). Text never starts so.
fn record_start(server: bool, data: &[u8]) -> bool {
    match data {
        [t, rest @ ..] if (content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT).contains(t) => {
            rest.first().is_none_or(|&v| v == 3)
        }
        [h, _, rest @ ..] if !server && h & 0x80 != 0 => rest.first().is_none_or(|&t| t == 1),
        [h] => !server && h & 0x80 != 0,
        _ => false,
    }
}
