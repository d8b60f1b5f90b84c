//! Where an HTTP/1.x message starts: the request methods known, a request line cut short,
//! and the next plausible request or status line after a gap or garbage.

use super::{header_section_follows, RequestHead, Version, MAX_REQUEST_LINE};

/// The method and target of a request line cut short (the connection ended before its end of
/// line): what an HTTP/0.9-style or aborted request still tells.
pub fn partial_request_line(buf: &[u8]) -> Option<RequestHead> {
    let m = METHODS
        .iter()
        .find(|m| buf.starts_with(m) && buf.get(m.len()) == Some(&b' '))?;
    let rest = &buf[m.len() + 1..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    let target = std::str::from_utf8(&rest[..end]).ok()?;
    if target.is_empty() {
        return None;
    }
    Some(RequestHead {
        method: String::from_utf8_lossy(m).into(),
        target: target.into(),
        version: Version::V10,
        ..Default::default()
    })
}

/// The IANA HTTP Method Registry: a request starting with one of these is recognised when
/// looking for the start of a message, and other method tokens are flagged `unknown_method`.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"QUERY",
    b"ACL",
    b"BASELINE-CONTROL",
    b"BIND",
    b"CHECKIN",
    b"CHECKOUT",
    b"LABEL",
    b"LINK",
    b"MERGE",
    b"MKACTIVITY",
    b"MKCALENDAR",
    b"MKREDIRECTREF",
    b"MKWORKSPACE",
    b"ORDERPATCH",
    b"PRI",
    b"REBIND",
    b"UNBIND",
    b"UNCHECKOUT",
    b"UNLINK",
    b"UPDATE",
    b"UPDATEREDIRECTREF",
    b"VERSION-CONTROL",
];

pub(super) fn registered_method(m: &[u8]) -> bool {
    METHODS.contains(&m)
}

/// A method token as requests use them: upper-case letters, digits, `-` and `_` (a
/// stricter set than RFC 9110's tchar, so that text in a body is not taken for a request).
pub(super) fn method_token(m: &[u8]) -> bool {
    !m.is_empty()
        && m.len() <= 32
        && m[0].is_ascii_uppercase()
        && m.iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

/// Whether `buf` could still become the start of a request line.
pub(super) fn method_like(buf: &[u8]) -> bool {
    let head = &buf[..buf.len().min(33)];
    match memchr::memchr(b' ', head) {
        Some(end) => method_token(&buf[..end]),
        None => {
            buf.len() <= 32
                && buf.iter().all(|b| {
                    b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_')
                })
        }
    }
}

/// A request line with a method outside the registry: an upper-case token, a space, a target,
/// and a last word that starts with `HTTP/` (the version, maybe cut short, as the lenient
/// request-line parser reads it), or no version and a header section after the line (as the
/// lenient parser takes it). `None` when more bytes are needed to tell.
fn unregistered_request_line(cand: &[u8]) -> Option<bool> {
    if !cand.first().is_some_and(u8::is_ascii_uppercase) {
        return Some(false);
    }
    if !method_like(cand) {
        return Some(false);
    }
    // No space yet within a method's length: more bytes will tell.
    let sp = memchr::memchr(b' ', &cand[..cand.len().min(33)])?;
    let Some(nl) = memchr::memchr(b'\n', cand) else {
        return if cand.len() > MAX_REQUEST_LINE {
            Some(false)
        } else {
            None
        };
    };
    let line = cand[..nl].strip_suffix(b"\r").unwrap_or(&cand[..nl]);
    let last = line.iter().rposition(|&b| b == b' ').map_or(0, |i| i + 1);
    if last > sp + 2 && line[last..].starts_with(b"HTTP/") {
        return Some(true);
    }
    if line.len() <= sp + 1 {
        return Some(false);
    }
    header_section_follows(&cand[nl + 1..])
}

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
            let registered = METHODS
                .iter()
                .any(|m| cand.starts_with(m) && cand.get(m.len()) == Some(&b' '));
            if registered {
                (true, false)
            } else {
                // Only asked when no method matched: a pass over every method name, where
                // nearly every connection's first bytes match the first (`GET `).
                let prefix = METHODS
                    .iter()
                    .any(|m| m.len() >= cand.len() && m.starts_with(cand));
                match unregistered_request_line(cand) {
                    Some(m) => (m, prefix),
                    None => (false, true),
                }
            }
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
