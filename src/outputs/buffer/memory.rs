//! The memory buffer: a queue of up to `max_events` events between the pipeline and an output.
//! One task takes batches in (waiting or dropping when full), another hands them to the output.
//! `trawl_buffer_events` and `trawl_buffer_bytes` (the events' approximate size in memory) follow
//! what is queued.

use super::WhenFull;
use crate::event::{approx_bytes, Batch};
use crate::pipeline::channel::{BatchReceiver, BatchSender};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

struct Queue {
    /// Each batch with its approximate size.
    batches: VecDeque<(Batch, usize)>,
    events: usize,
    bytes: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a batch is added or the intake ends.
    filled: Notify,
    /// Signalled when a batch leaves.
    drained: Notify,
}

pub fn start(
    max_events: usize,
    when_full: WhenFull,
    mut upstream: BatchReceiver,
    out: BatchSender,
    metrics: Arc<ComponentMetrics>,
) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            batches: VecDeque::new(),
            events: 0,
            bytes: 0,
            closed: false,
        }),
        filled: Notify::new(),
        drained: Notify::new(),
    });
    metrics
        .buffer_limit
        .store(max_events as i64, Ordering::Relaxed);
    let s = shared.clone();
    let gauge = metrics.clone();
    tokio::spawn(async move {
        let mut logged = false;
        while let Some(mut batch) = upstream.recv().await {
            let n = batch.len();
            let size = approx_bytes(batch.events_mut());
            loop {
                let drained = s.drained.notified();
                let room = s
                    .queue
                    .lock()
                    .map(|q| q.events == 0 || q.events + n <= max_events)
                    .unwrap_or(true);
                if room {
                    if let Ok(mut q) = s.queue.lock() {
                        q.events += n;
                        q.bytes += size;
                        q.batches.push_back((batch, size));
                        publish(&metrics, &q);
                    }
                    s.filled.notify_one();
                    break;
                }
                if when_full == WhenFull::DropNewest {
                    metrics
                        .events_dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                    if !logged {
                        logged = true;
                        tracing::warn!(output = %metrics.name, max_events, "memory buffer full: dropping new batches (logged once; counted in trawl_events_dropped_total)");
                    }
                    batch.ack.rejected();
                    break;
                }
                drained.await;
            }
        }
        if let Ok(mut q) = s.queue.lock() {
            q.closed = true;
        }
        s.filled.notify_one();
    });
    tokio::spawn(async move {
        loop {
            let filled = shared.filled.notified();
            let next = shared.queue.lock().ok().and_then(|mut q| {
                let b = q.batches.pop_front().map(|(b, size)| {
                    q.events -= b.len();
                    q.bytes -= size;
                    b
                });
                if b.is_some() {
                    publish(&gauge, &q);
                }
                match b {
                    Some(b) => Some(Some(b)),
                    None if q.closed => Some(None),
                    None => None,
                }
            });
            match next {
                Some(Some(batch)) => {
                    shared.drained.notify_one();
                    if let Err(closed) = out.send(batch).await {
                        closed.0.ack.failed();
                    }
                }
                Some(None) => return,
                None => filled.await,
            }
        }
    });
}

fn publish(metrics: &ComponentMetrics, q: &Queue) {
    metrics
        .buffer_events
        .store(q.events as i64, Ordering::Relaxed);
    metrics
        .buffer_bytes
        .store(q.bytes as i64, Ordering::Relaxed);
}
