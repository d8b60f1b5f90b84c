//! The trawl containers of docker/kubernetes/ run in the image as the manifests declare them:
//! each container's user, groups, capabilities, no_new_privs, read-only root, mounts, env and
//! command rendered into a `podman run` (runc), with the capability sets containerd gives a
//! non-root container (no ambient ones). No Kubernetes cluster runs here: the kubelet's part
//! (hostPath folders as a node has them, emptyDirs, the ConfigMap's files) is made by the test.
//! Skipped like tests/packaging/image.rs where the image cannot be built.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::image::{enabled, image, output_within, podman, root, run_args};
use support::process::{read_json_lines, wait_until};
use yaml_rust2::{Yaml, YamlLoader};

const DEADLINE: Duration = Duration::from_secs(180);
const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_NET_RAW: u64 = 1 << 13;

fn documents(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(root().join(file)).expect("manifest is readable");
    YamlLoader::load_from_str(&text).expect("manifest is YAML")
}

fn pod_spec<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let d = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the manifest"));
    &d["spec"]["template"]["spec"]
}

fn container<'a>(pod: &'a Yaml, list: &str, name: &str) -> &'a Yaml {
    pod[list]
        .as_vec()
        .and_then(|v| v.iter().find(|c| c["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(Yaml::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// What the kubelet gives a container besides the manifest: each volume's folder on the node
/// and the values of `valueFrom` env entries (downward API, Secrets).
struct Kubelet<'a> {
    volumes: &'a BTreeMap<String, PathBuf>,
    env: &'a [(&'a str, &'a str)],
}

/// The `podman run` options and command of container `c` of `pod`, as containerd would run it.
fn render(pod: &Yaml, c: &Yaml, kubelet: &Kubelet, extra_mounts: &[String]) -> Vec<String> {
    let pod_sc = &pod["securityContext"];
    let sc = &c["securityContext"];
    let mut a: Vec<String> = Vec::new();
    let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
    let gid = sc["runAsGroup"].as_i64().or(pod_sc["runAsGroup"].as_i64());
    if sc["runAsNonRoot"].as_bool() == Some(true) {
        // The kubelet refuses to start it otherwise (the image's user is a name, not a uid).
        assert!(
            uid.is_some_and(|u| u != 0),
            "runAsNonRoot without a non-zero runAsUser"
        );
    }
    match (uid, gid) {
        (Some(u), Some(g)) => a.extend(["--user".into(), format!("{u}:{g}")]),
        (Some(u), None) => a.extend(["--user".into(), u.to_string()]),
        _ => {}
    }
    if let Some(g) = pod_sc["fsGroup"].as_i64() {
        a.extend(["--group-add".into(), g.to_string()]);
    }
    for cap in strs(&sc["capabilities"]["drop"]) {
        a.extend(["--cap-drop".into(), cap]);
    }
    for cap in strs(&sc["capabilities"]["add"]) {
        a.extend(["--cap-add".into(), cap]);
    }
    if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
        a.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        // podman would otherwise add tmpfs on /tmp, /run and /var/tmp, which Kubernetes does not.
        a.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    for m in c["volumeMounts"].as_vec().into_iter().flatten() {
        let name = m["name"].as_str().expect("volume name");
        let on_node = kubelet
            .volumes
            .get(name)
            .unwrap_or_else(|| panic!("the test gives no folder for volume {name}"));
        let ro = if m["readOnly"].as_bool() == Some(true) {
            ":ro"
        } else {
            ""
        };
        let at = m["mountPath"].as_str().expect("mountPath");
        a.extend(["-v".into(), format!("{}:{at}{ro}", on_node.display())]);
    }
    a.extend(extra_mounts.iter().cloned());
    for e in c["env"].as_vec().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name");
        let value = match e["value"].as_str() {
            Some(v) => v.to_owned(),
            None => kubelet
                .env
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| panic!("the test gives no value for env {name}")),
        };
        a.extend(["-e".into(), format!("{name}={value}")]);
    }
    // containerd gives a non-root container its added capabilities as bounding, permitted and
    // effective, never ambient (Kubernetes has no ambient capabilities); podman also makes them
    // ambient, which would hide whether the binary's file capabilities work. setpriv drops the
    // ambient and inheritable sets before the container's command runs.
    let command = match c["command"].as_vec() {
        Some(_) => strs(&c["command"]),
        None => image_entrypoint(),
    };
    let mut entry = vec![
        "setpriv".to_owned(),
        "--inh-caps".into(),
        "-all".into(),
        "--ambient-caps".into(),
        "-all".into(),
        "--".into(),
    ];
    entry.extend(command);
    a.extend([
        "--entrypoint".into(),
        serde_json::to_string(&entry).expect("json"),
    ]);
    a.push(image().to_owned());
    a.extend(strs(&c["args"]));
    a
}

/// run_args' options (runc, limits), with or without `--rm`, in network `network`.
fn base_args(rm: bool, network: &str) -> Vec<String> {
    let mut a = run_args(&[]);
    if !rm {
        a.retain(|x| x != "--rm");
    }
    let at = a
        .iter()
        .position(|x| x == "--network")
        .expect("run_args names a network");
    a[at + 1] = network.to_owned();
    a
}

fn image_entrypoint() -> Vec<String> {
    let mut c = podman();
    c.args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        image(),
    ]);
    let out = output_within(c, None, Duration::from_secs(120));
    serde_json::from_slice(&out.stdout).expect("the image's entrypoint")
}

/// A container started in the background, removed (killed if need be) when dropped.
struct Running(String);

impl Running {
    fn start(name: String, options: &[String]) -> Running {
        let mut c = podman();
        // Without run_args' `--rm`, which would take the exit code with the container.
        c.args(base_args(false, "none"))
            .args(["-d", "--name", &name])
            .args(options);
        let out = output_within(c, None, Duration::from_secs(300));
        let running = Running(name);
        assert!(out.status.success(), "podman run: {}", text(&out.stderr));
        running
    }

    fn podman(&self, args: &[&str]) -> Output {
        let mut c = podman();
        c.args(args);
        output_within(c, None, Duration::from_secs(300))
    }

    fn logs(&self) -> String {
        let out = self.podman(&["logs", &self.0]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// Waits until the container's output holds `text`; fails with that output.
    fn wait_for_log(&self, text: &str) {
        let start = std::time::Instant::now();
        loop {
            let logs = self.logs();
            if logs.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not log {text:?} within {DEADLINE:?}:\n{logs}",
                self.0
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn exec(&self, script: &str) -> String {
        let out = self.podman(&["exec", &self.0, "bash", "-c", script]);
        assert!(
            out.status.success(),
            "podman exec: {}{}",
            text(&out.stderr),
            self.logs()
        );
        text(&out.stdout)
    }

    /// SIGTERM, up to 30 s of drain, and the exit code.
    fn stop(&self) -> i64 {
        self.podman(&["stop", "-t", "30", &self.0]);
        let out = self.podman(&["inspect", "--format", "{{.State.ExitCode}}", &self.0]);
        text(&out.stdout).trim().parse().expect("an exit code")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A capability line of /proc/PID/status.
fn cap(status: &str, line: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
        .unwrap_or_else(|| panic!("no {line} in {status}"))
}

/// HTTP requests to trawl's own monitoring port over the container's loopback, which trawl
/// captures; then the status of trawl (PID 1) and of each of its threads.
const PROBE_AND_STATUS: &str = r#"
for i in 1 2 3; do
  exec 3<>/dev/tcp/127.0.0.1/5067
  printf 'GET /health?probe=%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$i" >&3
  timeout 10 cat <&3 > /dev/null; exec 3<&-
done
cat /proc/1/status
echo '--- threads'
cat /proc/1/task/*/status | grep '^CapEff'
"#;

fn mkdir(p: &Path, mode: u32) {
    std::fs::create_dir_all(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn docker_line(msg: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"log": format!("{msg}\n"), "stream": "stdout", "time": "2026-11-30T22:00:00.000000000Z"})
    )
}

/// The probes and lines of `out.jsonl` in the state folder.
fn shipped(path: &Path) -> (Vec<String>, Vec<String>) {
    let events = if path.exists() {
        read_json_lines(path)
    } else {
        Vec::new()
    };
    let probes = events
        .iter()
        .filter(|e| e["http"]["response"]["status_code"] == 200)
        .filter_map(|e| e["url"]["original"].as_str().map(str::to_owned))
        .collect();
    let messages = events
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    (probes, messages)
}

#[test]
fn daemonset_reads_root_only_logs_captures_and_keeps_its_registry_as_a_non_root_user() {
    if !enabled() {
        return;
    }
    let docs = documents("docker/kubernetes/daemonset.yaml");
    let pod = pod_spec(&docs, "DaemonSet");
    let dir = tempfile::tempdir().expect("temp dir");
    let node = dir.path().join("node");
    mkdir(&node, 0o755);

    // A pod's log as the kubelet and Docker's json-file driver leave it: root's, 0640, in a
    // folder only root may enter, reached through /var/log/containers and /var/log/pods links.
    let id = "4f1c0a9e";
    let docker = node.join("var/lib/docker/containers");
    mkdir(&docker, 0o700);
    mkdir(&docker.join(id), 0o700);
    let log = docker.join(id).join(format!("{id}-json.log"));
    let first: String = (1..=5)
        .map(|i| docker_line(&format!("web line {i}")))
        .collect();
    std::fs::write(&log, first).expect("write log");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let pods = node.join("var/log/pods/prod_web-1_7d3e/web");
    mkdir(&pods, 0o750);
    symlink(
        format!("/var/lib/docker/containers/{id}/{id}-json.log"),
        pods.join("0.log"),
    )
    .expect("link");
    mkdir(&node.join("var/log/containers"), 0o755);
    symlink(
        "/var/log/pods/prod_web-1_7d3e/web/0.log",
        node.join(format!("var/log/containers/web-1_prod_web-{id}.log")),
    )
    .expect("link");
    assert_eq!(std::fs::metadata(&log).expect("log").uid(), 0);

    // Volumes: hostPath on the node (DirectoryOrCreate makes root's 0755), emptyDir 0777, and
    // the ConfigMap's file. The ConfigMap's pipeline is the test's: the shipped one needs a
    // cluster (the API for its kubernetes processor, Elasticsearch) and the node's interfaces;
    // this one reads the same paths, captures the container's loopback, writes a file.
    let mut volumes = BTreeMap::new();
    for v in pod["volumes"].as_vec().expect("volumes") {
        let name = v["name"].as_str().expect("volume name").to_owned();
        let folder = if let Some(p) = v["hostPath"]["path"].as_str() {
            let f = node.join(p.trim_start_matches('/'));
            if !f.exists() {
                mkdir(&f, 0o755);
            }
            f
        } else if !v["emptyDir"].is_badvalue() {
            let f = dir.path().join("emptydir").join(&name);
            mkdir(&f, 0o777);
            f
        } else if !v["configMap"].is_badvalue() {
            let f = dir.path().join("configmap").join(&name);
            mkdir(&f, 0o755);
            std::fs::write(
                f.join("pipeline.yaml"),
                "inputs:\n  containers:\n    type: file\n    paths: [\"/var/log/containers/*.log\"]\n    start_at: beginning\n  \
                 http: { type: http, capture: { interfaces: [lo] }, ports: [5067] }\n\
                 outputs:\n  out: { type: file, path: /var/lib/trawl/out.jsonl }\n\
                 data_dir: ${TRAWL_DATA_DIR:-/var/lib/trawl}\n\
                 http:\n  address: ${TRAWL_HTTP_ADDRESS:-127.0.0.1:5067}\n",
            )
            .expect("write pipeline");
            f
        } else {
            panic!("volume {name} of a kind the test does not make: {v:?}");
        };
        volumes.insert(name, folder);
    }
    let state = volumes.get("state").expect("a state volume").clone();
    assert_eq!(std::fs::metadata(&state).expect("state").uid(), 0);
    let kubelet = Kubelet {
        volumes: &volumes,
        env: &[
            ("NODE_NAME", "node-1"),
            ("ELASTICSEARCH_USERNAME", "elastic"),
            ("ELASTICSEARCH_PASSWORD", "secret"),
        ],
    };

    // The init container hands the node's state folder to the agent's user.
    let init = container(pod, "initContainers", "state-owner");
    let run_init = || {
        let mut c = podman();
        c.args(run_args(&[])).args(render(pod, init, &kubelet, &[]));
        output_within(c, None, Duration::from_secs(300))
    };
    let out = run_init();
    assert!(
        out.status.success(),
        "init container: {}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&state).expect("state").uid(), 65532);

    let trawl = container(pod, "containers", "trawl");
    let name = format!("ops4-ds-{}", std::process::id());
    let running = Running::start(name, &render(pod, trawl, &kubelet, &[]));
    // An interface trawl could not open is logged `cannot capture on this interface`.
    running.wait_for_log("\"capturing\"");
    let status = running.exec(PROBE_AND_STATUS);
    // The image's user, with the two capabilities from the binary's file capabilities (none
    // ambient), DAC_READ_SEARCH raised on every thread, NET_RAW on the capture's.
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().skip(1).all(|u| u == "65532")),
        "{status}"
    );
    assert_eq!(cap(&status, "CapAmb:"), 0, "{status}");
    assert_eq!(
        cap(&status, "CapPrm:"),
        CAP_DAC_READ_SEARCH | CAP_NET_RAW,
        "{status}"
    );
    assert_ne!(cap(&status, "CapEff:") & CAP_DAC_READ_SEARCH, 0, "{status}");
    let threads: Vec<u64> = status
        .split("--- threads")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("CapEff:"))
        .map(|l| cap(l, "CapEff:"))
        .collect();
    assert!(
        threads.iter().any(|e| e & CAP_NET_RAW != 0),
        "no thread with NET_RAW effective: {threads:x?}"
    );

    let more: String = (6..=10)
        .map(|i| docker_line(&format!("web line {i}")))
        .collect();
    support::process::append(&log, &more);
    let out_file = state.join("out.jsonl");
    wait_until(
        DEADLINE,
        "the log's lines and the probes in out.jsonl",
        || {
            let (probes, messages) = shipped(&out_file);
            (1..=3).all(|i| probes.contains(&format!("/health?probe={i}")))
                && (1..=10).all(|i| messages.contains(&format!("web line {i}")))
        },
    );
    // The offsets are kept in the node's state folder, by the agent's user.
    let registry = state.join("registry/file-containers.json");
    wait_until(DEADLINE, "the registry to hold the log's offset", || {
        std::fs::read_to_string(&registry).is_ok_and(|r| r.contains(id) || r.contains("web-1"))
    });
    assert_eq!(std::fs::metadata(&registry).expect("registry").uid(), 65532);
    assert_eq!(running.stop(), 0, "{}", running.logs());
    let (_, messages) = shipped(&out_file);
    for i in 1..=10 {
        // Docker's json-file wrapping is taken off by the file input.
        let n = messages
            .iter()
            .filter(|m| **m == format!("web line {i}"))
            .count();
        assert_eq!(n, 1, "line {i} shipped {n} times: {messages:?}");
    }

    // A second start of the pod (upgrade, node reboot): the init container enters what the
    // agent made and hands it over again.
    let out = run_init();
    assert!(
        out.status.success(),
        "init container, second start: {}",
        text(&out.stderr)
    );
}

#[test]
fn sidecar_captures_and_takes_the_apps_lines_as_a_non_root_user_with_net_raw_alone() {
    if !enabled() {
        return;
    }
    let docs = documents("docker/kubernetes/sidecar.yaml");
    let pod = pod_spec(&docs, "Deployment");
    let fs_group = pod["securityContext"]["fsGroup"]
        .as_i64()
        .expect("an fsGroup");
    let dir = tempfile::tempdir().expect("temp dir");
    // emptyDirs as the kubelet makes them with an fsGroup: 0777, group-owned, setgid.
    let mut volumes = BTreeMap::new();
    for v in pod["volumes"].as_vec().expect("volumes") {
        let name = v["name"].as_str().expect("volume name").to_owned();
        let f = dir.path().join("volumes").join(&name);
        mkdir(&f, 0o777);
        if !v["emptyDir"].is_badvalue() {
            std::os::unix::fs::chown(&f, Some(0), Some(fs_group as u32)).expect("chown");
            mkdir(&f, 0o2777);
        } else if !v["downwardAPI"].is_badvalue() {
            std::fs::write(f.join("labels"), "app=\"web\"\n").expect("labels");
            std::fs::write(f.join("annotations"), "").expect("annotations");
        } else {
            panic!("volume {name} of a kind the test does not make: {v:?}");
        }
        volumes.insert(name, f);
    }
    let kubelet = Kubelet {
        volumes: &volumes,
        env: &[
            ("POD_NAME", "web-1"),
            ("POD_NAMESPACE", "prod"),
            ("POD_IP", "127.0.0.1"),
            ("NODE_NAME", "node-1"),
            ("TRAWL_HTTP_TOKEN", "token"),
        ],
    };
    // The shipped sidecar pipeline sends to Elasticsearch; the test's takes the same socket and
    // captures the pod's loopback into a file in the state volume.
    let pipeline = dir.path().join("k8s-sidecar.yaml");
    std::fs::write(
        &pipeline,
        "inputs:\n  app: { type: socket, address: \"unix:/run/trawl/app.sock\", format: json, socket_mode: \"0660\" }\n  \
         http: { type: http, capture: { interfaces: [lo] }, ports: [5067] }\n\
         outputs:\n  out: { type: file, path: /var/lib/trawl/out.jsonl }\n\
         data_dir: ${TRAWL_DATA_DIR:-/var/lib/trawl}\n\
         http:\n  address: ${TRAWL_HTTP_ADDRESS:-0.0.0.0:5067}\n",
    )
    .expect("write pipeline");
    let over_shipped = [
        "-v".to_owned(),
        format!(
            "{}:/etc/trawl/pipelines/k8s-sidecar.yaml:ro",
            pipeline.display()
        ),
    ];

    let init = container(pod, "initContainers", "trawl-install");
    let mut c = podman();
    c.args(run_args(&[])).args(render(pod, init, &kubelet, &[]));
    let out = output_within(c, None, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "init container: {}",
        text(&out.stderr)
    );

    let trawl = container(pod, "containers", "trawl");
    let name = format!("ops4-sc-{}", std::process::id());
    let running = Running::start(name.clone(), &render(pod, trawl, &kubelet, &over_shipped));
    // An interface trawl could not open is logged `cannot capture on this interface`.
    running.wait_for_log("\"capturing\"");

    // The app container: its own user (1000, as an app image's), the pod's fsGroup, in the
    // pod's network; its server is a script that logs and calls trawl's port on the loopback.
    let server = dir.path().join("server");
    std::fs::write(
        &server,
        "#!/bin/bash\nfor i in 1 2 3; do echo \"app line $i\"; done\n\
         for i in 1 2 3; do\n  exec 3<>/dev/tcp/127.0.0.1/5067\n  \
         printf 'GET /health?probe=%s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' \"$i\" >&3\n  \
         timeout 10 cat <&3 > /dev/null; exec 3<&-\ndone\n",
    )
    .expect("write server");
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let app = container(pod, "containers", "web");
    let mut options: Vec<String> = vec!["--user".into(), "1000:1000".into()];
    options.extend([
        "-v".to_owned(),
        format!("{}:/app/server:ro", server.display()),
    ]);
    options.extend(render(pod, app, &kubelet, &[]));
    let mut c = podman();
    c.args(base_args(true, &format!("container:{name}")))
        .args(&options);
    let out = output_within(c, None, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "app container: {}{}",
        text(&out.stderr),
        running.logs()
    );
    assert!(
        text(&out.stdout).contains("app line 3"),
        "{}",
        text(&out.stdout)
    );

    let status = running.exec("cat /proc/1/status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().skip(1).all(|u| u == "65532")),
        "{status}"
    );
    assert_eq!(cap(&status, "CapAmb:"), 0, "{status}");
    assert_eq!(cap(&status, "CapPrm:"), CAP_NET_RAW, "{status}");

    let out_file = volumes["state"].join("out.jsonl");
    wait_until(
        DEADLINE,
        "the app's lines and the probes in out.jsonl",
        || {
            let (probes, messages) = shipped(&out_file);
            (1..=3).all(|i| probes.contains(&format!("/health?probe={i}")))
                && (1..=3).all(|i| messages.contains(&format!("app line {i}")))
        },
    );
    assert_eq!(running.stop(), 0, "{}", running.logs());
}
