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
//! (with fsync) on that interval, not per batch.
//!
//! - `discovery`: globs, exclusions, filesystem events, the scanner thread.
//! - `identity`: device + inode, fingerprints, stream ids.
//! - `tailer`: the reading thread: opening, rotation, truncation, closing.
//! - `reader`: one file: chunks → lines → container records → multiline.
//! - `container`: Docker json-file, CRI, Kubernetes path metadata.
//! - `multiline`: Filebeat-style joining and presets.
//! - `batcher`: events and the offsets each batch reaches.
//! - `registry`: the offsets on disk.

mod batcher;
pub mod container;
pub mod discovery;
pub mod identity;
pub mod multiline;
pub mod reader;
pub mod registry;
mod tailer;

use super::{BoxFuture, BuildContext, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError, Duration};
use crate::event::{AckTracker, BatchStatus};
use batcher::Commit;
use registry::Registry;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

/// Where to start in a file trawl has never seen.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the file from its first byte.
    #[default]
    Beginning,
    /// Only what is written from now on. Applies to files found at startup; files that appear
    /// later are always read from their beginning (a rotated file must not lose its first lines).
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
    /// How often acknowledged offsets are written to the registry.
    #[serde(default = "default_registry_flush")]
    pub registry_flush: Duration,
    /// Registry entries of files not seen for this long are dropped.
    #[serde(default = "default_forget_after")]
    pub forget_after: Duration,
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
    ByteSize(8 << 20)
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
}

/// Builds the input from its spec (called by `inputs::build`).
pub fn build(spec: &ComponentSpec, ctx: &BuildContext) -> Result<FileInput, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    let mark_of = |key: &str| spec.node.get(key).map(|n| n.mark).or(Some(spec.mark));
    let err = |key: &str, message: String| DeError {
        message,
        mark: mark_of(key),
        path: Some(format!("{}.{key}", spec.path)),
    };
    if config.paths.is_empty() {
        return Err(err("paths", "expected at least one path pattern".into()));
    }
    discovery::check_include(&config.paths).map_err(|m| err("paths", m))?;
    let exclude = discovery::compile_exclude(&config.exclude).map_err(|m| err("exclude", m))?;
    let multiline = match &config.multiline {
        Some(m) => Some(m.compile(mark_of("multiline"), &format!("{}.multiline", spec.path))?),
        None => None,
    };
    let safe: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(FileInput {
        config,
        exclude,
        multiline,
        registry_path: ctx
            .data_dir
            .join("registry")
            .join(format!("file-{safe}.json")),
    })
}

/// What the reading thread and the acknowledgement task share.
pub(crate) struct Shared {
    pub registry: Mutex<Registry>,
    pub in_flight: Mutex<InFlight>,
    /// Signalled when acknowledgements free room in `in_flight`.
    pub room: Condvar,
    pub tracker: AckTracker,
    /// Set while saving the registry fails, so the failure is logged once, not every flush.
    pub save_failing: std::sync::atomic::AtomicBool,
}

/// The batches sent and not yet acknowledged.
#[derive(Default)]
pub(crate) struct InFlight {
    /// The offsets each batch reaches and the memory it holds, by sequence number.
    pub batches: HashMap<u64, (Vec<Commit>, usize)>,
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
            } = *self;
            registry::check_writable(&registry_path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the registry {}: {e}; the file input keeps its read offsets there, so `data_dir` must be writable",
                    registry_path.display()
                )
            })?;
            let registry = Registry::load(registry_path);
            tracing::info!(input = %ctx.name, registry = %registry.path().display(), files = registry.len(), "file input starting");
            let shared = Arc::new(Shared {
                registry: Mutex::new(registry),
                in_flight: Mutex::new(InFlight::default()),
                room: Condvar::new(),
                tracker: AckTracker::new(),
                save_failing: Default::default(),
            });
            let metrics = ctx.metrics.clone();
            let flush_every = config
                .registry_flush
                .positive()
                .unwrap_or(std::time::Duration::from_secs(1));
            let forget_after = config.forget_after.std().as_secs() as i64;
            let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
            let thread_shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("trawl-file-{}", ctx.name))
                .spawn(move || {
                    let r = tailer::run(config, exclude, multiline, ctx, thread_shared);
                    let _ = done_tx.send(());
                    r
                })?;

            // The one owner of what goes to disk: commits acknowledged offsets in order.
            let mut poisoned: HashSet<(identity::FileKey, u64)> = HashSet::new();
            let mut tick = tokio::time::interval(flush_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reader_done = false;
            loop {
                tokio::select! {
                    acked = shared.tracker.next() => apply(&shared, &acked, &mut poisoned),
                    _ = tick.tick() => save(&shared, forget_after).await,
                    _ = &mut done_rx, if !reader_done => reader_done = true,
                }
                metrics
                    .ack_pending
                    .store(shared.tracker.pending() as i64, Ordering::Relaxed);
                if reader_done && shared.tracker.pending() == 0 {
                    break;
                }
            }
            apply(&shared, &shared.tracker.drain(), &mut poisoned);
            save(&shared, forget_after).await;
            tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("file reader thread panicked"))?
        })
    }
}

fn apply(
    shared: &Shared,
    acked: &[crate::event::Acked],
    poisoned: &mut HashSet<(identity::FileKey, u64)>,
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
    for a in acked {
        let Some((commits, bytes)) = in_flight.batches.remove(&a.seq) else {
            continue;
        };
        in_flight.bytes = in_flight.bytes.saturating_sub(bytes);
        for c in commits {
            if a.status == BatchStatus::Failed {
                // Never move past an undelivered batch, not even with later delivered ones.
                poisoned.insert((c.key, c.stream));
            } else if !poisoned.contains(&(c.key, c.stream)) {
                reg.commit(&c.key, c.stream, c.offset);
            }
        }
    }
}

async fn save(shared: &Arc<Shared>, forget_after: i64) {
    let (bytes, path) = match shared.registry.lock() {
        Ok(mut reg) => {
            reg.expire(registry::now_secs() - forget_after);
            (reg.snapshot(), reg.path().to_path_buf())
        }
        Err(_) => return,
    };
    let Some(bytes) = bytes else { return };
    let written = tokio::task::spawn_blocking(move || {
        registry::write_atomic(&path, &bytes).map_err(|e| (e, path))
    })
    .await;
    match written {
        Ok(Err((e, path))) => {
            if !shared.save_failing.swap(true, Ordering::Relaxed) {
                tracing::error!(registry = %path.display(), error = %e, "cannot write registry: retrying every flush; offsets are not saved until it works (logged once)");
            }
            if let Ok(mut reg) = shared.registry.lock() {
                reg.mark_dirty();
            }
        }
        Ok(Ok(())) => {
            if shared.save_failing.swap(false, Ordering::Relaxed) {
                tracing::info!("registry written again");
            }
        }
        Err(_) => {}
    }
}
