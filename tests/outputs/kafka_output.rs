//! The `kafka` output through the real binary against a real Apache Kafka broker (KRaft, one
//! node, `tests/support/kafka/mod.rs`): templated topic, keys, headers, every compression codec,
//! dead letters for oversized messages (by trawl's limit or a lower one of the topic's) and for
//! a topic that does not exist, librdkafka's `debug` switch in trawl's log, a consumer group
//! reading across trawl restarts, a broker stopped for 30 s, one killed (SIGKILL) for 15 s and
//! one unreachable for 10 s without losing anything. TLS and SASL are in `kafka_auth.rs`.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::kafka::Broker;
use support::process::{read_json_lines, write_file, Trawl};

fn config(dir: &Path, bootstrap: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    dead_letter: dead\n{extra}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.join("data").display(),
        dl = dir.join("dead.jsonl").display()
    );
    write_file(dir, "pipeline.yaml", &text)
}

/// trawl started on `config` with `topic` (and `extra` output settings), logging to the
/// returned path in the returned directory.
fn start_on_topic(
    broker: &Broker,
    topic: &str,
    extra: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Trawl) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker.bootstrap,
        &format!("    topic: {topic}\n{extra}"),
    );
    let log = dir.path().join("trawl.log");
    let t = Trawl::start(&cfg, Some(&log));
    (dir, log, t)
}

/// trawl reading JSON lines on stdin, each produced to the topic its field `t` names, dead
/// letters in `dead.jsonl` (and `extra` output settings), logging to the returned path.
fn start_on_field_topic(
    broker: &Broker,
    extra: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Trawl) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 120s\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{b}\"]\n    topic: \"%{{[t]}}\"\n    dead_letter: dead\n{extra}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.path().join("data").display(),
        b = broker.bootstrap,
        dl = dir.path().join("dead.jsonl").display()
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let log = dir.path().join("trawl.log");
    let t = Trawl::start(&cfg, Some(&log));
    (dir, log, t)
}

fn messages(records: &[support::kafka::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON payload");
            v["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn templated_topic_keys_headers_and_every_codec() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    for (i, codec) in ["lz4", "zstd", "gzip", "snappy", "none"].iter().enumerate() {
        let topic = format!("logs.web-{i}");
        broker.create_topic(&topic, 3);
        let host = format!("web-{i}");
        let cfg = config(
            dir.path(),
            &broker.bootstrap,
            &format!("    topic: \"logs.%{{[host.name]}}\"\n    key: \"%{{[message]}}\"\n    headers: {{ origin-host: \"%{{[host.name]}}\" }}\n    compression: {codec}\n"),
        );
        let mut t = Trawl::start_env(&cfg, None, &[("TRAWL_HOSTNAME", &host)]);
        let n = 3000;
        let input: String = (0..n).map(|j| format!("k{} line {j}\n", j % 10)).collect();
        t.feed(input.as_bytes());
        assert!(t.finish(Duration::from_secs(60)).success());

        let records = broker.read_all(&topic);
        let msgs = messages(&records);
        let set: HashSet<&String> = msgs.iter().collect();
        assert_eq!(msgs.len(), n, "{codec}: every line exactly once");
        assert_eq!(set.len(), n);
        // The key is the message: each message's partition is the one its key hashes to, and
        // the three partitions are all used.
        let parts: HashSet<i32> = records.iter().map(|r| r.partition).collect();
        assert_eq!(parts.len(), 3, "{codec}: keys spread over the partitions");
        for r in &records {
            assert_eq!(
                r.key.as_deref(),
                Some(
                    serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["message"]
                        .as_str()
                        .unwrap()
                )
            );
            assert_eq!(r.headers, vec![("origin-host".to_owned(), host.clone())]);
        }
        // Per partition, the order of lines is the order they were written.
        let mut last: HashMap<i32, usize> = HashMap::new();
        for r in &records {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            let j: usize = v["message"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if let Some(prev) = last.insert(r.partition, j) {
                assert!(j > prev, "{codec}: partition {} out of order", r.partition);
            }
        }
    }
}

/// librdkafka's own troubleshooting switch, `debug`, set under `librdkafka:`: its output shows
/// in trawl's log at `--log-level debug` (it was dropped inside librdkafka by the producer's
/// warning level, so the switch did nothing), and nothing of it at the default level.
#[test]
fn librdkafka_debug_contexts_reach_the_log_at_debug_level() {
    let broker = Broker::shared();
    broker.create_topic("debugged", 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker.bootstrap,
        "    topic: debugged\n    librdkafka: { debug: \"broker,msg\" }\n",
    );
    let run = |level: &str| {
        let log = dir.path().join(format!("trawl-{level}.log"));
        let mut t = Trawl::start_env(&cfg, Some(&log), &[("TRAWL_LOG_LEVEL", level)]);
        t.feed(b"one line\n");
        assert!(t.finish(Duration::from_secs(60)).success());
        std::fs::read_to_string(&log).unwrap()
    };
    let debug = run("debug");
    // librdkafka's debug lines name their facility: STATE for a broker connection's states,
    // PRODUCE for the produce request that carried the line.
    for facility in ["facility=\"STATE\"", "facility=\"PRODUCE\""] {
        assert!(
            debug
                .lines()
                .any(|l| l.contains("DEBUG") && l.contains("librdkafka:") && l.contains(facility)),
            "no librdkafka debug line with {facility} at --log-level debug; the log:\n{debug}"
        );
    }
    let info = run("info");
    assert!(
        !info.lines().any(|l| l.contains("DEBUG")),
        "debug lines at the default level:\n{info}"
    );
    assert_eq!(
        messages(&broker.read_all("debugged")),
        ["one line", "one line"]
    );
}

#[test]
fn oversized_messages_go_to_the_dead_letter_file() {
    let broker = Broker::shared();
    broker.create_topic("big", 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker.bootstrap,
        "    topic: big\n    max_message_bytes: 2000\n    encoding: raw\n",
    );
    let mut t = Trawl::start(&cfg, None);
    let mut input = String::new();
    for i in 0..200 {
        if i % 50 == 3 {
            input.push_str(&format!("huge {i} {}\n", "x".repeat(3000)));
        } else {
            input.push_str(&format!("small {i}\n"));
        }
    }
    t.feed(input.as_bytes());
    assert!(t.finish(Duration::from_secs(60)).success());
    let records = broker.read_all("big");
    let got: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(got.len(), 196);
    assert!(
        got.iter().all(|m| m.starts_with("small ")),
        "raw encoding sends the message as is"
    );
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 4);
    for d in dead {
        assert_eq!(d["error"]["type"], "message_too_large");
        assert!(d["message"].as_str().unwrap().starts_with("huge "));
    }
}

/// A topic whose `max.message.bytes` is below trawl's `max_message_bytes` (a team that keeps
/// its topics small; trawl's setting left at its default): the broker refuses the few large
/// messages; they go to the dead letters, and every other line, written around them, is in
/// the topic, once.
#[test]
fn a_topic_limit_below_max_message_bytes_dead_letters_only_the_large_messages() {
    let broker = Broker::shared();
    // Lines that compress poorly, so that a batch of them is larger than the limit.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect()
    };
    let mut input = String::new();
    let mut want = HashSet::new();
    let mut huge = HashSet::new();
    for i in 0..3000 {
        if i % 500 == 7 {
            let line = format!("huge {i} {}", noise(30_000));
            huge.insert(line.clone());
            input.push_str(&line);
        } else {
            let line = format!("small {i} {}", noise(200));
            want.insert(line.clone());
            input.push_str(&line);
        }
        input.push('\n');
    }
    const REFUSED: &str = "refused a batch of messages as too large for the topic";
    // The defaults, then `max_message_bytes` set to the topic's limit as the log advises (the
    // requests then fit: nothing is refused, the large lines are kept back by trawl itself).
    for (topic, extra, refusals, kind) in [
        ("small-limit", "", 1, "kafka_MessageSizeTooLarge"),
        (
            "small-limit-set",
            "    max_message_bytes: 20000\n",
            0,
            "message_too_large",
        ),
    ] {
        broker.create_topic_with(topic, 1, &[("max.message.bytes", "20000")]);
        let (dir, log, mut t) = start_on_topic(broker, topic, extra);
        t.feed(input.as_bytes());
        assert!(t.finish(Duration::from_secs(120)).success());
        let got = messages(&broker.read_all(topic));
        let dead = read_json_lines(&dir.path().join("dead.jsonl"));
        let dead_msgs: HashSet<String> = dead
            .iter()
            .map(|d| d["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        let lost_small = want.iter().filter(|l| dead_msgs.contains(*l)).count();
        assert_eq!(
            lost_small,
            0,
            "{topic}: {lost_small} small lines dead-lettered with the large ones ({} in the topic), first error: {}",
            got.len(),
            dead.first().map(|d| d["error"].to_string()).unwrap_or_default()
        );
        assert_eq!(got.len(), want.len(), "{topic}: each small line once");
        assert_eq!(got.into_iter().collect::<HashSet<_>>(), want, "{topic}");
        assert_eq!(dead_msgs, huge, "{topic}");
        for d in &dead {
            assert_eq!(d["error"]["type"], kind, "{topic}");
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(text.matches(REFUSED).count(), refusals, "{topic}: {text}");
    }
}

/// A topic template naming a field some events lack, and a key template naming another: those
/// events go to the dead letters (`template_error`, naming the field) and are counted in
/// `trawl_events_failed_total`; the others reach the topic of their own field's value.
#[test]
fn topic_and_key_templates_with_missing_fields_dead_letter_and_count_those_events() {
    let broker = Broker::shared();
    broker.create_topic("t.prod", 1);
    broker.create_topic("t.dev", 1);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message, ignore_missing: true }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{b}\"]\n    topic: \"t.%{{[ns]}}\"\n    key: \"%{{[user]}}\"\n    dead_letter: dead\n  dead:\n    type: file\n    path: {dl}\n",
        data = dir.path().join("data").display(),
        b = broker.bootstrap,
        dl = dir.path().join("dead.jsonl").display()
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let mut t = Trawl::start(&cfg, None);
    let mut input = String::new();
    for i in 0..300 {
        match i % 3 {
            0 => input.push_str(&format!(
                "{{\"ns\":\"prod\",\"user\":\"u{i}\",\"n\":{i}}}\n"
            )),
            1 => input.push_str(&format!("{{\"ns\":\"dev\",\"n\":{i}}}\n")),
            _ => input.push_str(&format!("plain line {i}\n")),
        }
    }
    t.feed(input.as_bytes());
    support::process::wait_until(Duration::from_secs(60), "200 failed events counted", || {
        support::process::metric(&addr, "trawl_events_failed_total", "k") == Some(200.0)
    });
    assert!(t.finish(Duration::from_secs(60)).success());

    let prod = broker.read_all("t.prod");
    assert_eq!(prod.len(), 100, "events with both fields are delivered");
    assert!(prod
        .iter()
        .all(|r| r.key.as_deref().is_some_and(|k| k.starts_with('u'))));
    assert!(
        broker.read_all("t.dev").is_empty(),
        "no key: dead-lettered, not sent"
    );
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 200);
    let (mut no_topic, mut no_key) = (0, 0);
    for d in &dead {
        assert_eq!(d["error"]["type"], "template_error");
        let why = d["error"]["message"].as_str().unwrap();
        if why.starts_with("topic: ") && why.contains("`ns`") {
            no_topic += 1;
        } else if why.starts_with("key: ") && why.contains("`user`") {
            no_key += 1;
        } else {
            panic!("unexpected reason: {why}");
        }
    }
    assert_eq!((no_topic, no_key), (100, 100));
}

/// A topic that does not exist, on a cluster that does not create topics on demand (the test
/// broker runs with `auto.create.topics.enable=false`): librdkafka waits for it to appear for
/// `topic.metadata.propagation.max.ms` (30 s), then refuses its messages. Those events go to the
/// dead letters with librdkafka's reason, the refusal is logged, trawl exits cleanly, and the
/// events bound for a topic that exists are delivered as usual.
#[test]
fn a_topic_that_does_not_exist_sends_its_events_to_the_dead_letters() {
    let broker = Broker::shared();
    broker.create_topic("present", 1);
    let (dir, log, mut t) = start_on_field_topic(broker, "");
    let input: String = (0..200)
        .map(|i| {
            let topic = if i % 2 == 0 { "present" } else { "absent" };
            format!("{{\"t\":\"{topic}\",\"n\":{i}}}\n")
        })
        .collect();
    t.feed(input.as_bytes());
    let status = t.finish(Duration::from_secs(120));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "trawl exited with {status}: {log_text}");

    let present = broker.read_all("present");
    assert_eq!(present.len(), 100, "the topic that exists has its events");
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    let mut ns: Vec<i64> = dead
        .iter()
        .map(|d| {
            // The broker's UNKNOWN_TOPIC_OR_PARTITION (or librdkafka's own unknown topic).
            let kind = d["error"]["type"].as_str().unwrap();
            assert!(kind.starts_with("kafka_UnknownTopic"), "{d}");
            let why = d["error"]["message"].as_str().unwrap();
            assert!(why.contains("Unknown topic"), "{why}");
            let original: serde_json::Value =
                serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
            assert_eq!(original["t"], "absent");
            original["n"].as_i64().unwrap()
        })
        .collect();
    ns.sort_unstable();
    let odd: Vec<i64> = (0..200).filter(|i| i % 2 == 1).collect();
    assert_eq!(
        ns, odd,
        "every event for the missing topic is a dead letter, once"
    );
    assert!(
        log_text.contains("event rejected for good") && log_text.contains("kafka_UnknownTopic"),
        "the refusal is logged: {log_text}"
    );
}

/// A broker down for longer than librdkafka's wait for a missing topic
/// (`topic.metadata.propagation.max.ms`, 5 s here), with events waiting for a topic that does not
/// exist yet: the operator creates it 2 s after the broker is back. librdkafka counts its wait
/// from the first message, so it would refuse them all the moment the broker answers; the wait
/// must count from when the brokers could answer. Every event is delivered, none dead-lettered;
/// the events for a topic nobody creates are dead-lettered once that wait has run out again.
#[test]
fn a_topic_created_just_after_a_long_outage_gets_the_events_that_waited() {
    let mut broker = Broker::start_persistent();
    broker.create_topic("warm-up", 1);
    let (dir, log, mut t) = start_on_field_topic(
        &broker,
        "    librdkafka: { topic.metadata.propagation.max.ms: \"5000\" }\n",
    );
    // The producer knows the cluster before it goes away.
    t.feed(b"{\"t\":\"warm-up\",\"n\":-1}\n");
    support::process::wait_until(Duration::from_secs(60), "the warm-up event", || {
        broker.read_all("warm-up").len() == 1
    });
    broker.stop();
    let input: String = (0..110)
        .map(|i| {
            let topic = if i < 100 {
                "created-late"
            } else {
                "never-created"
            };
            format!("{{\"t\":\"{topic}\",\"n\":{i}}}\n")
        })
        .collect();
    t.feed(input.as_bytes());
    std::thread::sleep(Duration::from_secs(10));
    broker.start_again();
    std::thread::sleep(Duration::from_secs(2));
    broker.create_topic("created-late", 1);
    let status = t.finish(Duration::from_secs(180));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "trawl exited with {status}: {log_text}");

    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    let mut dead_ns: Vec<i64> = dead
        .iter()
        .map(|d| {
            let original: serde_json::Value =
                serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
            original["n"].as_i64().unwrap()
        })
        .collect();
    dead_ns.sort_unstable();
    assert_eq!(
        dead_ns,
        (100..110).collect::<Vec<i64>>(),
        "only the events of the topic never created are dead letters, once"
    );
    let mut ns: Vec<i64> = broker
        .read_all("created-late")
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..100).collect::<Vec<i64>>(), "every event once");
}

/// A downstream consumer group reading the topic between two runs of trawl on the same file
/// (stopped with SIGTERM in between): each read returns what was added since the group's last
/// commit, every line once. trawl's clean stop leaves nothing to send twice.
#[test]
fn a_consumer_group_reads_each_line_once_across_a_trawl_restart() {
    let broker = Broker::shared();
    broker.create_topic("group-read", 2);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    let app = dir.path().join("app.log");
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 100ms\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{b}\"]\n    topic: group-read\n",
        data = dir.path().join("data").display(),
        app = app.display(),
        b = broker.bootstrap,
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let append = |prefix: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&app)
            .unwrap();
        let lines: String = (0..500).map(|i| format!("{prefix} {i}\n")).collect();
        f.write_all(lines.as_bytes()).unwrap();
    };
    let run = || {
        let mut t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
        support::process::wait_until(Duration::from_secs(60), "500 lines delivered", || {
            support::process::metric(&addr, "trawl_events_out_total", "k") == Some(500.0)
        });
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGTERM) };
        assert!(t.wait(Duration::from_secs(60)).success());
    };
    let sorted = |records: Vec<support::kafka::Record>| {
        let mut m = messages(&records);
        m.sort();
        m
    };
    let expected = |prefix: &str| {
        let mut m: Vec<String> = (0..500).map(|i| format!("{prefix} {i}")).collect();
        m.sort();
        m
    };

    append("first");
    run();
    assert_eq!(
        sorted(broker.read_group("group-read", "downstream")),
        expected("first")
    );
    append("second");
    run();
    assert_eq!(
        sorted(broker.read_group("group-read", "downstream")),
        expected("second"),
        "the group gets only the new lines, each once"
    );
    assert!(broker.read_group("group-read", "downstream").is_empty());
}

/// What an outage run saw.
struct Outage {
    written: u64,
    during: u64,
    unique: usize,
    duplicates: usize,
    peak_kib: u64,
    /// From the broker answering again to trawl's exit with everything delivered (stdin ends
    /// at `outage + 15 s`; a figure, not asserted).
    drained_after: Duration,
}

/// Writes lines to stdin for `outage + 15 s`; from second 8 the broker is down for `outage`
/// (`down` and `up` do it). Returns what reached Kafka and trawl's peak RSS. `extra` is added
/// to the output's settings.
fn run_through_outage(
    broker: &mut Broker,
    topic: &str,
    extra: &str,
    outage: Duration,
    down: impl Fn(&mut Broker),
    up: impl Fn(&mut Broker),
) -> Outage {
    broker.create_topic(topic, 2);
    let (_dir, log, mut t) = start_on_topic(broker, topic, extra);
    let mut stdin = t.child.stdin.take().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let w = written.clone();
    let run_for = outage + Duration::from_secs(15);
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        let pad = "p".repeat(200);
        while start.elapsed() < run_for {
            let mut chunk = String::new();
            for _ in 0..100 {
                chunk.push_str(&format!("line {i} {pad}\n"));
                i += 1;
            }
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            w.store(i, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        i
    });
    let mut peak_kib = 0;
    let sample = |t: &Trawl, peak: &mut u64| {
        if let Some(k) = t.peak_rss_kib() {
            *peak = (*peak).max(k);
        }
    };
    std::thread::sleep(Duration::from_secs(8));
    down(broker);
    let at_cut = written.load(std::sync::atomic::Ordering::Relaxed);
    let began = Instant::now();
    while began.elapsed() < outage {
        std::thread::sleep(Duration::from_secs(1));
        sample(&t, &mut peak_kib);
    }
    let before_restore = written.load(std::sync::atomic::Ordering::Relaxed);
    up(broker);
    let answered = Instant::now();
    let total = writer.join().unwrap();
    sample(&t, &mut peak_kib);
    let status = t.wait(Duration::from_secs(120));
    let drained_after = answered.elapsed();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "trawl exited with {status}: {log_text}");
    assert!(
        log_text.contains("no Kafka broker reachable"),
        "the outage is logged: {log_text}"
    );

    let msgs = messages(&broker.read_all(topic));
    let unique: HashSet<&String> = msgs.iter().collect();
    let missing: Vec<u64> = (0..total)
        .filter(|i| {
            let pad = "p".repeat(200);
            !unique.contains(&format!("line {i} {pad}"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "{} lines missing ({at_cut} written at the cut, {before_restore} at the restore): {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        // Offsets the broker gave out but cannot serve: a batch it acknowledged and lost.
        let recs = broker.read_all(topic);
        for p in 0..2 {
            let offs: Vec<i64> = recs
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect();
            let holes = offs.last().map_or(0, |l| l + 1 - offs.len() as i64);
            eprintln!(
                "partition {p}: {} records, {holes} offsets missing",
                offs.len()
            );
        }
        eprintln!("trawl's log:\n{log_text}");
    }
    assert!(total > before_restore, "stdin resumed after the outage");
    Outage {
        written: total,
        during: before_restore - at_cut,
        unique: unique.len(),
        duplicates: msgs.len() - unique.len(),
        peak_kib,
        drained_after,
    }
}

/// The broker process is stopped (SIGTERM, a controlled shutdown) 8 s into a run and started
/// again on the same port with the same log dir 30 s later (`TRAWL_TEST_OUTAGE_SECS` changes
/// the length), with the output's defaults (`acks: all`, idempotent producer): every line
/// written is in Kafka exactly once, stdin is paused during the outage and resumes, and memory
/// stays bounded.
#[test]
fn broker_stopped_for_30_seconds_loses_nothing() {
    let secs = std::env::var("TRAWL_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut broker = Broker::start_persistent();
    let o = run_through_outage(
        &mut broker,
        "stopped",
        "    acks: all\n    idempotence: true\n",
        Duration::from_secs(secs),
        |b| b.stop(),
        |b| b.start_again(),
    );
    eprintln!(
        "broker stopped {secs} s: {} lines written ({} during the outage), {} in Kafka, {} duplicates, peak RSS {} MiB",
        o.written, o.during, o.unique, o.duplicates, o.peak_kib / 1024
    );
    check_outage(&o);
    assert_eq!(
        o.duplicates, 0,
        "the idempotent producer's retries across the restart add nothing"
    );
}

/// The broker stays up but is unreachable for 10 s (a proxy in front of it closes every
/// connection and refuses new ones): the same guarantees as a stopped broker.
#[test]
fn broker_unreachable_for_10_seconds_loses_nothing() {
    let mut broker = Broker::start();
    let o = run_through_outage(
        &mut broker,
        "unreachable",
        "",
        Duration::from_secs(10),
        |b| b.cut(),
        |b| b.restore(),
    );
    eprintln!(
        "broker unreachable 10 s: {} lines written ({} during the outage), {} in Kafka, {} duplicates, peak RSS {} MiB",
        o.written, o.during, o.unique, o.duplicates, o.peak_kib / 1024
    );
    check_outage(&o);
    assert_eq!(
        o.duplicates, 0,
        "the idempotent producer sends nothing twice"
    );
}

/// The broker crashes (SIGKILL: no controlled shutdown, the partitions' leadership and the
/// producer's in-flight requests end mid-way) 8 s into a run and is started again 15 s later,
/// with the output's defaults: every line written is in Kafka, stdin resumes, memory stays
/// bounded. The idempotent producer (on by default) makes its retries of the requests the
/// crash cut short land once.
#[test]
fn broker_killed_for_15_seconds_loses_nothing() {
    let mut broker = Broker::start_persistent();
    let o = run_through_outage(
        &mut broker,
        "killed",
        "",
        Duration::from_secs(15),
        |b| b.kill(),
        |b| b.start_again(),
    );
    eprintln!(
        "broker killed 15 s: {} lines written ({} during the outage), {} in Kafka, {} duplicates, peak RSS {} MiB, all delivered {:?} after the broker answered",
        o.written, o.during, o.unique, o.duplicates, o.peak_kib / 1024, o.drained_after
    );
    check_outage(&o);
    assert_eq!(
        o.duplicates, 0,
        "the idempotent producer sends nothing twice"
    );
}

fn check_outage(o: &Outage) {
    assert_eq!(
        o.unique as u64, o.written,
        "every line written reached Kafka"
    );
    // During the outage the pipeline fills and stdin blocks: far fewer lines get in than the
    // writer could produce (it writes ~20,000 lines/s, 4 MB/s, when nothing blocks).
    assert!(o.during < 100_000, "stdin was paused during the outage");
    // Unbounded buffering of 30 s of writing would pass 120 MB of lines alone.
    assert!(
        o.peak_kib < 120 * 1024,
        "peak RSS {} KiB is bounded",
        o.peak_kib
    );
}

/// Topics built from events' fields that are no Kafka topic name: a NUL (librdkafka panicked
/// on it, which ended the output with no word: every input stalled behind it, the other
/// outputs received the file again at each retry, /health said ok), `/`, a space, 250
/// characters, `..`. Each goes to the dead letters (`invalid_topic`); the lines around them
/// reach their topic once.
#[test]
fn topics_that_are_no_kafka_topic_name_go_to_the_dead_letters_one_by_one() {
    let broker = Broker::shared();
    broker.create_topic("fine", 1);
    let (dir, _log, mut t) = start_on_field_topic(broker, "");
    let long = "x".repeat(250);
    let bad = ["a\\u0000b", "a/b", "a b", long.as_str(), ".."];
    let mut input = String::new();
    for (i, topic) in bad.iter().enumerate() {
        input.push_str(&format!("{{\"t\":\"fine\",\"n\":{}}}\n", 2 * i));
        input.push_str(&format!("{{\"t\":\"{topic}\",\"n\":{}}}\n", 2 * i + 1));
    }
    t.feed(input.as_bytes());
    assert!(t.finish(Duration::from_secs(60)).success());
    let fine = broker.read_all("fine");
    let mut ns: Vec<i64> = fine
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, vec![0, 2, 4, 6, 8]);
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    for d in &dead {
        assert_eq!(d["error"]["type"], "invalid_topic", "{d}");
        let event: serde_json::Value =
            serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
        let n = event["n"].as_i64().unwrap_or_else(|| panic!("{d}"));
        assert_eq!(n % 2, 1, "{d}");
    }
}

/// A compacted topic (`cleanup.policy=compact`, a "latest state" topic) refuses every record
/// without a key (the broker's `INVALID_RECORD`). Events routed there by a topic template
/// while the output sets no key are refused for good: they go to the dead letters with the
/// broker's reason, while the events bound for an ordinary topic in the same batches are
/// delivered, once each, and nothing waits on the refused ones.
#[test]
fn a_compacted_topic_refuses_keyless_records_and_only_those_are_dead_lettered() {
    let broker = Broker::shared();
    broker.create_topic_with("state.compacted", 1, &[("cleanup.policy", "compact")]);
    broker.create_topic("state.plain", 1);
    let (dir, log, mut t) = start_on_field_topic(broker, "");
    let mut input = String::new();
    let (mut plain, mut compacted) = (HashSet::new(), HashSet::new());
    for i in 0..2000 {
        let (topic, set) = if i % 4 == 0 {
            ("state.compacted", &mut compacted)
        } else {
            ("state.plain", &mut plain)
        };
        let line = format!("{{\"t\":\"{topic}\",\"n\":{i}}}");
        set.insert(line.clone());
        input.push_str(&line);
        input.push('\n');
    }
    t.feed(input.as_bytes());
    assert!(t.finish(Duration::from_secs(120)).success());

    let got = messages(&broker.read_all("state.plain"));
    assert_eq!(got.len(), plain.len(), "each plain-topic event once");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), plain);
    assert!(broker.read_all("state.compacted").is_empty());
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    let dead_msgs: HashSet<String> = dead
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        dead.len(),
        compacted.len(),
        "each keyless event dead-lettered once"
    );
    assert_eq!(dead_msgs, compacted);
    for d in &dead {
        assert_eq!(d["error"]["type"], "kafka_InvalidRecord", "{d}");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}
