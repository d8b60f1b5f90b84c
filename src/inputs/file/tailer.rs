//! The file input's reading thread: scans for files, opens them at their registry offset,
//! reads every open file in turn, and decides what rotation, truncation, deletion and
//! inactivity mean for each. The only place that opens and closes files.

use super::batcher::{Batcher, Built};
use super::container;
use super::discovery::{self, Discovery, Found};
use super::identity::{end_mark_matches, new_stream_id, FileKey, Fingerprint};
use super::multiline::Multiline;
use super::reader::{Decoder, ReadOutcome, Tail, TailMeta};
use super::registry::{now_secs, Entry, Truncation};
use super::{Config, Sent, Shared, StartAt};
use crate::event::Batch;
use crate::inputs::InputContext;
use copies::CopyCheck;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Chunks read from one file before turning to the next, so one busy file cannot starve others.
const CHUNKS_PER_TURN: usize = 16;
/// How long a new file whose first bytes equal a followed file's may be a copy of it about to
/// be truncated (copytruncate) before it is taken as a file of its own.
const COPY_WAIT: Duration = Duration::from_secs(5);

/// How long (of trawl's running time) the content of a truncated file is waited for as a copy
/// (`registry::Truncation`). logrotate's copy is complete before the truncation, so a scan
/// finds it well within this.
pub(super) const TRUNCATION_KEPT: Duration = Duration::from_secs(60);

mod copies;

/// How long a file read to its end must not have grown before its slot is given to a file
/// waiting under `max_open_files`. One `poll_interval` (100 ms) was seen to close a file still
/// being written, whose writer was only late on a loaded node: it then grew while its slot was
/// taken, and its deletion (seed 45 of the fault campaign) lost what it had not been read of it.
const IDLE_BEFORE_MAKING_ROOM: Duration = Duration::from_secs(1);

struct Tailer {
    config: Config,
    multiline: Option<Multiline>,
    ctx: InputContext,
    shared: Arc<Shared>,
    tails: HashMap<FileKey, Tail>,
    /// New files that may be copies of a followed file, and since when.
    maybe_copies: HashMap<FileKey, Instant>,
    batcher: Batcher,
    max_line: usize,
    max_in_flight: usize,
    fp_max: u64,
    warned_open: HashSet<PathBuf>,
    /// Files skipped for good in this run (`ignore_older`).
    ignored: HashSet<FileKey>,
    invalid_utf8_logged: bool,
    salt: u64,
    /// No registry at start: `start_at` applies to the files of the first scan.
    first_start: bool,
    /// Files read again after a failed batch, not before these instants (back-off).
    backing_off: HashMap<FileKey, Instant>,
    /// A stream id was made that the registry on disk may not hold yet: written before the
    /// next batch leaves, so a crash cannot give the same lines other document ids.
    unsaved: bool,
    /// Files the last scan found (new, or closed and grown) that no slot under
    /// `max_open_files` was free for.
    waiting: usize,
    /// `max_open_files` was reached (said once per run).
    limit_logged: bool,
    /// When the `/metrics` gauges were last refreshed.
    stats_at: Option<Instant>,
    /// A file waiting for a slot was put in the registry during this scan: written at its end.
    waiting_recorded: bool,
    /// Set at a stop: where each file was read up to. Failed batches are read again up to
    /// there during the drain; nothing past it is read.
    stop_at: Option<HashMap<FileKey, u64>>,
    /// Per file, the furthest position reading had reached when a failed batch rewound it: a
    /// stop that comes while the file is rewound (its re-read backing off) must still read
    /// again up to there, not only up to the rewound position.
    rewound_from: HashMap<FileKey, u64>,
    /// Files waiting for a slot with no descriptor held (discovery's are all taken, or a
    /// followed file closed to free its slot that grew since), with their path and the bytes
    /// not read at last sight: deleted before a slot frees, those bytes are gone.
    waiting_unopened: HashMap<FileKey, (PathBuf, u64)>,
}

pub(super) fn run(
    config: Config,
    exclude: Vec<glob::Pattern>,
    multiline: Option<Multiline>,
    ctx: InputContext,
    shared: Arc<Shared>,
    first_start: bool,
) -> anyhow::Result<()> {
    let scan_every = config
        .scan_interval
        .positive()
        .unwrap_or(Duration::from_secs(10));
    let poll = config
        .poll_interval
        .positive()
        .unwrap_or(Duration::from_millis(250));
    let (wake_tx, wake) = std::sync::mpsc::sync_channel(1);
    let (discovery, events) = Discovery::new(
        config.paths.clone(),
        exclude,
        config.watch_events,
        wake_tx.clone(),
    );
    let found = Arc::new(Mutex::new(Found::default()));
    let scanner = discovery::spawn(
        discovery,
        events,
        found.clone(),
        wake_tx,
        scan_every,
        config.max_open_files.max(1),
        ctx.shutdown.clone(),
    )?;
    let mut buf = vec![0u8; config.read_buffer.as_usize().max(4096)];
    let mut t = Tailer {
        max_line: config.max_line_bytes.as_usize().max(1),
        max_in_flight: config.max_in_flight.as_usize(),
        fp_max: config.fingerprint_bytes.bytes().max(1),
        batcher: Batcher::new(ctx.name.clone(), ctx.batch_size),
        config,
        multiline,
        ctx,
        shared,
        tails: HashMap::new(),
        maybe_copies: HashMap::new(),
        warned_open: Default::default(),
        invalid_utf8_logged: false,
        salt: 0,
        ignored: HashSet::new(),
        first_start,
        backing_off: HashMap::new(),
        unsaved: false,
        waiting: 0,
        limit_logged: false,
        stats_at: None,
        waiting_recorded: false,
        stop_at: None,
        rewound_from: HashMap::new(),
        waiting_unopened: HashMap::new(),
    };
    let mut generation = 0;
    loop {
        if t.ctx.shutdown.is_triggered() {
            break;
        }
        let now = Instant::now();
        let latest = found.lock().map(|f| f.generation).unwrap_or(0);
        if latest != generation {
            // The first scan decides what `start_at: end` applies to.
            t.apply_scan(&found, generation == 0, now);
            generation = latest;
        }
        t.apply_rewinds();
        let progress = match t.read_all(&mut buf) {
            Ok(p) => p,
            Err(Closed) => return Ok(()),
        };
        let now = Instant::now();
        t.publish_stats(now);
        let keys: Vec<FileKey> = t.tails.keys().copied().collect();
        for key in keys {
            if let Some(tail) = t.tails.get_mut(&key) {
                tail.flush_if_due(now, &mut t.batcher);
            }
        }
        if !progress {
            if t.config.once && generation != 0 {
                // Every file is at its end: nothing more joins what multiline holds.
                let now = Instant::now();
                for tail in t.tails.values_mut() {
                    tail.flush_joined(now, &mut t.batcher);
                }
            }
            if t.emit().is_err() {
                return Ok(());
            }
            if t.config.once && generation != 0 && t.settled() {
                tracing::info!(input = %t.ctx.name, files = t.tails.len(), "once: every file read to its end and delivered");
                break;
            }
            t.close_idle(now);
            if t.make_room(now, poll.max(IDLE_BEFORE_MAKING_ROOM)) {
                // Files wait for the slots just freed: let them in now, not at the next scan.
                t.apply_scan(&found, false, now);
            }
            let deadline = t.tails.values().filter_map(|x| x.decoder.deadline()).min();
            let mut wait = poll;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            let wait = wait.max(Duration::from_millis(1));
            if t.config.once && generation != 0 {
                // What `once` still waits for is mostly acknowledgements, which notify `room`,
                // not `wake`: waiting on the poll interval added up to its length to every run.
                t.wait_for_acks(wait, &wake);
            } else {
                let _ = wake.recv_timeout(wait);
            }
        }
    }
    // Lines already read go out; what multiline still holds is read again after a restart.
    if t.emit().is_ok() {
        t.drain_failed(&mut buf, &wake, poll);
    }
    t.record_marks();
    // The scanner sees shutdown at its next wake-up (at most `scan_interval`); not waiting
    // for it keeps shutdown quick.
    drop(scanner);
    Ok(())
}

/// The pipeline is gone.
struct Closed;

impl Tailer {
    /// Nothing left to read, to read again or to acknowledge, and no file waiting for a slot or
    /// a copytruncate decision: what `once` waits for before ending.
    fn settled(&self) -> bool {
        self.waiting == 0
            && self.maybe_copies.is_empty()
            && self.backing_off.is_empty()
            && self.shared.rewinds.lock().is_ok_and(|r| r.is_empty())
            && self
                .shared
                .in_flight
                .lock()
                .is_ok_and(|f| f.batches.is_empty())
    }

    /// For `once`: waits up to `wait` for the batches in flight to be acknowledged, or, with
    /// none in flight, for a file event (a file waiting for a slot, a copy or a back-off).
    fn wait_for_acks(&self, wait: Duration, wake: &std::sync::mpsc::Receiver<()>) {
        match self.shared.in_flight.lock() {
            Ok(f) if !f.batches.is_empty() => {
                let _ = self
                    .shared
                    .room
                    .wait_timeout_while(f, wait, |f| !f.batches.is_empty());
            }
            Ok(f) => {
                drop(f);
                let _ = wake.recv_timeout(wait);
            }
            Err(_) => {
                let _ = wake.recv_timeout(wait);
            }
        }
    }

    /// Refreshes the gauges on `/metrics` (once a second: a size per followed file is a
    /// system call each).
    fn publish_stats(&mut self, now: Instant) {
        if self
            .stats_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.stats_at = Some(now);
        let lags = match self.shared.registry.lock() {
            Ok(r) => self
                .tails
                .iter()
                .filter_map(|(key, tail)| {
                    let committed = r
                        .get(key)
                        .filter(|e| e.stream == tail.meta.stream)
                        .map(|e| e.offset)
                        .unwrap_or(0);
                    let size = tail.size()?;
                    Some((tail.path.clone(), size.saturating_sub(committed)))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        self.shared.stats.publish(super::stats::Snapshot {
            open_files: self.open_count(),
            waiting_files: self.waiting,
            lags,
        });
    }

    fn open_count(&self) -> usize {
        self.tails.values().filter(|t| t.is_open()).count()
    }

    /// Sends every batch built so far, partial ones included.
    fn emit(&mut self) -> Result<(), Closed> {
        while let Some(built) = self.batcher.take_any() {
            self.send(built)?;
        }
        Ok(())
    }

    /// Sends the full batches built so far.
    fn emit_full(&mut self) -> Result<(), Closed> {
        while let Some(built) = self.batcher.take_full() {
            self.send(built)?;
        }
        Ok(())
    }

    /// Sends one batch once what is in flight leaves room for it, recording the offsets it
    /// reaches. Waiting here, not in a queue, is what bounds the input's memory.
    fn send(&mut self, built: Built) -> Result<(), Closed> {
        if self.unsaved && super::save_blocking(&self.shared, None).is_ok() {
            // On failure (logged by the writer) events still go: the registry is failing as a
            // whole, and holding every file back would not make it work.
            self.unsaved = false;
        }
        let Ok(mut f) = self.shared.in_flight.lock() else {
            return Err(Closed);
        };
        // At the stop, what was read goes out at once (the deadline is near); while draining,
        // failed batches read again wait for room like any others.
        while !f.batches.is_empty()
            && f.bytes + built.bytes > self.max_in_flight
            && (self.stop_at.is_some() || !self.ctx.shutdown.is_triggered())
        {
            // The timeout only lets shutdown be seen; acknowledgements notify `room`.
            match self.shared.room.wait_timeout(f, Duration::from_millis(200)) {
                Ok((g, _)) => f = g,
                Err(_) => return Err(Closed),
            }
        }
        let (seq, ack) = self.shared.tracker.track();
        f.bytes += built.bytes;
        f.batches.insert(
            seq,
            Sent {
                commits: built.commits,
                bytes: built.bytes,
                events: built.events.len(),
            },
        );
        drop(f);
        self.ctx
            .metrics
            .ack_pending
            .store(self.shared.tracker.pending() as i64, Ordering::Relaxed);
        self.ctx
            .emit_blocking(Batch::new(built.events, ack))
            .map_err(|_| Closed)
    }

    /// One turn over every open file; true when something was read.
    fn read_all(&mut self, buf: &mut [u8]) -> Result<bool, Closed> {
        let mut progress = false;
        let now = Instant::now();
        self.backing_off.retain(|_, until| *until > now);
        let keys: Vec<FileKey> = self
            .tails
            .iter()
            .filter(|(k, t)| t.is_open() && !self.backing_off.contains_key(k))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            for _ in 0..CHUNKS_PER_TURN {
                let Some(tail) = self.tails.get_mut(&key) else {
                    break;
                };
                let before = tail.position();
                // While draining, only what was read before the stop is read (again).
                let room = match &self.stop_at {
                    None => buf.len(),
                    Some(stop) => stop
                        .get(&key)
                        .map_or(0, |&at| at.saturating_sub(before))
                        .min(buf.len() as u64) as usize,
                };
                if room == 0 {
                    break;
                }
                self.batcher.now = chrono::Utc::now();
                let fp_before = tail.fp;
                let outcome = tail.read(
                    &mut buf[..room],
                    self.fp_max,
                    Instant::now(),
                    &mut self.batcher,
                );
                let bytes = tail.position().saturating_sub(before);
                if tail.fp != fp_before {
                    // The registry must know the grown fingerprint before the offsets past it.
                    if let Ok(mut r) = self.shared.registry.lock() {
                        r.touch(&key, &tail.meta.path, tail.fp, now_secs());
                    }
                }
                crate::telemetry::metrics::ComponentMetrics::add(&self.ctx.metrics.bytes_in, bytes);
                self.count_decoder_errors(key);
                match outcome {
                    Ok(ReadOutcome::Data(_)) => {
                        progress = true;
                        self.emit_full()?;
                    }
                    Ok(ReadOutcome::Eof { deleted }) => {
                        // A writer holding a deleted file open may still append to it: it is
                        // read until idle for `close_removed` (`close_idle`), not dropped now.
                        if deleted {
                            if let Some(tail) = self.tails.get_mut(&key) {
                                tail.unseen_since.get_or_insert_with(Instant::now);
                            }
                        }
                        break;
                    }
                    Ok(ReadOutcome::Truncated) if self.stop_at.is_some() => {
                        // Not followed into its new content while stopping: the failed lines
                        // stay before the registry offset, and the next start sees the truncation.
                        if let Some(stop) = self.stop_at.as_mut() {
                            stop.remove(&key);
                        }
                        break;
                    }
                    Ok(ReadOutcome::Truncated) => {
                        self.on_truncated(key)?;
                        progress = true;
                        break;
                    }
                    Err(e) => {
                        if let Some(tail) = self.tails.get_mut(&key) {
                            tracing::warn!(input = %self.ctx.name, path = %tail.path.display(), error = %e, "cannot read file: closing it; it is reopened at the next scan");
                            tail.close();
                        }
                        self.ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        Ok(progress)
    }

    fn count_decoder_errors(&mut self, key: FileKey) {
        let Some(tail) = self.tails.get_mut(&key) else {
            return;
        };
        let n = tail.decoder.invalid_utf8 + tail.decoder.undecodable;
        if n == 0 {
            return;
        }
        if tail.decoder.invalid_utf8 > 0 && !self.invalid_utf8_logged {
            self.invalid_utf8_logged = true;
            tracing::warn!(input = %self.ctx.name, path = %tail.path.display(),
                "invalid UTF-8 replaced with U+FFFD (logged once; counted in trawl_errors_total)");
        }
        tail.decoder.invalid_utf8 = 0;
        tail.decoder.undecodable = 0;
        self.ctx.metrics.errors.fetch_add(n, Ordering::Relaxed);
    }

    /// The file got shorter or its first bytes changed: what was read stays delivered, the file
    /// is read again from 0 as a new stream, and its old content may reappear as a copy.
    fn on_truncated(&mut self, key: FileKey) -> Result<(), Closed> {
        let Some(tail) = self.tails.get_mut(&key) else {
            return Ok(());
        };
        // Also for a closed file (found truncated when reopened, or when its copy appeared):
        // the new content's fingerprint grows from what is read of it, starting now.
        let fp = Fingerprint::of(&[]);
        tracing::info!(input = %self.ctx.name, path = %tail.path.display(), offset = tail.position(), "file truncated: reading it again from the start");
        let old = Truncation {
            dev: key.dev,
            ino: key.ino,
            path: tail.meta.path.clone(),
            fp_len: tail.fp.len,
            fp: tail.fp.hash,
            stream: tail.meta.stream,
            position: tail.line_start(),
            committed: 0,
            epoch: tail.meta.epoch,
            failed_lines: 0,
            at: Instant::now(),
        };
        tail.flush_if_due(
            Instant::now() + Duration::from_secs(86400 * 365),
            &mut self.batcher,
        );
        self.salt += 1;
        let stream = new_stream_id(key, fp, self.salt);
        tail.restart(stream, Vec::new(), self.config.format, self.max_line);
        let entry = entry_for(tail, 0);
        // The old content and the file's new stream go to the registry together (written before
        // the next batch leaves): a copy found after a stop still continues the old stream.
        if let Ok(mut r) = self.shared.registry.lock() {
            let committed = r
                .get(&key)
                .filter(|e| e.stream == old.stream)
                .map_or(0, |e| e.offset);
            r.add_truncation(Truncation { committed, ..old });
            r.put(entry);
        }
        self.unsaved = true;
        Ok(())
    }

    /// Stops following a file for good (deleted, or renamed away and idle), once what was read
    /// of it is delivered: a failed batch is read again from the file, so until then it stays
    /// (open, even deleted). Called again at later turns until then.
    fn drop_tail(&mut self, key: FileKey, why: &str) -> Result<(), Closed> {
        let Some(tail) = self.tails.get_mut(&key) else {
            return Ok(());
        };
        tail.flush_all(Instant::now(), &mut self.batcher);
        self.emit()?;
        if self.backing_off.contains_key(&key) || self.shared.unsettled(&key) {
            return Ok(());
        }
        if let Some(tail) = self.tails.remove(&key) {
            tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), why, "file closed");
        }
        Ok(())
    }

    /// Applies the reading again of streams whose batch an output failed: each goes back to
    /// where its delivery stopped and waits out its back-off. A stream is read again where it
    /// is now: in its file, or after a copytruncate in the copy continuing it; when that copy is
    /// not found yet, it will be read from where delivery stopped once it is.
    fn apply_rewinds(&mut self) {
        let rewinds = match self.shared.rewinds.lock() {
            Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
            _ => return,
        };
        for rw in rewinds {
            let key = if self
                .tails
                .get(&rw.key)
                .is_some_and(|t| t.meta.stream == rw.stream)
            {
                Some(rw.key)
            } else {
                self.tails
                    .iter()
                    .find(|(_, t)| t.meta.stream == rw.stream)
                    .map(|(k, _)| *k)
            };
            let Some(key) = key else {
                let waiting = self.shared.registry.lock().is_ok_and(|mut r| {
                    r.truncation_mut(rw.stream).is_some_and(|t| {
                        t.position = t.position.min(rw.offset);
                        t.epoch = t.epoch.max(rw.epoch);
                        t.failed_lines += rw.lines;
                        true
                    })
                });
                if !waiting {
                    let path = self.tails.get(&rw.key).map(|t| t.path.clone());
                    self.lost(
                        path.as_deref(),
                        &rw,
                        "the file was truncated or replaced since and no copy of it is followed",
                    );
                }
                continue;
            };
            let Some(tail) = self.tails.get_mut(&key) else {
                continue;
            };
            if !tail.is_open() {
                // Closed as inactive: the same file (inode and first bytes) is opened again.
                let same = File::open(&tail.path).ok().filter(|f| {
                    f.metadata().is_ok_and(|m| FileKey::of(&m) == key)
                        && tail.fp.matches(f).unwrap_or(false)
                });
                match same {
                    Some(f) => tail.reopen(f),
                    None => {
                        let path = tail.path.clone();
                        self.lost(Some(&path), &rw, "the file is gone since");
                        continue;
                    }
                }
            }
            let reached = tail.position();
            let from = self.rewound_from.entry(key).or_insert(reached);
            *from = (*from).max(reached);
            tail.rewind(rw.offset, rw.epoch, self.config.format, self.max_line);
            self.backing_off.insert(key, rw.not_before);
        }
        let tails = &self.tails;
        self.rewound_from.retain(|k, _| tails.contains_key(k));
    }

    /// At a stop: the batches outputs failed (before the stop or while it drains) are read
    /// again, up to where each file was read when the stop came, until every batch is
    /// delivered; nothing new is read. The shutdown deadline ends it from outside (trawl exits
    /// saying what was left), as does an output failing for good (retrying it is pointless). A
    /// reload replacing the input does not wait for it: the registry stays before the failed
    /// lines and the input that replaces it reads them again.
    fn drain_failed(
        &mut self,
        buf: &mut [u8],
        wake: &std::sync::mpsc::Receiver<()>,
        poll: Duration,
    ) {
        self.apply_rewinds();
        let rewound_from = &self.rewound_from;
        self.stop_at = Some(
            self.tails
                .iter()
                .map(|(key, tail)| {
                    let from = rewound_from.get(key).copied().unwrap_or(0);
                    (*key, tail.position().max(from))
                })
                .collect(),
        );
        let mut said = false;
        loop {
            if !self.ctx.pipeline.retries_failed() {
                return;
            }
            self.apply_rewinds();
            if !said && !self.backing_off.is_empty() {
                said = true;
                tracing::info!(input = %self.ctx.name, files = self.backing_off.len(),
                    "stopping: reading again the batches an output failed, within the shutdown deadline");
            }
            if self.read_all(buf).is_err() || self.emit().is_err() {
                return;
            }
            if self.drained() {
                return;
            }
            if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = wake.recv_timeout(poll) {
                // The scanner is gone: nothing wakes this thread early any more.
                std::thread::sleep(poll);
            }
        }
    }

    /// Nothing in flight, nothing to read again: every batch of the stop was delivered, or
    /// failed with no file left to read it from (counted as lost).
    fn drained(&self) -> bool {
        let Ok(f) = self.shared.in_flight.lock() else {
            return true;
        };
        // Under the in-flight lock: a failure leaves `in_flight` and enters `rewinds` in one
        // step of the acknowledgement task, which holds it.
        f.batches.is_empty()
            && self.backing_off.is_empty()
            && self.shared.rewinds.lock().is_ok_and(|r| r.is_empty())
    }

    /// Lines of a failed batch that cannot be read again: counted, and said once per stream.
    fn lost(&self, path: Option<&Path>, rw: &super::retry::Rewind, why: &str) {
        self.shared.stats.lost(rw.lines);
        tracing::error!(input = %self.ctx.name, path = %path.map_or(String::from("?"), |p| p.display().to_string()),
            stream = rw.stream, offset = rw.offset, lines = rw.lines, why,
            "an output failed a batch whose lines cannot be read again: they are lost (counted in trawl_file_lost_lines_total)");
    }

    fn close_idle(&mut self, now: Instant) {
        let close_inactive = self.config.close_inactive.positive();
        let close_removed = self.config.close_removed.std();
        let mut gone = Vec::new();
        for (key, tail) in self.tails.iter_mut() {
            let idle = now.saturating_duration_since(tail.last_growth);
            match tail.unseen_since {
                Some(since)
                    if now.saturating_duration_since(since) >= close_removed
                        && idle >= close_removed =>
                {
                    gone.push(*key)
                }
                _ => {
                    // A file whose batches are in flight or are to be read again stays open:
                    // closed, a file renamed out of `paths` meanwhile (kubelet's rotation) would
                    // never be reopened, its lines not read again until a restart, and the
                    // registry not moved past them.
                    if tail.is_open()
                        && close_inactive.is_some_and(|c| idle >= c)
                        && !self.backing_off.contains_key(key)
                        && !self.shared.unsettled(key)
                    {
                        tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), "closing inactive file");
                        tail.close();
                    }
                }
            }
        }
        for key in gone {
            let _ = self.drop_tail(key, "deleted or no longer under `paths`, and idle");
        }
    }

    /// When files wait for a slot under `max_open_files`, closes as many files as wait among
    /// those read to their end (checked now, not at the last read) and idle for `min_idle`,
    /// longest idle first; they stay followed and are reopened at their offset when a scan
    /// finds them grown and a slot free. Files deleted or renamed away are kept open: closed,
    /// they could not be reopened. True when some were closed.
    fn make_room(&mut self, now: Instant, min_idle: Duration) -> bool {
        if self.waiting == 0 {
            return false;
        }
        // Also kept open: a file deleted since the last scan (it could not be reopened) and
        // one whose batches are not all delivered (a failed one is read again from it).
        let mut idle: Vec<(Instant, FileKey)> = self
            .tails
            .iter()
            .filter(|(k, t)| {
                t.is_open()
                    && t.unseen_since.is_none()
                    && now.saturating_duration_since(t.last_growth) >= min_idle
                    && !self.backing_off.contains_key(k)
                    && !self.shared.unsettled(k)
                    && t.still_linked()
                    && t.size() == Some(t.position())
            })
            .map(|(k, t)| (t.last_growth, *k))
            .collect();
        idle.sort_unstable();
        idle.truncate(self.waiting);
        for (_, key) in &idle {
            if let Some(tail) = self.tails.get_mut(key) {
                tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), offset = tail.position(), "closing a file idle at its end: files wait for its slot");
                tail.close();
            }
        }
        // `waiting` stays until the scan applied next counts again: files not idle long enough
        // now may be at the next turn.
        !idle.is_empty()
    }

    /// Writes where each followed file was read up to into the registry (see `Entry::mark_at`).
    fn record_marks(&self) {
        let Ok(mut r) = self.shared.registry.lock() else {
            return;
        };
        for (key, tail) in &self.tails {
            if let Some((at, mark)) = tail.end_mark() {
                r.set_mark(key, tail.meta.stream, at, mark);
            }
        }
    }

    /// Forgets the truncated contents whose copy did not appear within `TRUNCATION_KEPT`. The
    /// lines of failed batches that only such a copy could give back are then lost: counted,
    /// and said once per file.
    fn expire_truncations(&mut self, now: Instant) {
        let Some(before) = now.checked_sub(TRUNCATION_KEPT) else {
            return;
        };
        let gone = match self.shared.registry.lock() {
            Ok(mut r) => r.expire_truncations(before),
            Err(_) => return,
        };
        for t in gone.iter().filter(|t| t.failed_lines > 0) {
            self.shared.stats.lost(t.failed_lines);
            tracing::error!(input = %self.ctx.name, path = %t.path, stream = t.stream, offset = t.position, lines = t.failed_lines,
                "an output failed batches of a file truncated since, and no copy of its old content appeared: those lines cannot be read again and are lost (counted in trawl_file_lost_lines_total)");
        }
    }

    /// Matches what discovery found against what is followed.
    fn apply_scan(&mut self, found: &Mutex<Found>, first: bool, now: Instant) {
        self.expire_truncations(now);
        self.waiting = 0;
        let (current, mut opened, rotated) = match found.lock() {
            Ok(mut f) => (
                std::mem::take(&mut f.current),
                std::mem::take(&mut f.opened),
                std::mem::take(&mut f.rotated),
            ),
            Err(_) => return,
        };
        let mut seen: HashSet<FileKey> = HashSet::new();
        let mut keep: HashMap<FileKey, (PathBuf, File)> = HashMap::new();
        let wall = now_secs();
        if first {
            self.truncated_while_stopped(&current, now);
        }
        for (path, key) in &current {
            if !seen.insert(*key) || self.ignored.contains(key) {
                continue;
            }
            if self.tails.contains_key(key) {
                self.rediscovered(*key, path);
            } else {
                let file = opened.remove(key).map(|(_, f)| f);
                if let Some(f) = self.discovered(*key, path, file, first, now) {
                    keep.insert(*key, (path.clone(), f));
                }
            }
        }
        // Rotated while trawl was not running: only what the registry knows is resumed, at its
        // offset; an unknown rotated file is older history, not ours to ship.
        if first {
            for (name, key, actual) in &rotated {
                if self.tails.contains_key(key) || opened.contains_key(key) || seen.contains(key) {
                    continue;
                }
                let known = self
                    .shared
                    .registry
                    .lock()
                    .is_ok_and(|r| r.get(key).is_some());
                if !known {
                    continue;
                }
                match File::open(actual) {
                    Ok(f) => {
                        tracing::info!(input = %self.ctx.name, path = %actual.display(), "resuming a file rotated while trawl was stopped");
                        if let Some(f) = self.discovered(*key, name, Some(f), first, now) {
                            keep.insert(*key, (name.clone(), f));
                        }
                    }
                    Err(e) => self.warn_open(actual, &e),
                }
            }
            self.resume_renamed_while_stopped(&seen, &opened, &mut keep, now);
        }
        // Opened by discovery, then renamed away or deleted before this turn: still read.
        for (key, (path, file)) in opened {
            if self.tails.contains_key(&key) || self.ignored.contains(&key) {
                continue;
            }
            if let Some(f) = self.discovered(key, &path, Some(file), first, now) {
                keep.insert(key, (path, f));
            }
        }
        for (key, tail) in self.tails.iter_mut() {
            if seen.contains(key) {
                tail.unseen_since = None;
            } else if tail.unseen_since.is_none() {
                tail.unseen_since = Some(now);
            }
        }
        if let Ok(mut r) = self.shared.registry.lock() {
            // Files waiting for an open slot (or to be told apart from a copy) exist too.
            for (_, key) in &current {
                r.seen(key, wall);
            }
        }
        self.maybe_copies.retain(|k, _| keep.contains_key(k));
        self.skipped_while_waiting(&seen, &keep);
        if let Ok(mut f) = found.lock() {
            f.followed = self
                .tails
                .keys()
                .chain(self.ignored.iter())
                .copied()
                .collect();
            for (k, v) in keep {
                f.opened.entry(k).or_insert(v);
            }
            if f.current.is_empty() {
                f.current = current;
            }
        }
        if let Ok(mut r) = self.shared.registry.lock() {
            for (key, tail) in &self.tails {
                r.touch(key, &tail.meta.path, tail.fp, wall);
            }
            if first {
                // Written once now, so that a restart knows trawl ran before, even with no file.
                r.mark_dirty();
            }
        }
        if first {
            self.shared
                .scanned
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.record_marks();
        if std::mem::take(&mut self.waiting_recorded)
            && super::save_blocking(&self.shared, None).is_err()
        {
            // Logged by the writer; the next batch sent tries again.
            self.unsaved = true;
        }
        if self.waiting > 0 && !self.limit_logged {
            self.limit_logged = true;
            tracing::warn!(input = %self.ctx.name, max_open_files = self.config.max_open_files, waiting = self.waiting,
                "max_open_files reached: files wait for a slot; files idle at their end are closed to let them in and reopened when they grow (logged once)");
        }
    }

    /// Files that waited for a slot with no descriptor held and are no longer under `paths`:
    /// deleted (not found by their inode in their folder), the bytes trawl had not read of them
    /// are gone; the risk `max_open_files` takes. Counted in `trawl_file_skipped_files_total` and
    /// said once per file with its path, so that nothing is lost silently. One renamed in its
    /// folder (or, for a symlink, in its target's) is left to rotation handling.
    fn skipped_while_waiting(
        &mut self,
        seen: &HashSet<FileKey>,
        held: &HashMap<FileKey, (PathBuf, File)>,
    ) {
        let vanished: HashMap<FileKey, PathBuf> = self
            .waiting_unopened
            .iter()
            .filter(|(k, _)| {
                !seen.contains(k)
                    && !held.contains_key(k)
                    && !self.tails.get(k).is_some_and(|t| t.is_open())
            })
            // Looked for beside the file the name leads to now: a kubelet symlink's target
            // folder is where kubelet renamed it (`0.log` → `0.log.<time>`).
            .map(|(k, (p, _))| (*k, std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
            .collect();
        if vanished.is_empty() {
            return;
        }
        let renamed: HashSet<FileKey> = discovery::find_renamed(&vanished)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for key in vanished.into_keys() {
            let Some((path, unread)) = self.waiting_unopened.remove(&key) else {
                continue;
            };
            if renamed.contains(&key) || unread == 0 {
                continue;
            }
            self.shared.stats.skipped_file();
            tracing::warn!(input = %self.ctx.name, path = %path.display(), unread_bytes = unread, max_open_files = self.config.max_open_files,
                "a file waiting for a max_open_files slot was deleted before it got one: the bytes not read of it are lost (counted in trawl_file_skipped_files_total; raise max_open_files or keep rotated files longer)");
        }
    }

    /// At startup: files the registry knows whose content is no longer what was read of it
    /// (shorter, other first bytes, other bytes before the offset) were truncated while trawl
    /// was stopped, maybe by copytruncate: their old content is remembered as truncated before
    /// any file of this scan is looked at, so that its copy continues the old stream at the
    /// registry's offset instead of being read again from 0 under a new one.
    fn truncated_while_stopped(&mut self, current: &[(PathBuf, FileKey)], now: Instant) {
        let entries: Vec<(PathBuf, Entry)> = match self.shared.registry.lock() {
            Ok(r) => current
                .iter()
                .filter_map(|(p, k)| r.get(k).map(|e| (p.clone(), e.clone())))
                .collect(),
            Err(_) => return,
        };
        for (path, e) in entries {
            let Ok(f) = File::open(&path) else { continue };
            let Ok(md) = f.metadata() else { continue };
            if FileKey::of(&md) != e.key() || e.offset == 0 {
                continue;
            }
            let truncated = md.len() < e.offset
                || !e.fingerprint().matches(&f).unwrap_or(true)
                || !end_mark_matches(&f, e.mark_at, e.mark).unwrap_or(true);
            if truncated {
                if let Ok(mut r) = self.shared.registry.lock() {
                    r.add_truncation(Truncation {
                        dev: e.dev,
                        ino: e.ino,
                        path: e.path.clone(),
                        fp_len: e.fp_len,
                        fp: e.fp,
                        stream: e.stream,
                        position: e.offset,
                        committed: e.offset,
                        epoch: 0,
                        failed_lines: 0,
                        at: now,
                    });
                }
            }
        }
    }

    /// At startup: files the registry has that are no longer under `paths` because they were
    /// renamed (rotated: `app.log` → `app.log.1`, `app.log-20261130`) while trawl was stopped.
    /// Each is looked for in its old folder by device + inode, confirmed by its first bytes, and
    /// resumed at its offset under the name it had (as a rotation seen while running keeps it).
    fn resume_renamed_while_stopped(
        &mut self,
        seen: &HashSet<FileKey>,
        opened: &HashMap<FileKey, (PathBuf, File)>,
        keep: &mut HashMap<FileKey, (PathBuf, File)>,
        now: Instant,
    ) {
        let mut missing: HashMap<FileKey, Entry> = match self.shared.registry.lock() {
            Ok(r) => r
                .entries()
                .filter(|e| {
                    let k = e.key();
                    !seen.contains(&k) && !self.tails.contains_key(&k) && !opened.contains_key(&k)
                })
                .map(|e| (e.key(), e.clone()))
                .collect(),
            Err(_) => return,
        };
        let old_names = missing
            .iter()
            .map(|(k, e)| (*k, PathBuf::from(&e.path)))
            .collect();
        for (key, actual) in discovery::find_renamed(&old_names) {
            let Some(entry) = missing.remove(&key) else {
                continue;
            };
            let file = match File::open(&actual) {
                Ok(f) => f,
                Err(e) => {
                    self.warn_open(&actual, &e);
                    continue;
                }
            };
            // Same inode, other first bytes: a new file reused it, history not ours.
            if !entry.fingerprint().matches(&file).unwrap_or(false) {
                continue;
            }
            tracing::info!(input = %self.ctx.name, path = %actual.display(), was = %entry.path, offset = entry.offset, "resuming a file renamed while trawl was stopped");
            let name = PathBuf::from(&entry.path);
            if let Some(f) = self.discovered(key, &name, Some(file), true, now) {
                keep.insert(key, (name, f));
            }
        }
    }

    /// A file already followed: renamed within `paths`, or closed and grown again.
    fn rediscovered(&mut self, key: FileKey, path: &Path) {
        let open = self.open_count();
        let max_open = self.config.max_open_files;
        let Some(tail) = self.tails.get_mut(&key) else {
            return;
        };
        // The scan may be older than this turn (a reader held up by a full pipeline, or
        // `make_room` applying it again): by now its path may name another file (this one
        // renamed away, a new one created in its place), which is not this file grown.
        // Opened as this file, the new one's lines went out under this file's stream, which
        // was then restarted as if truncated, and this file's own lines were read again
        // from 0 once found under its new name.
        let Some(md) = std::fs::metadata(path)
            .ok()
            .filter(|m| FileKey::of(m) == key)
        else {
            return;
        };
        if tail.path != path {
            tail.path = path.to_path_buf();
            tail.meta.path = path.display().to_string();
        }
        if tail.is_open() {
            return;
        }
        // Checked against the same file as above: the name may have moved on since.
        let Some(size) = Some(md.len()).filter(|&s| s != tail.position()) else {
            return;
        };
        if open >= max_open {
            tracing::debug!(input = %self.ctx.name, path = %path.display(), offset = tail.position(), "closed file grew: waiting for a slot");
            self.waiting += 1;
            self.waiting_unopened.insert(
                key,
                (path.to_path_buf(), size.saturating_sub(tail.position())),
            );
            return;
        }
        self.waiting_unopened.remove(&key);
        match File::open(path) {
            Ok(f) if f.metadata().is_ok_and(|m| FileKey::of(&m) == key) => {
                let same = tail.fp.matches(&f).unwrap_or(false);
                tail.reopen(f);
                if !same {
                    // Truncated and rewritten while closed (copytruncate of an idle file, or
                    // one closed while backing off): its old content may reappear as a copy,
                    // which must continue its stream, not start a new one.
                    let _ = self.on_truncated(key);
                }
            }
            // Renamed between the two looks: found under its new name by a later scan.
            Ok(_) => {}
            Err(e) => self.warn_open(path, &e),
        }
    }

    fn warn_open(&mut self, path: &Path, e: &std::io::Error) {
        if self.warned_open.insert(path.to_path_buf()) {
            tracing::warn!(input = %self.ctx.name, path = %path.display(), error = %e, "cannot open file (logged once per file)");
            self.ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A file not followed in this run: resumed from the registry, recognised as the copy of a
    /// truncated file, or new.
    /// Gives the file back when it should be looked at again at the next scan.
    fn discovered(
        &mut self,
        key: FileKey,
        path: &Path,
        file: Option<File>,
        first: bool,
        now: Instant,
    ) -> Option<File> {
        if self.open_count() >= self.config.max_open_files {
            self.waiting += 1;
            self.record_waiting(key, path, file.as_ref(), first);
            if file.is_none() {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                self.waiting_unopened
                    .insert(key, (path.to_path_buf(), size));
            } else {
                self.waiting_unopened.remove(&key);
            }
            return file;
        }
        self.waiting_unopened.remove(&key);
        let file = match file {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    self.warn_open(path, &e);
                    return None;
                }
            },
        };
        let Ok(md) = file.metadata() else { return None };
        if FileKey::of(&md) != key {
            return None;
        }
        let Ok(first_bytes) = super::identity::read_first(&file, self.fp_max) else {
            return None;
        };
        let fp = Fingerprint::of(&first_bytes);
        let size = md.len();
        self.check_originals(key, &first_bytes);
        let known = self
            .shared
            .registry
            .lock()
            .ok()
            .and_then(|r| r.get(&key).cloned());
        let same_start = known
            .as_ref()
            .filter(|e| e.fingerprint().matches(&file).unwrap_or(false));
        // Put in the registry as the copy of a truncated file while it waited for a slot: it
        // continues where reading of that file stopped, as if it had had a slot at once.
        let truncations = self.truncations();
        let waited_as_copy = known.as_ref().and_then(|e| {
            truncations
                .iter()
                .find(|t| t.stream == e.stream && t.is_copy(key, &file, size))
        });
        let copy = truncations.iter().find(|t| t.is_copy(key, &file, size));
        // The epoch the stream is read under: a copy continues its original's (`retry`).
        let mut epoch = 0;
        // The truncated content this file is the copy of, taken from the registry when its
        // entry is put there (at once, so that an acknowledgement finds one or the other).
        let mut continues = None;
        let (offset, stream, committed) = if let Some(t) = waited_as_copy {
            let committed = known.as_ref().map_or(t.committed, |e| e.offset);
            epoch = t.epoch;
            continues = Some(t.stream);
            (t.position.max(committed), t.stream, committed)
        } else if let Some(e) = same_start.filter(|e| {
            e.offset <= size && end_mark_matches(&file, e.mark_at, e.mark).unwrap_or(false)
        }) {
            (e.offset, e.stream, e.offset)
        } else if let Some(e) = same_start {
            // Its first bytes are the same, but it is shorter than what was read, or the bytes
            // before where reading stopped changed: truncated and rewritten while trawl was
            // stopped. The new content is read from its start (whatever `start_at` says).
            tracing::info!(input = %self.ctx.name, path = %path.display(), offset = e.offset, "file truncated while trawl was stopped: reading it again from the start");
            self.salt += 1;
            (0, new_stream_id(key, fp, self.salt), 0)
        } else if let Some(t) = copy {
            tracing::info!(input = %self.ctx.name, path = %path.display(), was = %t.path, offset = t.position, "copy of a truncated file: continuing where reading stopped");
            self.unsaved = true;
            epoch = t.epoch;
            continues = Some(t.stream);
            (t.position, t.stream, t.committed)
        } else {
            match self.may_be_copy(key, &file, &first_bytes, size) {
                // The tail it may copy has not read its file to the end: a truncation would be
                // seen there before the next read, so wait for that, however long it takes.
                CopyCheck::OfTailBehind => return Some(file),
                CopyCheck::Maybe => {
                    let since = *self.maybe_copies.entry(key).or_insert(now);
                    if now.saturating_duration_since(since) < COPY_WAIT {
                        return Some(file);
                    }
                }
                CopyCheck::No => {}
            }
            if self.ignored_as_older(&md) {
                self.ignored.insert(key);
                return None;
            }
            let offset = if first && self.first_start && self.config.start_at == StartAt::End {
                size
            } else {
                0
            };
            self.salt += 1;
            self.unsaved = true;
            (offset, new_stream_id(key, fp, self.salt), offset)
        };
        self.maybe_copies.remove(&key);
        let meta = TailMeta {
            key,
            stream,
            epoch,
            path: path.display().to_string(),
            k8s: container::kubernetes_metadata(path),
        };
        let decoder = Decoder::new(self.config.format, self.multiline.clone(), self.max_line);
        // Read from 0, the fingerprint grows from the bytes read; otherwise it is what was seen.
        let prefix = if offset == 0 { Vec::new() } else { first_bytes };
        let tail = Tail::new(
            meta,
            path.to_path_buf(),
            prefix,
            file,
            offset,
            decoder,
            self.max_line,
        );
        let mut entry = entry_for(&tail, committed);
        if let Ok(mut r) = self.shared.registry.lock() {
            if let Some(t) = continues.and_then(|s| r.take_truncation(s)) {
                // Acknowledged meanwhile.
                entry.offset = entry.offset.max(t.committed);
            }
            r.put(entry);
        }
        tracing::debug!(input = %self.ctx.name, path = %path.display(), offset, "following file");
        self.tails.insert(key, tail);
        None
    }

    /// The truncated contents waiting for their copy.
    fn truncations(&self) -> Vec<Truncation> {
        self.shared
            .registry
            .lock()
            .map(|r| r.truncations().to_vec())
            .unwrap_or_default()
    }

    /// A file waiting for a slot goes into the registry now (its identity, a stream id, offset
    /// 0, or its end for `start_at: end` at the very first start), unless it is there already:
    /// renamed away (kubelet's rotation) and trawl killed before it got a slot, it is resumed at
    /// the next start only because the registry knows it. The copy of a truncated file is put
    /// there as continuing that file's stream; a file that may still be such a copy is not put
    /// there yet. Written to disk at the end of the scan.
    fn record_waiting(&mut self, key: FileKey, path: &Path, file: Option<&File>, first: bool) {
        if self.ignored.contains(&key)
            || self
                .shared
                .registry
                .lock()
                .map_or(true, |r| r.get(&key).is_some())
        {
            return;
        }
        let opened;
        let file = match file {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => {
                    opened = f;
                    &opened
                }
                Err(_) => return,
            },
        };
        let Ok(md) = file.metadata() else { return };
        if FileKey::of(&md) != key || !md.is_file() {
            return;
        }
        let Ok(first_bytes) = super::identity::read_first(file, self.fp_max) else {
            return;
        };
        let fp = Fingerprint::of(&first_bytes);
        let size = md.len();
        self.check_originals(key, &first_bytes);
        let (stream, offset) = if let Some(t) = self
            .truncations()
            .iter()
            .find(|t| t.is_copy(key, file, size))
        {
            (t.stream, t.committed)
        } else {
            if !matches!(
                self.may_be_copy(key, file, &first_bytes, size),
                CopyCheck::No
            ) {
                return;
            }
            if self.ignored_as_older(&md) {
                self.ignored.insert(key);
                return;
            }
            let offset = if first && self.first_start && self.config.start_at == StartAt::End {
                size
            } else {
                0
            };
            self.salt += 1;
            (new_stream_id(key, fp, self.salt), offset)
        };
        if let Ok(mut r) = self.shared.registry.lock() {
            r.put(Entry {
                path: path.display().to_string(),
                dev: key.dev,
                ino: key.ino,
                fp_len: fp.len,
                fp: fp.hash,
                stream,
                offset,
                last_seen: now_secs(),
                mark_at: 0,
                mark: 0,
            });
        }
        self.waiting_recorded = true;
    }

    fn ignored_as_older(&self, md: &std::fs::Metadata) -> bool {
        let Some(limit) = self.config.ignore_older.positive() else {
            return false;
        };
        md.modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > limit)
    }
}

fn entry_for(tail: &Tail, offset: u64) -> Entry {
    Entry {
        path: tail.meta.path.clone(),
        dev: tail.meta.key.dev,
        ino: tail.meta.key.ino,
        fp_len: tail.fp.len,
        fp: tail.fp.hash,
        stream: tail.meta.stream,
        offset,
        last_seen: now_secs(),
        mark_at: tail.end_mark().map_or(0, |m| m.0),
        mark: tail.end_mark().map_or(0, |m| m.1),
    }
}
