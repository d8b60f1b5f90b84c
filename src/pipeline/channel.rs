//! Bounded batch channels between stages and the shutdown signal. Capacity is counted in
//! batches; with batches capped in size this bounds memory, and a full channel makes the sender
//! wait: that wait is how a slow output slows the inputs.

use crate::event::Batch;
use crate::telemetry::metrics::ComponentMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Sending half of a stage's queue. The receiving component's `queue_depth` follows its content.
#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<Batch>,
    depth_of: Arc<ComponentMetrics>,
}

/// Receiving half of a stage's queue.
pub struct BatchReceiver {
    rx: mpsc::Receiver<Batch>,
    depth_of: Arc<ComponentMetrics>,
}

/// The receiver is gone; the batch comes back so its acknowledgement can be settled.
#[derive(Debug)]
pub struct Closed(pub Batch);

/// Creates a queue of `capacity` batches in front of the component `depth_of`.
pub fn batch_channel(
    capacity: usize,
    depth_of: Arc<ComponentMetrics>,
) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        BatchSender {
            tx,
            depth_of: depth_of.clone(),
        },
        BatchReceiver { rx, depth_of },
    )
}

impl BatchSender {
    /// Waits for room (back-pressure), then queues the batch.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let n = batch.len() as i64;
        self.depth_of.queue_depth.fetch_add(n, Ordering::Relaxed);
        match self.tx.send(batch).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(b)) => {
                self.depth_of.queue_depth.fetch_sub(n, Ordering::Relaxed);
                Err(Closed(b))
            }
        }
    }

    /// `send` for inputs that run on their own threads.
    pub fn blocking_send(&self, batch: Batch) -> Result<(), Closed> {
        let n = batch.len() as i64;
        self.depth_of.queue_depth.fetch_add(n, Ordering::Relaxed);
        match self.tx.blocking_send(batch) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(b)) => {
                self.depth_of.queue_depth.fetch_sub(n, Ordering::Relaxed);
                Err(Closed(b))
            }
        }
    }

    /// Queues the batch only if there is room now; for inputs that cannot wait (packets, a
    /// tee'd app). On `Err` the caller still owns the batch and must count what it drops.
    pub fn try_send(&self, batch: Batch) -> Result<(), TrySendError> {
        let n = batch.len() as i64;
        self.depth_of.queue_depth.fetch_add(n, Ordering::Relaxed);
        match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(b)) => {
                self.depth_of.queue_depth.fetch_sub(n, Ordering::Relaxed);
                Err(TrySendError::Full(b))
            }
            Err(mpsc::error::TrySendError::Closed(b)) => {
                self.depth_of.queue_depth.fetch_sub(n, Ordering::Relaxed);
                Err(TrySendError::Closed(b))
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[derive(Debug)]
pub enum TrySendError {
    Full(Batch),
    Closed(Batch),
}

impl BatchReceiver {
    /// The next batch; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let b = self.rx.recv().await?;
        self.depth_of
            .queue_depth
            .fetch_sub(b.len() as i64, Ordering::Relaxed);
        Some(b)
    }

    /// `recv` for outputs that run on their own threads.
    pub fn blocking_recv(&mut self) -> Option<Batch> {
        let b = self.rx.blocking_recv()?;
        self.depth_of
            .queue_depth
            .fetch_sub(b.len() as i64, Ordering::Relaxed);
        Some(b)
    }

    /// A batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let b = self.rx.try_recv().ok()?;
        self.depth_of
            .queue_depth
            .fetch_sub(b.len() as i64, Ordering::Relaxed);
        Some(b)
    }
}

/// Tells inputs to stop. Cheap to clone; `wait` for tasks, `is_triggered` for threads.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that triggers a `Shutdown`.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// A signal that never fires (tests, one-shot commands).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Leaking the sender keeps the channel open without a task holding it.
        std::mem::forget(tx);
        Shutdown { rx }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered (or its trigger is gone).
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}
