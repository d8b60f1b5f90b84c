//! A Kubernetes API server for tests: serves list and watch of pods, services, ReplicaSets and
//! Jobs as the real one does (resourceVersion, paginated lists, chunked watch streams of
//! WatchEvents with BOOKMARKs, `410 Gone` for compacted versions, metadata-only responses), and
//! can be stopped and started again on the same port to play the API going away.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The resources served, as (plural, URL path, kind, apiVersion).
const RESOURCES: [(&str, &str, &str, &str); 4] = [
    ("pods", "/api/v1/pods", "Pod", "v1"),
    ("services", "/api/v1/services", "Service", "v1"),
    (
        "replicasets",
        "/apis/apps/v1/replicasets",
        "ReplicaSet",
        "apps/v1",
    ),
    ("jobs", "/apis/batch/v1/jobs", "Job", "batch/v1"),
];

#[derive(Default)]
struct State {
    rv: u64,
    /// (resource, namespace, name) → object (without kind/apiVersion, as list items are).
    objects: BTreeMap<(String, String, String), Value>,
    /// Every change: (resourceVersion, resource, event type, object).
    log: Vec<(u64, String, &'static str, Value)>,
    /// Watches from a version older than this get `410 Gone`.
    oldest: u64,
    /// Requests served, as `list pods` / `watch pods`.
    requests: Vec<String>,
    /// Bumped to end every open watch stream, as the API server's timeout does.
    close_generation: u64,
    /// The newest version sent in a BOOKMARK, per resource.
    bookmarked: BTreeMap<String, u64>,
}

pub struct KubeApi {
    port: u16,
    state: Arc<Mutex<State>>,
    changes: tokio::sync::watch::Sender<u64>,
    rt: tokio::runtime::Runtime,
    listener: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (changes, _) = tokio::sync::watch::channel(0);
        let mut api = KubeApi {
            port,
            state: Arc::new(Mutex::new(State {
                rv: 100,
                oldest: 0,
                ..State::default()
            })),
            changes,
            rt,
            listener: None,
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        api.serve(listener);
        api
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        let changes = self.changes.clone();
        let conns = self.connections.clone();
        self.listener = Some(self.rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let h = tokio::spawn(connection(sock, state.clone(), changes.subscribe()));
                conns.lock().unwrap().push(h);
            }
        }));
    }

    /// Closes the listener and every open connection: the API is gone.
    pub fn stop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
        // Let the aborted tasks drop their sockets.
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }

    /// Serves again on the same port.
    pub fn restart(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let listener = self.rt.block_on(async {
            loop {
                match TcpListener::bind(&addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        self.serve(listener);
    }

    /// Adds or replaces an object (`resource`: `pods`, `services`, `replicasets`, `jobs`).
    pub fn apply(&self, resource: &str, mut object: Value) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(resource, &object);
        let kind = if s.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.objects.insert(key, object.clone());
        s.log.push((rv, resource.to_owned(), kind, object));
        drop(s);
        self.changes.send_replace(rv);
    }

    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let Some(mut object) =
            s.objects
                .remove(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        s.log.push((rv, resource.to_owned(), "DELETED", object));
        drop(s);
        self.changes.send_replace(rv);
    }

    /// Forgets the history up to now, as etcd compaction does after other writes have moved
    /// the revision on: a watch from any version seen so far gets `410 Gone`.
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        s.oldest = s.rv;
        s.log.clear();
    }

    /// Forgets the history before the current version only: clients that kept up, if only
    /// through bookmarks, can still resume.
    pub fn compact_to_current(&self) {
        let mut s = self.state.lock().unwrap();
        s.oldest = s.rv;
        s.log.clear();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    /// The newest version a BOOKMARK of `resource` carried.
    pub fn bookmarked(&self, resource: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .bookmarked
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    /// Ends every open watch stream cleanly (clients resume from their last version).
    pub fn close_watches(&self) {
        let rv = {
            let mut s = self.state.lock().unwrap();
            s.close_generation += 1;
            s.rv
        };
        self.changes.send_replace(rv);
    }

    /// How many requests matched `what` (`list pods`, `watch pods`).
    pub fn requests(&self, what: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.as_str() == what)
            .count()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key_of(resource: &str, o: &Value) -> (String, String, String) {
    let md = &o["metadata"];
    (
        resource.to_owned(),
        md["namespace"].as_str().unwrap_or_default().to_owned(),
        md["name"].as_str().unwrap_or_default().to_owned(),
    )
}

struct Request {
    path: String,
    query: BTreeMap<String, String>,
    metadata_only: bool,
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let target = req.path.unwrap_or("/").to_owned();
            let metadata_only = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("accept")
                    && String::from_utf8_lossy(h.value).contains("as=PartialObjectMetadata")
            });
            buf.drain(..n);
            let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
            let query = qs
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                .collect();
            return Some(Request {
                path: path.to_owned(),
                query,
                metadata_only,
            });
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `spec.nodeName=node-a` (the only field selector trawl uses).
fn selected(query: &BTreeMap<String, String>, o: &Value) -> bool {
    match query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
    {
        Some(node) => o["spec"]["nodeName"].as_str() == Some(node),
        None => true,
    }
}

/// The object as a response shows it: with kind and apiVersion, or as PartialObjectMetadata.
fn shaped(o: &Value, kind: &str, api_version: &str, metadata_only: bool, with_type: bool) -> Value {
    if metadata_only {
        return json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
    }
    let mut o = o.clone();
    if with_type {
        o["kind"] = json!(kind);
        o["apiVersion"] = json!(api_version);
    }
    o
}

async fn connection(
    mut sock: TcpStream,
    state: Arc<Mutex<State>>,
    mut changes: tokio::sync::watch::Receiver<u64>,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let Some(&(resource, _, kind, api_version)) = RESOURCES.iter().find(|r| r.1 == req.path)
        else {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}).to_string();
            let head = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            if sock
                .write_all(format!("{head}{body}").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let watch = matches!(
            req.query.get("watch").map(String::as_str),
            Some("true" | "1")
        );
        if !watch {
            let body = list(&state, resource, kind, api_version, &req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if sock
                .write_all(format!("{head}{body}").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        if watch_stream(
            &mut sock,
            &state,
            &mut changes,
            resource,
            kind,
            api_version,
            &req,
        )
        .await
        .is_err()
        {
            return;
        }
    }
}

fn list(
    state: &Mutex<State>,
    resource: &str,
    kind: &str,
    api_version: &str,
    req: &Request,
) -> String {
    let mut s = state.lock().unwrap();
    s.requests.push(format!("list {resource}"));
    let all: Vec<Value> = s
        .objects
        .iter()
        .filter(|((r, _, _), o)| r == resource && selected(&req.query, o))
        .map(|(_, o)| shaped(o, kind, api_version, req.metadata_only, req.metadata_only))
        .collect();
    // Pagination: `continue` is the offset of the next page.
    let start: usize = req
        .query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = req
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let mut metadata = json!({"resourceVersion": s.rv.to_string()});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(all.len() - end);
    }
    let list_kind = if req.metadata_only {
        "PartialObjectMetadataList".to_owned()
    } else {
        format!("{kind}List")
    };
    let list_api = if req.metadata_only {
        "meta.k8s.io/v1"
    } else {
        api_version
    };
    json!({"kind": list_kind, "apiVersion": list_api, "metadata": metadata, "items": all[start.min(end)..end]}).to_string()
}

async fn chunk(sock: &mut TcpStream, line: &str) -> std::io::Result<()> {
    let data = format!("{line}\n");
    sock.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await
}

async fn watch_stream(
    sock: &mut TcpStream,
    state: &Mutex<State>,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    resource: &str,
    kind: &str,
    api_version: &str,
    req: &Request,
) -> std::io::Result<()> {
    let mut from: u64 = req
        .query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = req.query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = Duration::from_secs(
        req.query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800),
    );
    let (gone, generation) = {
        let mut s = state.lock().unwrap();
        s.requests.push(format!("watch {resource}"));
        (from < s.oldest, s.close_generation)
    };
    sock.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    if gone {
        let status = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410}});
        chunk(sock, &status.to_string()).await?;
        return sock.write_all(b"0\r\n\r\n").await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bookmark_tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        let closed = state.lock().unwrap().close_generation != generation;
        if closed {
            return sock.write_all(b"0\r\n\r\n").await;
        }
        let (events, rv) = {
            let s = state.lock().unwrap();
            let events: Vec<(u64, &'static str, Value)> = s
                .log
                .iter()
                .filter(|(v, r, _, o)| *v > from && r == resource && selected(&req.query, o))
                .map(|(v, _, t, o)| {
                    (
                        *v,
                        *t,
                        shaped(o, kind, api_version, req.metadata_only, true),
                    )
                })
                .collect();
            (events, s.rv)
        };
        for (v, t, o) in events {
            chunk(sock, &json!({"type": t, "object": o}).to_string()).await?;
            from = v;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = bookmark_tick.tick() => {
                if bookmarks {
                    let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}}});
                    chunk(sock, &b.to_string()).await?;
                    from = from.max(rv);
                    let mut s = state.lock().unwrap();
                    let seen = s.bookmarked.entry(resource.to_owned()).or_default();
                    *seen = (*seen).max(rv);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return sock.write_all(b"0\r\n\r\n").await,
        }
    }
}

/// A pod as the API server returns it, owned by `owner` (kind, name), with one container.
pub fn pod(
    name: &str,
    namespace: &str,
    uid: &str,
    node: &str,
    ip: &str,
    owner: (&str, &str),
    container_id: &str,
) -> Value {
    json!({
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid,
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "labels": {"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "5d4f8b7c9"},
            "annotations": {"prometheus.io/scrape": "true", "kubectl.kubernetes.io/last-applied-configuration": "{\"big\":true}"},
            "ownerReferences": [{"apiVersion": if owner.0 == "ReplicaSet" { "apps/v1" } else { "batch/v1" }, "kind": owner.0, "name": owner.1,
                "uid": format!("{uid}-owner"), "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
            "containers": [{"name": "app", "image": "registry.example/web:1.4.2", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {}, "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}]
        },
        "status": {
            "phase": "Running", "hostIP": "192.168.1.10", "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": "2026-11-23T10:00:01Z",
            "containerStatuses": [{"name": "app", "image": "registry.example/web:1.4.2", "imageID": "registry.example/web@sha256:0123",
                "containerID": format!("containerd://{container_id}"), "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": "2026-11-23T10:00:02Z"}}}]
        }
    })
}

pub fn replicaset(name: &str, namespace: &str, deployment: &str) -> Value {
    json!({
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("rs-{name}"),
            "labels": {"app": "web", "pod-template-hash": "5d4f8b7c9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": format!("dep-{deployment}"),
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.4.2"}]}}},
        "status": {"replicas": 2, "readyReplicas": 2}
    })
}

pub fn service(name: &str, namespace: &str, cluster_ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("svc-{name}")},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}}
    })
}

pub fn job(name: &str, namespace: &str, cronjob: &str) -> Value {
    json!({
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("job-{name}"),
            "labels": {"batch.kubernetes.io/job-name": name},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob, "uid": format!("cj-{cronjob}"),
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "backup", "image": "registry.example/backup:3"}]}}},
        "status": {"active": 1, "startTime": "2026-11-23T10:00:00Z"}
    })
}
