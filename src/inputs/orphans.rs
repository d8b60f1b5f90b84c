//! Saved positions left by inputs the pipeline no longer has. A file input keeps its offsets
//! (`file-<name>.json`) and a journald input its cursor (`journald-<name>.cursor`) under its
//! name, so renaming the input starts it without them. Said at start, while it can be undone,
//! and undone by `take_over: <former name>`.

use super::file::registry::Registry;
use super::file::{legacy_registry_file_name, registry_file_name};
use crate::config::ComponentSpec;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What an input type keeps in `data_dir/registry` under the input's name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kept {
    /// The file input's registry of offsets.
    Registry,
    /// The journald input's journal cursor.
    Cursor,
}

impl Kept {
    fn of(type_name: &str) -> Option<Kept> {
        match type_name {
            "file" => Some(Kept::Registry),
            "journald" => Some(Kept::Cursor),
            _ => None,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kept::Registry => "file",
            Kept::Cursor => "journald",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kept::Registry => "registry",
            Kept::Cursor => "journal cursor",
        }
    }

    /// The file names the input named `name` keeps its state under, the current one first.
    fn file_names(self, name: &str) -> Vec<String> {
        match self {
            Kept::Registry => vec![registry_file_name(name), legacy_registry_file_name(name)],
            Kept::Cursor => vec![cursor_file_name(name)],
        }
    }

    fn is_state_file(self, file: &str) -> bool {
        match self {
            Kept::Registry => file.starts_with("file-") && file.ends_with(".json"),
            Kept::Cursor => file.starts_with("journald-") && file.ends_with(".cursor"),
        }
    }

    /// What `path` holds, shown in the warning; None when it holds nothing to resume from.
    fn summary(self, path: &Path) -> Option<String> {
        match self {
            Kept::Registry => {
                let registry = Registry::load(path.to_path_buf());
                registry
                    .found()
                    .then(|| format!("{} files", registry.len()))
            }
            Kept::Cursor => std::fs::read_to_string(path)
                .ok()
                .filter(|c| !c.trim().is_empty())
                .map(|_| "a cursor".to_owned()),
        }
    }

    /// What starting over costs the renamed input.
    fn consequence(self) -> &'static str {
        match self {
            Kept::Registry => {
                "its files are read again from their start (skipped with `start_at: end`)"
            }
            Kept::Cursor => {
                "it starts at `start_at`: the whole journal again with `beginning`, and with `end` (the default) the entries written since the former input stopped are skipped"
            }
        }
    }
}

/// The journald input's cursor file for the input named `name` (escaped as file registries).
pub fn cursor_file_name(name: &str) -> String {
    let registry = registry_file_name(name);
    let escaped = &registry["file-".len()..registry.len() - ".json".len()];
    format!("journald-{escaped}.cursor")
}

/// An input about to start without its saved position while the data dir holds that of an
/// input of its type the pipeline does not have: the likely sign of a renamed input.
pub struct LikelyRename {
    pub input: String,
    kept: Kept,
    /// The input's own state file, not written yet.
    pub state: PathBuf,
    /// The orphaned state files, each with what it holds and its age.
    pub orphaned: String,
}

impl std::fmt::Display for LikelyRename {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, noun) = (self.kept.type_name(), self.kept.noun());
        write!(
            f,
            "{kind} input `{}` has no {noun} yet ({}) while the data dir holds the {noun} of a {kind} input the pipeline no longer has: {}; if the input was renamed, set `take_over: <its former name>` on it, or {}",
            self.input,
            self.state.display(),
            self.orphaned,
            self.kept.consequence()
        )
    }
}

/// The file and journald inputs of `inputs` that would start without their saved position
/// while the data dir holds an orphaned one of their type (none when each has its own, sets
/// `take_over`, or nothing is orphaned). For `trawl validate` and for the start.
pub fn likely_renames(data_dir: &Path, inputs: &[ComponentSpec]) -> Vec<LikelyRename> {
    let dir = data_dir.join("registry");
    let mut out = Vec::new();
    for kept in [Kept::Registry, Kept::Cursor] {
        let mine: Vec<&ComponentSpec> = inputs
            .iter()
            .filter(|s| Kept::of(&s.type_name) == Some(kept))
            .collect();
        let names: Vec<&str> = mine.iter().map(|s| s.name.as_str()).collect();
        let new: Vec<&str> = mine
            .iter()
            .filter(|s| s.node.get("take_over").is_none())
            .map(|s| s.name.as_str())
            .filter(|n| kept.file_names(n).iter().all(|f| !dir.join(f).exists()))
            .collect();
        if new.is_empty() {
            continue;
        }
        let orphans = orphaned(&dir, kept, &names);
        if orphans.is_empty() {
            continue;
        }
        let listed = orphans
            .iter()
            .map(|o| match o.age_s {
                Some(age) => format!("{} ({}, written {age} s ago)", o.file, o.holds),
                None => format!("{} ({})", o.file, o.holds),
            })
            .collect::<Vec<_>>()
            .join(", ");
        out.extend(new.into_iter().map(|input| LikelyRename {
            input: input.to_owned(),
            kept,
            state: dir.join(&kept.file_names(input)[0]),
            orphaned: listed.clone(),
        }));
    }
    out
}

/// Says each of `likely_renames` once, at start or when a reload adds inputs.
pub fn warn_if_renamed(data_dir: &Path, inputs: &[ComponentSpec]) {
    for r in likely_renames(data_dir, inputs) {
        tracing::warn!(input = %r.input, state = %r.state.display(), orphaned = %r.orphaned,
            "{r}");
    }
}

/// `take_over`: on the input's first start (no state at `path` yet), copies the state of the
/// input of its type formerly named `from`. The former one is left in place: a pipeline file
/// put back to the old name still finds its position.
pub fn take_over(kept: Kept, name: &str, from: &str, path: &Path) {
    if path.exists() {
        return;
    }
    let noun = kept.noun();
    let found = kept
        .file_names(from)
        .into_iter()
        .map(|f| path.with_file_name(f))
        .find(|p| p.exists());
    let Some(old) = found else {
        tracing::warn!(input = %name, take_over = %from, dir = %path.parent().unwrap_or(path).display(),
            "take_over: no {noun} of that input in the data dir: starting without one");
        return;
    };
    match std::fs::read(&old).and_then(|bytes| super::file::registry::write_atomic(path, &bytes)) {
        Ok(()) => {
            tracing::info!(input = %name, take_over = %from, from = %old.display(), to = %path.display(),
            "took over the {noun} of this input's former name: it resumes where that input stopped")
        }
        Err(e) => {
            tracing::warn!(input = %name, take_over = %from, from = %old.display(), error = %e,
            "take_over: cannot copy that input's {noun}: starting without one")
        }
    }
}

/// `take_over` naming the input itself, or nothing: refused at the key.
pub fn check_take_over(spec: &ComponentSpec, from: Option<&String>) -> Result<(), String> {
    match from {
        Some(from) if from.trim().is_empty() || *from == spec.name => Err(format!(
            "expected the former name of this input (another input's name), got `{from}`"
        )),
        _ => Ok(()),
    }
}

struct Orphan {
    file: String,
    holds: String,
    age_s: Option<u64>,
}

/// The state files of `kept` in `dir` that belong to none of `names`.
fn orphaned(dir: &Path, kept: Kept, names: &[&str]) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Orphan> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            if !kept.is_state_file(&file)
                || names.iter().any(|n| kept.file_names(n).contains(&file))
            {
                return None;
            }
            let holds = kept.summary(&e.path())?;
            let age_s = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs());
            Some(Orphan { file, holds, age_s })
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
        let got: Vec<String> = orphaned(d.path(), Kept::Registry, &["web", "web:app"])
            .into_iter()
            .map(|o| o.file)
            .collect();
        assert_eq!(got, ["file-old.json"]);
        assert!(orphaned(d.path(), Kept::Registry, &["web", "web:app", "old"]).is_empty());
        // Journald cursors apart, an empty one (started, nothing acknowledged) holding none.
        std::fs::write(d.path().join("journald-gone.cursor"), "").unwrap();
        let cursors: Vec<String> = orphaned(d.path(), Kept::Cursor, &["web"])
            .into_iter()
            .map(|o| o.file)
            .collect();
        assert_eq!(cursors, ["journald-sys.cursor"]);
        assert!(orphaned(d.path(), Kept::Cursor, &["sys"]).is_empty());
    }

    #[test]
    fn cursor_names_are_escaped_as_registries() {
        assert_eq!(cursor_file_name("sys"), "journald-sys.cursor");
        assert_eq!(cursor_file_name("web:app"), "journald-web.3aapp.cursor");
    }
}
