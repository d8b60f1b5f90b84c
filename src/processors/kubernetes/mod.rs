//! The `kubernetes` processor: adds pod, namespace, node, labels, annotations, image and owner
//! workload to log events, and names the pods and services behind the IPs of flow and HTTP
//! events. Two optional sources: the Downward API (sidecar) and a watch on the API (node).
//!
//! The watch runs on a thread of its own with a single-threaded tokio runtime, started on the
//! first event (so that `trawl validate` starts nothing) and stopped when the processor is
//! dropped. Look-ups take a read lock on the cache for a few hash look-ups only.

pub mod cache;
pub mod downward;
pub mod parser;
pub mod watch;

use super::{Processor, Verdict};
use crate::config::{ComponentSpec, DeError, Duration};
use crate::event::{Event, Value};
use crate::inputs::BuildContext;
use crate::telemetry::metrics::Collector;
use crate::wire::http::metrics::ServiceMap;
use cache::{Cache, KeyFilter, PodMeta, Workload};
use downward::Downward;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use watch::{Shared, WatchSettings};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Label events with the pod trawl runs in, from the Downward API (a sidecar).
    #[serde(default)]
    pub sidecar: bool,
    /// Watch the API for the pods of this node and the cluster's services (a DaemonSet).
    #[serde(default)]
    pub node: bool,
    /// File of the pod's labels in a downwardAPI volume.
    #[serde(default = "default_labels_file")]
    pub labels_file: PathBuf,
    /// File of the pod's annotations in a downwardAPI volume.
    #[serde(default = "default_annotations_file")]
    pub annotations_file: PathBuf,
    /// The node whose pods are watched; default: the `NODE_NAME` environment variable; when
    /// neither is set, every pod of the cluster is watched.
    #[serde(default)]
    pub node_name: Option<String>,
    /// API server URL without credentials (`kubectl proxy`, tests); default: `kubeconfig`, else
    /// the in-cluster service account, else `$KUBECONFIG` / `~/.kube/config`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// A kubeconfig file to use.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Labels to keep (empty: all).
    #[serde(default)]
    pub include_labels: Vec<String>,
    /// Labels to leave out.
    #[serde(default)]
    pub exclude_labels: Vec<String>,
    /// Annotations to keep (empty: all).
    #[serde(default)]
    pub include_annotations: Vec<String>,
    /// Annotations to leave out.
    #[serde(default = "default_exclude_annotations")]
    pub exclude_annotations: Vec<String>,
    /// Fields holding IPs to resolve: `source.ip` gets `source.kubernetes.*`.
    #[serde(default = "default_ip_fields")]
    pub ip_fields: Vec<String>,
    /// How long a deleted pod's metadata is kept for lines that arrive late.
    #[serde(default = "default_cleanup_timeout")]
    pub cleanup_timeout: Duration,
    /// Longest wait between retries when the API is unreachable.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// How long the first event waits for the first list of pods (0: not at all).
    #[serde(default = "default_sync_timeout")]
    pub sync_timeout: Duration,
}

fn default_labels_file() -> PathBuf {
    PathBuf::from("/etc/podinfo/labels")
}
fn default_annotations_file() -> PathBuf {
    PathBuf::from("/etc/podinfo/annotations")
}
fn default_exclude_annotations() -> Vec<String> {
    vec!["kubectl.kubernetes.io/last-applied-configuration".to_owned()]
}
fn default_ip_fields() -> Vec<String> {
    ["source.ip", "destination.ip", "client.ip", "server.ip"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_cleanup_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_sync_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Counters of the processor, rendered as `trawl_kubernetes_*`.
#[derive(Default)]
pub struct Stats {
    component: String,
    /// Events (or IPs of flows) labelled from the node cache.
    pub labelled: AtomicU64,
    /// Events that carried a pod reference or an IP the cache could not resolve.
    pub unlabelled: AtomicU64,
    pub watch_errors: AtomicU64,
    pub relists: AtomicU64,
    pub pods: AtomicI64,
}

impl Collector for Stats {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = &self.component;
        let _ = write!(
            out,
            "# HELP trawl_kubernetes_labelled_total Events (or flow IPs) labelled from the pod cache.\n# TYPE trawl_kubernetes_labelled_total counter\ntrawl_kubernetes_labelled_total{{component=\"{c}\"}} {}\n\
             # HELP trawl_kubernetes_unlabelled_total Events with a pod reference or IP the pod cache could not resolve.\n# TYPE trawl_kubernetes_unlabelled_total counter\ntrawl_kubernetes_unlabelled_total{{component=\"{c}\"}} {}\n\
             # HELP trawl_kubernetes_watch_errors_total Errors watching the Kubernetes API.\n# TYPE trawl_kubernetes_watch_errors_total counter\ntrawl_kubernetes_watch_errors_total{{component=\"{c}\"}} {}\n\
             # HELP trawl_kubernetes_relists_total Times the pod list was fetched again in full.\n# TYPE trawl_kubernetes_relists_total counter\ntrawl_kubernetes_relists_total{{component=\"{c}\"}} {}\n\
             # HELP trawl_kubernetes_cached_pods Pods in the metadata cache.\n# TYPE trawl_kubernetes_cached_pods gauge\ntrawl_kubernetes_cached_pods{{component=\"{c}\"}} {}\n",
            self.labelled.load(Ordering::Relaxed),
            self.unlabelled.load(Ordering::Relaxed),
            self.watch_errors.load(Ordering::Relaxed),
            self.relists.load(Ordering::Relaxed),
            self.pods.load(Ordering::Relaxed),
        );
    }
}

/// The running watch: dropping it stops the thread's runtime.
struct Watcher {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Kubernetes {
    downward: Option<Downward>,
    identity: Vec<(String, Value)>,
    /// When the Downward API files were last checked for changes.
    checked: Option<Instant>,
    settings: Option<WatchSettings>,
    sync_timeout: std::time::Duration,
    shared: Arc<Shared>,
    watcher: Option<Watcher>,
    ip_fields: Vec<(String, String)>,
}

impl Kubernetes {
    pub fn new(
        config: KubernetesConfig,
        spec: &ComponentSpec,
        ctx: &BuildContext,
    ) -> Result<Kubernetes, DeError> {
        Kubernetes::with_env(config, spec, ctx, Box::new(|k| std::env::var(k).ok()))
    }

    /// As `new`, with the environment given (tests set Downward API variables this way).
    pub(crate) fn with_env(
        config: KubernetesConfig,
        spec: &ComponentSpec,
        ctx: &BuildContext,
        env: downward::Env,
    ) -> Result<Kubernetes, DeError> {
        if !config.sidecar && !config.node {
            return Err(DeError::new("enable at least one source: `sidecar: true` (Downward API) or `node: true` (API watch)", spec.mark, &spec.path));
        }
        if let Some(url) = &config.api_url {
            if url.parse::<http::Uri>().is_err() {
                return Err(DeError::new(
                    format!("invalid URL `{url}`"),
                    spec.mark,
                    &format!("{}.api_url", spec.path),
                ));
            }
        }
        if let Some(path) = &config.kubeconfig {
            if !path.is_file() {
                return Err(DeError::new(
                    format!("kubeconfig `{}` is not a readable file", path.display()),
                    spec.mark,
                    &format!("{}.kubeconfig", spec.path),
                ));
            }
            // Found at run only, it was retried quietly for ever and no pod was ever named.
            if let Err(e) = kube::config::Kubeconfig::read_from(path) {
                return Err(DeError::new(
                    format!(
                        "kubeconfig `{}` cannot be read as one: {}",
                        path.display(),
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                    spec.node.get("kubeconfig").map_or(spec.mark, |n| n.mark),
                    &format!("{}.kubeconfig", spec.path),
                ));
            }
        }
        let labels = KeyFilter {
            include: config.include_labels.clone(),
            exclude: config.exclude_labels.clone(),
        };
        let annotations = KeyFilter {
            include: config.include_annotations.clone(),
            exclude: config.exclude_annotations.clone(),
        };
        let node_name = config
            .node_name
            .clone()
            .or_else(|| env("NODE_NAME").filter(|n| !n.is_empty()));
        let stats = Arc::new(Stats {
            component: spec.name.clone(),
            ..Stats::default()
        });
        ctx.registry.register(stats.clone());
        let settings = config.node.then(|| WatchSettings {
            api_url: config.api_url.clone(),
            kubeconfig: config.kubeconfig.clone(),
            node: node_name,
            labels: labels.clone(),
            annotations: annotations.clone(),
            cleanup_timeout: config.cleanup_timeout.std(),
            max_backoff: config.max_backoff.std(),
        });
        let downward = config.sidecar.then(|| {
            Downward::new(
                config.labels_file.clone(),
                config.annotations_file.clone(),
                labels,
                annotations,
                env,
            )
        });
        let ip_fields = config
            .ip_fields
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    format!("{}.kubernetes", f.strip_suffix(".ip").unwrap_or(f)),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            cache: RwLock::new(Cache::default()),
            stats,
        });
        if config.node {
            // The pipeline's service map (packet inputs) names nodes by workload from the cache.
            let cache = Arc::downgrade(&shared);
            ServiceMap::offer_resolver(
                &ctx.registry,
                Arc::new(move |ip| {
                    cache
                        .upgrade()?
                        .cache
                        .read()
                        .ok()?
                        .workload_name(&ip.to_string())
                }),
            );
        }
        Ok(Kubernetes {
            downward,
            identity: Vec::new(),
            checked: None,
            settings,
            sync_timeout: config.sync_timeout.std(),
            shared,
            watcher: None,
            ip_fields,
        })
    }

    /// Starts the watch thread, then waits (bounded) for the first list of pods so that the
    /// first lines are labelled too.
    fn start_watch(&mut self) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        match &settings.node {
            Some(node) => tracing::info!(node = %node, "kubernetes: watching the pods of this node"),
            None => tracing::warn!("kubernetes: neither `node_name` nor NODE_NAME is set: watching every pod of the cluster"),
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (synced_tx, synced_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let first = watch::FirstLists::new(synced_tx);
        let first_seen = first.clone();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new().name("trawl-kubernetes".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "kubernetes: cannot start the watch runtime; events pass unlabelled");
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    _ = watch::run(settings, shared, first) => {}
                    _ = stop_rx => {}
                }
            });
        });
        match thread {
            Ok(t) => {
                self.watcher = Some(Watcher {
                    stop: Some(stop_tx),
                    thread: Some(t),
                });
                let timeout = self.sync_timeout;
                let wait = || timeout.is_zero() || synced_rx.recv_timeout(timeout).is_ok();
                // On the pipeline's multi-threaded runtime, let the worker's other tasks move
                // elsewhere while this one waits (once, at start).
                let synced = match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(wait)
                    }
                    _ => wait(),
                };
                if !synced {
                    let missing = first_seen.pending().join(", ");
                    tracing::warn!(timeout = ?self.sync_timeout, missing = %missing, "kubernetes: not every first list from the API yet; events pass without what those would add (unlabelled, without pods) until they arrive");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "kubernetes: cannot start the watch thread; events pass unlabelled")
            }
        }
    }

    fn refresh_identity(&mut self) {
        let Some(d) = &mut self.downward else { return };
        let due = self
            .checked
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10));
        if due {
            if self.checked.is_none() || d.changed() {
                self.identity = d.read().fields();
            }
            self.checked = Some(Instant::now());
        }
    }

    fn label_from_node(&self, event: &mut Event) {
        let stats = &self.shared.stats;
        let cache = self.shared.cache.read().unwrap_or_else(|p| p.into_inner());
        let text = |e: &Event, f: &str| e.get(f).and_then(Value::as_str).map(str::to_owned);
        let uid = text(event, "kubernetes.pod.uid");
        let cid = text(event, "container.id");
        let name = text(event, "kubernetes.pod.name");
        let ns = text(event, "kubernetes.namespace");
        let wants_pod = uid.is_some() || cid.is_some() || (name.is_some() && ns.is_some());
        if wants_pod {
            let pod = uid
                .as_deref()
                .and_then(|u| cache.pod_by_uid(u))
                .or_else(|| cid.as_deref().and_then(|c| cache.pod_by_container(c)))
                .or_else(|| match (&ns, &name) {
                    (Some(ns), Some(n)) => cache.pod_by_name(ns, n),
                    _ => None,
                });
            match pod {
                Some(pod) => {
                    stats.labelled.fetch_add(1, Ordering::Relaxed);
                    label_log_event(event, pod, &cache, cid.as_deref());
                }
                None => {
                    stats.unlabelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (ip_field, prefix) in &self.ip_fields {
            let Some(ip) = text(event, ip_field) else {
                continue;
            };
            if let Some(pod) = cache.pod_by_ip(&ip) {
                stats.labelled.fetch_add(1, Ordering::Relaxed);
                put(event, prefix, "pod.name", &pod.name);
                put(event, prefix, "pod.uid", &pod.uid);
                put(event, prefix, "namespace", &pod.namespace);
                if let Some(node) = &pod.node {
                    put(event, prefix, "node.name", node);
                }
                put_owners(event, prefix, cache.owners(pod));
            } else if let Some((ns, name)) = cache.service_by_ip(&ip) {
                stats.labelled.fetch_add(1, Ordering::Relaxed);
                put(event, prefix, "service.name", name);
                put(event, prefix, "namespace", ns);
            } else {
                stats.unlabelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn put(event: &mut Event, prefix: &str, key: &str, value: &str) {
    event.insert(&format!("{prefix}.{key}"), Value::String(value.to_owned()));
}

/// `<prefix>.replicaset.name` and `<prefix>.deployment.name`, or the one owner a pod has.
fn put_owners(event: &mut Event, prefix: &str, owners: (Option<Workload>, Option<Workload>)) {
    for (kind, name) in [owners.0, owners.1].into_iter().flatten() {
        put(event, prefix, &format!("{kind}.name"), &name);
    }
}

/// Labels a log line with its pod: the fields Filebeat's add_kubernetes_metadata writes.
fn label_log_event(event: &mut Event, pod: &PodMeta, cache: &Cache, container_id: Option<&str>) {
    put(event, "kubernetes", "pod.name", &pod.name);
    put(event, "kubernetes", "pod.uid", &pod.uid);
    put(event, "kubernetes", "namespace", &pod.namespace);
    if let Some(ip) = &pod.ip {
        put(event, "kubernetes", "pod.ip", ip);
    }
    if let Some(node) = &pod.node {
        put(event, "kubernetes", "node.name", node);
    }
    if !pod.labels.is_empty() {
        event.insert("kubernetes.labels", Value::Object(pod.labels.clone()));
    }
    if !pod.annotations.is_empty() {
        event.insert(
            "kubernetes.annotations",
            Value::Object(pod.annotations.clone()),
        );
    }
    put_owners(event, "kubernetes", cache.owners(pod));
    let container_name = event
        .get("kubernetes.container.name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let container = pod
        .containers
        .iter()
        .find(|c| match (&container_name, container_id) {
            (Some(n), _) => &c.name == n,
            (None, Some(id)) => c.id.as_deref() == Some(cache::strip_scheme(id)),
            (None, None) => false,
        });
    if let Some(c) = container {
        put(event, "kubernetes", "container.name", &c.name);
        if let Some(image) = &c.image {
            put(event, "container", "image.name", image);
        }
    }
}

impl Processor for Kubernetes {
    fn process(&mut self, event: &mut Event) -> Verdict {
        if self.downward.is_some() {
            self.refresh_identity();
            for (path, value) in &self.identity {
                if event.get(path).is_none() {
                    event.insert(path, value.clone());
                }
            }
        }
        if self.settings.is_some() {
            if self.watcher.is_none() {
                self.start_watch();
            }
            self.label_from_node(event);
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use crate::processors::test_support::{build, event, json};
    use serde_json::json;

    #[test]
    fn sidecar_labels_from_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("labels"),
            "app=\"web\"\napp.kubernetes.io/version=\"1.2\"\npod-template-hash=\"5d4f\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("annotations"),
            "team=\"shop\"\nkubectl.kubernetes.io/last-applied-configuration=\"{}\"\n",
        )
        .unwrap();
        let yaml = format!(
            "{{type: kubernetes, sidecar: true, exclude_labels: [pod-template-hash], labels_file: {0}/labels, annotations_file: {0}/annotations}}",
            dir.path().display()
        );
        // The environment is injected so that tests do not race on process-wide variables.
        let spec_node = crate::config::node::parse(&yaml).unwrap();
        let config: super::KubernetesConfig =
            crate::config::from_node(&spec_node.without_keys(&["type"]), "p").unwrap();
        let spec = crate::config::ComponentSpec {
            file: "p.yaml".into(),
            name: "k8s".into(),
            type_name: "kubernetes".into(),
            node: spec_node,
            path: "processors[0]".into(),
            mark: crate::config::Mark { line: 1, col: 1 },
            type_mark: crate::config::Mark { line: 1, col: 1 },
        };
        let ctx = crate::inputs::BuildContext {
            data_dir: dir.path().to_owned(),
            registry: crate::telemetry::metrics::Registry::new(),
            endpoints: Default::default(),
        };
        let env = |k: &str| match k {
            "POD_NAME" => Some("web-5d4f-abcde".to_owned()),
            "POD_NAMESPACE" => Some("shop".to_owned()),
            "POD_IP" => Some("10.1.2.3".to_owned()),
            "NODE_NAME" => Some("node-a".to_owned()),
            _ => None,
        };
        let mut p = super::Kubernetes::with_env(config, &spec, &ctx, Box::new(env)).unwrap();
        let mut e = event("hello");
        use crate::processors::Processor;
        p.process(&mut e);
        assert_eq!(
            json(&e)["kubernetes"],
            json!({
                "pod": {"name": "web-5d4f-abcde", "ip": "10.1.2.3"},
                "namespace": "shop",
                "node": {"name": "node-a"},
                "labels": {"app": "web", "app_kubernetes_io/version": "1.2"},
                "annotations": {"team": "shop"}
            })
        );
    }

    #[test]
    fn a_source_is_required() {
        let e = build("{type: kubernetes}").err().unwrap();
        assert!(
            e.message.contains("enable at least one source"),
            "{}",
            e.message
        );
    }
}
