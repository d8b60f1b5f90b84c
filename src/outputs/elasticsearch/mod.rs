//! The `elasticsearch` output: batches events into `_bulk` requests (by events, bytes and
//! time), sends a bounded number at once, retries what can succeed later and sends what is
//! refused for good to the dead letters. A batch is acknowledged once every event is accepted.
//!
//! `bulk.rs` builds requests, `response.rs` reads answers, `retry.rs` paces retries,
//! `client.rs` talks HTTP to the hosts and `index_template.rs` installs the index template.

mod bulk;
mod client;
mod index_template;
mod response;
mod retry;

use super::dead_letter::{DeadLetters, Rejection};
use super::template::Template;
use super::{Output, OutputContext};
use crate::config::{ByteSize, Duration};
use crate::event::{Batch, BatchStatus};
use crate::inputs::BoxFuture;
use crate::telemetry::metrics::ComponentMetrics;
use bulk::{BulkRequest, Encoder, Item};
use response::{ItemOutcome, RequestVerdict};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// Create or overwrite the document with that id.
    #[default]
    Index,
    /// Create only; what data streams require. A conflict (the document exists) counts as
    /// delivered: it is a copy sent again after a crash.
    Create,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdFrom {
    /// From where the event was read (file identity + offset): a re-sent event overwrites its
    /// first copy. Events without an origin get ids from Elasticsearch.
    #[default]
    Origin,
    /// A hash of the fields listed in `id_fields`.
    Fields,
    /// Elasticsearch picks ids (re-sent events are stored twice).
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one bulk request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes (uncompressed NDJSON) in one bulk request.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long a request that is not full waits for more events.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_max_events() -> usize {
    1000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(5 << 20)
}
fn default_timeout() -> Duration {
    Duration::from_millis(1000)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait before sending again; doubles each attempt, with jitter.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Attempts before giving up on events (their batches are then failed, not acknowledged,
    /// so the input sends them again); 0 retries for as long as it takes.
    #[serde(default)]
    pub max_attempts: u32,
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_attempts: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust (besides the usual roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate and name. Turn off only for tests.
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URLs of the cluster's nodes, used in turn; a node that fails is skipped a while.
    pub hosts: Vec<client::HostUrl>,
    /// Basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// API key, as Elasticsearch returns it encoded (`base64(id:key)`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Index (or data stream) name: fields with `%{[a.b]}`, the event's date with `%Y.%m.%d`.
    #[serde(default = "default_index")]
    pub index: Template,
    /// `index` or `create` (data streams).
    #[serde(default)]
    pub op_type: OpType,
    /// Where document ids come from: `origin`, `fields` or `none`.
    #[serde(default)]
    pub id_from: IdFrom,
    /// Fields hashed into the id when `id_from: fields`.
    #[serde(default)]
    pub id_fields: Vec<String>,
    /// Ingest pipeline to run on the documents.
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub batch: BatchConfig,
    /// `gzip` or `none` for request bodies.
    #[serde(default)]
    pub compression: Compression,
    /// Bulk requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest wait for an answer to one request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// What is installed before the first request (`setup.template.*`, as in Beats).
    #[serde(default)]
    pub setup: index_template::Setup,
}

fn default_index() -> Template {
    // A static template always parses.
    Template::parse("trawl-%Y.%m.%d").unwrap_or_else(|_| unreachable!())
}
fn default_concurrency() -> usize {
    2
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

pub struct Elasticsearch {
    config: Config,
    client: client::Client,
    template: Option<index_template::IndexTemplate>,
}

impl Elasticsearch {
    pub fn new(config: Config) -> Result<Elasticsearch, String> {
        if config.id_from == IdFrom::Fields && config.id_fields.is_empty() {
            return Err("`id_from: fields` needs `id_fields`".into());
        }
        if config.batch.max_events == 0 || config.concurrency == 0 {
            return Err("`batch.max_events` and `concurrency` must be at least 1".into());
        }
        if config.setup.template.enabled
            && config.setup.template.data_stream
            && config.op_type != OpType::Create
        {
            return Err(
                "`setup.template.data_stream: true` needs `op_type: create` (data streams take nothing else)"
                    .into(),
            );
        }
        let template =
            index_template::IndexTemplate::resolve(&config.setup.template, &config.index)?;
        let client = client::Client::new(&config)?;
        Ok(Elasticsearch {
            config,
            client,
            template,
        })
    }
}

/// What every request task shares.
struct Shared {
    client: client::Client,
    dead: DeadLetters,
    metrics: Arc<ComponentMetrics>,
    op_type: OpType,
    retry: RetryConfig,
    /// Set while requests fail as a whole, so that an outage is logged once, and its end too.
    failing: AtomicBool,
    /// The index template to put in place before the first request.
    template: Option<index_template::Installer>,
}

impl Output for Elasticsearch {
    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let config = self.config;
            let shared = Arc::new(Shared {
                client: self.client,
                dead: DeadLetters::new(&ctx),
                metrics: ctx.metrics.clone(),
                op_type: config.op_type,
                retry: config.retry.clone(),
                failing: AtomicBool::new(false),
                template: self.template.map(index_template::Installer::new),
            });
            let permits = Arc::new(Semaphore::new(config.concurrency));
            let mut encoder = Encoder::new(
                config.index.clone(),
                config.op_type,
                config.id_from,
                config.id_fields.clone(),
            );
            let max_bytes = config.batch.max_bytes.as_usize().max(1);
            let max_events = config.batch.max_events;
            let linger = config.batch.timeout.std();
            let mut req = BulkRequest::default();
            let mut deadline: Option<tokio::time::Instant> = None;
            let mut lines = Vec::new();
            loop {
                let batch = tokio::select! {
                    b = ctx.rx.recv() => b,
                    _ = sleep_until(deadline), if deadline.is_some() => {
                        deadline = None;
                        dispatch(std::mem::take(&mut req), &shared, &permits).await;
                        continue;
                    }
                };
                let Some(Batch { events, ack }) = batch else {
                    break;
                };
                ComponentMetrics::add(&ctx.metrics.events_in, events.len() as u64);
                if events.is_empty() {
                    ack.delivered();
                    continue;
                }
                let mut unsendable = Vec::new();
                req.acks.push(ack);
                for event in events {
                    let doc = match encoder.encode(&event, &mut lines) {
                        Ok(doc) => doc,
                        Err(reason) => {
                            unsendable.push(Rejection {
                                event,
                                kind: "template_error".into(),
                                reason,
                            });
                            continue;
                        }
                    };
                    if !req.items.is_empty()
                        && (req.items.len() >= max_events || req.bytes + lines.len() > max_bytes)
                    {
                        // The batch goes on in the next request, under a copy of its handle.
                        let carry = req.acks.last().map(|a| a.fork());
                        dispatch(std::mem::take(&mut req), &shared, &permits).await;
                        req.acks.extend(carry);
                        deadline = None;
                    }
                    req.bytes += lines.len();
                    req.items.push(Item {
                        lines: std::mem::take(&mut lines),
                        doc,
                        input: event.meta.input.clone(),
                        origin: event.meta.origin.clone(),
                        ack: req.acks.len() - 1,
                    });
                }
                if !unsendable.is_empty() {
                    if let Some(ack) = req.acks.last() {
                        shared.dead.send(unsendable, ack).await;
                        ack.fork().rejected();
                    }
                }
                if req.items.len() >= max_events || req.bytes >= max_bytes {
                    dispatch(std::mem::take(&mut req), &shared, &permits).await;
                    deadline = None;
                } else if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + linger);
                }
            }
            dispatch(req, &shared, &permits).await;
            // Every request task holds a permit until it is done.
            let _all = permits.acquire_many(config.concurrency as u32).await;
            Ok(())
        })
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Starts sending `req` once fewer than `concurrency` requests are in flight; waiting here is
/// what slows the inputs down when Elasticsearch is slow.
async fn dispatch(req: BulkRequest, shared: &Arc<Shared>, permits: &Arc<Semaphore>) {
    if req.is_empty() {
        return;
    }
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        deliver(req, &shared).await;
        drop(permit);
    });
}

/// Where an item stands.
#[derive(Clone)]
enum Fate {
    Pending,
    Accepted,
    Rejected {
        kind: String,
        reason: String,
    },
    /// Retries ran out (`retry.max_attempts`).
    GaveUp,
}

/// Sends one request until every item is accepted or rejected for good, then settles the
/// batches it carries.
async fn deliver(req: BulkRequest, shared: &Shared) {
    let BulkRequest { items, acks, .. } = req;
    let mut fates = vec![Fate::Pending; items.len()];
    let mut todo: VecDeque<usize> = (0..items.len()).collect();
    let mut chunk = items.len().max(1);
    let mut backoff = retry::Backoff::new(
        shared.retry.initial_backoff.std(),
        shared.retry.max_backoff.std(),
    );
    while !todo.is_empty() {
        if shared.retry.max_attempts > 0 && backoff.attempts() >= shared.retry.max_attempts {
            tracing::error!(
                events = todo.len(),
                attempts = backoff.attempts(),
                "giving up on events after retry.max_attempts; their batches are not acknowledged"
            );
            for i in todo.drain(..) {
                fates[i] = Fate::GaveUp;
            }
            break;
        }
        if let Some(t) = &shared.template {
            if !t.ready(&shared.client).await {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        let n = chunk.min(todo.len());
        let sending: Vec<usize> = todo.drain(..n).collect();
        let body = match bulk::body(sending.iter().map(|&i| &items[i]), shared.client.gzip()) {
            Ok(b) => b,
            Err(e) => {
                // Compressing into memory cannot fail short of allocation failure.
                tracing::error!(error = %e, "cannot build bulk body");
                for i in sending {
                    fates[i] = Fate::GaveUp;
                }
                continue;
            }
        };
        let size = body.len() as u64;
        let retry_all = |todo: &mut VecDeque<usize>, sending: &[usize]| {
            for &i in sending.iter().rev() {
                todo.push_front(i);
            }
        };
        let answer = match shared.client.bulk(body).await {
            Ok(a) => a,
            Err(e) => {
                outage(shared, &format!("bulk request failed: {e}"));
                retry_all(&mut todo, &sending);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        ComponentMetrics::add(&shared.metrics.bytes_out, size);
        match response::request_verdict(answer.status) {
            RequestVerdict::Retry => {
                outage(
                    shared,
                    &format!(
                        "bulk request answered {}: {}",
                        answer.status,
                        snippet(&answer.body)
                    ),
                );
                retry_all(&mut todo, &sending);
                tokio::time::sleep(backoff.next_delay()).await;
            }
            RequestVerdict::Split if n > 1 => {
                chunk = n.div_ceil(2);
                tracing::info!(
                    items = n,
                    now = chunk,
                    "bulk request too large (413): sending it in halves"
                );
                retry_all(&mut todo, &sending);
            }
            RequestVerdict::Split | RequestVerdict::Reject => {
                let reason = if answer.status == 413 {
                    // Elasticsearch answers 413 with no body: say what it means.
                    "HTTP 413: this one event is over the cluster's http.max_content_length".into()
                } else {
                    format!("HTTP {}: {}", answer.status, snippet(&answer.body))
                };
                for i in sending {
                    fates[i] = Fate::Rejected {
                        kind: format!("http_{}", answer.status),
                        reason: reason.clone(),
                    };
                }
            }
            RequestVerdict::ReadItems => {
                match response::item_outcomes(&answer.body, n, shared.op_type) {
                    Err(e) => {
                        outage(shared, &e);
                        retry_all(&mut todo, &sending);
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Ok(outcomes) => {
                        recovered(shared);
                        let mut again = Vec::new();
                        let mut first_retry = None;
                        for (&i, o) in sending.iter().zip(outcomes) {
                            match o {
                                ItemOutcome::Accepted => fates[i] = Fate::Accepted,
                                ItemOutcome::Reject { kind, reason } => {
                                    fates[i] = Fate::Rejected { kind, reason }
                                }
                                ItemOutcome::Retry { status, reason } => {
                                    first_retry.get_or_insert((status, reason));
                                    again.push(i);
                                }
                            }
                        }
                        if let Some((status, reason)) = first_retry {
                            tracing::debug!(items = again.len(), status, %reason, "retrying items Elasticsearch could not take now");
                            retry_all(&mut todo, &again);
                            tokio::time::sleep(backoff.next_delay()).await;
                        } else if todo.is_empty() {
                            break;
                        } else {
                            backoff.reset();
                        }
                    }
                }
            }
        }
    }

    // Settle: dead letters first (they carry forks of the handles), then each batch.
    let mut status = vec![BatchStatus::Delivered; acks.len()];
    let mut rejected: Vec<Vec<Rejection>> = (0..acks.len()).map(|_| Vec::new()).collect();
    let mut accepted = 0u64;
    for (item, fate) in items.into_iter().zip(fates) {
        match fate {
            Fate::Accepted => accepted += 1,
            Fate::Rejected { kind, reason } => {
                status[item.ack] = status[item.ack].max(BatchStatus::Rejected);
                rejected[item.ack].push(Rejection {
                    event: item.event(),
                    kind,
                    reason,
                });
            }
            Fate::GaveUp | Fate::Pending => status[item.ack] = BatchStatus::Failed,
        }
    }
    ComponentMetrics::add(&shared.metrics.events_out, accepted);
    for ((ack, rejections), status) in acks.into_iter().zip(rejected).zip(status) {
        shared.dead.send(rejections, &ack).await;
        ack.settle(status);
    }
}

fn outage(shared: &Shared, what: &str) {
    if !shared.failing.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %what, "Elasticsearch is not taking requests; retrying with backoff (logged once until it recovers)");
    } else {
        tracing::debug!(error = %what, "bulk request retried");
    }
}

fn recovered(shared: &Shared) {
    if shared.failing.swap(false, Ordering::Relaxed) {
        tracing::info!("Elasticsearch takes requests again");
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.replace('\n', " ")
}
