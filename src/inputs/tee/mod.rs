//! The `tee` input: the lines of a child process run by `trawl tee`, one event per line with
//! `stream: stdout|stderr`. The child's bytes reach it through a `Spool`, so the pipeline can
//! pause (back-pressure) while the child waits only once the spool is full; `forward` ships the
//! same lines to a sidecar and keeps them until it acknowledges them.
//! With `--multiline` each stream's lines are joined on their own (a trace on stderr never
//! takes in stdout lines written meanwhile).

pub mod ack;
pub mod forward;
pub mod passthrough;
pub mod spool;
pub mod stream_lines;

use super::lines::LineInfo;
use super::multiline::{self, Line, Multiline};
use super::BadLines;
use super::{BoxFuture, Input, InputContext};
use crate::event::{AckTracker, Batch, BatchAck, BatchStatus, Event, Value};
use crate::telemetry::metrics::ComponentMetrics;
use chrono::Utc;
use spool::{Pop, Spool, StreamKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use stream_lines::StreamLines;

pub struct TeeInput {
    spool: Arc<Spool>,
    max_line_bytes: usize,
    multiline: Option<Multiline>,
    unshipped: Arc<Unshipped>,
}

impl TeeInput {
    pub fn new(spool: Arc<Spool>, max_line_bytes: usize, multiline: Option<Multiline>) -> TeeInput {
        TeeInput {
            spool,
            max_line_bytes,
            multiline,
            unshipped: Arc::new(Unshipped::default()),
        }
    }

    /// What `trawl tee` asks, when it stops waiting, about the events it handed on.
    pub fn unshipped(&self) -> Arc<Unshipped> {
        self.unshipped.clone()
    }
}

/// The events handed to the pipeline that no output has delivered (or dead-lettered): still
/// in flight, or failed. Once the spool is empty they are all that `trawl tee` can still lose,
/// so when its flush deadline passes it reports them instead of exiting in silence.
#[derive(Default)]
pub struct Unshipped {
    state: Mutex<UnshippedState>,
}

#[derive(Default)]
struct UnshippedState {
    tracker: AckTracker,
    /// Events per batch still in flight, oldest first (the tracker settles them in order).
    in_flight: VecDeque<u64>,
    failed: u64,
}

impl Unshipped {
    fn track(&self, events: u64) -> BatchAck {
        match self.state.lock() {
            Ok(mut st) => {
                let (_, ack) = st.tracker.track();
                st.in_flight.push_back(events);
                ack
            }
            Err(_) => BatchAck::none(),
        }
    }

    /// Events not delivered so far.
    pub fn events(&self) -> u64 {
        let Ok(mut st) = self.state.lock() else {
            return 0;
        };
        for settled in st.tracker.drain() {
            let n = st.in_flight.pop_front().unwrap_or(0);
            if settled.status == BatchStatus::Failed {
                st.failed += n;
            }
        }
        st.failed + st.in_flight.iter().sum::<u64>()
    }
}

impl Input for TeeInput {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let handle = std::thread::Builder::new()
                .name("trawl-tee".into())
                .spawn(move || {
                    ship(
                        &self.spool,
                        self.max_line_bytes,
                        self.multiline,
                        &self.unshipped,
                        &ctx,
                    )
                })?;
            tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("tee shipper thread panicked"))
        })
    }
}

fn to_line(
    ctx: &InputContext,
    kind: StreamKind,
    line: &[u8],
    info: LineInfo,
    bad_lines: &BadLines,
) -> Line {
    let (line, replaced) = Line::decoded(line, info);
    if replaced {
        bad_lines.replaced(ctx, info.start);
    }
    Line {
        stream: Some(kind.as_str()),
        ..line
    }
}

fn line_event(ctx: &InputContext, now: chrono::DateTime<Utc>, line: Line) -> Event {
    let flags = multiline::flags(&line);
    let mut e = Event::from_message(ctx.name.clone(), now, line.text);
    if let Some(stream) = line.stream {
        e.fields.insert("stream", Value::from(stream));
    }
    if let Some(flags) = flags {
        e.insert("log.flags", flags);
    }
    e
}

/// One joiner per stream, or none.
struct Joiners {
    stdout: Option<Multiline>,
    stderr: Option<Multiline>,
}

impl Joiners {
    fn new(multiline: Option<Multiline>) -> Joiners {
        Joiners {
            stderr: multiline.clone(),
            stdout: multiline,
        }
    }

    fn push(&mut self, kind: StreamKind, line: Line, out: &mut dyn FnMut(Line)) {
        let joiner = match kind {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        };
        match joiner {
            Some(m) => m.push(line, std::time::Instant::now(), out),
            None => out(line),
        }
    }

    /// Sends the events whose timeout passed (`all`: every event being joined, at the end).
    fn flush(&mut self, all: bool, out: &mut dyn FnMut(Line)) {
        let now = std::time::Instant::now();
        for m in [&mut self.stdout, &mut self.stderr].into_iter().flatten() {
            if all {
                m.flush(out);
            } else {
                m.flush_if_due(now, out);
            }
        }
    }
}

/// Takes chunks from the spool until the child's output ends, emitting line events.
fn ship(
    spool: &Spool,
    max_line: usize,
    multiline: Option<Multiline>,
    unshipped: &Unshipped,
    ctx: &InputContext,
) {
    let mut lines = StreamLines::new(max_line);
    let mut joiners = Joiners::new(multiline);
    let mut events: Vec<Event> = Vec::with_capacity(ctx.batch_size);
    let bad_lines = BadLines::default();
    let flush = |events: &mut Vec<Event>| -> bool {
        if events.is_empty() {
            return true;
        }
        let batch = std::mem::replace(events, Vec::with_capacity(ctx.batch_size));
        let ack = unshipped.track(batch.len() as u64);
        ctx.emit_blocking(Batch::new(batch, ack)).is_ok()
    };
    loop {
        match spool.pop(Duration::from_millis(200)) {
            Pop::Chunk(chunk) => {
                ComponentMetrics::add(&ctx.metrics.bytes_in, chunk.data.len() as u64);
                // One clock read per chunk: its lines were written within moments of each other.
                let now = Utc::now();
                let mut closed = false;
                lines.push(&chunk, &mut |kind, l, i| {
                    let line = to_line(ctx, kind, l, i, &bad_lines);
                    joiners.push(kind, line, &mut |line| {
                        events.push(line_event(ctx, now, line))
                    });
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
        // Checked after every chunk too: stdout may keep flowing while a trace on stderr
        // waits for its end.
        joiners.flush(false, &mut |line| {
            events.push(line_event(ctx, Utc::now(), line))
        });
        if spool.queued_bytes() == 0 && !flush(&mut events) {
            return;
        }
    }
    let now = Utc::now();
    lines.finish(&mut |kind, l, i| {
        let line = to_line(ctx, kind, l, i, &bad_lines);
        joiners.push(kind, line, &mut |line| {
            events.push(line_event(ctx, now, line))
        });
    });
    joiners.flush(true, &mut |line| events.push(line_event(ctx, now, line)));
    flush(&mut events);
}
