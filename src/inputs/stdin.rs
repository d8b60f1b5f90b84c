//! The `stdin` input: one event per line of standard input, binary-safe (invalid UTF-8 is
//! replaced and counted). Reads on its own thread with `poll`, so that shutdown can stop it
//! between reads and still hand on every line already read. With `multiline:` the lines of
//! one event (a stack trace) are joined; one still waiting is sent after its timeout.

use super::lines::{LineInfo, LineSplitter};
use super::multiline::{self, Line, Multiline};
use super::BadLines;
use super::{BoxFuture, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError};
use crate::event::{Batch, BatchAck, BlockLine, LineBlock};
use crate::telemetry::metrics::ComponentMetrics;
use chrono::Utc;
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Longer lines are cut to this size and flagged `log.flags: [truncated]`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Joins the lines of one event (stack traces), as the file input's `multiline`.
    #[serde(default)]
    pub multiline: Option<multiline::Config>,
}

fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}

pub struct Stdin {
    config: Config,
    multiline: Option<Multiline>,
}

impl Stdin {
    /// Without `multiline` (its pattern is compiled by `build`).
    pub fn new(config: Config) -> Stdin {
        Stdin {
            config,
            multiline: None,
        }
    }
}

pub fn build(spec: &ComponentSpec) -> Result<Stdin, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    super::check_line_limit(spec, "max_line_bytes", config.max_line_bytes)?;
    let multiline = multiline::for_input(config.multiline.as_ref(), spec)?;
    Ok(Stdin { config, multiline })
}

impl Input for Stdin {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            // The thread reports its end on a channel rather than through a blocking-pool
            // join: at the end of input the runtime may shut down before such a join task
            // starts, and its cancellation was logged as "input failed" on a clean run.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("trawl-stdin".into())
                .spawn(move || {
                    let _ = done_tx.send(read_loop(&self.config, self.multiline, &ctx));
                })?;
            done_rx
                .await
                .map_err(|_| anyhow::anyhow!("stdin reader thread panicked"))?
        })
    }
}

/// Builds line events into batches and sends them downstream, joining lines first when
/// `multiline` is set.
pub(crate) struct LineBatcher<'a> {
    ctx: &'a InputContext,
    lines: LineBlock,
    bad_lines: BadLines,
    now: chrono::DateTime<Utc>,
    clock: Instant,
    multiline: Option<Multiline>,
    /// Bytes read since the last batch was sent: counted once per batch, not once per line.
    bytes: u64,
}

impl<'a> LineBatcher<'a> {
    pub(crate) fn new(ctx: &'a InputContext, multiline: Option<Multiline>) -> Self {
        LineBatcher {
            ctx,
            lines: LineBlock::with_capacity(ctx.name.clone(), ctx.batch_size, 0),
            bad_lines: BadLines::default(),
            now: Utc::now(),
            clock: Instant::now(),
            multiline,
            bytes: 0,
        }
    }

    pub(crate) fn set_now(&mut self) {
        self.now = Utc::now();
        self.clock = Instant::now();
    }

    pub(crate) fn line(&mut self, line: &[u8], info: LineInfo) {
        self.bytes += info.end - info.start;
        // Empty lines carry nothing to search or parse; the file and socket inputs skip them
        // too (as Filebeat and Fluent Bit do), so one pipeline behaves the same on any input.
        // With multiline they go to the joiner: a blank line can belong to a trace (Go).
        if line.is_empty() && !info.truncated && self.multiline.is_none() {
            return;
        }
        if self.multiline.is_none() {
            // Straight to the batch's text buffer: no `Line` of its own.
            let block_line = BlockLine::new(info.start, self.now, None, info.truncated, false);
            if self.lines.push_bytes(None, None, None, line, block_line) {
                self.bad_lines.replaced(self.ctx, info.start);
            }
            return;
        }
        let (line, replaced) = Line::decoded(line, info);
        if replaced {
            self.bad_lines.replaced(self.ctx, info.start);
        }
        match self.multiline.take() {
            Some(mut m) => {
                m.push(line, self.clock, &mut |l| self.event(l));
                self.multiline = Some(m);
            }
            None => self.event(line),
        }
    }

    fn event(&mut self, line: Line) {
        if line.text.is_empty() && !line.truncated {
            return;
        }
        let block_line = BlockLine::new(line.start, self.now, None, line.truncated, line.multiline);
        self.lines.push(None, None, None, &line.text, block_line);
    }

    /// When the event being joined is due, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.multiline.as_ref().and_then(|m| m.deadline())
    }

    /// Moves the event being joined to the batch: its timeout passed (`all`: or the input ends).
    pub(crate) fn flush_joined(&mut self, all: bool) {
        if let Some(mut m) = self.multiline.take() {
            let now = Instant::now();
            if all {
                m.flush(&mut |l| self.event(l));
            } else {
                m.flush_if_due(now, &mut |l| self.event(l));
            }
            self.multiline = Some(m);
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.lines.len() >= self.ctx.batch_size
    }

    /// Sends what is batched; false when the pipeline is gone.
    pub(crate) fn flush(&mut self) -> bool {
        ComponentMetrics::add(&self.ctx.metrics.bytes_in, std::mem::take(&mut self.bytes));
        if self.lines.is_empty() {
            return true;
        }
        // The next text buffer sized like this one's (within reason), not grown line by line.
        let text = self.lines.text_len().min(1 << 20);
        let lines = std::mem::replace(
            &mut self.lines,
            LineBlock::with_capacity(self.ctx.name.clone(), self.ctx.batch_size, text),
        );
        // stdin cannot be read again: a batch an output fails is lost, counted and logged.
        let ack = BatchAck::lost_if_failed(&self.ctx.metrics, lines.len(), None);
        self.ctx
            .emit_blocking(Batch::from_lines(lines, ack))
            .is_ok()
    }
}

/// Waits up to `timeout_ms` for fd 0 to be readable.
fn wait_readable(timeout_ms: i32) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call, and nfds is 1.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

fn read_fd0(buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn read_loop(
    config: &Config,
    multiline: Option<Multiline>,
    ctx: &InputContext,
) -> anyhow::Result<()> {
    let mut splitter = LineSplitter::new(config.max_line_bytes.as_usize(), 0);
    let mut batcher = LineBatcher::new(ctx, multiline);
    let mut buf = vec![0u8; 256 * 1024];
    let mut draining = false;
    loop {
        if !draining && ctx.shutdown.is_triggered() {
            // Hand on what the pipe already holds, then stop: no line stdin delivered is lost.
            draining = true;
        }
        let ready = if draining {
            wait_readable(0)?
        } else {
            // Wake up for an event being joined whose timeout comes first.
            let wait = batcher.deadline().map_or(200, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .clamp(1, 200) as i32
            });
            wait_readable(wait)?
        };
        if !ready {
            if draining {
                break;
            }
            batcher.flush_joined(false);
            if !batcher.flush() {
                return Ok(());
            }
            continue;
        }
        let n = match read_fd0(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(anyhow::anyhow!("reading stdin: {e}")),
        };
        if n == 0 {
            break;
        }
        batcher.set_now();
        let mut closed = false;
        splitter.push(&buf[..n], &mut |line, info| {
            batcher.line(line, info);
            if batcher.is_full() && !batcher.flush() {
                closed = true;
            }
        });
        if closed {
            return Ok(());
        }
        // Ship the partial batch as soon as the producer pauses, so lines are not held back.
        if !wait_readable(0)? && !batcher.flush() {
            return Ok(());
        }
    }
    splitter.finish(&mut |line, info| batcher.line(line, info));
    batcher.flush_joined(true);
    batcher.flush();
    Ok(())
}
