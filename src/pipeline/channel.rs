//! Bounded batch channels between stages and the shutdown signal. Capacity is counted in
//! batches; with batches capped in size this bounds memory, and a full channel makes the sender
//! wait: that wait is how a slow output slows the inputs.

use crate::event::Batch;
use crate::telemetry::metrics::ComponentMetrics;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
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

    /// `blocking_send` that gives up at `grace`, for inputs on their own threads that can wait
    /// only a little (a live capture): the thread sleeps until the receiver makes room, woken by
    /// the channel itself, or the grace is over; then the caller owns the batch again.
    pub fn blocking_send_within(&self, batch: Batch, grace: Duration) -> Result<(), TrySendError> {
        // Room at once is the usual case: no clock read, no waker to allocate.
        let batch = match self.try_send(batch) {
            Err(TrySendError::Full(b)) if !grace.is_zero() => b,
            sent => return sent,
        };
        let deadline = Instant::now() + grace;
        let mut reserve = std::pin::pin!(self.tx.reserve());
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let permit = loop {
            match reserve.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(permit)) => break permit,
                Poll::Ready(Err(_)) => return Err(TrySendError::Closed(batch)),
                Poll::Pending => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TrySendError::Full(batch));
                    }
                    // Woken early by the channel (or spuriously): the loop polls again.
                    std::thread::park_timeout(deadline - now);
                }
            }
        };
        self.depth_of
            .queue_depth
            .fetch_add(batch.len() as i64, Ordering::Relaxed);
        permit.send(batch);
        Ok(())
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

/// Wakes a thread parked in `blocking_send_within`.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
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

    /// Resolves once triggered, and never when its trigger is dropped untriggered: for a signal
    /// whose absence means "go on as usual" (an output told to retire).
    pub async fn fired(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::telemetry::metrics::ComponentKind;

    fn one_event() -> Batch {
        Batch::unacked(vec![Event::from_message(
            "in".into(),
            chrono::Utc::now(),
            "line".into(),
        )])
    }

    /// A thread waiting for room is woken by what happens to the queue, not by its clock: the
    /// receiver taking a batch lets the waiting one in, the receiver going away hands it back.
    #[test]
    fn a_send_within_a_grace_is_woken_by_room_or_by_the_receiver_leaving() {
        let metrics = Arc::new(ComponentMetrics::new(
            ComponentKind::Processor,
            "p".into(),
            "x",
        ));
        let (tx, mut rx) = batch_channel(1, metrics.clone());
        tx.blocking_send_within(one_event(), Duration::ZERO)
            .unwrap();
        assert!(matches!(
            tx.blocking_send_within(one_event(), Duration::ZERO),
            Err(TrySendError::Full(_))
        ));
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            assert!(rx.blocking_recv().is_some());
            rx
        });
        // An hour of grace: the test ends only if the reader's recv wakes this thread.
        tx.blocking_send_within(one_event(), Duration::from_secs(3600))
            .unwrap();
        let rx = reader.join().unwrap();
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 1);

        let leaver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(rx);
        });
        assert!(matches!(
            tx.blocking_send_within(one_event(), Duration::from_secs(3600)),
            Err(TrySendError::Closed(_))
        ));
        leaver.join().unwrap();
    }
}
