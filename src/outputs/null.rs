//! The `null` output: counts and discards. For benchmarks and for trying a pipeline's inputs
//! and processors without a destination.

use super::{Output, OutputContext};
use crate::inputs::BoxFuture;
use crate::telemetry::metrics::ComponentMetrics;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Null;

impl Output for Null {
    fn reads_fields(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            while let Some(batch) = ctx.rx.recv().await {
                let n = batch.len() as u64;
                ComponentMetrics::add(&ctx.metrics.events_in, n);
                ComponentMetrics::add(&ctx.metrics.events_out, n);
                batch.ack.delivered();
            }
            Ok(())
        })
    }
}
