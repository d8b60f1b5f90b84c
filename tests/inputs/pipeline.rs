//! Topology behaviour through the library: routing by `inputs:`, back-pressure from a slow
//! output, and acknowledgements reaching the input in order and only after delivery.

use chrono::Utc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trawl::config::parse_str;
use trawl::event::{AckTracker, Acked, Batch, BatchAck, BatchStatus, Event};
use trawl::inputs::{BoxFuture, Input, InputContext};
use trawl::outputs::{Output, OutputContext};
use trawl::pipeline::channel::shutdown_pair;
use trawl::pipeline::{ExtraOutput, Pipeline};

/// Emits `batches` batches of `per_batch` events, tracking acknowledgements.
struct CountingInput {
    batches: u64,
    per_batch: u64,
    emitted: Arc<AtomicU64>,
    tracker: AckTracker,
    acked: Arc<Mutex<Vec<Acked>>>,
}

impl Input for CountingInput {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            for b in 0..self.batches {
                let events = (0..self.per_batch)
                    .map(|i| {
                        Event::from_message(
                            ctx.name.clone(),
                            Utc::now(),
                            format!("{}-{}", ctx.name, b * self.per_batch + i),
                        )
                    })
                    .collect();
                let (_, ack) = self.tracker.track();
                ctx.emit(Batch::new(events, ack))
                    .await
                    .map_err(|_| anyhow::anyhow!("closed"))?;
                self.emitted.fetch_add(self.per_batch, Ordering::SeqCst);
                self.acked.lock().unwrap().extend(self.tracker.drain());
            }
            // Wait for the rest of the acknowledgements, as a file input would before exiting.
            while self.tracker.pending() > 0 {
                let got = self.tracker.next().await;
                self.acked.lock().unwrap().extend(got);
            }
            Ok(())
        })
    }
}

/// Collects messages; holds every batch until `release` says how many it may settle, and settles
/// held batches in reverse order to prove the input still sees them in order.
struct HoldingOutput {
    seen: Arc<Mutex<Vec<String>>>,
    release: Arc<tokio::sync::Semaphore>,
    hold_in_reverse: usize,
}

impl Output for HoldingOutput {
    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let mut held: Vec<BatchAck> = Vec::new();
            while let Some(mut batch) = ctx.rx.recv().await {
                let permit = self.release.acquire().await?;
                permit.forget();
                self.seen.lock().unwrap().extend(
                    batch
                        .events_mut()
                        .iter()
                        .filter_map(|e| e.message().map(str::to_owned)),
                );
                held.push(batch.ack);
                if held.len() >= self.hold_in_reverse {
                    while let Some(a) = held.pop() {
                        a.delivered();
                    }
                }
            }
            while let Some(a) = held.pop() {
                a.delivered();
            }
            Ok(())
        })
    }
}

/// A counting input, how many events it emitted, and the acknowledgements it received.
type TestInput = (Box<dyn Input>, Arc<AtomicU64>, Arc<Mutex<Vec<Acked>>>);

fn input(name: &str, batches: u64, per_batch: u64) -> TestInput {
    let emitted = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let inp = CountingInput {
        batches,
        per_batch,
        emitted: emitted.clone(),
        tracker: AckTracker::new(),
        acked: acked.clone(),
    };
    let _ = name;
    (Box::new(inp), emitted, acked)
}

fn output(
    name: &str,
    inputs: Option<&[&str]>,
    permits: usize,
    hold: usize,
) -> (
    ExtraOutput,
    Arc<Mutex<Vec<String>>>,
    Arc<tokio::sync::Semaphore>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(tokio::sync::Semaphore::new(permits));
    let o = ExtraOutput {
        name: name.to_owned(),
        inputs: inputs.map(|l| l.iter().map(|s| s.to_string()).collect()),
        output: Box::new(HoldingOutput {
            seen: seen.clone(),
            release: release.clone(),
            hold_in_reverse: hold,
        }),
    };
    (o, seen, release)
}

fn empty_config(extra: &str) -> trawl::config::PipelineConfig {
    parse_str(
        "test.yaml",
        &format!("http: {{ enabled: false }}\n{extra}"),
        &|_| None,
    )
    .expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_input_name() {
    let (a, _, _) = input("a", 3, 10);
    let (b, _, _) = input("b", 2, 10);
    let (only_a, seen_a, _) = output("only_a", Some(&["a"]), 1000, 1);
    let (every, seen_all, _) = output("every", None, 1000, 1);
    let p = Pipeline::build_with_outputs(
        empty_config(""),
        vec![("a".into(), a), ("b".into(), b)],
        vec![only_a, every],
    )
    .expect("build");
    let (_t, shutdown) = shutdown_pair();
    let report = p.run(shutdown).await.unwrap();
    assert!(report.drained);
    let a_seen = seen_a.lock().unwrap().clone();
    assert_eq!(a_seen.len(), 30);
    assert!(a_seen.iter().all(|m| m.starts_with("a-")), "{a_seen:?}");
    let all = seen_all.lock().unwrap().clone();
    assert_eq!(all.len(), 50);
    assert_eq!(all.iter().filter(|m| m.starts_with("b-")).count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_output_bounds_what_the_input_produces() {
    let (a, emitted, _) = input("a", 1000, 10);
    // The output accepts 3 batches, then stalls until released.
    let (out, seen, release) = output("slow", None, 3, 1);
    let cfg = empty_config("pipeline: { batch_size: 10, queue_batches: 2 }\n");
    let p = Pipeline::build_with_outputs(cfg, vec![("a".into(), a)], vec![out]).expect("build");
    let (_t, shutdown) = shutdown_pair();
    let run = tokio::spawn(p.run(shutdown));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled_at = emitted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        emitted.load(Ordering::SeqCst),
        stalled_at,
        "input kept producing while the output stalled"
    );
    // Two queues of 2 batches, one batch in the router, one in the output, 3 delivered, one being
    // emitted: the input is held to a few batches, not the 1000 it wants to send.
    assert!(
        stalled_at <= 10 * 10,
        "input got {stalled_at} events ahead of a stalled output"
    );
    assert_eq!(seen.lock().unwrap().len(), 30);
    release.add_permits(10_000);
    let report = run.await.unwrap().unwrap();
    assert!(report.drained);
    assert_eq!(seen.lock().unwrap().len(), 10_000);
    assert_eq!(emitted.load(Ordering::SeqCst), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_arrive_in_order_after_every_output_confirmed() {
    let (a, _, acked) = input("a", 8, 5);
    // `first` settles in groups of 4 in reverse order; `second` holds everything until released.
    let (first, _, _) = output("first", None, 1000, 4);
    let (second, _, second_release) = output("second", None, 0, 1);
    let p =
        Pipeline::build_with_outputs(empty_config(""), vec![("a".into(), a)], vec![first, second])
            .expect("build");
    let (_t, shutdown) = shutdown_pair();
    let run = tokio::spawn(p.run(shutdown));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        acked.lock().unwrap().is_empty(),
        "acknowledged before the second output confirmed"
    );
    second_release.add_permits(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let partial: Vec<u64> = acked.lock().unwrap().iter().map(|a| a.seq).collect();
    // The first output settled batches 0-3 together; the second confirmed 0-2: exactly 0..3.
    assert_eq!(partial, vec![0, 1, 2]);
    second_release.add_permits(100);
    run.await.unwrap().unwrap();
    let all = acked.lock().unwrap().clone();
    assert_eq!(
        all.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    assert!(all.iter().all(|a| a.status == BatchStatus::Delivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_errors_are_all_reported() {
    let cfg = parse_str(
        "p.yaml",
        "inputs:\n  app: { type: stdin }\n  unused: { type: stdin }\noutputs:\n  o: { type: stdout, inputs: [app, ghost] }\n  d: { type: stdout, dead_letter: nowhere, inputs: [app] }\n",
        &|_| None,
    )
    .unwrap();
    let errs = Pipeline::build(cfg, Vec::new()).err().expect("must fail");
    let text = errs.to_string();
    assert!(
        text.contains("p.yaml:5:36: outputs.o.inputs: unknown input `ghost`"),
        "{text}"
    );
    assert!(
        text.contains("p.yaml:6:35: outputs.d.dead_letter: `nowhere` is not another output"),
        "{text}"
    );
    assert!(
        text.contains("input `unused` is not routed to any output"),
        "{text}"
    );
    assert_eq!(errs.0.len(), 3, "{text}");
}

/// Delivers two batches, then panics on the third: a bug in an output or in a library it
/// calls (librdkafka once did on a topic name with a NUL).
struct PanickingOutput {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Output for PanickingOutput {
    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let mut batches = 0;
            while let Some(mut batch) = ctx.rx.recv().await {
                batches += 1;
                if batches == 3 {
                    panic!("index out of bounds in a library");
                }
                self.seen.lock().unwrap().extend(
                    batch
                        .events_mut()
                        .iter()
                        .filter_map(|e| e.message().map(str::to_owned)),
                );
                batch.ack.delivered();
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_panics_ends_the_run_as_a_failure_and_only_what_it_delivered_is_acknowledged(
) {
    let (a, _, acked) = input("a", 1000, 10);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = ExtraOutput {
        name: "buggy".to_owned(),
        inputs: None,
        output: Box::new(PanickingOutput { seen: seen.clone() }),
    };
    let p = Pipeline::build_with_outputs(empty_config(""), vec![("a".into(), a)], vec![out])
        .expect("build");
    let (_t, shutdown) = shutdown_pair();
    // Before, the panicked task ended with no word: the input stalled on the full queue and
    // the run never ended.
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(shutdown))
        .await
        .expect("the run ends after the output panicked");
    let said = match outcome {
        Ok(report) => report.failures.join("; "),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        said.contains("buggy") && said.contains("index out of bounds in a library"),
        "the failure names the output and its panic: {said}"
    );
    assert_eq!(seen.lock().unwrap().len(), 20);
    let acked = acked.lock().unwrap().clone();
    let delivered: Vec<u64> = acked
        .iter()
        .filter(|a| a.status == BatchStatus::Delivered)
        .map(|a| a.seq)
        .collect();
    assert_eq!(
        delivered,
        vec![0, 1],
        "only the two delivered batches: {acked:?}"
    );
}
