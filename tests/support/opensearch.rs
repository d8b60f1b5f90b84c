//! A real single-node OpenSearch (2.19, from the Maven Central jars that `scripts/setup.sh`
//! installs) for the Elasticsearch-output tests: on 127.0.0.1, data in a temporary folder,
//! small heap, disk watermarks off. One node is shared per test binary (`OpenSearch::shared`);
//! tests that need other node settings start their own (`OpenSearch::start`).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// How long a node may take to start on a loaded 2-core machine (it takes ~5 s when idle).
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct OpenSearch {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// From spawning the JVM to the node answering with a yellow or green cluster.
    pub startup: Duration,
    child: Child,
    http: reqwest::blocking::Client,
    _home: tempfile::TempDir,
}

/// Where `scripts/systems/opensearch.sh` installed the node.
pub fn install_dir() -> PathBuf {
    let root = std::env::var_os("TRAWL_SYSTEMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/trawl-systems"));
    root.join("opensearch")
}

impl OpenSearch {
    /// The node this test binary shares, started on first use with the default settings.
    /// Its standard input is its lifeline: it closes itself when the test process ends.
    pub fn shared() -> &'static OpenSearch {
        static NODE: OnceLock<OpenSearch> = OnceLock::new();
        NODE.get_or_init(|| OpenSearch::start(&[]))
    }

    /// Starts a node of its own with extra node settings (`thread_pool.write.queue_size`...),
    /// killed when dropped.
    pub fn start(settings: &[(&str, &str)]) -> OpenSearch {
        let dir = install_dir();
        if !dir.join("READY").exists() {
            panic!(
                "OpenSearch is not installed in {}: run scripts/setup.sh (or \
                 scripts/systems/opensearch.sh; TRAWL_SYSTEMS_DIR moves the folder)",
                dir.display()
            );
        }
        let home = tempfile::tempdir().expect("a temporary folder for the node");
        let java = std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin/java"))
            .unwrap_or_else(|| PathBuf::from("java"));
        let classpath = format!("{}/lib/*:{}/classes", dir.display(), dir.display());
        let log = std::fs::File::create(home.path().join("node.log")).expect("node log");
        let mut cmd = Command::new(java);
        cmd.args(["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-Xss1m"])
            .arg("-Djava.io.tmpdir=".to_owned() + &home.path().display().to_string())
            .args(["-cp", &classpath, "TrawlOpenSearchNode"])
            .arg(home.path())
            .args(settings.iter().map(|(k, v)| format!("{k}={v}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start java for OpenSearch: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("trawl-opensearch http=") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(home.path().join("node.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("OpenSearch did not start within {START_TIMEOUT:?}; its output:\n{tail}");
            }
        };
        let mut node = OpenSearch {
            url: format!("http://{addr}"),
            startup: Duration::ZERO,
            child,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            _home: home,
        };
        let health = node.get("/_cluster/health?wait_for_status=yellow&timeout=120s");
        assert!(
            matches!(health["status"].as_str(), Some("green" | "yellow")),
            "OpenSearch cluster not ready: {health}"
        );
        node.startup = started.elapsed();
        eprintln!(
            "OpenSearch {} started in {:.1} s",
            node.url,
            node.startup.as_secs_f64()
        );
        node
    }

    /// Resident memory of the node's JVM in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    fn answer(&self, req: reqwest::blocking::RequestBuilder, what: &str) -> Value {
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{what}: OpenSearch did not answer: {e}"));
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(status.is_success(), "{what}: HTTP {status}: {body}");
        body
    }

    pub fn get(&self, path: &str) -> Value {
        self.answer(self.http.get(format!("{}{path}", self.url)), path)
    }

    pub fn put(&self, path: &str, body: &Value) -> Value {
        self.answer(
            self.http.put(format!("{}{path}", self.url)).json(body),
            path,
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.answer(
            self.http.post(format!("{}{path}", self.url)).json(body),
            path,
        )
    }

    /// Whether `path` exists (HEAD answered 200).
    pub fn exists(&self, path: &str) -> bool {
        self.http
            .head(format!("{}{path}", self.url))
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// The documents of `index` (refreshed first so that every write is visible), at most 10 000.
    pub fn docs(&self, index: &str) -> Vec<Value> {
        let path = format!("/{index}/_refresh");
        self.answer(self.http.post(format!("{}{path}", self.url)), &path);
        self.search(index, &serde_json::json!({ "match_all": {} }))
    }

    /// The `_source`s of the documents of `index` that match `query` (no refresh).
    pub fn search(&self, index: &str, query: &Value) -> Vec<Value> {
        let found = self.post(
            &format!("/{index}/_search"),
            &serde_json::json!({ "query": query, "size": 10000 }),
        );
        found["hits"]["hits"]
            .as_array()
            .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
            .unwrap_or_default()
    }

    /// `GET /_nodes/stats/thread_pool`'s count of rejected writes.
    pub fn write_rejections(&self) -> u64 {
        let stats = self.get("/_nodes/stats/thread_pool");
        stats["nodes"]
            .as_object()
            .map(|nodes| {
                nodes
                    .values()
                    .filter_map(|n| n["thread_pool"]["write"]["rejected"].as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for OpenSearch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
