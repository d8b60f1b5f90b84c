//! Reads classic pcap files (the format with a 24-byte header, µs or ns timestamps, either byte
//! order) from one large buffer: one copy from the kernel and none per packet, where libpcap's
//! stdio reads copy each record twice. Anything else (pcapng) is left to libpcap.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest record accepted, as libpcap's limit for most link types.
const MAX_RECORD: usize = 262_144;
/// Read size: small enough to stay in a core's L2 cache between the kernel's copy and the
/// decoding (measured no faster than 1 MiB, but 900 kB less RSS); grown for a larger record.
const BUF: usize = 128 << 10;

pub struct Reader {
    file: File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    swapped: bool,
    nanos: bool,
    pub link: i32,
    eof: bool,
}

impl Reader {
    /// `None` when `path` is not a classic pcap file (or too short to tell): the caller falls
    /// back to libpcap, which reports such files as it always has.
    pub fn open(path: &Path) -> std::io::Result<Option<Reader>> {
        let mut file = File::open(path)?;
        let mut head = [0u8; 24];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..])? {
                0 => return Ok(None),
                n => got += n,
            }
        }
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            _ => return Ok(None),
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
        Ok(Some(Reader {
            file,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            swapped,
            nanos,
            link,
            eof: false,
        }))
    }

    /// Makes `need` bytes available from `start`, unless the file ends first.
    #[inline(always)]
    fn fill(&mut self, need: usize) -> std::io::Result<bool> {
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
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end >= need)
    }

    /// The next record as (capture time in ns, data); `Ok(None)` at the end of the file; `Err`
    /// for a truncated or impossible record (what came before stays valid).
    pub fn next_record(&mut self) -> Result<Option<(i64, &[u8])>, String> {
        let whole = self.fill(16).map_err(|e| e.to_string())?;
        if !whole {
            return match self.end - self.start {
                0 => Ok(None),
                n => Err(format!(
                    "truncated dump file; tried to read 16 header bytes, only got {n}"
                )),
            };
        }
        let h = &self.buf[self.start..self.start + 16];
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
        if !self.fill(16 + len).map_err(|e| e.to_string())? {
            return Err(format!(
                "truncated dump file; tried to read {len} captured bytes, only got {}",
                self.end - self.start - 16
            ));
        }
        let ts = secs
            .saturating_mul(1_000_000_000)
            .saturating_add(if self.nanos { frac } else { frac * 1000 });
        let data = &self.buf[self.start + 16..self.start + 16 + len];
        self.start += 16 + len;
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
        let root = crate::inputs::packet::tests::suricata_captures();
        let mut files = 0;
        for dir in std::fs::read_dir(&root).unwrap().flatten() {
            let path = dir.path().join("input.pcap");
            let Some(mut r) = Reader::open(&path).unwrap() else {
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
        let mut r = Reader::open(&path).unwrap().unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            let (ts, data) = r.next_record().unwrap().unwrap();
            assert_eq!(ts, i as i64 * 1_000_000_000 + 5_000);
            assert_eq!(data.len(), len);
            assert!(data.iter().all(|&b| b == i as u8 + 1));
        }
        assert!(r.next_record().unwrap().is_none());
    }
}
