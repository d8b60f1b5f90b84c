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
    let records = match Reader::open(path, stop) {
        Ok(Sniffed::Classic(r)) => Records::Classic(r),
        Ok(Sniffed::Pcapng(r)) => Records::Pcapng(r),
        Ok(Sniffed::Other { source, .. }) => {
            if path.as_os_str() == "-" || source.waits() || source.gzipped() {
                return Err(format!("{}: not a pcap or pcapng capture", path.display()));
            }
            // A regular file too short to tell, or of a format libpcap may know: it reopens
            // it by name and says what is wrong with it.
            drop(source);
            let cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(read_libpcap(cap, path, engine, stop, batch, flush));
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    Ok(read_records(records, path, engine, stop, batch, flush))
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

/// A capture trawl reads itself.
enum Records<'a> {
    Classic(Reader<'a>),
    Pcapng(PcapngReader<'a>),
}

impl Records<'_> {
    fn may_wait(&self) -> bool {
        match self {
            Records::Classic(r) => r.may_wait(),
            Records::Pcapng(r) => r.may_wait(),
        }
    }
}

/// `read_file` for a classic pcap or a pcapng capture.
fn read_records(
    mut records: Records,
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
        let next = match &mut records {
            Records::Classic(r) => {
                let link = r.link;
                r.next_record()
                    .map(|p| p.map(|(ts, data)| (None, link, ts, data)))
            }
            Records::Pcapng(r) => r
                .next_packet()
                .map(|p| p.map(|p| (p.interface, p.link, p.ts_ns, p.data))),
        };
        match next {
            // Several interfaces (a pcapng): their packets are put back in capture order.
            Ok(Some((interface, link, ts, data))) if interface.is_some() || !held.is_empty() => {
                summary.packets += 1;
                held.push(interface, link, ts, data);
                while let Some(p) = held.pop(false) {
                    engine.packet_on(p.interface, p.link, p.ts_ns(), &p.data);
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
        engine.packet_on(p.interface, p.link, p.ts_ns(), &p.data);
    }
    finish(engine, flush);
    summary
}
