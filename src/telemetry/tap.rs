//! Live views of the events flowing through a running pipeline (`trawl tap`): a tap point at
//! every input, after every processor and at every output, and `/api/tap`, which streams what
//! the chosen points see as JSON lines. A point with no tap attached costs one atomic load.

use super::metrics::{Collector, ComponentKind, Registry};
use super::server::{Endpoints, Response, Stream};
use crate::event::{Batch, Event};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use tokio::sync::mpsc;

/// Lines a tap client may fall behind by before its events are dropped (and counted): the
/// bound that keeps a slow client from holding memory or slowing the pipeline.
pub const CLIENT_QUEUE_LINES: usize = 1024;

/// Most clients attached at once; more are answered 503.
pub const MAX_CLIENTS: usize = 16;

/// Every tap point of a pipeline and the clients attached to them.
#[derive(Default)]
pub struct TapHub {
    /// Held by the components themselves: a component a reload removed takes its point away
    /// (no longer listed, matched or attached to), one rebuilt under its name finds it again.
    points: Mutex<Points>,
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// The points in the order they were made (how `/api/tap` lists them), and by component for
/// `point`: a pipeline of 20,000 processors once took seconds to build, each looking through
/// all points made before it.
#[derive(Default)]
struct Points {
    order: Vec<Weak<TapPoint>>,
    by_component: std::collections::HashMap<(ComponentKind, Arc<str>), Weak<TapPoint>>,
    /// `order`'s length after its gone points were last dropped: dropping them again once it has
    /// doubled keeps the cost per point constant.
    pruned_at: usize,
}

impl Points {
    fn prune(&mut self) {
        self.order.retain(|p| p.strong_count() > 0);
        self.by_component.retain(|_, p| p.strong_count() > 0);
        self.pruned_at = self.order.len();
    }
}

/// One place where events can be watched: an input's output, a processor's output (the
/// router, named `pipeline`, is after every processor), or what an output is handed.
pub struct TapPoint {
    pub kind: ComponentKind,
    pub name: Arc<str>,
    pub type_name: &'static str,
    /// Subscriptions attached here: the only thing the pipeline reads when it is 0.
    attached: AtomicUsize,
    subscriptions: RwLock<Vec<Arc<Subscription>>>,
    /// `{"component_kind":..,"component":..,"event":` written once, reused for every event.
    envelope: String,
    hub: Weak<TapHub>,
}

/// What a client asked for, and its way back to it.
struct Subscription {
    id: u64,
    selectors: Vec<Selector>,
    lines: mpsc::Sender<String>,
    /// 1 in `sample` events is sent.
    sample: u64,
    seen: AtomicU64,
    /// Events still to send before the stream ends (`u64::MAX`: no limit).
    remaining: AtomicU64,
    /// Dropped since the client was last told.
    dropped_untold: AtomicU64,
}

/// `input=NAME`, `processor=NAME` or `output=NAME`: a component's name or type, `*` matching
/// any run of characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub kind: ComponentKind,
    pub pattern: String,
}

impl Selector {
    fn matches(&self, p: &TapPoint) -> bool {
        self.kind == p.kind && (glob(&self.pattern, &p.name) || glob(&self.pattern, p.type_name))
    }
}

/// What `/api/tap?...` asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct TapRequest {
    pub selectors: Vec<Selector>,
    pub limit: Option<u64>,
    pub sample: u64,
}

impl TapRequest {
    /// Parses the query string: `input`, `processor`, `output` (repeatable), `limit`, `sample`.
    /// Without any selector, every output is watched (what trawl ships).
    pub fn parse(query: &str) -> Result<TapRequest, String> {
        let mut req = TapRequest {
            selectors: Vec::new(),
            limit: None,
            sample: 1,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| format!("`{key}`: bad escape"))?;
            let kind = match key {
                "input" => Some(ComponentKind::Input),
                "processor" => Some(ComponentKind::Processor),
                "output" => Some(ComponentKind::Output),
                _ => None,
            };
            match (key, kind) {
                (_, Some(kind)) if !value.is_empty() => req.selectors.push(Selector {
                    kind,
                    pattern: value,
                }),
                (_, Some(_)) => return Err(format!("`{key}`: expected a component name")),
                ("limit", _) => {
                    req.limit = Some(
                        value
                            .parse()
                            .map_err(|_| format!("`limit`: expected a number, got `{value}`"))?,
                    )
                }
                ("sample", _) => {
                    req.sample = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("`sample`: expected a number of at least 1, got `{value}`"))?
                }
                _ => return Err(format!("unknown parameter `{key}`, expected `input`, `processor`, `output`, `limit` or `sample`")),
            }
        }
        if req.selectors.is_empty() {
            req.selectors.push(Selector {
                kind: ComponentKind::Output,
                pattern: "*".into(),
            });
        }
        Ok(req)
    }
}

impl TapHub {
    /// A hub whose `/api/tap` is served on `endpoints` and whose counters are on `/metrics`.
    pub fn new(registry: &Registry, endpoints: &Endpoints) -> Arc<TapHub> {
        let hub = Arc::new(TapHub::default());
        registry.register(Arc::new(TapCollector(Arc::downgrade(&hub))));
        let weak = Arc::downgrade(&hub);
        endpoints.add_stream(
            "/api/tap",
            Arc::new(move |query: &str| match weak.upgrade() {
                Some(hub) => hub.attach(query),
                None => Err(plain(503, "the pipeline is gone\n".into())),
            }),
        );
        hub
    }

    /// The point of a component, created on first use; the same point for the same component,
    /// so that a tap survives a component being rebuilt under its name.
    pub fn point(
        self: &Arc<Self>,
        kind: ComponentKind,
        name: &str,
        type_name: &'static str,
    ) -> Arc<TapPoint> {
        let Ok(mut points) = self.points.lock() else {
            return Arc::new(TapPoint::new(kind, name, type_name, Weak::new()));
        };
        let key = (kind, Arc::<str>::from(name));
        if let Some(p) = points.by_component.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        if points.order.len() >= 2 * points.pruned_at.max(32) {
            points.prune();
        }
        let point = Arc::new(TapPoint::new(kind, name, type_name, Arc::downgrade(self)));
        if let Ok(subs) = self.subscriptions.lock() {
            for s in subs
                .iter()
                .filter(|s| s.selectors.iter().any(|x| x.matches(&point)))
            {
                point.add(s.clone());
            }
        }
        points.order.push(Arc::downgrade(&point));
        points.by_component.insert(key, Arc::downgrade(&point));
        point
    }

    /// The points of the components running now.
    fn live_points(&self) -> Vec<Arc<TapPoint>> {
        let Ok(mut points) = self.points.lock() else {
            return Vec::new();
        };
        points.prune();
        points.order.iter().filter_map(Weak::upgrade).collect()
    }

    /// Attaches a client; its stream ends at its limit, or detaches it when it goes away.
    fn attach(self: &Arc<Self>, query: &str) -> Result<Stream, Response> {
        let req = TapRequest::parse(query).map_err(|e| plain(400, format!("{e}\n")))?;
        let points = self.live_points();
        let matched: Vec<&Arc<TapPoint>> = points
            .iter()
            .filter(|p| req.selectors.iter().any(|s| s.matches(p)))
            .collect();
        if matched.is_empty() {
            return Err(plain(404, no_match(&req.selectors, &points)));
        }
        let mut subs = self
            .subscriptions
            .lock()
            .map_err(|_| plain(500, "tap state poisoned\n".into()))?;
        if subs.len() >= MAX_CLIENTS {
            return Err(plain(
                503,
                format!("{MAX_CLIENTS} tap clients are attached already\n"),
            ));
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE_LINES);
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let sub = Arc::new(Subscription {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            selectors: req.selectors,
            lines: tx,
            sample: req.sample,
            seen: AtomicU64::new(0),
            remaining: AtomicU64::new(req.limit.unwrap_or(u64::MAX)),
            dropped_untold: AtomicU64::new(0),
        });
        // The first line says what is watched, so that a client knows it is attached.
        let names: Vec<String> = matched
            .iter()
            .map(|p| format!("{} {}", p.kind.as_str(), p.name))
            .collect();
        let hello = serde_json::json!({"notice": "attached", "points": names}).to_string();
        let _ = sub.lines.try_send(hello);
        if req.limit == Some(0) {
            // Nothing to send: the sender goes with `sub`, so the stream ends after the notice.
            return Ok(Stream {
                content_type: "application/x-ndjson",
                lines: rx,
                guard: Box::new(()),
            });
        }
        for p in matched {
            p.add(sub.clone());
        }
        subs.push(sub.clone());
        let id = sub.id;
        drop(subs);
        tracing::info!(
            points = names.join(", "),
            sample = sub.sample,
            limit = ?req.limit,
            "tap client attached"
        );
        Ok(Stream {
            content_type: "application/x-ndjson",
            lines: rx,
            guard: Box::new(Detach {
                hub: Arc::downgrade(self),
                id,
            }),
        })
    }

    /// Removes a subscription from every point; its stream ends once the lines queued for it
    /// are written.
    fn detach(&self, id: u64) {
        let removed = self
            .subscriptions
            .lock()
            .map(|mut subs| {
                let before = subs.len();
                subs.retain(|s| s.id != id);
                before != subs.len()
            })
            .unwrap_or(false);
        for p in self.live_points() {
            p.remove(id);
        }
        if removed {
            tracing::info!("tap client detached");
        }
    }

    fn clients(&self) -> usize {
        self.subscriptions.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// Detaches its subscription when the answer ends (client gone, write failed).
struct Detach {
    hub: Weak<TapHub>,
    id: u64,
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.detach(self.id);
        }
    }
}

impl TapPoint {
    fn new(
        kind: ComponentKind,
        name: &str,
        type_name: &'static str,
        hub: Weak<TapHub>,
    ) -> TapPoint {
        let envelope = format!(
            "{{\"component_kind\":\"{}\",\"component\":{},\"event\":",
            kind.as_str(),
            serde_json::Value::from(name)
        );
        TapPoint {
            kind,
            name: Arc::from(name),
            type_name,
            attached: AtomicUsize::new(0),
            subscriptions: RwLock::new(Vec::new()),
            envelope,
            hub,
        }
    }

    /// Shows `events` to the clients attached here. Without one, a single relaxed load.
    #[inline]
    pub fn offer(&self, events: &[Event]) {
        if self.attached.load(Ordering::Relaxed) == 0 || events.is_empty() {
            return;
        }
        self.offer_attached(events);
    }

    /// `offer` for a batch, whose events are built only when a tap is attached.
    pub fn offer_batch(&self, batch: &mut Batch) {
        if self.attached.load(Ordering::Relaxed) == 0 || batch.is_empty() {
            return;
        }
        self.offer_attached(batch.events_mut());
    }

    #[cold]
    fn offer_attached(&self, events: &[Event]) {
        let subs: Vec<Arc<Subscription>> = match self.subscriptions.read() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        let hub = self.hub.upgrade();
        let mut finished = Vec::new();
        for sub in &subs {
            for event in events {
                match sub.offer(self, event) {
                    Offer::Sent => {
                        if let Some(h) = &hub {
                            h.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Offer::Dropped => {
                        if let Some(h) = &hub {
                            h.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Offer::Skipped => {}
                    Offer::SentLast => {
                        if let Some(h) = &hub {
                            h.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        finished.push(sub.id);
                        break;
                    }
                    Offer::Finished => {
                        finished.push(sub.id);
                        break;
                    }
                }
            }
        }
        if let Some(h) = hub {
            for id in finished {
                h.detach(id);
            }
        }
    }

    fn add(&self, sub: Arc<Subscription>) {
        if let Ok(mut s) = self.subscriptions.write() {
            s.push(sub);
            self.attached.store(s.len(), Ordering::Relaxed);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut s) = self.subscriptions.write() {
            s.retain(|x| x.id != id);
            self.attached.store(s.len(), Ordering::Relaxed);
        }
    }
}

enum Offer {
    Sent,
    /// Sent, and that was the last one the limit allows.
    SentLast,
    /// The client's queue is full: the event is dropped and counted.
    Dropped,
    /// Not in the sample.
    Skipped,
    /// The limit is reached or the client is gone.
    Finished,
}

impl Subscription {
    fn offer(&self, point: &TapPoint, event: &Event) -> Offer {
        if !self
            .seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.sample)
        {
            return Offer::Skipped;
        }
        let took = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1));
        let Ok(before) = took else {
            return Offer::Finished;
        };
        let untold = self.dropped_untold.swap(0, Ordering::Relaxed);
        if untold > 0 {
            let notice = format!("{{\"notice\":\"dropped\",\"dropped\":{untold}}}");
            if self.lines.try_send(notice).is_err() {
                self.dropped_untold.fetch_add(untold, Ordering::Relaxed);
            }
        }
        let mut line = String::with_capacity(point.envelope.len() + 256);
        line.push_str(&point.envelope);
        line.push_str(&event.to_json_string());
        line.push('}');
        match self.lines.try_send(line) {
            Ok(()) if before == 1 => Offer::SentLast,
            Ok(()) => Offer::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // A dropped event does not count towards the limit.
                self.remaining.fetch_add(1, Ordering::Relaxed);
                self.dropped_untold.fetch_add(1, Ordering::Relaxed);
                Offer::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Finished,
        }
    }
}

/// `trawl_tap_*` on `/metrics`.
struct TapCollector(Weak<TapHub>);

impl Collector for TapCollector {
    fn render(&self, out: &mut String) {
        let Some(hub) = self.0.upgrade() else { return };
        let _ = writeln!(
            out,
            "# HELP trawl_tap_clients Clients attached to /api/tap (trawl tap).\n# TYPE trawl_tap_clients gauge\ntrawl_tap_clients {}",
            hub.clients()
        );
        let _ = writeln!(
            out,
            "# HELP trawl_tap_events_sent_total Events queued for tap clients.\n# TYPE trawl_tap_events_sent_total counter\ntrawl_tap_events_sent_total {}",
            hub.sent.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP trawl_tap_events_dropped_total Events not shown to a tap client because it read slower than trawl shipped.\n# TYPE trawl_tap_events_dropped_total counter\ntrawl_tap_events_dropped_total {}",
            hub.dropped.load(Ordering::Relaxed)
        );
    }
}

fn plain(status: u16, body: String) -> Response {
    Response {
        status,
        content_type: "text/plain",
        body,
    }
}

/// A 404 body that lists what could have been asked for.
fn no_match(selectors: &[Selector], points: &[Arc<TapPoint>]) -> String {
    let asked: Vec<String> = selectors
        .iter()
        .map(|s| format!("{} `{}`", s.kind.as_str(), s.pattern))
        .collect();
    let mut out = format!("no component matches {}; tap points:", asked.join(", "));
    for p in points {
        let _ = write!(out, " {} `{}` ({}),", p.kind.as_str(), p.name, p.type_name);
    }
    out.pop();
    out.push('\n');
    out
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

/// Decodes `%XX` and `+` (a query string's space).
pub fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but unreserved characters (RFC 3986 2.3), for a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob("*", "anything"));
        assert!(glob("app", "app"));
        assert!(!glob("app", "apps"));
        assert!(glob("app*", "apps"));
        assert!(glob("*-es", "logs-es"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn query_selects_points_with_limit_and_sample() {
        let r = TapRequest::parse("input=app&output=es%2A&limit=5&sample=3").unwrap();
        assert_eq!(r.limit, Some(5));
        assert_eq!(r.sample, 3);
        assert_eq!(
            r.selectors,
            vec![
                Selector {
                    kind: ComponentKind::Input,
                    pattern: "app".into()
                },
                Selector {
                    kind: ComponentKind::Output,
                    pattern: "es*".into()
                }
            ]
        );
        assert!(TapRequest::parse("sample=0").is_err());
        assert!(TapRequest::parse("inputs=app").is_err());
        let all = TapRequest::parse("").unwrap();
        assert_eq!(all.selectors[0].kind, ComponentKind::Output);
        assert_eq!(percent_decode(&percent_encode("#1 a/b")).unwrap(), "#1 a/b");
    }
}
