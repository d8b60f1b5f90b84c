//! One `_bulk` request from send to settlement: a request that fails as a whole is sent again
//! after a back-off (until `retry.max_attempts`), one over the size limit in halves; then each
//! item is settled: accepted, dead-lettered, or queued to join a later request after its own
//! back-off (until `retry.max_item_attempts` or `retry.max_item_age`).

use super::bulk::{self, Item};
use super::client::Answer;
use super::response::{self, ItemOutcome, RequestVerdict};
use super::retry::Backoff;
use super::{snippet, Rejection, Shared};
use crate::telemetry::metrics::ComponentMetrics;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// How long a bulk request may go unanswered before the output counts as failing since it was
/// sent: far above a healthy cluster's answer, and below `request_timeout` (60 s by default),
/// which a node that hangs with its connections open (a stopped JVM, a long GC pause, a frozen
/// VM) would otherwise make `/health` wait out before it counts anything.
const UNANSWERED_GRACE: Duration = Duration::from_secs(10);

/// 429s an item takes before its own back-off starts: with 20% of items refused at random,
/// one item in 80,000 is refused 7 times in a row, so chance alone rarely gets there, and a
/// shard that refuses the same items every time is not retried at the pace of the requests.
const FREE_429_RETRIES: u32 = 6;

/// An item refused for good, with why.
struct Refused {
    item: Item,
    kind: String,
    reason: String,
}

/// Sends `items` until each is accepted, refused for good, queued for a retry or given up on.
/// Items answered 429 or 5xx do not hold this request (nor its place among the requests in
/// flight) while they wait: the accepted share keeps flowing.
pub(super) async fn deliver(items: Vec<Item>, shared: &Shared) {
    let mut todo: VecDeque<Item> = items.into();
    let mut chunk = todo.len().max(1);
    let mut backoff = Backoff::new(
        shared.retry.initial_backoff.std(),
        shared.retry.max_backoff.std(),
    );
    let mut refused = Vec::new();
    while !todo.is_empty() {
        // No index is created before its template is in place (it would get guessed types).
        // Waiting for it counts towards `retry.max_attempts` like any failed request, so an
        // unreachable cluster is given up on after the same number of tries.
        if let Some(t) = &shared.template {
            if !t.ready(&shared.client).await {
                let max = shared.retry.max_attempts;
                if max > 0 && backoff.attempts() + 1 >= max {
                    let rest: Vec<Item> = todo.drain(..).collect();
                    give_up(
                        shared,
                        rest,
                        "the index template could not be installed",
                        max,
                    )
                    .await;
                    break;
                }
                shared
                    .metrics
                    .attempt_failed("the index template could not be installed");
                ComponentMetrics::add(&shared.metrics.retries, 1);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        let n = chunk.min(todo.len());
        let sending: Vec<Item> = todo.drain(..n).collect();
        let body = match bulk::body(sending.iter(), shared.client.gzip()) {
            Ok(b) => b,
            Err(e) => {
                // Compressing into memory cannot fail short of allocation failure.
                give_up(shared, sending, &format!("cannot build bulk body: {e}"), 0).await;
                continue;
            }
        };
        let size = body.len() as u64;
        let sent = SystemTime::now();
        let failure = match bulk_watched(shared, body, sent).await {
            Err(e) => format!("bulk request failed: {e}"),
            Ok(answer) => {
                ComponentMetrics::add(&shared.metrics.bytes_out, size);
                match response::request_verdict(answer.status) {
                    RequestVerdict::Retry => format!(
                        "bulk request answered {}: {}",
                        answer.status,
                        snippet(&answer.body)
                    ),
                    RequestVerdict::Split if n > 1 => {
                        chunk = n.div_ceil(2);
                        if shared.split_said.swap(true, Ordering::Relaxed) {
                            tracing::debug!(items = n, now = chunk, "bulk request split again");
                        } else {
                            tracing::info!(
                                items = n,
                                now = chunk,
                                "bulk request too large (413): sending it in halves (logged once; lower batch.max_bytes to the cluster's http.max_content_length to avoid it)"
                            );
                        }
                        for item in sending.into_iter().rev() {
                            todo.push_front(item);
                        }
                        continue;
                    }
                    RequestVerdict::Split | RequestVerdict::Reject => {
                        let reason = if answer.status == 413 {
                            // Elasticsearch answers 413 with no body: say what it means.
                            "HTTP 413: this one event is over the cluster's http.max_content_length"
                                .to_owned()
                        } else {
                            format!("HTTP {}: {}", answer.status, snippet(&answer.body))
                        };
                        refused.extend(sending.into_iter().map(|item| Refused {
                            item,
                            kind: format!("http_{}", answer.status),
                            reason: reason.clone(),
                        }));
                        continue;
                    }
                    RequestVerdict::ReadItems => {
                        match response::item_outcomes(&answer.body, n, shared.op_type) {
                            Err(e) => e,
                            Ok(outcomes) => {
                                backoff.reset();
                                settle(sending, outcomes, shared, &mut backoff, &mut refused);
                                continue;
                            }
                        }
                    }
                }
            }
        };
        // The request failed as a whole: not the events' fault, so all of it goes again.
        let max = shared.retry.max_attempts;
        if max > 0 && backoff.attempts() + 1 >= max {
            let rest: Vec<Item> = sending.into_iter().chain(todo.drain(..)).collect();
            shared.metrics.attempt_failed(&failure);
            give_up(shared, rest, &failure, max).await;
            break;
        }
        outage(shared, &failure, sent);
        for item in sending.into_iter().rev() {
            todo.push_front(item);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    dead_letter(shared, refused).await;
}

/// Applies one answer's item outcomes: accepted items settle now, refused ones are collected
/// for the dead letters, and the ones worth retrying are queued with their own back-off.
///
/// A 429 says the cluster is busy, not that the item is special: its wait follows the output's
/// `pressure`, which rises while most items of an answer are refused and falls otherwise. At
/// level 0 the item goes in the next request; from level 1 it waits `initial_backoff` doubled
/// per level (jittered, up to `max_backoff`). A few rejections slow the output a little (the
/// refused share is sent again), an overload a lot; and a batch is not held back long by its
/// unlucky items, which matters because inputs release acknowledgements in order. An item
/// refused more than `FREE_429_RETRIES` times in a row backs off on its own count too. An index
/// blocked, closed or missing is the same kind of answer (the cluster's state, not the item's). A
/// 5xx on an item (or a 404 for a shard not ready: see `response::shard_not_ready`) says its
/// shard is unwell: its wait doubles with its own refusals, and they count towards
/// `retry.max_item_attempts`. All count towards `retry.max_item_age`.
///
/// An answer that took none of its items and left some waiting is a failed attempt for
/// `/health`, like a request that failed as a whole: an index blocked for an hour must not look
/// healthy because the node answers 200.
fn settle(
    sending: Vec<Item>,
    outcomes: Vec<ItemOutcome>,
    shared: &Shared,
    backoff: &mut Backoff,
    refused: &mut Vec<Refused>,
) {
    let now = Instant::now();
    let n = sending.len();
    let mut accepted = 0u64;
    let mut again = Vec::new();
    let mut first_retry = None;
    let busy = shared.pressure.load(Ordering::Relaxed);
    for (mut item, outcome) in sending.into_iter().zip(outcomes) {
        match outcome {
            ItemOutcome::Accepted => {
                accepted += 1;
                item.ack.delivered();
            }
            ItemOutcome::Reject { kind, reason } => refused.push(Refused { item, kind, reason }),
            ItemOutcome::Retry {
                status,
                reason,
                blocked,
            } => {
                let since = *item.first_refused.get_or_insert(now);
                let age = now.duration_since(since);
                let wait = if status == 429 || blocked {
                    // Level 0: the next request, with no wait of its own. An item refused more
                    // often in a row than chance explains while most others pass (a hot shard)
                    // backs off on its own count too.
                    item.throttled += 1;
                    busy.max(item.throttled.saturating_sub(FREE_429_RETRIES))
                        .checked_sub(1)
                        .map_or(std::time::Duration::ZERO, |level| backoff.delay(level))
                } else {
                    item.failures += 1;
                    backoff.delay(item.failures - 1)
                };
                let max_count = shared.retry.max_item_attempts;
                let max_age = shared.retry.max_item_age.std();
                if (max_count > 0 && item.failures >= max_count)
                    || (!max_age.is_zero() && age >= max_age)
                {
                    let reason = format!(
                        "gave up after {} attempts over {:.1}s (retry.max_item_attempts, retry.max_item_age); last answer {status} {reason}",
                        item.failures + item.throttled,
                        age.as_secs_f64()
                    );
                    refused.push(Refused {
                        item,
                        kind: "retries_exhausted".into(),
                        reason,
                    });
                    continue;
                }
                first_retry.get_or_insert((status, reason, blocked));
                item.ready_at = now + wait;
                again.push(item);
            }
        }
    }
    ComponentMetrics::add(&shared.metrics.events_out, accepted);
    if again.len() * 2 > n {
        let _ = shared
            .pressure
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some((p + 1).min(16))
            });
    } else {
        let _ = shared
            .pressure
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(1))
            });
    }
    match first_retry {
        Some((status, reason, blocked)) if accepted == 0 => {
            let what = format!("every item refused ({status} {reason})");
            if blocked {
                refusing(shared, &what);
            } else {
                shared.metrics.attempt_failed(&what);
                tracing::debug!(items = again.len(), status, %reason, "items Elasticsearch could not take now go in a later request");
            }
        }
        Some((status, reason, _)) => {
            recovered(shared);
            tracing::debug!(items = again.len(), status, %reason, "items Elasticsearch could not take now go in a later request");
        }
        None => recovered(shared),
    }
    ComponentMetrics::add(&shared.metrics.retries, again.len() as u64);
    shared.queue_retries(again);
}

/// Events of a request that failed `attempts` times in a row: to the `dead_letter` output when
/// there is one (their batches are then acknowledged), else their batches fail (inputs that can
/// read them again do) and they are counted in `trawl_events_failed_total`. Logged once.
async fn give_up(shared: &Shared, items: Vec<Item>, failure: &str, attempts: u32) {
    if items.is_empty() {
        return;
    }
    let to_dead_letter = shared.dead.has_target();
    if !shared.gave_up.swap(true, Ordering::Relaxed) {
        tracing::error!(events = items.len(), attempts, dead_letter = to_dead_letter, reason = %failure,
            "giving up on events after retry.max_attempts (logged once; counted in trawl_events_failed_total)");
    }
    if to_dead_letter {
        let reason =
            format!("bulk request failed {attempts} times (retry.max_attempts): {failure}");
        let refused = items
            .into_iter()
            .map(|item| Refused {
                item,
                kind: "retries_exhausted".into(),
                reason: reason.clone(),
            })
            .collect();
        dead_letter(shared, refused).await;
    } else {
        ComponentMetrics::add(&shared.metrics.events_failed, items.len() as u64);
        for item in items {
            item.ack.failed();
        }
    }
}

/// Sends refused items to the dead letters, one dead-letter batch per run of items from the same
/// batch, then settles each item as rejected.
async fn dead_letter(shared: &Shared, refused: Vec<Refused>) {
    let mut refused = refused.into_iter().peekable();
    while let Some(first) = refused.next() {
        let mut run = vec![first];
        while let Some(next) = refused.next_if(|r| r.item.ack.same_batch(&run[0].item.ack)) {
            run.push(next);
        }
        let mut acks = Vec::with_capacity(run.len());
        let rejections = run
            .into_iter()
            .map(|r| {
                let event = r.item.event();
                acks.push(r.item.ack);
                Rejection {
                    event,
                    kind: r.kind,
                    reason: r.reason,
                }
            })
            .collect();
        shared.dead.send(rejections, &acks[0]).await;
        for ack in acks {
            ack.rejected();
        }
    }
}

/// Sends one bulk body; a request still unanswered after `UNANSWERED_GRACE` makes the output
/// failing since `sent` (logged once per outage), and is still awaited until `request_timeout`.
async fn bulk_watched(shared: &Shared, body: Vec<u8>, sent: SystemTime) -> Result<Answer, String> {
    let request = shared.client.bulk(body);
    tokio::pin!(request);
    tokio::select! {
        answer = &mut request => return answer,
        () = tokio::time::sleep(UNANSWERED_GRACE) => {}
    }
    let what = format!(
        "no answer to a bulk request for {} s",
        UNANSWERED_GRACE.as_secs()
    );
    shared.metrics.attempt_failed_since(sent, &what);
    if !shared.failing.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %what, "Elasticsearch does not answer (a node hung with its connection open, or overloaded); the request is awaited until request_timeout, then retried with backoff (logged once until it recovers)");
    }
    request.await
}

/// A request that failed as a whole, sent at `sent`: the output is failing since then.
fn outage(shared: &Shared, what: &str, sent: SystemTime) {
    shared.metrics.attempt_failed_since(sent, what);
    ComponentMetrics::add(&shared.metrics.retries, 1);
    if !shared.failing.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %what, "Elasticsearch is not taking requests; retrying with backoff (logged once until it recovers)");
    } else {
        tracing::debug!(error = %what, "bulk request retried");
    }
}

/// Every item of an answer refused for the index's state (blocked, closed or missing): it lasts until
/// someone acts, so it is logged once, not per request, and its end too (`recovered`).
fn refusing(shared: &Shared, what: &str) {
    shared.metrics.attempt_failed(what);
    if !shared.failing.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %what, "Elasticsearch refuses to write the index (blocked, closed, or missing on a cluster that creates none); its events wait and are retried until retry.max_item_age (logged once until it takes them)");
    }
}

fn recovered(shared: &Shared) {
    shared.metrics.delivering();
    if shared.failing.swap(false, Ordering::Relaxed) {
        tracing::info!("Elasticsearch takes requests again");
    }
}
