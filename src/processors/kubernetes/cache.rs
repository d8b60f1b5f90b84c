//! The metadata cache the node watch fills and `process()` reads: pods by UID with indexes by
//! container ID, IP and namespace/name, services by ClusterIP, and the owners of ReplicaSets and
//! Jobs (to name Deployments and CronJobs). Deleted pods stay for a grace period.

use crate::event::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the cache keeps of one pod: only what events are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    pub ip: Option<String>,
    /// Every IP of the pod (dual stack); empty for host-network pods, whose IP is the node's.
    pub ips: Vec<String>,
    /// Labels and annotations already filtered and with dots replaced (`app.kubernetes.io/name`
    /// → `app_kubernetes_io/name`) so that they do not nest.
    pub labels: Map,
    pub annotations: Map,
    /// The controlling owner as (kind, name): `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`...
    pub owner: Option<(String, String)>,
    pub containers: Vec<ContainerMeta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: Option<String>,
    /// Runtime ID without the `containerd://` scheme (as in log file names).
    pub id: Option<String>,
}

/// One cached pod and, once deleted, when.
#[derive(Debug)]
struct PodEntry {
    meta: Arc<PodMeta>,
    deleted_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Cache {
    pods: HashMap<String, PodEntry>,
    by_container: HashMap<String, String>,
    by_ip: HashMap<String, String>,
    by_name: HashMap<(String, String), String>,
    /// ClusterIP → (namespace, name).
    services: HashMap<String, (String, String)>,
    /// (namespace, name) of a service → its ClusterIPs, to unindex on change or deletion.
    service_ips: HashMap<(String, String), Vec<String>>,
    /// (namespace, ReplicaSet or Job name) → (owner kind, owner name).
    owners: HashMap<(String, String), (String, String)>,
}

/// The workload a pod belongs to, as (kind in lower case, name): `("deployment", "web")`.
pub type Workload = (String, String);

impl Cache {
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Adds or replaces a pod (a re-created pod under the same name takes the indexes over).
    pub fn upsert_pod(&mut self, pod: PodMeta) {
        let uid = pod.uid.clone();
        if let Some(old) = self.pods.remove(&uid) {
            self.unindex(&old.meta);
        }
        for c in &pod.containers {
            if let Some(id) = &c.id {
                self.by_container.insert(id.clone(), uid.clone());
            }
        }
        for ip in &pod.ips {
            self.by_ip.insert(ip.clone(), uid.clone());
        }
        self.by_name
            .insert((pod.namespace.clone(), pod.name.clone()), uid.clone());
        self.pods.insert(
            uid,
            PodEntry {
                meta: Arc::new(pod),
                deleted_at: None,
            },
        );
    }

    /// Marks a pod deleted: it still answers look-ups until `expire` runs past its grace.
    pub fn delete_pod(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.pods.get_mut(uid) {
            e.deleted_at.get_or_insert(now);
        }
    }

    /// After a relist: pods the API no longer has were deleted while the watch was away.
    pub fn retain_pods(&mut self, alive: &std::collections::HashSet<String>, now: Instant) {
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !alive.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            self.delete_pod(&uid, now);
        }
    }

    /// Forgets pods deleted more than `grace` ago.
    pub fn expire(&mut self, now: Instant, grace: Duration) {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| e.deleted_at.is_some_and(|d| now.duration_since(d) >= grace))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in expired {
            if let Some(e) = self.pods.remove(&uid) {
                self.unindex(&e.meta);
            }
        }
    }

    /// Removes index entries that still point at this pod (a newer pod may own an IP now).
    fn unindex(&mut self, pod: &PodMeta) {
        let uid = &pod.uid;
        for c in &pod.containers {
            if let Some(id) = &c.id {
                if self.by_container.get(id) == Some(uid) {
                    self.by_container.remove(id);
                }
            }
        }
        for ip in &pod.ips {
            if self.by_ip.get(ip) == Some(uid) {
                self.by_ip.remove(ip);
            }
        }
        let key = (pod.namespace.clone(), pod.name.clone());
        if self.by_name.get(&key) == Some(uid) {
            self.by_name.remove(&key);
        }
    }

    pub fn upsert_service(&mut self, namespace: &str, name: &str, cluster_ips: Vec<String>) {
        self.delete_service(namespace, name);
        for ip in &cluster_ips {
            self.services
                .insert(ip.clone(), (namespace.to_owned(), name.to_owned()));
        }
        self.service_ips
            .insert((namespace.to_owned(), name.to_owned()), cluster_ips);
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        if let Some(ips) = self
            .service_ips
            .remove(&(namespace.to_owned(), name.to_owned()))
        {
            for ip in ips {
                self.services.remove(&ip);
            }
        }
    }

    /// Replaces every service (after a relist).
    pub fn clear_services(&mut self) {
        self.services.clear();
        self.service_ips.clear();
    }

    /// Records (or with `None`, forgets) who owns a ReplicaSet or a Job.
    pub fn set_owner(&mut self, namespace: &str, name: &str, owner: Option<(String, String)>) {
        let key = (namespace.to_owned(), name.to_owned());
        match owner {
            Some(o) => {
                self.owners.insert(key, o);
            }
            None => {
                self.owners.remove(&key);
            }
        }
    }

    /// Forgets the owners of every object of `kind`'s children (`ReplicaSet` → Deployments).
    pub fn clear_owners(&mut self, owner_kind: &str) {
        self.owners.retain(|_, (k, _)| k != owner_kind);
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.pods.get(uid).map(|e| &e.meta)
    }

    pub fn pod_by_container(&self, id: &str) -> Option<&Arc<PodMeta>> {
        self.by_container
            .get(strip_scheme(id))
            .and_then(|u| self.pod_by_uid(u))
    }

    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<PodMeta>> {
        self.by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|u| self.pod_by_uid(u))
    }

    pub fn pod_by_ip(&self, ip: &str) -> Option<&Arc<PodMeta>> {
        self.by_ip.get(ip).and_then(|u| self.pod_by_uid(u))
    }

    pub fn service_by_ip(&self, ip: &str) -> Option<&(String, String)> {
        self.services.get(ip)
    }

    /// The service map's name for `ip`: `namespace/workload` (or `namespace/pod` without an
    /// owner) for a pod's IP, `namespace/service` for a ClusterIP.
    pub fn workload_name(&self, ip: &str) -> Option<String> {
        if let Some(pod) = self.pod_by_ip(ip) {
            let name = self.workload(pod).map(|(_, n)| n);
            return Some(format!(
                "{}/{}",
                pod.namespace,
                name.as_deref().unwrap_or(&pod.name)
            ));
        }
        self.service_by_ip(ip)
            .map(|(ns, name)| format!("{ns}/{name}"))
    }

    /// The pod's workload: a ReplicaSet's Deployment, a Job's CronJob, or the owner itself.
    pub fn workload(&self, pod: &PodMeta) -> Option<Workload> {
        let (direct, parent) = self.owners(pod);
        parent.or(direct)
    }

    /// The pod's controller and, for a ReplicaSet or a Job, the Deployment or CronJob behind
    /// it. Events carry both levels, as Beats writes them: dashboards built on Filebeat's
    /// `kubernetes.replicaset.name` or `job.name` keep working, and a rollout or one run of a
    /// CronJob can be told apart.
    pub fn owners(&self, pod: &PodMeta) -> (Option<Workload>, Option<Workload>) {
        let Some((kind, name)) = pod.owner.as_ref() else {
            return (None, None);
        };
        let parent = if kind == "ReplicaSet" || kind == "Job" {
            self.owners
                .get(&(pod.namespace.clone(), name.clone()))
                .map(|(k, n)| (k.to_ascii_lowercase(), n.clone()))
        } else {
            None
        };
        (Some((kind.to_ascii_lowercase(), name.clone())), parent)
    }
}

/// `containerd://abc` → `abc`.
pub fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map(|(_, rest)| rest).unwrap_or(id)
}

/// Which labels or annotations are kept: `include` (empty: all) minus `exclude`.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl KeyFilter {
    pub fn keeps(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|k| k == key))
            && !self.exclude.iter().any(|k| k == key)
    }

    /// The kept entries as an object, with dots in keys replaced by `_`.
    pub fn apply<'a>(&self, entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Map {
        let mut m = Map::new();
        for (k, v) in entries {
            if self.keeps(k) {
                m.insert(k.replace('.', "_"), Value::String(v.clone()));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, ip: &str, cid: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: name.into(),
            namespace: "shop".into(),
            node: Some("node-a".into()),
            ip: Some(ip.into()),
            ips: vec![ip.into()],
            labels: Map::new(),
            annotations: Map::new(),
            owner: Some(("ReplicaSet".into(), "web-5d4f8b7c9".into())),
            containers: vec![ContainerMeta {
                name: "app".into(),
                image: Some("nginx:1.27".into()),
                id: Some(cid.into()),
            }],
        }
    }

    #[test]
    fn indexes_follow_upserts_deletes_and_grace() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        c.upsert_pod(pod("u1", "web-1", "10.0.0.5", "abc"));
        assert_eq!(c.pod_by_container("containerd://abc").unwrap().uid, "u1");
        assert_eq!(c.pod_by_ip("10.0.0.5").unwrap().uid, "u1");
        assert_eq!(c.pod_by_name("shop", "web-1").unwrap().uid, "u1");
        assert_eq!(
            c.workload(c.pod_by_uid("u1").unwrap()),
            Some(("replicaset".into(), "web-5d4f8b7c9".into()))
        );
        c.set_owner(
            "shop",
            "web-5d4f8b7c9",
            Some(("Deployment".into(), "web".into())),
        );
        assert_eq!(
            c.workload(c.pod_by_uid("u1").unwrap()),
            Some(("deployment".into(), "web".into()))
        );
        assert_eq!(
            c.owners(c.pod_by_uid("u1").unwrap()),
            (
                Some(("replicaset".into(), "web-5d4f8b7c9".into())),
                Some(("deployment".into(), "web".into()))
            )
        );

        c.delete_pod("u1", t0);
        // A new pod takes the IP over while the old one is in its grace period.
        c.upsert_pod(pod("u2", "web-2", "10.0.0.5", "def"));
        c.expire(t0 + Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(c.pod_by_uid("u1").unwrap().name, "web-1");
        assert_eq!(c.pod_by_ip("10.0.0.5").unwrap().uid, "u2");
        c.expire(t0 + Duration::from_secs(6), Duration::from_secs(5));
        assert!(c.pod_by_uid("u1").is_none());
        assert!(c.pod_by_container("abc").is_none());
        assert_eq!(c.pod_by_ip("10.0.0.5").unwrap().uid, "u2");
        assert_eq!(c.pod_count(), 1);
    }

    #[test]
    fn services_and_filters() {
        let mut c = Cache::default();
        c.upsert_service("shop", "web", vec!["10.96.0.10".into()]);
        assert_eq!(
            c.service_by_ip("10.96.0.10"),
            Some(&("shop".into(), "web".into()))
        );
        c.upsert_service("shop", "web", vec!["10.96.0.11".into()]);
        assert!(c.service_by_ip("10.96.0.10").is_none());
        c.delete_service("shop", "web");
        assert_eq!(c.service_count(), 0);

        let f = KeyFilter {
            include: vec![],
            exclude: vec!["secret".into()],
        };
        let labels: Vec<(String, String)> = vec![
            ("app.kubernetes.io/name".into(), "web".into()),
            ("secret".into(), "x".into()),
        ];
        let m = f.apply(labels.iter().map(|(k, v)| (k, v)));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"app_kubernetes_io/name":"web"}"#
        );
    }
}
