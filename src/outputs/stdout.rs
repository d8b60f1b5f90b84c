//! The `stdout` output: one JSON object per line (default), pretty JSON, or the message only.
//! Writes on its own thread because stdout is blocking I/O; a batch is acknowledged once it
//! has been written and flushed. A write error (the reader of a pipe went away) ends the output,
//! which stops the pipeline.

use super::{Output, OutputContext};
use crate::event::{Event, Value};
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

/// Writes one event in `format` followed by a newline.
pub fn write_event(w: &mut impl Write, event: &Event, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => serde_json::to_writer(&mut *w, &event.fields)?,
        Format::Pretty => serde_json::to_writer_pretty(&mut *w, &event.fields)?,
        Format::Text => match event.fields.get("message") {
            Some(Value::String(m)) => w.write_all(m.as_bytes())?,
            _ => serde_json::to_writer(&mut *w, &event.fields)?,
        },
    }
    w.write_all(b"\n")
}

/// Counts bytes passing through a writer.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Output for Stdout {
    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        let format = self.config.format;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let stdout = std::io::stdout();
                let mut w = Counting {
                    inner: std::io::BufWriter::with_capacity(256 * 1024, stdout.lock()),
                    bytes: 0,
                };
                while let Some(batch) = ctx.rx.blocking_recv() {
                    let n = batch.len() as u64;
                    ComponentMetrics::add(&ctx.metrics.events_in, n);
                    let before = w.bytes;
                    let written = batch
                        .events
                        .iter()
                        .try_for_each(|e| write_event(&mut w, e, format))
                        .and_then(|_| w.flush());
                    match written {
                        Ok(()) => {
                            ComponentMetrics::add(&ctx.metrics.events_out, n);
                            ComponentMetrics::add(&ctx.metrics.bytes_out, w.bytes - before);
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
