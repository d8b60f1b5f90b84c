//! The self-monitoring HTTP endpoint: `/metrics` (Prometheus text), `/health` (200, or 503
//! naming the failed component), plus endpoints that components add (`/api/graph`, the
//! `/api/tap` stream, `POST /-/reload`). A small HTTP/1.1 server: one request per connection,
//! bounded request size, no keep-alive.

use super::metrics::Registry;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// A handler for one path; `query` is what follows `?` (empty if none).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// An answer written as it comes: lines until the sender side ends or the client goes away.
pub struct Stream {
    pub content_type: &'static str,
    pub lines: tokio::sync::mpsc::Receiver<String>,
    /// Dropped when the answer ends, whatever ended it.
    pub guard: Box<dyn Send>,
}

/// A handler for a streamed path: a stream, or a plain answer (an error) instead.
pub type StreamHandler = Arc<dyn Fn(&str) -> Result<Stream, Response> + Send + Sync>;

/// A handler for `POST` on one path, answered once the action it asks for is done (a reload).
pub type PostHandler = Arc<dyn Fn() -> crate::inputs::BoxFuture<Response> + Send + Sync>;

/// Extra endpoints registered by components.
#[derive(Default, Clone)]
pub struct Endpoints {
    routes: Arc<Mutex<Vec<(String, Handler)>>>,
    streams: Arc<Mutex<Vec<(String, StreamHandler)>>>,
    posts: Arc<Mutex<Vec<(String, PostHandler)>>>,
}

impl Endpoints {
    /// Adds `path`, or replaces its handler (a component a reload rebuilt registers again).
    pub fn add(&self, path: &str, handler: Handler) {
        if let Ok(mut r) = self.routes.lock() {
            r.retain(|(p, _)| p != path);
            r.push((path.to_owned(), handler));
        }
    }

    pub fn add_stream(&self, path: &str, handler: StreamHandler) {
        if let Ok(mut r) = self.streams.lock() {
            r.retain(|(p, _)| p != path);
            r.push((path.to_owned(), handler));
        }
    }

    /// Adds (or replaces) the `POST` handler of `path`.
    pub fn add_post(&self, path: &str, handler: PostHandler) {
        if let Ok(mut r) = self.posts.lock() {
            r.retain(|(p, _)| p != path);
            r.push((path.to_owned(), handler));
        }
    }

    fn find_stream(&self, path: &str) -> Option<StreamHandler> {
        self.streams
            .lock()
            .ok()?
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
    }

    fn find_post(&self, path: &str) -> Option<PostHandler> {
        self.posts
            .lock()
            .ok()?
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
    }

    fn find(&self, path: &str) -> Option<Handler> {
        self.routes
            .lock()
            .ok()?
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
    }
}

/// Who may ask: `Some(token)` requires `Authorization: Bearer <token>` on every request.
#[derive(Clone, Default)]
pub struct Access {
    pub bearer_token: Option<String>,
}

/// Binds `address` (`host:port`, or `unix:/path` for a socket only local processes with file
/// permissions reach) now, so a bad address fails at start-up, and serves in the background.
pub async fn serve(
    address: &str,
    registry: Arc<Registry>,
    endpoints: Endpoints,
    access: Access,
) -> anyhow::Result<String> {
    let state = Arc::new((registry, endpoints, access));
    if let Some(path) = address.strip_prefix("unix:") {
        let path = std::path::PathBuf::from(path);
        crate::inputs::socket::remove_stale_socket(&path)
            .map_err(|e| anyhow::anyhow!("http: {e:#}"))?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| anyhow::anyhow!("http: cannot listen on {address}: {e}"))?;
        tracing::info!(address = %address, "serving /metrics and /health");
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((sock, _)) => {
                        tokio::spawn(answer(sock, state.clone()));
                    }
                    Err(e) => accept_failed(e).await,
                }
            }
        });
        return Ok(address.to_owned());
    }
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("http: cannot listen on {address}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "serving /metrics and /health");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((sock, _)) => {
                    tokio::spawn(answer(sock, state.clone()));
                }
                Err(e) => accept_failed(e).await,
            }
        }
    });
    Ok(local.to_string())
}

async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "http: accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// Reads one request and writes its answer.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    state: Arc<(Arc<Registry>, Endpoints, Access)>,
) {
    let (registry, endpoints, access) = &*state;
    let (resp, head_only) = match read_request(&mut sock).await {
        Some(req) if !authorized(access, req.authorization.as_deref()) => (
            Response {
                status: 401,
                content_type: "text/plain",
                body: "a bearer token is required\n".into(),
            },
            req.method == "HEAD",
        ),
        Some(req) => {
            let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
            if let Some(handler) = endpoints.find_stream(path).filter(|_| req.method == "GET") {
                match handler(query) {
                    Ok(stream) => return write_stream(sock, stream).await,
                    Err(resp) => (resp, false),
                }
            } else {
                let post = (req.method == "POST")
                    .then(|| endpoints.find_post(path))
                    .flatten();
                let resp = match post {
                    Some(h) => h().await,
                    None => route(&req.method, &req.target, registry, endpoints),
                };
                (resp, req.method == "HEAD")
            }
        }
        None => (
            Response {
                status: 400,
                content_type: "text/plain",
                body: "bad request\n".into(),
            },
            false,
        ),
    };
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        409 => "Conflict",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    let extra = match resp.status {
        401 => "WWW-Authenticate: Bearer\r\n",
        405 => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        resp.status,
        reason,
        resp.content_type,
        resp.body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    // A HEAD answer has the GET answer's headers and no body (RFC 9110 9.3.2).
    if !head_only {
        let _ = sock.write_all(resp.body.as_bytes()).await;
    }
    let _ = sock.shutdown().await;
}

/// Writes a stream's lines as they come, the body delimited by the connection's close
/// (RFC 9112 6.3). Ends when the stream does, or as soon as the client closes its side: a
/// client gone while nothing is written is seen by the read, not only by a failed write.
async fn write_stream<S: AsyncRead + AsyncWrite + Unpin>(sock: S, mut stream: Stream) {
    let (mut rd, mut wr) = tokio::io::split(sock);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        stream.content_type
    );
    if wr.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 256];
    let mut chunk = String::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            line = stream.lines.recv() => {
                let Some(line) = line else { break };
                chunk.clear();
                chunk.push_str(&line);
                chunk.push('\n');
                // What else is queued goes in the same write.
                while chunk.len() < 60 * 1024 {
                    match stream.lines.try_recv() {
                        Ok(l) => {
                            chunk.push_str(&l);
                            chunk.push('\n');
                        }
                        Err(_) => break,
                    }
                }
                if wr.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
            n = rd.read(&mut scratch) => {
                if matches!(n, Ok(0) | Err(_)) {
                    break;
                }
            }
        }
    }
    drop(stream.guard);
    let _ = wr.shutdown().await;
}

/// Compares in constant time, so the answer's timing does not reveal the token's prefix.
fn authorized(access: &Access, header: Option<&str>) -> bool {
    let Some(token) = &access.bearer_token else {
        return true;
    };
    let Some(given) = header.and_then(|h| {
        h.get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| h[7..].trim())
    }) else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
}

async fn read_request<S: AsyncRead + Unpin>(sock: &mut S) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let authorization = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::to_owned);
                    return Some(Request {
                        method: req.method?.to_owned(),
                        target: req.path?.to_owned(),
                        authorization,
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

fn route(method: &str, target: &str, registry: &Registry, endpoints: &Endpoints) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response {
            status: 405,
            content_type: "text/plain",
            body: "only GET\n".into(),
        };
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: registry.render(),
        },
        "/health" => {
            let failures = registry.failures();
            let failing = registry.failing_outputs(std::time::SystemTime::now());
            let starting = registry.starting();
            if failures.is_empty() && failing.is_empty() && starting.is_empty() {
                Response {
                    status: 200,
                    content_type: "application/json",
                    body: "{\"status\":\"ok\"}\n".into(),
                }
            } else if failures.is_empty() && failing.is_empty() {
                // Not ready yet (a readiness probe keeps the pod out until then), not failed.
                Response {
                    status: 503,
                    content_type: "application/json",
                    body: format!(
                        "{}\n",
                        serde_json::json!({ "status": "starting", "starting": starting })
                    ),
                }
            } else {
                Response {
                    status: 503,
                    content_type: "application/json",
                    body: format!(
                        "{}\n",
                        serde_json::json!({
                            "status": "failed",
                            "failed": failures,
                            "failing_outputs": failing.iter().map(|f| serde_json::json!({
                                "output": f.name,
                                "failing_since": rfc3339(f.since),
                                "last_error": f.reason,
                            })).collect::<Vec<_>>(),
                        })
                    ),
                }
            }
        }
        _ => match endpoints.find(path) {
            Some(h) => h(query),
            None => Response {
                status: 404,
                content_type: "text/plain",
                body: "not found\n".into(),
            },
        },
    }
}

/// `since` as an RFC 3339 UTC timestamp (second precision), what people paste into queries.
fn rfc3339(since: std::time::SystemTime) -> String {
    let secs = since
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "server_fuzz.rs"]
mod fuzz;
