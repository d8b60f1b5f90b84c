//! Capture files read through the engine in capture order: classic pcap and pcapng read by
//! trawl itself (from a file, a FIFO or standard input, gzipped or not), anything else handed
//! to libpcap, which says what is wrong with it.

use super::ts_ns;
use crate::wire::pcapfile::{Reader, Sniffed};
use crate::wire::pcapng::{PcapngReader, Reorder};
use crate::wire::Engine;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a capture file ended.
#[derive(Debug, Default)]
pub struct FileSummary {
    pub packets: u64,
    /// A truncated or corrupt record stopped the reading early.
    pub error: Option<String>,
    /// Packets whose time was past what 64-bit nanoseconds hold (pcapng's `if_tsresol` and
    /// `if_tsoffset` allow that): clamped.
    pub clamped_times: u64,
}

/// Reads `path` (`-`: standard input; a FIFO or pipe too) through `engine`, calling `flush`
/// with the engine every `batch` events and at the end (after `finish`). `flush` returns false
/// to stop early. An unreadable file is `Err`; a truncated or corrupt record ends the file
/// early and is reported in the summary. Once `stop` is set, reading ends as at the end of
/// the file, even while a pipe is waiting for its writer.
pub fn read_file(
    path: &Path,
    engine: &mut Engine,
    stop: &AtomicBool,
    batch: usize,
    flush: &mut dyn FnMut(&mut Engine) -> bool,
) -> Result<FileSummary, String> {
    match Reader::open(path, stop) {
        Ok(Sniffed::Classic(r)) => Ok(read_records(r, path, engine, stop, batch, flush)),
        Ok(Sniffed::Pcapng(r)) => Ok(read_records(r, path, engine, stop, batch, flush)),
        Ok(Sniffed::Other { source }) => {
            if path.as_os_str() == "-" || source.waits() || source.gzipped() {
                return Err(format!("{}: not a pcap or pcapng capture", path.display()));
            }
            // A regular file too short to tell, or of a format libpcap may know: it reopens
            // it by name and says what is wrong with it.
            drop(source);
            let cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(read_libpcap(cap, path, engine, stop, batch, flush))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `read_file` for what libpcap reads.
fn read_libpcap(
    mut cap: pcap::Capture<pcap::Offline>,
    path: &Path,
    engine: &mut Engine,
    stop: &AtomicBool,
    batch: usize,
    flush: &mut dyn FnMut(&mut Engine) -> bool,
) -> FileSummary {
    let link = cap.get_datalink().0;
    let mut summary = FileSummary::default();
    loop {
        match cap.next_packet() {
            Ok(p) => {
                summary.packets += 1;
                engine.packet(link, ts_ns(p.header, true), p.data);
            }
            Err(pcap::Error::NoMorePackets) => break,
            // A stop cuts the stream wherever it was: not damage.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                summary.error = Some(format!(
                    "{}: after {} packets: {e}",
                    path.display(),
                    summary.packets
                ));
                break;
            }
        }
        if engine.out.pending() >= batch && !flush(engine) {
            return summary;
        }
        if summary.packets % 4096 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    finish(engine, flush);
    summary
}

/// Reports what is still open at the end of a capture, handing each batch to `flush`.
pub(super) fn finish(engine: &mut Engine, flush: &mut dyn FnMut(&mut Engine) -> bool) {
    while engine.finish_batch() {
        if !flush(engine) {
            return;
        }
    }
    flush(engine);
}

/// A capture trawl reads itself, packet by packet (generic, so that each format's loop is
/// compiled for it: the classic one is `trawl pcap`'s hot path).
trait Records {
    fn may_wait(&self) -> bool;
    /// The next packet: (interface, link type, time in ns, bytes).
    #[allow(clippy::type_complexity)]
    fn next(&mut self) -> Result<Option<(Option<u32>, i32, i64, &[u8])>, String>;
    /// Packets whose time was clamped (`FileSummary::clamped_times`).
    fn clamped_times(&self) -> u64 {
        0
    }
}

impl Records for Reader<'_> {
    fn may_wait(&self) -> bool {
        Reader::may_wait(self)
    }
    #[inline(always)]
    fn next(&mut self) -> Result<Option<(Option<u32>, i32, i64, &[u8])>, String> {
        let link = self.link;
        Ok(self.next_record()?.map(|(ts, data)| (None, link, ts, data)))
    }
}

impl Records for PcapngReader<'_> {
    fn may_wait(&self) -> bool {
        PcapngReader::may_wait(self)
    }
    fn next(&mut self) -> Result<Option<(Option<u32>, i32, i64, &[u8])>, String> {
        Ok(self
            .next_packet()?
            .map(|p| (p.interface, p.link, p.ts_ns, p.data)))
    }
    fn clamped_times(&self) -> u64 {
        self.clamped_times
    }
}

/// `read_file` for a classic pcap or a pcapng capture.
fn read_records<R: Records>(
    mut records: R,
    path: &Path,
    engine: &mut Engine,
    stop: &AtomicBool,
    batch: usize,
    flush: &mut dyn FnMut(&mut Engine) -> bool,
) -> FileSummary {
    let mut summary = FileSummary::default();
    let mut held = Reorder::default();
    loop {
        if records.may_wait() && engine.out.pending() > 0 && !flush(engine) {
            return summary;
        }
        match records.next() {
            // Several interfaces (a pcapng): their packets are put back in capture order.
            Ok(Some((interface, link, ts, data))) if interface.is_some() || !held.is_empty() => {
                summary.packets += 1;
                held.push(interface, link, ts, data);
                while let Some(p) = held.pop(false) {
                    engine.packet_on(p.interface, p.link, p.ts_ns, &p.data);
                    held.recycle(p.data);
                }
            }
            Ok(Some((interface, link, ts, data))) => {
                summary.packets += 1;
                engine.packet_on(interface, link, ts, data);
            }
            Ok(None) => break,
            // A stop cuts the stream wherever it was: not damage.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                summary.error = Some(format!(
                    "{}: after {} packets: {e}",
                    path.display(),
                    summary.packets
                ));
                break;
            }
        }
        if engine.out.pending() >= batch && !flush(engine) {
            return summary;
        }
        if summary.packets % 4096 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    while let Some(p) = held.pop(true) {
        engine.packet_on(p.interface, p.link, p.ts_ns, &p.data);
    }
    summary.clamped_times = records.clamped_times();
    finish(engine, flush);
    summary
}
