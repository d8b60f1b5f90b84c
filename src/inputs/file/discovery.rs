//! Finding the files to tail: glob patterns (`**` included) minus exclusions, rescanned on
//! filesystem events (inotify through `notify`) and on an interval for filesystems where events
//! are unreliable (NFS, overlay mounts, symlinked folders such as `/var/log/containers`).
//!
//! `glob` expands the patterns (it handles `**` and needs no directory walker of our own) and its
//! `Pattern` matches exclusions against the whole path, where `*` also crosses `/`, so
//! `*_kube-system_*` excludes by file name as users expect.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

pub struct Discovery {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Set by filesystem events that may add or remove files.
    rescan: Arc<AtomicBool>,
    warned: HashSet<String>,
}

/// Checks the patterns; the error names the first bad one.
pub fn compile_exclude(patterns: &[String]) -> Result<Vec<glob::Pattern>, String> {
    patterns
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| format!("`{p}` is not a glob pattern: {e}")))
        .collect()
}

pub fn check_include(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        glob::Pattern::new(p).map_err(|e| format!("`{p}` is not a glob pattern: {e}"))?;
        if !p.starts_with('/') {
            tracing::debug!(pattern = %p, "relative path pattern: resolved against the working directory");
        }
    }
    Ok(())
}

impl Discovery {
    /// With `use_events`, filesystem events wake the returned receiver (coalesced: it holds at
    /// most one pending wake-up), which the reader waits on between polls.
    pub fn new(
        include: Vec<String>,
        exclude: Vec<glob::Pattern>,
        use_events: bool,
    ) -> (Discovery, Receiver<()>) {
        let (tx, rx) = sync_channel(1);
        let rescan = Arc::new(AtomicBool::new(true));
        let watcher = if use_events {
            make_watcher(tx, rescan.clone())
        } else {
            None
        };
        (
            Discovery {
                include,
                exclude,
                watcher,
                watched: HashSet::new(),
                rescan,
                warned: HashSet::new(),
            },
            rx,
        )
    }

    /// Whether an event asked for a rescan since the last one.
    pub fn rescan_requested(&self) -> bool {
        self.rescan.load(Ordering::Relaxed)
    }

    /// The files the patterns match now, in a stable order, without the excluded ones.
    pub fn scan(&mut self) -> Vec<PathBuf> {
        self.rescan.store(false, Ordering::Relaxed);
        self.ensure_watches();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for pattern in &self.include {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(_) => continue,
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        let key = e.path().display().to_string();
                        if self.warned.insert(key) {
                            tracing::warn!(path = %e.path().display(), error = %e.error(), "cannot read while looking for files (logged once)");
                        }
                        continue;
                    }
                };
                if self.is_excluded(&path) || !seen.insert(path.clone()) {
                    continue;
                }
                out.push(path);
            }
        }
        out
    }

    fn is_excluded(&self, path: &Path) -> bool {
        let name = path.file_name().map(|n| n.to_string_lossy());
        self.exclude
            .iter()
            .any(|p| p.matches_path(path) || name.as_deref().is_some_and(|n| p.matches(n)))
    }

    /// Watches the fixed folder in front of each pattern (recursively for `**`); folders that
    /// do not exist yet are tried again at the next scan.
    fn ensure_watches(&mut self) {
        use notify::{RecursiveMode, Watcher};
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for pattern in &self.include {
            let (root, recursive) = watch_root(pattern);
            if self.watched.contains(&root) || !root.is_dir() {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(&root, mode) {
                Ok(()) => {
                    self.watched.insert(root);
                }
                Err(e) => {
                    if self.warned.insert(format!("watch:{}", root.display())) {
                        tracing::warn!(folder = %root.display(), error = %e, "cannot watch folder: relying on scan_interval (logged once)");
                    }
                }
            }
        }
    }
}

fn make_watcher(
    wake: SyncSender<()>,
    rescan: Arc<AtomicBool>,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind};
    let handler = move |res: notify::Result<notify::Event>| {
        let structural = match &res {
            Ok(ev) => !matches!(
                ev.kind,
                EventKind::Modify(ModifyKind::Data(_)) | EventKind::Access(_)
            ),
            Err(_) => true,
        };
        if structural {
            rescan.store(true, Ordering::Relaxed);
        }
        let _ = wake.try_send(());
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "filesystem events unavailable: relying on scan_interval and poll_interval");
            None
        }
    }
}

/// The folder before the first glob character, and whether matches may lie deeper than its
/// direct children.
pub fn watch_root(pattern: &str) -> (PathBuf, bool) {
    let mut root = PathBuf::new();
    let comps: Vec<&str> = pattern.split('/').collect();
    let mut i = 0;
    while i < comps.len() && !comps[i].contains(['*', '?', '[', '{']) {
        i += 1;
    }
    let fixed = if i == comps.len() { comps.len() - 1 } else { i };
    let joined = comps[..fixed].join("/");
    root.push(if joined.is_empty() {
        if pattern.starts_with('/') {
            "/"
        } else {
            "."
        }
    } else {
        joined.as_str()
    });
    let rest = comps.len() - fixed;
    (root, rest > 1 || pattern.contains("**"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_patterns() {
        assert_eq!(
            watch_root("/var/log/containers/*.log"),
            (PathBuf::from("/var/log/containers"), false)
        );
        assert_eq!(
            watch_root("/var/log/pods/**/*.log"),
            (PathBuf::from("/var/log/pods"), true)
        );
        assert_eq!(
            watch_root("/var/log/app.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(watch_root("/var/*/x/*.log"), (PathBuf::from("/var"), true));
    }

    #[test]
    fn scan_with_double_star_and_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        for f in [
            "x.log",
            "a/y.log",
            "a/b/z.log",
            "a/b/web_kube-system_c.log",
            "a/b/skip.txt",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        let pat = format!("{}/**/*.log", d.display());
        let excl = compile_exclude(&["*_kube-system_*".to_owned()]).unwrap();
        let (mut disc, _rx) = Discovery::new(vec![pat], excl, false);
        let mut got: Vec<String> = disc
            .scan()
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["a/b/z.log", "a/y.log", "x.log"]);
    }
}
