//! The HTTP side of the Elasticsearch output: one connection pool over every configured host,
//! round-robin with failover (a host that fails a connection is skipped for a while), basic
//! auth or API key, and TLS with verification on unless turned off. Hosts are written as Beats
//! take them: `es:9200` without a scheme means `http://es:9200`.

use super::Config;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::{Deserialize, Deserializer};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a host that failed a connection is passed over.
const HOST_PAUSE: Duration = Duration::from_secs(5);

struct Host {
    /// The URL without credentials: what requests go to and what logs may print.
    base: String,
    /// `Authorization` from credentials written in the URL (`http://user:pass@host`), sent as
    /// a header so that the password never appears in an error or a log line.
    auth: Option<HeaderValue>,
    down_until: Mutex<Option<Instant>>,
    /// Requests sent to this host and not answered yet.
    in_flight: AtomicUsize,
    /// Set once its connection failure was logged, until it answers again: each unreachable
    /// host of several is named once, not only the first, nor one per request.
    said_down: AtomicBool,
}

/// Counts a request in its host's `in_flight` for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn start(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `url` with any `user:password@` removed, for messages.
pub fn without_userinfo(url: &str) -> String {
    // `user:pass@host:9200` (no scheme) is how Beats users may write it too.
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &url[scheme_end + at + 1..]),
        None => url.to_owned(),
    }
}

/// The base URL without credentials, and a Basic `Authorization` from them if there were any.
fn split_credentials(base: &str) -> Result<(String, Option<HeaderValue>), String> {
    let url =
        reqwest::Url::parse(base).map_err(|e| format!("host `{}`: {e}", without_userinfo(base)))?;
    if url.username().is_empty() && url.password().is_none() {
        return Ok((base.to_owned(), None));
    }
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| {
            format!(
                "host `{}`: the credentials in the URL are not valid percent-encoded UTF-8",
                without_userinfo(base)
            )
        })
    };
    let user = decode(url.username())?;
    let pass = decode(url.password().unwrap_or(""))?;
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64(format!("{user}:{pass}").as_bytes())
    ))
    .map_err(|_| format!("host `{}`: invalid credentials", without_userinfo(base)))?;
    v.set_sensitive(true);
    Ok((without_userinfo(base), Some(v)))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub struct Client {
    http: reqwest::Client,
    hosts: Vec<Host>,
    next: AtomicUsize,
    path_and_query: String,
    gzip: bool,
}

/// A node's base URL from `hosts`, checked when the configuration is read, so that a bad one is
/// reported at its own `file:line:col`.
#[derive(Clone, PartialEq)]
pub struct HostUrl(String);

/// Without the credentials a URL may hold, should a configuration ever be debug-printed.
impl std::fmt::Debug for HostUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostUrl")
            .field(&without_userinfo(&self.0))
            .finish()
    }
}

/// The port Beats add to a host written without scheme or port.
const DEFAULT_PORT: u16 = 9200;

impl HostUrl {
    /// `http://` or `https://` URLs as written; `host`, `host:port` and `[v6]:port` without a
    /// scheme (what Beats configurations hold) get `http://`, and port 9200 if none is given.
    pub fn parse(s: &str) -> Result<HostUrl, String> {
        let s = s.trim().trim_end_matches('/');
        let shown = without_userinfo(s);
        if s.is_empty() {
            return Err("empty host: expected `host:port` or an http:// or https:// URL".into());
        }
        let base = if s.contains("://") {
            s.to_owned()
        } else {
            let bare = reqwest::Url::parse(&format!("http://{s}"))
                .map_err(|e| format!("host `{shown}`: {e}"))?;
            // `http//es:9200` or `https:es` would otherwise be a node named `http`.
            if let Some(scheme @ ("http" | "https")) = bare.host_str() {
                return Err(format!(
                    "host `{shown}`: `{scheme}` must be followed by `://` (e.g. `{scheme}://es:9200`)"
                ));
            }
            match bare.port() {
                Some(_) => format!("http://{s}"),
                None => format!("http://{s}:{DEFAULT_PORT}"),
            }
        };
        let url = reqwest::Url::parse(&base).map_err(|e| format!("host `{shown}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "host `{shown}`: scheme `{}` is not http:// or https://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("host `{shown}`: no host name"));
        }
        Ok(HostUrl(base))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for HostUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor lets the error carry the value's position.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HostUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a host such as es:9200 or https://es.example.com:9200")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HostUrl, E> {
                HostUrl::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The certificates of a PEM bundle (`tls.ca_file`); an error names the file.
pub fn root_certificates(ca: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", ca.display()));
    }
    Ok(certs)
}

/// An HTTP answer to a bulk request.
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, String> {
        if config.hosts.is_empty() {
            return Err("`hosts` must list at least one Elasticsearch URL".into());
        }
        let mut hosts = Vec::new();
        for h in &config.hosts {
            let (base, auth) = split_credentials(h.as_str())?;
            hosts.push(Host {
                base,
                auth,
                down_until: Mutex::new(None),
                in_flight: AtomicUsize::new(0),
                said_down: AtomicBool::new(false),
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if config.compression == super::Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        match (&config.api_key, &config.username) {
            (Some(_), Some(_)) => {
                return Err("set either `api_key` or `username`/`password`, not both".into())
            }
            (Some(key), None) => {
                let v = HeaderValue::from_str(&format!("ApiKey {key}"))
                    .map_err(|_| "`api_key` has characters a header cannot carry".to_owned())?;
                headers.insert(AUTHORIZATION, v);
            }
            (None, Some(user)) => {
                let pass = config.password.clone().unwrap_or_default();
                let token = base64(format!("{user}:{pass}").as_bytes());
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| "invalid username".to_owned())?;
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            (None, None) => {}
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .timeout(config.request_timeout.std())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(config.concurrency.max(1))
            .danger_accept_invalid_certs(!config.tls.verify);
        if let Some(ca) = &config.tls.ca_file {
            let certs = root_certificates(ca).map_err(|e| format!("tls.ca_file {e}"))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        // The cluster's own wait for a shard (an unassigned primary, a red index) is 1 m by
        // default, as long as `request_timeout`: the whole request would time out first, on
        // every attempt, and the items bound for that shard would never get the per-item
        // answer (503) that `max_item_age` and the dead letters act on, holding their batch
        // forever. Half the request timeout leaves the answer time to come.
        let wait_ms = (config.request_timeout.std().as_millis() / 2).max(1);
        let path_and_query = match &config.pipeline {
            Some(p) => format!("/_bulk?timeout={wait_ms}ms&pipeline={}", url_encode(p)),
            None => format!("/_bulk?timeout={wait_ms}ms"),
        };
        Ok(Client {
            http,
            hosts,
            next: AtomicUsize::new(0),
            path_and_query,
            gzip: config.compression == super::Compression::Gzip,
        })
    }

    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// The host not paused with the fewest requests in flight, the next in turn among equals
    /// (or the next in turn when all are paused). A node that hangs with its connections open
    /// (a long GC pause, a stopped JVM) answers nothing until `request_timeout`: taking turns
    /// alone would hand it a request every other time until every slot of `concurrency` waited
    /// on it, while the other nodes idle. Counting what each holds, it keeps one.
    /// Counted in the host's `in_flight` as it is picked, so that requests picked at once on
    /// other threads see it.
    fn pick(&self) -> (usize, InFlight<'_>) {
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, usize)> = None;
        for k in 0..self.hosts.len() {
            let i = (start + k) % self.hosts.len();
            let host = &self.hosts[i];
            let up = host
                .down_until
                .lock()
                .map(|d| d.is_none_or(|t| t <= now))
                .unwrap_or(true);
            let load = host.in_flight.load(Ordering::Relaxed);
            if up && best.is_none_or(|(_, least)| load < least) {
                best = Some((i, load));
            }
        }
        let i = best.map_or(start % self.hosts.len(), |(i, _)| i);
        (i, InFlight::start(&self.hosts[i].in_flight))
    }

    /// POSTs one bulk body. `Err` for connection problems and timeouts (the host is paused).
    pub async fn bulk(&self, body: Vec<u8>) -> Result<Answer, String> {
        let body = bytes::Bytes::from(body);
        let req = |base: &str| {
            let url = format!("{base}{}", self.path_and_query);
            self.http.post(url).body(body.clone())
        };
        self.execute(req).await
    }

    /// Sends a request with an optional JSON body (compressed like bulk bodies) to `path`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        json: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let body = match json {
            Some(j) if self.gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(j)
                    .and_then(|_| enc.finish())
                    .map_err(|e| format!("compressing a request body: {e}"))?
            }
            Some(j) => j.to_vec(),
            None => Vec::new(),
        };
        let body = bytes::Bytes::from(body);
        let req = |base: &str| {
            let r = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header(CONTENT_TYPE, "application/json");
            if json.is_some() {
                r.body(body.clone())
            } else {
                r
            }
        };
        self.execute(req).await
    }

    /// Sends the request `make` builds for the next host, reading the whole answer. A host that
    /// refuses the connection (nothing was sent) is paused and the next one not paused is tried
    /// at once, so that a wrong or dead host among several costs no retry back-off.
    async fn execute(
        &self,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, String> {
        let mut tried = 0;
        loop {
            let (i, _counted) = self.pick();
            let host = &self.hosts[i];
            let result = async {
                let mut req = make(&host.base);
                if let Some(auth) = &host.auth {
                    req = req.header(AUTHORIZATION, auth.clone());
                }
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>(Answer { status, body })
            }
            .await;
            let e = match result {
                Ok(a) => {
                    if host.said_down.swap(false, Ordering::Relaxed) {
                        tracing::info!(host = %host.base, "Elasticsearch host answers again");
                    }
                    return Ok(a);
                }
                Err(e) => e,
            };
            if let Ok(mut d) = host.down_until.lock() {
                *d = Some(Instant::now() + HOST_PAUSE);
            }
            let error = format!("{}: {}", host.base, error_chain(&e));
            tried += 1;
            let others_up = self.hosts.len() > 1 && self.any_up();
            if !host.said_down.swap(true, Ordering::Relaxed) && others_up {
                tracing::warn!(host = %host.base, error = %error, "Elasticsearch host unreachable: requests go to the other hosts, it is tried again every 5 s (logged once per host until it answers)");
            }
            if !e.is_connect() || tried >= self.hosts.len() || !others_up {
                return Err(error);
            }
        }
    }

    /// Whether some host is not paused.
    fn any_up(&self) -> bool {
        let now = Instant::now();
        self.hosts.iter().any(|h| {
            h.down_until
                .lock()
                .map(|d| d.is_none_or(|t| t <= now))
                .unwrap_or(true)
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding, for the basic auth header.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
        assert_eq!(url_encode("my pipe/1"), "my%20pipe%2F1");
    }

    #[test]
    fn hosts_are_read_as_beats_read_them() {
        let parsed = |s: &str| HostUrl::parse(s).map(|h| h.as_str().to_owned());
        assert_eq!(parsed("es:9200").unwrap(), "http://es:9200");
        assert_eq!(parsed("es").unwrap(), "http://es:9200");
        assert_eq!(parsed("10.0.0.5:9201/").unwrap(), "http://10.0.0.5:9201");
        assert_eq!(parsed("[::1]:9200").unwrap(), "http://[::1]:9200");
        assert_eq!(
            parsed("https://es.example.com").unwrap(),
            "https://es.example.com"
        );
        assert_eq!(
            parsed("http://es:9200/prefix").unwrap(),
            "http://es:9200/prefix"
        );
        assert!(parsed("ftp://es:21").unwrap_err().contains("ftp"));
        assert!(parsed("es:port").is_err());
        assert!(parsed("").is_err());
        for typo in ["http//es:9200", "https:/es", "HTTPS//es"] {
            let err = parsed(typo).unwrap_err();
            assert!(err.contains("must be followed by `://`"), "{typo}: {err}");
        }
    }
}
