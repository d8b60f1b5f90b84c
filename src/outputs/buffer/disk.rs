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

use super::recovery::{count_events, valid_length};
use super::Config;
use crate::event::AckTracker;
use crate::outputs::dead_letter::DeadLetters;
use crate::pipeline::channel::{BatchReceiver, BatchSender};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod reader;
mod writer;

use reader::Reader;
use writer::Writer;

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

/// How many segments trawl would not have deleted are not there: trawl deletes segments in
/// order once delivered, only after saving a position past them, and never the one being
/// written; so a segment missing from the saved position's on was taken by someone else.
fn missing_segments(segs: &[u64], saved: Option<Pos>) -> u64 {
    let Some(p) = saved else { return 0 };
    let (Some(_), Some(last)) = (segs.first(), segs.last()) else {
        return 1;
    };
    let first = p.seg;
    if first > *last {
        return 0;
    }
    let present = segs.iter().filter(|s| **s >= first).count() as u64;
    (last - first + 1).saturating_sub(present)
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
    let saved = load_position(dir);
    // A segment trawl would not have deleted that is missing was deleted by hand, or lost with
    // its disk, and so were the events it held. The input acknowledged them long ago: say so,
    // as loudly as damage.
    let missing = missing_segments(&segs, saved);
    if missing > 0 {
        tracing::error!(buffer = %dir.display(), segments = missing, "disk buffer: segments not yet delivered are missing (deleted while trawl was stopped?): the events they held are lost; counted in trawl_errors_total");
        metrics.errors.fetch_add(missing, Ordering::Relaxed);
    }
    // With every segment gone, numbering goes on from the saved position.
    let last = segs
        .last()
        .copied()
        .unwrap_or_else(|| saved.map_or(0, |p| p.seg));
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
    if segs.is_empty() && saved.is_none() {
        // A new buffer records where delivery starts: a later start that finds its segments
        // gone can then tell (`missing_segments`).
        save_position(dir, Pos { seg: last, off: 0 })?;
    }
    let first = segs.first().copied().unwrap_or(last);
    let mut acked = saved
        .filter(|p| p.seg >= first && p.seg <= last)
        .unwrap_or(Pos { seg: first, off: 0 });
    if acked.seg == last && acked.off > valid {
        // The segment being written is shorter than what was delivered of it (cut by hand, or
        // its unsynced tail lost with the power while the position was synced): new records
        // go from its end, and must be read from there, not skipped up to the old position.
        tracing::warn!(buffer = %dir.display(), segment = last, delivered = acked.off, length = valid, "disk buffer: the segment being written is shorter than what was delivered of it; reading on from its end");
        acked.off = valid;
        save_position(dir, acked)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::event::{Batch, BatchStatus};
    use crate::outputs::buffer::{codec, WhenFull};
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

    /// A buffer of `max_size` bytes started in `dir`: its counters, the channel into it and
    /// the one out of it.
    fn started(dir: &Path, max_size: u64) -> (Arc<ComponentMetrics>, BatchSender, BatchReceiver) {
        let metrics = Arc::new(ComponentMetrics::new(
            ComponentKind::Output,
            "o".into(),
            "null",
        ));
        let (up_tx, up_rx) = batch_channel(4, metrics.clone());
        let (down_tx, down_rx) = batch_channel(4, metrics.clone());
        let dead_letters = DeadLetters::for_stage("o".into(), None, metrics.clone(), dir);
        start(
            dir,
            &config(max_size),
            up_rx,
            down_tx,
            metrics.clone(),
            dead_letters,
        )
        .unwrap();
        (metrics, up_tx, down_rx)
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
        while let Some(mut batch) = down_rx.recv().await {
            for e in batch.events_mut().iter() {
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
            let mut b = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("a batch within 20 s: buffered bytes were not all freed")
                .expect("the buffer is open");
            let m = b.events_mut()[0].message().unwrap().to_owned();
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

    #[test]
    fn segments_missing_from_the_delivered_position_on_are_counted() {
        let at = |seg| Some(Pos { seg, off: 0 });
        assert_eq!(missing_segments(&[3, 4, 5], at(3)), 0);
        // The first one not delivered, deleted by hand: the position is saved past a segment
        // before trawl deletes it, so this is not trawl's doing.
        assert_eq!(missing_segments(&[4, 5], at(3)), 1);
        assert_eq!(missing_segments(&[3, 5], at(3)), 1, "one in the middle");
        assert_eq!(missing_segments(&[3, 4, 7], at(3)), 2, "two in the middle");
        assert_eq!(
            missing_segments(&[4, 7], at(3)),
            3,
            "the first and two in the middle"
        );
        assert_eq!(missing_segments(&[], at(7)), 1, "the only one");
        assert_eq!(
            missing_segments(&[2, 3], at(3)),
            0,
            "delivered ones are not counted"
        );
        assert_eq!(missing_segments(&[], None), 0, "a new buffer");
    }

    /// A buffer restarted after its segment was deleted, or cut below what was delivered of
    /// it (its unsynced tail lost with the power, the position synced): the loss is counted,
    /// and what is buffered afterwards is delivered, not skipped up to the old position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_segment_deleted_or_cut_below_the_position_is_counted_and_new_events_flow() {
        for (segment, position, errors) in [(None, "7 0\n", 1), (Some(record("a")), "0 5000\n", 0)]
        {
            let dir = tempfile::tempdir().unwrap();
            if let Some(bytes) = &segment {
                std::fs::write(seg_path(dir.path(), 0), bytes).unwrap();
            }
            std::fs::write(dir.path().join("position"), position).unwrap();
            let (metrics, up_tx, mut down_rx) = started(dir.path(), 1 << 20);
            assert_eq!(metrics.errors.load(Ordering::Relaxed), errors, "{position}");
            let tracker = AckTracker::new();
            let (_, ack) = tracker.track();
            let e = Event::from_message("in".into(), chrono::Utc::now(), "new".into());
            up_tx.send(Batch::new(vec![e], ack)).await.unwrap();
            let mut b = tokio::time::timeout(Duration::from_secs(20), down_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("the new event was skipped ({position})"))
                .expect("the buffer is open");
            assert_eq!(b.events_mut()[0].message(), Some("new"));
            b.ack.delivered();
        }
    }

    /// The oldest segment not yet delivered deleted by hand while trawl was stopped (a disk
    /// cleaner, an operator freeing space): its loss is counted at start, and the segments
    /// after it are delivered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_undelivered_segment_deleted_by_hand_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(seg_path(dir.path(), 1), record("b")).unwrap();
        std::fs::write(seg_path(dir.path(), 2), record("c")).unwrap();
        std::fs::write(dir.path().join("position"), "0 0\n").unwrap();
        let (metrics, _up_tx, mut down_rx) = started(dir.path(), 1 << 20);
        assert_eq!(
            metrics.errors.load(Ordering::Relaxed),
            1,
            "segment 0 is missing"
        );
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut b = tokio::time::timeout(Duration::from_secs(20), down_rx.recv())
                .await
                .expect("the later segments are delivered")
                .expect("the buffer is open");
            got.push(b.events_mut()[0].message().unwrap_or_default().to_owned());
            b.ack.delivered();
        }
        assert_eq!(got, ["b", "c"]);
    }
}
