//! The Kafka output's side of librdkafka: delivery reports settle the batches (a message
//! refused for good goes to the dead letters, one refused in a batch too large for its topic is
//! sent again alone, one librdkafka gave up on is taken back to be sent again), and librdkafka's
//! logs, errors and statistics become trawl's.

use super::polled::PolledProducer;
use super::Encoding;
use crate::event::{BatchAck, BatchStatus, Event, Map, Value};
use crate::outputs::dead_letter::{DeadLetters, Rejection};
use crate::outputs::OutputContext;
use crate::telemetry::metrics::ComponentMetrics;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How long messages may wait with no delivery report at all before the output counts as
/// failing (dated back to when they began waiting): far above a healthy broker's answer (ms),
/// below the minute librdkafka takes to give up on a connection that stays open but silent.
const STALL_GRACE: Duration = Duration::from_secs(10);

/// One batch being delivered: settled when its last message's delivery report arrives.
pub(super) struct InFlight {
    /// Messages not yet reported, plus one while the batch is still being handed to librdkafka.
    pub(super) remaining: AtomicUsize,
    pub(super) ack: Mutex<Option<BatchAck>>,
    pub(super) rejected: Mutex<Vec<Rejection>>,
    pub(super) failed: AtomicBool,
    pub(super) input: Arc<str>,
}

/// A message librdkafka gave up on (`message.timeout.ms`), or purged from a producer the output
/// retired, taken back for the output to produce again: its batch stays unsettled until the new
/// attempt's report.
pub(super) struct Resend {
    /// The generation of the producer that gave it up (see `Producers`).
    pub(super) from: u64,
    pub(super) why: TakenBack,
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) headers: Option<OwnedHeaders>,
    pub(super) batch: Arc<InFlight>,
}

/// Why a message was taken back from a producer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TakenBack {
    /// Purged from a producer the output retired: the next one sends it.
    Purged,
    /// Given up on after `message.timeout.ms`: that producer may be stuck, a new one takes over.
    TimedOut,
    /// Its topic was reported missing by a producer that lived through an outage. librdkafka
    /// counts its wait for a missing topic (`topic.metadata.propagation.max.ms`) from the first
    /// message to it, so an outage longer than that refuses every waiting message the moment the
    /// brokers answer, before an operator could create the topic. A new producer counts its
    /// wait from when it sends, with the brokers up.
    MissingTopicAfterOutage,
}

/// Receives librdkafka's delivery reports and logs (on its polling thread).
pub(super) struct Reports {
    runtime: tokio::runtime::Handle,
    dead: DeadLetters,
    metrics: Arc<ComponentMetrics>,
    output: Arc<str>,
    encoding: Encoding,
    /// Whether the brokers are known to be unreachable, so that an outage is logged once.
    down: AtomicBool,
    /// Whether this producer found every broker unreachable once (not carried to the next
    /// producer): its waits for missing topics may have run out during the outage.
    lived_through_outage: AtomicBool,
    /// Whether a broker refused the connection (SASL or TLS), so that it is logged once and
    /// `/health` fails until a message is delivered again.
    refused: AtomicBool,
    /// Signalled on each delivery report: room in librdkafka's queue for a waiting send.
    pub(super) room: tokio::sync::Notify,
    /// What tells a hung broker from an idle one (see `watch_stall`).
    stall: Stall,
    /// Per topic-partition, the messages librdkafka is known to have sent again, as of the last
    /// statistics, so that only what grew since is added to the retries counter.
    resent: Mutex<HashMap<String, u64>>,
    /// The settings of the producer that sends one message per request (see `send_alone`);
    /// `None` in that producer itself, whose refusals are the message's own.
    alone_config: Option<ClientConfig>,
    /// That producer, made on the first batch a broker refuses as too large.
    pub(super) alone: OnceLock<Arc<PolledProducer>>,
    /// Where messages librdkafka gave up on go to be produced again, when the output retries
    /// without limit (no `delivery_timeout`); `None` otherwise, and their batches fail.
    resend: Option<tokio::sync::mpsc::Sender<Resend>>,
    /// Which producer of the output these are the reports of (0, then one more each renewal).
    pub(super) generation: u64,
    /// Set when the output retires this producer: its purge and its errors are expected, and
    /// must not fail the output.
    pub(super) retired: AtomicBool,
    /// Whether a message could not be taken back for want of room, so that it is logged once.
    overflowed: AtomicBool,
    /// Whether a broker refused a message with an error of no known kind (logged once).
    refused_otherwise: AtomicBool,
}

/// A broker that keeps its connections open but answers nothing (a stopped JVM, a long GC
/// pause, a frozen VM) raises no error in librdkafka until its requests time out and the
/// reconnections fail, over a minute later; meanwhile messages simply wait. Trawl sees it as
/// messages waiting while no delivery report comes back.
struct Stall {
    /// Reference for the millisecond stamps below.
    origin: Instant,
    /// When the last delivery report (delivered or not) came, in ms since `origin`.
    last_report: AtomicU64,
    /// The first statistics since the last report that found messages waiting (ms since
    /// `origin`), `u64::MAX` when the last statistics found none.
    waiting_seen: AtomicU64,
    /// Whether the current stall was logged, so that it is logged once.
    logged: AtomicBool,
}

impl Stall {
    /// The same watch, in the next producer: a stall goes on across a renewal.
    fn carry_on(&self) -> Stall {
        Stall {
            origin: self.origin,
            last_report: AtomicU64::new(self.last_report.load(Ordering::Relaxed)),
            waiting_seen: AtomicU64::new(self.waiting_seen.load(Ordering::Relaxed)),
            logged: AtomicBool::new(self.logged.load(Ordering::Relaxed)),
        }
    }

    fn new() -> Stall {
        Stall {
            origin: Instant::now(),
            last_report: AtomicU64::new(0),
            waiting_seen: AtomicU64::new(u64::MAX),
            logged: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// A delivery report came: the brokers answer. True when that ends a stall that was logged.
    fn reported(&self) -> bool {
        self.last_report.store(self.now_ms(), Ordering::Relaxed);
        self.logged.load(Ordering::Relaxed) && self.logged.swap(false, Ordering::Relaxed)
    }

    /// For statistics that find `waiting` messages undelivered: how long they have waited with
    /// no report coming back. At most a statistics interval short of the oldest message's age,
    /// never more than it, and zero while reports keep coming.
    fn waited(&self, waiting: u64) -> Duration {
        let now = self.now_ms();
        if waiting == 0 {
            self.waiting_seen.store(u64::MAX, Ordering::Relaxed);
            return Duration::ZERO;
        }
        let last = self.last_report.load(Ordering::Relaxed);
        let mut seen = self.waiting_seen.load(Ordering::Relaxed);
        if seen == u64::MAX || seen < last {
            seen = now;
            self.waiting_seen.store(now, Ordering::Relaxed);
        }
        Duration::from_millis(now.saturating_sub(seen.max(last)))
    }
}

/// The part of librdkafka's statistics trawl reads; the rest is skipped by serde.
#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
    /// Messages produced and not yet reported (queued, in flight, or waiting to be sent again).
    #[serde(default)]
    msg_cnt: u64,
}

#[derive(Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Deserialize)]
struct PartitionStatistics {
    /// -1 for the queue of messages not yet given a partition (not counted in `msgs`).
    partition: i64,
    /// Messages written into produce requests, once more each time one is sent again.
    #[serde(default)]
    txmsgs: u64,
    /// Messages produced to this partition (sent or not).
    #[serde(default)]
    msgs: u64,
    /// Messages waiting in the partition's queue: not sent yet, or put back to be sent again.
    #[serde(default)]
    msgq_cnt: u64,
}

/// The messages librdkafka sent again since the statistics `resent` holds (per partition,
/// which it updates). A document that does not parse counts nothing.
///
/// librdkafka re-sends a produce request's messages (connection lost, request timed out,
/// broker not enough replicas...) by putting them back in the partition's queue, not through
/// the request retries its brokers' `txretries` count, and no statistic counts them. They show
/// in `txmsgs`, which counts every sending of a message: every message produced was either
/// sent (once plus its re-sends, all in `txmsgs`) or is still waiting in `msgq_cnt`, so
/// `txmsgs + msgq_cnt - msgs` never exceeds the re-sends (messages waiting in librdkafka's
/// per-broker transmit queue, or given up before being sent, lower it) and equals them once
/// the queues are empty. Only its highest value counts, so it never counts anything twice.
#[cfg(test)]
pub(super) fn resent_since(resent: &mut HashMap<String, u64>, statistics: &[u8]) -> u64 {
    serde_json::from_slice::<Statistics>(statistics).map_or(0, |s| resent_in(resent, &s))
}

fn resent_in(resent: &mut HashMap<String, u64>, stats: &Statistics) -> u64 {
    let mut grew = 0;
    for (topic, t) in &stats.topics {
        for p in t.partitions.values().filter(|p| p.partition >= 0) {
            let now = (p.txmsgs + p.msgq_cnt).saturating_sub(p.msgs);
            let known = resent
                .entry(format!("{topic}/{}", p.partition))
                .or_insert(0);
            if now > *known {
                grew += now - *known;
                *known = now;
            }
        }
    }
    grew
}

impl ClientContext for Reports {
    /// Adds the messages librdkafka sent again on its own since the last statistics: retries
    /// that never reach a delivery report, so trawl would not see them otherwise. Watches for
    /// messages waiting with no report coming back (`watch_stall`).
    fn stats_raw(&self, statistics: &[u8]) {
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stats) = serde_json::from_slice::<Statistics>(statistics) else {
            return;
        };
        if let Ok(mut resent) = self.resent.lock() {
            ComponentMetrics::add(&self.metrics.retries, resent_in(&mut resent, &stats));
        }
        self.watch_stall(stats.msg_cnt);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A replacing producer fails to connect again during an outage already logged (once):
        // librdkafka logs each producer's first failure, so that would come at every renewal.
        if fac == "FAIL" && self.generation > 0 && self.down.load(Ordering::Relaxed) {
            tracing::debug!(output = %self.output, facility = fac, "librdkafka: {message}");
            return;
        }
        // librdkafka logs every broker connection it loses or cannot make at its error level
        // ("Connect to ... failed: Connection refused"), one line per broker. One broker of a
        // cluster restarting is routine while the others serve the partitions; losing them all
        // is what stops delivery, and `error` logs that once at ERROR (`AllBrokersDown`).
        if fac == "FAIL"
            && matches!(
                level,
                RDKafkaLogLevel::Error | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Alert
            )
        {
            tracing::warn!(output = %self.output, facility = fac, "librdkafka: {message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(output = %self.output, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(output = %self.output, facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(output = %self.output, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.retired.load(Ordering::Relaxed) {
            tracing::debug!(output = %self.output, %error, reason, "librdkafka error in a retired producer");
            return;
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                tracing::error!(output = %self.output, %error, reason, "Kafka producer failed for good");
                self.metrics.set_failed(format!("kafka: {error}: {reason}"));
            }
            // The broker answers but refuses trawl: a setting to fix, not an outage to wait out.
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL) => {
                // `/health` first, then the log: whoever reads the log line (an operator, a
                // probe script) must find the health already failed.
                self.metrics.set_failed(format!(
                    "kafka: the broker refuses the connection: {reason}"
                ));
                self.metrics
                    .attempt_failed(&format!("the broker refuses the connection: {reason}"));
                if !self.refused.swap(true, Ordering::Relaxed) {
                    tracing::error!(output = %self.output, reason,
                        "the Kafka broker refuses the connection (check the output's `sasl` and `tls` settings); messages wait in the bounded queue and are retried, nothing is acknowledged");
                }
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.lived_through_outage.store(true, Ordering::Relaxed);
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::error!(output = %self.output, reason, "no Kafka broker reachable; messages wait in the bounded queue and are retried");
                }
                self.metrics
                    .attempt_failed(&format!("no Kafka broker reachable: {reason}"));
            }
            _ => tracing::debug!(output = %self.output, %error, reason, "librdkafka error"),
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<InFlight>) {
        // librdkafka giving up on its own clock, or purging, is not an answer from the brokers.
        let local = matches!(
            result
                .as_ref()
                .err()
                .and_then(|(e, _)| e.rdkafka_error_code()),
            Some(
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::PurgeQueue
                    | RDKafkaErrorCode::PurgeInflight
            )
        );
        if !local && self.stall.reported() {
            // The stall is over whatever the report says: a refusal for good (a topic that does
            // not exist) answers too, and must not leave the output failing.
            self.metrics.delivering();
            tracing::info!(output = %self.output, "a Kafka delivery report came back: the brokers answer again");
        }
        match result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(output = %self.output, "Kafka takes messages again");
                }
                if self.refused.swap(false, Ordering::Relaxed) {
                    self.metrics.clear_failed();
                }
                self.metrics.delivering();
                ComponentMetrics::add(&self.metrics.events_out, 1);
            }
            Err((error, msg)) => match error.rdkafka_error_code() {
                // A batch over a segment (`RECORD_LIST_TOO_LARGE`) is refused whole too.
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge,
                ) if self.send_alone(msg, &batch) => {
                    // Its delivery report, from the other producer, settles it.
                    self.room.notify_one();
                    return;
                }
                Some(code)
                    if local
                        && self.take_back(
                            msg,
                            &batch,
                            if code == RDKafkaErrorCode::MessageTimedOut {
                                TakenBack::TimedOut
                            } else {
                                TakenBack::Purged
                            },
                        ) =>
                {
                    // Still one of the batch's messages: the new attempt's report settles it.
                    self.room.notify_one();
                    return;
                }
                Some(
                    RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
                ) if self.lived_through_outage.load(Ordering::Relaxed)
                    && self.take_back(msg, &batch, TakenBack::MissingTopicAfterOutage) =>
                {
                    self.room.notify_one();
                    return;
                }
                Some(code) if is_permanent(code) => {
                    let event = event_from_payload(
                        &batch.input,
                        msg.payload().unwrap_or_default(),
                        self.encoding,
                    );
                    if let Ok(mut r) = batch.rejected.lock() {
                        r.push(Rejection {
                            event,
                            kind: format!("kafka_{code:?}"),
                            reason: error.to_string(),
                        });
                    }
                }
                // Purged at shutdown, timed out, or a fatal producer error: not delivered, and
                // not refused for what the message is either: the input must send it again.
                code => {
                    // A broker's answer not known to be for good nor passing (librdkafka retries
                    // those itself): the batch fails. An input that can read it again does; one
                    // that cannot (stdin, socket without acknowledgements) loses it, so say so.
                    if let Some(code) = code.filter(|c| !local && (*c as i32) > 0) {
                        if !self.refused_otherwise.swap(true, Ordering::Relaxed) {
                            tracing::warn!(output = %self.output, error = %error, code = ?code,
                                "Kafka refused messages with an error trawl does not know to be for good: their batch is failed, read again by inputs that can (file, journald), lost to those that cannot (stdin); counted in trawl_output_retries_total (logged once)");
                        }
                    }
                    // (A retired producer's purge is no failed attempt of the brokers'.)
                    if !self.retired.load(Ordering::Relaxed) {
                        self.metrics.attempt_failed(&error.to_string());
                        ComponentMetrics::add(&self.metrics.retries, 1);
                    }
                    batch.failed.store(true, Ordering::Relaxed);
                }
            },
        }
        self.room.notify_one();
        self.release(batch);
    }
}

/// Errors that are about the message itself: sending it again would fail again.
pub(super) fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            // A compacted topic refuses a record without a key.
            | RDKafkaErrorCode::InvalidRecord
            // Outside the topic's `message.timestamp.*.max.ms` of the broker's clock.
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::UnsupportedForMessageFormat
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

impl Reports {
    /// The reports of the output's producer; `alone_config` makes the one `send_alone` uses.
    /// `resend` takes the messages librdkafka gives up on, when the output retries them.
    pub(super) fn new(
        ctx: &OutputContext,
        encoding: Encoding,
        alone_config: ClientConfig,
        resend: Option<tokio::sync::mpsc::Sender<Resend>>,
        generation: u64,
    ) -> Reports {
        Reports {
            alone_config: Some(alone_config),
            resend,
            generation,
            ..Reports::fresh(
                tokio::runtime::Handle::current(),
                DeadLetters::new(ctx),
                ctx.metrics.clone(),
                ctx.name.clone(),
                encoding,
            )
        }
    }

    /// Reports for the producer that replaces `old`'s: an outage or a stall `old` logged goes on,
    /// and is not logged again.
    pub(super) fn carry_on(mut self, old: &Reports) -> Reports {
        self.down = AtomicBool::new(old.down.load(Ordering::Relaxed));
        self.refused = AtomicBool::new(old.refused.load(Ordering::Relaxed));
        self.stall = old.stall.carry_on();
        self
    }

    /// Reports that take nothing back and make no second producer (see `new` for those).
    fn fresh(
        runtime: tokio::runtime::Handle,
        dead: DeadLetters,
        metrics: Arc<ComponentMetrics>,
        output: Arc<str>,
        encoding: Encoding,
    ) -> Reports {
        Reports {
            runtime,
            dead,
            metrics,
            output,
            encoding,
            down: AtomicBool::new(false),
            lived_through_outage: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            room: tokio::sync::Notify::new(),
            stall: Stall::new(),
            resent: Mutex::new(HashMap::new()),
            alone_config: None,
            alone: OnceLock::new(),
            resend: None,
            generation: 0,
            retired: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            refused_otherwise: AtomicBool::new(false),
        }
    }

    /// Whether this producer found every broker unreachable at some point (see
    /// `TakenBack::MissingTopicAfterOutage`).
    pub(super) fn lived_through_outage(&self) -> bool {
        self.lived_through_outage.load(Ordering::Relaxed)
    }

    /// A message librdkafka gave up on after `message.timeout.ms`, or purged from this producer
    /// as the output retired it, or refused for a missing topic after an outage (see
    /// `TakenBack`), goes back to the output, which produces it again:
    /// a stuck attempt (an outage, or librdkafka holding a partition's messages after a leader
    /// change) ends without losing the message where the input cannot read it again. A
    /// duplicate only if the broker had written it after all (it was in flight). False when the
    /// output gives up on messages instead, is gone (shutdown), or its queue of messages to send
    /// again is full: the batch then fails, as without this.
    fn take_back(&self, msg: &BorrowedMessage<'_>, batch: &Arc<InFlight>, why: TakenBack) -> bool {
        let Some(resend) = &self.resend else {
            return false;
        };
        // Purged otherwise than by retirement: the output is being dropped (shutdown).
        if why == TakenBack::Purged && !self.retired.load(Ordering::Relaxed) {
            return false;
        }
        let again = Resend {
            from: self.generation,
            why,
            topic: msg.topic().to_owned(),
            payload: msg.payload().unwrap_or_default().to_vec(),
            key: msg.key().map(<[u8]>::to_vec),
            headers: msg.headers().map(|h| h.detach()),
            batch: batch.clone(),
        };
        match resend.try_send(again) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(output = %self.output,
                        "messages librdkafka gave up on cannot be taken back (too many waiting to be sent again): their batches are not acknowledged (logged once)");
                }
                return false;
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return false,
        }
        ComponentMetrics::add(&self.metrics.retries, 1);
        if why == TakenBack::TimedOut {
            self.metrics
                .attempt_failed("librdkafka gave up on messages (message.timeout.ms); sent again");
        }
        true
    }

    /// A message the broker refused as too large may have been refused for its batch: librdkafka
    /// packs messages into requests of up to `batch.size`, and a topic whose `max.message.bytes`
    /// is below that refuses every batch over it whole, small messages included (librdkafka,
    /// unlike the Java producer, does not split a refused batch). The message is sent again by a
    /// producer that puts one message in each request, so that only a message too large on its
    /// own goes to the dead letters. Out of order with the messages that followed it. Returns
    /// false when it cannot be handed over (this is that producer, or it cannot be made).
    fn send_alone(&self, msg: &BorrowedMessage<'_>, batch: &Arc<InFlight>) -> bool {
        let Some(config) = &self.alone_config else {
            return false;
        };
        let alone = match self.alone.get() {
            Some(p) => p,
            None => {
                // (On librdkafka's thread: there is no current runtime to ask for.)
                let reports = Reports {
                    resend: self.resend.clone(),
                    generation: self.generation,
                    ..Reports::fresh(
                        self.runtime.clone(),
                        self.dead.clone(),
                        self.metrics.clone(),
                        self.output.clone(),
                        self.encoding,
                    )
                };
                match PolledProducer::create(config, reports) {
                    Ok(p) => {
                        // Two delivery reports can get here at once (seen in CI: the warning
                        // twice, 0.3 ms apart): only the one whose producer is kept logs.
                        let mut kept = false;
                        let alone = self.alone.get_or_init(|| {
                            kept = true;
                            Arc::new(p)
                        });
                        if kept {
                            tracing::warn!(output = %self.output, topic = msg.topic(),
                                "the broker refused a batch of messages as too large for the topic (its max.message.bytes is below the requests trawl sends; set the output's max_message_bytes to it): messages refused so are sent again one per request, and only one too large on its own goes to the dead letters (logged once)");
                        }
                        alone
                    }
                    Err(e) => {
                        tracing::error!(output = %self.output, error = %e, "cannot make a producer to send refused messages one at a time");
                        return false;
                    }
                }
            }
        };
        let mut record = BaseRecord::with_opaque_to(msg.topic(), batch.clone())
            .payload(msg.payload().unwrap_or_default());
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(headers) = msg.headers() {
            record = record.headers(headers.detach());
        }
        ComponentMetrics::add(&self.metrics.retries, 1);
        loop {
            match alone.send(record) {
                Ok(()) => return true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // This runs on the first producer's reporting thread: waiting here holds its
                    // reports (and so new sends) while the other producer's queue drains.
                    record = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
    }

    /// Messages that waited past `STALL_GRACE` with no delivery report make the output failing
    /// since they began waiting, so that `/health` turns 503 once that lasts past its threshold
    /// (librdkafka alone says nothing for over a minute about a broker that hangs with its
    /// connections open). Logged once per stall; the next delivery ends it.
    fn watch_stall(&self, waiting: u64) {
        let waited = self.stall.waited(waiting);
        if waited < STALL_GRACE {
            return;
        }
        let why = format!(
            "no delivery report for {} s with {waiting} messages waiting: the brokers do not answer",
            waited.as_secs()
        );
        self.metrics.attempt_failed_since(
            SystemTime::now()
                .checked_sub(waited)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            &why,
        );
        if !self.stall.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(output = %self.output, waiting, waited_s = waited.as_secs(),
                "no delivery report from Kafka for {} s with messages waiting (a broker hung or unreachable with its connection open?); they are kept and retried (logged once until a report comes)",
                waited.as_secs());
        }
    }

    /// Counts one message (or the sending phase) as done; the last one settles the batch.
    pub(super) fn release(&self, batch: Arc<InFlight>) {
        if batch.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Some(ack) = batch.ack.lock().ok().and_then(|mut a| a.take()) else {
            return;
        };
        let rejected = batch
            .rejected
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let status = if batch.failed.load(Ordering::Relaxed) {
            BatchStatus::Failed
        } else if rejected.is_empty() {
            BatchStatus::Delivered
        } else {
            BatchStatus::Rejected
        };
        if rejected.is_empty() {
            ack.settle(status);
        } else {
            let dead = self.dead.clone();
            self.runtime.spawn(async move {
                dead.send(rejected, &ack).await;
                ack.settle(status);
            });
        }
    }
}

/// Rebuilds the event of a refused message from its payload, for the dead letters.
pub(super) fn event_from_payload(input: &Arc<str>, payload: &[u8], encoding: Encoding) -> Event {
    let mut e = Event::new(input.clone(), chrono::Utc::now());
    let parsed = match encoding {
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(payload).ok(),
        Encoding::Raw => None,
    };
    match parsed.map(Value::from_json) {
        Some(Value::Object(fields)) => e.fields = fields,
        _ => {
            e.fields = Map::new();
            e.insert("message", String::from_utf8_lossy(payload).into_owned());
        }
    }
    e
}
