//! Processors on more than one core (`pipeline.workers`): worker threads, each with its own
//! copy of the processor chain, take whole batches from a bounded queue; the router numbers the
//! batches it hands out and passes them on strictly in that order, so per-input order and the
//! order in which inputs see their acknowledgements are the same as with one thread.

use super::route::Step;
use crate::event::{Batch, Value};
use crate::processors::{condition::Condition, Processor, Verdict};
use crate::telemetry::metrics::ComponentMetrics;
use crate::telemetry::tap::TapPoint;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// What a step needs to run on an event, whichever thread runs it.
pub(crate) struct StepRef<'a> {
    pub processor: &'a mut dyn Processor,
    pub when: Option<&'a Condition>,
    pub metrics: &'a ComponentMetrics,
    pub tap: &'a TapPoint,
}

impl<'a> From<&'a mut Step> for StepRef<'a> {
    fn from(s: &'a mut Step) -> StepRef<'a> {
        StepRef {
            processor: s.processor.as_mut(),
            when: s.when.as_ref(),
            metrics: &s.metrics,
            tap: &s.tap,
        }
    }
}

/// Adds `host` to the events that have none, then runs the chain over them, counting and
/// showing each step's result to its tap point.
pub(crate) fn process<'a>(
    batch: &mut Batch,
    host: &Value,
    steps: impl Iterator<Item = StepRef<'a>>,
) {
    batch.set_host(host);
    let mut steps = steps.peekable();
    if steps.peek().is_none() {
        // No processor reads the events: a batch of lines stays unbuilt.
        return;
    }
    let events = batch.events_mut();
    for step in steps {
        let before = events.len() as u64;
        ComponentMetrics::add(&step.metrics.events_in, before);
        events.retain_mut(|event| {
            if let Some(when) = step.when {
                if !when.matches(event) {
                    return true;
                }
            }
            step.processor.process(event) == Verdict::Keep
        });
        let after = events.len() as u64;
        ComponentMetrics::add(&step.metrics.events_out, after);
        ComponentMetrics::add(&step.metrics.events_dropped, before - after);
        step.tap.offer(events);
    }
}

/// One worker's copy of a step: its own processor, the shared counters and tap point.
struct WorkerStep {
    processor: Box<dyn Processor>,
    when: Option<Condition>,
    metrics: Arc<ComponentMetrics>,
    tap: Arc<TapPoint>,
}

/// A batch handed to the workers, numbered in the order the router received it.
struct Job {
    seq: u64,
    batch: Batch,
}

/// A processed batch; `None` when a processor panicked on it (the batch, dropped unsettled,
/// counts as failed for its input, which will not move past it).
pub(crate) struct Done {
    pub seq: u64,
    pub batch: Option<Batch>,
}

/// The running worker threads of one processor chain.
pub(crate) struct Pool {
    jobs: SyncSender<Job>,
    pub results: tokio::sync::mpsc::Receiver<Done>,
    /// Most batches handed out and not yet passed on: bounds both queues and the reordering.
    pub capacity: usize,
}

impl Pool {
    /// Starts `workers` threads over copies of `steps`; `None` when one thread is asked, the
    /// chain is empty (nothing to spread) or one of its processors cannot be copied.
    pub fn start(steps: &[Step], workers: usize, host: &Value) -> Option<Pool> {
        if workers < 2 || steps.is_empty() {
            return None;
        }
        let mut chains = Vec::with_capacity(workers);
        for _ in 0..workers {
            let mut chain = Vec::with_capacity(steps.len());
            for s in steps {
                let Some(processor) = s.processor.fork() else {
                    tracing::info!(processor = %s.metrics.name, "this processor keeps state across events: the processors run on one thread");
                    return None;
                };
                chain.push(WorkerStep {
                    processor,
                    when: s.when.clone(),
                    metrics: s.metrics.clone(),
                    tap: s.tap.clone(),
                });
            }
            chains.push(chain);
        }
        let capacity = workers * 2;
        let (jobs, job_rx) = sync_channel::<Job>(capacity);
        let (done_tx, results) = tokio::sync::mpsc::channel(capacity);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for (i, chain) in chains.into_iter().enumerate() {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let host = host.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("trawl-proc-{i}"))
                .spawn(move || work(chain, &job_rx, &done_tx, &host));
            if let Err(e) = spawned {
                // The threads already started end when `jobs` is dropped with this pool.
                tracing::warn!(error = %e, "cannot start processor threads: the processors run on one thread");
                return None;
            }
        }
        Some(Pool {
            jobs,
            results,
            capacity,
        })
    }

    /// Hands a batch to the workers; gives it back if none can take it (the caller keeps
    /// at most `capacity` batches out, so the queue has room while the workers run).
    pub fn submit(&self, seq: u64, batch: Batch) -> Result<(), Batch> {
        match self.jobs.try_send(Job { seq, batch }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => Err(j.batch),
        }
    }
}

fn work(
    mut chain: Vec<WorkerStep>,
    jobs: &Mutex<Receiver<Job>>,
    done: &tokio::sync::mpsc::Sender<Done>,
    host: &Value,
) {
    loop {
        // One worker waits on the queue while holding the lock; the others wait for the lock.
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let Job { seq, mut batch } = job;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let steps = chain.iter_mut().map(|s| StepRef {
                processor: s.processor.as_mut(),
                when: s.when.as_ref(),
                metrics: &s.metrics,
                tap: &s.tap,
            });
            process(&mut batch, host, steps);
            batch
        }));
        let batch = match outcome {
            Ok(b) => Some(b),
            Err(_) => {
                tracing::error!(
                    "a processor panicked: its batch is not delivered and its input stops there"
                );
                None
            }
        };
        if done.blocking_send(Done { seq, batch }).is_err() {
            return;
        }
    }
}
