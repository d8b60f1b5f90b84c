//! The self-monitoring HTTP endpoint: `/metrics` (Prometheus text), `/health` (200, or 503
//! naming the failed component), plus endpoints that components add (`/api/graph`). A small
//! HTTP/1.1 server: one request per connection, bounded request size, no keep-alive.

use super::metrics::Registry;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// A handler for one path; `query` is what follows `?` (empty if none).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// Extra endpoints registered by components.
#[derive(Default, Clone)]
pub struct Endpoints {
    routes: Arc<Mutex<Vec<(String, Handler)>>>,
}

impl Endpoints {
    pub fn add(&self, path: &str, handler: Handler) {
        if let Ok(mut r) = self.routes.lock() {
            r.push((path.to_owned(), handler));
        }
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

/// Binds `address` now (so a bad address fails at start-up) and serves in the background.
pub async fn serve(
    address: &str,
    registry: Arc<Registry>,
    endpoints: Endpoints,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("http: cannot listen on {address}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "serving /metrics and /health");
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let resp = match read_request(&mut sock).await {
                    Some((method, target)) => route(&method, &target, &registry, &endpoints),
                    None => Response {
                        status: 400,
                        content_type: "text/plain",
                        body: "bad request\n".into(),
                    },
                };
                let reason = match resp.status {
                    200 => "OK",
                    400 => "Bad Request",
                    404 => "Not Found",
                    405 => "Method Not Allowed",
                    503 => "Service Unavailable",
                    _ => "",
                };
                let head = format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    resp.status,
                    reason,
                    resp.content_type,
                    resp.body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(resp.body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, String)> {
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
                    return Some((req.method?.to_owned(), req.path?.to_owned()));
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
            if failures.is_empty() {
                Response {
                    status: 200,
                    content_type: "application/json",
                    body: "{\"status\":\"ok\"}\n".into(),
                }
            } else {
                Response {
                    status: 503,
                    content_type: "application/json",
                    body: format!(
                        "{}\n",
                        serde_json::json!({"status": "failed", "failed": failures})
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
