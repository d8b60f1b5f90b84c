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

/// The protocol version a message says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// A simple request (`GET /path` and nothing else) or a response without a status line.
    V09,
    V10,
    #[default]
    V11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V09 => "0.9",
            Version::V10 => "1.0",
            Version::V11 => "1.1",
        }
    }

    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::V10
        } else {
            Version::V11
        }
    }
}

/// What is wrong with a request line that was still read as a request
/// (`http.request.anomalies`), or with the framing of a message (from `INVALID_CONTENT_LENGTH`
/// on, on requests and on responses: `http.response.anomalies`; the last two on responses only).
pub mod anomaly {
    /// A method token outside the IANA HTTP method registry.
    pub const UNKNOWN_METHOD: &str = "unknown_method";
    /// No `HTTP/x.y` after the target, on a method other than `GET` (HTTP/0.9 has only `GET`)
    /// or on a `GET` that field lines follow (an HTTP/0.9 request has none).
    pub const MISSING_VERSION: &str = "missing_version";
    /// White space inside the request target.
    pub const SPACE_IN_TARGET: &str = "space_in_target";
    /// Nothing between the method and the version (`GET  HTTP/1.1`).
    pub const MISSING_TARGET: &str = "missing_target";
    /// A version other than HTTP/1.0 and HTTP/1.1 on a request line.
    pub const INVALID_VERSION: &str = "invalid_version";
    /// A request line or header RFC 9112 rejects for another reason (a control byte in the
    /// target, a bad header name...).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// A Content-Length that is not one decimal number (`-3`, `+3`, past `u64::MAX`), or
    /// several that disagree: RFC 9112 section 6.3 (5) makes the framing an unrecoverable
    /// error, so nothing after this message's head is parsed on its side of the connection.
    pub const INVALID_CONTENT_LENGTH: &str = "invalid_content_length";
    /// Both Transfer-Encoding and Content-Length: Transfer-Encoding decides the framing
    /// (RFC 9112 section 6.3 (3)), but a sender doing this may be smuggling a request past a
    /// hop that reads Content-Length.
    pub const CONTENT_LENGTH_WITH_TRANSFER_ENCODING: &str = "content_length_with_transfer_encoding";
    /// The chunked body breaks the chunked syntax (RFC 9112 section 7.1): the message ends
    /// there and the parser looks for the next one.
    pub const INVALID_CHUNK: &str = "invalid_chunk";
    /// The body stopped before the length its head announced: the server answered and moved
    /// on (a request's), or the connection or the capture ended; or a TCP gap took some of it.
    pub const BODY_INCOMPLETE: &str = "body_incomplete";
    /// A Content-Length on a response that RFC 9110 section 8.6 forbids it on: a 1xx (an
    /// interim one is listed on the final response after it), a 204, a 2xx to CONNECT. It
    /// frames nothing (RFC 9112 section 6.3 (1), (2)), but a hop that reads it desynchronises.
    pub const CONTENT_LENGTH_NOT_ALLOWED: &str = "content_length_not_allowed";
    /// A Transfer-Encoding on a response that RFC 9112 section 6.1 forbids it on: a 1xx (an
    /// interim one is listed on the final response after it), a 204, a 2xx to CONNECT. It
    /// frames nothing either (section 6.3 (1), (2)): a hop that reads a chunked body there
    /// takes the next response for it.
    pub const TRANSFER_ENCODING_NOT_ALLOWED: &str = "transfer_encoding_not_allowed";
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestHead {
    pub method: CompactString,
    pub target: CompactString,
    pub version: Version,
    pub host: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    pub content_length: Option<u64>,
    /// A Content-Length could not be read, or two disagree (`anomaly::INVALID_CONTENT_LENGTH`):
    /// without a Transfer-Encoding the end of this request is unknown.
    pub length_invalid: bool,
    /// Chunked is the final transfer coding: the body is read chunk by chunk.
    pub chunked: bool,
    /// A Transfer-Encoding was given (it overrides Content-Length, RFC 9112 section 6.3).
    pub transfer_coded: bool,
    pub expect_continue: bool,
    pub content_type: Option<CompactString>,
    pub real_ip: Option<String>,
    /// All headers, in order, when the config asks for them.
    pub headers: Headers,
    /// Empty for a well-formed request; else the `anomaly` names that apply.
    pub anomalies: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseHead {
    pub version: Version,
    /// 0 for an HTTP/0.9 response, which has no status line.
    pub status: u16,
    pub content_length: Option<u64>,
    /// A Content-Length could not be read, or two disagree: without a Transfer-Encoding the
    /// end of this response is unknown (RFC 9112 section 6.3 (5)).
    pub length_invalid: bool,
    /// Chunked is the final transfer coding: the body is read chunk by chunk.
    pub chunked: bool,
    /// A Transfer-Encoding was given: without chunked last, the body ends with the
    /// connection (RFC 9112 section 6.3, rule 4), whatever Content-Length says.
    pub transfer_coded: bool,
    pub content_type: Option<CompactString>,
    pub close: bool,
    pub headers: Headers,
    /// Empty for a well-framed response; else the `anomaly` names that apply
    /// (`http.response.anomalies`). Set where the framing is decided, since a response that
    /// has no body (to HEAD; 1xx, 204, 304) breaks no framing rule whatever its headers say.
    pub anomalies: Vec<&'static str>,
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
        return compact(unsafe { std::str::from_utf8_unchecked(v) });
    }
    match std::str::from_utf8(v) {
        Ok(s) => s.into(),
        Err(_) => String::from_utf8_lossy(v).into(),
    }
}

/// A header value as text: `text`, or for a value the one-pass reader (`head.rs`) checked
/// (`plain`: printable ASCII and tabs, no white space at either end, so `text` would change
/// nothing) the bytes as they are: the trim and the ASCII check were a third of a header's
/// cost, three times a transaction.
#[inline(always)]
fn value_text(v: &[u8], plain: bool) -> CompactString {
    if plain {
        debug_assert!(v.is_ascii() && v.trim_ascii().len() == v.len());
        // SAFETY: `plain` values are ASCII: `head::headers` let only 0x20..=0x7e and tabs in.
        return compact(unsafe { std::str::from_utf8_unchecked(v) });
    }
    text(v)
}

/// `s` as a `CompactString`, written in place when it fits inline (shorter than the string
/// itself: 24 bytes on 64-bit targets) as two overlapping moves. `From<&str>` copies with a
/// call to `memcpy`, about 35 instructions under callgrind, and a head has a method, a target
/// and three or four values: most of them a dozen bytes.
#[inline(always)]
fn compact(s: &str) -> CompactString {
    let n = s.len();
    if n >= std::mem::size_of::<CompactString>() {
        return s.into();
    }
    let mut c = CompactString::const_new("");
    // SAFETY: `c` is inline (`const_new` of a short string), so its buffer is its
    // `size_of` bytes, more than `n`: `copy_bytes` writes exactly `n` bytes there, copied
    // from a `str` (UTF-8), before `set_len` makes them the string.
    unsafe {
        let buf = c.as_mut_bytes();
        debug_assert!(buf.len() > n);
        crate::wire::out::copy_bytes(s.as_ptr(), buf.as_mut_ptr(), n);
        c.set_len(n);
    }
    c
}

/// A Content-Length value: decimal digits between optional white space.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    // Nineteen digits are below `u64::MAX`: no overflow to check for on the way.
    if v.len() <= 19 {
        let mut n = 0u64;
        for &b in v {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + u64::from(d);
        }
        return Some(n);
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// One Content-Length field line of a message, against those before it (`length`, and
/// `invalid` once one was). RFC 9110 section 8.6 lets a recipient take a list of one repeated
/// value (`3, 3`, or the same field twice) as that value; any other repetition, or a value
/// that is not decimal digits within `u64`, is invalid (RFC 9112 section 6.3 (5)), and stays
/// so whatever field lines follow.
fn content_length(length: &mut Option<u64>, invalid: &mut bool, v: &[u8]) {
    let mut values = v.split(|&b| b == b',').map(parse_length);
    let first = values.next().flatten();
    let agreed = first.filter(|n| values.all(|m| m == Some(*n)));
    match (agreed, *length) {
        (Some(n), None) if !*invalid => *length = Some(n),
        (Some(n), Some(m)) if n == m => {}
        _ => {
            *length = None;
            *invalid = true;
        }
    }
}

/// Whether header `name` is `lower` (a lower-case name of letters and `-`) in any case, eight
/// bytes at a time: every header of every message is compared with up to six such names, and
/// a byte at a time that was a tenth of the cost of reading a response head.
#[inline(always)]
fn name_is(name: &str, lower: &'static str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (n, t) = (name.as_bytes(), lower.as_bytes());
    debug_assert!(
        t.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'),
        "{lower}"
    );
    if n.len() != t.len() {
        return false;
    }
    if n.len() < 8 {
        return n.eq_ignore_ascii_case(t);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // A letter of `lower` matches with the case bit (0x20) set in `name`'s byte; any other
    // byte must be the same. A byte past ASCII never matches: `lower` has none.
    let same = |at: usize| {
        let tw = word(t, at);
        let y = tw | HIGH;
        let letters = y.wrapping_sub(ONES * 0x61) & !y.wrapping_sub(ONES * 0x7b) & !tw & HIGH;
        word(n, at) | letters >> 2 == tw
    };
    let last = n.len() - 8;
    (0..last).step_by(8).all(same) && same(last)
}

/// The last transfer coding a Transfer-Encoding value lists (its parameters left out), `None`
/// for an empty list. Header lines add up to one list (RFC 9110 section 5.3), so the last
/// line's last coding is the message's final one.
fn final_coding(v: &[u8]) -> Option<&[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.split(|&b| b == b';').next().unwrap_or(t).trim_ascii())
        .rfind(|t| !t.is_empty())
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The first `n` header slots, which the head parser wrote.
///
/// # Safety
/// `hs[..n]` must have been written.
unsafe fn written<'a, 'b>(
    hs: &'a [std::mem::MaybeUninit<httparse::Header<'b>>],
    n: usize,
) -> &'a [httparse::Header<'b>] {
    // SAFETY: the caller's promise; `MaybeUninit<T>` has `T`'s layout.
    unsafe { std::slice::from_raw_parts(hs.as_ptr().cast(), n) }
}

pub fn parse_request(buf: &[u8], opts: &HeadOptions<'_>) -> Status<RequestHead> {
    let mut head = RequestHead::default();
    match parse_request_into(buf, opts, &mut head) {
        Status::Complete((), n) => Status::Complete(head, n),
        Status::Partial => Status::Partial,
        Status::Error => Status::Error,
    }
}

/// `parse_request` into a head already where it is kept (a new transaction's, on the heap):
/// returned, the head was copied four times on its way there (two hundred bytes each, a call
/// to `memcpy` each). `head` must be `RequestHead::default()`; after anything but
/// `Complete` it holds a part of a head, to be dropped.
pub fn parse_request_into(
    buf: &[u8],
    opts: &HeadOptions<'_>,
    head: &mut RequestHead,
) -> Status<()> {
    // Uninitialised slots: zeroing 96 headers per message cost more than parsing it.
    let mut hs = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    // Nearly every head is whole and plain: read in one pass, else by `httparse`.
    if let Some(r) = super::head::request(buf, &mut hs) {
        head.method = compact(r.method);
        head.target = compact(r.target);
        head.version = Version::from_minor(r.minor);
        if !registered_method(r.method.as_bytes()) {
            head.anomalies.push(anomaly::UNKNOWN_METHOD);
        }
        // SAFETY: `head::request` wrote the first `r.headers` slots.
        request_headers(head, unsafe { written(&hs, r.headers) }, opts, true);
        return Status::Complete((), r.len);
    }
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, &mut hs) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Status::Partial,
        Err(_) => {
            return match parse_lenient_request(buf, opts) {
                Status::Complete(h, n) => {
                    *head = h;
                    Status::Complete((), n)
                }
                Status::Partial => Status::Partial,
                Status::Error => Status::Error,
            }
        }
    };
    let method = req.method.unwrap_or("");
    head.method = method.into();
    head.target = req.path.unwrap_or("").into();
    head.version = Version::from_minor(req.version.unwrap_or(1));
    if !registered_method(method.as_bytes()) {
        head.anomalies.push(anomaly::UNKNOWN_METHOD);
    }
    request_headers(head, req.headers, opts, false);
    Status::Complete((), n)
}

/// `plain`: the headers come from the one-pass reader (see `value_text`).
fn request_headers(
    head: &mut RequestHead,
    headers: &[httparse::Header<'_>],
    opts: &HeadOptions<'_>,
    plain: bool,
) {
    for h in headers {
        let name = h.name;
        if name_is(name, "host") {
            head.host = Some(value_text(h.value, plain));
        } else if name_is(name, "user-agent") {
            head.user_agent = Some(value_text(h.value, plain));
        } else if name_is(name, "content-length") {
            content_length(&mut head.content_length, &mut head.length_invalid, h.value);
        } else if name_is(name, "transfer-encoding") {
            if let Some(last) = final_coding(h.value) {
                head.transfer_coded = true;
                head.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name_is(name, "expect") {
            head.expect_continue = has_token(h.value, "100-continue");
        } else if name_is(name, "content-type") {
            head.content_type = Some(value_text(h.value, plain));
        }
        if let Some(rip) = opts.real_ip_header {
            if name.eq_ignore_ascii_case(rip) {
                head.real_ip = value_text(h.value, plain)
                    .split(',')
                    .next()
                    .map(|s| s.trim().to_owned());
            }
        }
        if opts.keep_headers {
            head.headers
                .push((name.to_ascii_lowercase(), value_text(h.value, plain).into()));
        }
    }
    // A request whose body length cannot be read: RFC 9112 section 6.3 has the server
    // answer 400 and close.
    if head.transfer_coded && !head.chunked && !head.anomalies.contains(&anomaly::INVALID_REQUEST) {
        head.anomalies.push(anomaly::INVALID_REQUEST);
    }
    if head.length_invalid {
        head.anomalies.push(anomaly::INVALID_CONTENT_LENGTH);
    }
    if head.transfer_coded && (head.content_length.is_some() || head.length_invalid) {
        head.anomalies
            .push(anomaly::CONTENT_LENGTH_WITH_TRANSFER_ENCODING);
    }
    // RFC 9112 section 3.2.2: a target in absolute form (a request to a proxy) names the
    // host, and the Host header is to be ignored then.
    if let Some(authority) = target_authority(&head.target) {
        head.host = Some(authority.into());
    }
}

/// The host and port of an absolute-form target (`http://user@Host:8080/path`: `Host:8080`,
/// the user information left out), or `None` for any other form or an empty authority.
fn target_authority(target: &str) -> Option<&str> {
    // The scheme ends at the first colon (it has none), so `://` there or nowhere: a
    // `split_once("://")` built a substring searcher for every request, 2.7% of `trawl pcap`.
    let colon = memchr::memchr(b':', target.as_bytes())?;
    let (scheme, rest) = (&target[..colon], target[colon..].strip_prefix("://")?);
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// Longest request line read by the lenient parser.
const MAX_REQUEST_LINE: usize = 16 * 1024;

/// A request line RFC 9112 rejects but servers answer (and attacks use): spaces in the target,
/// a missing or odd version, an HTTP/0.9 simple request. Read as a request with its
/// anomalies, not dropped. What is not a request line at all stays an error: the method must
/// be an upper-case token, and a line without a version must start with a registered method
/// or be followed by a well-formed header section.
fn parse_lenient_request(buf: &[u8], opts: &HeadOptions<'_>) -> Status<RequestHead> {
    // Empty lines before a request line are allowed (RFC 9112 section 2.2).
    let lead = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let buf = &buf[lead..];
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_REQUEST_LINE || !method_like(buf) {
            Status::Error
        } else {
            Status::Partial
        };
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let Some(sp) = memchr::memchr(b' ', line) else {
        return Status::Error;
    };
    let method = &line[..sp];
    if !method_token(method) {
        return Status::Error;
    }
    let rest = line[sp..].trim_ascii();
    let mut anomalies = Vec::new();
    // The version is the last word when it starts with `HTTP/`, whatever precedes it: a
    // target with spaces, or none at all (`GET  HTTP/1.1`); cut short (`HTTP/1.`), it is
    // still a version, and headers follow.
    let last = rest
        .iter()
        .rposition(|b| matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    let (target, version, headers_at) = if rest[last..].starts_with(b"HTTP/") {
        let version = match &rest[last..] {
            b"HTTP/1.0" => Version::V10,
            b"HTTP/1.1" => Version::V11,
            _ => {
                anomalies.push(anomaly::INVALID_VERSION);
                Version::V11
            }
        };
        (rest[..last].trim_ascii(), version, Some(nl + 1))
    } else {
        // HTTP/0.9: `GET target`, answered by the body alone; anything else without a
        // version is a broken request line. An unregistered word without a version is taken
        // for a method only when field lines as RFC 9112 writes them follow, up to the empty
        // line: other protocols' commands (`EHLO host`, `USER bob`) have none.
        if !registered_method(method) {
            match header_section_follows(&buf[nl + 1..]) {
                Some(true) => {}
                Some(false) => return Status::Error,
                None => return Status::Partial,
            }
        }
        if method != b"GET" {
            anomalies.push(anomaly::MISSING_VERSION);
        }
        (rest, Version::V09, None)
    };
    if target.is_empty() {
        if version == Version::V09 {
            return Status::Error;
        }
        anomalies.push(anomaly::MISSING_TARGET);
    }
    if target.iter().any(|b| matches!(b, b' ' | b'\t')) {
        anomalies.push(anomaly::SPACE_IN_TARGET);
    }
    if !registered_method(method) {
        anomalies.push(anomaly::UNKNOWN_METHOD);
    }
    let mut head = RequestHead {
        method: text(method),
        target: text(target),
        version,
        ..Default::default()
    };
    let n = match headers_at {
        // A simple request has no headers, but a client may send header lines after a
        // version-less request line anyway: when a whole header section came with the line,
        // it is read (as libhtp and Zeek do); else the line alone is the request.
        None => match lenient_headers(&buf[nl + 1..]) {
            Some((used, headers)) if !headers.is_empty() => {
                // A simple request is `GET target` alone (RFC 1945 4.1): a GET with field
                // lines lost its version (`GET /HTTP/1.1`, no space before it).
                if method == b"GET" {
                    head.anomalies.push(anomaly::MISSING_VERSION);
                }
                request_headers(&mut head, &headers, opts, false);
                nl + 1 + used
            }
            _ => nl + 1,
        },
        Some(at) => {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&buf[at..], &mut hs) {
                Ok(httparse::Status::Complete((used, headers))) => {
                    request_headers(&mut head, headers, opts, false);
                    at + used
                }
                Ok(httparse::Status::Partial) => return Status::Partial,
                Err(_) => match lenient_headers(&buf[at..]) {
                    Some((used, headers)) => {
                        if !anomalies.contains(&anomaly::INVALID_REQUEST) {
                            anomalies.push(anomaly::INVALID_REQUEST);
                        }
                        request_headers(&mut head, &headers, opts, false);
                        at + used
                    }
                    None if buf.len() - at > MAX_REQUEST_LINE * 4 => return Status::Error,
                    None => return Status::Partial,
                },
            }
        }
    };
    if anomalies.is_empty()
        && version != Version::V09
        && !head.anomalies.contains(&anomaly::INVALID_REQUEST)
    {
        // httparse refused it for a reason not named above (a control byte in the target...).
        anomalies.push(anomaly::INVALID_REQUEST);
    }
    anomalies.append(&mut head.anomalies);
    head.anomalies = anomalies;
    Status::Complete(head, lead + n)
}

/// The header section of a request whose request line was already lenient, when httparse
/// refuses a line of it (no colon, a space in the name...): the well-formed fields, the others
/// left out, up to the empty line. `None` until that empty line has arrived.
fn lenient_headers(buf: &[u8]) -> Option<(usize, Vec<httparse::Header<'_>>)> {
    let mut headers = Vec::new();
    let mut at = 0;
    loop {
        let nl = memchr::memchr(b'\n', &buf[at..])? + at;
        let line = buf[at..nl].strip_suffix(b"\r").unwrap_or(&buf[at..nl]);
        at = nl + 1;
        if line.is_empty() {
            return Some((at, headers));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        if headers.len() < MAX_HEADERS && !name.is_empty() && name.iter().all(|&b| tchar(b)) {
            if let Ok(name) = std::str::from_utf8(name) {
                headers.push(httparse::Header {
                    name,
                    value: line[colon + 1..].trim_ascii(),
                });
            }
        }
    }
}

/// Whether `after` (what follows a version-less request line) starts with a header section
/// as RFC 9112 writes it: one field line or more, then the empty line. `None` while more
/// bytes may complete one.
fn header_section_follows(after: &[u8]) -> Option<bool> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(after, &mut hs) {
        Ok(httparse::Status::Complete((_, headers))) => Some(!headers.is_empty()),
        Ok(httparse::Status::Partial) if after.len() <= MAX_REQUEST_LINE * 4 => None,
        _ => Some(false),
    }
}

/// A token character (RFC 9110 section 5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn parse_response(buf: &[u8], opts: &HeadOptions<'_>) -> Status<ResponseHead> {
    let mut hs = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let (minor, code, headers, n, plain) = match super::head::response(buf, &mut hs) {
        // SAFETY: `head::response` wrote the first `r.headers` slots.
        Some(r) => (
            r.minor,
            r.code,
            unsafe { written(&hs, r.headers) },
            r.len,
            true,
        ),
        None => match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut hs)
        {
            Ok(httparse::Status::Complete(n)) => (
                resp.version.unwrap_or(1),
                resp.code.unwrap_or(0),
                &*resp.headers,
                n,
                false,
            ),
            Ok(httparse::Status::Partial) => return Status::Partial,
            Err(_) => return Status::Error,
        },
    };
    let mut head = ResponseHead {
        version: Version::from_minor(minor),
        status: code,
        close: minor == 0,
        ..Default::default()
    };
    for h in headers {
        let name = h.name;
        if name_is(name, "content-length") {
            content_length(&mut head.content_length, &mut head.length_invalid, h.value);
        } else if name_is(name, "transfer-encoding") {
            if let Some(last) = final_coding(h.value) {
                head.transfer_coded = true;
                head.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name_is(name, "content-type") {
            head.content_type = Some(value_text(h.value, plain));
        } else if name_is(name, "connection") {
            if has_token(h.value, "close") {
                head.close = true;
            } else if has_token(h.value, "keep-alive") {
                head.close = false;
            }
        }
        if opts.keep_headers {
            head.headers
                .push((name.to_ascii_lowercase(), value_text(h.value, plain).into()));
        }
    }
    Status::Complete(head, n)
}

mod body;
mod start;
pub use body::{Body, BodyError, Framing};
pub use start::{find_message_start, partial_request_line, Sync};
use start::{method_like, method_token, registered_method};

#[cfg(test)]
mod tests;
