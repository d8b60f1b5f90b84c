//! Incremental HTTP/1.x parsing: message heads with `httparse` (returning Partial / Complete /
//! Error, the caller owns and advances the buffer), body framing (Content-Length, chunked,
//! until close), and finding the start of the next message after a gap or garbage.

/// Outcome of parsing a head from the bytes buffered so far.
#[derive(Debug, PartialEq)]
pub enum Status<T> {
    /// More bytes are needed.
    Partial,
    /// A head, and how many bytes it took.
    Complete(T, usize),
    Error,
}

const MAX_HEADERS: usize = 96;

use compact_str::CompactString;

/// Header values a transaction keeps, by lower-case name.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestHead {
    pub method: CompactString,
    pub target: CompactString,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub host: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub expect_continue: bool,
    pub content_type: Option<CompactString>,
    pub real_ip: Option<String>,
    /// All headers, in order, when the config asks for them.
    pub headers: Headers,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseHead {
    pub minor: u8,
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub content_type: Option<CompactString>,
    pub close: bool,
    pub headers: Headers,
}

/// What the head parsers extract besides the fixed fields.
pub struct HeadOptions<'a> {
    /// Keep every header (`send_headers`).
    pub keep_headers: bool,
    /// Lower-case name of the header carrying the client's address (`real_ip_header`).
    pub real_ip_header: Option<&'a str>,
}

/// A header value as text, without the optional white space (RFC 9110 OWS: spaces and tabs)
/// around it. Values are nearly always ASCII: checking that a word at a time costs a tenth of
/// the general UTF-8 validator on such short strings; anything else goes through it (lossily).
fn text(v: &[u8]) -> CompactString {
    let v = v.trim_ascii();
    if v.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return unsafe { std::str::from_utf8_unchecked(v) }.into();
    }
    match std::str::from_utf8(v) {
        Ok(s) => s.into(),
        Err(_) => String::from_utf8_lossy(v).into(),
    }
}

/// A Content-Length value: decimal digits between optional white space.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

pub fn parse_request(buf: &[u8], opts: &HeadOptions<'_>) -> Status<RequestHead> {
    // Uninitialised slots: zeroing 96 headers per message cost more than parsing it.
    let mut hs = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, &mut hs) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Status::Partial,
        Err(_) => return Status::Error,
    };
    let mut head = RequestHead {
        method: req.method.unwrap_or("").into(),
        target: req.path.unwrap_or("").into(),
        minor: req.version.unwrap_or(1),
        ..Default::default()
    };
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            head.host = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("user-agent") {
            head.user_agent = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = parse_length(h.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = has_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = has_token(h.value, "100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(text(h.value));
        }
        if let Some(rip) = opts.real_ip_header {
            if name.eq_ignore_ascii_case(rip) {
                head.real_ip = text(h.value).split(',').next().map(|s| s.trim().to_owned());
            }
        }
        if opts.keep_headers {
            head.headers
                .push((name.to_ascii_lowercase(), text(h.value).into()));
        }
    }
    Status::Complete(head, n)
}

pub fn parse_response(buf: &[u8], opts: &HeadOptions<'_>) -> Status<ResponseHead> {
    let mut hs = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut hs)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Status::Partial,
        Err(_) => return Status::Error,
    };
    let minor = resp.version.unwrap_or(1);
    let mut head = ResponseHead {
        minor,
        status: resp.code.unwrap_or(0),
        close: minor == 0,
        ..Default::default()
    };
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = parse_length(h.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = has_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                head.close = true;
            } else if has_token(h.value, "keep-alive") {
                head.close = false;
            }
        }
        if opts.keep_headers {
            head.headers
                .push((name.to_ascii_lowercase(), text(h.value).into()));
        }
    }
    Status::Complete(head, n)
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the chunk-size line.
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailer,
}

/// Consumes a body incrementally; counts its bytes on the wire and hands decoded data on.
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    /// Partial chunk-size or trailer line (bounded).
    line: Vec<u8>,
    /// Whether the last line consumed in `Trailer` state was non-empty.
    pub wire_bytes: u64,
    pub done: bool,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub struct BodyError;

impl Body {
    pub fn new(framing: Framing) -> Body {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Body {
            framing,
            remaining,
            chunk: Chunk::Size,
            line: Vec::new(),
            wire_bytes: 0,
            done: matches!(framing, Framing::None | Framing::Length(0)),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Consumes from `data`; returns how many bytes were used (fewer once the body is done).
    /// Decoded body bytes go to `content`.
    pub fn feed(
        &mut self,
        data: &[u8],
        content: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BodyError> {
        if self.done {
            return Ok(0);
        }
        let used = match self.framing {
            Framing::None => 0,
            Framing::UntilClose => {
                content(data);
                data.len()
            }
            Framing::Length(_) => {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                content(&data[..n]);
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.done = true;
                }
                n
            }
            Framing::Chunked => self.chunked(data, content)?,
        };
        self.wire_bytes += used as u64;
        Ok(used)
    }

    /// Bytes that were lost in a gap of `n`: absorbed when the framing allows (inside a body of
    /// known size or until close); false when the parser must resynchronise.
    pub fn skip(&mut self, n: u64) -> bool {
        match (self.framing, self.chunk) {
            (Framing::UntilClose, _) => {
                self.wire_bytes += n;
                true
            }
            (Framing::Length(_), _) if n <= self.remaining => {
                self.remaining -= n;
                self.wire_bytes += n;
                if self.remaining == 0 {
                    self.done = true;
                }
                true
            }
            (Framing::Chunked, Chunk::Data(left)) if n <= left => {
                self.chunk = if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                };
                self.wire_bytes += n;
                true
            }
            _ => false,
        }
    }

    /// The connection closed: a body read until close is complete.
    pub fn close(&mut self) {
        if self.framing == Framing::UntilClose {
            self.done = true;
        }
    }

    fn chunked(&mut self, data: &[u8], content: &mut dyn FnMut(&[u8])) -> Result<usize, BodyError> {
        let mut at = 0;
        while at < data.len() && !self.done {
            match self.chunk {
                Chunk::Data(left) => {
                    let n = (left.min((data.len() - at) as u64)) as usize;
                    content(&data[at..at + n]);
                    at += n;
                    self.chunk = if n as u64 == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    };
                }
                Chunk::Size | Chunk::DataEnd | Chunk::Trailer => {
                    let rest = &data[at..];
                    let Some(nl) = memchr::memchr(b'\n', rest) else {
                        if self.line.len() + rest.len() > MAX_LINE {
                            return Err(BodyError);
                        }
                        self.line.extend_from_slice(rest);
                        at = data.len();
                        continue;
                    };
                    if self.line.len() + nl > MAX_LINE {
                        return Err(BodyError);
                    }
                    self.line.extend_from_slice(&rest[..=nl]);
                    at += nl + 1;
                    // The line buffer is kept (cleared) for the next line: no allocation per chunk.
                    let trimmed = trim_eol(&self.line);
                    let next = match self.chunk {
                        Chunk::DataEnd => {
                            if !trimmed.is_empty() {
                                return Err(BodyError);
                            }
                            Chunk::Size
                        }
                        Chunk::Size => {
                            let hex = trimmed.split(|b| *b == b';').next().unwrap_or(&[]);
                            let size = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                                .ok_or(BodyError)?;
                            if size == 0 {
                                Chunk::Trailer
                            } else {
                                Chunk::Data(size)
                            }
                        }
                        Chunk::Trailer => {
                            if trimmed.is_empty() {
                                self.done = true;
                            }
                            Chunk::Trailer
                        }
                        Chunk::Data(n) => Chunk::Data(n),
                    };
                    self.chunk = next;
                    self.line.clear();
                }
            }
        }
        Ok(at)
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let Some((last, rest)) = l.split_last() {
        if *last == b'\n' || *last == b'\r' {
            l = rest;
        } else {
            break;
        }
    }
    l
}

/// The method and target of a request line cut short (the connection ended before its end of
/// line): what an HTTP/0.9-style or aborted request still tells.
pub fn partial_request_line(buf: &[u8]) -> Option<RequestHead> {
    let m = METHODS.iter().find(|m| buf.starts_with(m))?;
    let rest = &buf[m.len()..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    let target = std::str::from_utf8(&rest[..end]).ok()?;
    if target.is_empty() {
        return None;
    }
    Some(RequestHead {
        method: String::from_utf8_lossy(&m[..m.len() - 1]).into(),
        target: target.into(),
        minor: 0,
        ..Default::default()
    })
}

/// Methods recognised when looking for the start of a request.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SEARCH ",
    b"REPORT ",
];

/// Where a message could start in `buf`: at its beginning or after a newline. `Some(i)` with
/// a definite start, or the position from which to keep bytes while more may complete one.
#[derive(Debug, PartialEq, Eq)]
pub enum Sync {
    At(usize),
    /// Nothing yet; bytes before this index can be dropped.
    Keep(usize),
}

pub fn find_message_start(buf: &[u8], request: bool) -> Sync {
    let mut pos = 0;
    loop {
        let cand = &buf[pos..];
        let (matched, maybe) = if request {
            let m = METHODS.iter().any(|m| cand.starts_with(m));
            let p = METHODS
                .iter()
                .any(|m| m.starts_with(cand) && cand.len() < m.len());
            (m, p)
        } else {
            let m = cand.starts_with(b"HTTP/1.");
            (m, !m && b"HTTP/1.".starts_with(cand))
        };
        if matched {
            return Sync::At(pos);
        }
        if maybe {
            return Sync::Keep(pos);
        }
        match memchr::memchr(b'\n', cand) {
            Some(nl) => pos += nl + 1,
            None => return Sync::Keep(buf.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_length_is_digits_between_white_space() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b" 1234\t"), Some(1234));
        assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"  ",
            b"12a",
            b"1 2",
            b"-1",
            b"+1",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    const OPTS: HeadOptions<'static> = HeadOptions {
        keep_headers: false,
        real_ip_header: Some("x-forwarded-for"),
    };

    #[test]
    fn request_head_fields() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: curl/8\r\nContent-Length: 5\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.1\r\nExpect: 100-continue\r\n\r\nhello";
        match parse_request(raw, &OPTS) {
            Status::Complete(h, n) => {
                assert_eq!(&raw[n..], b"hello");
                assert_eq!(
                    (h.method.as_str(), h.target.as_str(), h.minor),
                    ("POST", "/a?b=1", 1)
                );
                assert_eq!(h.host.as_deref(), Some("Example.COM:8080"));
                assert_eq!(h.content_length, Some(5));
                assert_eq!(h.real_ip.as_deref(), Some("1.2.3.4"));
                assert!(h.expect_continue);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", &OPTS),
            Status::Partial
        );
        assert_eq!(
            parse_request(b"\x00\x01garbage\r\n\r\n", &OPTS),
            Status::Error
        );
    }

    #[test]
    fn chunked_body_across_pieces() {
        let wire =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 1..wire.len() {
            let mut b = Body::new(Framing::Chunked);
            let mut content = Vec::new();
            let used1 = b
                .feed(&wire[..split], &mut |d| content.extend_from_slice(d))
                .unwrap();
            assert_eq!(used1, split.min(wire.len() - 4));
            let used2 = b
                .feed(&wire[split..], &mut |d| content.extend_from_slice(d))
                .unwrap();
            assert!(b.done);
            assert_eq!(
                used1 + used2,
                wire.len() - 4,
                "stops before the next message"
            );
            assert_eq!(content, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(b.wire_bytes as usize, wire.len() - 4);
        }
    }

    #[test]
    fn length_body_and_gaps() {
        let mut b = Body::new(Framing::Length(10));
        assert_eq!(b.feed(b"abc", &mut |_| {}), Ok(3));
        assert!(b.skip(4));
        assert_eq!(b.feed(b"defXYZ", &mut |_| {}), Ok(3));
        assert!(b.done);
        let mut b = Body::new(Framing::Length(2));
        assert!(!b.skip(3), "a gap longer than the body needs a resync");
    }

    #[test]
    fn cut_request_lines_still_name_method_and_url() {
        let h = partial_request_line(b"GET /x?y").unwrap();
        assert_eq!((h.method.as_str(), h.target.as_str()), ("GET", "/x?y"));
        assert!(partial_request_line(b"GE").is_none());
        assert!(partial_request_line(b"\x16\x03\x01").is_none());
    }

    #[test]
    fn finds_next_message_after_garbage() {
        assert_eq!(
            find_message_start(b"xx\r\nGET / HTTP/1.1", true),
            Sync::At(4)
        );
        assert_eq!(find_message_start(b"junk\nGE", true), Sync::Keep(5));
        assert_eq!(
            find_message_start(b"body\nHTTP/1.1 200", false),
            Sync::At(5)
        );
        assert_eq!(find_message_start(b"no start here", false), Sync::Keep(13));
    }

    proptest! {
        #[test]
        fn heads_and_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), chunked in any::<bool>()) {
            let _ = parse_request(&data, &OPTS);
            let _ = parse_response(&data, &HeadOptions { keep_headers: true, real_ip_header: None });
            let _ = find_message_start(&data, true);
            let _ = find_message_start(&data, false);
            let mut b = Body::new(if chunked { Framing::Chunked } else { Framing::Length(100) });
            let mut seen = 0usize;
            for piece in data.chunks(7) {
                match b.feed(piece, &mut |d| seen += d.len()) {
                    Ok(n) => prop_assert!(n <= piece.len()),
                    Err(_) => break,
                }
                prop_assert!(b.line.len() <= MAX_LINE);
            }
            prop_assert!(seen <= data.len());
        }
    }
}
