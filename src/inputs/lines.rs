//! Splits a byte stream into lines with a hard cap on line length: a longer line is cut at
//! `max_line_bytes`, flagged, and the rest of it skipped, so memory never grows with the input.
//! Shared by every line-oriented input (stdin, files, sockets, tee), as is what a line becomes
//! on its way to an event (`Line`, its text with invalid UTF-8 replaced and counted).

use chrono::{DateTime, Utc};

/// One line handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfo {
    /// The line was longer than the cap and was cut.
    pub truncated: bool,
    /// Stream offset of the line's first byte.
    pub start: u64,
    /// Stream offset just past the line's newline (where reading resumes).
    pub end: u64,
}

pub struct LineSplitter {
    partial: Vec<u8>,
    max_line: usize,
    /// Bytes of an over-long line still being skipped up to its newline.
    skipping: bool,
    /// Offset of the first byte not yet fed.
    position: u64,
    partial_start: u64,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize, start_offset: u64) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max_line: max_line_bytes.max(1),
            skipping: false,
            position: start_offset,
            partial_start: start_offset,
        }
    }

    /// Offset of the first byte not yet fed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes held for a line whose end has not arrived.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Feeds bytes; calls `emit` for every complete line (without `\n` or `\r\n`). A cut line is
    /// emitted as soon as it reaches the cap; its `end` is then where its newline ends.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], LineInfo)) {
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(nl) => {
                    let end = self.position + nl as u64 + 1;
                    if self.skipping {
                        self.skipping = false;
                    } else if self.partial.is_empty() {
                        let line = strip_cr(&data[..nl]);
                        if line.len() > self.max_line {
                            emit(
                                &line[..self.max_line],
                                LineInfo {
                                    truncated: true,
                                    start: self.position,
                                    end,
                                },
                            );
                        } else {
                            emit(
                                line,
                                LineInfo {
                                    truncated: false,
                                    start: self.position,
                                    end,
                                },
                            );
                        }
                    } else {
                        let room = self.max_line.saturating_sub(self.partial.len());
                        let take = nl.min(room + 1);
                        self.partial.extend_from_slice(&data[..take]);
                        let mut line = std::mem::take(&mut self.partial);
                        // The `\r` of `\r\n` is not part of the line, whichever read it came in.
                        if line.last() == Some(&b'\r') && take == nl {
                            line.pop();
                        }
                        let truncated = line.len() > self.max_line;
                        line.truncate(self.max_line);
                        emit(
                            &line,
                            LineInfo {
                                truncated,
                                start: self.partial_start,
                                end,
                            },
                        );
                        line.clear();
                        self.partial = line;
                    }
                    self.position = end;
                    self.partial_start = end;
                    data = &data[nl + 1..];
                }
                None => {
                    let n = data.len();
                    if !self.skipping {
                        if self.partial.is_empty() {
                            self.partial_start = self.position;
                        }
                        // One byte past the cap is held while it may be the `\r` of a `\r\n`
                        // still to come: the line is then exactly the cap, not cut.
                        let held = self.partial.len() + n;
                        let over = held > self.max_line + 1
                            || (held == self.max_line + 1 && data[n - 1] != b'\r');
                        if over {
                            let room = self.max_line.saturating_sub(self.partial.len()).min(n);
                            self.partial.extend_from_slice(&data[..room]);
                            let mut line = std::mem::take(&mut self.partial);
                            line.truncate(self.max_line);
                            // The newline is not known yet; `end` is where the cut happened.
                            emit(
                                &line,
                                LineInfo {
                                    truncated: true,
                                    start: self.partial_start,
                                    end: self.position + n as u64,
                                },
                            );
                            self.skipping = true;
                        } else {
                            self.partial.extend_from_slice(data);
                        }
                    }
                    self.position += n as u64;
                    data = &[];
                }
            }
        }
        if self.partial.capacity() > self.max_line.max(64 * 1024) && self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    /// At end of stream: emits the unterminated last line, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], LineInfo)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            emit(
                strip_cr(&line),
                LineInfo {
                    truncated: false,
                    start: self.partial_start,
                    end: self.position,
                },
            );
        }
        self.skipping = false;
        self.partial_start = self.position;
    }
}

/// A line or joined event on its way to becoming an event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    /// Offset of its first byte in the stream (file, connection, pipe).
    pub start: u64,
    /// Offset just past its last byte: where reading resumes after it is delivered.
    pub end: u64,
    pub truncated: bool,
    pub multiline: bool,
    /// A piece of a container line whose other parts never came.
    pub partial: bool,
    /// `stdout`/`stderr` for container logs and tee.
    pub stream: Option<&'static str>,
    /// The container runtime's time for container logs.
    pub time: Option<DateTime<Utc>>,
}

impl Line {
    /// The line the splitter gave (`bytes`, `info`) as text. The flag is true when invalid
    /// UTF-8 was replaced by U+FFFD: the caller counts it (and logs the first of its input
    /// once, `BadLines`).
    pub fn decoded(bytes: &[u8], info: LineInfo) -> (Line, bool) {
        let (text, replaced) = match to_text(bytes) {
            Ok(text) => (text, false),
            Err(text) => (text, true),
        };
        let line = Line {
            text,
            start: info.start,
            end: info.end,
            truncated: info.truncated,
            ..Line::default()
        };
        (line, replaced)
    }
}

/// A line as text; `Err` carries the text with invalid UTF-8 replaced by U+FFFD, for the caller
/// to count (every line input counts and logs such lines once).
/// Checked with `simdutf8` (32 bytes a step where the CPU has AVX2): the check was a twelfth
/// of the instructions of a file → null run with the standard library's.
pub fn to_text(line: &[u8]) -> Result<String, String> {
    match simdutf8::basic::from_utf8(line) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(String::from_utf8_lossy(line).into_owned()),
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, bool, u64, u64)> {
        let mut s = LineSplitter::new(max, 0);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l, i| {
                out.push((
                    String::from_utf8_lossy(l).into_owned(),
                    i.truncated,
                    i.start,
                    i.end,
                ))
            });
        }
        s.finish(&mut |l, i| {
            out.push((
                String::from_utf8_lossy(l).into_owned(),
                i.truncated,
                i.start,
                i.end,
            ))
        });
        out
    }

    #[test]
    fn lines_across_chunks_with_offsets() {
        let got = split(&[b"ab", b"c\r\nde\n", b"f"], 100);
        assert_eq!(
            got,
            vec![
                ("abc".into(), false, 0, 5),
                ("de".into(), false, 5, 8),
                ("f".into(), false, 8, 9)
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let got = split(&[b"0123456789\nok\n"], 4);
        assert_eq!(
            got,
            vec![("0123".into(), true, 0, 11), ("ok".into(), false, 11, 14)]
        );
        // Across chunks, memory stays bounded by the cap.
        let big = vec![b'x'; 10_000];
        let mut s = LineSplitter::new(16, 0);
        let mut out = Vec::new();
        for _ in 0..100 {
            s.push(&big, &mut |l, i| out.push((l.len(), i.truncated)));
            assert!(s.pending() <= 16);
        }
        s.push(b"\nnext\n", &mut |l, i| out.push((l.len(), i.truncated)));
        assert_eq!(out, vec![(16, true), (4, false)]);
    }

    #[test]
    fn partial_then_overflow_in_later_chunk() {
        let got = split(&[b"abc", b"defgh\n", b"z\n"], 5);
        assert_eq!(got[0], ("abcde".into(), true, 0, 9));
        assert_eq!(got[1], ("z".into(), false, 9, 11));
        assert_eq!(got.len(), 2);
    }
}
