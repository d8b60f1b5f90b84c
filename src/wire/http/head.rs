//! The common HTTP/1.x head read in one pass: a whole head, CRLF line ends, printable ASCII,
//! read eight bytes at a time. It reads a strict subset of what `httparse` accepts, with the
//! same result; anything else (`None`) is left to `httparse`, which says Partial or Error.

use httparse::Header;
use std::mem::MaybeUninit;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A request line and its headers: method, target, minor version, header count, head length.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub minor: u8,
    pub headers: usize,
    pub len: usize,
}

/// A status line and its headers: minor version, status code, header count, head length.
pub struct Response {
    pub minor: u8,
    pub code: u16,
    pub headers: usize,
    pub len: usize,
}

/// RFC 9110 `tchar`, as `httparse` reads method and header name tokens.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Bytes this parser checked are ASCII (token bytes, `0x21..=0x7e`) as text. The general
/// UTF-8 check, a call per method, target and header name, cost a fifth of the parse.
#[inline(always)]
fn ascii(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: every caller passes bytes it found to be ASCII (below 0x80), which is UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// Where the first byte of `buf[at..]` outside `0x21..=0x7e` (`lo = 0x21`) or outside
/// `0x20..=0x7e` (`lo = 0x20`) is; `None` when the buffer ends first. Eight bytes at a time:
/// a borrow or carry between bytes only ever flags bytes after the first flagged one.
#[inline(always)]
fn first_outside(buf: &[u8], mut at: usize, lo: u8) -> Option<usize> {
    while at + 8 <= buf.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[at..at + 8]);
        let x = u64::from_le_bytes(w);
        let below = x.wrapping_sub(ONES * lo as u64) & !x;
        let above = x.wrapping_add(ONES) | x;
        let flagged = (below | above) & HIGH;
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // The last few bytes (a head's last header value, before its empty line): the buffer's
    // last word shifted down so that it starts at `at`. The bytes shifted in are zeros, below
    // `lo`: the first flagged byte past the buffer's end says the end came first.
    if at >= buf.len() {
        return None;
    }
    if buf.len() < 8 {
        return buf[at..]
            .iter()
            .position(|&b| b < lo || b > 0x7e)
            .map(|i| at + i);
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[buf.len() - 8..]);
    let skip = at - (buf.len() - 8);
    let x = u64::from_le_bytes(w) >> (8 * skip);
    let below = x.wrapping_sub(ONES * lo as u64) & !x;
    let above = x.wrapping_add(ONES) | x;
    let first = ((below | above) & HIGH).trailing_zeros() as usize / 8;
    (first < 8 - skip).then_some(at + first)
}

/// Past the run of letters, digits and `-` at `buf[at..]`, sixteen bytes a step while sixteen
/// are left: what header names are made of, all of them token bytes. The byte loop after it
/// reads the rest of the name (a rarer token byte, the last few bytes of the buffer); a byte
/// a step with a table look-up, the names were a fifth of a head's cost.
#[inline(always)]
fn skip_name_run(buf: &[u8], mut at: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8, _mm_sub_epi8,
        };
        while at + 16 <= buf.len() {
            // SAFETY: SSE2 is part of x86-64; the load reads `buf[at..at + 16]`, inside `buf`.
            let run = unsafe {
                let x = _mm_loadu_si128(buf.as_ptr().add(at) as *const __m128i);
                // `v` in `0..=n` as unsigned bytes: the unsigned minimum of `v` and `n` is `v`.
                let upto =
                    |v: __m128i, n: u8| _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(n as i8)), v);
                // A letter of either case is `a..=z` with the case bit set.
                let letter = upto(
                    _mm_sub_epi8(
                        _mm_or_si128(x, _mm_set1_epi8(0x20)),
                        _mm_set1_epi8(b'a' as i8),
                    ),
                    25,
                );
                let digit = upto(_mm_sub_epi8(x, _mm_set1_epi8(b'0' as i8)), 9);
                let dash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'-' as i8));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), dash)) as u32
            };
            if run != 0xffff {
                return at + (!run).trailing_zeros() as usize;
            }
            at += 16;
        }
    }
    at
}

/// The header lines from `at` to the empty line, into `hs`: the number of headers and the
/// head's end. `None` for anything outside the subset (or too many headers).
#[inline(always)]
fn headers<'a>(
    buf: &'a [u8],
    mut at: usize,
    hs: &mut [MaybeUninit<Header<'a>>],
) -> Option<(usize, usize)> {
    let mut n = 0;
    loop {
        match buf.get(at..at + 2)? {
            b"\r\n" => return Some((n, at + 2)),
            _ if !TOKEN[buf[at] as usize] => return None,
            _ => {}
        }
        let start = at;
        at = skip_name_run(buf, at);
        while TOKEN[*buf.get(at)? as usize] {
            at += 1;
        }
        if buf[at] != b':' {
            return None;
        }
        let name = ascii(&buf[start..at]);
        at += 1;
        while matches!(buf.get(at)?, b' ' | b'\t') {
            at += 1;
        }
        let value_at = at;
        let end = loop {
            let i = first_outside(buf, at, 0x20)?;
            match buf[i] {
                b'\t' => at = i + 1,
                b'\r' if buf.get(i + 1) == Some(&b'\n') => break i,
                _ => return None,
            }
        };
        let mut value = &buf[value_at..end];
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        // `httparse` fails on more headers than slots: so does this, and it gives its error.
        *hs.get_mut(n)? = MaybeUninit::new(Header { name, value });
        n += 1;
        at = end + 2;
    }
}

/// A whole request head in the subset, its headers written into `hs`. Inlined into its one
/// caller (the parser's fast path): left to the partitioning of codegen units, a change
/// elsewhere in the crate can make it a call per message.
#[inline]
pub fn request<'a>(buf: &'a [u8], hs: &mut [MaybeUninit<Header<'a>>]) -> Option<Request<'a>> {
    let mut at = 0;
    while TOKEN[*buf.get(at)? as usize] {
        at += 1;
    }
    if at == 0 || buf[at] != b' ' {
        return None;
    }
    let method = ascii(&buf[..at]);
    let target_at = at + 1;
    let sp = first_outside(buf, target_at, 0x21)?;
    if sp == target_at || buf[sp] != b' ' {
        return None;
    }
    let target = ascii(&buf[target_at..sp]);
    let minor = match buf.get(sp + 1..sp + 11)? {
        b"HTTP/1.1\r\n" => 1,
        b"HTTP/1.0\r\n" => 0,
        _ => return None,
    };
    let (headers, len) = headers(buf, sp + 11, hs)?;
    Some(Request {
        method,
        target,
        minor,
        headers,
        len,
    })
}

/// A whole response head in the subset (a status line with a reason phrase), its headers
/// written into `hs`. Inlined into its one caller, as `request` is.
#[inline]
pub fn response<'a>(buf: &'a [u8], hs: &mut [MaybeUninit<Header<'a>>]) -> Option<Response> {
    let line = buf.get(..13)?;
    let minor = match &line[..9] {
        b"HTTP/1.1 " => 1,
        b"HTTP/1.0 " => 0,
        _ => return None,
    };
    let digits = &line[9..12];
    if !digits.iter().all(u8::is_ascii_digit) || line[12] != b' ' {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    // The reason phrase: spaces, tabs and visible ASCII up to the line end.
    let mut at = 13;
    let end = loop {
        let i = first_outside(buf, at, 0x20)?;
        match buf[i] {
            b'\t' => at = i + 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => break i,
            _ => return None,
        }
    };
    let (headers, len) = headers(buf, end + 2, hs)?;
    Some(Response {
        minor,
        code,
        headers,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 96;

    fn slots<'a>() -> [MaybeUninit<Header<'a>>; MAX] {
        [const { MaybeUninit::uninit() }; MAX]
    }

    type Parsed = (String, String, u8, Vec<(String, Vec<u8>)>, usize);

    /// The first `n` header slots, which `request` or `response` wrote, owned.
    /// Also checks what `parser::value_text` takes on trust of every value read here: ASCII,
    /// with nothing for `trim_ascii` to take off either end.
    fn written(hs: &[MaybeUninit<Header<'_>>], n: usize) -> Vec<(String, Vec<u8>)> {
        hs[..n]
            .iter()
            .map(|h| {
                // SAFETY: the parser wrote the first `n` slots.
                let h = unsafe { h.assume_init_ref() };
                assert!(
                    h.value.is_ascii() && h.value.trim_ascii() == h.value,
                    "{:?}",
                    h.value.escape_ascii().to_string()
                );
                (h.name.to_owned(), h.value.to_vec())
            })
            .collect()
    }

    fn ours_request(buf: &[u8]) -> Option<Parsed> {
        let mut hs = slots();
        let r = request(buf, &mut hs)?;
        let hs = written(&hs, r.headers);
        Some((r.method.into(), r.target.into(), r.minor, hs, r.len))
    }

    fn httparse_request(buf: &[u8]) -> Option<Parsed> {
        let mut hs = [httparse::EMPTY_HEADER; MAX];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => Some((
                req.method?.into(),
                req.path?.into(),
                req.version?,
                req.headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
                n,
            )),
            _ => None,
        }
    }

    type ParsedResponse = (u8, u16, Vec<(String, Vec<u8>)>, usize);

    fn ours_response(buf: &[u8]) -> Option<ParsedResponse> {
        let mut hs = slots();
        let r = response(buf, &mut hs)?;
        let hs = written(&hs, r.headers);
        Some((r.minor, r.code, hs, r.len))
    }

    fn httparse_response(buf: &[u8]) -> Option<ParsedResponse> {
        let mut hs = [httparse::EMPTY_HEADER; MAX];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => Some((
                resp.version?,
                resp.code?,
                resp.headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
                n,
            )),
            _ => None,
        }
    }

    const REQUESTS: &[&[u8]] = &[
        b"GET /api/orders/29257/items?v=7 HTTP/1.1\r\nHost: svc-1.default.svc\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n",
        b"POST /submit HTTP/1.0\r\nContent-Length: 5\r\nX-Tab:\tv\t1 \r\nEmpty:\r\n\r\nhello",
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMX:   3   \r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ];
    const RESPONSES: &[&[u8]] = &[
        b"HTTP/1.1 200 X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n242\r\n",
        b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close \r\n\r\n",
        b"HTTP/1.1 204 \r\nA:\tb\r\n\r\n",
    ];

    /// Every byte of every sample replaced by each byte value that matters to either parser,
    /// and every sample cut at every length: wherever the fast path gives a head, it is the
    /// head `httparse` gives, and every sample as written is read by the fast path.
    #[test]
    fn the_fast_path_reads_what_httparse_reads_or_leaves_it_alone() {
        let specials: Vec<u8> = (0u8..=0x21)
            .chain([
                b'"', b'/', b':', b';', b'?', b'@', b'H', b'(', 0x7e, 0x7f, 0x80, 0xc3, 0xff,
            ])
            .collect();
        let mut read = 0;
        for (samples, is_request) in [(REQUESTS, true), (RESPONSES, false)] {
            for sample in samples {
                let check = |buf: &[u8]| -> bool {
                    if is_request {
                        let ours = ours_request(buf);
                        if ours.is_some() {
                            assert_eq!(
                                ours,
                                httparse_request(buf),
                                "{:?}",
                                buf.escape_ascii().to_string()
                            );
                        }
                        ours.is_some()
                    } else {
                        let ours = ours_response(buf);
                        if ours.is_some() {
                            assert_eq!(
                                ours,
                                httparse_response(buf),
                                "{:?}",
                                buf.escape_ascii().to_string()
                            );
                        }
                        ours.is_some()
                    }
                };
                assert!(check(sample), "{:?}", sample.escape_ascii().to_string());
                for cut in 0..sample.len() {
                    check(&sample[..cut]);
                }
                for at in 0..sample.len() {
                    for &b in &specials {
                        let mut v = sample.to_vec();
                        v[at] = b;
                        read += usize::from(check(&v));
                        v.insert(at, b);
                        read += usize::from(check(&v));
                    }
                }
            }
        }
        // The mutations that stay well-formed (letters, digits, spaces in values...) are read.
        assert!(read > 1000, "{read}");
    }

    /// Every byte value at every place of a header name long enough to be read sixteen bytes
    /// a step, and of one cut short by the buffer's end: read as `httparse` reads it, or left
    /// to it. The bytes next to the ranges (`/` `:` `@` `[` `` ` `` `{`) are among them.
    #[test]
    fn header_names_read_in_blocks_are_the_names_httparse_reads() {
        let name = b"X-Forwarded-For-Client-Name-0123456789";
        let mut read = 0;
        for b in 0..=255u8 {
            for at in 0..name.len() {
                let mut n = name.to_vec();
                n[at] = b;
                let mut req = b"GET / HTTP/1.1\r\n".to_vec();
                req.extend_from_slice(&n);
                req.extend_from_slice(b": v\r\nHost: a\r\n\r\n");
                let ours = ours_request(&req);
                if ours.is_some() {
                    read += 1;
                    assert_eq!(
                        ours,
                        httparse_request(&req),
                        "{:?}",
                        req.escape_ascii().to_string()
                    );
                }
                // The value and the head's end within the last word of the buffer.
                let mut short = b"GET / HTTP/1.1\r\n".to_vec();
                short.extend_from_slice(&n[..at + 1]);
                short.extend_from_slice(b":v\r\n\r\n");
                let ours = ours_request(&short);
                if ours.is_some() {
                    assert_eq!(
                        ours,
                        httparse_request(&short),
                        "{:?}",
                        short.escape_ascii().to_string()
                    );
                }
            }
        }
        // The 77 token bytes at each of the 38 places, and a `:` anywhere but first (the name
        // ends there, the rest is the value's).
        assert_eq!(read, 77 * name.len() + name.len() - 1);
    }

    #[test]
    fn more_headers_than_slots_are_left_to_httparse() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(ours_request(&head).map(|r| r.3.len()), Some(MAX));
        let mut more = head[..head.len() - 2].to_vec();
        more.extend_from_slice(b"one-more: v\r\n\r\n");
        assert!(ours_request(&more).is_none());
    }
}
