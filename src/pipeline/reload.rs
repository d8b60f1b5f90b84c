//! Hot reload: asked by SIGHUP, by `--watch-config` and by `POST /-/reload`, served by the run
//! loop one at a time (`apply.rs` validates and replaces what changed), counted in
//! `trawl_config_reloads_total`.

use crate::config::{ConfigErrors, PipelineConfig};
use crate::telemetry::metrics::{Collector, Registry};
use crate::telemetry::server::{PostHandler, Response};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use super::live::run;

/// Reads the pipeline file again (the same loader `trawl run` started with).
pub type Loader = Arc<dyn Fn() -> Result<PipelineConfig, ConfigErrors> + Send + Sync>;

/// What a reload answers: a summary of what changed, or every error (one per line).
pub type Outcome = Result<String, String>;

/// A reload asked for, and who waits for its outcome.
pub struct Request {
    pub origin: &'static str,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// Asks the running pipeline for reloads (cheap to clone).
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
}

impl Handle {
    /// Asks without waiting. When reloads are already waiting, this one is covered by them (they
    /// read the file when they run), so a full queue is not an error.
    pub fn request(&self, origin: &'static str) {
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.tx.try_send(Request {
            origin,
            reply: None,
        }) {
            tracing::info!(origin, "reload asked while the pipeline stops: ignored");
        }
    }

    /// Asks and waits for the outcome.
    pub async fn request_and_wait(&self, origin: &'static str) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let request = Request {
            origin,
            reply: Some(tx),
        };
        if self.tx.send(request).await.is_err() {
            return Err("the pipeline is stopping".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the pipeline stopped before the reload ran".into()))
    }
}

/// The receiving side, given to the run.
pub struct Reloads {
    pub(super) requests: mpsc::Receiver<Request>,
    pub(super) load: Loader,
    pub(super) stats: Arc<ReloadStats>,
    /// When every input has ended and one that a reload started failed, wait for a corrected
    /// file rather than exit; false for a run that must end (`--once`).
    pub wait_after_failed_input: bool,
}

/// Reloads that read the file with `load`; their counters are published in `registry`.
pub fn channel(load: Loader, registry: &Registry) -> (Handle, Reloads) {
    // A few requests may wait; more add nothing, since each reads the file when it runs.
    let (tx, rx) = mpsc::channel(4);
    let stats = Arc::new(ReloadStats::new());
    registry.register(stats.clone());
    (
        Handle { tx },
        Reloads {
            requests: rx,
            load,
            stats,
            wait_after_failed_input: true,
        },
    )
}

/// `POST /-/reload`: answers 200 with what changed once the reload is applied, or 400 with
/// every error when the new file is refused (the running pipeline is then unchanged).
pub fn endpoint(handle: Handle) -> PostHandler {
    Arc::new(move || {
        let handle = handle.clone();
        Box::pin(async move {
            match handle.request_and_wait("POST /-/reload").await {
                Ok(summary) => Response {
                    status: 200,
                    content_type: "text/plain",
                    body: format!("reloaded: {summary}\n"),
                },
                Err(errors) => Response {
                    status: 400,
                    content_type: "text/plain",
                    body: format!("reload refused, the running pipeline is unchanged:\n{errors}\n"),
                },
            }
        })
    })
}

/// `trawl_config_reloads_total{result}` and the time of the last successful reload (the start
/// counts as one, as in Prometheus's own `prometheus_config_last_reload_*`).
pub struct ReloadStats {
    success: AtomicU64,
    failure: AtomicU64,
    last_success: AtomicU64,
    last_ok: AtomicBool,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ReloadStats {
    fn new() -> ReloadStats {
        ReloadStats {
            success: AtomicU64::new(0),
            failure: AtomicU64::new(0),
            last_success: AtomicU64::new(now_secs()),
            last_ok: AtomicBool::new(true),
        }
    }

    pub(super) fn succeeded(&self) {
        self.success.fetch_add(1, Ordering::Relaxed);
        self.last_success.store(now_secs(), Ordering::Relaxed);
        self.last_ok.store(true, Ordering::Relaxed);
    }

    pub(super) fn failed(&self) {
        self.failure.fetch_add(1, Ordering::Relaxed);
        self.last_ok.store(false, Ordering::Relaxed);
    }
}

impl Collector for ReloadStats {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP trawl_config_reloads_total Reloads of the pipeline file, by result.\n# TYPE trawl_config_reloads_total counter\ntrawl_config_reloads_total{{result=\"success\"}} {}\ntrawl_config_reloads_total{{result=\"failure\"}} {}",
            self.success.load(Ordering::Relaxed),
            self.failure.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP trawl_config_last_reload_successful 1 when the last reload was applied (or none was asked), 0 when it was refused.\n# TYPE trawl_config_last_reload_successful gauge\ntrawl_config_last_reload_successful {}",
            u8::from(self.last_ok.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP trawl_config_last_reload_success_timestamp_seconds When the running pipeline was last loaded (start or reload).\n# TYPE trawl_config_last_reload_success_timestamp_seconds gauge\ntrawl_config_last_reload_success_timestamp_seconds {}",
            self.last_success.load(Ordering::Relaxed)
        );
    }
}

/// Watches the pipeline's sources for `--watch-config`: every folder named, and the folder of
/// every file named (where editors rename and where a Kubernetes ConfigMap swaps its `..data`
/// symlink), comparing content so that only a real change asks for a reload. Also rereads every
/// `poll` in case events are not delivered.
pub fn watch(paths: Vec<PathBuf>, handle: Handle, poll: std::time::Duration) {
    let folders: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = paths.iter().map(|p| watched_folder(p)).collect();
        f.sort();
        f.dedup();
        f
    };
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    let watcher = {
        use notify::{RecursiveMode, Watcher};
        let handler = move |_: notify::Result<notify::Event>| {
            let _ = wake_tx.try_send(());
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => {
                for folder in &folders {
                    if let Err(e) = w.watch(folder, RecursiveMode::NonRecursive) {
                        tracing::warn!(folder = %folder.display(), error = %e, "--watch-config: cannot watch the folder; rereading the sources every {poll:?}");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "--watch-config: filesystem events unavailable; rereading the sources every {poll:?}");
                None
            }
        }
    };
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    tracing::info!(sources = %names.join(", "), "watching the pipeline files for changes");
    tokio::spawn(async move {
        // Held for as long as the watch runs.
        let _watcher = watcher;
        let mut last = sources_content(&paths);
        loop {
            tokio::select! {
                _ = wake.recv() => {
                    // Let a burst of events (write, rename, symlink swap) settle first.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    while wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(poll) => {}
            }
            let now = sources_content(&paths);
            // A file missing for a moment (replaced by rename) is not a change.
            if now.is_some() && now != last {
                last = now;
                handle.request("--watch-config");
            }
        }
    });
}

/// The folder whose events tell that `path` may have changed: itself when it is a folder.
fn watched_folder(path: &std::path::Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Everything the sources hold, names included (a file added to or removed from a folder is a
/// change); `None` when one cannot be read right now.
fn sources_content(paths: &[PathBuf]) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| e.is_file())
                .collect();
            names.sort();
            for n in names {
                all.extend(n.to_string_lossy().as_bytes());
                all.extend(crate::config::read_source(&n).ok()?);
            }
        } else {
            all.extend(p.to_string_lossy().as_bytes());
            all.extend(crate::config::read_source(p).ok()?);
        }
    }
    Some(all)
}
