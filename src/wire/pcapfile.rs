//! Reads classic pcap files (the format with a 24-byte header, µs or ns timestamps, either byte
//! order) from one large buffer: one copy from the kernel and none per packet, where libpcap's
//! stdio reads copy each record twice; pcapng goes to `pcapng` over the same buffer. The capture
//! may be a file, a FIFO or standard input (`-`); waiting on a pipe ends when `stop` is set.

use super::pcapng::PcapngReader;
use flate2::bufread::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Chain, Cursor, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest record accepted, as libpcap's limit for most link types.
const MAX_RECORD: usize = 262_144;
/// Read size: small enough to stay in a core's L2 cache between the kernel's copy and the
/// decoding (measured no faster than 1 MiB, but 900 kB less RSS); grown for a larger record.
const BUF: usize = 128 << 10;

/// An open capture stream: a file by its path, or standard input for `-`; a gzipped capture
/// is read through its decompression, as `tcpdump -r` does not but as archives ship them.
pub struct Source<'a> {
    input: Input<'a>,
    stop: &'a AtomicBool,
}

enum Input<'a> {
    Plain(Raw<'a>),
    /// Members one after another, as `gzip` writes appended or `cat`ted files.
    Gzip(Box<Gunzip<'a>>),
}

/// The bytes sniffed before gzip was recognised, then the rest of the stream, decompressed.
type Gunzip<'a> = MultiGzDecoder<BufReader<Chain<Cursor<Vec<u8>>, Raw<'a>>>>;

/// The file or pipe itself.
struct Raw<'a> {
    file: File,
    /// A pipe, FIFO or terminal: reads can wait indefinitely, so they poll and watch `stop`.
    waits: bool,
    stop: &'a AtomicBool,
}

/// How often a read waiting on a pipe looks at `stop`.
const STOP_POLL_MS: i32 = 200;

/// A gzip member's first two bytes (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Read for Raw<'_> {
    /// On a pipe, `Ok(0)` once `stop` is set while no data came, as at the end of the stream.
    /// A regular file never waits.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.waits {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(0);
                }
                if !wait_ready(&self.file, libc::POLLIN)? {
                    continue;
                }
            }
            match self.file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl<'a> Source<'a> {
    pub fn open(path: &Path, stop: &'a AtomicBool) -> std::io::Result<Source<'a>> {
        let file = if path.as_os_str() == "-" {
            // A duplicate, so that dropping the source never closes descriptor 0.
            File::from(std::io::stdin().as_fd().try_clone_to_owned()?)
        } else {
            File::open(path)?
        };
        let waits = !file.metadata()?.is_file();
        Ok(Source {
            input: Input::Plain(Raw { file, waits, stop }),
            stop,
        })
    }

    /// Whether reading may wait for a writer (not a regular file).
    pub fn waits(&self) -> bool {
        match &self.input {
            Input::Plain(raw) => raw.waits,
            Input::Gzip(d) => d.get_ref().get_ref().get_ref().1.waits,
        }
    }

    /// Whether the capture is read through gzip: libpcap cannot reopen it by name.
    pub fn gzipped(&self) -> bool {
        matches!(self.input, Input::Gzip(_))
    }

    /// Reads the rest through gzip, `head` being the bytes already read from the stream.
    fn gunzip(self, head: Vec<u8>) -> Source<'a> {
        let input = match self.input {
            Input::Plain(raw) => Input::Gzip(Box::new(MultiGzDecoder::new(BufReader::new(
                Cursor::new(head).chain(raw),
            )))),
            gz => gz,
        };
        Source { input, ..self }
    }

    /// Reads as `Read::read`, except that on a pipe it returns `Ok(0)` once `stop` is set
    /// while no data came, as at the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.input {
            Input::Plain(raw) => raw.read(buf),
            Input::Gzip(d) => match d.read(buf) {
                // A stop cuts the compressed stream wherever it was: not damage.
                Err(_) if self.stop.load(Ordering::Relaxed) => Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(
                    std::io::Error::new(e.kind(), format!("truncated gzip stream: {e}")),
                ),
                r => r,
            },
        }
    }

    /// Reads until `buf` is full or the stream ends; how many bytes came.
    fn read_full(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }
}

/// Waits up to `STOP_POLL_MS` for `events` on `fd`; true when it is ready (or in error, which
/// the next read or write reports).
pub fn wait_ready(fd: &impl AsRawFd, events: libc::c_short) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call, and nfds is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, STOP_POLL_MS) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(n > 0)
}

/// What the first bytes of a capture say it is.
pub enum Sniffed<'a> {
    Classic(Reader<'a>),
    Pcapng(PcapngReader<'a>),
    /// Neither (too short to tell, or another format): the source, for the caller to tell
    /// whether libpcap may reopen it by name and report what it is.
    Other {
        source: Source<'a>,
    },
}

/// Bytes of a capture read in large chunks: `buf[start..end]` is read and not yet consumed.
pub(super) struct Buffer<'a> {
    source: Source<'a>,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    eof: bool,
}

impl<'a> Buffer<'a> {
    /// A buffer over `source` whose first bytes, `head`, were already read from it.
    pub(super) fn new(source: Source<'a>, head: &[u8]) -> Buffer<'a> {
        let mut buf = vec![0; BUF.max(head.len())];
        buf[..head.len()].copy_from_slice(head);
        Buffer {
            source,
            buf,
            start: 0,
            end: head.len(),
            eof: false,
        }
    }

    /// Bytes read and not yet consumed.
    pub(super) fn have(&self) -> usize {
        self.end - self.start
    }

    /// Whether reading on may wait for a writer (a pipe not yet at its end).
    pub(super) fn may_wait(&self) -> bool {
        self.source.waits() && !self.eof
    }

    /// Makes `need` bytes available from `start`, unless the file ends first.
    #[inline(always)]
    pub(super) fn fill(&mut self, need: usize) -> std::io::Result<bool> {
        if self.end - self.start >= need {
            return Ok(true);
        }
        self.refill(need)
    }

    #[inline(never)]
    fn refill(&mut self, need: usize) -> std::io::Result<bool> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        while self.end < need && !self.eof {
            match self.source.read(&mut self.buf[self.end..])? {
                0 => self.eof = true,
                n => self.end += n,
            }
        }
        Ok(self.end >= need)
    }
}

pub struct Reader<'a> {
    bytes: Buffer<'a>,
    swapped: bool,
    nanos: bool,
    pub link: i32,
}

impl<'a> Reader<'a> {
    /// Opens `path` (`-`: standard input) and reads its file header. Anything but classic pcap
    /// and pcapng comes back as `Sniffed::Other`, for libpcap to report.
    pub fn open(path: &Path, stop: &'a AtomicBool) -> std::io::Result<Sniffed<'a>> {
        let mut source = Source::open(path, stop)?;
        let mut head = vec![0u8; 24];
        let mut got = source.read_full(&mut head)?;
        if got >= 2 && head[..2] == GZIP_MAGIC {
            head.truncate(got);
            source = source.gunzip(head);
            head = vec![0u8; 24];
            got = source.read_full(&mut head)?;
        }
        if got < head.len() {
            return Ok(Sniffed::Other { source });
        }
        if PcapngReader::sniff(&head) {
            return Ok(Sniffed::Pcapng(PcapngReader::new(source, &head)));
        }
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            _ => return Ok(Sniffed::Other { source }),
        };
        let word = |at: usize| {
            let v = u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
            if swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        // The upper bits of the link type carry FCS information; LINKTYPE values are what
        // `decode` expects (it knows both of raw IP's numbers).
        let link = (word(20) & 0xffff) as i32;
        Ok(Sniffed::Classic(Reader {
            bytes: Buffer::new(source, &[]),
            swapped,
            nanos,
            link,
        }))
    }

    /// Whether the next record may have to wait for a writer: the source is a pipe and the
    /// record is not already buffered whole. The caller hands on what it decoded first, so
    /// that a live stream (`tcpdump -w - | trawl pcap -`) is reported as it comes.
    pub fn may_wait(&self) -> bool {
        let b = &self.bytes;
        if !b.may_wait() {
            return false;
        }
        if b.have() < 16 {
            return true;
        }
        let h = &b.buf[b.start + 8..b.start + 12];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = if self.swapped { len.swap_bytes() } else { len };
        b.have() < 16 + len as usize
    }

    /// The next record as (capture time in ns, data); `Ok(None)` at the end of the file; `Err`
    /// for a truncated or impossible record (what came before stays valid).
    pub fn next_record(&mut self) -> Result<Option<(i64, &[u8])>, String> {
        let whole = self.bytes.fill(16).map_err(|e| e.to_string())?;
        if !whole {
            return match self.bytes.have() {
                0 => Ok(None),
                n => Err(format!(
                    "truncated dump file; tried to read 16 header bytes, only got {n}"
                )),
            };
        }
        let h = &self.bytes.buf[self.bytes.start..self.bytes.start + 16];
        let word = |at: usize| {
            let v = u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            if self.swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let (secs, frac, len) = (word(0) as i64, word(4) as i64, word(8) as usize);
        if len > MAX_RECORD {
            return Err(format!(
                "invalid packet capture length {len}, bigger than the maximum of {MAX_RECORD}"
            ));
        }
        if !self.bytes.fill(16 + len).map_err(|e| e.to_string())? {
            return Err(format!(
                "truncated dump file; tried to read {len} captured bytes, only got {}",
                self.bytes.have() - 16
            ));
        }
        let ts = secs
            .saturating_mul(1_000_000_000)
            .saturating_add(if self.nanos { frac } else { frac * 1000 });
        let data = &self.bytes.buf[self.bytes.start + 16..self.bytes.start + 16 + len];
        self.bytes.start += 16 + len;
        Ok(Some((ts, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every packet, its time and link type, as libpcap reads them, on every shared capture.
    #[test]
    // `timeval` fields are not i64 on every target.
    #[allow(clippy::unnecessary_cast)]
    fn reads_what_libpcap_reads() {
        let root = crate::wire::tests::suricata_captures();
        let mut files = 0;
        for dir in std::fs::read_dir(&root).unwrap().flatten() {
            let path = dir.path().join("input.pcap");
            let stop = AtomicBool::new(false);
            let Sniffed::Classic(mut r) = Reader::open(&path, &stop).unwrap() else {
                continue;
            };
            let mut cap =
                pcap::Capture::from_file_with_precision(&path, pcap::Precision::Nano).unwrap();
            let dlt = cap.get_datalink().0;
            assert!(
                r.link == dlt || (r.link, dlt) == (101, 12),
                "{}",
                path.display()
            );
            loop {
                match (r.next_record().unwrap(), cap.next_packet()) {
                    (None, Err(pcap::Error::NoMorePackets)) => break,
                    (Some((ts, data)), Ok(p)) => {
                        let want = (p.header.ts.tv_sec as i64) * 1_000_000_000
                            + p.header.ts.tv_usec as i64;
                        assert_eq!((ts, data), (want, p.data), "{}", path.display());
                    }
                    (a, b) => panic!("{}: {:?} vs {:?}", path.display(), a.is_some(), b.is_ok()),
                }
            }
            files += 1;
        }
        assert!(files >= 20, "{files} classic pcap files");
    }

    /// A record larger than the read buffer grows it, and the records around it still read.
    #[test]
    fn reads_a_record_larger_than_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pcap");
        let mut file = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
            file.extend_from_slice(&w.to_le_bytes());
        }
        let sizes = [60usize, BUF + 70_000, 60];
        for (i, &len) in sizes.iter().enumerate() {
            for w in [i as u32, 5, len as u32, len as u32] {
                file.extend_from_slice(&w.to_le_bytes());
            }
            file.extend(std::iter::repeat_n(i as u8 + 1, len));
        }
        std::fs::write(&path, &file).unwrap();
        let stop = AtomicBool::new(false);
        let Sniffed::Classic(mut r) = Reader::open(&path, &stop).unwrap() else {
            panic!("a classic pcap file");
        };
        for (i, &len) in sizes.iter().enumerate() {
            let (ts, data) = r.next_record().unwrap().unwrap();
            assert_eq!(ts, i as i64 * 1_000_000_000 + 5_000);
            assert_eq!(data.len(), len);
            assert!(data.iter().all(|&b| b == i as u8 + 1));
        }
        assert!(r.next_record().unwrap().is_none());
    }
}
