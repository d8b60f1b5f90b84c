//! A small Elasticsearch stand-in for tests: `POST /_bulk` and `/{index}/_bulk` as Elasticsearch
//! documents them (NDJSON actions, gzip bodies, per-item status, `errors: true`), dynamic
//! mapping conflicts answered 400 `mapper_parsing_exception`, 409 on `create` of an existing id,
//! and failures the test injects (429 `es_rejected_execution_exception` per item, 503 forever
//! on chosen items or on a share of items, whole-request 429/503, answers delayed past the
//! client's timeout, a `200 {}` without items as a proxy or a wrong URL gives), and
//! `http.max_content_length`: a body over it (its size once decompressed, as
//! Elasticsearch counts it after its gzip decoder) is answered 413 with no body and the
//! connection closed. `_index_template/{name}` (HEAD, GET, PUT) keeps templates, without
//! applying them. Tests read back what was stored.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct EsState {
    /// Stored documents by (index, id).
    pub docs: BTreeMap<(String, String), Value>,
    /// Successful writes, overwrites included.
    pub writes: u64,
    /// Bulk requests received, and how many had gzip bodies.
    pub requests: u64,
    pub gzip_requests: u64,
    /// Items answered 429 / 400 / 409.
    pub items_429: u64,
    pub items_400: u64,
    pub items_409: u64,
    /// Share of items (0-100) answered 429 at random.
    pub item_429_percent: u64,
    /// Share of items (0-100) answered 503 `unavailable_shards_exception` at random.
    pub item_503_percent: u64,
    /// Items answered 503 (at random or by `unavailable_message_containing`).
    pub items_503: u64,
    /// Every bulk request waits this long before it is handled (the handling still happens, as
    /// in Elasticsearch, after a client that timed out has gone).
    pub delay: std::time::Duration,
    /// The next this-many bulk requests are answered `200 {}` and store nothing, as a proxy or
    /// a misrouted endpoint may answer.
    pub empty_ok_requests: u64,
    /// Statuses for the next whole requests (429 or 503), one per request.
    pub fail_requests: VecDeque<u16>,
    /// Documents whose `message` contains this text are refused with 400
    /// `mapper_parsing_exception`, as a field of the wrong type would be.
    pub reject_message_containing: Option<String>,
    /// Documents whose `message` contains this text are answered 503
    /// `unavailable_shards_exception` every time (an item that can never succeed).
    pub unavailable_message_containing: Option<String>,
    /// Count writes without keeping documents or checking mappings (benchmarks).
    pub count_only: bool,
    /// Answer every bulk request 503 (an outage).
    pub unavailable: bool,
    /// Expected `Authorization` header, if any.
    pub require_auth: Option<String>,
    /// Elasticsearch's `http.max_content_length`: larger bodies are answered 413.
    pub max_content_length: Option<usize>,
    /// Requests answered 413, and the largest body (decompressed) accepted.
    pub requests_413: u64,
    pub largest_body: usize,
    /// Index templates put by name (`PUT _index_template/{name}`).
    pub templates: BTreeMap<String, Value>,
    /// Dynamic mapping: per index, the type of each field path seen first.
    mappings: HashMap<String, HashMap<String, &'static str>>,
    auto_id: u64,
    rng: u64,
}

impl EsState {
    fn random_percent(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    /// How many documents of `index` hold each `message` (a line stored twice counts 2).
    pub fn copies_by_message(&self, index: &str) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for (_, doc) in self.docs_in(index) {
            if let Some(text) = doc["message"].as_str() {
                *m.entry(text.to_owned()).or_insert(0) += 1;
            }
        }
        m
    }

    pub fn docs_in(&self, index: &str) -> Vec<(&String, &Value)> {
        self.docs
            .iter()
            .filter(|((i, _), _)| i == index)
            .map(|((_, id), v)| (id, v))
            .collect()
    }
}

pub struct EsServer {
    pub url: String,
    pub state: Arc<Mutex<EsState>>,
    _runtime: tokio::runtime::Runtime,
}

impl EsServer {
    pub fn start() -> EsServer {
        EsServer::start_with(None, "127.0.0.1:0")
    }

    /// Serves on `addr` (a port trawl was already pointed at while nothing listened there).
    pub fn start_on(addr: &str) -> EsServer {
        EsServer::start_with(None, addr)
    }

    /// Serves HTTPS with the certificate chain and key (PEM files).
    pub fn start_tls(cert_pem: &std::path::Path, key_pem: &std::path::Path) -> EsServer {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(key_pem).unwrap();
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        EsServer::start_with(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            "127.0.0.1:0",
        )
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, addr: &str) -> EsServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(EsState {
            rng: 0x2545F4914F6CDD1D,
            ..Default::default()
        }));
        let listener = runtime.block_on(TcpListener::bind(addr)).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let st = state.clone();
        runtime.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(conn).await {
                                let _ = serve(stream, st).await;
                            }
                        }
                        None => {
                            let _ = serve(conn, st).await;
                        }
                    }
                });
            }
        });
        EsServer {
            url,
            state,
            _runtime: runtime,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut EsState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Waits until every line of `groups` is stored in `index` (once or more: counting copies
    /// is for the caller); panics naming `what` and how many are missing after `timeout`.
    pub fn wait_for_messages(
        &self,
        index: &str,
        groups: &[&[String]],
        timeout: std::time::Duration,
        what: &str,
    ) {
        let start = std::time::Instant::now();
        loop {
            let stored = self.with(|s| s.copies_by_message(index));
            let missing = groups
                .iter()
                .flat_map(|g| g.iter())
                .filter(|l| !stored.contains_key(*l))
                .count();
            if missing == 0 {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: {missing} lines not stored"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    state: Arc<Mutex<EsState>>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        // Read until a full head is there.
        let (head_len, method, path, headers) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("").to_owned(),
                        req.path.unwrap_or("").to_owned(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => {
                    let mut chunk = [0u8; 16384];
                    let n = conn.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(_) => return Ok(()),
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + len {
            let mut chunk = vec![0u8; 65536];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf[head_len..head_len + len].to_vec();
        buf.drain(..head_len + len);
        let gzip = header("content-encoding").is_some_and(|v| v.contains("gzip"));
        let delay = state.lock().unwrap().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let auth = header("authorization");
        let (status, answer) = handle(&state, &method, &path, body, gzip, auth);
        if status == 413 {
            // As Elasticsearch's HTTP layer does: no body, and the connection is closed.
            conn.write_all(b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            conn.shutdown().await?;
            return Ok(());
        }
        let mut text = answer.to_string();
        let length = text.len();
        if method == "HEAD" {
            // An answer to HEAD says the length of the body it does not carry.
            text.clear();
        }
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{text}"
        );
        conn.write_all(resp.as_bytes()).await?;
    }
}

fn handle(
    state: &Mutex<EsState>,
    method: &str,
    path: &str,
    body: Vec<u8>,
    gzip: bool,
    auth: Option<String>,
) -> (u16, Value) {
    let mut st = state.lock().unwrap();
    if let Some(want) = &st.require_auth {
        if auth.as_deref() != Some(want.as_str()) {
            return (
                401,
                json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}),
            );
        }
    }
    let path_only = path.split('?').next().unwrap_or("");
    if method == "GET" && path_only == "/" {
        return (
            200,
            json!({"name": "es-test", "cluster_name": "trawl-test", "version": {"number": "8.15.0"}, "tagline": "You Know, for Search"}),
        );
    }
    if let Some(name) = path_only.strip_prefix("/_index_template/") {
        return match (method, st.templates.get(name)) {
            ("PUT", _) => {
                let template = decompress(&body, gzip)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                match template {
                    Some(t) => {
                        st.templates.insert(name.to_owned(), t);
                        (200, json!({"acknowledged": true}))
                    }
                    None => (400, json!({"error": "bad template body"})),
                }
            }
            ("HEAD" | "GET", Some(t)) => (
                200,
                json!({"index_templates": [{"name": name, "index_template": t}]}),
            ),
            ("HEAD" | "GET", None) => (404, json!({"error": "index template not found"})),
            _ => (405, json!({"error": "method not allowed"})),
        };
    }
    let default_index = match path_only.strip_suffix("/_bulk") {
        Some("") => None,
        Some(p) => Some(p.trim_start_matches('/').to_owned()),
        None => return (404, json!({"error": "not found"})),
    };
    if method != "POST" && method != "PUT" {
        return (405, json!({"error": "method not allowed"}));
    }
    st.requests += 1;
    let injected = if st.unavailable {
        Some(503)
    } else {
        st.fail_requests.pop_front()
    };
    if injected.is_none() && st.empty_ok_requests > 0 {
        st.empty_ok_requests -= 1;
        return (200, json!({}));
    }
    if let Some(status) = injected {
        let kind = if status == 429 {
            "es_rejected_execution_exception"
        } else {
            "unavailable_shards_exception"
        };
        return (
            status,
            json!({"error": {"type": kind, "reason": "injected"}, "status": status}),
        );
    }
    let body = if gzip {
        st.gzip_requests += 1;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return (
                400,
                json!({"error": {"type": "parse_exception", "reason": "bad gzip"}, "status": 400}),
            );
        }
        out
    } else {
        body
    };
    if st.max_content_length.is_some_and(|max| body.len() > max) {
        st.requests_413 += 1;
        return (413, Value::Null);
    }
    st.largest_body = st.largest_body.max(body.len());
    let text = String::from_utf8_lossy(&body).into_owned();
    if st.count_only {
        // Benchmarks: answer without parsing the documents, so the server costs little.
        // Item 429s are drawn as for stored documents.
        let n = text.lines().filter(|l| !l.trim().is_empty()).count() / 2;
        let mut errors = false;
        let items: Vec<Value> = (0..n)
            .map(|_| {
                if st.item_429_percent > 0 && st.random_percent() < st.item_429_percent {
                    st.items_429 += 1;
                    errors = true;
                    json!({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue capacity reached"}}})
                } else {
                    st.writes += 1;
                    json!({"index": {"status": 201}})
                }
            })
            .collect();
        return (200, json!({"took": 1, "errors": errors, "items": items}));
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action_line) = lines.next() {
        let Ok(action) = serde_json::from_str::<Value>(action_line) else {
            return (
                400,
                json!({"error": {"type": "illegal_argument_exception", "reason": format!("Malformed action/metadata line [{action_line}]")}, "status": 400}),
            );
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return (
                400,
                json!({"error": {"type": "illegal_argument_exception", "reason": "empty action"}, "status": 400}),
            );
        };
        let op = op.clone();
        let index = meta
            .get("_index")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or(default_index.clone())
            .unwrap_or_default();
        let doc = match lines.next().map(serde_json::from_str::<Value>) {
            Some(Ok(d)) => d,
            _ => {
                return (
                    400,
                    json!({"error": {"type": "illegal_argument_exception", "reason": "missing or bad document line"}, "status": 400}),
                )
            }
        };
        let id = match meta.get("_id").and_then(|v| v.as_str()) {
            Some(i) => i.to_owned(),
            None => {
                st.auto_id += 1;
                format!("auto-{}", st.auto_id)
            }
        };
        let result = store(&mut st, &op, &index, &id, doc);
        if result.get("error").is_some() {
            errors = true;
        }
        items.push(json!({ op: result }));
    }
    (200, json!({"took": 1, "errors": errors, "items": items}))
}

fn store(st: &mut EsState, op: &str, index: &str, id: &str, doc: Value) -> Value {
    let item = |status: u16, error: Option<Value>| {
        let mut v = json!({"_index": index, "_id": id, "status": status});
        if let Some(e) = error {
            v["error"] = e;
        } else {
            v["result"] = json!("created");
        }
        v
    };
    if st.item_429_percent > 0 && st.random_percent() < st.item_429_percent {
        st.items_429 += 1;
        return item(
            429,
            Some(
                json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation [queue capacity 1024 reached]"}),
            ),
        );
    }
    if st.item_503_percent > 0 && st.random_percent() < st.item_503_percent {
        st.items_503 += 1;
        return item(
            503,
            Some(
                json!({"type": "unavailable_shards_exception", "reason": "[campaign][0] primary shard is not active"}),
            ),
        );
    }
    if st.count_only {
        st.writes += 1;
        return item(201, None);
    }
    if let Some(never) = &st.unavailable_message_containing {
        if doc
            .get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.contains(never.as_str()))
        {
            st.items_503 += 1;
            return item(
                503,
                Some(
                    json!({"type": "unavailable_shards_exception", "reason": format!("[{index}][0] primary shard is not active")}),
                ),
            );
        }
    }
    if let Some(bad) = &st.reject_message_containing {
        if doc
            .get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.contains(bad.as_str()))
        {
            st.items_400 += 1;
            let reason = format!("failed to parse field [message] of type [long] in document with id '{id}'. Preview of field's value: '{}'", doc["message"]);
            return item(
                400,
                Some(json!({"type": "mapper_parsing_exception", "reason": reason})),
            );
        }
    }
    if let Err(reason) = check_mapping(
        st.mappings.entry(index.to_owned()).or_default(),
        "",
        &doc,
        id,
    ) {
        st.items_400 += 1;
        return item(
            400,
            Some(json!({"type": "mapper_parsing_exception", "reason": reason})),
        );
    }
    let key = (index.to_owned(), id.to_owned());
    if op == "create" && st.docs.contains_key(&key) {
        st.items_409 += 1;
        return item(
            409,
            Some(
                json!({"type": "version_conflict_engine_exception", "reason": format!("[{id}]: version conflict, document already exists")}),
            ),
        );
    }
    let existed = st.docs.insert(key, doc).is_some();
    st.writes += 1;
    let mut v = item(if existed { 200 } else { 201 }, None);
    v["result"] = json!(if existed { "updated" } else { "created" });
    v
}

/// Records the type of each field seen first; a later value of another kind is refused the way
/// Elasticsearch refuses it (strings into numbers, objects into concrete fields and back).
fn check_mapping(
    map: &mut HashMap<String, &'static str>,
    prefix: &str,
    v: &Value,
    id: &str,
) -> Result<(), String> {
    let Value::Object(o) = v else { return Ok(()) };
    for (k, val) in o {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let vals: Vec<&Value> = match val {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for x in vals {
            let kind: &'static str = match x {
                Value::Null => continue,
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "long",
                Value::Number(_) => "float",
                Value::String(_) => "text",
                Value::Array(_) => continue,
                Value::Object(_) => "object",
            };
            let mapped = *map.entry(path.clone()).or_insert(kind);
            let ok = match (mapped, kind) {
                (a, b) if a == b => true,
                ("long" | "float", "long" | "float") => true,
                ("text", "long" | "float" | "boolean") => true,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "failed to parse field [{path}] of type [{mapped}] in document with id '{id}'. Preview of field's value: '{x}'"
                ));
            }
            if kind == "object" {
                check_mapping(map, &path, x, id)?;
            }
        }
    }
    Ok(())
}

/// A request body as sent, gunzipped when its `content-encoding` says so.
fn decompress(body: &[u8], gzip: bool) -> std::io::Result<Vec<u8>> {
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}
