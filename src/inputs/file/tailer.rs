//! The file input's reading thread: scans for files, opens them at their registry offset,
//! reads every open file in turn, and decides what rotation, truncation, deletion and
//! inactivity mean for each. The only place that opens and closes files.

use super::batcher::{Batcher, Built};
use super::discovery::{self, Discovery, Found, Written};
use super::identity::FileKey;
use super::multiline::Multiline;
use super::reader::{ReadOutcome, Tail};
use super::registry::{now_ms, Entry};
use super::{Config, Sent, Shared};
use crate::event::Batch;
use crate::inputs::InputContext;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
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

mod carry;
mod compressed;
mod copies;
mod lifecycle;
mod restart;
mod rewinds;
mod scan;
mod waiting;

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
    /// followed file closed to free its slot that grew since), with their path, where reading
    /// of them stopped and their size at last sight: deleted before a slot frees, the bytes from
    /// there on are gone.
    waiting_unopened: HashMap<FileKey, (PathBuf, u64, u64)>,
    /// Files that waited with no descriptor held and were compressed (kubelet's gzip) before
    /// they got a slot: read from their `.gz` once they get one.
    waiting_compressed: HashMap<FileKey, compressed::WaitingCompressed>,
    /// Waiting files found renamed out of `paths` by this scan, for discovery
    /// (`Found::renamed_waiting`).
    renamed_waiting: Vec<super::discovery::Renamed>,
    /// New files found empty, by the path they were found at: what they are (a file of their
    /// own, or a copy `cp` has created and not filled yet) is decided once they have bytes.
    empty_new: HashMap<FileKey, PathBuf>,
    /// When `empty_new` was last looked at (once per `poll_interval`).
    empty_checked_at: Option<Instant>,
    /// When the files held with no descriptor were last looked at for growth (once a second).
    unopened_checked_at: Option<Instant>,
    /// Paths written to, from filesystem events: closed files among them are reopened at once.
    written: Arc<Mutex<Written>>,
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
    let written = Arc::new(Mutex::new(Written::default()));
    let (discovery, events) = Discovery::new(
        config.paths.clone(),
        exclude,
        config.watch_events,
        wake_tx.clone(),
        written.clone(),
        shared.stats.clone(),
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
        waiting_compressed: HashMap::new(),
        renamed_waiting: Vec::new(),
        empty_new: HashMap::new(),
        empty_checked_at: None,
        unopened_checked_at: None,
        written,
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
        t.decide_grown_empty(&found, now, poll);
        t.reopen_written();
        t.apply_rewinds();
        let progress = match t.read_all(&mut buf) {
            Ok(p) => p,
            Err(Closed) => return Ok(()),
        };
        let now = Instant::now();
        t.publish_stats(now);
        t.note_growth_unopened(now);
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
            let freed = t.close_idle(now) && t.waiting > 0;
            if t.make_room(now, poll.max(IDLE_BEFORE_MAKING_ROOM)) || freed {
                // Files wait for the slots just freed: let them in now, not at the next scan
                // (was: a file closed as inactive before `make_room` found it idle left its
                // slot free, and the file waiting for it waited for the next scan).
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

    /// The registry's entry for `key`, if any.
    fn entry(&self, key: &FileKey) -> Option<Entry> {
        self.shared.registry.lock().ok()?.get(key).cloned()
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
        let partial = std::mem::take(&mut self.batcher.partial_lines);
        if partial > 0 {
            self.shared.stats.partial(partial);
        }
        if self.unsaved && super::save_blocking(&self.shared, None).is_ok() {
            // On failure (logged by the writer) events still go: the registry is failing as a
            // whole, and holding every file back would not make it work.
            self.unsaved = false;
        }
        let shared = self.shared.clone();
        let Ok(mut f) = shared.in_flight.lock() else {
            return Err(Closed);
        };
        // At the stop, what was read goes out at once (the deadline is near); while draining,
        // failed batches read again wait for room like any others.
        while !f.batches.is_empty()
            && f.bytes + built.bytes > self.max_in_flight
            && (self.stop_at.is_some() || !self.ctx.shutdown.is_triggered())
        {
            // The timeout only lets shutdown be seen; acknowledgements notify `room`.
            match shared.room.wait_timeout(f, Duration::from_millis(200)) {
                Ok((g, _)) => f = g,
                Err(_) => return Err(Closed),
            }
            // Waiting here is an output that does not keep up (or is down): when the lag
            // matters most, so the gauges stay current (the lock is not held meanwhile, as
            // acknowledgements need it).
            drop(f);
            self.publish_stats(Instant::now());
            f = match shared.in_flight.lock() {
                Ok(g) => g,
                Err(_) => return Err(Closed),
            };
        }
        let (seq, ack) = self.shared.tracker.track();
        f.bytes += built.bytes;
        f.batches.insert(
            seq,
            Sent {
                commits: built.commits,
                bytes: built.bytes,
                events: built.lines.len(),
            },
        );
        drop(f);
        self.ctx
            .metrics
            .ack_pending
            .store(self.shared.tracker.pending() as i64, Ordering::Relaxed);
        let mut batch = Batch::from_lines(built.lines, ack);
        // A full queue (an output down, with lines smaller than `max_in_flight` can fill it)
        // waits here, not above: the gauges stay current here too.
        loop {
            match self.ctx.emit_blocking_for(batch, Duration::from_secs(1)) {
                Ok(None) => return Ok(()),
                Ok(Some(back)) => {
                    batch = back;
                    self.publish_stats(Instant::now());
                }
                Err(_) => return Err(Closed),
            }
        }
    }

    /// One turn over every open file; true when something was read.
    fn read_all(&mut self, buf: &mut [u8]) -> Result<bool, Closed> {
        let mut progress = false;
        let now = Instant::now();
        self.backing_off.retain(|_, until| *until > now);
        let later = self.carry_over(now);
        let keys: Vec<FileKey> = self
            .tails
            .iter()
            .filter(|(k, t)| t.is_open() && !self.backing_off.contains_key(k) && !later.contains(k))
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
                        r.touch(&key, tail.meta.path(), tail.fp, now_ms());
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
}

fn entry_for(tail: &Tail, offset: u64) -> Entry {
    let (mark_at, mark) = tail.end_mark().unwrap_or((0, 0));
    Entry {
        mark_at,
        mark,
        ..Entry::seen_now(
            tail.meta.path().to_owned(),
            tail.meta.key,
            tail.fp,
            tail.meta.stream,
            offset,
        )
    }
}
