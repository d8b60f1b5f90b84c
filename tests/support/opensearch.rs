//! A real single-node OpenSearch (2.19, from the Maven Central jars that `scripts/setup.sh`
//! installs) for the Elasticsearch-output tests: on 127.0.0.1, data in a temporary folder,
//! small heap, disk watermarks off. One node is shared per test binary (`OpenSearch::shared`);
//! tests that need other node settings start their own (`OpenSearch::start`),
//! `OpenSearch::start_secure` starts one with the security plugin (basic auth, demo users), and
//! `OpenSearch::start_restartable` one on a fixed port that `kill`, `terminate` or `stop` end and
//! `start_again` brings back on the same data folder and port (a node restart).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
    /// Basic auth for the test's own requests to a node with the security plugin.
    auth: Option<(String, String)>,
    /// How it was launched, for `start_again`.
    dir: PathBuf,
    secure: bool,
    settings: Vec<(String, String)>,
    /// HOME of the node: its config, data and `node.log`, kept across restarts.
    home: tempfile::TempDir,
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
        OpenSearch::launch(&install_dir(), false, settings, None)
    }

    /// Starts a node of its own on a fixed HTTP port, so that after `kill`, `terminate` or
    /// `stop` it can be started again (`start_again`) at the same URL on the same data, as a
    /// restarted node is found by its clients.
    pub fn start_restartable(settings: &[(&str, &str)]) -> OpenSearch {
        let [port] = super::process::server_ports::<1>();
        let port = port.to_string();
        let mut all = settings.to_vec();
        all.push(("http.port", &port));
        OpenSearch::start(&all)
    }

    /// SIGKILL (an OOM kill, a node lost with its machine): the JVM ends at once, with nothing
    /// flushed beyond what the translog had synced. Waits for the process to be gone.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the JVM to exit. This launcher registers no shutdown hook (a
    /// distribution's does, and closes the node), so the node is not closed: for the node's
    /// files this is as abrupt as `kill`, only the JVM's own exit runs.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }

    /// A clean stop: closes the node's lifeline (its standard input), on which the launcher
    /// closes the node (flushing its shards) and exits, as a distribution does on SIGTERM.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// Starts the node again after `kill`, `terminate` or `stop`: same settings, data folder
    /// and (for `start_restartable`) port. Returns as soon as the node answers
    /// `/_cluster/health`, whatever its colour: its shards may still be recovering (red).
    pub fn start_again(&mut self) {
        self.start_again_with(&[]);
    }

    /// `start_again` with `extra` node settings for this run only, after the first ones (a
    /// key given twice takes the later value): a node restarted with changed settings.
    pub fn start_again_with(&mut self, extra: &[(&str, &str)]) {
        assert!(
            self.child.try_wait().ok().flatten().is_some(),
            "start_again: the node at {} is still running",
            self.url
        );
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().copied())
            .collect();
        let (child, url, startup) = OpenSearch::run_node(
            &self.dir,
            self.secure,
            &settings,
            &self.home,
            &self.http,
            &self.auth,
            false,
        );
        self.child = child;
        assert_eq!(url, self.url, "the node came back at another address");
        self.startup = startup;
    }

    /// The node's own log (its stderr), for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.home.path().join("node.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A node with the security plugin: HTTP with basic auth (its demo user `admin`, password
    /// `admin`), TLS between nodes as the plugin demands, the security index set up from the
    /// plugin's default configuration at start.
    pub fn start_secure() -> OpenSearch {
        let dir = install_dir().with_file_name("opensearch-secure");
        let settings = [
            (
                "plugins.security.ssl.transport.pemcert_filepath",
                "node.pem",
            ),
            ("plugins.security.ssl.transport.pemkey_filepath", "node.key"),
            (
                "plugins.security.ssl.transport.pemtrustedcas_filepath",
                "ca.pem",
            ),
            (
                "plugins.security.ssl.transport.enforce_hostname_verification",
                "false",
            ),
            ("plugins.security.ssl.http.enabled", "false"),
            ("plugins.security.allow_unsafe_democertificates", "true"),
            ("plugins.security.allow_default_init_securityindex", "true"),
            ("plugins.security.authcz.admin_dn", "CN=admin"),
            ("plugins.security.nodes_dn", "CN=node"),
            ("plugins.security.audit.type", "noop"),
        ];
        OpenSearch::launch(&dir, true, &settings, Some(("admin", "admin")))
    }

    fn launch(
        dir: &Path,
        secure: bool,
        settings: &[(&str, &str)],
        auth: Option<(&str, &str)>,
    ) -> OpenSearch {
        if !dir.join("READY").exists() {
            panic!(
                "OpenSearch is not installed in {}: run scripts/setup.sh (or \
                 scripts/systems/opensearch.sh; TRAWL_SYSTEMS_DIR moves the folder)",
                dir.display()
            );
        }
        let home = tempfile::tempdir().expect("a temporary folder for the node");
        if secure {
            // The plugin reads its configuration and certificates from HOME/config, and the
            // node its transport module and the plugin from HOME/modules and HOME/plugins.
            let config = home.path().join("config");
            copy_files(
                &dir.join("security-config"),
                &config.join("opensearch-security"),
            );
            copy_files(&dir.join("certs"), &config);
            for sub in ["modules", "plugins"] {
                std::os::unix::fs::symlink(dir.join(sub), home.path().join(sub))
                    .expect("linking the node's modules and plugins");
            }
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let (child, url, startup) =
            OpenSearch::run_node(dir, secure, settings, &home, &http, &auth, true);
        OpenSearch {
            url,
            startup,
            child,
            http,
            auth,
            dir: dir.to_owned(),
            secure,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            home,
        }
    }

    /// Runs the JVM on `home` until it answers `/_cluster/health` (with `yellow`: a yellow or
    /// green cluster): the process, its URL and how long that took.
    fn run_node(
        dir: &Path,
        secure: bool,
        settings: &[(&str, &str)],
        home: &tempfile::TempDir,
        http: &reqwest::blocking::Client,
        auth: &Option<(String, String)>,
        yellow: bool,
    ) -> (Child, String, Duration) {
        let java = std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin/java"))
            .unwrap_or_else(|| PathBuf::from("java"));
        let classpath = format!("{}/lib/*:{}/classes", dir.display(), dir.display());
        // Appended to, so that a restarted node's log follows the first run's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.path().join("node.log"))
            .expect("node log");
        let mut cmd = Command::new(java);
        cmd.args(["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-Xss1m"])
            .arg(format!("-Dtrawl.opensearch.modules={secure}"))
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
        let url = format!("http://{addr}");
        // The security plugin answers 503 until it has set up its index.
        let deadline = started + START_TIMEOUT;
        loop {
            let path = if yellow {
                "/_cluster/health?wait_for_status=yellow&timeout=10s"
            } else {
                "/_cluster/health"
            };
            let req = http.get(format!("{url}{path}"));
            let req = match auth {
                Some((user, password)) => req.basic_auth(user, Some(password)),
                None => req,
            };
            let health = req
                .send()
                .ok()
                .filter(|r| r.status().is_success() || !yellow)
                .and_then(|r| r.json::<Value>().ok());
            let wanted = if yellow {
                &["green", "yellow"][..]
            } else {
                &["green", "yellow", "red"][..]
            };
            if health.is_some_and(|h| h["status"].as_str().is_some_and(|c| wanted.contains(&c))) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("OpenSearch at {url} not ready within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let startup = started.elapsed();
        eprintln!("OpenSearch {url} started in {:.1} s", startup.as_secs_f64());
        (child, url, startup)
    }

    /// Sends `signal` to the node's JVM: SIGSTOP hangs it (connections stay open, nothing is
    /// answered, as a node in a long GC pause or on a frozen VM), SIGCONT wakes it.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Resident memory of the node's JVM in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// A request to `path`, with the node's credentials if it has the security plugin.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
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
        self.answer(self.request(reqwest::Method::GET, path), path)
    }

    pub fn put(&self, path: &str, body: &Value) -> Value {
        self.answer(self.request(reqwest::Method::PUT, path).json(body), path)
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.answer(self.request(reqwest::Method::POST, path).json(body), path)
    }

    pub fn delete(&self, path: &str) -> Value {
        self.answer(self.request(reqwest::Method::DELETE, path), path)
    }

    /// Whether `path` exists (HEAD answered 200).
    pub fn exists(&self, path: &str) -> bool {
        self.request(reqwest::Method::HEAD, path)
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// The documents of `index` (refreshed first so that every write is visible), at most 10 000.
    pub fn docs(&self, index: &str) -> Vec<Value> {
        let path = format!("/{index}/_refresh");
        self.answer(self.request(reqwest::Method::POST, &path), &path);
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

    /// Every document's `_source` of `index`, however many (refreshed first; read with the
    /// scroll API, 10 000 at a time).
    pub fn all_docs(&self, index: &str) -> Vec<Value> {
        let path = format!("/{index}/_refresh");
        self.answer(self.request(reqwest::Method::POST, &path), &path);
        let mut page = self.post(
            &format!("/{index}/_search?scroll=1m"),
            &serde_json::json!({ "query": { "match_all": {} }, "size": 10000 }),
        );
        let mut docs = Vec::new();
        loop {
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            docs.extend(hits.into_iter().map(|h| h["_source"].clone()));
            let id = page["_scroll_id"].clone();
            page = self.post(
                "/_search/scroll",
                &serde_json::json!({ "scroll": "1m", "scroll_id": id }),
            );
        }
        docs
    }

    /// Every document of `index` as (`_id`, `_version`, `_source`), however many (refreshed
    /// first; scrolled 10 000 at a time); empty while the index does not exist. A `_version`
    /// above 1 is a document written again over its `_id`.
    pub fn all_hits(&self, index: &str) -> Vec<(String, u64, Value)> {
        if !self.exists(&format!("/{index}")) {
            return Vec::new();
        }
        let path = format!("/{index}/_refresh");
        self.answer(self.request(reqwest::Method::POST, &path), &path);
        let mut page = self.post(
            &format!("/{index}/_search?scroll=1m"),
            &serde_json::json!({ "query": { "match_all": {} }, "size": 10000, "version": true }),
        );
        let mut hits = Vec::new();
        loop {
            let page_hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if page_hits.is_empty() {
                break;
            }
            hits.extend(page_hits.into_iter().map(|h| {
                (
                    h["_id"].as_str().unwrap_or_default().to_owned(),
                    h["_version"].as_u64().unwrap_or(0),
                    h["_source"].clone(),
                )
            }));
            let id = page["_scroll_id"].clone();
            page = self.post(
                "/_search/scroll",
                &serde_json::json!({ "scroll": "1m", "scroll_id": id }),
            );
        }
        hits
    }

    /// Whether the node's JVM has exited (after `kill`, `terminate` or `stop`).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// How many documents of `index` hold each `message` (a line stored under two `_id`s counts
    /// 2), refreshed first; empty while the index does not exist. At most 10 000 documents.
    pub fn copies_by_message(&self, index: &str) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        if !self.exists(&format!("/{index}")) {
            return m;
        }
        for doc in self.docs(index) {
            if let Some(text) = doc["message"].as_str() {
                *m.entry(text.to_owned()).or_insert(0) += 1;
            }
        }
        m
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

/// Copies the files (not folders) of `from` into `to`, creating it.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the node's config folder");
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", from.display()));
    for entry in entries.map_while(Result::ok) {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}
