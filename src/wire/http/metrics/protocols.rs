//! RED metrics of the protocols on the analyzer trait other than HTTP (whose series predate
//! it): `trawl_<protocol>_requests_total`, `trawl_<protocol>_errors_total` and
//! `trawl_<protocol>_request_duration_seconds`, by server and low-cardinality operation.

use super::{endpoint_port, Histogram, ServiceMap, OTHER};
use crate::telemetry::metrics::escape_label;
use crate::wire::analyzer::{Outcome, Record};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// (protocol, server, operation, status, outcome).
type RequestKey = (&'static str, String, String, String, &'static str);

#[derive(Default)]
pub(super) struct ProtocolSeries {
    requests: HashMap<RequestKey, u64>,
    /// (protocol, server, operation): transactions that failed or went unanswered.
    errors: HashMap<(&'static str, String, String), u64>,
    latency: HashMap<(&'static str, String), Histogram>,
}

impl ProtocolSeries {
    /// Counts one transaction; a family that has `max` series counts new ones under `other`
    /// (and in `overflow`).
    pub(super) fn record(
        &mut self,
        protocol: &'static str,
        server: &str,
        r: &Record<'_>,
        max: usize,
        overflow: &mut u64,
    ) {
        let key = (
            protocol,
            server.to_owned(),
            r.operation.to_owned(),
            r.status.to_owned(),
            r.outcome.as_str(),
        );
        let key = if self.requests.contains_key(&key) || self.requests.len() < max {
            key
        } else {
            *overflow += 1;
            (
                protocol,
                OTHER.to_owned(),
                OTHER.to_owned(),
                OTHER.to_owned(),
                r.outcome.as_str(),
            )
        };
        *self.requests.entry(key).or_default() += 1;
        if r.outcome != Outcome::Success {
            let key = (protocol, server.to_owned(), r.operation.to_owned());
            let key = if self.errors.contains_key(&key) || self.errors.len() < max {
                key
            } else {
                *overflow += 1;
                (protocol, OTHER.to_owned(), OTHER.to_owned())
            };
            *self.errors.entry(key).or_default() += 1;
        }
        if let Some(s) = r.seconds() {
            let key = (protocol, server.to_owned());
            let key = if self.latency.contains_key(&key) || self.latency.len() < max {
                key
            } else {
                *overflow += 1;
                (protocol, OTHER.to_owned())
            };
            self.latency.entry(key).or_default().observe(s);
        }
    }

    /// Every protocol's families, protocols and series in sorted order.
    pub(super) fn render(&self, out: &mut String) {
        let protocols: BTreeSet<&'static str> = self
            .requests
            .keys()
            .map(|k| k.0)
            .chain(self.latency.keys().map(|k| k.0))
            .collect();
        for p in protocols {
            let _ = writeln!(out, "# HELP trawl_{p}_requests_total {p} transactions seen on the wire, by server, operation, status and outcome (status empty: no answer).");
            let _ = writeln!(out, "# TYPE trawl_{p}_requests_total counter");
            let mut reqs: Vec<_> = self.requests.iter().filter(|(k, _)| k.0 == p).collect();
            reqs.sort();
            for ((_, s, op, status, outcome), n) in reqs {
                let _ = writeln!(
                    out,
                    "trawl_{p}_requests_total{{server=\"{}\",operation=\"{}\",status=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape_label(s),
                    escape_label(op),
                    escape_label(status)
                );
            }
            let _ = writeln!(out, "# HELP trawl_{p}_errors_total {p} transactions that failed or were never answered, by server and operation.");
            let _ = writeln!(out, "# TYPE trawl_{p}_errors_total counter");
            let mut errs: Vec<_> = self.errors.iter().filter(|(k, _)| k.0 == p).collect();
            errs.sort();
            for ((_, s, op), n) in errs {
                let _ = writeln!(
                    out,
                    "trawl_{p}_errors_total{{server=\"{}\",operation=\"{}\"}} {n}",
                    escape_label(s),
                    escape_label(op)
                );
            }
            let _ = writeln!(out, "# HELP trawl_{p}_request_duration_seconds From the first request byte to the last answer byte, by server.");
            let _ = writeln!(out, "# TYPE trawl_{p}_request_duration_seconds histogram");
            let mut lat: Vec<_> = self.latency.iter().filter(|(k, _)| k.0 == p).collect();
            lat.sort_by(|a, b| a.0.cmp(b.0));
            for ((_, s), h) in lat {
                h.render(out, &format!("trawl_{p}_request_duration_seconds"), s);
            }
        }
    }
}

impl ServiceMap {
    /// One transaction of `protocol` (not HTTP, see `record_http`) from `client` to `server`
    /// (names as for `record_http`): its RED series and its edge, where a transaction that
    /// failed or went unanswered is an error.
    pub fn record_transaction(
        &self,
        protocol: &'static str,
        client: &str,
        server: &str,
        r: &crate::wire::analyzer::Record<'_>,
    ) {
        let (client_node, server_node) = (self.workload(client), self.workload(server));
        let port = endpoint_port(server);
        let server = self.node_name(server);
        let Ok(mut g) = self.inner.lock() else { return };
        let inner = &mut *g;
        inner
            .protocols
            .record(protocol, &server, r, self.max_series, &mut inner.overflow);
        let failed = r.outcome != crate::wire::analyzer::Outcome::Success;
        let secs = r.seconds();
        let bytes = r.request_bytes + r.response_bytes;
        self.record_edge(inner, &client_node, &server_node, port, |e| {
            e.requests += 1;
            e.errors += failed as u64;
            e.latency_sum += secs.unwrap_or(0.0);
            e.app_bytes += bytes;
            e.saw(protocol);
        });
    }
}
