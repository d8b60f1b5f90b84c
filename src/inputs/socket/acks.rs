//! The socket input's side of the acknowledgement protocol (`inputs::tee::ack`): for a sender
//! that said hello, every batch carries an acknowledgement handle, and a task of the connection
//! writes the greeting and then the offset up to which the outputs have everything.

use crate::event::{AckTracker, BatchAck, BatchStatus};
use crate::inputs::tee::ack::{ack_line, GREETING};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

struct Shared {
    /// (batch sequence, connection offset the batch covers up to), in sequence order.
    in_flight: Mutex<VecDeque<(u64, u64)>>,
    /// Reading ended: the writer stops once everything in flight is settled.
    reading_done: AtomicBool,
    done: Notify,
    /// An output gave up on a batch: the connection is closed without acknowledging it, so
    /// that the sender sends it again.
    failed: Notify,
}

/// Acknowledgements of one connection.
pub struct Acks {
    tracker: AckTracker,
    shared: Arc<Shared>,
    writer: tokio::task::JoinHandle<()>,
}

impl Acks {
    /// Starts the writer: greeting first, then acknowledgements.
    pub fn start<W: AsyncWrite + Unpin + Send + 'static>(out: W, input: Arc<str>) -> Acks {
        let tracker = AckTracker::new();
        let shared = Arc::new(Shared {
            in_flight: Mutex::new(VecDeque::new()),
            reading_done: AtomicBool::new(false),
            done: Notify::new(),
            failed: Notify::new(),
        });
        let writer = tokio::spawn(write_acks(out, tracker.clone(), shared.clone(), input));
        Acks {
            tracker,
            shared,
            writer,
        }
    }

    /// The handle of the next batch, which covers the connection up to `end`.
    pub fn track(&self, end: u64) -> BatchAck {
        let (seq, ack) = self.tracker.track();
        if let Ok(mut f) = self.shared.in_flight.lock() {
            f.push_back((seq, end));
        }
        ack
    }

    /// Batches sent and not yet settled.
    pub fn pending(&self) -> bool {
        self.shared.in_flight.lock().is_ok_and(|f| !f.is_empty())
    }

    /// Resolves when an output gave up on a batch of this connection.
    pub async fn failed(&self) {
        self.shared.failed.notified().await
    }

    /// Reading is over: waits until what is in flight is settled and acknowledged.
    pub async fn finish(self) {
        self.shared.reading_done.store(true, Ordering::SeqCst);
        self.shared.done.notify_one();
        let _ = self.writer.await;
    }
}

async fn write_acks<W: AsyncWrite + Unpin>(
    mut out: W,
    tracker: AckTracker,
    shared: Arc<Shared>,
    input: Arc<str>,
) {
    if out.write_all(GREETING).await.is_err() {
        return;
    }
    let mut acked = 0u64;
    loop {
        let finished = || {
            shared.reading_done.load(Ordering::SeqCst)
                && shared
                    .in_flight
                    .lock()
                    .map(|f| f.is_empty())
                    .unwrap_or(true)
        };
        if finished() {
            break;
        }
        let settled = tokio::select! {
            s = tracker.next() => s,
            _ = shared.done.notified() => continue,
        };
        let mut upto = None;
        for a in settled {
            let end = shared.in_flight.lock().ok().and_then(|mut f| {
                let i = f.iter().position(|(s, _)| *s == a.seq)?;
                f.remove(i).map(|(_, end)| end)
            });
            match a.status {
                BatchStatus::Delivered | BatchStatus::Rejected => upto = end.or(upto),
                BatchStatus::Failed => {
                    tracing::warn!(input = %input, acknowledged = acked, "an output gave up on a batch: closing the connection so that the sender sends it again");
                    shared.failed.notify_one();
                    return;
                }
            }
        }
        if let Some(u) = upto.filter(|u| *u > acked) {
            acked = u;
            if out.write_all(&ack_line(u)).await.is_err() {
                // The sender is gone; it sends again what it did not see acknowledged.
                shared.failed.notify_one();
                return;
            }
        }
    }
    let _ = out.shutdown().await;
}
