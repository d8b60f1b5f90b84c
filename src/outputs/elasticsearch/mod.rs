//! The `elasticsearch` output: batches events into `_bulk` requests (by events, bytes and
//! time), sends a bounded number at once, retries what can succeed later and sends what is
//! refused for good to the dead letters. A batch is acknowledged once every event is accepted
//! or dead-lettered.
//!
//! `bulk.rs` builds requests, `deliver.rs` sends one and settles its items, `response.rs` reads
//! answers, `retry.rs` paces retries, `client.rs` talks HTTP to the hosts and
//! `index_template.rs` installs the index template.

mod bulk;
mod client;
mod deliver;
mod index_template;
mod probe;
mod response;
mod retry;

pub use client::root_certificates;
pub use probe::probe;

use super::dead_letter::{DeadLetters, Rejection};
use super::template::Template;
use super::{Output, OutputContext};
use crate::config::{ByteSize, Duration};
use crate::event::Batch;
use crate::inputs::BoxFuture;
use crate::telemetry::metrics::ComponentMetrics;
use bulk::{BulkRequest, Encoder, Item};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

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
    /// Attempts of a request that fails as a whole (connection, timeout, 5xx, a 2xx without
    /// items) before giving up on its events: to the `dead_letter` output when there is one
    /// (their batches are then acknowledged), else their batches fail so that inputs that can
    /// read them again do; 0 retries for as long as it takes.
    #[serde(default)]
    pub max_attempts: u32,
    /// Times one item may be answered 429 or 5xx before it goes to the dead letters (the
    /// `dead_letter` output, or `data_dir/dead_letter/<output>.jsonl`); 0: no limit by count.
    #[serde(default = "default_max_item_attempts")]
    pub max_item_attempts: u32,
    /// How long after its first 429 or 5xx an item is still retried before it goes to the dead
    /// letters; 0s: no limit by age.
    #[serde(default = "default_max_item_age")]
    pub max_item_age: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_item_attempts() -> u32 {
    15
}
fn default_max_item_age() -> Duration {
    Duration::from_secs(300)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_attempts: 0,
            max_item_attempts: default_max_item_attempts(),
            max_item_age: default_max_item_age(),
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
    /// Set once giving up on events has been logged.
    gave_up: AtomicBool,
    /// Set once splitting a request the cluster found too large (413) has been logged: its
    /// limit does not change, so every later request of that size is split too.
    split_said: AtomicBool,
    /// How busy the cluster says it is: the back-off level of items answered 429 (see
    /// `deliver::settle`).
    pressure: AtomicU32,
    /// Items answered 429 or 5xx, waiting for their back-off to end; they join later requests.
    retries: Mutex<Vec<Item>>,
    /// Rung when items are queued for retry or a request ends.
    wake: Notify,
    /// The index template to put in place before the first request.
    template: Option<index_template::Installer>,
    /// Fires when a reload replaces this output while it cannot deliver (`OutputContext::retire`).
    retire: crate::pipeline::channel::Shutdown,
}

impl Shared {
    fn queue_retries(&self, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        if let Ok(mut q) = self.retries.lock() {
            q.extend(items);
        }
        self.wake.notify_one();
    }

    fn retries_waiting(&self) -> usize {
        self.retries.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// The queued items whose back-off is over (in the order they were queued), and when the
    /// next one's ends.
    fn ready_retries(&self, now: Instant) -> (Vec<Item>, Option<Instant>) {
        let Ok(mut q) = self.retries.lock() else {
            return (Vec::new(), None);
        };
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for item in std::mem::take(&mut *q) {
            let at = Instant::from_std(item.ready_at);
            if at <= now {
                ready.push(item);
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
                q.push(item);
            }
        }
        (ready, next)
    }
}

/// The request being filled, and when it goes even if not full.
struct Filling {
    req: BulkRequest,
    deadline: Option<Instant>,
    max_events: usize,
    max_bytes: usize,
    linger: std::time::Duration,
}

impl Filling {
    /// Adds `item`, sending the request first when the item would not fit, and after when full.
    async fn add(&mut self, item: Item, shared: &Arc<Shared>, permits: &Arc<Semaphore>) {
        if !self.req.is_empty()
            && (self.req.items.len() >= self.max_events
                || self.req.bytes + item.lines.len() > self.max_bytes)
        {
            self.send(shared, permits).await;
        }
        // A retried item has waited its back-off already: its request goes as soon as no
        // events are ready to join it (the output loop reads ready events first).
        let retried = item.first_refused.is_some();
        self.req.push(item);
        if self.req.items.len() >= self.max_events || self.req.bytes >= self.max_bytes {
            self.send(shared, permits).await;
        } else if retried {
            self.deadline = Some(Instant::now());
        } else if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.linger);
        }
    }

    async fn send(&mut self, shared: &Arc<Shared>, permits: &Arc<Semaphore>) {
        self.deadline = None;
        dispatch(std::mem::take(&mut self.req), shared, permits).await;
    }
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
                gave_up: AtomicBool::new(false),
                split_said: AtomicBool::new(false),
                pressure: AtomicU32::new(0),
                retries: Mutex::new(Vec::new()),
                wake: Notify::new(),
                template: self.template.map(index_template::Installer::new),
                retire: ctx.retire.clone(),
            });
            let mut retire = ctx.retire.clone();
            let permits = Arc::new(Semaphore::new(config.concurrency));
            let mut encoder = Encoder::new(
                config.index.clone(),
                config.op_type,
                config.id_from,
                config.id_fields.clone(),
            );
            let mut filling = Filling {
                req: BulkRequest::default(),
                deadline: None,
                max_events: config.batch.max_events,
                max_bytes: config.batch.max_bytes.as_usize().max(1),
                linger: config.batch.timeout.std(),
            };
            // Past this many items waiting for a retry, no new events are read: refused items
            // take the place of new ones, and the inputs slow down.
            let max_waiting = config.batch.max_events * config.concurrency;
            let mut open = true;
            let mut lines = Vec::new();
            loop {
                let (ready, next_retry) = shared.ready_retries(Instant::now());
                for item in ready {
                    filling.add(item, &shared, &permits).await;
                }
                if !open {
                    // Draining: no more events will come to fill a request, so send it now.
                    if !filling.req.is_empty() {
                        filling.send(&shared, &permits).await;
                    }
                    let in_flight = config.concurrency - permits.available_permits();
                    if in_flight == 0 && shared.retries_waiting() == 0 {
                        break;
                    }
                }
                let reading = open && shared.retries_waiting() < max_waiting;
                tokio::select! {
                    // Ready events first: they fill the request before its deadline sends it.
                    biased;
                    () = retire.fired() => break,
                    b = ctx.rx.recv(), if reading => match b {
                        Some(batch) => {
                            read_batch(batch, &mut encoder, &mut lines, &mut filling, &shared, &permits).await;
                        }
                        None => open = false,
                    },
                    _ = sleep_until(filling.deadline), if filling.deadline.is_some() => {
                        filling.send(&shared, &permits).await;
                    }
                    _ = sleep_until(next_retry), if next_retry.is_some() => {}
                    _ = shared.wake.notified() => {}
                }
            }
            if ctx.retire.is_triggered() {
                // What this output holds is dropped unsettled, so counted failed: inputs that
                // can read it again do, and the output replacing this one delivers it. The
                // requests in flight end at once (`dispatch`); their items go the same way.
                let waiting =
                    std::mem::take(&mut *shared.retries.lock().unwrap_or_else(|e| e.into_inner()));
                let held = waiting.len() + filling.req.items.len();
                drop(waiting);
                drop(filling);
                let _ = permits.acquire_many(config.concurrency as u32).await;
                tracing::info!(waiting_events = held, "output retired by a reload: what it held (also the requests in flight and its queue) goes back to be read again");
            }
            Ok(())
        })
    }
}

/// Encodes a batch's events into the request being filled, each with its copy of the batch's
/// handle; events that cannot be encoded go to the dead letters.
async fn read_batch(
    batch: Batch,
    encoder: &mut Encoder,
    lines: &mut Vec<u8>,
    filling: &mut Filling,
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
) {
    let (events, ack) = batch.into_parts();
    ComponentMetrics::add(&shared.metrics.events_in, events.len() as u64);
    let mut unsendable = Vec::new();
    for event in events {
        match encoder.encode(&event, lines) {
            Ok(doc) => {
                let item = Item::new(std::mem::take(lines), doc, &event, ack.fork());
                filling.add(item, shared, permits).await;
            }
            Err(reason) => unsendable.push(Rejection {
                event,
                kind: "template_error".into(),
                reason,
            }),
        }
    }
    if unsendable.is_empty() {
        ack.delivered();
    } else {
        shared.dead.send(unsendable, &ack).await;
        ack.rejected();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
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
    let mut retire = shared.retire.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = deliver::deliver(req.items, &shared) => {}
            // A retired output's items are dropped unsettled: failed, to be read again.
            () = retire.fired() => {}
        }
        drop(permit);
        // The output loop may be waiting for the last request to end.
        shared.wake.notify_one();
    });
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.replace('\n', " ")
}
