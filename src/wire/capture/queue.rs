//! The bounded queue between the capture threads and the analyzer. A capture thread that finds
//! it full waits for room up to a deadline (the kernel's ring holding what arrives meanwhile),
//! woken as soon as the analyzer takes a block: std's `SyncSender` has no timed send.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct BlockQueue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Signalled when an item is queued (the analyzer waits on it).
    queued: Condvar,
    /// Signalled when an item is taken or the queue closes (full senders wait on it).
    taken: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// The analyzer is gone: nothing sent would be taken.
    closed: bool,
}

/// Why an item was not queued; the item comes back.
#[derive(Debug)]
pub enum SendError<T> {
    Full(T),
    Closed(T),
}

impl<T> BlockQueue<T> {
    pub fn new(capacity: usize) -> BlockQueue<T> {
        BlockQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            capacity: capacity.max(1),
            queued: Condvar::new(),
            taken: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A thread that panicked while holding the lock left the deque whole (no user code runs
        // under it), so the state is still good.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        let mut s = self.lock();
        if s.closed {
            return Err(SendError::Closed(item));
        }
        if s.items.len() >= self.capacity {
            return Err(SendError::Full(item));
        }
        s.items.push_back(item);
        drop(s);
        self.queued.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting up to `timeout` for room.
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendError<T>> {
        let until = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(SendError::Closed(item));
            }
            if s.items.len() < self.capacity {
                s.items.push_back(item);
                drop(s);
                self.queued.notify_one();
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendError::Full(item));
            }
            s = match self.taken.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The oldest item, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let until = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                drop(s);
                self.taken.notify_one();
                return Some(item);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = match self.queued.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub fn try_recv(&self) -> Option<T> {
        let item = self.lock().items.pop_front();
        if item.is_some() {
            self.taken.notify_one();
        }
        item
    }

    /// No more items will be taken: senders get theirs back at once, waiting ones too.
    pub fn close(&self) {
        self.lock().closed = true;
        self.taken.notify_all();
    }
}

/// Closes the queue when dropped: the analyzer's end, a panic's too, sends its capture threads
/// home instead of leaving them to wait for room that never comes.
pub struct CloseOnDrop<'a, T>(pub &'a BlockQueue<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_queue_refuses_at_once_and_keeps_the_order() {
        let q = BlockQueue::new(2);
        assert!(q.try_send(1).is_ok());
        assert!(q.send_timeout(2, Duration::ZERO).is_ok());
        assert!(matches!(q.try_send(3), Err(SendError::Full(3))));
        let t = Instant::now();
        assert!(matches!(
            q.send_timeout(3, Duration::from_millis(50)),
            Err(SendError::Full(3))
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(q.try_recv(), Some(1));
        assert_eq!(q.recv_timeout(Duration::ZERO), Some(2));
        assert_eq!(q.recv_timeout(Duration::from_millis(10)), None);
    }

    #[test]
    fn a_waiting_sender_gets_the_room_as_soon_as_it_is_made() {
        let q = Arc::new(BlockQueue::new(1));
        q.try_send(1).unwrap();
        let sender = {
            let q = q.clone();
            std::thread::spawn(move || q.send_timeout(2, Duration::from_secs(30)).is_ok())
        };
        // The receiver takes one item only once the sender is waiting on a full queue.
        std::thread::sleep(Duration::from_millis(50));
        let taken = Instant::now();
        assert_eq!(q.recv_timeout(Duration::from_secs(1)), Some(1));
        assert!(sender.join().unwrap());
        // Woken by the take, not by its 30 s deadline.
        assert!(taken.elapsed() < Duration::from_secs(10));
        assert_eq!(q.recv_timeout(Duration::from_secs(1)), Some(2));
    }

    #[test]
    fn a_receiver_is_woken_by_a_send() {
        let q = Arc::new(BlockQueue::new(4));
        let receiver = {
            let q = q.clone();
            std::thread::spawn(move || q.recv_timeout(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        q.try_send(7).unwrap();
        assert_eq!(receiver.join().unwrap(), Some(7));
    }

    #[test]
    fn closing_hands_a_waiting_sender_its_item_back() {
        let q = Arc::new(BlockQueue::new(1));
        q.try_send(1).unwrap();
        let sender = {
            let q = q.clone();
            std::thread::spawn(move || q.send_timeout(2, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert!(matches!(sender.join().unwrap(), Err(SendError::Closed(2))));
        assert!(matches!(q.try_send(3), Err(SendError::Closed(3))));
    }
}
