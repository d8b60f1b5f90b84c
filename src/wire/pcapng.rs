//! Reads pcapng captures (what dumpcap, Wireshark and `mergecap` write) block by block. Each
//! interface keeps its own link type, snapshot length and time resolution, so a capture of
//! several interfaces reads whole where libpcap refuses interfaces that differ, and each packet
//! says which interface saw it (so that copies seen on two interfaces can be told apart).

use super::pcapfile::{Buffer, Source};

/// Section Header Block type: the same bytes in either byte order.
const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
/// Obsolete Packet Block, still written by old tools.
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
/// The byte-order magic of a section header, as written in the section's own order.
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Largest block accepted: libpcap's limit, far above any snapshot length in use.
const MAX_BLOCK: usize = 16 << 20;
/// Most interfaces one section may declare: each is held while the section lasts, and a
/// capture of a whole node has hundreds (Zeek's merged traces: 126).
const MAX_INTERFACES: usize = 65_536;

/// One packet of a pcapng capture.
pub struct Packet<'b> {
    /// The interface that captured it, numbered across sections; `None` when the capture does
    /// not tell interfaces apart (one interface per section, or `any`).
    pub interface: Option<u32>,
    pub link: i32,
    pub ts_ns: i64,
    pub data: &'b [u8],
}

/// What an Interface Description Block says about the packets captured on it.
struct Interface {
    link: i32,
    snaplen: u32,
    units: Units,
    /// `if_tsoffset`: seconds added to every timestamp (clamped to what `i64` nanoseconds
    /// hold, about 292 years either side of 1970).
    offset_ns: i64,
    /// `if_tsoffset` was past that range: every time of this interface is clamped.
    offset_clamped: bool,
    /// Linux's `any` pseudo-interface, whose copies of a packet are copies whatever arrives.
    any: bool,
}

impl Interface {
    /// The time of a packet stamped `t` on this interface, or `Err` with it clamped to the
    /// nearer end of what `i64` nanoseconds hold (292 years either side of 1970), when it is
    /// past them or the interface's offset was. In `i128`, where neither part can overflow.
    fn time_ns(&self, t: u64) -> Result<i64, i64> {
        let ns = self.units.to_ns(t) as i128 + i128::from(self.offset_ns);
        match i64::try_from(ns) {
            Ok(ns) if !self.offset_clamped => Ok(ns),
            Ok(ns) => Err(ns),
            Err(_) if ns < 0 => Err(i64::MIN),
            Err(_) => Err(i64::MAX),
        }
    }
}

/// `if_tsresol`: what one unit of a timestamp is.
#[derive(Clone, Copy)]
enum Units {
    /// 10^-n s.
    Decimal(u8),
    /// 2^-n s.
    Binary(u8),
}

impl Units {
    /// `t` units in nanoseconds. In `u128`: `u64::MAX` times 10^9 is below 2^94, so nothing
    /// here overflows.
    fn to_ns(self, t: u64) -> u128 {
        match self {
            Units::Decimal(n) if n <= 9 => (t as u128) * 10u128.pow(9 - n as u32),
            Units::Decimal(n) => match 10u128.checked_pow(n as u32 - 9) {
                Some(d) => t as u128 / d,
                None => 0,
            },
            Units::Binary(n) if n < 128 => ((t as u128) * 1_000_000_000) >> n,
            Units::Binary(_) => 0,
        }
    }

    /// Finer than the nanoseconds trawl keeps: times are rounded down to them.
    fn finer_than_ns(self) -> bool {
        match self {
            Units::Decimal(n) => n > 9,
            Units::Binary(n) => n > 29,
        }
    }
}

impl std::fmt::Display for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Units::Decimal(n) => write!(f, "10^-{n} s"),
            Units::Binary(n) => write!(f, "2^-{n} s"),
        }
    }
}

pub struct PcapngReader<'a> {
    bytes: Buffer<'a>,
    /// The current section's byte order.
    big_endian: bool,
    /// The current section's interfaces, by their id in it.
    interfaces: Vec<Interface>,
    /// Interfaces of earlier sections, so that ids stay distinct across sections.
    base: u32,
    /// A Simple Packet Block has no time: it takes the last packet's.
    last_ts: i64,
    /// Packets whose time is past what `i64` nanoseconds hold (an extreme `if_tsresol` or
    /// `if_tsoffset`): clamped to the nearest end, counted, the first logged.
    pub clamped_times: u64,
    /// An interface with an odd time option was logged: once per capture, not per block (a
    /// capture may declare thousands of interfaces).
    warned: bool,
}

impl<'a> PcapngReader<'a> {
    /// Whether `head`, a capture's first bytes, opens a pcapng section.
    pub fn sniff(head: &[u8]) -> bool {
        head.len() >= 4 && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == SHB
    }

    /// A reader of `source`, whose first bytes `head` were already read from it.
    pub fn new(source: Source<'a>, head: &[u8]) -> PcapngReader<'a> {
        PcapngReader {
            bytes: Buffer::new(source, head),
            big_endian: false,
            interfaces: Vec::new(),
            base: 0,
            last_ts: 0,
            clamped_times: 0,
            warned: false,
        }
    }

    fn word(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    fn half(&self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }

    /// Whether the next block may have to wait for a writer: the source is a pipe and the
    /// block is not already buffered whole.
    pub fn may_wait(&self) -> bool {
        let b = &self.bytes;
        if !b.may_wait() {
            return false;
        }
        if b.have() < 12 {
            return true;
        }
        let head = &b.buf[b.start..b.start + 12];
        if self.word(head, 0) == SHB {
            // A new section's length is in its own byte order: wait for the whole of it
            // whatever it says, as a section header comes once.
            return true;
        }
        b.have() < self.word(head, 4) as usize
    }

    /// The next packet; `Ok(None)` at the end of the capture; `Err` for a truncated or
    /// impossible block (what came before stays valid). Blocks that carry no packet (name
    /// resolution, statistics, decryption secrets, custom) are skipped.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, String> {
        loop {
            if !self.bytes.fill(12).map_err(|e| e.to_string())? {
                return match self.bytes.have() {
                    0 => Ok(None),
                    n => Err(format!(
                        "truncated pcapng file; tried to read a block header, only got {n} bytes"
                    )),
                };
            }
            let at = self.bytes.start;
            let head = &self.bytes.buf[at..at + 12];
            let kind = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            if kind == SHB {
                self.big_endian = match head[8..12] {
                    [0x4D, 0x3C, 0x2B, 0x1A] => false,
                    [0x1A, 0x2B, 0x3C, 0x4D] => true,
                    _ => {
                        return Err("pcapng section header with an unknown byte-order magic".into())
                    }
                };
                debug_assert_eq!(self.word(head, 8), BYTE_ORDER_MAGIC);
            }
            let kind = self.word(head, 0);
            let len = self.word(head, 4) as usize;
            if len < 12 || !len.is_multiple_of(4) || len > MAX_BLOCK {
                return Err(format!(
                    "pcapng block of type {kind:#x} with an impossible length {len}"
                ));
            }
            if !self.bytes.fill(len).map_err(|e| e.to_string())? {
                return Err(format!(
                    "truncated pcapng file; tried to read a block of {len} bytes, only got {}",
                    self.bytes.have()
                ));
            }
            let at = self.bytes.start;
            let block = &self.bytes.buf[at..at + len];
            if self.word(block, len - 4) as usize != len {
                return Err(format!(
                    "pcapng block of type {kind:#x}: its trailing length {} differs from its length {len}",
                    self.word(block, len - 4)
                ));
            }
            let body = &block[8..len - 4];
            // Where the packet is in the block, once known: (interface id, time, start, length).
            let found = match kind {
                SHB => {
                    self.section(body)?;
                    let declared = u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX);
                    self.base = self.base.saturating_add(declared);
                    self.interfaces.clear();
                    None
                }
                IDB => {
                    if self.interfaces.len() >= MAX_INTERFACES {
                        return Err(format!(
                            "more than {MAX_INTERFACES} interfaces in one pcapng section"
                        ));
                    }
                    let (interface, odd) = self.interface(body)?;
                    if let Some(odd) = odd.filter(|_| !self.warned) {
                        self.warned = true;
                        let id = u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX);
                        tracing::warn!(
                            interface = self.base.saturating_add(id),
                            "pcapng interface {odd} (logged for the first such interface only)"
                        );
                    }
                    self.interfaces.push(interface);
                    None
                }
                EPB | OPB => {
                    if body.len() < 20 {
                        return Err(format!("pcapng packet block of {len} bytes, too short"));
                    }
                    let id = if kind == EPB {
                        self.word(body, 0)
                    } else {
                        self.half(body, 0) as u32
                    };
                    let t = (self.word(body, 4) as u64) << 32 | self.word(body, 8) as u64;
                    let caplen = self.word(body, 12) as usize;
                    if caplen > body.len() - 20 {
                        return Err(format!(
                            "pcapng packet block of {len} bytes with a captured length of {caplen}"
                        ));
                    }
                    Some((id, Some(t), 8 + 20, caplen))
                }
                SPB => {
                    if body.len() < 4 {
                        return Err(format!(
                            "pcapng simple packet block of {len} bytes, too short"
                        ));
                    }
                    let original = self.word(body, 0) as usize;
                    let snaplen = match self.interfaces.first() {
                        Some(i) if i.snaplen > 0 => i.snaplen as usize,
                        _ => usize::MAX,
                    };
                    Some((0, None, 8 + 4, original.min(snaplen).min(body.len() - 4)))
                }
                _ => None,
            };
            self.bytes.start += len;
            let Some((id, t, from, caplen)) = found else {
                continue;
            };
            let several = self.interfaces.len() > 1;
            let Some(interface) = self.interfaces.get(id as usize) else {
                return Err(format!(
                    "a packet on interface {id}, which no interface description block declared"
                ));
            };
            let ts_ns = match t {
                Some(t) => match interface.time_ns(t) {
                    Ok(ns) => ns,
                    Err(clamped) => {
                        if self.clamped_times == 0 {
                            tracing::warn!(
                                interface = self.base.saturating_add(id),
                                timestamp = t,
                                if_tsresol = %interface.units,
                                if_tsoffset_ns = interface.offset_ns,
                                "pcapng packet time past what 64-bit nanoseconds hold (292 years \
                                 either side of 1970): clamped, and so are any more (counted)"
                            );
                        }
                        self.clamped_times += 1;
                        clamped
                    }
                },
                None => self.last_ts,
            };
            self.last_ts = ts_ns;
            return Ok(Some(Packet {
                interface: (several && !interface.any).then_some(self.base.saturating_add(id)),
                link: interface.link,
                ts_ns,
                data: &self.bytes.buf[at + from..at + from + caplen],
            }));
        }
    }

    /// Checks a new section's header (its interfaces will replace the last section's).
    fn section(&self, body: &[u8]) -> Result<(), String> {
        if body.len() < 16 {
            return Err("pcapng section header block too short".into());
        }
        let major = self.half(body, 4);
        if major != 1 {
            return Err(format!("pcapng section of version {major}, not 1"));
        }
        Ok(())
    }

    /// An interface's description, and what is odd in its time options, to be logged.
    fn interface(&self, body: &[u8]) -> Result<(Interface, Option<String>), String> {
        if body.len() < 8 {
            return Err("pcapng interface description block too short".into());
        }
        let mut interface = Interface {
            link: self.half(body, 0) as i32,
            snaplen: self.word(body, 4),
            units: Units::Decimal(6),
            offset_ns: 0,
            offset_clamped: false,
            any: false,
        };
        let mut odd = None;
        // Options: code, length, value padded to 4 bytes, until opt_endofopt or the end.
        let mut at = 8;
        while at + 4 <= body.len() {
            let code = self.half(body, at);
            let olen = self.half(body, at + 2) as usize;
            let Some(value) = body.get(at + 4..at + 4 + olen) else {
                break;
            };
            match (code, olen) {
                (0, _) => break,
                // if_name
                (2, _) => interface.any = value.strip_suffix(&[0]).unwrap_or(value) == b"any",
                // if_tsresol
                (9, 1) => {
                    interface.units = if value[0] & 0x80 == 0 {
                        Units::Decimal(value[0])
                    } else {
                        Units::Binary(value[0] & 0x7f)
                    };
                    if interface.units.finer_than_ns() {
                        // A 64-bit count of such units spans this many seconds: 1.8 s at
                        // 10^-19, none at all past 10^-38, where every time reads as 1970.
                        let span = interface.units.to_ns(u64::MAX) / 1_000_000_000;
                        odd = Some(format!(
                            "if_tsresol {} is finer than the nanoseconds trawl keeps: times \
                             are rounded down, and a 64-bit count of them spans {span} s",
                            interface.units
                        ));
                    }
                }
                // if_tsoffset
                (14, 8) => {
                    let hi = self.word(value, if self.big_endian { 0 } else { 4 }) as u64;
                    let lo = self.word(value, if self.big_endian { 4 } else { 0 }) as u64;
                    let secs = (hi << 32 | lo) as i64;
                    interface.offset_ns = secs.saturating_mul(1_000_000_000);
                    interface.offset_clamped = secs.checked_mul(1_000_000_000).is_none();
                    if interface.offset_clamped {
                        odd = Some(format!(
                            "if_tsoffset {secs} s is past what 64-bit nanoseconds hold (292 \
                             years either side of 1970): clamped to {} ns",
                            interface.offset_ns
                        ));
                    }
                }
                _ => {}
            }
            at += 4 + olen.div_ceil(4) * 4;
        }
        Ok((interface, odd))
    }
}

/// How far back in capture time a packet of a pcapng of several interfaces may come and still
/// be put in its place: dumpcap writes each interface's packets in order, but hands them to
/// the file in batches (the kernel's ring blocks), and packets 220 ms earlier than the one
/// before were measured in a capture of two veths.
const REORDER_WINDOW_NS: i64 = 1_000_000_000;
/// Most packet bytes held for reordering: past it the earliest go on, possibly out of order.
const REORDER_MAX_BYTES: usize = 8 << 20;

/// Buffers kept for the next packets held: enough for a burst, without keeping a large one's.
const SPARE_BUFFERS: usize = 64;

/// A packet held for reordering.
pub struct Held {
    pub ts_ns: i64,
    /// File order, which breaks ties.
    n: u64,
    pub interface: Option<u32>,
    pub link: i32,
    pub data: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, self.n) == (other.ts_ns, other.n)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts_ns, self.n).cmp(&(other.ts_ns, other.n))
    }
}

/// Puts the packets of several interfaces back in capture-time order (the analyzers need a
/// request before its response), within `REORDER_WINDOW_NS` and `REORDER_MAX_BYTES`.
#[derive(Default)]
pub struct Reorder {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Held>>,
    newest: i64,
    bytes: usize,
    n: u64,
    /// Buffers of packets already passed on, reused so that holding a packet does not allocate.
    spare: Vec<Vec<u8>>,
}

impl Reorder {
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn push(&mut self, interface: Option<u32>, link: i32, ts_ns: i64, data: &[u8]) {
        self.n += 1;
        self.newest = self.newest.max(ts_ns);
        self.bytes += data.len();
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(data);
        self.heap.push(std::cmp::Reverse(Held {
            ts_ns,
            n: self.n,
            interface,
            link,
            data: copy,
        }));
    }

    /// Gives back the buffer of a packet `pop` returned, once it has been used.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= 64 << 10 {
            self.spare.push(buf);
        }
    }

    /// The earliest packet, once nothing earlier can come (or too much is held); with `all`,
    /// whatever is held (the end of the capture).
    pub fn pop(&mut self, all: bool) -> Option<Held> {
        let ready = match self.heap.peek() {
            None => false,
            Some(std::cmp::Reverse(p)) => {
                all || p.ts_ns <= self.newest.saturating_sub(REORDER_WINDOW_NS)
                    || self.bytes > REORDER_MAX_BYTES
            }
        };
        if !ready {
            return None;
        }
        let std::cmp::Reverse(p) = self.heap.pop()?;
        self.bytes -= p.data.len();
        Some(p)
    }
}
