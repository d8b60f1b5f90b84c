//! Capture files read through the engine in capture order: pcap and pcapng by libpcap, a
//! FIFO or standard input relayed through a pipe so that a stop can end a read that waits for
//! its writer, and classic pcap read by trawl itself when libpcap cannot.

use super::ts_ns;
use crate::wire::pcapfile::{wait_ready, Reader, Sniffed, Source};
use crate::wire::Engine;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
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
    let (source, head) = match Reader::open(path, stop) {
        Ok(Sniffed::Classic(r)) => return Ok(read_classic(r, path, engine, stop, batch, flush)),
        Ok(Sniffed::Other { source, head }) => (source, head),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if path.as_os_str() != "-" && !source.waits() && !source.gzipped() {
        // A regular file (pcapng, or too short to tell): libpcap reopens it by name.
        drop(source);
        let cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(read_libpcap(cap, path, engine, stop, batch, flush));
    }
    read_relayed(source, head, path, engine, stop, batch, flush)
}

/// A stream libpcap must read (pcapng) whose first bytes are already consumed: a thread
/// writes them, then the rest of the stream, into a pipe that libpcap reads.
fn read_relayed(
    source: Source,
    head: Vec<u8>,
    path: &Path,
    engine: &mut Engine,
    stop: &AtomicBool,
    batch: usize,
    flush: &mut dyn FnMut(&mut Engine) -> bool,
) -> Result<FileSummary, String> {
    let (from, to) =
        relay_pipe().map_err(|e| format!("{}: cannot make a pipe: {e}", path.display()))?;
    // Set when libpcap will not read the pipe: the relay must not wait for room.
    let abandoned = AtomicBool::new(false);
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("trawl-pcap-relay".into())
            .spawn_scoped(s, || relay(source, head, to, &abandoned))
            .map_err(|e| format!("{}: cannot start a reader thread: {e}", path.display()))?;
        // SAFETY: `from` is an open descriptor owned by nobody else from here on; the capture
        // closes it when dropped.
        let opened = unsafe {
            pcap::Capture::from_raw_fd_with_precision(from.into_raw_fd(), pcap::Precision::Nano)
        };
        match opened {
            Ok(cap) => Ok(read_libpcap(cap, path, engine, stop, batch, flush)),
            Err(e) => {
                abandoned.store(true, Ordering::Relaxed);
                Err(format!("{}: {e}", path.display()))
            }
        }
    })
}

/// A pipe whose write end does not block, so that the relay can give up when nobody reads.
fn relay_pipe() -> std::io::Result<(OwnedFd, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nothing else.
    let (from, to) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on an open descriptor with valid flags.
    if unsafe { libc::fcntl(to.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((from, File::from(to)))
}

/// Copies `head`, then `source` until its end (or `stop`), into `to`; closing `to` is the end
/// of the file for libpcap. Read errors end the copy as a truncation would (libpcap reports it).
fn relay(mut source: Source, head: Vec<u8>, mut to: File, abandoned: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    let mut chunk = head.len();
    buf[..chunk].copy_from_slice(&head);
    loop {
        if !send(&mut to, &buf[..chunk], abandoned) {
            return;
        }
        chunk = match source.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
    }
}

/// Writes all of `data` into the non-blocking pipe `to`; false when libpcap is gone.
fn send(to: &mut File, mut data: &[u8], abandoned: &AtomicBool) -> bool {
    while !data.is_empty() {
        if abandoned.load(Ordering::Relaxed) {
            return false;
        }
        match to.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if wait_ready(to, libc::POLLOUT).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
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

/// `read_file` for a classic pcap file.
fn read_classic(
    mut r: Reader,
    path: &Path,
    engine: &mut Engine,
    stop: &AtomicBool,
    batch: usize,
    flush: &mut dyn FnMut(&mut Engine) -> bool,
) -> FileSummary {
    let mut summary = FileSummary::default();
    let link = r.link;
    loop {
        if r.may_wait() && engine.out.pending() > 0 && !flush(engine) {
            return summary;
        }
        match r.next_record() {
            Ok(Some((ts, data))) => {
                summary.packets += 1;
                engine.packet(link, ts, data);
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
    finish(engine, flush);
    summary
}
