//! The disk buffer's writing side: takes batches from upstream, refuses (dead-letters) what
//! the reader could not read back, appends the rest as records to segment files and
//! acknowledges upstream once written; waits or drops when the buffer is full.

use super::{publish, seg_path, sync_dir, Pos, Shared};
use crate::event::{Batch, Event};
use crate::outputs::buffer::codec;
use crate::outputs::buffer::WhenFull;
use crate::outputs::dead_letter::{DeadLetters, Rejection};
use crate::pipeline::channel::BatchReceiver;
use crate::telemetry::metrics::ComponentMetrics;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) file: File,
    /// Where events the reader could not take back go.
    pub(super) dead_letters: DeadLetters,
    /// To hand dead letters to the (async) dead-letter output from this thread.
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) max_size: u64,
    pub(super) segment_size: u64,
    pub(super) when_full: WhenFull,
    pub(super) sync: bool,
    pub(super) metrics: Arc<ComponentMetrics>,
}

impl Writer {
    pub(super) fn run(mut self, mut upstream: BatchReceiver) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut record = Vec::new();
        let mut acks = Vec::new();
        // Events in the records grouped in `buf`.
        let mut events = 0u64;
        let mut logged_full = false;
        while let Some(first) = upstream.blocking_recv() {
            let mut next = Some(first);
            while let Some(mut batch) = next.take() {
                let start = buf.len();
                let refused = encode_batch(batch.events_mut(), &mut record, &mut buf);
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
                            event: batch.events_mut()[i].clone(),
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
                tracing::error!(output = %self.metrics.name, buffer = %self.shared.dir.display(), error = %e, "disk buffer: cannot write; batches are not acknowledged");
                self.metrics
                    .set_failed(format!("disk buffer {}: {e}", self.shared.dir.display()));
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
                        tracing::error!(output = %self.metrics.name, buffer = %self.shared.dir.display(), error = %e, "disk buffer: cannot write; its batches wait (not acknowledged) and the write is tried again (logged once)");
                    }
                    self.metrics
                        .set_failed(format!("disk buffer {}: {e}", self.shared.dir.display()));
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
        tracing::error!(output = %self.metrics.name, buffer = %self.shared.dir.display(), error = %e, "disk buffer: cannot write; batches are not acknowledged");
        self.metrics
            .set_failed(format!("disk buffer {}: {e}", self.shared.dir.display()));
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
