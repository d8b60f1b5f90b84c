//! A rolling restart of a real three-broker Kafka cluster (`tests/support/kafka/cluster.rs`)
//! under a steady file input: each broker SIGTERMed and started again in turn, then one
//! SIGKILLed; every line written reaches the topic once, nothing is dead-lettered or dropped.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::kafka::steady::{lost_counts, SteadyRun, WAIT};
use support::process::{metric, wait_until};

const TOPIC: &str = "rolling";

/// Samples trawl's delivered count every 100 ms: (time since `t0`, events delivered).
fn start_sampler(
    addr: String,
    t0: Instant,
    samples: Arc<Mutex<Vec<(Duration, f64)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(v) = metric(&addr, "trawl_events_out_total", "k") {
                samples.lock().unwrap().push((t0.elapsed(), v));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// The longest time without a new delivery that overlaps `from..to`: between two samples
/// whose delivered counts rose.
fn longest_stall(samples: &[(Duration, f64)], from: Duration, to: Duration) -> Duration {
    let mut rises = Vec::new();
    for w in samples.windows(2) {
        if w[1].1 > w[0].1 {
            rises.push(w[1].0);
        }
    }
    rises
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(to.saturating_sub(from))
}

/// The platform team's day: a rolling restart of the three brokers (SIGTERM, down, started,
/// back in the ISR), then one broker SIGKILLed and started again, while an app keeps logging.
/// trawl (defaults: `acks: all`, idempotent) follows the partitions' leaders from broker to
/// broker; every line reaches the topic (3 partitions, replication 3, min.insync.replicas 2)
/// exactly once, and nothing is dead-lettered or dropped.
#[test]
fn a_rolling_restart_and_a_killed_broker_lose_and_duplicate_nothing() {
    let settings = [("min.insync.replicas", "2")];
    let mut run = SteadyRun::start(TOPIC, &settings, "rolling", "");
    let (t0, samples) = (run.t0, Arc::new(Mutex::new(Vec::new())));
    let sampler = start_sampler(run.addr.clone(), t0, samples.clone(), run.stop_flag());
    run.wait_first_lines();

    // (what, from, to) since t0: each broker's restart, from its signal until it is back in
    // the ISRs and the leaders have had a chance to move back to it.
    let mut phases: Vec<(String, Duration, Duration)> = Vec::new();
    // Partitions whose leader changed while a broker was down: without any, trawl never had to
    // follow a leader to another broker and the test would prove nothing.
    let mut moves = 0;
    for i in 0..run.cluster.brokers.len() {
        let leaders = run.cluster.partitions(TOPIC);
        let from = t0.elapsed();
        run.cluster.brokers[i].stop();
        let down = t0.elapsed() - from;
        let moved = run.cluster.partitions(TOPIC);
        if let (Some(a), Some(b)) = (&leaders, &moved) {
            moves += a.iter().zip(b).filter(|(x, y)| x.0 != y.0).count();
        }
        run.cluster.start_again(i, TOPIC);
        std::thread::sleep(Duration::from_secs(6));
        eprintln!(
            "broker {} SIGTERM: down in {:.1} s, back in sync after {:.1} s; (leader, ISR) \
             before {leaders:?}, while down {moved:?}, after {:?}",
            i + 1,
            down.as_secs_f64(),
            (t0.elapsed() - from).as_secs_f64() - 6.0,
            run.cluster.partitions(TOPIC)
        );
        phases.push((format!("SIGTERM broker {}", i + 1), from, t0.elapsed()));
    }
    let from = t0.elapsed();
    run.cluster.brokers[1].kill();
    std::thread::sleep(Duration::from_secs(2));
    let moved = run.cluster.partitions(TOPIC);
    run.cluster.start_again(1, TOPIC);
    std::thread::sleep(Duration::from_secs(6));
    eprintln!(
        "broker 2 SIGKILL: back in sync after {:.1} s; (leader, ISR) 2 s after the kill \
         {moved:?}, after {:?}",
        (t0.elapsed() - from).as_secs_f64() - 6.0,
        run.cluster.partitions(TOPIC)
    );
    phases.push(("SIGKILL broker 2".into(), from, t0.elapsed()));

    // The app logs on past the last broker's return, then stops; trawl catches up.
    std::thread::sleep(Duration::from_secs(2));
    let total = run.stop_writer();
    wait_until(WAIT, "every line written delivered", || {
        run.delivered() >= total
    });
    let peak_rss = run.trawl.peak_rss_kib().unwrap_or(0);
    sampler.join().unwrap();
    let lost = lost_counts(&run.addr);
    let status = run.trawl.stop(WAIT);

    let samples = samples.lock().unwrap();
    eprintln!(
        "{total} lines in {:.1} s; trawl peak RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        peak_rss / 1024
    );
    for (what, from, to) in &phases {
        eprintln!(
            "{what}: longest stall in delivery {:.1} s (within {:.1} s..{:.1} s)",
            longest_stall(&samples, *from, *to).as_secs_f64(),
            from.as_secs_f64(),
            to.as_secs_f64()
        );
    }
    let complaints: Vec<String> = run
        .read_log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "trawl logged {} warnings and errors; the first: {:?}",
        complaints.len(),
        &complaints[..complaints.len().min(5)]
    );
    assert!(moves > 0, "no partition changed leader during the restarts");
    assert!(
        lost.is_empty(),
        "events dead-lettered or dropped: {lost:?}; trawl's log: {}",
        run.read_log()
    );
    assert!(
        status.success(),
        "trawl's stop: {status}; log: {}",
        run.read_log()
    );

    run.assert_delivered_once(TOPIC, "rolling", total);
}
