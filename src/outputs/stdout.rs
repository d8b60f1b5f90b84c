//! The `stdout` output: one JSON object per line (default), pretty JSON, or the message only.
//! Writes on its own thread because stdout is blocking I/O; a batch is acknowledged once it
//! has been written and flushed. A write error (the reader of a pipe went away) ends the output,
//! which stops the pipeline.

use super::{Output, OutputContext};
use crate::event::{json, Batch, Event, Value};
use crate::inputs::BoxFuture;
use crate::telemetry::metrics::ComponentMetrics;
use serde::Deserialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// Indented JSON, for reading by eye.
    Pretty,
    /// The `message` field only (events without one are written as JSON).
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub format: Format,
}

pub struct Stdout {
    config: Config,
}

impl Stdout {
    pub fn new(config: Config) -> Stdout {
        Stdout { config }
    }
}

/// Appends one event in `format` followed by a newline.
pub fn write_event(out: &mut Vec<u8>, event: &Event, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => json::write_map(out, &event.fields),
        Format::Pretty => serde_json::to_writer_pretty(&mut *out, &event.fields)?,
        Format::Text => match event.fields.get("message") {
            Some(Value::String(m)) => out.extend_from_slice(m.as_bytes()),
            _ => json::write_map(out, &event.fields),
        },
    }
    out.push(b'\n');
    Ok(())
}

/// Appends each event of `batch` to `out` as `write_event` does, calling `each` after each one
/// (to write out and clear `out`, or let it grow). A batch of unbuilt lines is written from its
/// lines, without building events, in the formats that need no more than JSON or the text.
pub fn write_each(
    batch: &mut Batch,
    format: Format,
    out: &mut Vec<u8>,
    mut each: impl FnMut(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match (batch.lines(), format) {
        (Some(lines), Format::Json | Format::Text) => {
            for i in 0..lines.len() {
                match (format, lines.message(i)) {
                    (Format::Text, Some(m)) => out.extend_from_slice(m.as_bytes()),
                    _ => lines.write_json(i, out),
                }
                out.push(b'\n');
                each(out)?;
            }
        }
        _ => {
            for e in batch.events_mut().iter() {
                write_event(out, e, format)?;
                each(out)?;
            }
        }
    }
    Ok(())
}

/// Events are written into one buffer and handed to stdout when it holds this much (and at the
/// end of each batch): one write per buffer, and no more held than this past one event.
const WRITE_CHUNK: usize = 256 * 1024;

/// Writes a batch's events and flushes them; returns the bytes written.
fn write_batch(
    stdout: &mut impl Write,
    buf: &mut Vec<u8>,
    batch: &mut Batch,
    format: Format,
) -> std::io::Result<u64> {
    let mut bytes = 0u64;
    buf.clear();
    write_each(batch, format, buf, |buf| {
        if buf.len() >= WRITE_CHUNK {
            stdout.write_all(buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
        Ok(())
    })?;
    stdout.write_all(buf)?;
    bytes += buf.len() as u64;
    // One event larger than the chunk leaves a large buffer behind: give it back.
    if buf.capacity() > 2 * WRITE_CHUNK {
        *buf = Vec::with_capacity(WRITE_CHUNK);
    } else {
        buf.clear();
    }
    stdout.flush()?;
    Ok(bytes)
}

impl Output for Stdout {
    /// Writes JSON or text straight from lines (see `stdout::write_each`).
    fn reads_fields(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        let format = self.config.format;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let stdout = std::io::stdout();
                let mut stdout = stdout.lock();
                let mut buf = Vec::with_capacity(WRITE_CHUNK);
                while let Some(mut batch) = ctx.rx.blocking_recv() {
                    let n = batch.len() as u64;
                    ComponentMetrics::add(&ctx.metrics.events_in, n);
                    let written = write_batch(&mut stdout, &mut buf, &mut batch, format);
                    match written {
                        Ok(bytes) => {
                            ComponentMetrics::add(&ctx.metrics.events_out, n);
                            ComponentMetrics::add(&ctx.metrics.bytes_out, bytes);
                            batch.ack.delivered();
                        }
                        Err(e) => {
                            ComponentMetrics::add(&ctx.metrics.events_failed, n);
                            batch.ack.failed();
                            // A closed or broken stdout does not come back: ending here closes
                            // this output's queue (what is sent to it fails, so inputs keep
                            // their offsets) and stops the pipeline.
                            return Err(anyhow::anyhow!("writing to stdout: {e}"));
                        }
                    }
                }
                Ok(())
            })
            .await?
        })
    }
}
