//! The node watch: lists then watches pods on this node, services, ReplicaSets and Jobs with the
//! kube client, applying every change to the cache. A watch that ends is resumed from the last
//! resourceVersion; an error or `410 Gone` leads to a fresh list (relist) after a backoff.

use super::cache::{Cache, ContainerMeta, KeyFilter, PodMeta};
use super::Stats;
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, ObjectList, PartialObjectMeta, WatchEvent, WatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What the watch needs from the processor's configuration.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub api_url: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// Only pods with this `spec.nodeName` (all pods when `None`).
    pub node: Option<String>,
    pub labels: KeyFilter,
    pub annotations: KeyFilter,
    pub cleanup_timeout: Duration,
    pub max_backoff: Duration,
}

/// State shared between the watch tasks and the processor.
pub struct Shared {
    pub cache: RwLock<Cache>,
    pub stats: Arc<Stats>,
}

impl Shared {
    fn write(&self, f: impl FnOnce(&mut Cache)) {
        // A poisoned lock only means a writer panicked mid-update; the data is still usable.
        let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
        f(&mut c);
        self.stats
            .pods
            .store(c.pod_count() as i64, Ordering::Relaxed);
    }
}

/// Builds the client: `api_url` (no credentials: tests, `kubectl proxy`), else `kubeconfig`,
/// else the in-cluster service account or the usual kubeconfig lookup.
pub async fn client(s: &WatchSettings) -> anyhow::Result<Client> {
    let config = if let Some(url) = &s.api_url {
        kube::Config::new(url.parse()?)
    } else if let Some(path) = &s.kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
    } else {
        kube::Config::infer().await?
    };
    Ok(Client::try_from(config)?)
}

/// The first list of each watch. The processor waits for all of them at start (up to
/// `sync_timeout`): with the pods alone, the lines read first (a restarted DaemonSet's backlog)
/// went out without their Deployment or CronJob, whose lists came a moment later.
pub struct FirstLists {
    pending: Mutex<Vec<&'static str>>,
    all_done: Mutex<Option<std::sync::mpsc::SyncSender<()>>>,
}

impl FirstLists {
    pub fn new(all_done: std::sync::mpsc::SyncSender<()>) -> Arc<FirstLists> {
        Arc::new(FirstLists {
            pending: Mutex::new(vec!["pods", "services", "replicasets", "jobs"]),
            all_done: Mutex::new(Some(all_done)),
        })
    }

    fn done(&self, what: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|w| *w != what);
        if pending.is_empty() {
            if let Some(tx) = self
                .all_done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                let _ = tx.try_send(());
            }
        }
    }

    /// The watches whose first list has not arrived yet.
    pub fn pending(&self) -> Vec<&'static str> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs every watch until the process ends (the caller drops the runtime to stop them).
pub async fn run(settings: WatchSettings, shared: Arc<Shared>, first: Arc<FirstLists>) {
    let client = loop {
        match client(&settings).await {
            Ok(c) => break c,
            Err(e) => {
                shared.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "kubernetes: cannot configure the API client; retrying");
                tokio::time::sleep(settings.max_backoff).await;
            }
        }
    };
    let pod_selector = settings.node.as_ref().map(|n| format!("spec.nodeName={n}"));
    let pods = Watch {
        what: "pods",
        list: Full(Api::<Pod>::all(client.clone())),
        selector: pod_selector,
        stats: shared.stats.clone(),
        first: first.clone(),
    };
    let services = Watch {
        what: "services",
        list: Full(Api::<Service>::all(client.clone())),
        selector: None,
        stats: shared.stats.clone(),
        first: first.clone(),
    };
    let replicasets = Watch {
        what: "replicasets",
        list: MetaOnly(Api::<ReplicaSet>::all(client.clone())),
        selector: None,
        stats: shared.stats.clone(),
        first: first.clone(),
    };
    let jobs = Watch {
        what: "jobs",
        list: MetaOnly(Api::<Job>::all(client)),
        selector: None,
        stats: shared.stats.clone(),
        first: first.clone(),
    };

    let s = settings.clone();
    let (sh1, sh2, sh3, sh4, sh5) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
    );
    let grace = settings.cleanup_timeout;
    let expire = async move {
        let mut tick = tokio::time::interval(
            (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)),
        );
        loop {
            tick.tick().await;
            sh5.write(|c| c.expire(Instant::now(), grace));
        }
    };
    tokio::join!(
        pods.run(&settings, move |change| apply_pod(&sh1, &s, change)),
        services.run(&settings, move |change| apply_service(&sh2, change)),
        replicasets.run(&settings, move |change| apply_owner(
            &sh3,
            "Deployment",
            change
        )),
        jobs.run(&settings, move |change| apply_owner(
            &sh4, "CronJob", change
        )),
        expire,
    );
}

/// A change seen by a watch: the whole list after a (re)list, or one object.
pub enum Change<O> {
    Reset(Vec<O>),
    Upsert(O),
    Delete(O),
}

/// Lists and watches one kind of object, as full objects or metadata only.
trait Lister: Send + Sync {
    type Obj: Resource + Clone + DeserializeOwned + Send + 'static;
    fn list(
        &self,
        lp: &ListParams,
    ) -> impl Future<Output = kube::Result<ObjectList<Self::Obj>>> + Send;
    fn watch(
        &self,
        wp: &WatchParams,
        rv: &str,
    ) -> impl Future<Output = kube::Result<BoxStream<'static, kube::Result<WatchEvent<Self::Obj>>>>> + Send;
}

struct Full<K>(Api<K>);
struct MetaOnly<K>(Api<K>);

impl<K> Lister for Full<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    type Obj = K;
    async fn list(&self, lp: &ListParams) -> kube::Result<ObjectList<K>> {
        self.0.list(lp).await
    }
    async fn watch(
        &self,
        wp: &WatchParams,
        rv: &str,
    ) -> kube::Result<BoxStream<'static, kube::Result<WatchEvent<K>>>> {
        Ok(self.0.watch(wp, rv).await?.boxed())
    }
}

impl<K> Lister for MetaOnly<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    type Obj = PartialObjectMeta<K>;
    async fn list(&self, lp: &ListParams) -> kube::Result<ObjectList<PartialObjectMeta<K>>> {
        self.0.list_metadata(lp).await
    }
    async fn watch(
        &self,
        wp: &WatchParams,
        rv: &str,
    ) -> kube::Result<BoxStream<'static, kube::Result<WatchEvent<PartialObjectMeta<K>>>>> {
        Ok(self.0.watch_metadata(wp, rv).await?.boxed())
    }
}

struct Watch<L> {
    what: &'static str,
    list: L,
    selector: Option<String>,
    stats: Arc<Stats>,
    first: Arc<FirstLists>,
}

/// How a watch stream ended.
enum Ended {
    /// The server closed it (timeout): watch again from the last resourceVersion.
    Resume,
    /// `410 Gone`, an error event, or a broken connection: list again.
    Relist,
}

impl<L: Lister> Watch<L> {
    async fn run(&self, s: &WatchSettings, mut apply: impl FnMut(Change<L::Obj>) + Send) {
        let mut failures: u32 = 0;
        let mut listed = false;
        loop {
            if failures > 0 {
                let wait = Duration::from_millis(250u64.saturating_mul(1 << failures.min(8)))
                    .min(s.max_backoff);
                tokio::time::sleep(wait).await;
            }
            let (items, mut rv) = match self.list_all().await {
                Ok(x) => x,
                Err(e) => {
                    failures += 1;
                    self.error(&e, "list", failures);
                    continue;
                }
            };
            if listed {
                self.stats.relists.fetch_add(1, Ordering::Relaxed);
                tracing::info!(resource = self.what, "kubernetes: listed again; watching");
            }
            apply(Change::Reset(items));
            if !listed {
                self.first.done(self.what);
            }
            listed = true;
            failures = 0;
            loop {
                match self.watch_once(&mut rv, &mut apply).await {
                    Ok(Ended::Resume) => {}
                    Ok(Ended::Relist) => {
                        failures = 1;
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        self.error(&e, "watch", failures);
                        break;
                    }
                }
            }
        }
    }

    /// Counts every failure; logs the first of a streak as a warning, the rest at debug level.
    fn error(&self, e: &kube::Error, during: &str, streak: u32) {
        self.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
        // The API's own words, not kube's debug dump of its Status.
        let error = match e {
            kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
            // With its causes: "client error (Connect)" alone does not say refused or timed out.
            other => {
                let mut text = other.to_string();
                let mut cause = std::error::Error::source(other);
                while let Some(c) = cause {
                    let c_text = c.to_string();
                    if !text.contains(&c_text) {
                        text = format!("{text}: {c_text}");
                    }
                    cause = c.source();
                }
                text
            }
        };
        if streak > 1 {
            tracing::debug!(resource = self.what, error = %error, "kubernetes: {during} failed again");
        } else if matches!(e, kube::Error::Api(s) if s.code == 401 || s.code == 403) {
            // Nothing trawl does mends it: say what to change.
            tracing::warn!(resource = self.what, error = %error, "kubernetes: the API refused trawl's credentials; its service account needs get, list and watch on pods, services, replicasets and jobs (the ClusterRole and ClusterRoleBinding of docker/kubernetes/daemonset.yaml); retrying with backoff, events pass without what this list would add");
        } else {
            tracing::warn!(resource = self.what, error = %error, "kubernetes: {during} failed; retrying with backoff, new pods stay unlabelled until a list succeeds");
        }
    }

    /// Lists in pages of 500 (as kubectl does) and returns the items with the list's version.
    async fn list_all(&self) -> kube::Result<(Vec<L::Obj>, String)> {
        let mut items = Vec::new();
        let mut lp = ListParams::default().limit(500);
        if let Some(sel) = &self.selector {
            lp = lp.fields(sel);
        }
        loop {
            let page = self.list.list(&lp).await?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok((items, page.metadata.resource_version.unwrap_or_default())),
            }
        }
    }

    async fn watch_once(
        &self,
        rv: &mut String,
        apply: &mut (impl FnMut(Change<L::Obj>) + Send),
    ) -> kube::Result<Ended> {
        let mut wp = WatchParams::default().timeout(290);
        if let Some(sel) = &self.selector {
            wp = wp.fields(sel);
        }
        let mut stream = match self.list.watch(&wp, rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(status)) if status.code == 410 => return Ok(Ended::Relist),
            Err(e) => return Err(e),
        };
        while let Some(event) = stream.next().await {
            match event? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    *rv = o.resource_version().unwrap_or_default();
                    apply(Change::Upsert(o));
                }
                WatchEvent::Deleted(o) => {
                    *rv = o.resource_version().unwrap_or_default();
                    apply(Change::Delete(o));
                }
                WatchEvent::Bookmark(b) => *rv = b.metadata.resource_version,
                WatchEvent::Error(status) => {
                    if status.code != 410 {
                        tracing::warn!(resource = self.what, error = %status, "kubernetes: watch error event");
                    }
                    return Ok(Ended::Relist);
                }
            }
        }
        Ok(Ended::Resume)
    }
}

fn apply_pod(shared: &Shared, s: &WatchSettings, change: Change<Pod>) {
    match change {
        Change::Reset(pods) => {
            let metas: Vec<PodMeta> = pods.iter().filter_map(|p| pod_meta(p, s)).collect();
            let alive: HashSet<String> = metas.iter().map(|m| m.uid.clone()).collect();
            shared.write(|c| {
                c.retain_pods(&alive, Instant::now());
                for m in metas {
                    c.upsert_pod(m);
                }
            });
        }
        Change::Upsert(p) => {
            if let Some(m) = pod_meta(&p, s) {
                shared.write(|c| c.upsert_pod(m));
            }
        }
        Change::Delete(p) => {
            if let Some(uid) = p.metadata.uid {
                shared.write(|c| c.delete_pod(&uid, Instant::now()));
            }
        }
    }
}

fn apply_service(shared: &Shared, change: Change<Service>) {
    let ips = |svc: &Service| -> Vec<String> {
        let spec = svc.spec.as_ref();
        let mut ips: Vec<String> = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
        if let Some(ip) = spec.and_then(|s| s.cluster_ip.clone()) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        ips.retain(|ip| !ip.is_empty() && ip != "None");
        ips
    };
    match change {
        Change::Reset(list) => shared.write(|c| {
            c.clear_services();
            for svc in &list {
                c.upsert_service(
                    &svc.namespace().unwrap_or_default(),
                    &svc.name_any(),
                    ips(svc),
                );
            }
        }),
        Change::Upsert(svc) => shared.write(|c| {
            c.upsert_service(
                &svc.namespace().unwrap_or_default(),
                &svc.name_any(),
                ips(&svc),
            )
        }),
        Change::Delete(svc) => shared
            .write(|c| c.delete_service(&svc.namespace().unwrap_or_default(), &svc.name_any())),
    }
}

/// ReplicaSets and Jobs: only who controls them matters (a Deployment, a CronJob).
fn apply_owner<K>(shared: &Shared, owner_kind: &str, change: Change<PartialObjectMeta<K>>) {
    let owner = |m: &PartialObjectMeta<K>| {
        m.metadata
            .owner_references
            .as_ref()?
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == owner_kind)
            .map(|o| (o.kind.clone(), o.name.clone()))
    };
    let key = |m: &PartialObjectMeta<K>| {
        (
            m.metadata.namespace.clone().unwrap_or_default(),
            m.metadata.name.clone().unwrap_or_default(),
        )
    };
    match change {
        Change::Reset(list) => shared.write(|c| {
            c.clear_owners(owner_kind);
            for m in &list {
                let (ns, name) = key(m);
                c.set_owner(&ns, &name, owner(m));
            }
        }),
        Change::Upsert(m) => {
            let (ns, name) = key(&m);
            shared.write(|c| c.set_owner(&ns, &name, owner(&m)));
        }
        Change::Delete(m) => {
            let (ns, name) = key(&m);
            shared.write(|c| c.set_owner(&ns, &name, None));
        }
    }
}

/// What the cache keeps of a pod; `None` for pods without UID or name (not real ones).
pub fn pod_meta(pod: &Pod, s: &WatchSettings) -> Option<PodMeta> {
    let md = &pod.metadata;
    let uid = md.uid.clone()?;
    let name = md.name.clone()?;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|v| v.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    let ip = status.and_then(|s| s.pod_ip.clone());
    if let Some(ip) = &ip {
        if !ips.contains(ip) {
            ips.push(ip.clone());
        }
    }
    if host_network {
        // The node's IP: it would name this pod for every host-network pod's traffic.
        ips.clear();
    }
    let mut containers: Vec<ContainerMeta> = Vec::new();
    if let Some(spec) = spec {
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            containers.push(ContainerMeta {
                name: c.name.clone(),
                image: c.image.clone(),
                id: None,
            });
        }
    }
    if let Some(status) = status {
        for cs in status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
        {
            let id = cs
                .container_id
                .as_deref()
                .map(|i| super::cache::strip_scheme(i).to_owned());
            match containers.iter_mut().find(|c| c.name == cs.name) {
                Some(c) => c.id = id,
                None => containers.push(ContainerMeta {
                    name: cs.name.clone(),
                    image: Some(cs.image.clone()),
                    id,
                }),
            }
        }
    }
    Some(PodMeta {
        uid,
        name,
        namespace: md.namespace.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ip,
        ips,
        labels: md
            .labels
            .as_ref()
            .map(|l| s.labels.apply(l.iter()))
            .unwrap_or_default(),
        annotations: md
            .annotations
            .as_ref()
            .map(|a| s.annotations.apply(a.iter()))
            .unwrap_or_default(),
        owner: md
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|o| o.controller == Some(true)))
            .map(|o| (o.kind.clone(), o.name.clone())),
        containers,
    })
}
