//! Batches an output failed (gave up on, or could not write): which file streams must be read
//! again, from where, after what back-off, and which later acknowledgements of those streams no
//! longer move the registry because they were read before the stream was rewound.
//!
//! Each stream has an epoch, carried by its events' commits. A failure of the current epoch
//! rewinds the stream to its committed offset under the next epoch; commits of older epochs are
//! then ignored (they were read before the rewind, so moving past them could skip the failed
//! lines), while their events still reach the outputs (duplicates, bounded by what was in flight).
//! Streams are followed by id, not by file: after a copytruncate the stream goes on in the copy
//! (same offsets, same epochs), which is where a failed batch of it is read again.

use super::batcher::Commit;
use super::identity::FileKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First wait before reading a failed stream again; doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two readings of a failed stream.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait while stopping: the shutdown deadline is near, a longer one would outlast it.
const DRAIN_BACKOFF: Duration = Duration::from_secs(1);

/// What the reading thread can do with a failed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// It reads: the stream is read again after its back-off.
    Running,
    /// It stops: the stream is read again (up to where reading stopped) within the shutdown
    /// deadline, after a short back-off.
    Draining,
    /// It is gone: the registry stays before the failed lines, the next start reads them again.
    Gone,
}

/// A request to the reading thread: read `stream` again from `offset`, under `epoch`, not
/// before `not_before`, from the file `key` it was read from or from the copy continuing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewind {
    pub key: FileKey,
    pub stream: u64,
    pub epoch: u32,
    pub offset: u64,
    pub not_before: Instant,
    /// Lines of the failed batch from this stream (counted as lost if it cannot be read again).
    pub lines: u64,
}

/// A stream whose last batch failed, until a batch of its current epoch is delivered.
struct Failing {
    epoch: u32,
    /// Failures in a row (sets the back-off).
    failures: u32,
}

/// The streams being read again, as the acknowledgement task sees them.
pub struct Failures {
    input: Arc<str>,
    /// By stream id.
    streams: HashMap<u64, Failing>,
}

impl Failures {
    pub fn new(input: Arc<str>) -> Failures {
        Failures {
            input,
            streams: HashMap::new(),
        }
    }

    /// The input's name, for logs.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether `c` was read before its stream was rewound: it must not move the registry, and
    /// its failure needs no second rewind.
    pub fn is_stale(&self, c: &Commit) -> bool {
        self.streams
            .get(&c.stream)
            .is_some_and(|f| c.epoch < f.epoch)
    }

    /// A batch holding `c` failed. `resume` is where its stream's delivery stopped (the
    /// registry's offset) and the path it is read from, `None` when no file holds that stream
    /// any more (its lines are then lost: the caller counts them). Returns the rewind to ask
    /// the reader for.
    pub fn failed(
        &mut self,
        c: &Commit,
        resume: Option<(u64, &str)>,
        reader: Reader,
        now: Instant,
    ) -> Option<Rewind> {
        let f = self.streams.entry(c.stream).or_insert(Failing {
            epoch: c.epoch,
            failures: 0,
        });
        f.epoch = c.epoch + 1;
        f.failures += 1;
        if reader == Reader::Gone {
            // No reader left to rewind: the registry stays before the failed lines, so the
            // next start reads them again.
            return None;
        }
        let (offset, path) = resume?;
        let mut delay = backoff(f.failures);
        if reader == Reader::Draining {
            delay = delay.min(DRAIN_BACKOFF);
        }
        if f.failures == 1 {
            tracing::warn!(input = %self.input, path, offset, retry_in = ?delay,
                "an output failed a batch read from this file (the output's log says why): reading the file again from the first undelivered offset after a back-off; later batches of it already sent are sent again (logged once until delivery works again; events counted in trawl_events_failed_total)");
        } else {
            tracing::debug!(input = %self.input, path, offset, failures = f.failures, retry_in = ?delay, "batch failed again");
        }
        Some(Rewind {
            key: c.key,
            stream: c.stream,
            epoch: f.epoch,
            offset,
            not_before: now + delay,
            lines: c.events,
        })
    }

    /// A batch holding `c` (not stale) was delivered: its stream is healthy again.
    pub fn delivered(&mut self, c: &Commit, path: Option<&str>) {
        if let Some(f) = self.streams.remove(&c.stream) {
            tracing::info!(input = %self.input, path = path.unwrap_or("?"), failures = f.failures,
                "file delivered again after failed batches");
        }
    }

    /// The streams whose last batch failed and was not delivered since: at a stop, the registry
    /// holds each before its failed lines.
    pub fn streams(&self) -> impl Iterator<Item = u64> + '_ {
        self.streams.keys().copied()
    }

    /// Forgets streams no file holds any more (a failure whose re-read was impossible).
    pub fn retain(&mut self, mut held: impl FnMut(u64) -> bool) {
        self.streams.retain(|s, _| held(*s));
    }
}

/// The wait before the `failures`-th reading again of a stream: 1 s, 2 s, 4 s ... 30 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(epoch: u32, offset: u64) -> Commit {
        Commit {
            key: FileKey { dev: 1, ino: 2 },
            stream: 7,
            offset,
            epoch,
            events: 1,
        }
    }

    #[test]
    fn a_failure_rewinds_once_and_makes_earlier_reads_stale_until_delivery() {
        let mut f = Failures::new("in".into());
        let now = Instant::now();
        let rw = f
            .failed(&commit(0, 200), Some((100, "/a")), Reader::Running, now)
            .expect("a rewind");
        assert_eq!((rw.offset, rw.epoch), (100, 1));
        assert_eq!(rw.not_before, now + Duration::from_secs(1));
        // A later batch read before the rewind: delivered or failed, it changes nothing.
        assert!(f.is_stale(&commit(0, 300)));
        assert!(!f.is_stale(&commit(1, 200)));
        // The first re-read fails too: the back-off doubles.
        let rw = f
            .failed(&commit(1, 200), Some((100, "/a")), Reader::Running, now)
            .expect("a second rewind");
        assert_eq!((rw.epoch, rw.not_before), (2, now + Duration::from_secs(2)));
        f.delivered(&commit(2, 200), Some("/a"));
        assert!(
            !f.is_stale(&commit(0, 300)),
            "healthy again: nothing left to ignore"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn no_rewind_at_shutdown_or_for_a_replaced_stream() {
        let mut f = Failures::new("in".into());
        let now = Instant::now();
        assert!(f
            .failed(&commit(0, 200), Some((100, "/a")), Reader::Gone, now)
            .is_none());
        assert!(
            f.is_stale(&commit(0, 300)),
            "later commits still must not move past it"
        );
        let mut g = Failures::new("in".into());
        assert!(g
            .failed(&commit(0, 200), None, Reader::Running, now)
            .is_none());
    }

    #[test]
    fn while_stopping_the_back_off_is_short() {
        let mut f = Failures::new("in".into());
        let now = Instant::now();
        for _ in 0..5 {
            f.failed(&commit(0, 200), Some((100, "/a")), Reader::Running, now);
        }
        let rw = f
            .failed(&commit(5, 200), Some((100, "/a")), Reader::Draining, now)
            .expect("read again while draining");
        assert_eq!(rw.not_before, now + DRAIN_BACKOFF);
    }
}
