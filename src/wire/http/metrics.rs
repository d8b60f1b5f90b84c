//! RED metrics and the service map built from HTTP transactions (and TCP flows): Prometheus
//! families on `/metrics`, and client → server edges for Grafana's Node Graph panel on
//! `/api/graph` (k8spacket's one-document format) and `/api/graph/{fields,data}` + `/api/health`
//! (the Node Graph API data source's format). One node per workload (its name when Kubernetes
//! knows the address, else the IP), totals since start or `?window=5m`. Label values are
//! bounded by `max_series`.

use crate::telemetry::metrics::{escape_label, Collector, Registry};
use crate::telemetry::server::{Endpoints, Response};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};

mod graph;
mod protocols;
use graph::{bad_request, json, window, EdgeStats, Node};
pub use graph::{graph_fields, Edge, MAX_WINDOW_SECS};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Label value used once a family has `max_series` series.
pub const OTHER: &str = "other";

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        self.count += 1;
        self.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
    }

    /// The series of family `name` for `server`: buckets, sum and count.
    fn render(&self, out: &mut String, name: &str, server: &str) {
        let s = escape_label(server);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{server=\"{s}\",le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{server=\"{s}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{server=\"{s}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{server=\"{s}\"}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: HashMap<(String, String, &'static str, String), u64>,
    latency: HashMap<String, Histogram>,
    paths: HashMap<(String, String, String), u64>,
    edges: HashMap<(String, String), EdgeStats>,
    /// Ports each server node was seen serving on (a few, for its subtitle).
    ports: HashMap<String, Vec<u16>>,
    /// The series of the other protocols (DNS...).
    protocols: protocols::ProtocolSeries,
    overflow: u64,
}

/// Most ports listed per node.
const MAX_PORTS: usize = 4;

fn wall_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The exact status code as a label value: three digits, or `other`; `none` without response.
fn status_code(status: Option<u16>) -> String {
    match status {
        Some(s @ 100..=599) => s.to_string(),
        Some(_) => OTHER.to_owned(),
        None => "none".to_owned(),
    }
}

/// The port in `ip:port` or `[ip]:port`.
fn endpoint_port(endpoint: &str) -> Option<u16> {
    let (host, port) = endpoint.rsplit_once(':')?;
    if host.contains(':') && !host.ends_with(']') {
        return None; // a bare IPv6 address
    }
    port.parse().ok()
}

/// The shared RED metrics and service graph of one pipeline.
pub struct ServiceMap {
    inner: Mutex<Inner>,
    max_series: usize,
    resolver: std::sync::RwLock<Option<Resolver>>,
}

/// Each pipeline's service map (by its metrics registry) and the workload resolver offered
/// to it, which may come before the map.
struct PipelineMap {
    registry: Weak<Registry>,
    map: Weak<ServiceMap>,
    resolver: Option<Resolver>,
}

static MAPS: Mutex<Vec<PipelineMap>> = Mutex::new(Vec::new());

/// Names the workload behind an IP address (`namespace/deployment`), when Kubernetes metadata
/// knows it: set by whatever holds that metadata (`ServiceMap::shared(..).set_resolver(..)`).
pub type Resolver = Arc<dyn Fn(std::net::IpAddr) -> Option<String> + Send + Sync>;

/// The IP address in `ip`, `ip:port` or `[ip]:port`.
fn endpoint_ip(endpoint: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = endpoint.parse() {
        return Some(ip);
    }
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    endpoint.rsplit_once(':')?.0.parse().ok()
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// `/users/123/orders/9f86d081884c7d65` → `/users/:id/orders/:id`: numbers, UUIDs and long hex
/// or mixed tokens become `:id` so that paths make bounded label values.
pub fn template_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if i > 8 {
            out.push('…');
            break;
        }
        let digits = seg.bytes().filter(|b| b.is_ascii_digit()).count();
        let hex = seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let is_id = !seg.is_empty()
            && (digits == seg.len()
                || (hex && seg.len() >= 8 && digits > 0)
                || (digits >= 3 && seg.len() >= 6)
                || seg.len() > 40);
        if is_id {
            out.push_str(":id");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl ServiceMap {
    pub fn new(max_series: usize) -> ServiceMap {
        ServiceMap {
            inner: Mutex::new(Inner::default()),
            max_series: max_series.max(1),
            resolver: std::sync::RwLock::new(None),
        }
    }

    /// Names nodes by workload from now on, for the addresses `resolver` knows.
    pub fn set_resolver(&self, resolver: Resolver) {
        if let Ok(mut r) = self.resolver.write() {
            *r = Some(resolver);
        }
    }

    /// The metric label of an endpoint: its workload when known, else the endpoint as given.
    fn node_name<'a>(&self, endpoint: &'a str) -> std::borrow::Cow<'a, str> {
        let Ok(r) = self.resolver.read() else {
            return endpoint.into();
        };
        match (r.as_ref(), endpoint_ip(endpoint)) {
            (Some(resolve), Some(ip)) => resolve(ip).map(Into::into).unwrap_or(endpoint.into()),
            _ => endpoint.into(),
        }
    }

    /// The graph node of an endpoint: its workload when known, else its IP (a workload is one
    /// node whether it calls or serves, on whatever port).
    fn workload(&self, endpoint: &str) -> String {
        let Some(ip) = endpoint_ip(endpoint) else {
            return endpoint.to_owned();
        };
        let resolved = self
            .resolver
            .read()
            .ok()
            .and_then(|r| r.as_ref().and_then(|resolve| resolve(ip)));
        resolved.unwrap_or_else(|| ip.to_string())
    }

    /// Counts on the edge `client` → `server` (graph nodes), and notes the port served.
    fn record_edge(
        &self,
        inner: &mut Inner,
        client: &str,
        server: &str,
        port: Option<u16>,
        f: impl Fn(&mut Edge),
    ) {
        let max = self.max_series;
        let key = (client.to_owned(), server.to_owned());
        let key = if inner.edges.contains_key(&key) || inner.edges.len() < max {
            key
        } else {
            (OTHER.to_owned(), OTHER.to_owned())
        };
        inner.edges.entry(key).or_default().record(wall_secs(), f);
        if let Some(port) = port {
            if inner.ports.contains_key(server) || inner.ports.len() < max {
                let ports = inner.ports.entry(server.to_owned()).or_default();
                if !ports.contains(&port) && ports.len() < MAX_PORTS {
                    ports.push(port);
                    ports.sort_unstable();
                }
            }
        }
    }

    /// Offers the pipeline behind `registry` a way to name workloads (the `kubernetes`
    /// processor's pod cache): its service map uses it, whether it exists yet or is created
    /// later, in whatever order the pipeline builds its components.
    pub fn offer_resolver(registry: &Arc<Registry>, resolver: Resolver) {
        let Ok(mut maps) = MAPS.lock() else { return };
        maps.retain(|m| m.registry.strong_count() > 0);
        match maps.iter_mut().find(|m| {
            m.registry
                .upgrade()
                .is_some_and(|r| Arc::ptr_eq(&r, registry))
        }) {
            Some(m) => {
                if let Some(map) = m.map.upgrade() {
                    map.set_resolver(resolver.clone());
                }
                m.resolver = Some(resolver);
            }
            None => maps.push(PipelineMap {
                registry: Arc::downgrade(registry),
                map: Weak::new(),
                resolver: Some(resolver),
            }),
        }
    }

    /// The map of the pipeline behind `registry`, created (with its collector and endpoints)
    /// by the first packet input that asks; later inputs share it.
    pub fn shared(
        registry: &Arc<Registry>,
        endpoints: &Endpoints,
        max_series: usize,
    ) -> Arc<ServiceMap> {
        let Ok(mut maps) = MAPS.lock() else {
            return Arc::new(ServiceMap::new(max_series));
        };
        maps.retain(|m| m.registry.strong_count() > 0);
        let entry = maps.iter().position(|m| {
            m.registry
                .upgrade()
                .is_some_and(|r| Arc::ptr_eq(&r, registry))
        });
        if let Some(map) = entry.and_then(|i| maps[i].map.upgrade()) {
            return map;
        }
        let map = Arc::new(ServiceMap::new(max_series));
        match entry {
            Some(i) => {
                if let Some(r) = &maps[i].resolver {
                    map.set_resolver(r.clone());
                }
                maps[i].map = Arc::downgrade(&map);
            }
            None => maps.push(PipelineMap {
                registry: Arc::downgrade(registry),
                map: Arc::downgrade(&map),
                resolver: None,
            }),
        }
        registry.register(Arc::new(MapCollector(map.clone())));
        let m = Arc::downgrade(&map);
        endpoints.add(
            "/api/graph",
            Arc::new(move |q: &str| match window(q) {
                Ok(w) => json(m.upgrade().map(|m| m.k8spacket_graph(w))),
                Err(e) => bad_request(e),
            }),
        );
        let m = Arc::downgrade(&map);
        endpoints.add(
            "/api/graph/data",
            Arc::new(move |q: &str| match window(q) {
                Ok(w) => json(m.upgrade().map(|m| m.graph_data(w))),
                Err(e) => bad_request(e),
            }),
        );
        endpoints.add(
            "/api/graph/fields",
            Arc::new(|_q: &str| json(Some(graph_fields()))),
        );
        endpoints.add(
            "/api/health",
            Arc::new(|_q: &str| Response {
                status: 200,
                content_type: "text/plain",
                body: "API is working well!\n".into(),
            }),
        );
        map
    }

    /// Whether `key` may be counted: already a series, or room left for a new one (otherwise
    /// the overflow is counted and the caller counts it under `OTHER`).
    fn fits<K, Q>(map: &HashMap<K, impl Sized>, key: &Q, max: usize, overflow: &mut u64) -> bool
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let fits = map.contains_key(key) || map.len() < max;
        if !fits {
            *overflow += 1;
        }
        fits
    }

    /// One HTTP transaction from `client` to `server` (names: workload or ip / ip:port).
    #[allow(clippy::too_many_arguments)]
    pub fn record_http(
        &self,
        client: &str,
        server: &str,
        method: &str,
        path: &str,
        status: Option<u16>,
        seconds: Option<f64>,
        bytes: u64,
    ) {
        let (client_node, server_node) = (self.workload(client), self.workload(server));
        let port = endpoint_port(server);
        let server = self.node_name(server);
        let server = server.as_ref();
        let Ok(mut g) = self.inner.lock() else { return };
        let inner = &mut *g;
        let class = status.map(status_class).unwrap_or("none");
        let max = self.max_series;
        // Each key is built once: this runs for every transaction.
        let key = (
            server.to_owned(),
            method.to_owned(),
            class,
            status_code(status),
        );
        let key = if Self::fits(&inner.requests, &key, max, &mut inner.overflow) {
            key
        } else {
            (OTHER.to_owned(), OTHER.to_owned(), class, OTHER.to_owned())
        };
        *inner.requests.entry(key).or_default() += 1;
        if let Some(s) = seconds {
            let srv = if Self::fits(&inner.latency, server, max, &mut inner.overflow) {
                server
            } else {
                OTHER
            };
            if !inner.latency.contains_key(srv) {
                inner.latency.insert(srv.to_owned(), Histogram::default());
            }
            if let Some(h) = inner.latency.get_mut(srv) {
                h.observe(s);
            }
        }
        let pkey = (server.to_owned(), method.to_owned(), template_path(path));
        let pkey = if Self::fits(&inner.paths, &pkey, max, &mut inner.overflow) {
            pkey
        } else {
            (OTHER.to_owned(), OTHER.to_owned(), OTHER.to_owned())
        };
        *inner.paths.entry(pkey).or_default() += 1;
        let failed = status.is_none_or(|s| s >= 500);
        self.record_edge(inner, &client_node, &server_node, port, |e| {
            e.requests += 1;
            e.errors += failed as u64;
            e.latency_sum += seconds.unwrap_or(0.0);
            e.app_bytes += bytes;
            e.saw("http");
        });
    }

    /// One finished TCP connection from `client` to `server` (`ip:port`).
    pub fn record_flow(&self, client: &str, server: &str, bytes: u64) {
        let (client_node, server_node) = (self.workload(client), self.workload(server));
        let Ok(mut g) = self.inner.lock() else { return };
        self.record_edge(
            &mut g,
            &client_node,
            &server_node,
            endpoint_port(server),
            |e| {
                e.connections += 1;
                e.flow_bytes += bytes;
            },
        );
    }

    /// Every edge, totals since start (`window` None) or over the last `window`.
    pub fn edges(&self, window: Option<std::time::Duration>) -> Vec<((String, String), Edge)> {
        let Ok(g) = self.inner.lock() else {
            return Vec::new();
        };
        let now = wall_secs();
        let mut v: Vec<_> = g
            .edges
            .iter()
            .map(|(k, e)| {
                let e = match window {
                    None => e.total.clone(),
                    Some(w) => e.since(now, (w.as_secs() as i64).clamp(1, MAX_WINDOW_SECS)),
                };
                (k.clone(), e)
            })
            .filter(|(_, e)| e.requests + e.connections > 0)
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn ports(&self, node: &str) -> Vec<u16> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.ports.get(node).cloned())
            .unwrap_or_default()
    }

    fn nodes(&self, edges: &[((String, String), Edge)]) -> Vec<Node> {
        let mut nodes: HashMap<&str, Node> = HashMap::new();
        for ((c, s), e) in edges {
            nodes.entry(c).or_default().sent += e.requests;
            let n = nodes.entry(s).or_default();
            n.served += e.requests;
            n.failed += e.errors;
            n.connections_in += e.connections;
        }
        let mut v: Vec<Node> = nodes
            .into_iter()
            .map(|(k, n)| Node {
                ports: self.ports(k),
                name: k.to_owned(),
                ..n
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// `/api/graph/data`: nodes and edges with the fields `/api/graph/fields` announces.
    pub fn graph_data(&self, window: Option<std::time::Duration>) -> serde_json::Value {
        let edges = self.edges(window);
        let nodes: Vec<_> = self
            .nodes(&edges)
            .into_iter()
            .map(|n| {
                let (failed, passed) = n.arcs();
                serde_json::json!({
                    "id": n.name, "title": n.name, "subTitle": n.subtitle(),
                    "mainStat": n.served, "secondaryStat": n.sent,
                    "arc__failed": failed, "arc__passed": passed,
                    "detail__role": n.role(), "detail__failed": n.failed,
                    "detail__connections_in": n.connections_in,
                })
            })
            .collect();
        let edges: Vec<_> = edges
            .iter()
            .map(|((c, s), e)| {
                let avg_ms = if e.requests > 0 {
                    e.latency_sum * 1000.0 / e.requests as f64
                } else {
                    0.0
                };
                serde_json::json!({
                    "id": format!("{c}->{s}"), "source": c, "target": s,
                    "mainStat": e.requests, "secondaryStat": (avg_ms * 1000.0).round() / 1000.0,
                    "detail__errors": e.errors, "detail__bytes": e.flow_bytes.max(e.app_bytes),
                    "detail__connections": e.connections,
                    "detail__protocol": if e.requests > 0 { e.protocol } else { "tcp" },
                })
            })
            .collect();
        serde_json::json!({ "nodes": nodes, "edges": edges })
    }

    /// `/api/graph`: k8spacket's node-graph-plugin document (config, nodes, edges in one).
    pub fn k8spacket_graph(&self, window: Option<std::time::Duration>) -> serde_json::Value {
        let edges = self.edges(window);
        let nodes: Vec<_> = self
            .nodes(&edges)
            .into_iter()
            .map(|n| {
                let (failed, passed) = n.arcs();
                serde_json::json!({
                    "id": n.name, "title": n.name, "subTitle": n.subtitle(),
                    "mainStat": format!("served: {}", n.served), "secondaryStat": format!("sent: {}", n.sent),
                    "arc__1": passed, "arc__2": failed,
                })
            })
            .collect();
        let edges: Vec<_> = edges
            .iter()
            .map(|((c, s), e)| {
                let avg_ms = if e.requests > 0 { e.latency_sum * 1000.0 / e.requests as f64 } else { 0.0 };
                serde_json::json!({
                    "id": format!("{c}->{s}"), "source": c, "target": s,
                    "mainStat": format!("req: {}, err: {}, conn: {}", e.requests, e.errors, e.connections),
                    "secondaryStat": format!("avg: {avg_ms:.1}ms, bytes: {}", e.flow_bytes.max(e.app_bytes)),
                })
            })
            .collect();
        serde_json::json!({
            "config": {
                "arc__1": {"displayName": "ok", "color": "green"},
                "arc__2": {"displayName": "errors", "color": "red"},
                "mainStat": {"displayName": " ", "color": ""},
                "secondaryStat": {"displayName": " ", "color": ""},
            },
            "nodes": nodes, "edges": edges,
        })
    }

    pub(crate) fn render(&self, out: &mut String) {
        let Ok(g) = self.inner.lock() else { return };
        let _ = writeln!(out, "# HELP trawl_http_requests_total HTTP transactions seen on the wire, by server, method, status class and status code (none: no response).");
        let _ = writeln!(out, "# TYPE trawl_http_requests_total counter");
        let mut reqs: Vec<_> = g.requests.iter().collect();
        reqs.sort();
        for ((s, m, c, code), n) in reqs {
            let _ = writeln!(
                out,
                "trawl_http_requests_total{{server=\"{}\",method=\"{}\",status_class=\"{c}\",status_code=\"{code}\"}} {n}",
                escape_label(s),
                escape_label(m)
            );
        }
        let _ = writeln!(out, "# HELP trawl_http_request_duration_seconds From the first request byte to the last response byte, by server.");
        let _ = writeln!(out, "# TYPE trawl_http_request_duration_seconds histogram");
        let mut lat: Vec<_> = g.latency.iter().collect();
        lat.sort_by(|a, b| a.0.cmp(b.0));
        for (s, h) in lat {
            h.render(out, "trawl_http_request_duration_seconds", s);
        }
        let _ = writeln!(out, "# HELP trawl_http_path_requests_total HTTP transactions by server, method and templated path.");
        let _ = writeln!(out, "# TYPE trawl_http_path_requests_total counter");
        let mut paths: Vec<_> = g.paths.iter().collect();
        paths.sort();
        for ((s, m, p), n) in paths {
            let _ = writeln!(
                out,
                "trawl_http_path_requests_total{{server=\"{}\",method=\"{}\",path=\"{}\"}} {n}",
                escape_label(s),
                escape_label(m),
                escape_label(p)
            );
        }
        g.protocols.render(out);
        let _ = writeln!(out, "# HELP trawl_http_series_overflow_total Observations folded into `other` because a family reached max_series.");
        let _ = writeln!(out, "# TYPE trawl_http_series_overflow_total counter");
        let _ = writeln!(out, "trawl_http_series_overflow_total {}", g.overflow);
    }
}

/// Holds the map for as long as the pipeline's registry lives: the packet inputs come and go
/// (a `pcap_file` input ends with its file, a reload replaces an input), and the totals they
/// counted must stay on `/metrics` and in the graph rather than vanish with the last of them.
struct MapCollector(Arc<ServiceMap>);

impl Collector for MapCollector {
    fn shared(&self) -> bool {
        true
    }

    fn render(&self, out: &mut String) {
        self.0.render(out);
    }
}

#[cfg(test)]
mod tests;
