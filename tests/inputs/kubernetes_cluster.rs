//! The `kubernetes` processor against a real control plane (kube-apiserver and etcd, RBAC on):
//! trawl as the shipped DaemonSet runs it (in-cluster credentials of the manifest's service
//! account, the manifest's ClusterRole, `node: true` with NODE_NAME) labels a node's container
//! log files with what the API holds, through pod churn and an API server restart.

use crate::support;

use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::kube_cluster::KubeCluster;
use support::process::{free_port, http_get, wait_until};

const NS: &str = "shop";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A container id as containerd reports it (64 hex digits), different per `seed`.
fn container_id(seed: u8) -> String {
    format!("{:02x}", seed).repeat(32)
}

/// A pod on `node`, owned by `owner` (kind, name, uid), with one container `app`; then its
/// status as the kubelet would write it once the container runs. Returns the pod's uid.
fn run_pod(
    c: &KubeCluster,
    name: &str,
    node: &str,
    ip: &str,
    owner: (&str, &str, &str),
    labels: Value,
    id: &str,
) -> String {
    let (api_version, kind) = match owner.0 {
        "Job" => ("batch/v1", "Job"),
        other => ("apps/v1", other),
    };
    let pod = c.create(
        &format!("/api/v1/namespaces/{NS}/pods"),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "labels": labels,
                "annotations": {"prometheus.io/scrape": "true"},
                "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": owner.1,
                                     "uid": owner.2, "controller": true}]
            },
            "spec": {"nodeName": node, "restartPolicy": if kind == "Job" { "Never" } else { "Always" },
                     "containers": [{"name": "app", "image": "registry.example/web:1.4.2"}]}
        }),
    );
    c.patch(
        &format!("/api/v1/namespaces/{NS}/pods/{name}/status"),
        json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.10",
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0,
                "image": "registry.example/web:1.4.2",
                "imageID": "registry.example/web@sha256:".to_owned() + &"ab".repeat(32),
                "containerID": format!("containerd://{id}"),
                "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}
            }]
        }}),
    );
    pod["metadata"]["uid"].as_str().expect("a uid").to_owned()
}

/// kubelet's layout under `root`: `pods/<ns>_<pod>_<uid>/app/0.log` and its link
/// `containers/<pod>_<ns>_app-<id>.log`. Returns the log file.
fn pod_log(root: &Path, pod: &str, uid: &str, id: &str) -> PathBuf {
    let dir = root.join(format!("pods/{NS}_{pod}_{uid}/app"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join("containers")).unwrap();
    let log = dir.join("0.log");
    std::fs::write(&log, "").unwrap();
    std::os::unix::fs::symlink(
        format!("../pods/{NS}_{pod}_{uid}/app/0.log"),
        root.join(format!("containers/{pod}_{NS}_app-{id}.log")),
    )
    .unwrap();
    log
}

fn write_line(log: &Path, text: &str) {
    support::process::append(
        log,
        &format!("2026-12-07T10:00:01.000000000Z stdout F {text}\n"),
    );
}

/// trawl run as the DaemonSet runs it: the service account's files at the in-cluster path
/// (a mount namespace of its own, with /run on a tmpfs, so the host's is left alone),
/// KUBERNETES_SERVICE_HOST/PORT and NODE_NAME in the environment, no kubeconfig.
struct Agent {
    child: Child,
    out: PathBuf,
    log: PathBuf,
    addr: String,
}

impl Agent {
    /// In the cluster: the service account's files at the in-cluster path.
    fn start(c: &KubeCluster, dir: &Path, account: &str, pipeline_processor: &str) -> Agent {
        let sa = dir.join(format!("sa-{account}"));
        c.service_account_files(&sa, "kube-system", account);
        let script = "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount \
                      && cp \"$SA\"/* /run/secrets/kubernetes.io/serviceaccount/ && exec \"$TRAWL\" run -c \"$CFG\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", script])
            .env("SA", &sa)
            .env("TRAWL", env!("CARGO_BIN_EXE_trawl"))
            .env("NODE_NAME", "node-a")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", c.port.to_string());
        Agent::spawn(cmd, dir, account, pipeline_processor)
    }

    /// Outside the cluster (a systemd service, a laptop): what the processor's `kubeconfig:`
    /// names, and no in-cluster environment.
    fn start_outside(dir: &Path, name: &str, pipeline_processor: &str) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trawl"));
        cmd.args(["run", "-c"])
            .arg(dir.join(format!("pipeline-{name}.yaml")))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("NODE_NAME");
        Agent::spawn(cmd, dir, name, pipeline_processor)
    }

    /// Writes the pipeline (the node's container logs through `pipeline_processor` to stdout)
    /// and runs `cmd`, which runs trawl on it (`CFG` in its environment).
    fn spawn(mut cmd: Command, dir: &Path, name: &str, pipeline_processor: &str) -> Agent {
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.join(format!("pipeline-{name}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "data_dir: {d}/data-{name}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  containers:\n    \
                 type: file\n    paths: [\"{d}/log/containers/*.log\"]\nprocessors:\n  - {pipeline_processor}\n\
                 outputs:\n  out: {{ type: stdout }}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let out = dir.join(format!("events-{name}.jsonl"));
        let log = dir.join(format!("trawl-{name}.log"));
        let child = cmd
            .env("CFG", &cfg)
            .env("HOME", dir)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting trawl");
        Agent {
            child,
            out,
            log,
            addr,
        }
    }

    fn events(&self) -> Vec<Value> {
        support::process::read_json_lines(&self.out)
    }

    /// The event of the line `text`, once delivered.
    fn event(&self, text: &str, secs: u64) -> Value {
        let mut found = None;
        wait_until(
            Duration::from_secs(secs),
            &format!("the line {text:?}"),
            || {
                found = self.events().into_iter().find(|e| e["message"] == text);
                found.is_some()
            },
        );
        found.unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(&self.addr, "/metrics")?;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a line of a Deployment's pod must carry; `uid` and `ip` of that pod.
fn assert_web_pod(e: &Value, pod: &str, uid: &str, ip: &str) {
    let k = &e["kubernetes"];
    assert_eq!(k["pod"], json!({"name": pod, "uid": uid, "ip": ip}), "{e}");
    assert_eq!(k["namespace"], NS, "{e}");
    assert_eq!(k["node"]["name"], "node-a", "{e}");
    assert_eq!(k["container"]["name"], "app", "{e}");
    assert_eq!(k["labels"]["app"], "web", "{e}");
    assert_eq!(k["annotations"]["prometheus_io/scrape"], "true", "{e}");
    assert_eq!(k["deployment"]["name"], "web", "{e}");
    // Both levels, as Filebeat writes them: the ReplicaSet the pod names and its Deployment.
    assert_eq!(k["replicaset"]["name"], "web-5d4f8b7c9", "{e}");
    assert_eq!(
        e["container"]["image"]["name"], "registry.example/web:1.4.2",
        "{e}"
    );
}

#[test]
fn the_daemonset_labels_its_nodes_logs_from_a_real_api_server() {
    let mut c = KubeCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("log");

    // The shipped manifest's account, role and binding, as `kubectl apply` makes them.
    let made =
        c.apply_rbac(&std::fs::read_to_string(repo("docker/kubernetes/daemonset.yaml")).unwrap());
    for want in [
        "ServiceAccount/trawl",
        "ClusterRole/trawl",
        "ClusterRoleBinding/trawl",
    ] {
        assert!(
            made.iter().any(|m| m == want),
            "{want} not in the manifest: {made:?}"
        );
    }

    // A Deployment's ReplicaSet with a pod on this node and one on another; a CronJob's Job
    // with a pod here.
    c.create("/api/v1/namespaces", json!({"metadata": {"name": NS}}));
    let template = json!({"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.4.2"}]}});
    let deploy = c.create(
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    );
    let rs = c.create(
        &format!("/apis/apps/v1/namespaces/{NS}/replicasets"),
        json!({"metadata": {"name": "web-5d4f8b7c9", "labels": {"app": "web", "pod-template-hash": "5d4f8b7c9"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                 "uid": deploy["metadata"]["uid"], "controller": true}]},
               "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f8b7c9"}},
                        "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d4f8b7c9"}},
                                     "spec": template["spec"]}}}),
    );
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_owned();
    let web_labels = json!({"app": "web", "pod-template-hash": "5d4f8b7c9"});
    let job_spec = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "app", "image": "registry.example/backup:2"}]}}});
    let cron = c.create(
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs"),
        json!({"metadata": {"name": "backup"},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job_spec}}}),
    );
    let job = c.create(
        &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
        json!({"metadata": {"name": "backup-29012345",
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup",
                                                 "uid": cron["metadata"]["uid"], "controller": true}]},
               "spec": job_spec}),
    );
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_owned();

    let (id_a, id_b, id_j) = (container_id(0xa1), container_id(0xb2), container_id(0xc3));
    let uid_a = run_pod(
        &c,
        "web-5d4f8b7c9-abcde",
        "node-a",
        "10.244.1.5",
        ("ReplicaSet", "web-5d4f8b7c9", &rs_uid),
        web_labels.clone(),
        &id_a,
    );
    run_pod(
        &c,
        "web-5d4f8b7c9-zzzzz",
        "node-b",
        "10.244.2.9",
        ("ReplicaSet", "web-5d4f8b7c9", &rs_uid),
        web_labels.clone(),
        &id_b,
    );
    let uid_j = run_pod(
        &c,
        "backup-29012345-q8x7z",
        "node-a",
        "10.244.1.6",
        ("Job", "backup-29012345", &job_uid),
        json!({"job-name": "backup-29012345"}),
        &id_j,
    );
    let log_a = pod_log(&root, "web-5d4f8b7c9-abcde", &uid_a, &id_a);
    let log_j = pod_log(&root, "backup-29012345-q8x7z", &uid_j, &id_j);
    write_line(&log_a, "a-1");
    write_line(&log_j, "j-1");

    // The shipped pipeline's processor, as it is there.
    let agent = Agent::start(&c, d, "trawl", "{ type: kubernetes, node: true }");

    // The lines read at start are labelled: the processor waits for its first list.
    let e = agent.event("a-1", 60);
    assert_web_pod(&e, "web-5d4f8b7c9-abcde", &uid_a, "10.244.1.5");
    let j = agent.event("j-1", 30);
    // The workload is the CronJob, found through the Job's owner (a metadata-only watch).
    assert_eq!(j["kubernetes"]["cronjob"]["name"], "backup", "{j}");
    assert_eq!(j["kubernetes"]["job"]["name"], "backup-29012345", "{j}");
    assert_eq!(j["kubernetes"]["pod"]["uid"], uid_j.as_str(), "{j}");
    // Only this node's pods are held (the other node's was filtered by the API).
    wait_until(Duration::from_secs(10), "the cached pods metric", || {
        agent.metric("trawl_kubernetes_cached_pods") == Some(2.0)
    });

    // The pod is replaced (a rollout): its late lines keep its labels, the new pod's lines
    // carry the new pod's, learnt through the watch.
    c.delete(&format!("/api/v1/namespaces/{NS}/pods/web-5d4f8b7c9-abcde"));
    let id_a2 = container_id(0xa2);
    let uid_a2 = run_pod(
        &c,
        "web-5d4f8b7c9-fghij",
        "node-a",
        "10.244.1.7",
        ("ReplicaSet", "web-5d4f8b7c9", &rs_uid),
        web_labels.clone(),
        &id_a2,
    );
    let log_a2 = pod_log(&root, "web-5d4f8b7c9-fghij", &uid_a2, &id_a2);
    write_line(&log_a2, "a2-1");
    let e = agent.event("a2-1", 30);
    assert_web_pod(&e, "web-5d4f8b7c9-fghij", &uid_a2, "10.244.1.7");
    write_line(&log_a, "a-late");
    let e = agent.event("a-late", 30);
    assert_web_pod(&e, "web-5d4f8b7c9-abcde", &uid_a, "10.244.1.5");

    // The API server restarts (a control-plane upgrade): lines meanwhile are labelled from
    // what trawl holds, and a pod started after it is back is learnt.
    c.stop_apiserver();
    write_line(&log_a2, "a2-during");
    let e = agent.event("a2-during", 30);
    assert_web_pod(&e, "web-5d4f8b7c9-fghij", &uid_a2, "10.244.1.7");
    let down = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the watch to notice the API server gone",
        || {
            agent
                .metric("trawl_kubernetes_watch_errors_total")
                .unwrap_or(0.0)
                >= 1.0
        },
    );
    c.start_apiserver();
    let id_a3 = container_id(0xa3);
    let uid_a3 = run_pod(
        &c,
        "web-5d4f8b7c9-klmno",
        "node-a",
        "10.244.1.8",
        ("ReplicaSet", "web-5d4f8b7c9", &rs_uid),
        web_labels,
        &id_a3,
    );
    let log_a3 = pod_log(&root, "web-5d4f8b7c9-klmno", &uid_a3, &id_a3);
    // Written until a line of it is labelled: lines before the watch is back pass unlabelled.
    let start = Instant::now();
    let mut n = 0;
    let labelled = loop {
        n += 1;
        let text = format!("a3-{n}");
        write_line(&log_a3, &text);
        let e = agent.event(&text, 30);
        if e["kubernetes"]["pod"]["uid"] == uid_a3.as_str() {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "a pod started after the API server came back is still unknown after {:?}: {e}\n{}",
            start.elapsed(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_web_pod(&labelled, "web-5d4f8b7c9-klmno", &uid_a3, "10.244.1.8");
    eprintln!(
        "API server down to a new pod labelled: {:?} ({n} lines written)",
        down.elapsed()
    );

    // Every line written went out exactly once, the outage and the rollout included.
    let mut written: Vec<String> = ["a-1", "j-1", "a2-1", "a-late", "a2-during"]
        .map(String::from)
        .into();
    written.extend((1..=n).map(|i| format!("a3-{i}")));
    written.sort();
    let mut sent: Vec<String> = agent
        .events()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    sent.sort();
    assert_eq!(sent, written);

    let log = agent.log();
    assert!(!log.contains(" ERROR "), "{log}");
    assert!(!log.contains("Forbidden"), "{log}");
    // The outage is told once per watch, with its cause.
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("resource=\"pods\"")
            && l.contains("(os error")),
        "{log}"
    );
}

#[test]
fn an_account_the_api_forbids_is_told_and_its_lines_still_pass() {
    let c = KubeCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The manifest's account without its ClusterRoleBinding: a common slip when installing.
    c.create(
        "/api/v1/namespaces/kube-system/serviceaccounts",
        json!({"metadata": {"name": "trawl-unbound"}}),
    );
    let id = container_id(0x5e);
    let log = pod_log(&d.join("log"), "web-1", "0000-uid", &id);
    write_line(&log, "forbidden-1");
    let agent = Agent::start(&c, d, "trawl-unbound", "{ type: kubernetes, node: true }");
    let e = agent.event("forbidden-1", 60);
    assert!(e["kubernetes"].get("labels").is_none(), "{e}");
    assert_eq!(
        e["kubernetes"]["pod"]["name"], "web-1",
        "the file's own fields stay: {e}"
    );
    wait_until(Duration::from_secs(10), "the unlabelled count", || {
        agent
            .metric("trawl_kubernetes_unlabelled_total")
            .unwrap_or(0.0)
            >= 1.0
    });
    let text = agent.log();
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("resource=\"pods\""))
        .unwrap_or_else(|| panic!("no warning naming pods:\n{text}"));
    for what in [
        "403 Forbidden",
        "system:serviceaccount:kube-system:trawl-unbound",
        "ClusterRoleBinding",
    ] {
        assert!(
            warning.contains(what),
            "the warning says {what:?}: {warning}"
        );
    }
    assert!(
        !warning.contains("ListMeta"),
        "the API's words, not a debug dump: {warning}"
    );
    // The start waited for the first lists, then said which never came.
    assert!(
        text.lines().any(|l| l.contains("not every first list")
            && l.contains("pods, services, replicasets, jobs")),
        "{text}"
    );
}

#[test]
fn a_kubeconfig_with_a_token_and_the_clusters_ca_reaches_the_real_api() {
    let c = KubeCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    c.apply_rbac(&std::fs::read_to_string(repo("docker/kubernetes/daemonset.yaml")).unwrap());
    c.create("/api/v1/namespaces", json!({"metadata": {"name": NS}}));
    let id = container_id(0xd4);
    let uid = run_pod(
        &c,
        "db-0",
        "node-a",
        "10.244.1.20",
        ("StatefulSet", "db", "5f0c3a52-8d6e-4c1b-9f0e-2b7d0f4e9a11"),
        json!({"app": "db"}),
        &id,
    );
    let log = pod_log(&d.join("log"), "db-0", &uid, &id);
    write_line(&log, "db-1");
    // As `kubectl config view --raw --minify` gives it: the server, its CA inline, a token.
    let kubeconfig = d.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\nusers:\n- name: trawl\n  user:\n    token: {}\ncontexts:\n\
             - name: test\n  context: {{ cluster: test, user: trawl }}\ncurrent-context: test\n",
            c.url(),
            base64::engine::general_purpose::STANDARD.encode(c.ca_pem()),
            c.token("kube-system", "trawl"),
        ),
    )
    .unwrap();
    let agent = Agent::start_outside(
        d,
        "outside",
        &format!(
            "{{ type: kubernetes, node: true, node_name: node-a, kubeconfig: '{}' }}",
            kubeconfig.display()
        ),
    );
    let e = agent.event("db-1", 60);
    assert_eq!(e["kubernetes"]["pod"]["uid"], uid.as_str(), "{e}");
    assert_eq!(e["kubernetes"]["statefulset"]["name"], "db", "{e}");
    assert_eq!(e["kubernetes"]["labels"]["app"], "db", "{e}");
    let text = agent.log();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("kubernetes") && (l.contains("WARN") || l.contains("ERROR"))),
        "{text}"
    );
}
