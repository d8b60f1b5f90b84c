//! A cap on the memory an input's events hold until every output has settled them, for inputs
//! that cannot pause (a live capture): a batch takes its estimated bytes before it is sent and
//! gives them back when the last copy of its acknowledgement is dropped.

use super::{Event, Value};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes held by an input's batches in flight, at most `limit` (a batch larger than the whole
/// budget still goes when nothing else is held, so that it is never refused for good).
pub struct InFlightBudget {
    held: Mutex<usize>,
    room: Condvar,
    limit: usize,
}

impl InFlightBudget {
    pub fn new(limit: usize) -> Arc<InFlightBudget> {
        Arc::new(InFlightBudget {
            held: Mutex::new(0),
            room: Condvar::new(),
            limit: limit.max(1),
        })
    }

    /// Takes `bytes` once what is held leaves room for them, waiting at most `wait`; `None`
    /// when there was no room by then.
    pub fn take(self: &Arc<Self>, bytes: usize, wait: Duration) -> Option<Held> {
        let deadline = Instant::now() + wait;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *held == 0 || held.saturating_add(bytes) <= self.limit {
                *held += bytes;
                return Some(Held {
                    budget: self.clone(),
                    bytes,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            held = match self.room.wait_timeout(held, left) {
                Ok((h, _)) => h,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A batch's share of an `InFlightBudget`, given back when dropped.
pub struct Held {
    budget: Arc<InFlightBudget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = held.saturating_sub(self.bytes);
        drop(held);
        self.budget.room.notify_all();
    }
}

/// What a batch's events take in memory, roughly: each value's own size, plus the text of its
/// strings and keys (allocator rounding and spare capacity come on top).
pub fn approx_bytes(events: &[Event]) -> usize {
    fn value(v: &Value) -> usize {
        std::mem::size_of::<Value>()
            + match v {
                Value::String(s) => s.len(),
                Value::Array(items) => items.iter().map(value).sum(),
                Value::Object(m) => m.iter().map(|(k, v)| k.len() + value(v)).sum(),
                _ => 0,
            }
    }
    events
        .iter()
        .map(|e| {
            std::mem::size_of::<Event>()
                + e.fields
                    .iter()
                    .map(|(k, v)| k.len() + value(v))
                    .sum::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_room_and_gets_it_when_another_is_settled() {
        let budget = InFlightBudget::new(100);
        let first = budget.take(60, Duration::ZERO).expect("room at first");
        assert!(budget.take(60, Duration::ZERO).is_none(), "over the cap");
        let waiting = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(60, Duration::from_secs(10)).map(|h| h.bytes))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert_eq!(waiting.join().unwrap(), Some(60));
        assert_eq!(
            budget.held(),
            0,
            "the waiter's share was dropped with its result"
        );
    }

    #[test]
    fn a_batch_larger_than_the_budget_goes_alone() {
        let budget = InFlightBudget::new(10);
        let big = budget.take(50, Duration::ZERO).expect("nothing else held");
        assert_eq!(budget.held(), 50);
        assert!(budget.take(1, Duration::from_millis(20)).is_none());
        drop(big);
        assert!(budget.take(1, Duration::ZERO).is_some());
    }
}
