//! The disk buffer: batches are appended as checksummed records to segment files
//! (`data_dir/buffers/OUTPUT/NNN.seg`), acknowledged upstream once written (and fsynced with
//! `sync: true`, the default), then replayed to the output. A segment is deleted once every
//! record in it was delivered; the delivered position is saved (write, fsync, rename) at most
//! every 500 ms, so a restart re-sends at most that much. After `kill -9`, a torn record at the
//! end of the last segment is detected by its checksum and cut off; everything before it is
//! replayed.

use super::codec;
use super::{Config, WhenFull};
use crate::event::{AckTracker, Batch, BatchStatus};
use crate::pipeline::channel::{BatchReceiver, BatchSender};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A record larger than this is not something trawl wrote: the segment is damaged.
const MAX_RECORD: usize = 256 << 20;
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
    File::open(dir)?.sync_all()
}

/// Length of the valid prefix of a segment: up to the first torn or damaged record.
fn valid_length(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut off = 0u64;
    let mut head = [0u8; codec::HEADER];
    while off + codec::HEADER as u64 <= len {
        file.read_exact_at(&mut head, off)?;
        let Some((n, crc)) = codec::header(&head) else {
            break;
        };
        if n > MAX_RECORD || off + (codec::HEADER + n) as u64 > len {
            break;
        }
        let mut payload = vec![0u8; n];
        file.read_exact_at(&mut payload, off + codec::HEADER as u64)?;
        if !codec::checksum_ok(&payload, crc) {
            break;
        }
        off += (codec::HEADER + n) as u64;
    }
    Ok(off)
}

pub fn start(
    dir: &Path,
    config: &Config,
    upstream: BatchReceiver,
    out: BatchSender,
    metrics: Arc<ComponentMetrics>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating disk buffer {}: {e}", dir.display()))?;
    let segs = list_segments(dir)?;
    let last = segs.last().copied().unwrap_or(0);
    // Recover the segment that was being written: cut a torn tail left by a crash.
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(seg_path(dir, last))?;
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
    for s in segs.iter().copied().filter(|s| *s >= acked.seg) {
        let l = if s == last {
            valid
        } else {
            std::fs::metadata(seg_path(dir, s))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        unacked += l.saturating_sub(if s == acked.seg { acked.off } else { 0 });
    }
    if unacked > 0 {
        tracing::info!(buffer = %dir.display(), bytes = unacked, "disk buffer: replaying what was not delivered before the last stop");
    }
    let shared = Arc::new(Shared {
        dir: dir.to_owned(),
        state: Mutex::new(State {
            write: Pos {
                seg: last,
                off: valid,
            },
            unacked,
            closed: false,
        }),
        written: Condvar::new(),
        freed: Condvar::new(),
    });
    let segment_size = (config.max_size.bytes() / 8).clamp(1 << 20, 64 << 20);
    let writer = Writer {
        shared: shared.clone(),
        file,
        max_size: config.max_size.bytes().max(1),
        segment_size,
        when_full: config.when_full,
        sync: config.sync,
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name("trawl-buf-write".into())
        .spawn(move || writer.run(upstream))?;
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
    max_size: u64,
    segment_size: u64,
    when_full: WhenFull,
    sync: bool,
    metrics: Arc<ComponentMetrics>,
}

impl Writer {
    fn run(mut self, mut upstream: BatchReceiver) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut acks = Vec::new();
        let mut logged_full = false;
        while let Some(first) = upstream.blocking_recv() {
            let mut next = Some(first);
            while let Some(batch) = next.take() {
                let start = buf.len();
                codec::encode_record(&batch.events, &mut buf);
                let size = (buf.len() - start) as u64;
                if !self.has_room(size + start as u64) {
                    // Write what is grouped so far, then wait for room or drop.
                    let record = buf.split_off(start);
                    if let Err(e) = self.commit(&mut buf, &mut acks) {
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
                    buf = record;
                }
                acks.push(batch.ack);
                // Group what is already queued into one write and one fsync.
                if buf.len() < (1 << 20) {
                    next = upstream.try_recv();
                }
            }
            if let Err(e) = self.commit(&mut buf, &mut acks) {
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

    /// Appends `buf`, fsyncs when asked, publishes the new end to the reader, acknowledges.
    fn commit(
        &mut self,
        buf: &mut Vec<u8>,
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
            File::open(&self.shared.dir)?.sync_all()?;
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

/// A record handed to the output and not yet settled.
struct Entry {
    start: Pos,
    end: Pos,
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
            let end = if self.read.seg < write.seg {
                u64::MAX
            } else {
                write.off
            };
            if self.read.off < end {
                if file.as_ref().is_none_or(|(s, _)| *s != self.read.seg) {
                    match File::open(seg_path(&self.shared.dir, self.read.seg)) {
                        Ok(f) => file = Some((self.read.seg, f)),
                        Err(e) => {
                            self.damaged(&format!("cannot open segment: {e}"));
                            continue;
                        }
                    }
                }
                let Some((_, f)) = &file else { continue };
                match read_record(f, self.read.off) {
                    Ok((events, size)) => {
                        let start = self.read;
                        self.read.off += size;
                        if !self.send(events, start, self.read) {
                            return;
                        }
                    }
                    Err(e) => self.damaged(&e),
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

    /// Skips the rest of a damaged segment (counted and logged).
    fn damaged(&mut self, why: &str) {
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(output = %self.metrics.name, segment = self.read.seg, offset = self.read.off, why, "disk buffer: damaged record; skipping the rest of the segment");
        let write = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write;
        let skipped_to = if self.read.seg < write.seg {
            Pos {
                seg: self.read.seg + 1,
                off: 0,
            }
        } else {
            write
        };
        let entry = Entry {
            start: self.read,
            end: skipped_to,
            done: true,
        };
        self.entries.push_back((u64::MAX, entry));
        self.read = skipped_to;
    }

    fn send(&mut self, events: Vec<crate::event::Event>, start: Pos, end: Pos) -> bool {
        let (seq, ack) = self.tracker.track();
        self.entries.push_back((
            seq,
            Entry {
                start,
                end,
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
                        tracing::error!(error = %e, "disk buffer: cannot re-read a failed batch");
                        self.entries[i].1.done = true;
                    }
                }
            } else {
                self.entries[i].1.done = true;
            }
        }
        let mut freed = 0u64;
        while self.entries.front().is_some_and(|(_, e)| e.done) {
            let Some((_, e)) = self.entries.pop_front() else {
                break;
            };
            freed += if e.end.seg == e.start.seg {
                e.end.off - e.start.off
            } else {
                0
            };
            for seg in self.acked.seg..e.end.seg {
                let _ = std::fs::remove_file(seg_path(&self.shared.dir, seg));
            }
            self.acked = e.end;
        }
        if freed > 0 {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.unacked = st.unacked.saturating_sub(freed);
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

/// Reads and checks the record at `off`: its events and its size with the frame.
fn read_record(f: &File, off: u64) -> Result<(Vec<crate::event::Event>, u64), String> {
    let mut head = [0u8; codec::HEADER];
    f.read_exact_at(&mut head, off)
        .map_err(|e| format!("reading header: {e}"))?;
    let (n, crc) = codec::header(&head).ok_or("short header")?;
    if n > MAX_RECORD {
        return Err(format!("record length {n} is implausible"));
    }
    let mut payload = vec![0u8; n];
    f.read_exact_at(&mut payload, off + codec::HEADER as u64)
        .map_err(|e| format!("reading record: {e}"))?;
    if !codec::checksum_ok(&payload, crc) {
        return Err("checksum mismatch".into());
    }
    let events = codec::decode_payload(&payload).ok_or("undecodable record")?;
    Ok((events, (codec::HEADER + n) as u64))
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
        start(dir.path(), &config(8 << 20), up_rx, down_tx, metrics).unwrap();
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
}
