//! The packet input types: `flows`, `http`, `dns`, `tls`, `redis` and `http2` capture live (they cannot
//! pause, so a full pipeline drops and counts), `pcap_file` reads a capture file (it waits for
//! room) and ends at the end of the file after reporting every open flow and pending transaction.

use crate::config::DeError;
use crate::event::Batch;
use crate::inputs::{BackPressure, BoxFuture, BuildContext, Input, InputContext};
use crate::wire::capture::{self, CaptureConfig, Live};
use crate::wire::decode::Decoder;
use crate::wire::dns::DnsConfig;
use crate::wire::flows::FlowsConfig;
use crate::wire::http::metrics::ServiceMap;
use crate::wire::http::HttpConfig;
use crate::wire::http2::Http2Config;
use crate::wire::out::Out;
use crate::wire::redis::RedisConfig;
use crate::wire::tls::TlsConfig;
use crate::wire::{Analyzers, Engine, Stats, StatsCollector};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `pcap_file`: a capture file analyzed in capture time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapFileConfig {
    /// The capture file (pcap or pcapng).
    pub path: PathBuf,
    /// Flow reporting; without `flows:` and `http:` sections both run with their defaults.
    #[serde(default)]
    pub flows: Option<FlowsConfig>,
    /// HTTP transactions.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// TLS handshakes (only when this section is given).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Redis transactions (only when given).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// PostgreSQL transactions.
    #[serde(default)]
    pub pgsql: Option<crate::wire::pgsql::PgsqlConfig>,
    /// DNS transactions (only when given).
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// HTTP/2 and gRPC streams (only when given).
    #[serde(default)]
    pub http2: Option<Http2Config>,
    /// Copies of a packet within this window count once (for captures taken on `any` or on
    /// several interfaces); `0s`, the default, keeps every packet as the file has it.
    #[serde(default)]
    pub dedup_window: crate::config::Duration,
    /// UDP destination ports whose packets are VXLAN.
    #[serde(default = "capture::default_vxlan_ports")]
    pub vxlan_ports: Vec<u16>,
}

/// Where packets come from.
pub enum Source {
    Live(CaptureConfig),
    File(PathBuf),
}

/// A packet input of any of the four types.
pub struct PacketInput {
    source: Source,
    analyzers: Analyzers,
    stats: Arc<Stats>,
    map: Option<Arc<ServiceMap>>,
}

fn reject_capture(section: &str, has: bool) -> Result<(), DeError> {
    if has {
        return Err(DeError::new(format!("`{section}.capture` is for live inputs (`flows`, `http`, `dns`); a `pcap_file` reads its `path`"), crate::config::Mark { line: 1, col: 1 }, section));
    }
    Ok(())
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
            let max_series = analyzers
                .http
                .as_ref()
                .map(|h| h.max_series)
                .unwrap_or(1000);
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

    /// A live input: `capture` says where, `analyzers` what (one protocol section, or flows).
    fn live(
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
            ..analyzers
        };
        PacketInput::new(name, Source::Live(capture), analyzers, Some(ctx))
    }

    pub fn flows(name: &str, mut cfg: FlowsConfig, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let flows = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                flows,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn http(name: &str, mut cfg: HttpConfig, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let http = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                http,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn dns(name: &str, mut cfg: DnsConfig, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let dns = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                dns,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn redis(name: &str, mut cfg: RedisConfig, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let redis = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                redis,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn http2(name: &str, mut cfg: Http2Config, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let http2 = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                http2,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn tls(name: &str, mut cfg: TlsConfig, ctx: &BuildContext) -> PacketInput {
        let capture = cfg.capture.take();
        let tls = Some(cfg);
        PacketInput::live(
            name,
            capture,
            Analyzers {
                tls,
                ..Default::default()
            },
            ctx,
        )
    }

    pub fn pcap_file(
        name: &str,
        cfg: PcapFileConfig,
        ctx: Option<&BuildContext>,
    ) -> Result<PacketInput, DeError> {
        reject_capture(
            "flows",
            cfg.flows.as_ref().is_some_and(|f| f.capture.is_some()),
        )?;
        reject_capture(
            "http",
            cfg.http.as_ref().is_some_and(|h| h.capture.is_some()),
        )?;
        reject_capture("tls", cfg.tls.as_ref().is_some_and(|t| t.capture.is_some()))?;
        reject_capture(
            "redis",
            cfg.redis.as_ref().is_some_and(|r| r.capture.is_some()),
        )?;
        // No section at all: flows and HTTP, as before protocols had sections of their own.
        reject_capture("dns", cfg.dns.as_ref().is_some_and(|d| d.capture.is_some()))?;
        reject_capture(
            "http2",
            cfg.http2.as_ref().is_some_and(|d| d.capture.is_some()),
        )?;
        let other_protocols = cfg.tls.is_some()
            || cfg.redis.is_some()
            || cfg.pgsql.is_some()
            || cfg.dns.is_some()
            || cfg.http2.is_some();
        let (flows, http) = match (cfg.flows, cfg.http) {
            (None, None) if !other_protocols => {
                (Some(FlowsConfig::default()), Some(HttpConfig::default()))
            }
            (flows, http) => (flows, http),
        };
        let analyzers = Analyzers {
            tls: cfg.tls,
            flows,
            http,
            redis: cfg.redis,
            pgsql: cfg.pgsql,
            dns: cfg.dns,
            http2: cfg.http2,
            dedup_window: cfg.dedup_window.positive(),
            decoder: Decoder {
                vxlan_ports: cfg.vxlan_ports,
            },
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
                if ctx.emit_blocking(Batch::unacked(events)).is_err() {
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
