//! The `file` input: tails files matched by globs, follows rotation (rename and copytruncate),
//! unwraps container log formats, joins multiline events, and keeps a crash-safe registry of
//! offsets that moves only when delivery is acknowledged.
//!
//! Why not `linemux` (the design card's suggestion): it cannot start at a saved offset and
//! cannot tell a rotated file from a new one at the same path, which are the two things a
//! registry needs; it also reads line by line. Here one thread reads every file in 256 KiB
//! chunks with `pread` at offsets we own, names files by device + inode confirmed by a
//! fingerprint, and wakes on `notify` events with a polling fallback. A second thread scans for
//! files and opens new ones at once, so a rotation faster than the reader (which may be paused
//! by back-pressure) cannot make a file disappear before it was read.
//!
//! What a crash re-reads is bounded by the batches in flight plus one `registry_flush` interval
//! of delivery: offsets are committed in memory on every acknowledgement and written to disk
//! (with fsync) on that interval, not per batch. A new stream id is written before any event
//! carrying it is sent, so the document ids derived from it survive a crash.
//!
//! A batch an output fails is read again from the first undelivered offset of its file after a
//! back-off (`retry`); the registry never moves past it.
//!
//! - `discovery`: globs, exclusions, filesystem events, the scanner thread.
//! - `identity`: device + inode, fingerprints, stream ids.
//! - `tailer`: the reading thread: opening, rotation, truncation, closing.
//! - `reader`: one file: chunks → lines → container records → multiline.
//! - `container`: Docker json-file, CRI, Kubernetes path metadata.
//! - `multiline` (shared with the other line inputs, in `inputs::multiline`): Filebeat-style
//!   joining and presets.
//! - `batcher`: events and the offsets each batch reaches.
//! - `retry`: failed batches: back-off and reading again.
//! - `registry`: the offsets on disk.
//! - `stats`: open, waiting and lag gauges on `/metrics`.

pub mod batcher;
pub mod container;
pub mod discovery;
pub mod identity;
pub use super::multiline;
pub mod reader;
pub mod registry;
mod retry;
mod stats;
mod tailer;

use super::{BoxFuture, BuildContext, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError, Duration};
use crate::event::{AckTracker, BatchStatus};
use batcher::Commit;
use identity::FileKey;
use registry::Registry;
use retry::{Failures, Reader, Rewind};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Where to start in a file trawl has never seen.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the file from its first byte.
    #[default]
    Beginning,
    /// Only what is written from now on. Applies only to the files found at the very first
    /// start (no registry yet); every file that appears later, also while trawl was stopped, is
    /// read from its beginning (a rotated file must not lose its first lines).
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of the files to tail (`*`, `?`, `[..]`, `**`).
    pub paths: Vec<String>,
    /// Glob patterns of files to leave out, matched against the full path and the file name.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files without a registry entry.
    #[serde(default)]
    pub start_at: StartAt,
    /// `auto` (detected per file), `raw`, `docker` or `cri`.
    #[serde(default)]
    pub format: container::Format,
    /// Joining of lines into one event (stack traces).
    #[serde(default)]
    pub multiline: Option<multiline::Config>,
    /// Longer lines (and joined container lines) are cut to this size and flagged `truncated`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Size of each read.
    #[serde(default = "default_read_buffer")]
    pub read_buffer: ByteSize,
    /// About how much memory the events read but not yet acknowledged may take; reading waits
    /// beyond it. Bounds memory whatever the batch and queue sizes (at least one batch passes).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: ByteSize,
    /// How many first bytes identify a file together with its inode.
    #[serde(default = "default_fingerprint")]
    pub fingerprint_bytes: ByteSize,
    /// Look for new files at least this often, even without filesystem events.
    #[serde(default = "default_scan_interval")]
    pub scan_interval: Duration,
    /// How often files at their end are checked for growth when no event says so.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// Use filesystem events (inotify) besides polling.
    #[serde(default = "yes")]
    pub watch_events: bool,
    /// Close a file that did not grow for this long; it is reopened when it grows.
    #[serde(default = "default_close_inactive")]
    pub close_inactive: Duration,
    /// Close a file deleted or renamed away from `paths` once read to its end and idle this long.
    #[serde(default = "default_close_removed")]
    pub close_removed: Duration,
    /// Skip files, never seen before, not modified for this long (`0`: off).
    #[serde(default)]
    pub ignore_older: Duration,
    /// Most files open at once; more wait for a free slot.
    #[serde(default = "default_max_open")]
    pub max_open_files: usize,
    /// Most files given their own `trawl_file_lag_bytes` series (those with the largest lags);
    /// `trawl_file_lag_total_bytes` sums every file.
    #[serde(default = "default_lag_metric_files")]
    pub lag_metric_files: usize,
    /// How often acknowledged offsets are written to the registry.
    #[serde(default = "default_registry_flush")]
    pub registry_flush: Duration,
    /// Registry entries of files not seen for this long (while trawl runs) are dropped.
    #[serde(default = "default_forget_after")]
    pub forget_after: Duration,
    /// The former name of this input (renamed in the pipeline file): on its first start, with
    /// no registry of its own yet, it takes that input's registry, so its files are resumed at
    /// their offsets, not read again.
    #[serde(default)]
    pub take_over: Option<String>,
    /// Read every file found to its current end, wait until all of it is delivered and
    /// committed, then end the input (`trawl run --once` sets it on every file input).
    #[serde(default)]
    pub once: bool,
}

fn yes() -> bool {
    true
}
fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_read_buffer() -> ByteSize {
    // About 600 lines of 100 bytes: less than a batch, so one read never builds many batches
    // at once, and still few enough syscalls not to show in a profile.
    ByteSize(64 << 10)
}
fn default_max_in_flight() -> ByteSize {
    // 8 MiB let an output's peak RSS under load reach 45-50 MB (Elasticsearch); 4 MiB holds
    // it near 30 at the same rate (benches/README.md, "Idle footprint").
    ByteSize(4 << 20)
}
fn default_fingerprint() -> ByteSize {
    ByteSize(1024)
}
fn default_scan_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_close_inactive() -> Duration {
    Duration::from_secs(300)
}
fn default_close_removed() -> Duration {
    Duration::from_secs(5)
}
fn default_max_open() -> usize {
    1024
}
fn default_lag_metric_files() -> usize {
    100
}
fn default_registry_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_forget_after() -> Duration {
    Duration::from_secs(24 * 3600)
}

pub struct FileInput {
    config: Config,
    exclude: Vec<glob::Pattern>,
    multiline: Option<multiline::Multiline>,
    registry_path: PathBuf,
    stats: Arc<stats::FileStats>,
}

/// Builds the input from its spec (called by `inputs::build`).
pub fn build(spec: &ComponentSpec, ctx: &BuildContext) -> Result<FileInput, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    let mark_of = |key: &str| spec.node.get(key).map(|n| n.mark).or(Some(spec.mark));
    let err = |key: &str, message: String| DeError {
        message,
        mark: mark_of(key),
        path: Some(format!("{}.{key}", spec.path)),
        also: Vec::new(),
    };
    if config.paths.is_empty() {
        return Err(err("paths", "expected at least one path pattern".into()));
    }
    if config.paths.iter().any(|p| p.trim().is_empty()) {
        return Err(err(
            "paths",
            "an empty pattern (an unset variable?) matches no file: expected a path or glob".into(),
        ));
    }
    if let Err(why) = crate::inputs::orphans::check_take_over(spec, config.take_over.as_ref()) {
        return Err(err("take_over", why));
    }
    if config.max_open_files == 0 {
        return Err(err(
            "max_open_files",
            "expected at least 1 (with 0 no file is ever read)".into(),
        ));
    }
    // Each is allocated up front or per file: a size past these is a typo, and would abort
    // trawl under a memory limit rather than fail here.
    for (key, value, most) in [
        ("read_buffer", config.read_buffer, ByteSize(64 << 20)),
        ("max_line_bytes", config.max_line_bytes, ByteSize(1 << 30)),
        (
            "fingerprint_bytes",
            config.fingerprint_bytes,
            ByteSize(1 << 20),
        ),
        ("max_in_flight", config.max_in_flight, ByteSize(4 << 30)),
    ] {
        if value.bytes() == 0 || value > most {
            return Err(err(
                key,
                format!(
                    "expected from 1 byte to {} bytes, got {} bytes",
                    most.bytes(),
                    value.bytes()
                ),
            ));
        }
    }
    discovery::check_include(&config.paths).map_err(|m| err("paths", m))?;
    let exclude = discovery::compile_exclude(&config.exclude).map_err(|m| err("exclude", m))?;
    let multiline = match &config.multiline {
        Some(m) => Some(m.compile(mark_of("multiline"), &format!("{}.multiline", spec.path))?),
        None => None,
    };
    let stats = Arc::new(stats::FileStats::new(&spec.name, config.lag_metric_files));
    ctx.registry.register(stats.clone());
    Ok(FileInput {
        config,
        exclude,
        multiline,
        registry_path: ctx
            .data_dir
            .join("registry")
            .join(registry_file_name(&spec.name)),
        stats,
    })
}

/// The registry file of the input named `name`: `file-<name>.json` for names of
/// `[A-Za-z0-9_-]` (as ever), otherwise every other byte is written `.XX` (hex), so two names
/// never share a file (`web:app` → `file-web.3aapp.json`, `web_app` → `file-web_app.json`).
pub fn registry_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 10);
    out.push_str("file-");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02x}"));
        }
    }
    out.push_str(".json");
    out
}

/// The registry file of the input named `name` before names were escaped: every byte but
/// `[A-Za-z0-9_-]` written `_`.
pub(crate) fn legacy_registry_file_name(name: &str) -> String {
    let legacy: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("file-{legacy}.json")
}

/// Before names were escaped, `web:app` kept its registry in `file-web_app.json`: a name with
/// other characters adopts (copies) that file on its first start under the new name, so an
/// upgrade neither re-reads nor skips its files.
fn adopt_legacy_registry(name: &str, path: &Path) {
    let legacy = path.with_file_name(legacy_registry_file_name(name));
    if legacy == path || path.exists() || !legacy.exists() {
        return;
    }
    match std::fs::read(&legacy).and_then(|bytes| registry::write_atomic(path, &bytes)) {
        Ok(()) => tracing::info!(input = %name, from = %legacy.display(), to = %path.display(),
            "registry file renamed for this input name: copied the old one"),
        Err(e) => tracing::warn!(input = %name, from = %legacy.display(), error = %e,
            "cannot copy the registry kept under this input's former file name: starting without offsets"),
    }
}

/// What the reading thread and the acknowledgement task share.
pub(crate) struct Shared {
    pub registry: Mutex<Registry>,
    /// The gauges the reading thread refreshes.
    pub stats: Arc<stats::FileStats>,
    pub in_flight: Mutex<InFlight>,
    /// Signalled when acknowledgements free room in `in_flight`.
    pub room: Condvar,
    pub tracker: AckTracker,
    /// Set while saving the registry fails, so the failure is logged once, not every flush.
    pub save_failing: AtomicBool,
    /// The input's own: `/health` names it, with the registry, while saving fails.
    pub metrics: Arc<crate::telemetry::metrics::ComponentMetrics>,
    /// Held while the registry is snapshotted and written: two writers (the flush interval, the
    /// reader making a new stream id durable) write in turn, the newest snapshot last.
    pub write_lock: Mutex<()>,
    /// Streams to read again after a failed batch, for the reader. At most one per failure of
    /// a stream's current epoch, taken at the reader's next turn.
    pub rewinds: Mutex<Vec<Rewind>>,
    /// Set once the reader has matched its first scan against the registry: until then no
    /// entry is expired, because trawl's own downtime is not a file's absence.
    pub scanned: AtomicBool,
}

impl Shared {
    /// Whether `key` still has events in flight or waiting to be read again: its file must be
    /// kept (open) until they are delivered.
    pub fn unsettled(&self, key: &FileKey) -> bool {
        let in_flight = match self.in_flight.lock() {
            Ok(f) => f
                .batches
                .values()
                .any(|b| b.commits.iter().any(|c| c.key == *key)),
            Err(_) => false,
        };
        in_flight
            || self
                .rewinds
                .lock()
                .is_ok_and(|r| r.iter().any(|rw| rw.key == *key))
    }
}

/// How often, while stopping, the exit's account of what was left is refreshed.
const STOP_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// A batch sent and not yet acknowledged.
pub(crate) struct Sent {
    /// The offsets it reaches.
    pub commits: Vec<Commit>,
    /// About how much memory its events hold.
    pub bytes: usize,
    pub events: usize,
}

/// The batches sent and not yet acknowledged.
#[derive(Default)]
pub(crate) struct InFlight {
    /// By sequence number.
    pub batches: HashMap<u64, Sent>,
    /// Sum of the batches' memory.
    pub bytes: usize,
}

impl Input for FileInput {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let FileInput {
                config,
                exclude,
                multiline,
                registry_path,
                stats,
            } = *self;
            adopt_legacy_registry(&ctx.name, &registry_path);
            if let Some(from) = &config.take_over {
                crate::inputs::orphans::take_over(
                    crate::inputs::orphans::Kept::Registry,
                    &ctx.name,
                    from,
                    &registry_path,
                );
            }
            registry::check_writable(&registry_path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the registry {}: {e}; the file input keeps its read offsets there, so `data_dir` must be writable",
                    registry_path.display()
                )
            })?;
            let registry = Registry::load(registry_path);
            // `start_at` is for the very first start only: once a registry exists, a file trawl
            // has not seen appeared while it was stopped and is read from its beginning.
            let first_start = !registry.found();
            tracing::info!(input = %ctx.name, registry = %registry.path().display(), files = registry.len(), first_start, "file input starting");
            let shared = Arc::new(Shared {
                registry: Mutex::new(registry),
                in_flight: Mutex::new(InFlight::default()),
                room: Condvar::new(),
                tracker: AckTracker::new(),
                save_failing: Default::default(),
                metrics: ctx.metrics.clone(),
                write_lock: Mutex::new(()),
                rewinds: Mutex::new(Vec::new()),
                scanned: AtomicBool::new(false),
                stats,
            });
            let metrics = ctx.metrics.clone();
            let flush_every = config
                .registry_flush
                .positive()
                .unwrap_or(std::time::Duration::from_secs(1));
            let forget_after = config.forget_after.std().as_secs() as i64;
            let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
            let thread_shared = shared.clone();
            let shutdown = ctx.shutdown.clone();
            let pipeline = ctx.pipeline.clone();
            let mut failures = Failures::new(ctx.name.clone());
            let handle = std::thread::Builder::new()
                .name(format!("trawl-file-{}", ctx.name))
                .spawn(move || {
                    let r =
                        tailer::run(config, exclude, multiline, ctx, thread_shared, first_start);
                    let _ = done_tx.send(());
                    r
                })?;

            // The one owner of what goes to disk: commits acknowledged offsets in order.
            let mut tick = tokio::time::interval(flush_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reader_done = false;
            loop {
                let reader = match (reader_done, shutdown.is_triggered()) {
                    (true, _) => Reader::Gone,
                    (false, true) if pipeline.retries_failed() => Reader::Draining,
                    (false, true) => Reader::Gone,
                    (false, false) => Reader::Running,
                };
                tokio::select! {
                    acked = shared.tracker.next() => {
                        apply(&shared, &acked, &mut failures, &metrics, reader)
                    }
                    _ = tick.tick() => save(&shared, forget_after, &mut failures).await,
                    _ = &mut done_rx, if !reader_done => reader_done = true,
                    // While stopping, what is left is kept current more often than the flush:
                    // the deadline may end the drain before the next tick.
                    _ = tokio::time::sleep(STOP_REFRESH), if shutdown.is_triggered() => {}
                }
                metrics
                    .ack_pending
                    .store(shared.tracker.pending() as i64, Ordering::Relaxed);
                if shutdown.is_triggered() && pipeline.stopping.load(Ordering::SeqCst) {
                    // Kept current through the drain: if the shutdown deadline ends it, the
                    // exit status says what was left (not a failure of the input: `/health`
                    // does not show it).
                    metrics.set_drain_incomplete(undelivered_at_stop(&shared, &failures));
                }
                if reader_done && shared.tracker.pending() == 0 {
                    break;
                }
            }
            apply(
                &shared,
                &shared.tracker.drain(),
                &mut failures,
                &metrics,
                Reader::Gone,
            );
            save(&shared, forget_after, &mut failures).await;
            // The reader read the failed batches again during the drain; what is still failing
            // (an output failed for good, or the input ended on its own) is said by the exit
            // status, once. Not after a reload: the input replacing this one reads them again.
            if pipeline.stopping.load(Ordering::SeqCst) {
                metrics.set_drain_incomplete(undelivered_at_stop(&shared, &failures));
            }
            tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("file reader thread panicked"))?
        })
    }

    fn state_file(&self) -> Option<&std::path::Path> {
        Some(&self.registry_path)
    }
}

/// At a stop, the files whose failed batches were not delivered since (failing again through
/// the drain, or not read again because an output failed for good), and those whose batches are
/// still in flight (not acknowledged when the deadline came: a broker that does not answer):
/// their registry offsets stay before those lines, so the next start reads them again, and what
/// was sent after them is sent again. `None` when every line read was delivered.
fn undelivered_at_stop(shared: &Shared, failures: &Failures) -> Option<String> {
    let failed: BTreeSet<u64> = failures.streams().collect();
    let in_flight: BTreeSet<u64> = match shared.in_flight.lock() {
        Ok(f) => f
            .batches
            .values()
            .flat_map(|b| b.commits.iter().map(|c| c.stream))
            .filter(|s| !failed.contains(s))
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let reg = shared.registry.lock().ok()?;
    let from = |streams: &BTreeSet<u64>| -> Vec<String> {
        let mut files: Vec<String> = streams
            .iter()
            .filter_map(|&stream| {
                reg.entries()
                    .find(|e| e.stream == stream)
                    .map(|e| format!("{} from offset {}", e.path, e.offset))
                    .or_else(|| {
                        reg.truncations()
                            .iter()
                            .find(|t| t.stream == stream)
                            .map(|t| {
                                format!("the copy of a truncated file from offset {}", t.committed)
                            })
                    })
            })
            .collect();
        files.sort();
        files
    };
    let mut said = Vec::new();
    let failed = from(&failed);
    if !failed.is_empty() {
        said.push(format!(
            "stopped with lines that were read and not delivered (an output failed their batches): the registry stays before them and the next start reads them again, with what was sent after them ({} file(s): {})",
            failed.len(),
            failed.join(", ")
        ));
    }
    let in_flight = from(&in_flight);
    if !in_flight.is_empty() {
        said.push(format!(
            "stopped with batches in flight (not acknowledged by an output yet): the next start reads them again from the registry's offsets ({} file(s): {})",
            in_flight.len(),
            in_flight.join(", ")
        ));
    }
    said.extend(deleted_undelivered(&reg));
    if said.is_empty() {
        None
    } else {
        Some(said.join("; "))
    }
}

/// The deleted files this input holds with bytes not delivered: trawl's exit closes the last
/// descriptor of each, so the next start cannot read them again. Found among the process's
/// descriptors (whichever thread holds them, and whatever it is blocked on), each said as
/// `path=… offset=…` (where the loss starts).
fn deleted_undelivered(reg: &Registry) -> Option<String> {
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut lost: Vec<String> = Vec::new();
    for fd in fds.flatten() {
        let deleted = std::fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"));
        if !deleted {
            continue;
        }
        // Through the descriptor's link: the file it holds, though it has no name.
        let Ok(md) = std::fs::metadata(fd.path()) else {
            continue;
        };
        let key = identity::FileKey::of(&md);
        if !md.is_file() || !seen.insert(key) {
            continue;
        }
        if let Some(e) = reg.get(&key).filter(|e| md.len() > e.offset) {
            lost.push(format!(
                "path={} offset={} unread_bytes={}",
                e.path,
                e.offset,
                md.len() - e.offset
            ));
        }
    }
    if lost.is_empty() {
        return None;
    }
    lost.sort();
    Some(format!(
        "stopped with deleted files not delivered to their end: no process can read them once trawl exits, their bytes from offset on are lost ({})",
        lost.join("; ")
    ))
}

/// Takes acknowledged batches in order: moves the registry for delivered ones, asks the reader
/// to read failed ones again (and counts their events in `trawl_events_failed_total`).
fn apply(
    shared: &Shared,
    acked: &[crate::event::Acked],
    failures: &mut Failures,
    metrics: &crate::telemetry::metrics::ComponentMetrics,
    reader: Reader,
) {
    let Ok(mut in_flight) = shared.in_flight.lock() else {
        return;
    };
    let Ok(mut reg) = shared.registry.lock() else {
        return;
    };
    if !acked.is_empty() {
        shared.room.notify_all();
    }
    let now = std::time::Instant::now();
    for a in acked {
        let Some(sent) = in_flight.batches.remove(&a.seq) else {
            continue;
        };
        in_flight.bytes = in_flight.bytes.saturating_sub(sent.bytes);
        if a.status == BatchStatus::Failed {
            crate::telemetry::metrics::ComponentMetrics::add(
                &metrics.events_failed,
                sent.events as u64,
            );
        }
        for c in sent.commits {
            // Read before its stream was rewound: never moves the registry past a failure. A
            // failed one is read again by that rewind, if any file still holds the stream.
            if failures.is_stale(&c) {
                if a.status == BatchStatus::Failed && !reg.entries().any(|e| e.stream == c.stream) {
                    match reg.truncation_mut(c.stream) {
                        // Only the copy, if it appears, gives these lines back.
                        Some(t) => t.failed_lines += c.events,
                        None => shared.stats.lost(c.events),
                    }
                }
                continue;
            }
            if a.status == BatchStatus::Failed {
                // The stream's lines are in its file, or after a copytruncate in the copy.
                let resume = reg.resume_point(&c.key, c.stream);
                let at = resume
                    .as_ref()
                    .map(|(offset, path)| (*offset, path.as_str()));
                if let Some(rw) = failures.failed(&c, at, reader, now) {
                    if let Ok(mut r) = shared.rewinds.lock() {
                        r.push(rw);
                    }
                } else if resume.is_none() {
                    shared.stats.lost(c.events);
                    tracing::error!(input = %failures.input(), stream = c.stream, dev = c.key.dev, ino = c.key.ino, lines = c.events,
                        "an output failed a batch of a file replaced or forgotten since, and no copy of it is followed: those lines cannot be read again and are lost (counted in trawl_file_lost_lines_total)");
                }
            } else {
                failures.delivered(&c, reg.get(&c.key).map(|e| e.path.as_str()));
                reg.commit(&c.key, c.stream, c.offset);
            }
        }
    }
}

/// Writes the registry if it changed since the last write, dropping first the entries unseen
/// since `expire_before`. Both writers (the flush interval, the reader before sending events of
/// a new stream) come here, in turn.
pub(crate) fn save_blocking(shared: &Shared, expire_before: Option<i64>) -> std::io::Result<()> {
    let _turn = shared
        .write_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (bytes, path) = match shared.registry.lock() {
        Ok(mut reg) => {
            if let Some(before) = expire_before {
                reg.expire(before);
            }
            (reg.snapshot(), reg.path().to_path_buf())
        }
        Err(_) => return Ok(()),
    };
    let Some(bytes) = bytes else { return Ok(()) };
    match registry::write_atomic(&path, &bytes) {
        Err(e) => {
            if !shared.save_failing.swap(true, Ordering::Relaxed) {
                tracing::error!(registry = %path.display(), error = %e, "cannot write registry: retrying every flush; offsets are not saved until it works (logged once)");
            }
            // Lines still flow, but a restart now would send again all delivered since the
            // last write: an SRE must see it before restarting, not after.
            shared.metrics.set_failed(format!(
                "cannot write registry {}: {e}; lines still flow, offsets are not saved (a restart sends again what was delivered since)",
                path.display()
            ));
            if let Ok(mut reg) = shared.registry.lock() {
                reg.mark_dirty();
            }
            Err(e)
        }
        Ok(()) => {
            if shared.save_failing.swap(false, Ordering::Relaxed) {
                shared.metrics.clear_failed();
                tracing::info!(registry = %path.display(), "registry written again");
            }
            Ok(())
        }
    }
}

async fn save(shared: &Arc<Shared>, forget_after: i64, failures: &mut Failures) {
    let expire_before = shared
        .scanned
        .load(Ordering::Acquire)
        .then(|| registry::now_secs() - forget_after);
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || save_blocking(&s, expire_before)).await;
    if let Ok(reg) = shared.registry.lock() {
        failures.retain(|stream| reg.holds(stream));
    }
}

#[cfg(test)]
mod tests {
    use super::registry_file_name;

    #[test]
    fn registry_names_never_collide_and_plain_names_keep_theirs() {
        assert_eq!(registry_file_name("web_app"), "file-web_app.json");
        assert_eq!(registry_file_name("web-app2"), "file-web-app2.json");
        assert_eq!(registry_file_name("web:app"), "file-web.3aapp.json");
        assert_ne!(registry_file_name("web app"), registry_file_name("web:app"));
        assert_eq!(registry_file_name("é"), "file-.c3.a9.json");
    }
}
