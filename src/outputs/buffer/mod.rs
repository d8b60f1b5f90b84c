//! Buffers between the pipeline and an output (`buffer:` on any output): `memory` holds up to
//! `max_events` events; `disk` keeps batches in crash-safe segment files under `data_dir`, so
//! inputs that cannot pause (packets, tee) survive a long outage of the destination.
//!
//! `memory.rs` and `disk.rs` each run as a stage: batches in from the pipeline, out to the
//! output; `codec.rs` is the disk record format, `recovery.rs` reads segments back past damage.

mod codec;
#[cfg(test)]
mod codec_fuzz;
mod disk;
mod memory;
mod recovery;

use crate::config::ByteSize;
use crate::outputs::dead_letter::DeadLetters;
use crate::pipeline::channel::{batch_channel, BatchReceiver};
use crate::telemetry::metrics::ComponentMetrics;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    Memory,
    Disk,
}

/// What a full buffer does with what comes next.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the inputs feeding this output slow down (those that can pause).
    #[default]
    Block,
    /// Drop the incoming batch, count it in `trawl_events_dropped_total` and let its input move
    /// on. For outputs that must never hold the others back.
    DropNewest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `memory` or `disk`.
    #[serde(rename = "type")]
    pub kind: BufferKind,
    /// Memory buffer: most events held.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Disk buffer: most bytes of unacknowledged batches on disk.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    #[serde(default)]
    pub when_full: WhenFull,
    /// Disk buffer: fsync each group of written batches before acknowledging them upstream
    /// (survives power loss); when false, written batches survive a crash of trawl but not of
    /// the machine.
    #[serde(default = "yes")]
    pub sync: bool,
}

fn default_max_events() -> usize {
    10_000
}
fn default_max_size() -> ByteSize {
    ByteSize(256 << 20)
}
fn yes() -> bool {
    true
}

/// Puts a buffer between `upstream` (what the pipeline sends the output) and the returned
/// receiver (what the output reads). Runs on tasks of its own until upstream is closed and
/// everything buffered was handed on. Events a disk buffer cannot hold go to `dead_letters`.
pub fn start(
    config: &Config,
    output: &str,
    upstream: BatchReceiver,
    metrics: Arc<ComponentMetrics>,
    data_dir: &Path,
    queue_batches: usize,
    dead_letters: DeadLetters,
) -> anyhow::Result<BatchReceiver> {
    let (tx, rx) = batch_channel(queue_batches, metrics.clone());
    match config.kind {
        BufferKind::Memory => memory::start(
            config.max_events.max(1),
            config.when_full,
            upstream,
            tx,
            metrics,
        ),
        BufferKind::Disk => {
            let dir = disk_dir(data_dir, output);
            disk::start(&dir, config, upstream, tx, metrics, dead_letters)?;
        }
    }
    Ok(rx)
}

/// Where the disk buffer of `output` lives.
pub fn disk_dir(data_dir: &Path, output: &str) -> PathBuf {
    data_dir.join("buffers").join(output)
}
