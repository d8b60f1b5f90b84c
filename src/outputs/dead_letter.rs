//! Dead letters: events an output rejected for good (a mapping error, a message over the size
//! limit, a template field missing) go, with the reason, to the output named by `dead_letter:`,
//! or are counted and logged once when there is none. Nothing is dropped silently.

use super::OutputContext;
use crate::event::{Batch, BatchAck, Event, Value};
use crate::pipeline::channel::{BatchSender, Closed};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
}

impl DeadLetters {
    pub fn new(ctx: &OutputContext) -> DeadLetters {
        DeadLetters {
            output: ctx.name.clone(),
            target: ctx.dead_letter.clone(),
            metrics: ctx.metrics.clone(),
            logged: Arc::default(),
        }
    }

    /// For a stage in front of an output (its disk buffer), which has no `OutputContext`.
    pub fn for_stage(
        output: Arc<str>,
        target: Option<BatchSender>,
        metrics: Arc<ComponentMetrics>,
    ) -> DeadLetters {
        DeadLetters {
            output,
            target,
            metrics,
            logged: Arc::default(),
        }
    }

    /// Hands `rejected` on. The dead-letter batch carries a fork of `ack`, so the original batch
    /// is settled only once its dead letters are written. Counted in `events_failed`; each kind
    /// of rejection is logged once per output.
    pub async fn send(&self, rejected: Vec<Rejection>, ack: &BatchAck) {
        if rejected.is_empty() {
            return;
        }
        ComponentMetrics::add(&self.metrics.events_failed, rejected.len() as u64);
        self.log_once(&rejected[0]);
        let Some(target) = &self.target else {
            return;
        };
        let events = rejected.into_iter().map(|r| self.letter(r)).collect();
        if let Err(Closed(b)) = target.send(Batch::new(events, ack.fork())).await {
            // The dead-letter output is gone (shutdown past its deadline): the batch must be read
            // again, so this copy fails.
            b.ack.failed();
        }
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
            tracing::warn!(output = %self.output, kind = %r.kind, reason = %r.reason,
                dead_letter = self.target.is_some(),
                "event rejected for good (logged once per kind; counted in trawl_events_failed_total)");
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
