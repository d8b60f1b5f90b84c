//! The `kubernetes` processor against a test API server speaking list and watch as the real
//! one does, with the real kube client: log lines labelled from the node's pods, flow IPs
//! resolved, deleted pods kept for late lines, the API going away and coming back, and the
//! Downward API sidecar through the binary.

use crate::support;

use chrono::Utc;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::kube_api::{job, pod, replicaset, service, KubeApi};
use trawl::event::Event;
use trawl::inputs::BuildContext;
use trawl::processors::Processor;
use trawl::telemetry::metrics::Registry;

const CONTAINER_A: &str = "c0ffee00a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c";

fn processor(api: &KubeApi, extra: &str) -> (Box<dyn Processor>, Arc<Registry>) {
    let text = format!(
        "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: kubernetes, node: true, node_name: node-a, api_url: '{}', \
         cleanup_timeout: 2s, max_backoff: 1s, sync_timeout: 5s {extra} }}\noutputs:\n  o: {{ type: stdout }}\n",
        api.url()
    );
    let cfg = trawl::config::parse_str("t.yaml", &text, &|_| None).unwrap();
    let registry = Registry::new();
    let ctx = BuildContext {
        data_dir: std::env::temp_dir(),
        registry: registry.clone(),
        endpoints: Default::default(),
    };
    (
        trawl::processors::build(&cfg.processors[0].spec, &ctx).unwrap(),
        registry,
    )
}

/// An event as the file input makes it from `/var/log/containers/<pod>_<ns>_<container>-<id>.log`.
fn log_line(pod: &str, namespace: &str, container_id: Option<&str>) -> Event {
    let mut e = Event::from_message("app".into(), Utc::now(), "GET /healthz 200".into());
    e.insert("kubernetes.pod.name", pod);
    e.insert("kubernetes.namespace", namespace);
    e.insert("kubernetes.container.name", "app");
    if let Some(id) = container_id {
        e.insert("container.id", id);
    }
    e
}

fn labelled(p: &mut Box<dyn Processor>, mut e: Event) -> Value {
    p.process(&mut e);
    serde_json::to_value(&e.fields).unwrap()
}

/// Polls `cond` every 50 ms until it holds; fails after 20 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(registry: &Registry, name: &str) -> u64 {
    registry
        .render()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cluster() -> KubeApi {
    let api = KubeApi::start();
    api.apply("replicasets", replicaset("web-5d4f8b7c9", "shop", "web"));
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-abcde",
            "shop",
            "uid-a",
            "node-a",
            "10.244.1.5",
            ("ReplicaSet", "web-5d4f8b7c9"),
            CONTAINER_A,
        ),
    );
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-zzzzz",
            "shop",
            "uid-other-node",
            "node-b",
            "10.244.2.9",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "ffff",
        ),
    );
    api.apply(
        "pods",
        pod(
            "backup-29012345-q8x7z",
            "ops",
            "uid-job",
            "node-a",
            "10.244.1.6",
            ("Job", "backup-29012345"),
            "abab",
        ),
    );
    api.apply("services", service("web", "shop", "10.96.12.34"));
    api
}

#[test]
fn node_metadata_for_a_log_line() {
    let api = cluster();
    let (mut p, registry) = processor(&api, "");
    let mut e = Value::Null;
    wait_until("the ReplicaSet's Deployment", || {
        e = labelled(
            &mut p,
            log_line("web-5d4f8b7c9-abcde", "shop", Some(CONTAINER_A)),
        );
        e["kubernetes"]["deployment"]["name"] == "web"
    });
    assert_eq!(
        e["kubernetes"],
        json!({
            "pod": {"name": "web-5d4f8b7c9-abcde", "uid": "uid-a", "ip": "10.244.1.5"},
            "namespace": "shop",
            "container": {"name": "app"},
            "node": {"name": "node-a"},
            "labels": {"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "5d4f8b7c9"},
            "annotations": {"prometheus_io/scrape": "true"},
            "replicaset": {"name": "web-5d4f8b7c9"},
            "deployment": {"name": "web"}
        })
    );
    assert_eq!(
        e["container"]["image"]["name"],
        "registry.example/web:1.4.2"
    );

    // Found by container ID alone (the runtime's scheme is not in log file names).
    let mut by_id = Event::from_message("app".into(), Utc::now(), "x".into());
    by_id.insert("container.id", CONTAINER_A);
    let j = labelled(&mut p, by_id);
    assert_eq!(j["kubernetes"]["pod"]["name"], "web-5d4f8b7c9-abcde");
    assert_eq!(j["kubernetes"]["container"]["name"], "app");

    // A Job's pod names the Job while no CronJob is known to own it, then the CronJob.
    let j = labelled(&mut p, log_line("backup-29012345-q8x7z", "ops", None));
    assert_eq!(j["kubernetes"]["job"]["name"], "backup-29012345");
    api.apply("jobs", job("backup-29012345", "ops", "backup"));
    let mut j = Value::Null;
    wait_until("the Job's CronJob", || {
        j = labelled(&mut p, log_line("backup-29012345-q8x7z", "ops", None));
        j["kubernetes"]["cronjob"]["name"] == "backup"
    });
    // The Job stays named beside its CronJob: one run is told from the next.
    assert_eq!(j["kubernetes"]["job"]["name"], "backup-29012345", "{j}");

    // Pods of other nodes are not watched: the line passes unlabelled and is counted.
    let before = metric(&registry, "trawl_kubernetes_unlabelled_total");
    let j = labelled(&mut p, log_line("web-5d4f8b7c9-zzzzz", "shop", None));
    assert!(j["kubernetes"].get("labels").is_none(), "{j}");
    assert_eq!(
        metric(&registry, "trawl_kubernetes_unlabelled_total"),
        before + 1
    );
    assert_eq!(api.requests("list pods"), 1);
    wait_until("the pod watch", || api.requests("watch pods") >= 1);
}

#[test]
fn ip_resolution_for_a_flow() {
    let api = cluster();
    let (mut p, registry) = processor(&api, "");
    let flow = || {
        let mut e = Event::new("packets".into(), Utc::now());
        e.insert("source.ip", "10.244.1.5");
        e.insert("source.port", 43512i64);
        e.insert("destination.ip", "10.96.12.34");
        e.insert("destination.port", 80i64);
        e.insert("client.ip", "203.0.113.7");
        e
    };
    let mut j = Value::Null;
    wait_until("pods, ReplicaSets and services", || {
        j = labelled(&mut p, flow());
        j["source"]["kubernetes"]["deployment"]["name"] == "web"
            && j["destination"]["kubernetes"]["service"]["name"] == "web"
    });
    assert_eq!(
        j["source"]["kubernetes"],
        json!({"pod": {"name": "web-5d4f8b7c9-abcde", "uid": "uid-a"}, "namespace": "shop", "node": {"name": "node-a"}, "replicaset": {"name": "web-5d4f8b7c9"}, "deployment": {"name": "web"}})
    );
    assert_eq!(
        j["destination"]["kubernetes"],
        json!({"service": {"name": "web"}, "namespace": "shop"})
    );
    assert!(j["client"].get("kubernetes").is_none());
    assert!(metric(&registry, "trawl_kubernetes_unlabelled_total") >= 1);

    // A new pod appears through the watch (no relist).
    api.apply(
        "pods",
        pod(
            "api-7c9-xyz",
            "shop",
            "uid-new",
            "node-a",
            "10.244.1.99",
            ("StatefulSet", "api"),
            "dddd",
        ),
    );
    wait_until("the watched pod", || {
        let mut e = Event::new("packets".into(), Utc::now());
        e.insert("server.ip", "10.244.1.99");
        labelled(&mut p, e)["server"]["kubernetes"]["statefulset"]["name"] == "api"
    });
    assert_eq!(api.requests("list pods"), 1);
}

#[test]
fn a_deleted_pod_still_labels_late_lines() {
    let api = cluster();
    let (mut p, _) = processor(&api, "");
    wait_until("the pod", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-a"
    });

    // The pod is deleted and a new one starts; once the new one is seen, the deletion was too.
    api.delete("pods", "shop", "web-5d4f8b7c9-abcde");
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-fghij",
            "shop",
            "uid-b",
            "node-a",
            "10.244.1.7",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "bbbb",
        ),
    );
    wait_until("the new pod", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-fghij", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-b"
    });
    let late = labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None));
    assert_eq!(
        late["kubernetes"]["pod"]["uid"], "uid-a",
        "a late line of the deleted pod is still labelled: {late}"
    );
    assert_eq!(late["kubernetes"]["labels"]["app"], "web");

    // After the grace period (2 s here) it is forgotten.
    wait_until("the grace period to end", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]
            .get("labels")
            .is_none()
    });
}

#[test]
fn the_api_goes_away_and_comes_back() {
    let mut api = cluster();
    let (mut p, registry) = processor(&api, "");
    wait_until("the pod", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-a"
    });
    let lists = api.requests("list pods");

    api.stop();
    // While away, the cluster changes and its history is compacted: resuming is impossible.
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-later",
            "shop",
            "uid-later",
            "node-a",
            "10.244.1.8",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "cccc",
        ),
    );
    api.compact();
    wait_until("the watch to notice", || {
        metric(&registry, "trawl_kubernetes_watch_errors_total") >= 1
    });
    // Known pods stay labelled from the cache; the new one passes unlabelled, counted.
    assert_eq!(
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"],
        "uid-a"
    );
    let unlabelled = metric(&registry, "trawl_kubernetes_unlabelled_total");
    assert!(
        labelled(&mut p, log_line("web-5d4f8b7c9-later", "shop", None))["kubernetes"]
            .get("labels")
            .is_none()
    );
    assert_eq!(
        metric(&registry, "trawl_kubernetes_unlabelled_total"),
        unlabelled + 1
    );

    api.restart();
    wait_until("the relist", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-later", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-later"
    });
    assert!(api.requests("list pods") > lists);
    assert!(metric(&registry, "trawl_kubernetes_relists_total") >= 1);
}

#[test]
fn an_expired_resource_version_forces_a_relist() {
    let api = cluster();
    let (mut p, registry) = processor(&api, "");
    wait_until("the pod", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-a"
    });
    let lists = api.requests("list pods");
    let watches = api.requests("watch pods");

    // The history is compacted and the watch ends as on a server timeout: the resumed watch
    // gets a 410 Gone ERROR event, and the client lists again.
    api.compact();
    api.close_watches();
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-after",
            "shop",
            "uid-after",
            "node-a",
            "10.244.1.11",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "eeee",
        ),
    );
    wait_until("the relist", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-after", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-after"
    });
    assert!(api.requests("watch pods") > watches);
    assert_eq!(api.requests("list pods"), lists + 1);
    assert!(metric(&registry, "trawl_kubernetes_relists_total") >= 1);
}

#[test]
fn bookmarks_keep_the_resume_point_fresh() {
    let api = cluster();
    let (mut p, _) = processor(&api, "");
    wait_until("the pod", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-a"
    });
    let lists = api.requests("list pods");
    let watches = api.requests("watch pods");
    // Other resources move the version on; the pod watch only hears of it through bookmarks.
    for ip in ["10.96.0.1", "10.96.0.2", "10.96.0.3"] {
        api.apply("services", service("other", "shop", ip));
    }
    let now = api.resource_version();
    wait_until("a bookmark at the current version", || {
        api.bookmarked("pods") >= now
    });
    // History before now is gone: only a client that took the bookmark can resume.
    api.compact_to_current();
    api.close_watches();
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-book",
            "shop",
            "uid-book",
            "node-a",
            "10.244.1.12",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "9999",
        ),
    );
    wait_until("the pod after the resumed watch", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-book", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-book"
    });
    assert!(api.requests("watch pods") > watches);
    assert_eq!(
        api.requests("list pods"),
        lists,
        "resumed from the bookmark's version, without a relist"
    );
}

#[test]
fn a_kubeconfig_file_points_at_the_api() {
    let api = cluster();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: not-checked\n",
            api.url()
        ),
    )
    .unwrap();
    let text = format!(
        "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: kubernetes, node: true, node_name: node-a, kubeconfig: '{}' }}\noutputs:\n  o: {{ type: stdout }}\n",
        kubeconfig.display()
    );
    let cfg = trawl::config::parse_str("t.yaml", &text, &|_| None).unwrap();
    let ctx = BuildContext {
        data_dir: dir.path().to_owned(),
        registry: Registry::new(),
        endpoints: Default::default(),
    };
    let mut p = trawl::processors::build(&cfg.processors[0].spec, &ctx).unwrap();
    wait_until("the pod through the kubeconfig", || {
        labelled(&mut p, log_line("web-5d4f8b7c9-abcde", "shop", None))["kubernetes"]["pod"]["uid"]
            == "uid-a"
    });
}

#[test]
fn sidecar_metadata_from_the_downward_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("labels"),
        "app=\"checkout\"\napp.kubernetes.io/version=\"2.1.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("annotations"), "team=\"payments\"\n").unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: kubernetes, sidecar: true, labels_file: '{0}/labels', annotations_file: '{0}/annotations' }}\n\
             outputs:\n  o: {{ type: stdout }}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&pipeline)
        .env("TRAWL_DATA_DIR", dir.path())
        .env("POD_NAME", "checkout-6b7f9-k2x4p")
        .env("POD_NAMESPACE", "payments")
        .env("POD_IP", "10.244.3.17")
        .env("NODE_NAME", "node-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"order 42 paid\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        e["kubernetes"],
        json!({
            "pod": {"name": "checkout-6b7f9-k2x4p", "ip": "10.244.3.17"},
            "namespace": "payments",
            "node": {"name": "node-c"},
            "labels": {"app": "checkout", "app_kubernetes_io/version": "2.1.0"},
            "annotations": {"team": "payments"}
        })
    );
    assert_eq!(e["message"], "order 42 paid");
}

/// A team asks for its parser with an annotation (`trawl.io/parser: nginx`), as Fluent Bit users
/// do with `fluentbit.io/parser`: the sidecar's lines arrive parsed and typed, through the binary.
#[test]
fn the_pods_parser_annotation_parses_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("labels"), "app=\"shop\"\n").unwrap();
    std::fs::write(
        dir.path().join("annotations"),
        "trawl.io/parser=\"nginx\"\nteam=\"web\"\n",
    )
    .unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: kubernetes, sidecar: true, labels_file: '{0}/labels', annotations_file: '{0}/annotations' }}\n\
             \x20 - {{ type: kubernetes_parser }}\noutputs:\n  o: {{ type: stdout }}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&pipeline)
        .env("TRAWL_DATA_DIR", dir.path())
        .env("POD_NAME", "shop-1")
        .env("POD_NAMESPACE", "web")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            concat!(
                "10.1.0.4 - - [30/Nov/2026:11:00:00 +0000] \"POST /pay HTTP/1.1\" 502 17 \"-\" \"k6/0.50\"\n",
                "a line that is not an access log\n",
            )
            .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["http"]["response"]["status_code"], json!(502));
    assert_eq!(events[0]["http"]["request"]["method"], json!("POST"));
    assert_eq!(events[0]["source"]["address"], json!("10.1.0.4"));
    assert_eq!(
        events[0]["@timestamp"],
        json!("2026-11-30T11:00:00.000000Z")
    );
    assert_eq!(
        events[1]["message"],
        json!("a line that is not an access log")
    );
    assert_eq!(events[1]["tags"], json!(["_apache_parse_failure"]));
}
