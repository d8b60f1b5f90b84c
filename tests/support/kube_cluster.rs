//! A real Kubernetes control plane for tests: etcd and kube-apiserver (built by
//! scripts/systems/kubernetes.sh) on free ports, with RBAC on, a throwaway service-account key
//! and an admin token to set the cluster up. No kubelet or controllers run: the tests create
//! the objects and set the pod status a kubelet would, as its API calls do.
#![allow(dead_code)]

use super::process::{server_ports, KillOnDrop};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "trawl-tests-admin";

/// Where scripts/systems/kubernetes.sh put the binaries; a test that needs them fails without.
fn binaries() -> PathBuf {
    let dir = std::env::var_os("TRAWL_SYSTEMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/trawl-systems"))
        .join("kubernetes");
    if !dir.join("READY").exists() {
        panic!(
            "no kube-apiserver and etcd in {} (run scripts/setup.sh, which builds them with \
             scripts/systems/kubernetes.sh; TRAWL_SYSTEMS_DIR moves the folder)",
            dir.display()
        );
    }
    dir
}

pub struct KubeCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The API server's HTTPS port on 127.0.0.1.
    pub port: u16,
    etcd_port: u16,
    apiserver: Option<KillOnDrop>,
    _etcd: KillOnDrop,
    admin: reqwest::blocking::Client,
}

impl KubeCluster {
    /// Starts etcd, then the API server, and waits until it is ready (RBAC's bootstrap roles
    /// and the system namespaces in place).
    pub fn start() -> KubeCluster {
        let bin = binaries();
        let dir = tempfile::tempdir().expect("a folder for the cluster");
        let d = dir.path();
        for args in [
            &["genrsa", "-out", "sa.key", "2048"][..],
            &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"][..],
        ] {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        }
        std::fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,system:masters\n"),
        )
        .unwrap();
        let [port, etcd_port, peer_port] = server_ports::<3>();
        let etcd = Command::new(bin.join("etcd"))
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .stdout(Stdio::null())
            .stderr(log_file(&d.join("etcd.log")))
            .spawn()
            .expect("starting etcd");
        let admin = reqwest::blocking::Client::builder()
            // The admin client only sets the cluster up; trawl checks the server's certificate.
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut cluster = KubeCluster {
            dir,
            bin,
            port,
            etcd_port,
            apiserver: None,
            _etcd: KillOnDrop(etcd),
            admin,
        };
        cluster.start_apiserver();
        cluster
    }

    /// Starts the API server (again, on the same port and store) and waits for `/readyz`.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "the API server is running");
        let d = self.dir.path();
        let child = Command::new(self.bin.join("kube-apiserver"))
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .arg(format!("--secure-port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--service-account-key-file={}",
                d.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            // No controller makes each namespace's `default` service account.
            .arg("--disable-admission-plugins=ServiceAccount")
            .stdout(Stdio::null())
            .stderr(log_file(&d.join("apiserver.log")))
            .spawn()
            .expect("starting kube-apiserver");
        self.apiserver = Some(KillOnDrop(child));
        let start = Instant::now();
        loop {
            let ready = self
                .admin
                .get(format!("{}/readyz", self.url()))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            if start.elapsed() > Duration::from_secs(90) {
                panic!(
                    "kube-apiserver not ready after 90 s; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the API server (the store stays): clients see their connections drop.
    pub fn stop_apiserver(&mut self) {
        drop(self.apiserver.take());
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The certificates that vouch for the API server (its self-signed CA and certificate), as
    /// a pod's `ca.crt` does.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("certs/apiserver.crt"))
            .expect("the API server's certificate")
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<(&str, &Value)>) -> Value {
        let mut req = self
            .admin
            .request(method.clone(), format!("{}{path}", self.url()))
            .bearer_auth(ADMIN_TOKEN);
        if let Some((content_type, body)) = body {
            req = req
                .header("Content-Type", content_type)
                .body(body.to_string());
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates an object (POST to its collection) and returns it as stored.
    pub fn create(&self, collection: &str, object: Value) -> Value {
        self.send(
            reqwest::Method::POST,
            collection,
            Some(("application/json", &object)),
        )
    }

    /// A JSON merge patch, e.g. of a pod's `status` subresource as a kubelet writes it.
    pub fn patch(&self, path: &str, patch: Value) -> Value {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", &patch)),
        )
    }

    /// Deletes at once (`gracePeriodSeconds=0`: no kubelet is there to confirm).
    pub fn delete(&self, path: &str) {
        self.send(
            reqwest::Method::DELETE,
            &format!("{path}?gracePeriodSeconds=0"),
            None,
        );
    }

    /// Creates each ServiceAccount, ClusterRole and ClusterRoleBinding of a multi-document
    /// manifest (the shipped DaemonSet's), and returns their kinds and names.
    pub fn apply_rbac(&self, manifest: &str) -> Vec<String> {
        let mut made = Vec::new();
        let docs = yaml_rust2::YamlLoader::load_from_str(manifest).expect("a YAML manifest");
        for doc in &docs {
            let v = yaml_to_json(doc);
            let kind = v["kind"].as_str().unwrap_or_default();
            let collection = match kind {
                "ServiceAccount" => format!(
                    "/api/v1/namespaces/{}/serviceaccounts",
                    v["metadata"]["namespace"].as_str().unwrap_or("default")
                ),
                "ClusterRole" => "/apis/rbac.authorization.k8s.io/v1/clusterroles".into(),
                "ClusterRoleBinding" => {
                    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into()
                }
                _ => continue,
            };
            self.create(&collection, v.clone());
            made.push(format!(
                "{kind}/{}",
                v["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
        made
    }

    /// A token of a service account (the TokenRequest API, as the kubelet gets the projected
    /// token of a pod), valid for an hour.
    pub fn token(&self, namespace: &str, account: &str) -> String {
        let r = self.create(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 3600}}),
        );
        r["status"]["token"]
            .as_str()
            .expect("a token in the TokenRequest's status")
            .to_owned()
    }

    /// What a pod sees in `/var/run/secrets/kubernetes.io/serviceaccount/`: `token`, `ca.crt`
    /// and `namespace`, written to `dir`.
    pub fn service_account_files(&self, dir: &Path, namespace: &str, account: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("token"), self.token(namespace, account)).unwrap();
        std::fs::write(dir.join("ca.crt"), self.ca_pem()).unwrap();
        std::fs::write(dir.join("namespace"), namespace).unwrap();
    }
}

/// A YAML document as JSON, which the API takes.
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), yaml_to_json(v))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn log_file(p: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .expect("a log file")
}
