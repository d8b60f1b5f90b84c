//! An HTTP/1.x body read as it comes: Content-Length, chunked (chunk sizes, extensions and
//! trailers) or until the connection closes; counts its bytes on the wire and without the
//! chunk framing, and hands the content on.

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

/// Consumes a body incrementally; counts its bytes on the wire and without the chunked
/// framing (transfer-coding removed, content-coding kept), and hands the content on.
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    /// Partial chunk-size or trailer line (bounded).
    pub(super) line: Vec<u8>,
    /// Bytes on the wire, chunk framing and trailers included.
    pub wire_bytes: u64,
    /// Bytes of the message body: the chunks' data without their framing.
    pub content_bytes: u64,
    pub done: bool,
}

/// Longest chunk-size or trailer line accepted.
pub(super) const MAX_LINE: usize = 4096;

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
            content_bytes: 0,
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
                self.content_bytes += data.len() as u64;
                data.len()
            }
            Framing::Length(_) => {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                content(&data[..n]);
                self.content_bytes += n as u64;
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
                self.content_bytes += n;
                true
            }
            (Framing::Length(_), _) if n <= self.remaining => {
                self.remaining -= n;
                self.wire_bytes += n;
                self.content_bytes += n;
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
                self.content_bytes += n;
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
                    self.content_bytes += n as u64;
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
                    // A line inside `data` is read where it is; one begun in an earlier
                    // segment is completed in the line buffer, which is kept (cleared) for
                    // the next line: no allocation per chunk.
                    let line = if self.line.is_empty() {
                        &rest[..=nl]
                    } else {
                        self.line.extend_from_slice(&rest[..=nl]);
                        &self.line[..]
                    };
                    at += nl + 1;
                    let trimmed = trim_eol(line);
                    let next = match self.chunk {
                        Chunk::DataEnd => {
                            if !trimmed.is_empty() {
                                return Err(BodyError);
                            }
                            Chunk::Size
                        }
                        Chunk::Size => {
                            let hex = trimmed.split(|b| *b == b';').next().unwrap_or(&[]);
                            let size = chunk_size(hex).ok_or(BodyError)?;
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

/// A chunk size line's number: hexadecimal digits, as `u64::from_str_radix` reads them after
/// `str::trim` (which also takes a sign and surrounding white space, read the slow way).
pub(super) fn chunk_size(hex: &[u8]) -> Option<u64> {
    if (1..=15).contains(&hex.len()) {
        let mut n = 0u64;
        for &c in hex {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return slow_chunk_size(hex),
            };
            n = n << 4 | d as u64;
        }
        return Some(n);
    }
    slow_chunk_size(hex)
}

#[cold]
fn slow_chunk_size(hex: &[u8]) -> Option<u64> {
    std::str::from_utf8(hex)
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
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
