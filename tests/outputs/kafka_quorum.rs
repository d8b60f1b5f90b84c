//! A three-broker Kafka cluster (`tests/support/kafka/cluster.rs`) under a steady file input,
//! beyond one broker away: two of three brokers down at once (the partitions lose their
//! quorum), and what trawl logs at ERROR during a routine restart and when every broker is gone.

use crate::support;

use std::time::{Duration, Instant};
use support::kafka::steady::{copies, lost_counts, written_lines, SteadyRun, WAIT};
use support::process::{health_turns_503, http_get, wait_until, Trawl};

/// Every test's topic: replication 3, and a write needs two replicas in sync.
const SETTINGS: &[(&str, &str)] = &[("min.insync.replicas", "2")];

/// trawl's log lines at ERROR level (the level is the second word: a debug line may quote
/// a broker's error name).
fn errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("ERROR"))
        .map(str::to_owned)
        .collect()
}

/// An SRE pages on trawl's ERROR lines. A broker restarted in a healthy cluster (SIGTERMed or
/// SIGKILLed, and started again, while the others serve) is routine: trawl logs the lost
/// connections as warnings, no ERROR. Every broker gone stops delivery: that still logs an
/// ERROR (`no Kafka broker reachable`).
#[test]
fn a_broker_restart_logs_no_error_and_every_broker_down_does() {
    const TOPIC: &str = "levels";
    let mut run = SteadyRun::start(TOPIC, SETTINGS, "levels", "");
    run.wait_first_lines();

    // A controlled shutdown moves the leaders away first; a killed broker keeps them (and
    // trawl's reconnections, refused) until Kafka fences it.
    run.cluster.brokers[0].stop();
    std::thread::sleep(Duration::from_secs(3));
    run.cluster.start_again(0, TOPIC);
    run.cluster.brokers[1].kill();
    std::thread::sleep(Duration::from_secs(6));
    run.cluster.start_again(1, TOPIC);
    let at = run.written();
    wait_until(WAIT, "the lines of the restarts delivered", || {
        run.delivered() >= at
    });
    let routine = run.read_log();
    let warnings = routine.lines().filter(|l| l.contains("WARN")).count();
    eprintln!("broker restarts: trawl logged {warnings} warnings");
    assert!(
        errors(&routine).is_empty(),
        "ERROR lines during a broker restart: {:?}",
        errors(&routine)
    );

    for b in &mut run.cluster.brokers {
        b.kill();
    }
    wait_until(
        Duration::from_secs(60),
        "an ERROR line once every broker is down",
        || !errors(&run.read_log()).is_empty(),
    );
    eprintln!("every broker down: {:?}", errors(&run.read_log()));
    run.stop_writer();
    run.trawl.kill9();
}

/// Two of three brokers SIGTERMed at once for about 20 s while an app keeps logging: the
/// topic (replication 3, `min.insync.replicas=2`) cannot take `acks: all` writes, and with the
/// KRaft quorum gone no leader moves either. Nothing is dead-lettered or dropped, `/health`
/// turns 503 once the outage passes `output_failure_threshold` (10 s here) and 200 again after
/// the brokers return, and every line reaches the topic exactly once.
#[test]
fn two_brokers_down_at_once_lose_and_duplicate_nothing() {
    const TOPIC: &str = "quorum";
    let health = ", health: { output_failure_threshold: 10s }";
    let mut run = SteadyRun::start(TOPIC, SETTINGS, "quorum", health);
    run.wait_first_lines();
    let addr = run.addr.clone();
    let status = || http_get(&addr, "/health").map(|(s, _)| s);
    assert_eq!(status(), Some(200), "healthy before the outage");

    let down = Instant::now();
    run.cluster.brokers[1].signal(libc::SIGTERM);
    run.cluster.brokers[2].signal(libc::SIGTERM);
    run.cluster.brokers[1].stop();
    run.cluster.brokers[2].stop();
    eprintln!(
        "brokers 2 and 3 SIGTERMed: both exited after {:.1} s; (leader, ISR) now {:?}",
        down.elapsed().as_secs_f64(),
        run.cluster.partitions(TOPIC)
    );
    let turned = health_turns_503(&addr, down, Duration::from_secs(45));
    let delivered_while_down = run.delivered();
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    let back = Instant::now();
    run.cluster.brokers[1].start_again();
    run.cluster.start_again(2, TOPIC);
    eprintln!(
        "brokers 2 and 3 back in sync {:.1} s after their start, {:.1} s after the SIGTERM",
        back.elapsed().as_secs_f64(),
        down.elapsed().as_secs_f64()
    );
    wait_until(WAIT, "/health 200 after the brokers' return", || {
        status() == Some(200)
    });
    let healthy_after = back.elapsed();

    std::thread::sleep(Duration::from_secs(2));
    let total = run.stop_writer();
    wait_until(WAIT, "every line written delivered", || {
        run.delivered() >= total
    });
    let peak_rss = run.trawl.peak_rss_kib().unwrap_or(0);
    let lost = lost_counts(&addr);
    let exit = run.trawl.stop(WAIT);
    eprintln!(
        "{total} lines in {:.1} s; /health 503 after {:?}; {delivered_while_down} delivered by \
         then; 200 again {:.1} s after the restarts began; trawl peak RSS {} MiB",
        run.t0.elapsed().as_secs_f64(),
        turned.as_ref().map(|(t, _)| t.as_secs_f64()),
        healthy_after.as_secs_f64(),
        peak_rss / 1024
    );
    assert!(
        turned.is_some(),
        "/health stayed 200 through a 20 s outage; log: {}",
        run.read_log()
    );
    assert!(
        lost.is_empty(),
        "events dead-lettered or dropped: {lost:?}; log: {}",
        run.read_log()
    );
    assert!(
        exit.success(),
        "trawl's stop: {exit}; log: {}",
        run.read_log()
    );
    run.assert_delivered_once(TOPIC, "quorum", total);
}

/// Maintenance: one broker SIGTERMed, and while it is down trawl itself is SIGTERMed and
/// started again (same `data_dir`, so the same registry), then the broker returns. A clean
/// stop delivers what it read before it exits (the other brokers serve), and the new trawl
/// starts from the registry: every line reaches the topic exactly once.
#[test]
fn trawl_restarted_while_a_broker_is_down_loses_and_duplicates_nothing() {
    const TOPIC: &str = "maintenance";
    let mut run = SteadyRun::start(TOPIC, SETTINGS, "maint", "");
    run.wait_first_lines();

    run.cluster.brokers[0].stop();
    std::thread::sleep(Duration::from_secs(2));
    let lost_first = lost_counts(&run.addr);
    let first = run.delivered();
    let stopping = Instant::now();
    let first_exit = run.trawl.stop(WAIT);
    eprintln!(
        "the first trawl stopped in {:.1} s ({first_exit})",
        stopping.elapsed().as_secs_f64()
    );
    run.trawl = Trawl::start(&run.cfg, Some(&run.log));
    wait_until(WAIT, "the second trawl delivering", || run.delivered() > 0);
    std::thread::sleep(Duration::from_secs(3));
    run.cluster.start_again(0, TOPIC);

    std::thread::sleep(Duration::from_secs(2));
    let total = run.stop_writer();
    let want = written_lines("maint", total);
    let mut got = copies(&run.cluster.brokers[0].read_all(TOPIC));
    let deadline = Instant::now() + WAIT;
    while want.iter().any(|l| !got.contains_key(l)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        got = copies(&run.cluster.brokers[0].read_all(TOPIC));
    }
    let lost = lost_counts(&run.addr);
    let exit = run.trawl.stop(WAIT);
    eprintln!("{total} lines; {first}+ delivered by the first trawl; second trawl's exit {exit}");
    assert!(
        first_exit.success(),
        "the first trawl's stop: {first_exit}; log: {}",
        run.read_log()
    );
    assert!(
        lost_first.is_empty() && lost.is_empty(),
        "events dead-lettered or dropped: {lost_first:?} {lost:?}; log: {}",
        run.read_log()
    );
    assert!(
        exit.success(),
        "trawl's stop: {exit}; log: {}",
        run.read_log()
    );
    run.assert_delivered_once(TOPIC, "maint", total);
}
