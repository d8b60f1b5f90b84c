//! librdkafka's own retries on `trawl_output_retries_total`, against a real Apache Kafka: lines
//! stream from stdin to the kafka output (idempotent, no delivery timeout) while the broker's
//! connection is cut under produce requests in flight; every line arrives once and the output
//! says it retried.

use crate::support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::kafka::Broker;
use support::process::{free_port, metric, wait_until, write_file, Trawl};

fn line(i: usize) -> String {
    format!("retried line {i:07}")
}

/// A real broker behind a proxy (`cut`), `topic` with `partitions`, and trawl reading stdin into
/// a kafka output `k` on it (plus `output` lines), /metrics on `addr`, its log in `log`.
struct Run {
    /// Holds the data_dir and the log: bound by each test until its end.
    _dir: tempfile::TempDir,
    broker: Broker,
    addr: String,
    log: std::path::PathBuf,
    trawl: Trawl,
}

impl Run {
    fn start(topic: &str, partitions: i32, output: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        broker.create_topic(topic, partitions);
        let addr = format!("127.0.0.1:{}", free_port());
        let config = write_file(
            dir.path(),
            "pipeline.yaml",
            &format!(
                "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 120s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n{output}",
                data = dir.path().join("data").display(),
                bootstrap = broker.bootstrap,
            ),
        );
        let log = dir.path().join("trawl.log");
        let trawl = Trawl::start(&config, Some(&log));
        Run {
            _dir: dir,
            broker,
            addr,
            log,
            trawl,
        }
    }
}

#[test]
fn a_connection_cut_under_load_is_counted_as_retries_and_loses_nothing() {
    let topic = "kafka_retries";
    let Run {
        broker,
        addr,
        log,
        mut trawl,
        _dir,
    } = Run::start(topic, 2, "    idempotence: true\n");
    wait_until(Duration::from_secs(60), "trawl's /metrics", || {
        metric(&addr, "trawl_output_retries_total", "k").is_some()
    });
    assert_eq!(
        metric(&addr, "trawl_output_retries_total", "k"),
        Some(0.0),
        "no retries before any fault"
    );

    // As fast as trawl takes them, so that produce requests are on the wire when the
    // connection drops.
    let mut stdin = trawl.child.stdin.take().expect("trawl's stdin");
    let (stop, pause) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (written, idle) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let feeder = {
        let (stop, pause) = (stop.clone(), pause.clone());
        let (written, idle) = (written.clone(), idle.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                idle.store(pause.load(Ordering::Relaxed), Ordering::Relaxed);
                if idle.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let mut chunk = String::new();
                for _ in 0..100 {
                    chunk.push_str(&line(i));
                    chunk.push('\n');
                    i += 1;
                }
                stdin
                    .write_all(chunk.as_bytes())
                    .expect("writing to trawl's stdin");
                written.store(i, Ordering::Relaxed);
            }
            // Closing stdin ends the input: trawl delivers everything, then exits.
            drop(stdin);
        })
    };
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    wait_until(Duration::from_secs(90), "the first lines in Kafka", || {
        delivered() > 2000
    });

    // Cut a few times: each cut closes the connection under the requests in flight (answers
    // held back just before). Should a cut still re-send nothing, cut again until the counter
    // moves, at most five times. After each cut the stream pauses until everything written is delivered: with
    // librdkafka's queues empty its statistics (every 5 s) show every re-send.
    let mut cuts = 0;
    let retries = |addr: &str| metric(addr, "trawl_output_retries_total", "k").unwrap_or(0.0);
    while cuts < 5 && retries(&addr) == 0.0 {
        cuts += 1;
        pause.store(false, Ordering::Relaxed);
        idle.store(false, Ordering::Relaxed);
        let before = delivered();
        wait_until(Duration::from_secs(60), "the stream flowing", || {
            delivered() > before + 1000
        });
        // The broker's answers held back for a moment first: the cut then surely finds
        // produce requests in flight (a bare cut can fall between two requests).
        broker.hold_answers();
        std::thread::sleep(Duration::from_millis(1500));
        broker.cut();
        std::thread::sleep(Duration::from_secs(3));
        broker.restore();
        pause.store(true, Ordering::Relaxed);
        // The feeder may be inside a write that waits for trawl to take it.
        wait_until(Duration::from_secs(120), "the stream paused", || {
            idle.load(Ordering::Relaxed)
        });
        let n = written.load(Ordering::Relaxed);
        wait_until(
            Duration::from_secs(120),
            "every line written delivered after the connection came back",
            || delivered() >= n,
        );
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline && retries(&addr) == 0.0 {
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "cut {cuts}: {n} lines written and delivered, trawl_output_retries_total {}",
            retries(&addr)
        );
    }
    let counted = retries(&addr);
    eprintln!("trawl_output_retries_total after {cuts} cut(s): {counted}");
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("the feeder thread");
    let n = written.load(Ordering::Relaxed);

    let status = trawl.wait(Duration::from_secs(180));
    assert!(
        status.success(),
        "trawl exited with {status}; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let seen = support::kafka::steady::copies(&broker.read_all(topic));
    let missing: Vec<String> = (0..n).map(line).filter(|l| !seen.contains_key(l)).collect();
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} lines never reached Kafka, first {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        twice.is_empty(),
        "lines stored more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), n, "only the lines written are in the topic");
    assert!(
        counted > 0.0,
        "{cuts} connection cut(s) under a stream of {n} lines, all delivered, yet \
         trawl_output_retries_total stayed 0"
    );
}

/// librdkafka gives up on a message after `message.timeout.ms`; with no `delivery_timeout` the
/// output must take it back and produce it again rather than fail its batch, which an input
/// that cannot read again (stdin here) would lose. The broker's connection is cut for several
/// of those timeouts while lines wait (and trawl drains them before exiting), then restored.
#[test]
fn messages_librdkafka_gives_up_on_are_produced_again_not_lost() {
    let topic = "kafka_taken_back";
    let Run {
        broker,
        addr,
        log,
        mut trawl,
        _dir,
    } = Run::start(
        topic,
        1,
        "    librdkafka: { message.timeout.ms: \"2000\" }\n",
    );
    let mut stdin = trawl.child.stdin.take().expect("trawl's stdin");
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    let retries = || metric(&addr, "trawl_output_retries_total", "k").unwrap_or(0.0);
    let write = |stdin: &mut std::process::ChildStdin, range: std::ops::Range<usize>| {
        let text: String = range.map(|i| line(i) + "\n").collect();
        stdin
            .write_all(text.as_bytes())
            .expect("writing to trawl's stdin");
        stdin.flush().expect("flushing trawl's stdin");
    };

    write(&mut stdin, 0..500);
    wait_until(
        Duration::from_secs(60),
        "the first 500 lines in Kafka",
        || delivered() >= 500,
    );
    assert_eq!(retries(), 0.0, "no retries before any fault");

    // Nothing in flight when the connection goes: the lines written now wait in librdkafka's
    // queue, unsent, past its 2 s timeout several times over.
    broker.cut();
    write(&mut stdin, 500..1000);
    wait_until(
        Duration::from_secs(30),
        "messages librdkafka gave up on counted as retries",
        || retries() > 0.0,
    );
    // stdin closed during the cut: trawl's drain before exiting must also take back and send
    // again what librdkafka gives up on, through each new producer.
    drop(stdin);
    std::thread::sleep(Duration::from_secs(6));
    assert!(delivered() < 1000, "the cut held nothing back");
    assert!(
        trawl.child.try_wait().expect("trawl's status").is_none(),
        "trawl exited with lines undelivered"
    );
    broker.restore();

    let status = trawl.wait(Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "trawl exited with {status}; its log:\n{text}"
    );
    let seen = support::kafka::steady::copies(&broker.read_all(topic));
    let missing: Vec<String> = (0..1000)
        .map(line)
        .filter(|l| !seen.contains_key(l))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of 1000 lines never reached Kafka, first {:?}; trawl's log:\n{text}",
        missing.len(),
        missing.first()
    );
    // They were never sent before the cut ended: sending them again cannot duplicate them.
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "lines stored more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), 1000, "only the lines written are in the topic");
    assert_eq!(
        text.matches("librdkafka gave up on messages").count(),
        1,
        "logged once for the outage; trawl's log:\n{text}"
    );
}

/// With `delivery_timeout` set the output gives up on a message for good and fails its batch.
/// A file would be read again; stdin cannot be, so those events are lost. A loss must not be
/// silent: the input counts exactly the events lost in `trawl_events_failed_total`, logs it,
/// and the run exits 1 naming it, while everything sent before and after the cut arrives once.
#[test]
fn stdin_events_given_up_past_delivery_timeout_are_counted_lost_and_fail_the_exit() {
    let topic = "kafka_stdin_lost";
    let Run {
        broker,
        addr,
        log,
        mut trawl,
        _dir,
    } = Run::start(topic, 1, "    delivery_timeout: 2s\n");
    let delivered = || metric(&addr, "trawl_events_out_total", "k").unwrap_or(0.0) as usize;
    let lost = || metric(&addr, "trawl_events_failed_total", "app").unwrap_or(-1.0);
    let lines =
        |range: std::ops::Range<usize>| -> String { range.map(|i| line(i) + "\n").collect() };

    trawl.feed(lines(0..300).as_bytes());
    wait_until(
        Duration::from_secs(60),
        "the first 300 lines in Kafka",
        || delivered() == 300,
    );
    assert_eq!(lost(), 0.0, "nothing lost before the cut");

    // Nothing in flight when the connection goes: the 200 lines written now never reach the
    // broker, and librdkafka gives up on them after 2 s.
    broker.cut();
    trawl.feed(lines(300..500).as_bytes());
    wait_until(
        Duration::from_secs(60),
        "the 200 lines written during the cut counted lost by stdin",
        || lost() == 200.0,
    );
    broker.restore();
    // librdkafka reconnects after its own back-off (up to 10 s), which can outlast the 2 s
    // delivery_timeout: lines written before it does are lost too, and must be counted. A few
    // at a time until one arrives, then 100 more.
    let mut written = 500;
    let back = Instant::now();
    while delivered() == 300 {
        assert!(
            back.elapsed() < Duration::from_secs(90),
            "nothing delivered 90 s after the connection came back ({} lines written since, \
             {} counted lost in all); trawl's log:\n{}",
            written - 500,
            lost(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        trawl.feed(lines(written..written + 10).as_bytes());
        written += 10;
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "delivering again {:.1} s after the connection came back ({} lines written meanwhile)",
        back.elapsed().as_secs_f64(),
        written - 500
    );
    trawl.feed(lines(written..written + 100).as_bytes());
    written += 100;
    // Each batch ends one way or the other: delivered, or counted lost.
    wait_until(
        Duration::from_secs(90),
        "every line written delivered or counted lost",
        || delivered() + lost() as usize == written,
    );
    let lost = lost() as usize;

    let status = trawl.finish(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "trawl exited with {status}; its log:\n{text}"
    );
    let logged: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("this input cannot read it again"))
        .collect();
    assert!(
        !logged.is_empty() && logged.iter().all(|l| l.contains("app")),
        "the loss logged, naming the input; trawl's log:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("events lost") && l.contains(&format!("input app: {lost} events"))),
        "the exit says what was lost ({lost}); trawl's log:\n{text}"
    );

    // In the topic: every line before the cut once, none written during it, and no line
    // missing that the input did not count lost.
    let seen = support::kafka::steady::copies(&broker.read_all(topic));
    let before: Vec<String> = (0..300).map(line).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "lines stored twice: {twice:?}");
    assert!(
        before.iter().all(|l| seen.contains_key(l)),
        "lines before the cut missing"
    );
    assert!(
        (300..500).map(line).all(|l| !seen.contains_key(&l)),
        "a line written during the cut reached Kafka"
    );
    let missing = (0..written)
        .map(line)
        .filter(|l| !seen.contains_key(l))
        .count();
    assert!(
        missing <= lost,
        "{missing} of {written} lines are not in Kafka but only {lost} were counted lost"
    );
}
