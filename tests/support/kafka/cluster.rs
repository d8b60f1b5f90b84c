//! A real Apache Kafka cluster for tests: three KRaft nodes (each broker and controller in one
//! JVM, the three a controller quorum) on distinct ports, each a `Broker` that `stop`, `kill`
//! and `start_again` one at a time, as an operator's rolling restart does.

use super::{Broker, Member, Ports};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::{Duration, Instant};

/// Leaders move back to their preferred replica a few seconds after a broker returns (Kafka
/// checks every 300 s by default), so each restart moves leadership away and back within a
/// test's run, as it does on a cluster restarted more slowly than that.
const CLUSTER_PROPERTIES: &str = "leader.imbalance.check.interval.seconds=5
leader.imbalance.per.broker.percentage=0
";

/// How long three JVMs on two busy cores get to form a quorum and answer.
const START_LIMIT: Duration = Duration::from_secs(150);

/// Brokers `brokers[0]` to `brokers[n-1]` (node ids 1 to n) of one cluster.
pub struct Cluster {
    pub brokers: Vec<Broker>,
    /// Every broker's plain listener, comma-separated: a client's bootstrap list.
    pub bootstrap: String,
}

impl Cluster {
    /// Starts a cluster of three and waits until each broker answers for itself; the reason
    /// when they do not within `START_LIMIT` (a machine too loaded to run three JVMs), so that
    /// a test can say why it cannot run.
    pub fn start() -> Result<Cluster, String> {
        // A port found free can still be taken before a JVM binds it (by a listener of another
        // process): that start is tried again on other ports, as nothing of the cluster is wrong.
        let mut tries = 0;
        loop {
            match Cluster::start_once() {
                Err(e) if e.contains("Address already in use") && tries < 2 => {
                    tries += 1;
                    eprintln!("a Kafka port was taken meanwhile; starting on other ports");
                }
                other => return other,
            }
        }
    }

    fn start_once() -> Result<Cluster, String> {
        const N: usize = 3;
        let free = super::super::process::server_ports::<{ 6 * N }>();
        let ports: Vec<Ports> = free
            .chunks(6)
            .map(|c| Ports::from(c.try_into().expect("six ports"), false))
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
            .collect::<Vec<_>>()
            .join(",");
        let bootstrap = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.client))
            .collect::<Vec<_>>()
            .join(",");
        let started = Instant::now();
        // Formatting starts a JVM per node: side by side, it costs one start, not three.
        let mut brokers: Vec<Broker> = std::thread::scope(|s| {
            let preparing: Vec<_> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let member = Member {
                        node_id: i + 1,
                        voters: voters.clone(),
                        cluster_bootstrap: bootstrap.clone(),
                        size: N,
                    };
                    s.spawn(move || Broker::prepare(*p, member, false, false, CLUSTER_PROPERTIES))
                })
                .collect();
            preparing
                .into_iter()
                .map(|h| h.join().expect("preparing a Kafka node"))
                .collect()
        });
        for b in &mut brokers {
            b.spawn();
        }
        for b in &mut brokers {
            let left = START_LIMIT.saturating_sub(started.elapsed());
            b.wait_ready(left)?;
            b.started_in = started.elapsed();
        }
        eprintln!(
            "Apache Kafka cluster of {N} on {bootstrap} answered {:.1} s after its start",
            started.elapsed().as_secs_f64()
        );
        Ok(Cluster { brokers, bootstrap })
    }

    /// Creates `name` with a replica on every broker and `settings` (`min.insync.replicas`...),
    /// and waits until every partition has a leader and all its replicas in sync.
    pub fn create_topic(&self, name: &str, partitions: i32, settings: &[(&str, &str)]) {
        self.brokers[0].create_topic_with(name, partitions, settings);
        self.wait_in_sync(name, Duration::from_secs(60));
    }

    /// Per partition of `topic`: (leader, in-sync replicas), as a broker that answers tells;
    /// `None` while none does.
    pub fn partitions(&self, topic: &str) -> Option<Vec<(i32, Vec<i32>)>> {
        let consumer: BaseConsumer = self.brokers[0]
            .client_config()
            .create()
            .expect("kafka client");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let mut parts: Vec<(i32, i32, Vec<i32>)> = t
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.isr().to_vec()))
            .collect();
        parts.sort();
        Some(parts.into_iter().map(|(_, l, isr)| (l, isr)).collect())
    }

    /// Waits until every partition of `topic` has a leader and every broker in its ISR (a
    /// restarted broker has caught up); panics with what the cluster says after `limit`.
    pub fn wait_in_sync(&self, topic: &str, limit: Duration) {
        let n = self.brokers.len();
        let start = Instant::now();
        loop {
            let parts = self.partitions(topic);
            if parts
                .as_ref()
                .is_some_and(|p| !p.is_empty() && p.iter().all(|(l, isr)| *l > 0 && isr.len() == n))
            {
                return;
            }
            if start.elapsed() > limit {
                panic!("{topic} not in sync on {n} brokers within {limit:?}: {parts:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `brokers[i]` again and waits until it serves and is back in `topic`'s ISRs.
    pub fn start_again(&mut self, i: usize, topic: &str) {
        self.brokers[i].start_again();
        self.wait_in_sync(topic, Duration::from_secs(120));
    }
}
