//! The `kafka` output's delivery loop: each batch's events become librdkafka messages (topic,
//! key and headers rendered, too large or unroutable ones to the dead letters), messages taken
//! back are produced again, and a reload that retires the output gives up what it holds.

use super::producer::{send, Producers};
use super::reports::{is_permanent, InFlight, Resend};
use super::{check_topic_name, polled, Encoding, Kafka};
use crate::event::{Event, Value};
use crate::inputs::BoxFuture;
use crate::outputs::dead_letter::Rejection;
use crate::outputs::{Output, OutputContext};
use crate::telemetry::metrics::ComponentMetrics;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

impl Output for Kafka {
    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let config = self.config;
            // Each message taken back left librdkafka's bounded queue; twice its size leaves
            // room for a second queue's worth timing out before the loop below sends them.
            let (resend, mut resends) =
                tokio::sync::mpsc::channel::<Resend>(config.queue_max_messages.max(1) * 2);
            let resend = config.delivery_timeout.is_none().then_some(resend);
            let mut producers = Producers::start(&ctx, self.client, config.encoding, resend)
                .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
            let max_message = config.max_message_bytes.as_usize();
            let mut payload = Vec::with_capacity(4096);
            let (mut topic, mut key) = (String::new(), String::new());
            let mut header_values: Vec<String> = vec![String::new(); config.headers.len()];
            let static_topic = config
                .topic
                .is_static()
                .then(|| config.topic.source().to_owned());
            let mut retire = ctx.retire.clone();

            loop {
                // Messages taken back first: they are the oldest.
                let batch = tokio::select! {
                    biased;
                    () = retire.fired() => break,
                    Some(again) = resends.recv() => {
                        producers.resend(&ctx, again).await;
                        continue;
                    }
                    batch = ctx.rx.recv() => match batch {
                        Some(b) => b,
                        None => break,
                    },
                };
                ComponentMetrics::add(&ctx.metrics.events_in, batch.len() as u64);
                let input = batch.input().unwrap_or_else(|| Arc::from(""));
                let (events, ack) = batch.into_parts();
                let flight = Arc::new(InFlight {
                    remaining: AtomicUsize::new(1),
                    ack: Mutex::new(Some(ack)),
                    rejected: Mutex::new(Vec::new()),
                    failed: AtomicBool::new(false),
                    input,
                });
                let mut bytes = 0u64;
                for event in events {
                    let refuse = |event: Event, kind: &str, reason: String| {
                        if let Ok(mut r) = flight.rejected.lock() {
                            r.push(Rejection {
                                event,
                                kind: kind.to_owned(),
                                reason,
                            });
                        }
                    };
                    let topic: &str = match &static_topic {
                        Some(t) => t,
                        None => match config.topic.render_into(&event, &mut topic) {
                            // Checked here, not left to the broker: librdkafka panics on a
                            // topic with a NUL in it.
                            Ok(()) => match check_topic_name(&topic) {
                                Ok(()) => &topic,
                                Err(e) => {
                                    refuse(event, "invalid_topic", format!("topic: {e}"));
                                    continue;
                                }
                            },
                            Err(e) => {
                                refuse(event, "template_error", format!("topic: {e}"));
                                continue;
                            }
                        },
                    };
                    if let Some(k) = &config.key {
                        if let Err(e) = k.render_into(&event, &mut key) {
                            refuse(event, "template_error", format!("key: {e}"));
                            continue;
                        }
                    }
                    let mut missing = None;
                    for ((name, t), v) in config.headers.iter().zip(header_values.iter_mut()) {
                        if let Err(e) = t.render_into(&event, v) {
                            missing = Some(format!("header {name}: {e}"));
                        }
                    }
                    if let Some(reason) = missing {
                        refuse(event, "template_error", reason);
                        continue;
                    }
                    payload.clear();
                    encode(&event, config.encoding, &mut payload);
                    if payload.len() > max_message {
                        let reason = format!(
                            "message of {} bytes is over max_message_bytes ({max_message})",
                            payload.len()
                        );
                        refuse(event, "message_too_large", reason);
                        continue;
                    }
                    bytes += payload.len() as u64;
                    let record = || {
                        let mut record =
                            BaseRecord::with_opaque_to(topic, flight.clone()).payload(&payload[..]);
                        if config.key.is_some() {
                            record = record.key(key.as_bytes());
                        }
                        if !config.headers.is_empty() {
                            let mut h = OwnedHeaders::new_with_capacity(config.headers.len());
                            for (name, v) in config.headers.keys().zip(&header_values) {
                                h = h.insert(Header {
                                    key: name,
                                    value: Some(v.as_str()),
                                });
                            }
                            record = record.headers(h);
                        }
                        record
                    };
                    flight.remaining.fetch_add(1, Ordering::AcqRel);
                    let mut sent = send(&producers.current, record(), &ctx.retire).await;
                    if let Err(e) = &sent {
                        // A topic librdkafka gave up waiting for during an outage.
                        let missing = matches!(
                            e.rdkafka_error_code(),
                            Some(
                                RDKafkaErrorCode::UnknownTopic
                                    | RDKafkaErrorCode::UnknownTopicOrPartition
                            )
                        );
                        if missing && producers.renew_for_missing_topic(&ctx) {
                            sent = send(&producers.current, record(), &ctx.retire).await;
                        }
                    }
                    if let Err(e) = sent {
                        flight.remaining.fetch_sub(1, Ordering::AcqRel);
                        if ctx.retire.is_triggered() {
                            // Retired by a reload while waiting for room in librdkafka's
                            // queue: the batch goes back to be read again.
                            flight.failed.store(true, Ordering::Relaxed);
                            break;
                        }
                        match e.rdkafka_error_code() {
                            Some(code) if is_permanent(code) => {
                                refuse(event, "kafka_produce_error", e.to_string())
                            }
                            _ => {
                                tracing::error!(output = %ctx.name, error = %e,
                                    "cannot produce; the batch is not acknowledged");
                                flight.failed.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                ComponentMetrics::add(&ctx.metrics.bytes_out, bytes);
                producers.current.context().release(flight);
            }

            if !ctx.retire.is_triggered() {
                tokio::select! {
                    r = drain_all(&ctx, &mut producers, &mut resends) => return r,
                    // A reload replaced this output while it cannot deliver what it holds.
                    () = retire.fired() => {}
                }
            }
            give_up(&ctx, producers, resends).await;
            Ok(())
        })
    }
}

/// Inputs are done: waits until librdkafka has delivered (or given up on) everything, and again
/// for what it gave up on and was taken back.
async fn drain_all(
    ctx: &OutputContext,
    producers: &mut Producers,
    resends: &mut tokio::sync::mpsc::Receiver<Resend>,
) -> anyhow::Result<()> {
    loop {
        let p = producers.current.clone();
        tokio::task::spawn_blocking(move || {
            // A message refused in the first producer's batch moves to the second before
            // the first counts it delivered: so the first, then the second.
            drain(&p);
            if let Some(alone) = p.context().alone.get() {
                drain(alone);
            }
        })
        .await?;
        producers.retired().await;
        let mut taken_back = false;
        while let Ok(again) = resends.try_recv() {
            taken_back = true;
            producers.resend(ctx, again).await;
        }
        if !taken_back {
            return Ok(());
        }
    }
}

/// A reload replaced this output while it cannot deliver (a wrong broker address, refused
/// credentials: what the reload is likely fixing). What it holds is given up unsettled, so
/// counted failed: inputs that can read it again (files, journald, a disk buffer) do, and the
/// output replacing this one delivers it. A duplicate only for a message in flight that a
/// broker wrote after all.
async fn give_up(
    ctx: &OutputContext,
    producers: Producers,
    mut resends: tokio::sync::mpsc::Receiver<Resend>,
) {
    // Nothing more is taken back from here: a purged message's report fails its batch.
    resends.close();
    let mut held = 0;
    while let Ok(again) = resends.try_recv() {
        held += 1;
        again.batch.failed.store(true, Ordering::Relaxed);
        producers.current.context().release(again.batch);
    }
    held += producers.give_up().await;
    tracing::info!(output = %ctx.name, waiting_events = held,
        "output retired by a reload: what it held (also librdkafka's queue and its requests in flight) goes back to be read again");
}

/// Waits until librdkafka holds no message of `p` and the polling thread has served the
/// delivery reports. Not "until its queue is empty": librdkafka's logs go through that queue
/// too, and each flush logs one at debug level ("Wake-up sent ... flushing"), so with
/// `librdkafka: { debug: ... }` a loop of flushes until the queue was empty never ended.
fn drain(p: &polled::PolledProducer) {
    loop {
        match p.flush(std::time::Duration::from_secs(1)) {
            Ok(()) => break,
            Err(_) if p.in_flight_count() == 0 => break,
            // A flush that fails at once (not a timeout) is not spun on.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    // The reports are served within milliseconds; logs may keep coming, hence the bound.
    let served = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while p.in_flight_count() > 0 && std::time::Instant::now() < served {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub(super) fn encode(event: &Event, encoding: Encoding, out: &mut Vec<u8>) {
    if encoding == Encoding::Raw {
        if let Some(Value::String(m)) = event.fields.get("message") {
            out.extend_from_slice(m.as_bytes());
            return;
        }
    }
    let _ = serde_json::to_writer(&mut *out, &event.fields);
}
