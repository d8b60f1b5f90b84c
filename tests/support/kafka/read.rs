//! Reading a test topic back: every message, partition by partition in offset order, through
//! a consumer group of its own (or a named one, to read only what is new since its last read).

use super::Broker;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

impl Broker {
    /// Every message of `topic`, partition by partition in offset order, read by a consumer
    /// group of its own.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        static GROUPS: AtomicUsize = AtomicUsize::new(0);
        let n = GROUPS.fetch_add(1, Ordering::Relaxed);
        self.read_group(topic, &format!("trawl-tests-{topic}-{n}"))
    }

    /// What consumer group `group` has not read yet of `topic` (from its committed offsets, or
    /// the start), up to the partitions' ends as they are now; the group then commits past it.
    pub fn read_group(&self, topic: &str, group: &str) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        assert!(!partitions.is_empty(), "topic {topic} has no partitions");
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(topic, p);
        }
        // The first group of a broker creates `__consumer_offsets`: until its coordinator is
        // loaded, the broker answers NotCoordinator or CoordinatorLoadInProgress.
        let start = Instant::now();
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(60) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("the committed offsets of group {group}: {e}"),
            }
        };
        let (mut next, mut end) = (HashMap::new(), HashMap::new());
        for &p in &partitions {
            // A partition whose leader is moving (a broker just back) times out a while.
            let start = Instant::now();
            let (low, high) = loop {
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                    Ok(w) => break w,
                    Err(_) if start.elapsed() < Duration::from_secs(60) => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => panic!("the watermarks of {topic}/{p}: {e}"),
                }
            };
            end.insert(p, high);
            let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            next.insert(p, from);
        }
        let done = |next: &HashMap<i32, i64>| partitions.iter().all(|p| next[p] >= end[p]);
        if done(&next) {
            return Vec::new();
        }
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut out: Vec<Record> = Vec::new();
        let start = Instant::now();
        let mut last_error = None;
        while !done(&next) {
            if start.elapsed() > Duration::from_secs(120) {
                panic!("reading {topic} as group {group}: stuck at {next:?}, ends {end:?}; last error: {last_error:?}");
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    out.push(Record::from(&m));
                }
                // librdkafka reports lost connections (`AllBrokersDown` on a loaded machine
                // whose broker was just restarted) and reconnects by itself: only no progress
                // for the whole deadline fails the read.
                Some(Err(e)) => last_error = Some(e.to_string()),
                None => {}
            }
        }
        let mut commit = TopicPartitionList::new();
        for &p in &partitions {
            commit
                .add_partition_offset(topic, p, Offset::Offset(next[&p]))
                .expect("offset");
        }
        consumer
            .commit(&commit, CommitMode::Sync)
            .expect("committing the group's offsets");
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    fn from(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}
