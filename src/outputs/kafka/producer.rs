//! The Kafka output's librdkafka producer, renewed when librdkafka gives up on a message it
//! held past its attempt (`message.timeout.ms`): a producer can keep a partition's messages for
//! ever after a leader change (seen in CI), so the messages are produced again through a new
//! one, and the old one's are purged and follow them.

use super::polled::PolledProducer;
use super::reports::{event_from_payload, is_permanent, InFlight, Reports, Resend, TakenBack};
use super::Encoding;
use crate::outputs::dead_letter::Rejection;
use crate::outputs::OutputContext;
use crate::pipeline::channel::Shutdown;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// The output's current producer and what it takes to make the next one.
pub(super) struct Producers {
    pub(super) current: Arc<PolledProducer>,
    generation: u64,
    client: ClientConfig,
    /// The settings of the producer that sends refused messages one at a time.
    alone: ClientConfig,
    encoding: Encoding,
    /// Where the producers' reports put the messages they take back (`None`: given up).
    resend: Option<Sender<Resend>>,
    /// The output's delivered count at the last renewal: unchanged at the next one, the same
    /// outage goes on, and that renewal is not logged again.
    delivered_at_renewal: Option<u64>,
    /// Producers being retired: their purged messages come back only when this ends.
    retiring: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    pub(super) fn start(
        ctx: &OutputContext,
        client: ClientConfig,
        encoding: Encoding,
        resend: Option<Sender<Resend>>,
    ) -> Result<Producers, KafkaError> {
        let mut alone = client.clone();
        alone.set("batch.num.messages", "1").set("linger.ms", "0");
        let reports = Reports::new(ctx, encoding, alone.clone(), resend.clone(), 0);
        let current = Arc::new(PolledProducer::create(&client, reports)?);
        Ok(Producers {
            current,
            generation: 0,
            client,
            alone,
            encoding,
            resend,
            delivered_at_renewal: None,
            retiring: Vec::new(),
        })
    }

    /// Produces again a message taken back. One librdkafka gave up on in the current producer
    /// says that producer did not deliver for a whole attempt, and one refused for a missing
    /// topic after an outage that its wait for the topic ran out: a new one takes over first.
    pub(super) async fn resend(&mut self, ctx: &OutputContext, again: Resend) {
        if again.why != TakenBack::Purged && again.from == self.generation {
            self.renew(ctx, again.why);
        }
        send_again(&self.current, again, self.encoding, &ctx.retire).await;
    }

    /// When the current producer lived through an outage, replaces it (see
    /// `TakenBack::MissingTopicAfterOutage`) and returns true: a message it refused at once for
    /// a missing topic is then produced through the new one.
    pub(super) fn renew_for_missing_topic(&mut self, ctx: &OutputContext) -> bool {
        if self.resend.is_none() || !self.current.context().lived_through_outage() {
            return false;
        }
        self.renew(ctx, TakenBack::MissingTopicAfterOutage);
        true
    }

    /// Replaces the current producer by a new one; the old one is purged (its messages are
    /// taken back, and produced again through the new one) and dropped off the runtime.
    fn renew(&mut self, ctx: &OutputContext, why: TakenBack) {
        let generation = self.generation + 1;
        let reports = Reports::new(
            ctx,
            self.encoding,
            self.alone.clone(),
            self.resend.clone(),
            generation,
        )
        .carry_on(self.current.context());
        let fresh = match PolledProducer::create(&self.client, reports) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::error!(output = %ctx.name, error = %e, "cannot make a new Kafka producer; the current one keeps the messages");
                return;
            }
        };
        let delivered = ctx.metrics.events_out.load(Ordering::Relaxed);
        if why == TakenBack::MissingTopicAfterOutage {
            tracing::warn!(output = %ctx.name, generation,
                "after an outage, Kafka reports a topic missing: a new producer sends its messages again and waits for the topic for topic.metadata.propagation.max.ms from now (librdkafka counted that wait from the first message, during the outage)");
        } else if self.delivered_at_renewal.replace(delivered) == Some(delivered) {
            tracing::debug!(output = %ctx.name, generation, "a new Kafka producer takes over again");
        } else {
            tracing::warn!(output = %ctx.name, generation,
                "librdkafka gave up on messages after its message.timeout.ms: a new Kafka producer takes over, and every message the old one held is produced again through it (without limit: `delivery_timeout` is not set; logged once until a delivery)");
        }
        let old = std::mem::replace(&mut self.current, fresh);
        self.generation = generation;
        self.retiring.retain(|r| !r.is_finished());
        self.retiring
            .push(tokio::task::spawn_blocking(move || retire(old)));
    }

    /// Waits until every retired producer has handed its messages back (at shutdown, before
    /// the output looks for messages left to send).
    pub(super) async fn retired(&mut self) {
        for r in self.retiring.drain(..) {
            let _ = r.await;
        }
    }

    /// Purges every producer, whose reports then fail the batches of what they held (the output
    /// is being retired), and drops them off the runtime. Returns how many messages they held.
    pub(super) async fn give_up(mut self) -> usize {
        self.retired().await;
        let current = self.current;
        let held = current.in_flight_count().max(0) as usize;
        let _ = tokio::task::spawn_blocking(move || retire(current)).await;
        held
    }
}

/// Purges a producer the output replaced and waits (a bounded time) for the reports that
/// hand its messages back, then drops it: librdkafka's teardown blocks.
fn retire(old: Arc<PolledProducer>) {
    let alone = old.context().alone.get().cloned();
    let all = std::iter::once(&old).chain(alone.as_ref());
    for p in all {
        p.context().retired.store(true, Ordering::Relaxed);
        p.purge(PurgeConfig::default().queue().inflight());
        for _ in 0..30 {
            if p.in_flight_count() == 0 {
                break;
            }
            let _ = p.flush(Duration::from_secs(1));
        }
    }
}

/// Hands one message to librdkafka, waiting while its queue is full (slow or unreachable
/// brokers) for a delivery report to make room: this is the back-pressure. A reload retiring
/// the output ends the wait (`KafkaError::Canceled`).
pub(super) async fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &PolledProducer,
    mut record: BaseRecord<'_, K, P, Arc<InFlight>>,
    retire: &Shutdown,
) -> Result<(), KafkaError> {
    // Cloned only once the queue is full: most messages go in at once.
    let mut retire_wait: Option<Shutdown> = None;
    loop {
        let room = producer.context().room.notified();
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                let wait = Duration::from_millis(100);
                let retire = retire_wait.get_or_insert_with(|| retire.clone());
                tokio::select! {
                    _ = tokio::time::timeout(wait, room) => {}
                    () = retire.fired() => return Err(KafkaError::Canceled),
                }
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produces again a message taken back; if librdkafka refuses it now, it settles its batch as
/// a new message would (dead letters when refused for good, else not acknowledged).
async fn send_again(
    producer: &PolledProducer,
    again: Resend,
    encoding: Encoding,
    retire: &Shutdown,
) {
    let Resend {
        topic,
        payload,
        key,
        headers,
        batch,
        ..
    } = again;
    let mut record = BaseRecord::with_opaque_to(&topic, batch.clone()).payload(&payload[..]);
    if let Some(k) = &key {
        record = record.key(&k[..]);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    let Err(e) = send(producer, record, retire).await else {
        return;
    };
    match e.rdkafka_error_code() {
        Some(code) if is_permanent(code) => {
            if let Ok(mut r) = batch.rejected.lock() {
                r.push(Rejection {
                    event: event_from_payload(&batch.input, &payload, encoding),
                    kind: "kafka_produce_error".to_owned(),
                    reason: e.to_string(),
                });
            }
        }
        // Retired by a reload while waiting for room: read again, for the next output.
        _ if retire.is_triggered() => batch.failed.store(true, Ordering::Relaxed),
        _ => {
            tracing::error!(error = %e, "cannot produce a message again; its batch is not acknowledged");
            batch.failed.store(true, Ordering::Relaxed);
        }
    }
    producer.context().release(batch);
}
