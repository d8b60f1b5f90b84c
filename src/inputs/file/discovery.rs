//! Finding the files to tail: glob patterns (`**` included) minus exclusions, rescanned on
//! filesystem events (inotify through `notify`) and on an interval for filesystems where events
//! are unreliable (NFS, overlay mounts, symlinked folders such as `/var/log/containers`).
//!
//! Matched symlinks (kubelet's `/var/log/containers/*.log` point into `/var/log/pods`) also get
//! their target's folder watched: kubelet rotates the target, not the link, and a watch on the
//! link's folder alone would see neither the rotation nor the new file until the next scan.
//!
//! `glob` expands the patterns (it handles `**` and needs no directory walker of our own) and its
//! `Pattern` matches exclusions against the whole path, where `*` also crosses `/`, so
//! `*_kube-system_*` excludes by file name as users expect.

use super::identity::FileKey;
use super::stats::FileStats;
use crate::pipeline::channel::Shutdown;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Discovery {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    warned: HashSet<String>,
    /// Where files under `paths` were renamed to, from rename events: a file renamed out of
    /// `paths` faster than a scan could see it is still found and read.
    renamed_to: Arc<Mutex<Vec<Renamed>>>,
    /// Files that matched symlinks point to, with the link: renaming one (kubelet's rotation)
    /// counts as a rename out of `paths`, and the file keeps the link's name (which carries the
    /// pod, namespace and container id).
    link_targets: Arc<Mutex<HashMap<PathBuf, PathBuf>>>,
    /// Shared with the watcher: each scan tells it which files no descriptor holds.
    written: Arc<Mutex<Written>>,
    /// Folders watched because a matched symlink points into them.
    target_dirs: HashSet<PathBuf>,
    /// Where rotated files forgotten past `MAX_RENAMES` are counted.
    stats: Arc<FileStats>,
}

/// A file renamed out of `paths`: where it is now, and the name it had under `paths`.
pub struct Renamed {
    pub to: PathBuf,
    pub name: PathBuf,
}

/// Most rename destinations remembered between two scans.
const MAX_RENAMES: usize = 4096;

/// Paths written to since the reader last looked, from filesystem events. The reader reopens a
/// file it closed (`close_inactive`, or to free a slot) as soon as it is written to: found only
/// at the next scan (writes start none), a file written and then deleted within `scan_interval`
/// would have its new lines lost, since a file with no name can no longer be opened.
///
/// The reader may be slow to look (waiting for room while an output is down, or reading other
/// files): a file written and deleted meanwhile would be gone. So the watcher itself opens a
/// closed file it sees written (`closed`, kept by the reader), within the slots `max_open_files`
/// leaves (`spare`), and the reader reopens the file with that descriptor (`held`).
#[derive(Default)]
pub struct Written {
    pub paths: HashSet<PathBuf>,
    /// More distinct paths were written than are kept: the reader looks at every closed file.
    pub overflowed: bool,
    /// The closed files the reader follows, by each path a write event may name (the followed
    /// path and, for a symlink, its target).
    pub closed: HashMap<PathBuf, FileKey>,
    /// Slots under `max_open_files` the watcher may take for `held`.
    pub spare: usize,
    /// Closed files seen written, opened by the watcher for the reader to take.
    pub held: HashMap<FileKey, File>,
    /// Files the latest scan found that no descriptor holds (not followed, and discovery's
    /// descriptors all taken), by path.
    pub unheld: HashMap<PathBuf, FileKey>,
    /// Sizes of closed and unheld files seen by scans and at writes when no slot was spare:
    /// the reader may be held up (an output down) while such a file is written and deleted,
    /// and then never sees it; what it is told here is counted as lost
    /// (`trawl_file_skipped_files_total`), not lost without a word.
    pub sizes: HashMap<FileKey, (PathBuf, u64)>,
}

impl Written {
    /// Notes a write to `path`; opens it when it is a closed file and a slot is spare.
    fn note(&mut self, path: &Path) {
        if self.paths.len() < MAX_WRITTEN {
            if !self.paths.contains(path) {
                self.paths.insert(path.to_path_buf());
            }
        } else if !self.paths.contains(path) {
            self.overflowed = true;
        }
        let Some(&key) = self.closed.get(path) else {
            if let Some(&key) = self.unheld.get(path) {
                self.note_size(path, key);
            }
            return;
        };
        if self.held.contains_key(&key) {
            return;
        }
        if self.held.len() >= self.spare {
            self.note_size(path, key);
            return;
        }
        if let Ok(file) = File::open(path) {
            // The name may lead to another file by now (renamed away, a new one in its place).
            if file.metadata().is_ok_and(|m| FileKey::of(&m) == key) {
                self.held.insert(key, file);
            }
        }
    }

    /// Notes the size a file without a descriptor has now (a stat; only files waiting for a
    /// slot are looked at, so only while `max_open_files` is reached).
    fn note_size(&mut self, path: &Path, key: FileKey) {
        if self.sizes.len() >= MAX_WRITTEN && !self.sizes.contains_key(&key) {
            return;
        }
        if let Some(md) = std::fs::metadata(path)
            .ok()
            .filter(|m| FileKey::of(m) == key)
        {
            self.noted(key, path, md.len());
        }
    }

    fn noted(&mut self, key: FileKey, path: &Path, size: u64) {
        match self.sizes.get_mut(&key) {
            Some(noted) => noted.1 = noted.1.max(size),
            None => {
                self.sizes.insert(key, (path.to_path_buf(), size));
            }
        }
    }
}

/// Most written-to paths kept between two turns of the reader.
const MAX_WRITTEN: usize = 1024;

/// What the discovery thread found, shared with the reader.
#[derive(Default)]
pub struct Found {
    /// Bumped by every scan.
    pub generation: u64,
    /// The latest scan: every matching file and its identity, in a stable order.
    pub current: Vec<(PathBuf, FileKey)>,
    /// Files opened by discovery that the reader has not taken yet. Opening a file as soon as it
    /// appears keeps it readable even if it is renamed out of `paths` or deleted before the
    /// reader (maybe waiting on a full pipeline) gets to it: no rotation is fast enough to lose it.
    pub opened: HashMap<FileKey, (PathBuf, File)>,
    /// Descriptors of `opened` the reader has taken for its turn and may give back (files
    /// still waiting for a slot): counted with `opened`, or a scan during the turn would open
    /// one more and discovery would hold more than `max_open_files` once they are back.
    pub lent: usize,
    /// Files the reader follows or has decided about (discovery leaves them alone).
    pub followed: HashSet<FileKey>,
    /// Rotated files beside the targets of matched symlinks (`0.log.20261123-100000`), named by
    /// their link: outside `paths`, but the reader resumes those its registry still has, which
    /// kubelet rotated while trawl was down (a rolling update, a crash). Listed by the first
    /// scan, and after it beside the targets of links new since the scan before (a pod whose
    /// first `0.log` kubelet rotated before a scan found its link); left until the reader's
    /// next turn takes them: later rotations of a followed target are seen as renames.
    pub rotated: Vec<(PathBuf, FileKey, PathBuf)>,
    /// The compressed ones (`0.log.20261123-100000.gz`), named by their link, listed when
    /// `rotated` is: kubelet gzips a rotated file at its next rotation, so a container
    /// rotated three times while trawl was down has lines trawl never saw only there.
    pub compressed: Vec<(PathBuf, PathBuf)>,
    /// Files waiting for a slot that the reader found renamed out of `paths` in their folder
    /// (without `watch_events`, no rename event tells discovery): handled as the watcher's.
    pub renamed_waiting: Vec<Renamed>,
}

/// What rotation left beside the targets of matched symlinks, as `Found` lists it.
#[derive(Default)]
struct BesideTargets {
    rotated: Vec<(PathBuf, FileKey, PathBuf)>,
    compressed: Vec<(PathBuf, PathBuf)>,
}

/// Scans on every filesystem event that may add or remove files and every `scan_every`, until
/// shutdown; wakes the reader after each scan.
pub fn spawn(
    mut discovery: Discovery,
    events: Receiver<()>,
    found: Arc<Mutex<Found>>,
    wake_reader: SyncSender<()>,
    scan_every: Duration,
    max_open: usize,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("trawl-file-scan".into())
        .spawn(move || {
            let mut first_scan = true;
            loop {
                let known_targets = discovery.target_paths();
                let paths = discovery.scan();
                let BesideTargets {
                    rotated,
                    compressed,
                } = if first_scan {
                    discovery.rotated_beside_targets(None)
                } else {
                    discovery.rotated_beside_targets(Some(&known_targets))
                };
                let mut renamed: Vec<Renamed> = discovery
                    .renamed_to
                    .lock()
                    .map(|mut r| std::mem::take(&mut *r))
                    .unwrap_or_default();
                if let Ok(mut f) = found.lock() {
                    // The reader finds a waiting file's rename again at each scan until it
                    // gets a slot: once in the list is enough.
                    if !f.renamed_waiting.is_empty() {
                        let mut listed: HashSet<PathBuf> =
                            renamed.iter().map(|r| r.to.clone()).collect();
                        for r in std::mem::take(&mut f.renamed_waiting) {
                            if listed.insert(r.to.clone()) {
                                renamed.push(r);
                            }
                        }
                    }
                }
                let mut current = Vec::with_capacity(paths.len());
                let mut sizes = Vec::with_capacity(paths.len());
                for path in paths {
                    if let Ok(md) = std::fs::metadata(&path) {
                        if md.is_file() {
                            current.push((path, FileKey::of(&md)));
                            sizes.push(md.len());
                        }
                    }
                }
                let mut unheld = Vec::new();
                if let Ok(mut f) = found.lock() {
                    for (path, key) in &current {
                        if f.followed.contains(key)
                            || f.opened.contains_key(key)
                            || f.opened.len() + f.lent >= max_open
                        {
                            continue;
                        }
                        if let Ok(file) = File::open(path) {
                            // The path may have moved to another file between stat and open.
                            if file
                                .metadata()
                                .map(|m| FileKey::of(&m) == *key)
                                .unwrap_or(false)
                            {
                                f.opened.insert(*key, (path.clone(), file));
                            }
                        }
                    }
                    let mut no_slot = Vec::new();
                    for Renamed { to, name } in renamed {
                        if discovery.is_excluded(&to) {
                            continue;
                        }
                        if f.opened.len() + f.lent >= max_open {
                            // A file waiting for a slot and renamed out of `paths` (kubelet's
                            // rotation) is found by no later scan: its rename is kept for the
                            // next one instead, or the file would never be read. One the
                            // reader follows, or gone, needs nothing.
                            let waiting = std::fs::metadata(&to)
                                .is_ok_and(|m| !f.followed.contains(&FileKey::of(&m)));
                            if waiting {
                                no_slot.push(Renamed { to, name });
                            }
                            continue;
                        }
                        if let Ok(file) = File::open(&to) {
                            if let Ok(md) = file.metadata() {
                                let key = FileKey::of(&md);
                                if md.is_file() && !f.followed.contains(&key) {
                                    let path = if name == to { to } else { name };
                                    f.opened.entry(key).or_insert((path, file));
                                }
                            }
                        }
                    }
                    if !no_slot.is_empty() {
                        if let Ok(mut r) = discovery.renamed_to.lock() {
                            // Older renames first; the bound holds across scans.
                            no_slot.append(&mut r);
                            let over = no_slot.len().saturating_sub(MAX_RENAMES);
                            discovery.stats.forgot_rotated(over, MAX_RENAMES);
                            no_slot.truncate(MAX_RENAMES);
                            *r = no_slot;
                        }
                    }
                    unheld = current
                        .iter()
                        .zip(&sizes)
                        .filter(|((_, k), _)| !f.followed.contains(k) && !f.opened.contains_key(k))
                        .map(|((p, k), len)| (p.clone(), *k, *len))
                        .collect();
                    f.current = current;
                    // Kept until the reader takes them, which may be after several scans.
                    f.rotated.extend(rotated);
                    let over = f.rotated.len().saturating_sub(MAX_RENAMES);
                    discovery.stats.forgot_rotated(over, MAX_RENAMES);
                    f.rotated.truncate(MAX_RENAMES);
                    f.compressed.extend(compressed);
                    let over = f.compressed.len().saturating_sub(MAX_RENAMES);
                    discovery.stats.forgot_rotated(over, MAX_RENAMES);
                    f.compressed.truncate(MAX_RENAMES);
                    f.generation += 1;
                }
                discovery.publish_unheld(unheld);
                let _ = wake_reader.try_send(());
                if shutdown.is_triggered() {
                    return;
                }
                match events.recv_timeout(scan_every) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(scan_every),
                }
                if shutdown.is_triggered() {
                    return;
                }
                first_scan = false;
            }
        })
}

/// Where files now are that had the names given (by identity), looked for by device + inode in
/// the folder of their old name: what a rotation (`app.log` → `app.log.1`) left there. Each
/// folder is listed once.
pub fn find_renamed(old_names: &HashMap<FileKey, PathBuf>) -> Vec<(FileKey, PathBuf)> {
    let folders: HashSet<&Path> = old_names.values().filter_map(|p| p.parent()).collect();
    let mut out = Vec::new();
    for folder in folders {
        let Ok(listing) = std::fs::read_dir(folder) else {
            continue;
        };
        for item in listing.flatten() {
            let Ok(md) = item.metadata() else { continue };
            let key = FileKey::of(&md);
            if md.is_file() && old_names.contains_key(&key) {
                out.push((key, item.path()));
            }
        }
    }
    out
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
    /// Tells the watcher which files no descriptor holds, with their sizes now (see
    /// `Written::sizes`).
    fn publish_unheld(&self, unheld: Vec<(PathBuf, FileKey, u64)>) {
        // Writes through a link (kubelet's `/var/log/containers`) name its target: the scan
        // just found the targets (`follow_link_targets`).
        let targets: HashMap<PathBuf, PathBuf> = if unheld.is_empty() {
            HashMap::new()
        } else {
            self.link_targets
                .lock()
                .map(|t| {
                    t.iter()
                        .map(|(target, link)| (link.clone(), target.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let Ok(mut w) = self.written.lock() else {
            return;
        };
        w.unheld.clear();
        for (path, key, size) in unheld {
            if size > 0 {
                w.noted(key, &path, size);
            }
            // Written between the scan's look and now, its write events were not noted (it was
            // not listed yet): deleted before the reader's next look, those lines would be lost
            // uncounted. Later writes are noted by the watcher.
            w.note_size(&path, key);
            if let Some(target) = targets.get(&path) {
                w.unheld.insert(target.clone(), key);
            }
            w.unheld.insert(path, key);
        }
    }

    /// With `use_events`, filesystem events wake the returned receivers (coalesced: each holds
    /// at most one pending wake-up): the returned one on events that may add or remove files
    /// (for the scanner), `wake_reader` on any event, writes included.
    pub fn new(
        include: Vec<String>,
        exclude: Vec<glob::Pattern>,
        use_events: bool,
        wake_reader: SyncSender<()>,
        written: Arc<Mutex<Written>>,
        stats: Arc<FileStats>,
    ) -> (Discovery, Receiver<()>) {
        let (tx, rx) = sync_channel(1);
        let renamed_to = Arc::new(Mutex::new(Vec::new()));
        let link_targets = Arc::new(Mutex::new(HashMap::new()));
        let patterns: Vec<glob::Pattern> = include
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let watcher = if use_events {
            make_watcher(
                tx,
                wake_reader,
                patterns,
                renamed_to.clone(),
                link_targets.clone(),
                written.clone(),
                stats.clone(),
            )
        } else {
            None
        };
        (
            Discovery {
                include,
                exclude,
                watcher,
                watched: HashSet::new(),
                warned: HashSet::new(),
                renamed_to,
                link_targets,
                written,
                target_dirs: HashSet::new(),
                stats,
            },
            rx,
        )
    }

    /// The files the patterns match now, in a stable order, without the excluded ones.
    pub fn scan(&mut self) -> Vec<PathBuf> {
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
        self.follow_link_targets(&out);
        out
    }

    /// The targets of the links the last scan matched.
    fn target_paths(&self) -> HashSet<PathBuf> {
        self.link_targets
            .lock()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Files kubelet's (or Docker's) rotation left beside each link target: `<target>.<suffix>`,
    /// and apart the compressed ones (`.gz`); beside every target, or only those not in `known`.
    fn rotated_beside_targets(&self, known: Option<&HashSet<PathBuf>>) -> BesideTargets {
        let mut out = BesideTargets::default();
        let Ok(targets) = self.link_targets.lock() else {
            return out;
        };
        for (target, link) in targets.iter() {
            if known.is_some_and(|k| k.contains(target)) {
                continue;
            }
            let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
                continue;
            };
            let prefix = format!("{}.", name.to_string_lossy());
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let file_name = file_name.to_string_lossy();
                if !file_name.starts_with(&prefix) {
                    continue;
                }
                if let Ok(md) = entry.metadata() {
                    if !md.is_file() {
                        continue;
                    }
                    if file_name.ends_with(".gz") {
                        out.compressed.push((link.clone(), entry.path()));
                    } else if file_name.ends_with(".tmp") {
                        // kubelet's `.gz` being written (`compressLog`: `<f>.tmp`, then renamed
                        // to `<f>.gz`): gzip bytes, found as a `.gz` once done.
                    } else {
                        out.rotated
                            .push((link.clone(), FileKey::of(&md), entry.path()));
                    }
                }
            }
        }
        out
    }

    /// Watches the folders the matched symlinks point into and forgets those no longer pointed
    /// into (a deleted pod), so watches do not pile up on a long-lived node.
    fn follow_link_targets(&mut self, paths: &[PathBuf]) {
        use notify::{RecursiveMode, Watcher};
        let mut targets = HashMap::new();
        let mut dirs = HashSet::new();
        for path in paths {
            let is_link = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                continue;
            }
            if let Some(target) = link_target(path) {
                if let Some(dir) = target.parent() {
                    dirs.insert(dir.to_path_buf());
                }
                targets.insert(target, path.clone());
            }
        }
        if let Ok(mut t) = self.link_targets.lock() {
            *t = targets;
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for dir in self.target_dirs.difference(&dirs) {
            if !self.watched.contains(dir) {
                let _ = watcher.unwatch(dir);
            }
        }
        for dir in dirs.difference(&self.target_dirs) {
            if self.watched.contains(dir) {
                continue;
            }
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                if self.warned.insert(format!("watch:{}", dir.display())) {
                    tracing::warn!(folder = %dir.display(), error = %e, "cannot watch the folder a symlink points into: rotations there are seen at scan_interval (logged once)");
                }
            }
        }
        self.target_dirs = dirs;
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

/// Where a symlink points, also while it dangles: between kubelet's rename of the target and the
/// runtime creating the new file, the link points at nothing, and the folder must stay watched
/// to see that file appear.
pub(crate) fn link_target(link: &Path) -> Option<PathBuf> {
    if let Ok(target) = std::fs::canonicalize(link) {
        return Some(target);
    }
    let to = std::fs::read_link(link).ok()?;
    let to = if to.is_absolute() {
        to
    } else {
        link.parent()?.join(to)
    };
    Some(
        std::fs::canonicalize(to.parent()?)
            .ok()?
            .join(to.file_name()?),
    )
}

fn make_watcher(
    rescan: SyncSender<()>,
    wake: SyncSender<()>,
    include: Vec<glob::Pattern>,
    renamed_to: Arc<Mutex<Vec<Renamed>>>,
    link_targets: Arc<Mutex<HashMap<PathBuf, PathBuf>>>,
    written: Arc<Mutex<Written>>,
    stats: Arc<FileStats>,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind, RenameMode};
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = &res {
            if matches!(ev.kind, EventKind::Modify(ModifyKind::Data(_))) {
                if let (Some(path), Ok(mut w)) = (ev.paths.first(), written.lock()) {
                    w.note(path);
                }
            }
            if let (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to]) =
                (&ev.kind, ev.paths.as_slice())
            {
                let name = if include.iter().any(|p| p.matches_path(from)) {
                    Some(to.clone())
                } else {
                    link_targets.lock().ok().and_then(|t| t.get(from).cloned())
                };
                if let Some(name) = name.filter(|_| !include.iter().any(|p| p.matches_path(to))) {
                    if let Ok(mut r) = renamed_to.lock() {
                        if r.len() < MAX_RENAMES {
                            r.push(Renamed {
                                to: to.clone(),
                                name,
                            });
                        } else {
                            stats.forgot_rotated(1, MAX_RENAMES);
                        }
                    }
                }
            }
        }
        let structural = match &res {
            Ok(ev) => !matches!(
                ev.kind,
                EventKind::Modify(ModifyKind::Data(_)) | EventKind::Access(_)
            ),
            Err(_) => true,
        };
        if structural {
            let _ = rescan.try_send(());
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
        let (tx, _rx) = sync_channel(1);
        let (mut disc, _events) = Discovery::new(
            vec![pat],
            excl,
            false,
            tx,
            Default::default(),
            Arc::new(FileStats::new("t", 1)),
        );
        let mut got: Vec<String> = disc
            .scan()
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["a/b/z.log", "a/y.log", "x.log"]);
    }
}
