//! The packet input types: `packet` (and its one-section shorthands `flows`, `http`, `http2`,
//! `dns`, `tls`, `redis`, `mysql`) captures live (it cannot pause, so a full pipeline drops and
//! counts); `pcap_file` reads a capture file (it waits for room) and ends at the end of the file
//! after reporting every open flow and pending transaction.

use crate::event::{Batch, BatchAck, InFlightBudget};
use crate::inputs::{BackPressure, BoxFuture, BuildContext, Input, InputContext};
use crate::wire::capture::{self, CaptureConfig, Live};
use crate::wire::decode::Decoder;
use crate::wire::dns::DnsConfig;
use crate::wire::flows::FlowsConfig;
use crate::wire::http::metrics::ServiceMap;
use crate::wire::http::HttpConfig;
use crate::wire::out::Out;
use crate::wire::pgsql::PgsqlConfig;
use crate::wire::redis::RedisConfig;
use crate::wire::registry::Protocols;
use crate::wire::section::{present, ProtocolConfig, Section};
use crate::wire::tls::TlsConfig;
use crate::wire::{Analyzers, Engine, Stats, StatsCollector};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `packet`: one live capture, the flow table and any protocols, as Packetbeat runs them (one
/// capture per node instead of one per protocol). `flows`, `http`, `dns`, `tls` and `redis`
/// are shorthands for a `packet` input with that one section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketConfig {
    /// Where to capture (interfaces, filter, buffers); all interfaces by default.
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
    /// Flow reporting (`flows:` alone turns it on with its defaults).
    #[serde(default, deserialize_with = "present")]
    pub flows: Option<FlowsConfig>,
    /// The protocols decoded, each with its own ports and settings (`dns:` alone: defaults).
    #[serde(default)]
    pub protocols: Protocols,
}

/// `pcap_file`: a capture file analyzed in capture time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapFileConfig {
    /// The capture file (pcap or pcapng).
    pub path: PathBuf,
    /// Flow reporting; with no `flows:` and no protocol at all, flows and HTTP run with their
    /// defaults.
    #[serde(default, deserialize_with = "present")]
    pub flows: Option<FlowsConfig>,
    /// The protocols decoded, as in a `packet` input.
    #[serde(default)]
    pub protocols: Protocols,
    /// `http:`, `tls:`, `redis:`, `pgsql:`, `dns:` beside `path` (written before `protocols:`
    /// existed): the same as under `protocols:`.
    #[serde(default, deserialize_with = "present")]
    pub http: Option<Section<HttpConfig>>,
    #[serde(default, deserialize_with = "present")]
    pub tls: Option<Section<TlsConfig>>,
    #[serde(default, deserialize_with = "present")]
    pub redis: Option<Section<RedisConfig>>,
    #[serde(default, deserialize_with = "present")]
    pub pgsql: Option<Section<PgsqlConfig>>,
    #[serde(default, deserialize_with = "present")]
    pub dns: Option<Section<DnsConfig>>,
    /// Copies of a packet within this window count once (for captures taken on `any` or on
    /// several interfaces); `0s`, the default, keeps every packet as the file has it.
    #[serde(default)]
    pub dedup_window: crate::config::Duration,
    /// UDP destination ports whose packets are VXLAN.
    #[serde(default = "capture::default_vxlan_ports")]
    pub vxlan_ports: Vec<u16>,
    /// Flows and connections are keyed by VLAN id besides the 5-tuple (as `capture:` has it).
    #[serde(default = "capture::default_key_by_vlan")]
    pub key_by_vlan: bool,
    /// Flows and connections are keyed by tunnel besides the 5-tuple (as `capture:` has it).
    #[serde(default)]
    pub key_by_tunnel: bool,
}

impl PcapFileConfig {
    /// The protocols under `protocols:` and beside `path`; one given in both places is an
    /// error naming the second.
    fn protocols(&mut self) -> Result<Protocols, String> {
        fn take<C: ProtocolConfig>(
            to: &mut Protocols,
            top: &mut Option<Section<C>>,
        ) -> Result<(), String> {
            match top.take() {
                Some(_) if to.contains(C::NAME) => Err(format!(
                    "`{}` is given both beside `path` and under `protocols`: keep one",
                    C::NAME
                )),
                Some(t) => {
                    to.insert(Box::new(t));
                    Ok(())
                }
                None => Ok(()),
            }
        }
        let mut p = std::mem::take(&mut self.protocols);
        take(&mut p, &mut self.http)?;
        take(&mut p, &mut self.tls)?;
        take(&mut p, &mut self.redis)?;
        take(&mut p, &mut self.pgsql)?;
        take(&mut p, &mut self.dns)?;
        Ok(p)
    }
}

/// Where packets come from.
pub enum Source {
    Live(CaptureConfig),
    File(PathBuf),
}

/// A packet input, live or from a file.
pub struct PacketInput {
    source: Source,
    analyzers: Analyzers,
    stats: Arc<Stats>,
    map: Option<Arc<ServiceMap>>,
}

impl PacketInput {
    /// Builds from parsed settings and registers metrics and the graph endpoints.
    pub fn new(
        name: &str,
        source: Source,
        analyzers: Analyzers,
        ctx: Option<&BuildContext>,
    ) -> PacketInput {
        let stats = Arc::new(Stats::default());
        let mut map = None;
        if let Some(ctx) = ctx {
            ctx.registry.register(Arc::new(StatsCollector {
                input: name.to_owned(),
                stats: stats.clone(),
            }));
            let max_series = analyzers.protocols.max_series().unwrap_or(1000);
            map = Some(ServiceMap::shared(
                &ctx.registry,
                &ctx.endpoints,
                max_series,
            ));
        }
        PacketInput {
            source,
            analyzers,
            stats,
            map,
        }
    }

    /// A live input: `capture` says where, `analyzers` what (flows, protocols).
    pub fn live(
        name: &str,
        capture: Option<CaptureConfig>,
        analyzers: Analyzers,
        ctx: &BuildContext,
    ) -> PacketInput {
        let capture = capture.unwrap_or_default();
        let analyzers = Analyzers {
            dedup_window: capture.dedup_window.positive(),
            decoder: Decoder {
                vxlan_ports: capture.vxlan_ports.clone(),
            },
            key_by_vlan: capture.key_by_vlan,
            key_by_tunnel: capture.key_by_tunnel,
            ..analyzers
        };
        PacketInput::new(name, Source::Live(capture), analyzers, Some(ctx))
    }

    /// A `packet` input (or one of its shorthands, given as a `packet` config).
    pub fn packet(name: &str, cfg: PacketConfig, ctx: &BuildContext) -> PacketInput {
        PacketInput::live(
            name,
            cfg.capture,
            Analyzers {
                flows: cfg.flows,
                protocols: cfg.protocols,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn pcap_file(
        name: &str,
        mut cfg: PcapFileConfig,
        ctx: Option<&BuildContext>,
    ) -> Result<PacketInput, String> {
        let protocols = cfg.protocols()?;
        // No section at all: flows and HTTP, as before protocols had sections of their own.
        let (flows, protocols) = match cfg.flows {
            None if protocols.is_empty() => (
                Some(FlowsConfig::default()),
                Protocols::default().with(Section::<HttpConfig>::default()),
            ),
            flows => (flows, protocols),
        };
        let analyzers = Analyzers {
            flows,
            protocols,
            dedup_window: cfg.dedup_window.positive(),
            decoder: Decoder {
                vxlan_ports: cfg.vxlan_ports,
            },
            key_by_vlan: cfg.key_by_vlan,
            key_by_tunnel: cfg.key_by_tunnel,
        };
        Ok(PacketInput::new(
            name,
            Source::File(cfg.path),
            analyzers,
            ctx,
        ))
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

impl Input for PacketInput {
    fn back_pressure(&self) -> BackPressure {
        match self.source {
            Source::Live(_) => BackPressure::Drop,
            Source::File(_) => BackPressure::Block,
        }
    }

    fn reports_started(&self) -> bool {
        matches!(self.source, Source::Live(_))
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = {
                let stop = stop.clone();
                let mut shutdown = ctx.shutdown.clone();
                tokio::spawn(async move {
                    shutdown.wait().await;
                    stop.store(true, Ordering::Relaxed);
                })
            };
            let handle = std::thread::Builder::new()
                .name(format!("trawl-pkt-{}", ctx.name))
                .spawn(move || self.run_thread(&ctx, &stop))?;
            let r = tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("packet thread panicked"))?;
            watcher.abort();
            r
        })
    }
}

impl PacketInput {
    fn run_thread(self, ctx: &InputContext, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut engine = Engine::new(
            ctx.name.clone(),
            self.analyzers,
            self.stats.clone(),
            self.map,
        );
        let batch = ctx.batch_size.max(1);
        // A live capture cannot pause: what its events hold until the outputs settle them is
        // capped, as the queues alone (counted in batches) would let a burst after a stall
        // take tens of MB.
        let budget = match &self.source {
            Source::Live(cfg) => Some(InFlightBudget::new(cfg.max_in_flight.as_usize())),
            Source::File(_) => None,
        };
        let mut flush = |e: &mut Engine| {
            let mut events = match &mut e.out {
                Out::Events(v) => std::mem::take(v),
                Out::Json { .. } => return false,
            };
            while !events.is_empty() {
                let rest = if events.len() > batch {
                    events.split_off(batch)
                } else {
                    Vec::new()
                };
                let sent = match &budget {
                    Some(budget) => ctx.emit_within_budget(events, budget),
                    None => {
                        let ack = BatchAck::lost_if_failed(&ctx.metrics, events.len(), None);
                        ctx.emit_blocking(Batch::new(events, ack))
                    }
                };
                if sent.is_err() {
                    return false;
                }
                events = rest;
            }
            true
        };
        match self.source {
            Source::File(path) => {
                let summary = capture::read_file(&path, &mut engine, stop, batch, &mut flush)
                    .map_err(|e| anyhow::anyhow!("pcap_file: {e}"))?;
                if let Some(err) = summary.error {
                    self.stats.file_errors.fetch_add(1, Ordering::Relaxed);
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(input = %ctx.name, "capture file ends in a damaged record, stopped there: {err}");
                }
                if summary.clamped_times > 0 {
                    tracing::warn!(input = %ctx.name, packets = summary.clamped_times, path = %path.display(), "packets whose time was past what 64-bit nanoseconds hold, clamped");
                }
                tracing::info!(input = %ctx.name, packets = summary.packets, path = %path.display(), "capture file done");
                Ok(())
            }
            Source::Live(cfg) => {
                Live::new(
                    cfg,
                    ctx.name.clone(),
                    self.stats.clone(),
                    ctx.metrics.clone(),
                )
                .run(&mut engine, stop, &mut flush);
                Ok(())
            }
        }
    }
}
