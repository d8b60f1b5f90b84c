//! Exponential backoff with jitter for retried bulk requests and items: each wait is drawn
//! between half and all of `initial * 2^attempt` (capped at `max`), so that many trawl
//! instances hit by the same overload do not retry in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
            // The address of the local keeps two backoffs created in the same nanosecond apart.
            rng: seed ^ (&seed as *const u64 as u64) | 1,
        }
    }

    /// Attempts made so far (waits handed out).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next wait; grows until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// The wait after `attempt` earlier waits (0 for the first), without counting it: the
    /// back-off of a retried item, which keeps its own count.
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        // xorshift64: a fast, good-enough source of jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        let span = (base - half).as_micros().max(1) as u64;
        half + Duration::from_micros(self.rng % span)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[2] >= Duration::from_millis(200) && d[2] <= Duration::from_millis(400));
        for x in &d[4..] {
            assert!(
                *x >= Duration::from_millis(500) && *x <= Duration::from_secs(1),
                "{x:?}"
            );
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let d = b.delay(3);
        assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        assert_eq!(
            b.attempts(),
            1,
            "an item's delay is not one of the request's attempts"
        );
    }
}
