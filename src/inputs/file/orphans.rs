//! Registries left by file inputs the pipeline no longer has. A file input's offsets are kept
//! under its name, so renaming the input starts it without them: its files are read again from
//! their start (or skipped, `start_at: end`). Said at start, while it can still be undone.

use super::registry::Registry;
use super::{legacy_registry_file_name, registry_file_name};
use crate::config::ComponentSpec;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file input about to start without a registry while the data dir holds the registry of a
/// file input the pipeline does not have: the likely sign of a renamed input.
pub struct LikelyRename {
    pub input: String,
    /// The input's own registry, not written yet.
    pub registry: PathBuf,
    /// The orphaned registries, each with its number of files and age.
    pub orphaned: String,
}

impl std::fmt::Display for LikelyRename {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "file input `{}` has no registry yet ({}) while the data dir holds the registry of a file input the pipeline no longer has: {}; if the input was renamed, set `take_over: <its former name>` on it, or its files are read again from their start (skipped with `start_at: end`)",
            self.input,
            self.registry.display(),
            self.orphaned
        )
    }
}

/// The file inputs of `inputs` that would start without a registry while the data dir holds
/// an orphaned one (none when every file input has its registry, sets `take_over`, or no
/// registry is orphaned). For `trawl validate` and for the start.
pub fn likely_renames(data_dir: &Path, inputs: &[ComponentSpec]) -> Vec<LikelyRename> {
    let files: Vec<&ComponentSpec> = inputs.iter().filter(|s| s.type_name == "file").collect();
    let names: Vec<&str> = files.iter().map(|s| s.name.as_str()).collect();
    let dir = data_dir.join("registry");
    let new: Vec<&str> = files
        .iter()
        .filter(|s| s.node.get("take_over").is_none())
        .map(|s| s.name.as_str())
        .filter(|n| !dir.join(registry_file_name(n)).exists())
        .filter(|n| !dir.join(legacy_registry_file_name(n)).exists())
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    let orphans = orphaned(&dir, &names);
    if orphans.is_empty() {
        return Vec::new();
    }
    let listed = orphans
        .iter()
        .map(|o| match o.age_s {
            Some(age) => format!("{} ({} files, written {age} s ago)", o.file, o.files),
            None => format!("{} ({} files)", o.file, o.files),
        })
        .collect::<Vec<_>>()
        .join(", ");
    new.into_iter()
        .map(|input| LikelyRename {
            input: input.to_owned(),
            registry: dir.join(registry_file_name(input)),
            orphaned: listed.clone(),
        })
        .collect()
}

/// Says each of `likely_renames` once, at start or when a reload adds inputs.
pub fn warn_if_renamed(data_dir: &Path, inputs: &[ComponentSpec]) {
    for r in likely_renames(data_dir, inputs) {
        tracing::warn!(input = %r.input, registry = %r.registry.display(), orphaned = %r.orphaned,
            "this file input starts without a registry while the data dir holds the registry of a file input the pipeline no longer has: if the input was renamed, its files are read again from their start (skipped with start_at: end); set `take_over: <its former name>` on it to resume them at their offsets");
    }
}

/// `take_over`: on the input's first start (no registry at `path` yet), copies the registry
/// of the input formerly named `from`. The former one is left in place: a pipeline file put
/// back to the old name still finds its offsets.
pub fn take_over(name: &str, from: &str, path: &Path) {
    if path.exists() {
        return;
    }
    let found = [registry_file_name(from), legacy_registry_file_name(from)]
        .into_iter()
        .map(|f| path.with_file_name(f))
        .find(|p| p.exists());
    let Some(old) = found else {
        tracing::warn!(input = %name, take_over = %from, dir = %path.parent().unwrap_or(path).display(),
            "take_over: no registry of that input in the data dir: starting without offsets");
        return;
    };
    match std::fs::read(&old).and_then(|bytes| super::registry::write_atomic(path, &bytes)) {
        Ok(()) => {
            tracing::info!(input = %name, take_over = %from, from = %old.display(), to = %path.display(),
            "took over the registry of this input's former name: its files resume at their offsets")
        }
        Err(e) => {
            tracing::warn!(input = %name, take_over = %from, from = %old.display(), error = %e,
            "take_over: cannot copy that input's registry: starting without offsets")
        }
    }
}

struct Orphan {
    file: String,
    files: usize,
    age_s: Option<u64>,
}

/// The `file-*.json` registries in `dir` that belong to none of `names`.
fn orphaned(dir: &Path, names: &[&str]) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Orphan> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            if !file.starts_with("file-") || !file.ends_with(".json") {
                return None;
            }
            if names
                .iter()
                .any(|n| registry_file_name(n) == file || legacy_registry_file_name(n) == file)
            {
                return None;
            }
            let registry = Registry::load(e.path());
            if !registry.found() {
                return None;
            }
            let age_s = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs());
            Some(Orphan {
                file,
                files: registry.len(),
                age_s,
            })
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &Path, file: &str) {
        std::fs::write(dir.join(file), r#"{"version":"1","files":[]}"#).unwrap();
    }

    #[test]
    fn only_registries_of_inputs_not_configured_are_orphaned() {
        let d = tempfile::tempdir().unwrap();
        registry(d.path(), "file-web.json");
        registry(d.path(), "file-old.json");
        registry(d.path(), "file-web_app.json"); // `web:app`'s name before escaping
        std::fs::write(d.path().join("file-old.json.lock"), "").unwrap();
        std::fs::write(d.path().join("journald-sys.cursor"), "c").unwrap();
        let got: Vec<String> = orphaned(d.path(), &["web", "web:app"])
            .into_iter()
            .map(|o| o.file)
            .collect();
        assert_eq!(got, ["file-old.json"]);
        assert!(orphaned(d.path(), &["web", "web:app", "old"]).is_empty());
    }
}
