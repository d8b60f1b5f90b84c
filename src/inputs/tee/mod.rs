//! The `tee` input: the lines of a child process run by `trawl tee`, one event per line with
//! `stream: stdout|stderr`. The child's bytes reach it through a `Spool`, so the pipeline can
//! pause (back-pressure) while the child never waits; `forward` ships the same lines to a sidecar.

pub mod forward;
pub mod spool;

use super::lines::{LineInfo, LineSplitter};
use super::{BoxFuture, Input, InputContext};
use crate::event::{Batch, Event, Value};
use crate::telemetry::metrics::ComponentMetrics;
use chrono::Utc;
use spool::{Chunk, Pop, Spool, StreamKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Splits the chunks of both streams into lines, each stream on its own.
pub struct StreamLines {
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl StreamLines {
    pub fn new(max_line_bytes: usize) -> StreamLines {
        StreamLines {
            stdout: LineSplitter::new(max_line_bytes, 0),
            stderr: LineSplitter::new(max_line_bytes, 0),
        }
    }

    pub fn push(&mut self, chunk: &Chunk, emit: &mut dyn FnMut(StreamKind, &[u8], LineInfo)) {
        let kind = chunk.stream;
        let splitter = match kind {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        };
        splitter.push(&chunk.data, &mut |l, i| emit(kind, l, i));
    }

    /// Unterminated last lines, at the end of the child's output.
    pub fn finish(&mut self, emit: &mut dyn FnMut(StreamKind, &[u8], LineInfo)) {
        self.stdout
            .finish(&mut |l, i| emit(StreamKind::Stdout, l, i));
        self.stderr
            .finish(&mut |l, i| emit(StreamKind::Stderr, l, i));
    }
}

pub struct TeeInput {
    spool: Arc<Spool>,
    max_line_bytes: usize,
}

impl TeeInput {
    pub fn new(spool: Arc<Spool>, max_line_bytes: usize) -> TeeInput {
        TeeInput {
            spool,
            max_line_bytes,
        }
    }
}

impl Input for TeeInput {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let handle = std::thread::Builder::new()
                .name("trawl-tee".into())
                .spawn(move || ship(&self.spool, self.max_line_bytes, &ctx))?;
            tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("tee shipper thread panicked"))
        })
    }
}

fn line_event(
    ctx: &InputContext,
    now: chrono::DateTime<Utc>,
    kind: StreamKind,
    line: &[u8],
    info: LineInfo,
    logged: &mut bool,
) -> Event {
    let message = super::lines::to_text(line).unwrap_or_else(|replaced| {
        ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        if !*logged {
            *logged = true;
            tracing::warn!(input = %ctx.name, "invalid UTF-8 replaced with U+FFFD (logged once; counted in trawl_errors_total)");
        }
        replaced
    });
    let mut e = Event::from_message(ctx.name.clone(), now, message);
    e.fields.insert("stream", Value::from(kind.as_str()));
    if info.truncated {
        e.insert("log.flags", Value::Array(vec![Value::from("truncated")]));
    }
    e
}

/// Takes chunks from the spool until the child's output ends, emitting line events.
fn ship(spool: &Spool, max_line: usize, ctx: &InputContext) {
    let mut lines = StreamLines::new(max_line);
    let mut events: Vec<Event> = Vec::with_capacity(ctx.batch_size);
    let mut logged = false;
    let flush = |events: &mut Vec<Event>| -> bool {
        if events.is_empty() {
            return true;
        }
        let batch = std::mem::replace(events, Vec::with_capacity(ctx.batch_size));
        ctx.emit_blocking(Batch::unacked(batch)).is_ok()
    };
    loop {
        match spool.pop(Duration::from_millis(200)) {
            Pop::Chunk(chunk) => {
                ComponentMetrics::add(&ctx.metrics.bytes_in, chunk.data.len() as u64);
                // One clock read per chunk: its lines were written within moments of each other.
                let now = Utc::now();
                let mut closed = false;
                lines.push(&chunk, &mut |kind, l, i| {
                    events.push(line_event(ctx, now, kind, l, i, &mut logged));
                    if events.len() >= ctx.batch_size && !flush(&mut events) {
                        closed = true;
                    }
                });
                if closed {
                    return;
                }
            }
            Pop::Empty => {
                if !flush(&mut events) {
                    return;
                }
            }
            Pop::Closed => break,
        }
        if spool.queued_bytes() == 0 && !flush(&mut events) {
            return;
        }
    }
    let now = Utc::now();
    lines.finish(&mut |kind, l, i| events.push(line_event(ctx, now, kind, l, i, &mut logged)));
    flush(&mut events);
}
