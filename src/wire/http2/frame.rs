//! One direction of an HTTP/2 connection cut into frames (RFC 9113 §4): the 9-byte frame
//! header, DATA payloads handed on as they arrive (never buffered), other payloads buffered up
//! to a limit, and where a gap of lost bytes leaves the frame boundaries.

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    fn parse(b: &[u8; 9]) -> Head {
        Head {
            len: (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]]),
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// What the reader found next.
#[derive(Debug)]
pub enum Step<'a> {
    /// A DATA frame started (its bytes follow as `Data`, then `DataEnd`).
    DataStart(Head),
    /// Payload bytes of the current DATA frame, padding removed.
    Data(Head, &'a [u8]),
    DataEnd(Head),
    /// Any other frame, whole.
    Frame(Head, Vec<u8>),
    /// A frame longer than the limit: its payload is skipped unread.
    Oversize(Head),
    /// A PADDED DATA frame whose pad length exceeds it.
    BadPadding(Head),
}

/// Where a gap fell.
#[derive(Debug, PartialEq, Eq)]
pub enum Gap {
    /// Inside a DATA frame: `data` payload bytes lost, frame boundaries kept.
    InData(Head, u64),
    /// Inside another frame, which is lost whole; boundaries kept.
    InFrame(Head),
    /// Across a frame boundary: where the next frame starts is unknown.
    Lost,
}

#[derive(Debug)]
enum State {
    Head,
    PadLength(Head),
    Data { head: Head, data: usize, pad: usize },
    Payload(Head),
    Skip(usize),
}

/// The frame reader of one direction.
pub struct Reader {
    state: State,
    head: [u8; 9],
    have: usize,
    payload: Vec<u8>,
    /// Longest payload buffered (other than DATA).
    max_payload: usize,
}

impl Reader {
    pub fn new(max_payload: usize) -> Reader {
        Reader {
            state: State::Head,
            head: [0; 9],
            have: 0,
            payload: Vec::new(),
            max_payload,
        }
    }

    /// Bytes held, for the memory bound.
    pub fn held(&self) -> usize {
        self.payload.capacity()
    }

    /// The next step found in `data[*at..]`, advancing `at`; `None` when `data` is used up.
    pub fn next<'a>(&mut self, data: &'a [u8], at: &mut usize) -> Option<Step<'a>> {
        loop {
            let rest = &data[*at..];
            match &mut self.state {
                State::Head => {
                    if rest.is_empty() {
                        return None;
                    }
                    let n = (9 - self.have).min(rest.len());
                    self.head[self.have..self.have + n].copy_from_slice(&rest[..n]);
                    self.have += n;
                    *at += n;
                    if self.have < 9 {
                        return None;
                    }
                    self.have = 0;
                    let h = Head::parse(&self.head);
                    if h.kind == kind::DATA {
                        self.state = if h.has(flag::PADDED) {
                            State::PadLength(h)
                        } else {
                            State::Data {
                                head: h,
                                data: h.len,
                                pad: 0,
                            }
                        };
                        return Some(Step::DataStart(h));
                    }
                    if h.len > self.max_payload {
                        self.state = State::Skip(h.len);
                        return Some(Step::Oversize(h));
                    }
                    self.payload = Vec::with_capacity(h.len);
                    self.state = State::Payload(h);
                }
                State::PadLength(h) => {
                    let h = *h;
                    if h.len == 0 {
                        self.state = State::Head;
                        return Some(Step::BadPadding(h));
                    }
                    let &[pad, ..] = rest else { return None };
                    *at += 1;
                    let pad = pad as usize;
                    let body = h.len - 1;
                    self.state = State::Data {
                        head: h,
                        data: body.saturating_sub(pad),
                        pad: pad.min(body),
                    };
                    if pad > body {
                        return Some(Step::BadPadding(h));
                    }
                }
                State::Data { head, data: 0, pad } => {
                    let n = (*pad).min(rest.len());
                    *pad -= n;
                    *at += n;
                    if *pad > 0 {
                        return None;
                    }
                    let h = *head;
                    self.state = State::Head;
                    return Some(Step::DataEnd(h));
                }
                State::Data { head, data, .. } => {
                    if rest.is_empty() {
                        return None;
                    }
                    let n = (*data).min(rest.len());
                    *data -= n;
                    *at += n;
                    return Some(Step::Data(*head, &rest[..n]));
                }
                State::Payload(h) => {
                    let h = *h;
                    let n = (h.len - self.payload.len()).min(rest.len());
                    self.payload.extend_from_slice(&rest[..n]);
                    *at += n;
                    if self.payload.len() < h.len {
                        return None;
                    }
                    self.state = State::Head;
                    return Some(Step::Frame(h, std::mem::take(&mut self.payload)));
                }
                State::Skip(left) => {
                    let n = (*left).min(rest.len());
                    *left -= n;
                    *at += n;
                    if *left > 0 {
                        return None;
                    }
                    self.state = State::Head;
                }
            }
        }
    }

    /// `len` bytes of this direction were not captured.
    pub fn gap(&mut self, len: usize) -> Gap {
        match &mut self.state {
            State::Data { head, data, pad } if *data + *pad >= len => {
                let lost = len.min(*data);
                *data -= lost;
                *pad -= len - lost;
                Gap::InData(*head, lost as u64)
            }
            State::Payload(h) if h.len - self.payload.len() >= len => {
                let h = *h;
                self.state = State::Skip(h.len - self.payload.len() - len);
                self.payload = Vec::new();
                Gap::InFrame(h)
            }
            _ => {
                self.state = State::Skip(0);
                Gap::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn steps(r: &mut Reader, data: &[u8]) -> Vec<String> {
        let (mut at, mut v) = (0, Vec::new());
        while let Some(s) = r.next(data, &mut at) {
            v.push(match s {
                Step::DataStart(h) => format!("start{}", h.stream),
                Step::Data(_, d) => format!("data{}", d.len()),
                Step::DataEnd(_) => "end".into(),
                Step::Frame(h, p) => format!("frame{}:{}", h.kind, p.len()),
                Step::Oversize(h) => format!("oversize{}", h.kind),
                Step::BadPadding(_) => "badpad".into(),
            });
        }
        v
    }

    #[test]
    fn frames_split_anywhere_come_out_the_same() {
        let mut wire = frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        wire.extend(frame(
            kind::DATA,
            flag::PADDED,
            1,
            &[2, b'a', b'b', b'c', 0, 0],
        ));
        wire.extend(frame(kind::HEADERS, 0, 3, &[0x82; 40]));
        let mut one = Reader::new(16);
        assert_eq!(
            steps(&mut one, &wire),
            ["frame4:6", "start1", "data3", "end", "oversize1"]
        );
        let mut split = Reader::new(16);
        let mut got = Vec::new();
        for b in wire.chunks(1) {
            got.extend(steps(&mut split, b));
        }
        got.dedup();
        assert_eq!(got, ["frame4:6", "start1", "data1", "end", "oversize1"]);
    }

    #[test]
    fn gaps_keep_frame_boundaries_when_they_can() {
        let mut r = Reader::new(1024);
        let data = frame(kind::DATA, 0, 1, &[7; 100]);
        let mut at = 0;
        while r.next(&data[..50], &mut at).is_some() {}
        assert!(matches!(r.gap(40), Gap::InData(_, 40)));
        let tail = &data[90..];
        assert_eq!(steps(&mut r, tail), ["data19", "end"]);
        let hdr = frame(kind::HEADERS, 4, 3, &[0x82; 20]);
        let mut at = 0;
        while r.next(&hdr[..12], &mut at).is_some() {}
        assert!(matches!(r.gap(10), Gap::InFrame(_)));
        assert_eq!(steps(&mut r, &hdr[22..]), Vec::<String>::new());
        assert_eq!(r.gap(5), Gap::Lost);
    }
}
