//! Dead letters: events an output rejected for good (a mapping error, a message over the size
//! limit, a template field missing, retries spent on one item) go, with the reason, to the output
//! named by `dead_letter:`, or else to `data_dir/dead_letter/<output>.jsonl` (size-capped,
//! rotated). Nothing is dropped silently: each is counted, and each kind logged once.

use super::file::{self, Rotating};
use super::stdout::{write_event, Format};
use super::OutputContext;
use crate::config::ByteSize;
use crate::event::{Batch, BatchAck, Event, Value};
use crate::pipeline::channel::{BatchSender, Closed};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Size of the default dead-letter file before it is rotated, and rotated files kept: at most
/// 256 MiB of disk per output, the oldest dead letters going first.
const DEFAULT_FILE_MAX_SIZE: ByteSize = ByteSize(64 << 20);
const DEFAULT_FILE_KEEP: u32 = 3;

/// One event rejected for good, with why.
#[derive(Debug)]
pub struct Rejection {
    pub event: Event,
    /// Short machine-readable kind (`mapper_parsing_exception`, `message_too_large`...).
    pub kind: String,
    /// The destination's explanation.
    pub reason: String,
}

/// An output's way to its dead letters. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    output: Arc<str>,
    target: Option<BatchSender>,
    metrics: Arc<ComponentMetrics>,
    logged: Arc<Mutex<HashSet<String>>>,
    /// Where dead letters go without a `dead_letter:` output.
    default_path: PathBuf,
    /// Opened on the first dead letter, so that outputs without any leave no file.
    default_file: Arc<Mutex<Option<Rotating>>>,
}

impl DeadLetters {
    pub fn new(ctx: &OutputContext) -> DeadLetters {
        DeadLetters {
            output: ctx.name.clone(),
            target: ctx.dead_letter.clone(),
            metrics: ctx.metrics.clone(),
            logged: Arc::default(),
            default_path: ctx
                .data_dir
                .join("dead_letter")
                .join(format!("{}.jsonl", ctx.name)),
            default_file: Arc::default(),
        }
    }

    /// For a stage in front of an output (its disk buffer), which has no `OutputContext`.
    pub fn for_stage(
        output: Arc<str>,
        target: Option<BatchSender>,
        metrics: Arc<ComponentMetrics>,
        data_dir: &std::path::Path,
    ) -> DeadLetters {
        DeadLetters {
            default_path: data_dir.join("dead_letter").join(format!("{output}.jsonl")),
            output,
            target,
            metrics,
            logged: Arc::default(),
            default_file: Arc::default(),
        }
    }

    /// Hands `rejected` on. The dead-letter batch carries a fork of `ack`, so the original batch
    /// is settled only once its dead letters are written; when they cannot be written, that
    /// fork fails the batch (its input must read it again). Counted in `events_failed`; each
    /// kind of rejection is logged once per output.
    pub async fn send(&self, rejected: Vec<Rejection>, ack: &BatchAck) {
        if rejected.is_empty() {
            return;
        }
        ComponentMetrics::add(&self.metrics.events_failed, rejected.len() as u64);
        self.log_once(&rejected[0]);
        let events: Vec<Event> = rejected.into_iter().map(|r| self.letter(r)).collect();
        match &self.target {
            Some(target) => {
                if let Err(Closed(b)) = target.send(Batch::new(events, ack.fork())).await {
                    // The dead-letter output is gone (shutdown past its deadline): the batch
                    // must be read again, so this copy fails.
                    b.ack.failed();
                }
            }
            None => {
                if let Err(e) = self.write_default(&events) {
                    tracing::error!(output = %self.output, path = %self.default_path.display(),
                        error = %e, "cannot write dead letters; their batch is failed");
                    ack.fork().failed();
                }
            }
        }
    }

    /// Appends to the default dead-letter file and flushes it to the kernel (it survives
    /// `kill -9`). Written in place: dead letters are rare and small next to what is delivered.
    fn write_default(&self, events: &[Event]) -> std::io::Result<()> {
        let mut guard = self
            .default_file
            .lock()
            .map_err(|_| std::io::Error::other("dead-letter file lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(Rotating::open(file::Config {
                path: self.default_path.clone(),
                format: Format::Json,
                max_size: DEFAULT_FILE_MAX_SIZE,
                max_files: DEFAULT_FILE_KEEP,
                sync: false,
            })?);
        }
        let Some(f) = guard.as_mut() else {
            return Err(std::io::Error::other("dead-letter file not open"));
        };
        let mut line = Vec::with_capacity(1024);
        for e in events {
            line.clear();
            write_event(&mut line, e, Format::Json)?;
            f.write_line(&line)?;
        }
        f.commit()
    }

    /// True when rejected events go somewhere; false when they are only counted.
    pub fn has_target(&self) -> bool {
        self.target.is_some()
    }

    fn log_once(&self, r: &Rejection) {
        let first = self
            .logged
            .lock()
            .map(|mut l| l.insert(r.kind.clone()))
            .unwrap_or(false);
        if first {
            let to = match &self.target {
                Some(_) => "the dead_letter output".to_owned(),
                None => self.default_path.display().to_string(),
            };
            tracing::warn!(output = %self.output, kind = %r.kind, reason = %r.reason, to = %to,
                "event rejected for good, sent to the dead letters (logged once per kind; counted in trawl_events_failed_total)");
        }
    }

    /// The dead-letter document: the original event as JSON text in `event.original` (so it
    /// can never be rejected again for its shape), the reason in `error.*`, and which output
    /// rejected it.
    fn letter(&self, r: Rejection) -> Event {
        let original = r.event.to_json_string();
        let ts = r.event.timestamp().unwrap_or_else(chrono::Utc::now);
        let mut e = Event::new(r.event.meta.input.clone(), ts);
        e.meta.origin = r.event.meta.origin.clone();
        if let Some(Value::String(m)) = r.event.fields.get("message") {
            e.insert("message", m.as_str());
        }
        e.insert("error.type", r.kind);
        e.insert("error.message", r.reason);
        e.insert("trawl.dead_letter.output", &*self.output);
        e.insert("event.original", original);
        e
    }
}
