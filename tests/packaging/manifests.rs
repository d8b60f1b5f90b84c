//! The Kubernetes manifests in docker/kubernetes/ against the Kubernetes API schema
//! (`kubernetes-validate --strict`), and against what they promise: the DaemonSet's hardening and
//! ConfigMap pipeline, the sidecar's wiring from the app container's forwarder to trawl's socket.

use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docker/kubernetes"))
        .expect("docker/kubernetes is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no manifests found: {files:?}");
    files
}

fn documents(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(root().join(file)).expect("manifest is readable");
    YamlLoader::load_from_str(&text).expect("manifest is YAML")
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the manifest"))
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

fn container<'a>(pod: &'a Yaml, list: &str, name: &str) -> &'a Yaml {
    pod[list]
        .as_vec()
        .and_then(|v| v.iter().find(|c| c["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

/// Where `volume` is mounted in container `c`.
fn mount_of<'a>(c: &'a Yaml, volume: &str) -> Option<&'a str> {
    c["volumeMounts"]
        .as_vec()?
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .and_then(|m| m["mountPath"].as_str())
}

fn validate_pipeline(path: &Path) {
    let out = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(path)
        .env("ELASTICSEARCH_HOST", "es.example")
        .env("ELASTICSEARCH_PASSWORD", "secret")
        .env("TRAWL_HTTP_TOKEN", "token")
        .env("NODE_NAME", "node-1")
        .env("POD_NAME", "web-1")
        .env("POD_NAMESPACE", "prod")
        .output()
        .expect("trawl runs");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_manifest_passes_the_kubernetes_schema_strictly() {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(manifests())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate cannot run ({e}): scripts/setup.sh installs it from PyPI")
        });
    assert!(
        out.status.success(),
        "kubernetes-validate --strict rejected a manifest:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_schema_check_rejects_an_unknown_field() {
    // The check above is only worth something if a misspelt key fails it.
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(root().join("docker/kubernetes/daemonset.yaml"))
        .expect("manifest is readable")
        .replace("readOnlyRootFilesystem", "readOnlyRootFileSystem");
    let bad = dir.path().join("daemonset.yaml");
    std::fs::write(&bad, text).expect("write");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&bad)
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        !out.status.success(),
        "a misspelt securityContext key passed"
    );
}

#[test]
fn daemonset_runs_the_configmap_pipeline_as_non_root_with_two_capabilities() {
    let docs = documents("docker/kubernetes/daemonset.yaml");
    // The ConfigMap carries the shipped pipeline, unchanged, and it validates.
    let shipped = std::fs::read_to_string(root().join("pipelines/k8s-daemonset.yaml"))
        .expect("pipeline is readable");
    let cm = kind(&docs, "ConfigMap");
    let embedded = cm["data"]["pipeline.yaml"]
        .as_str()
        .expect("ConfigMap has pipeline.yaml");
    assert_eq!(
        embedded, shipped,
        "the ConfigMap drifted from pipelines/k8s-daemonset.yaml"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, embedded).expect("write");
    validate_pipeline(&file);

    let pod = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
    assert!(
        pod["priorityClassName"].as_str().is_some(),
        "no priority class"
    );
    let c = container(pod, "containers", "trawl");
    let cm_name = cm["metadata"]["name"].as_str().expect("ConfigMap name");
    let volume = pod["volumes"]
        .as_vec()
        .and_then(|v| {
            v.iter()
                .find(|v| v["configMap"]["name"].as_str() == Some(cm_name))
        })
        .and_then(|v| v["name"].as_str())
        .expect("a volume of the ConfigMap");
    let at = mount_of(c, volume).expect("the ConfigMap is mounted");
    let args = strs(&c["args"]);
    assert!(
        args.windows(2)
            .any(|w| w[0] == "-c" && w[1] == format!("{at}/pipeline.yaml")),
        "trawl does not run the ConfigMap's pipeline: {args:?}"
    );

    // Capture and reading root's log files, nothing else, as the image's user.
    // tests/packaging/manifest_containers.rs runs this container in the image.
    let sc = &c["securityContext"];
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        strs(&sc["capabilities"]["add"]),
        ["NET_RAW", "DAC_READ_SEARCH"]
    );
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["runAsUser"].as_i64(), Some(65532));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    // The state folder on the node is root's: the init container hands it over, with no
    // capability beyond the two that takes.
    let init = container(pod, "initContainers", "state-owner");
    assert_eq!(
        strs(&init["securityContext"]["capabilities"]["add"]),
        ["CHOWN", "DAC_READ_SEARCH"]
    );
    assert_eq!(mount_of(init, "state"), mount_of(c, "state"));

    // With hostNetwork, a metrics port of 5066 would clash with Filebeat's on the same node.
    let port = c["ports"][0]["containerPort"]
        .as_i64()
        .expect("a metrics port");
    assert_ne!(port, 5066);
    let env_addr = c["env"]
        .as_vec()
        .and_then(|v| {
            v.iter()
                .find(|e| e["name"].as_str() == Some("TRAWL_HTTP_ADDRESS"))
        })
        .and_then(|e| e["value"].as_str())
        .expect("TRAWL_HTTP_ADDRESS");
    assert!(
        env_addr.ends_with(&format!(":{port}")),
        "{env_addr} vs {port}"
    );

    // Docker's json-file logs, which /var/log/pods links to.
    let host = pod["volumes"]
        .as_vec()
        .and_then(|v| {
            v.iter()
                .find(|v| v["hostPath"]["path"].as_str() == Some("/var/lib/docker/containers"))
        })
        .and_then(|v| v["name"].as_str())
        .expect("a hostPath volume of /var/lib/docker/containers");
    assert_eq!(mount_of(c, host), Some("/var/lib/docker/containers"));
}

#[test]
fn sidecar_app_container_forwards_to_the_trawl_container_socket() {
    let docs = documents("docker/kubernetes/sidecar.yaml");
    let pod = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
    let app = container(pod, "containers", "web");
    let trawl = container(pod, "containers", "trawl");
    let install = container(pod, "initContainers", "trawl-install");

    // The app container runs the forwarder the init container copied into a shared volume.
    let cmd = strs(&app["command"]);
    let install_cmd = strs(&install["command"]);
    let copied_to = install_cmd.last().expect("install copies a file");
    let bin_volume = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .find(|v| mount_of(install, v).is_some_and(|m| copied_to.starts_with(m)))
        .expect("the install target is a volume");
    let in_app = copied_to.replacen(
        mount_of(install, bin_volume).expect("mounted"),
        mount_of(app, bin_volume).expect("the binary volume is mounted in the app"),
        1,
    );
    assert!(
        cmd[0].starts_with(in_app.trim_end_matches('/')),
        "the app does not run the copied forwarder: {cmd:?}"
    );
    // ...which is the image's static forwarder (the Dockerfile puts it where the init container
    // copies it from).
    let source = install_cmd
        .iter()
        .rev()
        .nth(1)
        .expect("install copies from a path");
    let dockerfile =
        std::fs::read_to_string(root().join("docker/Dockerfile")).expect("Dockerfile is readable");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("COPY --from=build /out/trawl-forward ") && l.ends_with(source)),
        "the image has no trawl-forward at {source}"
    );
    let dashdash = cmd.iter().position(|a| *a == "--").expect("`-- CMD`");
    assert!(dashdash + 1 < cmd.len(), "no app command after `--`");
    let forward = cmd[..dashdash]
        .windows(2)
        .find(|w| w[0] == "--forward")
        .map(|w| w[1])
        .expect("--forward");
    let socket = forward.strip_prefix("unix:").expect("a unix socket");

    // The socket's folder is a volume the trawl container mounts at the same place...
    let sock_dir = Path::new(socket).parent().expect("socket folder");
    let sock_volume = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .find(|v| mount_of(app, v).is_some_and(|m| Path::new(m) == sock_dir))
        .expect("the socket folder is a volume in the app container");
    assert_eq!(
        mount_of(trawl, sock_volume).map(Path::new),
        Some(sock_dir),
        "the trawl container does not share the socket folder"
    );
    // ...whose pipeline (shipped in the image under /etc/trawl/pipelines) listens on it.
    let run = strs(&trawl["command"]).join(" ") + " " + &strs(&trawl["args"]).join(" ");
    let image_path = run
        .split_whitespace()
        .find(|w| w.starts_with("/etc/trawl/pipelines/"))
        .expect("the trawl container runs a shipped pipeline");
    let pipeline = root().join(image_path.trim_start_matches("/etc/trawl/"));
    let text = std::fs::read_to_string(&pipeline).expect("the pipeline is in pipelines/");
    let p = &YamlLoader::load_from_str(&text).expect("pipeline YAML")[0];
    let listens = p["inputs"].as_hash().expect("inputs").values().any(|i| {
        i["type"].as_str() == Some("socket")
            && i["address"]
                .as_str()
                .is_some_and(|a| a == forward || a == format!("unix:${{TRAWL_SOCKET:-{socket}}}"))
    });
    assert!(
        listens,
        "{} has no socket input on {forward}",
        pipeline.display()
    );
    validate_pipeline(&pipeline);

    // Capture in the trawl container with NET_RAW alone; nothing of trawl's in the app's.
    let sc = &trawl["securityContext"];
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(strs(&sc["capabilities"]["add"]), ["NET_RAW"]);
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert!(app["securityContext"]["capabilities"].is_badvalue());
}

/// The value of `${NAME:-default}` (or a literal) as the container's env sets it: its `value`
/// when given, else the default; `valueFrom` entries are named separately by `from_secret`.
fn resolve(text: &str, c: &Yaml) -> String {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return text.to_owned();
    };
    let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
    c["env"]
        .as_vec()
        .and_then(|v| v.iter().find(|e| e["name"].as_str() == Some(name)))
        .and_then(|e| e["value"].as_str())
        .unwrap_or(default)
        .to_owned()
}

/// Whether `${NAME...}` takes its value from a Secret in container `c`.
fn from_secret(text: &str, c: &Yaml) -> bool {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return false;
    };
    let name = inner.split([':', '-', '?']).next().unwrap_or(inner);
    c["env"]
        .as_vec()
        .and_then(|v| v.iter().find(|e| e["name"].as_str() == Some(name)))
        .is_some_and(|e| !e["valueFrom"]["secretKeyRef"].is_badvalue())
}

/// The monitoring address serves `/api/tap` (every event, live), `/metrics` and `/api/graph`
/// (who talks to whom) and `POST /-/reload`. A manifest either keeps it on the pod's own
/// loopback, with probes the kubelet can still make, or protects it with a bearer token from a
/// Secret (then no probe can use it: a probe cannot send a secret). `/health` turns 503 when an
/// output has failed for a while (Elasticsearch down): that must neither restart trawl
/// (liveness) nor take a sidecar's app out of its Services (readiness).
#[test]
fn the_monitoring_api_is_not_open_to_the_network_and_probes_reach_it() {
    let ds = documents("docker/kubernetes/daemonset.yaml");
    let ds_pod = &kind(&ds, "DaemonSet")["spec"]["template"]["spec"];
    let ds_pipeline = kind(&ds, "ConfigMap")["data"]["pipeline.yaml"]
        .as_str()
        .expect("the ConfigMap's pipeline")
        .to_owned();
    let sc = documents("docker/kubernetes/sidecar.yaml");
    let sc_pod = &kind(&sc, "Deployment")["spec"]["template"]["spec"];
    let sc_pipeline = std::fs::read_to_string(root().join("pipelines/k8s-sidecar.yaml"))
        .expect("the sidecar's pipeline");
    for (manifest, pod, text) in [
        ("daemonset.yaml", ds_pod, ds_pipeline),
        ("sidecar.yaml", sc_pod, sc_pipeline),
    ] {
        let c = container(pod, "containers", "trawl");
        let p = &YamlLoader::load_from_str(&text).expect("pipeline YAML")[0];
        let address = resolve(p["http"]["address"].as_str().unwrap_or(""), c);
        let token = p["http"]["bearer_token"].as_str().unwrap_or("");
        let host = address.rsplit_once(':').map_or("", |(h, _)| h);
        let local = address.starts_with("unix:")
            || host.starts_with("127.")
            || host == "localhost"
            || host == "[::1]";
        let guarded = from_secret(token, c);
        assert!(
            local || guarded,
            "{manifest}: trawl's monitoring API listens on {address} with no bearer token from a \
             Secret: anyone who reaches it can read every event through /api/tap"
        );
        let host_network = pod["hostNetwork"].as_bool() == Some(true);
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let (get, tcp) = (&c[probe]["httpGet"], &c[probe]["tcpSocket"]);
            if !tcp.is_badvalue() {
                assert!(
                    !local || (host_network && tcp["host"].as_str() == Some("127.0.0.1")),
                    "{manifest}: {probe} connects to the pod's IP, but trawl listens on {address} only"
                );
            }
            if get.is_badvalue() {
                continue;
            }
            assert!(
                !guarded,
                "{manifest}: {probe} cannot send the bearer token the API needs"
            );
            if local {
                assert!(
                    host_network && get["host"].as_str() == Some("127.0.0.1"),
                    "{manifest}: {probe} goes to the pod's IP, but trawl listens on {address} \
                     only (with hostNetwork, `host: 127.0.0.1` reaches the node's loopback)"
                );
            }
        }
        // A restart mends nothing of an Elasticsearch or Kafka outage, and a restarted capture
        // loses the packets of its restart: liveness must not follow the outputs.
        assert!(
            c["livenessProbe"]["httpGet"]["path"].as_str() != Some("/health"),
            "{manifest}: a livenessProbe on /health restarts trawl whenever an output has failed \
             past http.health.output_failure_threshold"
        );
        let containers = pod["containers"].as_vec().map_or(0, Vec::len);
        if containers > 1 {
            assert!(
                c["readinessProbe"].is_badvalue(),
                "{manifest}: a readinessProbe on trawl makes the app's pod unready whenever an \
                 output has failed past http.health.output_failure_threshold"
            );
        }
    }
}
