//! The `throttle` processor: lets at most `limit` events per `window` through for each key (a
//! pod, a service, a log level...) and drops the rest, counted and logged, so that one workload
//! logging in a loop cannot flood the outputs or crowd out its neighbours on the node.
//! A token bucket per key, shared by every worker thread of the chain.

use super::{Processor, Verdict};
use crate::config::{ComponentSpec, DeError, Duration};
use crate::event::Event;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Events let through per `window` for one key; also the burst a quiet key may send at once.
    pub limit: u64,
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Fields whose values together are the key (none: one budget for every event).
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// Most keys tracked at once; keys beyond it share one budget until older ones fall idle.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Whose time the windows are counted in.
    #[serde(default)]
    pub clock: Clock,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// trawl's clock when the event is processed (as Vector, Fluent Bit and Filebeat do).
    #[default]
    Processing,
    /// The event's `@timestamp` (never later than now): a backlog read fast after an outage
    /// is throttled at the rate it was written, not the rate it is read.
    Event,
}

fn default_window() -> Duration {
    Duration::from_secs(1)
}

fn default_max_keys() -> usize {
    10_000
}

/// Separates key fields' values inside a key: a control character no log field should hold.
const KEY_SEP: char = '\u{1f}';

/// How often, at most, dropping is logged after its first line.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One key's budget, in units where one event costs `window_ns` and a nanosecond earns `limit`:
/// integer arithmetic, so `limit` events per `window` holds exactly, with no drift.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    credit: u128,
    /// The latest time seen for the key, in nanoseconds of the processor's clock.
    last: i128,
}

#[derive(Debug)]
struct Budgets {
    buckets: HashMap<String, Bucket>,
    /// The budget shared by keys that found `max_keys` reached.
    overflow: Option<Bucket>,
    overflow_logged: bool,
    next_sweep: Option<i128>,
    /// Dropping since the last log line: events, and the first key that dropped.
    dropped: u64,
    first_key: Option<String>,
    last_log: Option<Instant>,
}

#[derive(Clone)]
pub struct Throttle {
    name: String,
    key_fields: Vec<String>,
    limit: u128,
    window_ns: u128,
    window: std::time::Duration,
    max_keys: usize,
    clock: Clock,
    /// Where the processing clock counts from.
    origin: Instant,
    budgets: Arc<Mutex<Budgets>>,
    /// The key being built, kept to reuse its allocation.
    key: String,
}

impl Throttle {
    pub fn new(config: ThrottleConfig, spec: &ComponentSpec) -> Result<Throttle, DeError> {
        let at = |key: &str| spec.node.get(key).map_or(spec.mark, |n| n.mark);
        let path = |key: &str| format!("{}.{key}", spec.path);
        if config.limit == 0 {
            return Err(DeError::new(
                "expected a number of events of at least 1 (to drop every event, use the `drop` processor)",
                at("limit"),
                &path("limit"),
            ));
        }
        let Some(window) = config.window.positive() else {
            return Err(DeError::new(
                "expected a duration longer than zero (e.g. 1s, 1m)",
                at("window"),
                &path("window"),
            ));
        };
        if config.max_keys == 0 {
            return Err(DeError::new(
                "expected a number of keys of at least 1",
                at("max_keys"),
                &path("max_keys"),
            ));
        }
        if let Some(i) = config.key_fields.iter().position(|f| f.is_empty()) {
            return Err(DeError::new(
                "expected a field name",
                at("key_fields"),
                &format!("{}[{i}]", path("key_fields")),
            ));
        }
        Ok(Throttle {
            name: spec.name.clone(),
            key_fields: config.key_fields,
            limit: u128::from(config.limit),
            window_ns: window.as_nanos().max(1),
            window,
            max_keys: config.max_keys,
            clock: config.clock,
            origin: Instant::now(),
            budgets: Arc::new(Mutex::new(Budgets {
                buckets: HashMap::new(),
                overflow: None,
                overflow_logged: false,
                next_sweep: None,
                dropped: 0,
                first_key: None,
                last_log: None,
            })),
            key: String::new(),
        })
    }

    /// The event's key: its key fields' values as text (an absent field or an object counts as
    /// empty), joined.
    fn build_key(&mut self, event: &Event) {
        self.key.clear();
        for (i, field) in self.key_fields.iter().enumerate() {
            if i > 0 {
                self.key.push(KEY_SEP);
            }
            if let Some(text) = event.get(field).and_then(|v| v.to_text()) {
                self.key.push_str(&text);
            }
        }
    }

    /// The event's time on the processor's clock, in nanoseconds.
    fn now(&self, event: &Event) -> i128 {
        match self.clock {
            Clock::Processing => self.origin.elapsed().as_nanos() as i128,
            Clock::Event => {
                let wall = chrono::Utc::now();
                // A time ahead of the clock (a wrong one in a line) would hold the key's budget
                // back until then: it counts as now.
                let t = event.timestamp().map_or(wall, |t| t.min(wall));
                t.timestamp_nanos_opt().map_or(0, i128::from)
            }
        }
    }

    /// Whether an event of the current key may pass at `now`; takes its share of the budget.
    fn admit(&self, now: i128) -> bool {
        let mut b = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let capacity = self.capacity();
        if b.next_sweep.is_none_or(|t| now >= t) {
            self.sweep(&mut b, now);
        }
        let full = Bucket {
            credit: capacity,
            last: now,
        };
        let pass = if let Some(bucket) = b.buckets.get_mut(self.key.as_str()) {
            self.take(bucket, now)
        } else if b.buckets.len() < self.max_keys {
            let mut bucket = full;
            let pass = self.take(&mut bucket, now);
            b.buckets.insert(self.key.clone(), bucket);
            pass
        } else {
            if !b.overflow_logged {
                b.overflow_logged = true;
                tracing::warn!(processor = %self.name, max_keys = self.max_keys, "throttle: max_keys keys are being tracked; events of further keys share one budget of `limit` per `window` until tracked keys fall idle (logged once)");
            }
            let mut bucket = b.overflow.unwrap_or(full);
            let pass = self.take(&mut bucket, now);
            b.overflow = Some(bucket);
            pass
        };
        if !pass {
            self.note_drop(&mut b);
        }
        pass
    }

    /// A whole budget: `limit` events (saturating: a window of centuries and a huge limit
    /// mean "never throttled", not an overflow).
    fn capacity(&self) -> u128 {
        self.limit.saturating_mul(self.window_ns)
    }

    fn take(&self, bucket: &mut Bucket, now: i128) -> bool {
        let earned = since(bucket.last, now).saturating_mul(self.limit);
        bucket.credit = bucket.credit.saturating_add(earned).min(self.capacity());
        bucket.last = bucket.last.max(now);
        if bucket.credit >= self.window_ns {
            bucket.credit -= self.window_ns;
            true
        } else {
            false
        }
    }

    /// Forgets the keys whose budget is whole again (they behave as new keys): the table holds
    /// only keys seen within about a window. Run at most once a window.
    fn sweep(&self, b: &mut Budgets, now: i128) {
        let capacity = self.capacity();
        let limit = self.limit;
        b.buckets.retain(|_, bucket| {
            bucket
                .credit
                .saturating_add(since(bucket.last, now).saturating_mul(limit))
                < capacity
        });
        if b.buckets.capacity() > 4 * b.buckets.len().max(64) {
            b.buckets.shrink_to_fit();
        }
        b.next_sweep =
            Some(now.saturating_add(i128::try_from(self.window_ns).unwrap_or(i128::MAX)));
    }

    /// Counts a dropped event; the first is logged at once with its key, later ones as a total
    /// at most every 10 s, so a noisy workload cannot make trawl's own log noisy.
    fn note_drop(&self, b: &mut Budgets) {
        let now = Instant::now();
        b.dropped += 1;
        if b.first_key.is_none() {
            b.first_key = Some(self.describe_key());
        }
        if b.last_log
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
        {
            return;
        }
        let key = b.first_key.take().unwrap_or_default();
        if b.last_log.is_none() {
            tracing::warn!(processor = %self.name, key = %key, limit = %self.limit, window = ?self.window, "throttle: a key passed its limit; its events beyond it are dropped, counted in trawl_events_dropped_total (logged again at most every 10 s)");
        } else {
            tracing::warn!(processor = %self.name, dropped = b.dropped, first_key = %key, limit = %self.limit, window = ?self.window, "throttle: events dropped over their key's limit since the last report");
        }
        b.dropped = 0;
        b.last_log = Some(now);
    }

    fn describe_key(&self) -> String {
        if self.key_fields.is_empty() {
            return "(all events)".to_owned();
        }
        self.key_fields
            .iter()
            .zip(self.key.split(KEY_SEP))
            .map(|(f, v)| format!("{f}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Nanoseconds from `then` to `now`; none when `now` is earlier (an event out of order).
fn since(then: i128, now: i128) -> u128 {
    u128::try_from(now.saturating_sub(then)).unwrap_or(0)
}

impl Processor for Throttle {
    fn process(&mut self, event: &mut Event) -> Verdict {
        self.build_key(event);
        if self.admit(self.now(event)) {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }

    /// The copies share the budgets: `limit` holds for the chain, however many threads run it.
    /// Not on the event clock: threads taking turns on batches far apart in time would move a
    /// key's time back and forth, and a budget cannot earn back a span it jumped over.
    fn fork(&self) -> Option<Box<dyn Processor>> {
        (self.clock == Clock::Processing).then(|| Box::new(self.clone()) as Box<dyn Processor>)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_refused, build, event};
    use super::*;

    fn throttle(config: &str) -> Throttle {
        let node = crate::config::node::parse(config).expect("yaml");
        let spec = ComponentSpec {
            file: "p.yaml".into(),
            name: "t".into(),
            type_name: "throttle".into(),
            node: node.clone(),
            path: "processors[0]".into(),
            mark: crate::config::Mark { line: 1, col: 1 },
            type_mark: crate::config::Mark { line: 1, col: 1 },
        };
        Throttle::new(crate::config::from_node(&node, "p").expect("config"), &spec).expect("valid")
    }

    const MS: i128 = 1_000_000;
    const S: i128 = 1_000 * MS;

    /// Events of `key` offered at `at` (nanoseconds), how many passed.
    fn offer(t: &mut Throttle, key: &str, at: i128, n: usize) -> usize {
        t.key = key.to_owned();
        (0..n).filter(|_| t.admit(at)).count()
    }

    #[test]
    fn a_burst_passes_up_to_the_limit_and_the_budget_comes_back_at_the_limits_rate() {
        let mut t = throttle("{limit: 4, window: 2s}");
        let t0: i128 = 0;
        assert_eq!(offer(&mut t, "", t0, 10), 4);
        // Half a window earns half the limit back, not more.
        assert_eq!(offer(&mut t, "", t0 + S, 10), 2);
        assert_eq!(offer(&mut t, "", t0 + 1499 * MS, 10), 0);
        assert_eq!(offer(&mut t, "", t0 + 1500 * MS, 10), 1);
        // A long quiet spell refills to the limit, never beyond: the burst stays bounded.
        assert_eq!(offer(&mut t, "", t0 + 3600 * S, 100), 4);
    }

    #[test]
    fn a_steady_stream_over_the_limit_gets_exactly_the_limit_per_window() {
        let mut t = throttle("{limit: 100, window: 1s}");
        let t0: i128 = 0;
        // 1,000 events a second for 60 s, evenly spaced.
        let passed: usize = (0..60_000u64)
            .map(|i| offer(&mut t, "", t0 + i128::from(i) * MS, 1))
            .sum();
        // The first second's burst (100) plus 100 a second after it.
        assert!(
            (100 * 60..=100 * 61).contains(&passed),
            "{passed} passed in 60 s at a limit of 100/s"
        );
        // Under the limit, nothing is dropped.
        let mut t = throttle("{limit: 100, window: 1s}");
        let passed: usize = (0..6_000u64)
            .map(|i| offer(&mut t, "", t0 + i128::from(i) * 10 * MS, 1))
            .sum();
        assert_eq!(passed, 6_000);
    }

    #[test]
    fn each_key_has_its_own_budget_and_one_noisy_key_does_not_starve_the_others() {
        let mut t = throttle("{limit: 3, window: 1m, key_fields: [kubernetes.pod.name]}");
        let t0: i128 = 0;
        assert_eq!(offer(&mut t, "noisy", t0, 1000), 3);
        assert_eq!(offer(&mut t, "quiet", t0, 2), 2);
        assert_eq!(offer(&mut t, "quiet", t0, 2), 1);
        // The key is read from the event: fields absent are empty, several fields are joined.
        let mut t = throttle("{limit: 1, window: 1m, key_fields: [app, level]}");
        let mut e = event("x");
        e.insert("app", "web");
        e.insert("level", "INFO");
        assert_eq!(t.process(&mut e), Verdict::Keep);
        assert_eq!(t.process(&mut e), Verdict::Drop);
        e.insert("level", "ERROR");
        assert_eq!(t.process(&mut e), Verdict::Keep);
        let mut other = event("y");
        assert_eq!(t.process(&mut other), Verdict::Keep);
        assert_eq!(t.process(&mut other), Verdict::Drop);
        // `web` + `INFO` is not `webI` + `NFO`.
        let mut e2 = event("z");
        e2.insert("app", "webI");
        e2.insert("level", "NFO");
        assert_eq!(t.process(&mut e2), Verdict::Keep);
    }

    #[test]
    fn keys_beyond_max_keys_share_one_budget_and_idle_keys_are_forgotten() {
        let mut t = throttle("{limit: 2, window: 1s, max_keys: 3}");
        t.key_fields = vec!["k".into()];
        let t0: i128 = 0;
        for k in ["a", "b", "c"] {
            assert_eq!(offer(&mut t, k, t0, 5), 2, "{k}");
        }
        // d and e find the table full of keys still in debt: they share the overflow budget.
        assert_eq!(offer(&mut t, "d", t0, 5), 2);
        assert_eq!(offer(&mut t, "e", t0, 5), 0);
        assert!(t.budgets.lock().unwrap().buckets.len() <= 3);
        // A window later a, b and c are whole again and forgotten: e gets a budget of its own.
        let t1 = t0 + S;
        assert_eq!(offer(&mut t, "e", t1, 5), 2);
        assert_eq!(offer(&mut t, "a", t1, 5), 2);
        let b = t.budgets.lock().unwrap();
        assert!(b.buckets.len() <= 3, "{:?}", b.buckets.keys());
    }

    #[test]
    fn on_the_event_clock_a_backlog_is_throttled_at_the_rate_it_was_written() {
        use chrono::{Duration as Span, Utc};
        let at = |t| Event::from_message("app".into(), t, "x".into());
        // A minute an app logged at 100 lines/s, read in one go after an outage.
        let start = Utc::now() - Span::minutes(10);
        let backlog: Vec<Event> = (0..6000)
            .map(|i| at(start + Span::milliseconds(i * 10)))
            .collect();
        let passed = |config: &str| {
            let mut t = build(config).unwrap();
            backlog
                .iter()
                .filter(|e| t.process(&mut (*e).clone()) == Verdict::Keep)
                .count()
        };
        assert_eq!(passed("{type: throttle, limit: 100, clock: event}"), 6000);
        // On the processing clock the same minute comes in at once: one burst's worth passes.
        // (A descheduled test thread may earn it a few more.)
        let n = passed("{type: throttle, limit: 100}");
        assert!((100..=200).contains(&n), "{n}");
        // Written at 1,000 lines/s, it is held to 100 a second of its own time.
        let fast: Vec<Event> = (0..6000)
            .map(|i| at(start + Span::milliseconds(i)))
            .collect();
        let mut t = build("{type: throttle, limit: 100, clock: event}").unwrap();
        let n = fast
            .iter()
            .filter(|e| t.process(&mut (*e).clone()) == Verdict::Keep)
            .count();
        assert!((600..=700).contains(&n), "{n}");
        // A time ahead of the clock counts as now, so it does not hold the key back until
        // then; one behind the latest earns nothing and does not rewind.
        let mut t = build("{type: throttle, limit: 2, window: 1s, clock: event}").unwrap();
        let now = Utc::now();
        assert_eq!(
            t.process(&mut at(now + Span::days(365 * 80))),
            Verdict::Keep
        );
        assert_eq!(t.process(&mut at(now + Span::seconds(2))), Verdict::Keep);
        assert_eq!(t.process(&mut at(now - Span::hours(1))), Verdict::Drop);
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(t.process(&mut at(Utc::now())), Verdict::Keep);
    }

    #[test]
    fn extreme_limits_windows_and_times_neither_overflow_nor_panic() {
        use chrono::{TimeZone, Utc};
        for config in [
            "{type: throttle, limit: 18446744073709551615, window: 876000h}",
            "{type: throttle, limit: 18446744073709551615, window: 876000h, clock: event}",
            "{type: throttle, limit: 1, window: 1ms, clock: event}",
        ] {
            let mut t = build(config).unwrap();
            for ts in [
                Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap(),
                Utc::now(),
                Utc.with_ymd_and_hms(1600, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).unwrap(),
            ] {
                t.process(&mut Event::from_message("app".into(), ts, "x".into()));
            }
            // A millisecond window earns one event back per millisecond.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let kept = (0..1000)
                .filter(|_| t.process(&mut event("x")) == Verdict::Keep)
                .count();
            assert!(kept >= 1, "{config}: {kept}");
        }
    }

    #[test]
    fn the_copies_of_worker_threads_share_the_budget() {
        let mut t = throttle("{limit: 5, window: 1h}");
        let mut copies: Vec<Box<dyn Processor>> = (0..3).map(|_| t.fork().unwrap()).collect();
        let mut passed = 0;
        for i in 0..30 {
            let p: &mut dyn Processor = match i % 4 {
                3 => &mut t,
                n => copies[n].as_mut(),
            };
            passed += usize::from(p.process(&mut event("x")) == Verdict::Keep);
        }
        assert_eq!(passed, 5);
    }

    #[test]
    fn a_limit_or_window_of_zero_and_unknown_keys_are_refused() {
        for (config, at, says) in [
            (
                "{type: throttle, limit: 0}",
                "processors[0].limit",
                "at least 1",
            ),
            (
                "{type: throttle, limit: 5, window: 0s}",
                "processors[0].window",
                "longer than zero",
            ),
            (
                "{type: throttle, limit: 5, max_keys: 0}",
                "processors[0].max_keys",
                "at least 1",
            ),
            (
                "{type: throttle, limit: 5, key_fields: ['']}",
                "processors[0].key_fields[0]",
                "field name",
            ),
        ] {
            assert_refused(config, at, says);
        }
        for config in ["{type: throttle, limit: 5, per: pod}", "{type: throttle}"] {
            assert!(build(config).is_err(), "{config}");
        }
    }
}
