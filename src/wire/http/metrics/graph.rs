//! The service map's graph for Grafana's Node Graph panel: edges counted since start and in
//! recent wall-clock slices, nodes (one per workload) with what they served and sent, and the
//! JSON shapes of `/api/graph/data`, `/api/graph/fields` and the `?window=` parameter.

use crate::telemetry::server::Response;

#[derive(Default, Clone, Debug, PartialEq)]
pub struct Edge {
    pub requests: u64,
    pub errors: u64,
    pub latency_sum: f64,
    /// Bytes of the transactions (requests and responses, as their protocol counts them).
    pub app_bytes: u64,
    pub connections: u64,
    pub flow_bytes: u64,
    /// The protocol of the edge's transactions (`http`, `dns`...), `mixed` when one client
    /// talks two protocols to the same workload; "" for an edge of bare connections.
    pub protocol: &'static str,
}

impl Edge {
    pub(super) fn add(&mut self, o: &Edge) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.latency_sum += o.latency_sum;
        self.app_bytes += o.app_bytes;
        self.connections += o.connections;
        self.flow_bytes += o.flow_bytes;
        self.saw(o.protocol);
    }

    /// Notes that transactions of `protocol` ran on this edge ("" adds nothing).
    pub(super) fn saw(&mut self, protocol: &'static str) {
        if self.protocol.is_empty() {
            self.protocol = protocol;
        } else if !protocol.is_empty() && protocol != self.protocol {
            self.protocol = "mixed";
        }
    }
}

/// Width of the time slices kept for windowed graphs.
const SLICE_SECS: i64 = 10;
/// How far back a windowed graph may look.
pub const MAX_WINDOW_SECS: i64 = 3600;

/// One edge: totals since start, and recent slices (wall-clock, `SLICE_SECS` wide) for
/// windowed graphs.
#[derive(Default)]
pub(super) struct EdgeStats {
    pub(super) total: Edge,
    pub(super) recent: std::collections::VecDeque<(i64, Edge)>,
}

impl EdgeStats {
    pub(super) fn record(&mut self, now_secs: i64, f: impl Fn(&mut Edge)) {
        f(&mut self.total);
        let slice = now_secs.div_euclid(SLICE_SECS);
        if self.recent.back().is_none_or(|(s, _)| *s != slice) {
            self.recent.push_back((slice, Edge::default()));
        }
        if let Some((_, e)) = self.recent.back_mut() {
            f(e);
        }
        let oldest = slice - MAX_WINDOW_SECS / SLICE_SECS;
        while self.recent.front().is_some_and(|(s, _)| *s < oldest) {
            self.recent.pop_front();
        }
    }

    /// What happened in the last `secs` seconds before `now_secs` (slices that overlap it).
    pub(super) fn since(&self, now_secs: i64, secs: i64) -> Edge {
        let first = (now_secs - secs).div_euclid(SLICE_SECS);
        let mut e = Edge::default();
        for (_, s) in self.recent.iter().filter(|(s, _)| *s >= first) {
            e.add(s);
        }
        e
    }
}

/// A graph node: one workload.
#[derive(Default)]
pub(super) struct Node {
    pub(super) name: String,
    /// HTTP requests it answered, and how many of them failed (5xx or no response).
    pub(super) served: u64,
    pub(super) failed: u64,
    /// HTTP requests it made.
    pub(super) sent: u64,
    /// TCP connections it accepted.
    pub(super) connections_in: u64,
    pub(super) ports: Vec<u16>,
}

impl Node {
    /// (failed, passed) shares of the requests served; none for a node that served none.
    pub(super) fn arcs(&self) -> (f64, f64) {
        if self.served == 0 {
            return (0.0, 0.0);
        }
        let failed = self.failed as f64 / self.served as f64;
        (
            failed,
            (self.served - self.failed) as f64 / self.served as f64,
        )
    }

    pub(super) fn role(&self) -> &'static str {
        match (self.served > 0 || self.connections_in > 0, self.sent > 0) {
            (true, true) => "client and server",
            (true, false) => "server",
            _ => "client",
        }
    }

    /// The ports it serves on (`:8080, :9090`), else its role.
    pub(super) fn subtitle(&self) -> String {
        if self.ports.is_empty() {
            return self.role().to_owned();
        }
        let ports: Vec<String> = self.ports.iter().map(|p| format!(":{p}")).collect();
        ports.join(", ")
    }
}

/// The `window` query parameter (`?window=5m`): None for totals since start.
pub(super) fn window(query: &str) -> Result<Option<std::time::Duration>, String> {
    let Some(v) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("window="))
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let d = crate::config::Duration::parse(v)
        .ok()
        .and_then(|d| d.positive())
        .ok_or_else(|| format!("window={v}: expected a duration such as 5m or 30s\n"))?;
    if d.as_secs() as i64 > MAX_WINDOW_SECS {
        return Err(format!("window={v}: at most {}m\n", MAX_WINDOW_SECS / 60));
    }
    Ok(Some(d))
}

pub(super) fn bad_request(why: String) -> Response {
    Response {
        status: 400,
        content_type: "text/plain",
        body: why,
    }
}

pub(super) fn json(v: Option<serde_json::Value>) -> Response {
    match v {
        Some(v) => Response {
            status: 200,
            content_type: "application/json",
            body: format!("{v}\n"),
        },
        None => Response {
            status: 503,
            content_type: "text/plain",
            body: "the packet input is gone\n".into(),
        },
    }
}

/// `/api/graph/fields`: the Node Graph API data source's field list.
pub fn graph_fields() -> serde_json::Value {
    serde_json::json!({
        "nodes_fields": [
            {"field_name": "id", "type": "string"},
            {"field_name": "title", "type": "string"},
            {"field_name": "subTitle", "type": "string"},
            {"field_name": "mainStat", "type": "number", "displayName": "Requests served"},
            {"field_name": "secondaryStat", "type": "number", "displayName": "Requests sent"},
            {"field_name": "arc__failed", "type": "number", "color": "red", "displayName": "Failed"},
            {"field_name": "arc__passed", "type": "number", "color": "green", "displayName": "Passed"},
            {"field_name": "detail__role", "type": "string", "displayName": "Role"},
            {"field_name": "detail__failed", "type": "number", "displayName": "Requests failed"},
            {"field_name": "detail__connections_in", "type": "number", "displayName": "Connections accepted"},
        ],
        "edges_fields": [
            {"field_name": "id", "type": "string"},
            {"field_name": "source", "type": "string"},
            {"field_name": "target", "type": "string"},
            {"field_name": "mainStat", "type": "number", "displayName": "Requests"},
            {"field_name": "secondaryStat", "type": "number", "displayName": "Average latency (ms)"},
            {"field_name": "detail__errors", "type": "number", "displayName": "Errors"},
            {"field_name": "detail__bytes", "type": "number", "displayName": "Bytes"},
            {"field_name": "detail__connections", "type": "number", "displayName": "Connections"},
            {"field_name": "detail__protocol", "type": "string", "displayName": "Protocol"},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keep_only_recent_slices() {
        let mut e = EdgeStats::default();
        e.record(1_000, |e| e.requests += 1);
        e.record(1_100, |e| e.requests += 2);
        e.record(1_295, |e| e.requests += 4);
        assert_eq!(e.total.requests, 7);
        assert_eq!(e.since(1_300, 60).requests, 4);
        assert_eq!(e.since(1_300, 300).requests, 7);
        // An hour later the old slices are gone, the totals stay.
        e.record(1_000 + MAX_WINDOW_SECS + 400, |e| e.requests += 8);
        assert_eq!(e.recent.len(), 1);
        assert_eq!(e.total.requests, 15);
        assert_eq!(
            window("window=5m"),
            Ok(Some(std::time::Duration::from_secs(300)))
        );
        assert_eq!(window(""), Ok(None));
        assert!(window("window=banana").is_err());
        assert!(window("window=2h").is_err());
    }
}
