//! Reading `_bulk` answers: what to do with the whole request (from the HTTP status) and with
//! each item (from its own status and error type): accepted, worth retrying later (429, 5xx, an
//! index blocked, closed or missing, its shard not available), or rejected for good (mapping
//! errors, other 4xx) with the reason.

use super::OpType;
use serde::Deserialize;
use std::collections::HashMap;

/// What to do with a whole request after its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVerdict {
    /// 2xx: read the items.
    ReadItems,
    /// Overload, server errors, auth or routing problems an operator can fix: send it again
    /// later. Nothing is dropped for a reason outside the events themselves.
    Retry,
    /// 413: the request is too large; send it in halves.
    Split,
    /// 400 on the request as a whole: the events themselves are refused.
    Reject,
}

pub fn request_verdict(status: u16) -> RequestVerdict {
    match status {
        200..=299 => RequestVerdict::ReadItems,
        413 => RequestVerdict::Split,
        400 => RequestVerdict::Reject,
        _ => RequestVerdict::Retry,
    }
}

/// The fate of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Accepted,
    /// Worth sending again (429 `es_rejected_execution_exception`, 5xx, an index blocked,
    /// closed or missing: see [`cluster_refusal`], a shard not ready: see [`shard_not_ready`]).
    Retry {
        status: u16,
        reason: String,
        /// Refused for the index's state, which lasts until someone acts.
        blocked: bool,
    },
    /// Refused for good (400 `mapper_parsing_exception`...): to the dead letters.
    Reject {
        kind: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Option<Vec<HashMap<String, ItemResult>>>,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One outcome per item sent, in order. `Err` when the answer is not a bulk response for
/// `sent` items (the request is then retried as a whole).
pub fn item_outcomes(
    body: &[u8],
    sent: usize,
    op_type: OpType,
) -> Result<Vec<ItemOutcome>, String> {
    let resp: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable bulk response: {e}"))?;
    // Elasticsearch always lists one item per action. A 2xx without them comes from something
    // else (a proxy, a wrong URL) and says nothing about whether a document was stored.
    let Some(items) = resp.items else {
        return Err(format!(
            "bulk answer without items for {sent} events sent (a proxy or a wrong URL?): {}",
            super::snippet(body)
        ));
    };
    if items.len() != sent {
        return Err(format!(
            "bulk answer has {} items for {sent} events sent",
            items.len()
        ));
    }
    Ok(items
        .into_iter()
        .map(|item| match item.into_values().next() {
            Some(r) => outcome(r, op_type),
            None => ItemOutcome::Retry {
                status: 0,
                reason: "empty item in bulk response".into(),
                blocked: false,
            },
        })
        .collect())
}

fn outcome(r: ItemResult, op_type: OpType) -> ItemOutcome {
    let (kind, reason) = match &r.error {
        Some(serde_json::Value::Object(e)) => (
            e.get("type")
                .and_then(|v| v.as_str())
                .unwrap_or("error")
                .to_owned(),
            e.get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        ),
        Some(other) => ("error".to_owned(), other.to_string()),
        None => (format!("http_{}", r.status), String::new()),
    };
    // The flood-stage block is answered 429, a write block 403, a closed index 400.
    let blocked = cluster_refusal(&kind) || missing_pipeline(&kind, &reason);
    match r.status {
        200..=299 => ItemOutcome::Accepted,
        // With `create`, a conflict means a copy sent before a crash is already stored.
        409 if op_type == OpType::Create => ItemOutcome::Accepted,
        429 | 500..=599 => ItemOutcome::Retry {
            status: r.status,
            reason: format!("{kind}: {reason}"),
            blocked,
        },
        _ if shard_not_ready(&kind) => ItemOutcome::Retry {
            status: r.status,
            reason: format!("{kind}: {reason}"),
            blocked: false,
        },
        _ if blocked => ItemOutcome::Retry {
            status: r.status,
            reason: format!("{kind}: {reason}"),
            blocked,
        },
        _ => ItemOutcome::Reject { kind, reason },
    }
}

/// Refusals that say what state an index is in, not what is wrong with the event: a write
/// block (403 `cluster_block_exception`: `index.blocks.write` set by an operator or before a
/// shrink, `read_only_allow_delete` after the disk watermark on older clusters; 429 for the
/// flood stage on OpenSearch 2.x; 503 while a restarted node has not recovered its cluster
/// state) or an index closed for maintenance (400 `index_closed_exception`), or an index not
/// there on a cluster that creates none on demand (404 `index_not_found_exception` with
/// `action.auto_create_index: false`: created by an operator or a job, often after the first
/// events come). The operator lifts them and the same event is then taken, so it waits like an
/// overloaded cluster's 429 rather than going to the dead letters (until `retry.max_item_age`).
pub fn cluster_refusal(kind: &str) -> bool {
    matches!(
        kind,
        "cluster_block_exception" | "index_closed_exception" | "index_not_found_exception"
    )
}

/// The ingest `pipeline` the output names is not on the cluster (400 `illegal_argument_exception`,
/// "pipeline with id [x] does not exist"): a setting not deployed yet, or deleted, not the
/// event's fault. Created, the same event is taken: it waits as for a missing index (until
/// `retry.max_item_age`), showing on `/health`, rather than filling the dead letters.
fn missing_pipeline(kind: &str, reason: &str) -> bool {
    kind == "illegal_argument_exception"
        && reason.starts_with("pipeline with id [")
        && reason.ends_with("] does not exist")
}

/// A shard closed, not started, recovering or moved under the write (around a node restart or
/// a relocation). The node answers these 404 (its `IllegalIndexShardStateException` family and
/// `ShardNotFoundException`), which would read as the event's fault; they say the shard is
/// unwell, as a 503 `unavailable_shards_exception` does, and are retried the same way.
pub fn shard_not_ready(kind: &str) -> bool {
    matches!(
        kind,
        "illegal_index_shard_state_exception"
            | "index_shard_closed_exception"
            | "index_shard_not_started_exception"
            | "index_shard_recovering_exception"
            | "index_shard_not_recovering_exception"
            | "index_shard_relocated_exception"
            | "shard_not_in_primary_mode_exception"
            | "primary_shard_closed_exception"
            | "shard_not_found_exception"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_items() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","_id":"1","status":201}},
            {"index":{"_index":"a","_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_index":"a","_id":"3","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"create":{"_index":"a","_id":"4","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"_index":"a","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary"}}}]}"#;
        let got = item_outcomes(body, 5, OpType::Create).unwrap();
        assert_eq!(got[0], ItemOutcome::Accepted);
        assert!(
            matches!(&got[1], ItemOutcome::Retry { status: 429, reason, blocked: false } if reason.contains("es_rejected_execution_exception"))
        );
        assert_eq!(
            got[2],
            ItemOutcome::Reject {
                kind: "mapper_parsing_exception".into(),
                reason: "failed to parse field [n]".into()
            }
        );
        assert_eq!(got[3], ItemOutcome::Accepted);
        assert!(matches!(got[4], ItemOutcome::Retry { status: 503, .. }));
        // With `index`, a 409 is a real refusal.
        let got = item_outcomes(body, 5, OpType::Index).unwrap();
        assert!(matches!(got[3], ItemOutcome::Reject { .. }));
    }

    #[test]
    fn blocked_closed_and_missing_indices_are_retried_not_rejected() {
        let body = br#"{"errors":true,"items":[
            {"index":{"_index":"a","status":403,"error":{"type":"cluster_block_exception","reason":"index [a] blocked by: [FORBIDDEN/8/index write (api)];"}}},
            {"index":{"_index":"b","status":400,"error":{"type":"index_closed_exception","reason":"closed"}}},
            {"index":{"_index":"c","status":403,"error":{"type":"security_exception","reason":"no permissions"}}},
            {"index":{"_index":"d","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [d]"}}}]}"#;
        let got = item_outcomes(body, 4, OpType::Index).unwrap();
        assert!(
            matches!(&got[0], ItemOutcome::Retry { status: 403, reason, blocked: true } if reason.contains("FORBIDDEN/8"))
        );
        assert!(matches!(
            got[1],
            ItemOutcome::Retry {
                status: 400,
                blocked: true,
                ..
            }
        ));
        assert!(
            matches!(&got[2], ItemOutcome::Reject { kind, .. } if kind == "security_exception")
        );
        assert!(matches!(
            got[3],
            ItemOutcome::Retry {
                status: 404,
                blocked: true,
                ..
            }
        ));
    }

    #[test]
    fn a_missing_ingest_pipeline_is_waited_for_and_other_bad_arguments_are_rejected() {
        // OpenSearch 2.19's answer to `_bulk?pipeline=absent` before the pipeline exists.
        let body = br#"{"took":0,"errors":true,"items":[
            {"index":{"_index":"p","_id":"a","status":400,"error":{"type":"illegal_argument_exception","reason":"pipeline with id [absent] does not exist"}}},
            {"index":{"_index":"p","_id":"b","status":400,"error":{"type":"illegal_argument_exception","reason":"Limit of total fields [1000] has been exceeded"}}}]}"#;
        let got = item_outcomes(body, 2, OpType::Index).unwrap();
        assert!(
            matches!(&got[0], ItemOutcome::Retry { status: 400, blocked: true, reason } if reason.contains("absent")),
            "{:?}",
            got[0]
        );
        assert!(
            matches!(&got[1], ItemOutcome::Reject { .. }),
            "{:?}",
            got[1]
        );
    }

    #[test]
    fn shards_not_ready_after_a_restart_are_retried_not_rejected() {
        // The first item is a real node's answer (OpenSearch 2.19, an index whose only primary
        // is unassigned, `_bulk?timeout=2s`). The 404s are what the same node's
        // `IllegalIndexShardStateException` family and `ShardNotFoundException` report (their
        // `status()`), for a shard closed or not started under a write, as around a restart.
        let body = br#"{"took":3313,"errors":true,"items":[
            {"index":{"_index":"red","_id":"a","status":503,"error":{"type":"unavailable_shards_exception","reason":"[red][0] primary shard is not active Timeout: [2s]"}}},
            {"index":{"_index":"red","_id":"b","status":503,"error":{"type":"no_shard_available_action_exception","reason":"No shard available"}}},
            {"index":{"_index":"red","_id":"c","status":404,"error":{"type":"index_shard_closed_exception","reason":"CurrentState[CLOSED] Closed"}}},
            {"index":{"_index":"red","_id":"d","status":404,"error":{"type":"illegal_index_shard_state_exception","reason":"CurrentState[RECOVERING] operation only allowed when shard is active"}}},
            {"index":{"_index":"red","_id":"e","status":404,"error":{"type":"index_shard_not_started_exception","reason":"CurrentState[RECOVERING]"}}},
            {"index":{"_index":"red","_id":"f","status":404,"error":{"type":"shard_not_found_exception","reason":"no such shard"}}},
            {"index":{"_index":"red","_id":"g","status":503,"error":{"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"}}}]}"#;
        let got = item_outcomes(body, 7, OpType::Index).unwrap();
        // A shard not ready: retried as a shard that is unwell (its own back-off and count).
        for (i, outcome) in got[..6].iter().enumerate() {
            assert!(
                matches!(outcome, ItemOutcome::Retry { blocked: false, .. }),
                "item {i}: {outcome:?}"
            );
        }
        // A cluster state not yet recovered: the cluster's state, like a blocked index.
        assert!(
            matches!(
                got[6],
                ItemOutcome::Retry {
                    status: 503,
                    blocked: true,
                    ..
                }
            ),
            "{:?}",
            got[6]
        );
    }

    #[test]
    fn mismatched_or_garbage_answers_are_errors() {
        assert!(item_outcomes(b"<html>", 1, OpType::Index).is_err());
        assert!(item_outcomes(br#"{"errors":true,"items":[]}"#, 2, OpType::Index).is_err());
        // A 2xx without items or with too few stored nothing we know of.
        assert!(item_outcomes(b"{}", 2, OpType::Index).is_err());
        assert!(item_outcomes(br#"{"took":1,"errors":false}"#, 2, OpType::Index).is_err());
        assert!(item_outcomes(
            br#"{"errors":false,"items":[{"index":{"status":201}}]}"#,
            2,
            OpType::Index
        )
        .is_err());
        assert_eq!(request_verdict(429), RequestVerdict::Retry);
        assert_eq!(request_verdict(503), RequestVerdict::Retry);
        assert_eq!(request_verdict(401), RequestVerdict::Retry);
        assert_eq!(request_verdict(413), RequestVerdict::Split);
        assert_eq!(request_verdict(400), RequestVerdict::Reject);
    }
}
