//! Acknowledgements: every batch carries a `BatchAck`; when the last copy of it is dropped (one
//! per output that received the batch), the input's `AckTracker` learns the batch's fate, and
//! hands those fates back to the input strictly in the order the batches were produced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use super::Held;
use crate::telemetry::metrics::ComponentMetrics;

/// How a batch ended. Ordered from best to worst: a batch copied to several outputs takes the
/// worst status any of them reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum BatchStatus {
    /// Every output durably delivered it.
    Delivered = 0,
    /// Some events were rejected for good and went to a dead-letter place or were counted as
    /// dropped; retrying would not help, so the input may move past them.
    Rejected = 1,
    /// Not delivered (shutdown deadline, output gave up): the input must not move past it.
    Failed = 2,
}

impl BatchStatus {
    fn from_u8(v: u8) -> BatchStatus {
        match v {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Rejected,
            _ => BatchStatus::Failed,
        }
    }
}

/// A batch's fate as the input sees it: its sequence number (from `AckTracker::track`) and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub seq: u64,
    pub status: BatchStatus,
}

#[derive(Default)]
struct TrackerState {
    next_seq: u64,
    next_release: u64,
    done: BTreeMap<u64, BatchStatus>,
}

struct Shared {
    state: Mutex<TrackerState>,
    notify: Notify,
    /// The input's counters, whose `ack_pending` gauge follows `pending()`.
    metrics: Option<Arc<ComponentMetrics>>,
}

impl Shared {
    fn complete(&self, seq: u64, status: BatchStatus) {
        if let Ok(mut st) = self.state.lock() {
            st.done.insert(seq, status);
        }
        self.notify.notify_one();
    }
}

struct AckInner {
    seq: u64,
    status: AtomicU8,
    /// The tracker told of the batch's fate; none for a batch that only holds memory.
    shared: Option<Arc<Shared>>,
    /// The batch's share of its input's in-flight budget, given back with the last copy.
    _held: Option<Held>,
    /// For an input that cannot read the batch again: its counters and the batch's events,
    /// lost when the batch fails, so the loss is counted and logged rather than silent.
    lost_if_failed: Option<(Arc<ComponentMetrics>, u64)>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        let status = BatchStatus::from_u8(self.status.load(Ordering::Acquire));
        if let Some(shared) = &self.shared {
            shared.complete(self.seq, status);
        }
        if let (BatchStatus::Failed, Some((metrics, events))) = (status, &self.lost_if_failed) {
            metrics.lost(*events);
        }
    }
}

/// The delivery handle of a batch. Each copy (one per output) must be settled with
/// `delivered`, `rejected` or `failed`; a copy dropped unsettled counts as failed, so a batch
/// lost in a crash path can never be mistaken for a delivered one.
pub struct BatchAck {
    inner: Option<Arc<AckInner>>,
    status: BatchStatus,
}

impl std::fmt::Debug for BatchAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => write!(f, "BatchAck(seq={})", i.seq),
            None => write!(f, "BatchAck(none)"),
        }
    }
}

impl BatchAck {
    /// A handle that reports to nobody (inputs that do not wait for delivery).
    pub fn none() -> BatchAck {
        BatchAck {
            inner: None,
            status: BatchStatus::Failed,
        }
    }

    /// The handle of a batch of `events` its input cannot read again (stdin, a socket without
    /// acknowledgements, packets): nothing waits for it, but when an output fails it, the events
    /// are counted as lost on `metrics` (`ComponentMetrics::lost`). It holds `held`, if any,
    /// until every output has settled the batch, so that the input's bytes in flight are capped.
    pub fn lost_if_failed(
        metrics: &Arc<ComponentMetrics>,
        events: usize,
        held: Option<Held>,
    ) -> BatchAck {
        BatchAck {
            inner: Some(Arc::new(AckInner {
                seq: 0,
                status: AtomicU8::new(BatchStatus::Delivered as u8),
                shared: None,
                _held: held,
                lost_if_failed: Some((metrics.clone(), events as u64)),
            })),
            status: BatchStatus::Failed,
        }
    }

    pub fn is_tracked(&self) -> bool {
        self.inner.is_some()
    }

    /// Another copy of the handle for another output; the batch is settled when every copy is.
    pub fn fork(&self) -> BatchAck {
        BatchAck {
            inner: self.inner.clone(),
            status: BatchStatus::Failed,
        }
    }

    /// True when both handles are copies for the same batch (untracked handles count as one
    /// batch), so that an output can group what it settles together.
    pub fn same_batch(&self, other: &BatchAck) -> bool {
        match (&self.inner, &other.inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    pub fn delivered(mut self) {
        self.status = BatchStatus::Delivered;
    }

    pub fn rejected(mut self) {
        self.status = BatchStatus::Rejected;
    }

    pub fn failed(mut self) {
        self.status = BatchStatus::Failed;
    }

    pub fn settle(mut self, status: BatchStatus) {
        self.status = status;
    }
}

impl Drop for BatchAck {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.status.fetch_max(self.status as u8, Ordering::AcqRel);
        }
    }
}

/// The input's side: hands out handles and returns settled batches in production order.
#[derive(Clone)]
pub struct AckTracker {
    shared: Arc<Shared>,
}

impl Default for AckTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl AckTracker {
    pub fn new() -> AckTracker {
        AckTracker {
            shared: Arc::new(Shared {
                state: Mutex::new(TrackerState::default()),
                notify: Notify::new(),
                metrics: None,
            }),
        }
    }

    /// A tracker that keeps the input's `trawl_ack_pending_batches` gauge current.
    pub fn for_input(metrics: Arc<ComponentMetrics>) -> AckTracker {
        AckTracker {
            shared: Arc::new(Shared {
                state: Mutex::new(TrackerState::default()),
                notify: Notify::new(),
                metrics: Some(metrics),
            }),
        }
    }

    /// A handle for the next batch; its sequence number is returned alongside so the input can
    /// remember what the batch covered (file offsets...).
    pub fn track(&self) -> (u64, BatchAck) {
        let seq = match self.shared.state.lock() {
            Ok(mut st) => {
                let s = st.next_seq;
                st.next_seq += 1;
                if let Some(m) = &self.shared.metrics {
                    m.ack_pending.fetch_add(1, Ordering::Relaxed);
                }
                s
            }
            Err(_) => 0,
        };
        let inner = Arc::new(AckInner {
            seq,
            // Starts at the best status; each copy raises it to its own when dropped.
            status: AtomicU8::new(BatchStatus::Delivered as u8),
            shared: Some(self.shared.clone()),
            _held: None,
            lost_if_failed: None,
        });
        (
            seq,
            BatchAck {
                inner: Some(inner),
                status: BatchStatus::Failed,
            },
        )
    }

    /// Batches handed out and not yet returned in order by `drain`/`next`.
    pub fn pending(&self) -> u64 {
        match self.shared.state.lock() {
            Ok(st) => st.next_seq - st.next_release,
            Err(_) => 0,
        }
    }

    /// Settled batches that are next in order, without waiting.
    pub fn drain(&self) -> Vec<Acked> {
        let mut out = Vec::new();
        if let Ok(mut st) = self.shared.state.lock() {
            loop {
                let next = st.next_release;
                match st.done.remove(&next) {
                    Some(status) => {
                        out.push(Acked { seq: next, status });
                        st.next_release += 1;
                    }
                    None => break,
                }
            }
        }
        if let Some(m) = &self.shared.metrics {
            m.ack_pending.fetch_sub(out.len() as i64, Ordering::Relaxed);
        }
        out
    }

    /// Waits until at least one batch is settled in order, then returns all that are.
    pub async fn next(&self) -> Vec<Acked> {
        loop {
            let notified = self.shared.notify.notified();
            let out = self.drain();
            if !out.is_empty() {
                return out;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_order_even_when_settled_out_of_order() {
        let t = AckTracker::new();
        let (s0, a0) = t.track();
        let (s1, a1) = t.track();
        let (s2, a2) = t.track();
        assert_eq!((s0, s1, s2), (0, 1, 2));
        a2.delivered();
        a1.delivered();
        assert!(t.drain().is_empty(), "batch 0 is still in flight");
        a0.delivered();
        let got: Vec<u64> = t.drain().iter().map(|a| a.seq).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn worst_status_of_all_copies_wins_and_unsettled_is_failed() {
        let t = AckTracker::new();
        let (_, a) = t.track();
        let b = a.fork();
        let c = a.fork();
        a.delivered();
        b.rejected();
        assert!(t.drain().is_empty(), "one copy still out");
        c.delivered();
        assert_eq!(t.drain()[0].status, BatchStatus::Rejected);

        let (_, d) = t.track();
        drop(d);
        assert_eq!(t.drain()[0].status, BatchStatus::Failed);
    }

    #[test]
    fn a_batch_that_cannot_be_read_again_counts_its_events_lost_once_when_any_copy_fails() {
        use crate::telemetry::metrics::ComponentKind;
        let m = Arc::new(ComponentMetrics::new(
            ComponentKind::Input,
            "stdin".into(),
            "stdin",
        ));
        let failed = || m.events_failed.load(Ordering::Relaxed);

        // Two outputs: one delivers, one fails. The events are lost once, not once per copy.
        let a = BatchAck::lost_if_failed(&m, 7, None);
        let b = a.fork();
        a.delivered();
        assert_eq!(failed(), 0, "one copy still out");
        b.failed();
        assert_eq!((failed(), m.events_lost()), (7, 7));

        // Delivered everywhere, or rejected for good (dead-lettered): nothing lost.
        BatchAck::lost_if_failed(&m, 5, None).delivered();
        let r = BatchAck::lost_if_failed(&m, 5, None);
        r.fork().rejected();
        r.delivered();
        assert_eq!(failed(), 7);

        // A copy dropped unsettled (an output abandoned at the deadline) is a failure.
        drop(BatchAck::lost_if_failed(&m, 3, None));
        assert_eq!((failed(), m.events_lost()), (10, 10));
    }

    #[test]
    fn copies_know_their_batch() {
        let t = AckTracker::new();
        let (_, a) = t.track();
        let (_, b) = t.track();
        assert!(a.same_batch(&a.fork()));
        assert!(!a.same_batch(&b));
        assert!(!a.same_batch(&BatchAck::none()));
        assert!(BatchAck::none().same_batch(&BatchAck::none()));
    }

    #[test]
    fn pending_gauge_follows_the_tracker() {
        use crate::telemetry::metrics::ComponentKind;
        let m = Arc::new(ComponentMetrics::new(
            ComponentKind::Input,
            "f".into(),
            "file",
        ));
        let t = AckTracker::for_input(m.clone());
        let (_, a) = t.track();
        let (_, b) = t.track();
        assert_eq!(m.ack_pending.load(Ordering::Relaxed), 2);
        b.delivered();
        t.drain();
        assert_eq!(
            m.ack_pending.load(Ordering::Relaxed),
            2,
            "batch 1 waits for batch 0"
        );
        a.delivered();
        t.drain();
        assert_eq!(m.ack_pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn next_wakes_on_settlement() {
        let t = AckTracker::new();
        let (_, a) = t.track();
        let t2 = t.clone();
        let h = tokio::spawn(async move { t2.next().await });
        tokio::task::yield_now().await;
        a.delivered();
        let got = h.await.unwrap();
        assert_eq!(
            got,
            vec![Acked {
                seq: 0,
                status: BatchStatus::Delivered
            }]
        );
    }
}
