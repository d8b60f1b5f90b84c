//! A three-broker Kafka cluster (`tests/support/kafka/cluster.rs`) under a steady file input,
//! beyond one broker away: two of three brokers down at once (the partitions lose their
//! quorum), and what trawl logs at ERROR during a routine restart and when every broker is gone.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::kafka::steady::{copies, lost_counts, pipeline, start_writer, written_lines};
use support::kafka::Cluster;
use support::process::{
    assert_each_once, free_port, health_turns_503, http_get, metric, wait_until, Trawl,
};

const WAIT: Duration = Duration::from_secs(120);

fn start_cluster(topic: &str) -> Option<Cluster> {
    match Cluster::start() {
        Ok(c) => {
            c.create_topic(topic, 3, &[("min.insync.replicas", "2")]);
            Some(c)
        }
        Err(why) => {
            eprintln!("SKIPPED: a three-broker Kafka cluster did not start here: {why}");
            None
        }
    }
}

/// trawl's log lines at ERROR level.
fn errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("ERROR"))
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
    let Some(mut cluster) = start_cluster(TOPIC) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(d, &addr, &cluster.bootstrap, TOPIC, "");
    let log = d.join("trawl.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(d.join("app.log"), "levels", written.clone(), stop.clone());
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    wait_until(WAIT, "the first lines delivered", || delivered() >= 200);

    // A controlled shutdown moves the leaders away first; a killed broker keeps them (and
    // trawl's reconnections, refused) until Kafka fences it.
    cluster.brokers[0].stop();
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_again(0, TOPIC);
    cluster.brokers[1].kill();
    std::thread::sleep(Duration::from_secs(6));
    cluster.start_again(1, TOPIC);
    let at = written.load(Ordering::Relaxed);
    wait_until(WAIT, "the lines of the restarts delivered", || {
        delivered() >= at
    });
    let routine = read_log();
    let warnings = routine.lines().filter(|l| l.contains("WARN")).count();
    eprintln!("broker restarts: trawl logged {warnings} warnings");
    assert!(
        errors(&routine).is_empty(),
        "ERROR lines during a broker restart: {:?}",
        errors(&routine)
    );

    for b in &mut cluster.brokers {
        b.kill();
    }
    wait_until(
        Duration::from_secs(60),
        "an ERROR line once every broker is down",
        || !errors(&read_log()).is_empty(),
    );
    eprintln!("every broker down: {:?}", errors(&read_log()));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    trawl.kill9();
}

/// Two of three brokers SIGTERMed at once for about 20 s while an app keeps logging: the
/// topic (replication 3, `min.insync.replicas=2`) cannot take `acks: all` writes, and with the
/// KRaft quorum gone no leader moves either. Nothing is dead-lettered or dropped, `/health`
/// turns 503 once the outage passes `output_failure_threshold` (10 s here) and 200 again after
/// the brokers return, and every line reaches the topic exactly once.
#[test]
fn two_brokers_down_at_once_lose_and_duplicate_nothing() {
    const TOPIC: &str = "quorum";
    let Some(mut cluster) = start_cluster(TOPIC) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let health = ", health: { output_failure_threshold: 10s }";
    let cfg = pipeline(d, &addr, &cluster.bootstrap, TOPIC, health);
    let log = d.join("trawl.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writer = start_writer(d.join("app.log"), "quorum", written.clone(), stop.clone());
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    wait_until(WAIT, "the first lines delivered", || delivered() >= 200);
    let status = || http_get(&addr, "/health").map(|(s, _)| s);
    assert_eq!(status(), Some(200), "healthy before the outage");

    let down = Instant::now();
    cluster.brokers[1].signal(libc::SIGTERM);
    cluster.brokers[2].signal(libc::SIGTERM);
    cluster.brokers[1].stop();
    cluster.brokers[2].stop();
    eprintln!(
        "brokers 2 and 3 SIGTERMed: both exited after {:.1} s; (leader, ISR) now {:?}",
        down.elapsed().as_secs_f64(),
        cluster.partitions(TOPIC)
    );
    let turned = health_turns_503(&addr, down, Duration::from_secs(45));
    let delivered_while_down = delivered();
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    let back = Instant::now();
    cluster.brokers[1].start_again();
    cluster.start_again(2, TOPIC);
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
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    wait_until(WAIT, "every line written delivered", || {
        delivered() >= total
    });
    let peak_rss = trawl.peak_rss_kib().unwrap_or(0);
    let lost = lost_counts(&addr);
    let exit = trawl.stop(WAIT);
    eprintln!(
        "{total} lines in {:.1} s; /health 503 after {:?}; {delivered_while_down} delivered by \
         then; 200 again {:.1} s after the restarts began; trawl peak RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        turned.as_ref().map(|(t, _)| t.as_secs_f64()),
        healthy_after.as_secs_f64(),
        peak_rss / 1024
    );
    assert!(
        turned.is_some(),
        "/health stayed 200 through a 20 s outage; log: {}",
        read_log()
    );
    assert!(
        lost.is_empty(),
        "events dead-lettered or dropped: {lost:?}; log: {}",
        read_log()
    );
    assert!(exit.success(), "trawl's stop: {exit}; log: {}", read_log());
    let want = written_lines("quorum", total);
    assert_each_once(&copies(&cluster.brokers[0].read_all(TOPIC)), &want);
}

/// Maintenance: one broker SIGTERMed, and while it is down trawl itself is SIGTERMed and
/// started again (same `data_dir`, so the same registry), then the broker returns. A clean
/// stop delivers what it read before it exits (the other brokers serve), and the new trawl
/// starts from the registry: every line reaches the topic exactly once.
#[test]
fn trawl_restarted_while_a_broker_is_down_loses_and_duplicates_nothing() {
    const TOPIC: &str = "maintenance";
    let Some(mut cluster) = start_cluster(TOPIC) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(d, &addr, &cluster.bootstrap, TOPIC, "");
    let log = d.join("trawl.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(d.join("app.log"), "maint", written.clone(), stop.clone());
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    wait_until(WAIT, "the first lines delivered", || delivered() >= 200);

    cluster.brokers[0].stop();
    std::thread::sleep(Duration::from_secs(2));
    let lost_first = lost_counts(&addr);
    let first = delivered();
    let stopping = Instant::now();
    let first_exit = trawl.stop(WAIT);
    eprintln!(
        "the first trawl stopped in {:.1} s ({first_exit})",
        stopping.elapsed().as_secs_f64()
    );
    let mut trawl = Trawl::start(&cfg, Some(&log));
    wait_until(WAIT, "the second trawl delivering", || delivered() > 0);
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_again(0, TOPIC);

    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    let want = written_lines("maint", total);
    let mut got = copies(&cluster.brokers[0].read_all(TOPIC));
    let deadline = Instant::now() + WAIT;
    while want.iter().any(|l| !got.contains_key(l)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        got = copies(&cluster.brokers[0].read_all(TOPIC));
    }
    let lost = lost_counts(&addr);
    let exit = trawl.stop(WAIT);
    eprintln!("{total} lines; {first}+ delivered by the first trawl; second trawl's exit {exit}");
    assert!(
        first_exit.success(),
        "the first trawl's stop: {first_exit}; log: {}",
        read_log()
    );
    assert!(
        lost_first.is_empty() && lost.is_empty(),
        "events dead-lettered or dropped: {lost_first:?} {lost:?}; log: {}",
        read_log()
    );
    assert!(exit.success(), "trawl's stop: {exit}; log: {}", read_log());
    assert_each_once(&copies(&cluster.brokers[0].read_all(TOPIC)), &want);
}
