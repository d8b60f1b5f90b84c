//! The disk buffer: batches are appended as checksummed records to segment files
//! (`data_dir/buffers/OUTPUT/NNN.seg`), acknowledged upstream once written (and fsynced with
//! `sync: true`, the default), then replayed to the output. A segment is deleted once every
//! record in it was delivered; the delivered position is saved (write, fsync, rename) at most
//! every 500 ms, so a restart re-sends at most that much. After `kill -9`, a torn record at the
//! end of the last segment is detected by its checksum and cut off; everything before it is
//! replayed. A record damaged in the middle of a segment loses only itself (counted).
//! Events the reader could not take back (nested too deep, too large) are refused before they
//! are acknowledged, and go to the output's dead letters. `trawl_buffer_bytes` and
//! `trawl_buffer_events` count what is written and not yet delivered, from what is on disk at
//! start-up on.

use super::codec;
use super::recovery::{count_events, read_range, read_record, resync, valid_length};
use super::{Config, WhenFull};
use crate::event::{AckTracker, Batch, BatchStatus, Event};
use crate::outputs::dead_letter::{DeadLetters, Rejection};
use crate::pipeline::channel::{BatchReceiver, BatchSender};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const SAVE_EVERY: Duration = Duration::from_millis(500);

/// A place in the buffer: segment number and byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    seg: u64,
    off: u64,
}

struct State {
    /// Segment being appended to, and its committed length.
    write: Pos,
    /// Bytes written and not yet delivered.
    unacked: u64,
    /// Events in them (a damaged record's are only forgotten once the buffer is empty).
    unacked_events: u64,
    /// Upstream is closed and everything was written.
    closed: bool,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled when records were written (reader waits on it).
    written: Condvar,
    /// Signalled when delivered records freed room (writer waits on it).
    freed: Condvar,
}

fn seg_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:020}.seg"))
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut segs: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    segs.sort_unstable();
    Ok(segs)
}

/// Reads the saved delivered position.
fn load_position(dir: &Path) -> Option<Pos> {
    let text = std::fs::read_to_string(dir.join("position")).ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some(Pos {
        seg: it.next()??,
        off: it.next()??,
    })
}

fn save_position(dir: &Path, pos: Pos) -> std::io::Result<()> {
    let tmp = dir.join("position.tmp");
    let mut f = File::create(&tmp)?;
    writeln!(f, "{} {}", pos.seg, pos.off)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("position"))?;
    sync_dir(dir)
}

/// Takes an exclusive lock on the buffer folder for the life of the process, so that two trawl
/// processes given the same `data_dir` cannot interleave records.
fn lock(dir: &Path) -> anyhow::Result<File> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor we own, valid for the duration of the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "disk buffer {} is in use by another trawl process (same data_dir?)",
            dir.display()
        );
    }
    Ok(f)
}

pub fn start(
    dir: &Path,
    config: &Config,
    upstream: BatchReceiver,
    out: BatchSender,
    metrics: Arc<ComponentMetrics>,
    dead_letters: DeadLetters,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| anyhow::anyhow!("disk buffer started outside the runtime: {e}"))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating disk buffer {}: {e}", dir.display()))?;
    let lock = lock(dir)?;
    let segs = list_segments(dir)?;
    let last = segs.last().copied().unwrap_or(0);
    // Recover the segment that was being written: cut a torn tail left by a crash.
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(seg_path(dir, last))?;
    if segs.is_empty() {
        // A new buffer: its folder and first segment must outlive a power loss like the
        // records written into them.
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let valid = valid_length(&file)?;
    let len = file.metadata()?.len();
    if valid < len {
        tracing::warn!(buffer = %dir.display(), segment = last, cut = len - valid, "disk buffer: cutting a torn record at the end (an interrupted write)");
        file.set_len(valid)?;
        file.sync_all()?;
    }
    let first = segs.first().copied().unwrap_or(last);
    let acked = load_position(dir)
        .filter(|p| p.seg >= first && p.seg <= last)
        .unwrap_or(Pos { seg: first, off: 0 });
    let mut unacked = 0u64;
    let mut unacked_events = 0u64;
    for s in segs.iter().copied().filter(|s| *s >= acked.seg) {
        let l = if s == last {
            valid
        } else {
            std::fs::metadata(seg_path(dir, s))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let from = if s == acked.seg { acked.off } else { 0 };
        unacked += l.saturating_sub(from);
        if l > from {
            unacked_events += File::open(seg_path(dir, s))
                .and_then(|f| count_events(&f, from, l))
                .unwrap_or(0);
        }
    }
    if unacked > 0 {
        tracing::info!(buffer = %dir.display(), bytes = unacked, events = unacked_events, "disk buffer: replaying what was not delivered before the last stop");
    }
    let shared = Arc::new(Shared {
        dir: dir.to_owned(),
        state: Mutex::new(State {
            write: Pos {
                seg: last,
                off: valid,
            },
            unacked,
            unacked_events,
            closed: false,
        }),
        written: Condvar::new(),
        freed: Condvar::new(),
    });
    metrics
        .buffer_limit
        .store(config.max_size.bytes() as i64, Ordering::Relaxed);
    metrics
        .buffer_bytes
        .store(unacked as i64, Ordering::Relaxed);
    metrics
        .buffer_events
        .store(unacked_events as i64, Ordering::Relaxed);
    let segment_size = (config.max_size.bytes() / 8).clamp(1 << 20, 64 << 20);
    let writer = Writer {
        shared: shared.clone(),
        file,
        dead_letters,
        runtime,
        max_size: config.max_size.bytes().max(1),
        segment_size,
        when_full: config.when_full,
        sync: config.sync,
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name("trawl-buf-write".into())
        .spawn(move || {
            // The lock is held as long as the writer runs.
            let _lock = lock;
            writer.run(upstream)
        })?;
    let reader = Reader {
        shared,
        out,
        metrics,
        acked,
        read: acked,
        tracker: AckTracker::new(),
        entries: VecDeque::new(),
        saved: Instant::now(),
    };
    std::thread::Builder::new()
        .name("trawl-buf-read".into())
        .spawn(move || reader.run())?;
    Ok(())
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Where events the reader could not take back go.
    dead_letters: DeadLetters,
    /// To hand dead letters to the (async) dead-letter output from this thread.
    runtime: tokio::runtime::Handle,
    max_size: u64,
    segment_size: u64,
    when_full: WhenFull,
    sync: bool,
    metrics: Arc<ComponentMetrics>,
}

impl Writer {
    fn run(mut self, mut upstream: BatchReceiver) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut record = Vec::new();
        let mut acks = Vec::new();
        // Events in the records grouped in `buf`.
        let mut events = 0u64;
        let mut logged_full = false;
        while let Some(first) = upstream.blocking_recv() {
            let mut next = Some(first);
            while let Some(batch) = next.take() {
                let start = buf.len();
                let refused = encode_batch(&batch.events, &mut record, &mut buf);
                let batch_events = (batch.len() - refused.len()) as u64;
                let size = (buf.len() - start) as u64;
                if !self.has_room(size + start as u64) {
                    // Write what is grouped so far, then wait for room or drop.
                    let records = buf.split_off(start);
                    if let Err(e) = self.commit_retrying(&mut buf, &mut events, &mut acks) {
                        return self.fail(e, batch, upstream);
                    }
                    if self.when_full == WhenFull::DropNewest {
                        self.metrics
                            .events_dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        if !logged_full {
                            logged_full = true;
                            tracing::warn!(output = %self.metrics.name, "disk buffer full: dropping new batches (logged once; counted in trawl_events_dropped_total)");
                        }
                        batch.ack.rejected();
                        next = upstream.try_recv();
                        continue;
                    }
                    self.wait_for_room(size);
                    buf = records;
                }
                events += batch_events;
                if !refused.is_empty() {
                    // Settled with the batch: its acknowledgement waits for the dead letters.
                    let rejected = refused
                        .into_iter()
                        .map(|(i, why)| Rejection {
                            event: batch.events[i].clone(),
                            kind: "disk_buffer_unwritable".into(),
                            reason: format!("event {why}: the disk buffer could not read it back"),
                        })
                        .collect();
                    self.runtime
                        .block_on(self.dead_letters.send(rejected, &batch.ack));
                }
                acks.push(batch.ack);
                // Group what is already queued into one write and one fsync.
                if buf.len() < (1 << 20) {
                    next = upstream.try_recv();
                }
            }
            if let Err(e) = self.commit_retrying(&mut buf, &mut events, &mut acks) {
                tracing::error!(output = %self.metrics.name, error = %e, "disk buffer: cannot write; batches are not acknowledged");
                self.metrics.set_failed(format!("disk buffer: {e}"));
                return self.close();
            }
        }
        self.close();
    }

    fn has_room(&self, size: u64) -> bool {
        let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.unacked == 0 || st.unacked + size <= self.max_size
    }

    fn wait_for_room(&self, size: u64) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.unacked > 0 && st.unacked + size > self.max_size {
            st = match self
                .shared
                .freed
                .wait_timeout(st, Duration::from_millis(500))
            {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// `commit`, waiting out a write that fails (a full disk, most often): the segment is cut
    /// back to its last whole record and the write tried again after a back-off (1 s doubling
    /// to 30 s), so the batches wait, unacknowledged, and their inputs with them, instead of
    /// the buffer failing for good. Gives up only when the segment cannot even be cut back.
    fn commit_retrying(
        &mut self,
        buf: &mut Vec<u8>,
        events: &mut u64,
        acks: &mut Vec<crate::event::BatchAck>,
    ) -> std::io::Result<()> {
        let mut wait = Duration::from_secs(1);
        let mut failing = false;
        loop {
            let written_before = self
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write;
            match self.commit(buf, events, acks) {
                Ok(()) => {
                    if failing {
                        tracing::info!(output = %self.metrics.name, "disk buffer: writing works again");
                        self.metrics.clear_failed();
                    }
                    return Ok(());
                }
                Err(e) => {
                    let now = self
                        .shared
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write;
                    if now == written_before {
                        // Nothing was published: drop the torn tail of this attempt.
                        self.file.set_len(now.off)?;
                    } else if buf.is_empty() {
                        // Written and acknowledged; only rolling to a new segment failed, and
                        // the next commit rolls again.
                        return Ok(());
                    }
                    if !failing {
                        failing = true;
                        tracing::error!(output = %self.metrics.name, error = %e, "disk buffer: cannot write; its batches wait (not acknowledged) and the write is tried again (logged once)");
                    }
                    self.metrics.set_failed(format!("disk buffer: {e}"));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Appends `buf` (holding `events`), fsyncs when asked, publishes the new end to the
    /// reader, acknowledges.
    fn commit(
        &mut self,
        buf: &mut Vec<u8>,
        events: &mut u64,
        acks: &mut Vec<crate::event::BatchAck>,
    ) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        if self.sync {
            self.file.sync_data()?;
        }
        let n = buf.len() as u64;
        buf.clear();
        let roll = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.write.off += n;
            st.unacked += n;
            st.unacked_events += std::mem::take(events);
            publish(&self.metrics, &st);
            st.write.off >= self.segment_size
        };
        self.shared.written.notify_all();
        for a in acks.drain(..) {
            a.delivered();
        }
        if roll {
            self.file.sync_all()?;
            let seg = self
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write
                .seg
                + 1;
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(seg_path(&self.shared.dir, seg))?;
            sync_dir(&self.shared.dir)?;
            self.file = f;
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.write = Pos { seg, off: 0 };
        }
        Ok(())
    }

    fn fail(self, e: std::io::Error, batch: Batch, mut upstream: BatchReceiver) {
        tracing::error!(output = %self.metrics.name, error = %e, "disk buffer: cannot write; batches are not acknowledged");
        self.metrics.set_failed(format!("disk buffer: {e}"));
        batch.ack.failed();
        while let Some(b) = upstream.blocking_recv() {
            b.ack.failed();
        }
        self.close();
    }

    fn close(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.written.notify_all();
    }
}

/// Frames `events` as records appended to `out` (several when they would not fit in one);
/// `record` is scratch space. Returns the events refused, by index, with why.
fn encode_batch(
    events: &[Event],
    record: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Vec<(usize, codec::Unwritable)> {
    let mut refused = Vec::new();
    let mut count = 0u32;
    record.clear();
    for (i, e) in events.iter().enumerate() {
        match codec::encode_event(e, record) {
            Ok(()) => count += 1,
            Err(codec::Unwritable::TooLarge) if count > 0 => {
                // Full: close this record and try the event in a new one.
                codec::frame(count, record, out);
                record.clear();
                count = 0;
                match codec::encode_event(e, record) {
                    Ok(()) => count += 1,
                    Err(why) => refused.push((i, why)),
                }
            }
            Err(why) => refused.push((i, why)),
        }
    }
    if count > 0 {
        codec::frame(count, record, out);
    }
    // One huge event must not keep its room for the life of the buffer.
    if record.capacity() > 8 << 20 {
        *record = Vec::new();
    }
    refused
}

fn publish(metrics: &ComponentMetrics, st: &State) {
    metrics
        .buffer_bytes
        .store(st.unacked as i64, Ordering::Relaxed);
    metrics
        .buffer_events
        .store(st.unacked_events as i64, Ordering::Relaxed);
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record handed to the output and not yet settled.
struct Entry {
    start: Pos,
    end: Pos,
    /// Buffer bytes it holds (counted in `unacked` until settled).
    bytes: u64,
    /// Events in it (0 for a damaged record, whose count is unknown).
    events: u64,
    done: bool,
}

struct Reader {
    shared: Arc<Shared>,
    out: BatchSender,
    metrics: Arc<ComponentMetrics>,
    /// Everything before this was delivered.
    acked: Pos,
    /// Next record to read.
    read: Pos,
    tracker: AckTracker,
    /// Records in flight, in buffer order, and the tracker sequence of each.
    entries: VecDeque<(u64, Entry)>,
    saved: Instant,
}

impl Reader {
    fn run(mut self) {
        let mut file: Option<(u64, File)> = None;
        loop {
            self.settle();
            let (write, closed) = {
                let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                (st.write, st.closed)
            };
            if self.read.seg < write.seg {
                let len = std::fs::metadata(seg_path(&self.shared.dir, self.read.seg))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if self.read.off >= len {
                    self.read = Pos {
                        seg: self.read.seg + 1,
                        off: 0,
                    };
                    continue;
                }
            }
            // Where the written records of this segment end.
            let end = if self.read.seg < write.seg {
                std::fs::metadata(seg_path(&self.shared.dir, self.read.seg))
                    .map(|m| m.len())
                    .unwrap_or(0)
            } else {
                write.off
            };
            if self.read.off < end {
                if file.as_ref().is_none_or(|(s, _)| *s != self.read.seg) {
                    match File::open(seg_path(&self.shared.dir, self.read.seg)) {
                        Ok(f) => file = Some((self.read.seg, f)),
                        Err(e) => {
                            self.skip(&format!("cannot open segment: {e}"), end, end);
                            continue;
                        }
                    }
                }
                let Some((_, f)) = &file else { continue };
                match read_record(f, self.read.off) {
                    Ok((events, size)) => {
                        let start = self.read;
                        self.read.off += size;
                        if !self.send(events, start, self.read, size) {
                            return;
                        }
                    }
                    Err(why) => {
                        let to = read_range(f, self.read.off, end)
                            .map(|rest| self.read.off + resync(&rest) as u64)
                            .unwrap_or(end);
                        self.skip(&why, to, end);
                    }
                }
                continue;
            }
            if closed && self.entries.is_empty() {
                self.save();
                return;
            }
            let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self
                .shared
                .written
                .wait_timeout(st, Duration::from_millis(100));
        }
    }

    /// Skips a damaged record: from the read position to `to`, the next intact record of the
    /// segment (`end` when none follows: on to the next segment). Counted and logged.
    fn skip(&mut self, why: &str, to: u64, end: u64) {
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(output = %self.metrics.name, segment = self.read.seg, offset = self.read.off,
            bytes = to.saturating_sub(self.read.off), why,
            "disk buffer: damaged record; its events are lost, the records after it are replayed (counted in trawl_errors_total)");
        let write = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write;
        let next = if to >= end && self.read.seg < write.seg {
            Pos {
                seg: self.read.seg + 1,
                off: 0,
            }
        } else {
            Pos {
                seg: self.read.seg,
                off: to.max(self.read.off),
            }
        };
        let entry = Entry {
            start: self.read,
            end: next,
            bytes: to.min(end).saturating_sub(self.read.off),
            events: 0,
            done: true,
        };
        self.entries.push_back((u64::MAX, entry));
        self.read = next;
    }

    fn send(&mut self, events: Vec<Event>, start: Pos, end: Pos, bytes: u64) -> bool {
        let (seq, ack) = self.tracker.track();
        self.entries.push_back((
            seq,
            Entry {
                start,
                end,
                bytes,
                events: events.len() as u64,
                done: false,
            },
        ));
        self.out.blocking_send(Batch::new(events, ack)).is_ok()
    }

    /// Takes settled batches: marks them done, re-sends failed ones, moves the delivered
    /// position, frees room, deletes delivered segments.
    fn settle(&mut self) {
        for acked in self.tracker.drain() {
            let Some(i) = self.entries.iter().position(|(s, _)| *s == acked.seq) else {
                continue;
            };
            if acked.status == BatchStatus::Failed {
                // The output could not deliver it (it gave up, or is shutting down): read it
                // again after a pause, so it is not lost and not hammered.
                std::thread::sleep(Duration::from_millis(500));
                let start = self.entries[i].1.start;
                let f = File::open(seg_path(&self.shared.dir, start.seg));
                match f
                    .map_err(|e| e.to_string())
                    .and_then(|f| read_record(&f, start.off))
                {
                    Ok((events, _)) => {
                        let (seq, ack) = self.tracker.track();
                        self.entries[i].0 = seq;
                        if self.out.blocking_send(Batch::new(events, ack)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(output = %self.metrics.name, error = %e, "disk buffer: cannot re-read a failed batch; its events are lost (counted in trawl_errors_total)");
                        self.entries[i].1.done = true;
                    }
                }
            } else {
                self.entries[i].1.done = true;
            }
        }
        let mut freed = 0u64;
        let mut freed_events = 0u64;
        while self.entries.front().is_some_and(|(_, e)| e.done) {
            let Some((_, e)) = self.entries.pop_front() else {
                break;
            };
            freed += e.bytes;
            freed_events += e.events;
            for seg in self.acked.seg..e.end.seg {
                let _ = std::fs::remove_file(seg_path(&self.shared.dir, seg));
            }
            self.acked = e.end;
        }
        if freed > 0 {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.unacked = st.unacked.saturating_sub(freed);
            st.unacked_events = if st.unacked == 0 {
                0
            } else {
                st.unacked_events.saturating_sub(freed_events)
            };
            publish(&self.metrics, &st);
            drop(st);
            self.shared.freed.notify_all();
        }
        if freed > 0 && self.saved.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    fn save(&mut self) {
        // A fully delivered segment that is no longer written to can go.
        let write = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write;
        if self.acked.seg < write.seg && self.acked == self.read && self.entries.is_empty() {
            for seg in self.acked.seg..self.read.seg.max(self.acked.seg) {
                let _ = std::fs::remove_file(seg_path(&self.shared.dir, seg));
            }
        }
        if let Err(e) = save_position(&self.shared.dir, self.acked) {
            tracing::warn!(error = %e, "disk buffer: cannot save the delivered position; a restart will re-send more");
        }
        self.saved = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::pipeline::channel::batch_channel;
    use crate::telemetry::metrics::ComponentKind;

    fn config(max_size: u64) -> Config {
        Config {
            kind: super::super::BufferKind::Disk,
            max_events: 0,
            max_size: crate::config::ByteSize(max_size),
            when_full: WhenFull::Block,
            sync: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rolls_segments_delivers_in_order_and_deletes_what_was_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(ComponentMetrics::new(
            ComponentKind::Output,
            "o".into(),
            "null",
        ));
        let (up_tx, up_rx) = batch_channel(4, metrics.clone());
        let (down_tx, mut down_rx) = batch_channel(4, metrics.clone());
        // 8 MiB: segments of 1 MiB; about 6 MB is written, so several segments roll, and the
        // writer must wait for deliveries to free room.
        let dead_letters = DeadLetters::for_stage("o".into(), None, metrics.clone(), dir.path());
        start(
            dir.path(),
            &config(8 << 20),
            up_rx,
            down_tx,
            metrics,
            dead_letters,
        )
        .unwrap();
        let producer = tokio::spawn(async move {
            let tracker = AckTracker::new();
            for b in 0..600u64 {
                let events = (0..10)
                    .map(|i| {
                        Event::from_message(
                            "in".into(),
                            chrono::Utc::now(),
                            format!("{:06} {}", b * 10 + i, "x".repeat(1000)),
                        )
                    })
                    .collect();
                let (_, ack) = tracker.track();
                up_tx.send(Batch::new(events, ack)).await.unwrap();
            }
            tracker
        });
        let mut next = 0u64;
        let mut max_segments = 0;
        while let Some(batch) = down_rx.recv().await {
            for e in &batch.events {
                let n: u64 = e.message().unwrap()[..6].parse().unwrap();
                assert_eq!(n, next, "delivered in order");
                next += 1;
            }
            batch.ack.delivered();
            max_segments = max_segments.max(list_segments(dir.path()).unwrap().len());
        }
        let tracker = producer.await.unwrap();
        assert_eq!(next, 6000);
        assert!(
            tracker
                .drain()
                .iter()
                .all(|a| a.status == BatchStatus::Delivered),
            "upstream acknowledged once on disk"
        );
        assert!(max_segments >= 2, "segments rolled");
        assert!(
            list_segments(dir.path()).unwrap().len() <= 2,
            "delivered segments were deleted"
        );
        let pos = load_position(dir.path()).unwrap();
        let write_len = std::fs::metadata(seg_path(dir.path(), pos.seg))
            .unwrap()
            .len();
        assert_eq!(
            pos.off, write_len,
            "the saved position is the end: nothing to replay"
        );
    }

    fn record(message: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let e = Event::from_message("in".into(), chrono::Utc::now(), message.into());
        codec::encode_event(&e, &mut bytes).unwrap();
        let mut out = Vec::new();
        codec::frame(1, &bytes, &mut out);
        out
    }

    /// With `max_size` of one byte the writer waits until every buffered byte is accounted
    /// delivered: bytes of a damaged tail skipped on to the next segment must be freed too, or
    /// the next batch waits forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_skipped_into_the_next_segment_are_freed() {
        let dir = tempfile::tempdir().unwrap();
        let seg0 = [record("a"), vec![0xee; 100]].concat();
        std::fs::write(seg_path(dir.path(), 0), seg0).unwrap();
        std::fs::write(seg_path(dir.path(), 1), record("b")).unwrap();
        let metrics = Arc::new(ComponentMetrics::new(
            ComponentKind::Output,
            "o".into(),
            "null",
        ));
        let (up_tx, up_rx) = batch_channel(4, metrics.clone());
        let (down_tx, mut down_rx) = batch_channel(4, metrics.clone());
        let dead_letters = DeadLetters::for_stage("o".into(), None, metrics.clone(), dir.path());
        start(
            dir.path(),
            &config(1),
            up_rx,
            down_tx,
            metrics.clone(),
            dead_letters,
        )
        .unwrap();
        async fn next(rx: &mut BatchReceiver) -> String {
            let b = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("a batch within 20 s: buffered bytes were not all freed")
                .expect("the buffer is open");
            let m = b.events[0].message().unwrap().to_owned();
            b.ack.delivered();
            m
        }
        assert_eq!(next(&mut down_rx).await, "a");
        assert_eq!(next(&mut down_rx).await, "b");
        assert_eq!(
            metrics.errors.load(Ordering::Relaxed),
            1,
            "the damage is counted"
        );
        let tracker = AckTracker::new();
        let (_, ack) = tracker.track();
        let e = Event::from_message("in".into(), chrono::Utc::now(), "c".into());
        up_tx.send(Batch::new(vec![e], ack)).await.unwrap();
        assert_eq!(next(&mut down_rx).await, "c");
    }

    #[test]
    fn a_second_process_cannot_take_the_same_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        // flock locks belong to open file descriptions: a second open conflicts like another
        // process would.
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another trawl process"), "{err}");
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }
}
