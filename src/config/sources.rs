//! Where the pipeline comes from (`-c` files and folders, `TRAWL_CONFIG`, `/etc/trawl/trawl.yaml`,
//! the embedded default) and how several files make one pipeline: components concatenated in
//! file order, names unique across files, each global key set in one file only.

use super::{load_file_partial, parse_partial, ConfigErrors, GlobalKeys, Mark, PipelineConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pipeline `trawl run` uses when nothing names one.
pub const EMBEDDED_PIPELINE: &str = include_str!("../../conf/default.yaml");

/// Read when neither `-c` nor `TRAWL_CONFIG` names a pipeline, if it exists.
pub const SYSTEM_PIPELINE: &str = "/etc/trawl/trawl.yaml";

/// The environment variable that names the pipeline when `-c` is not given.
pub const CONFIG_ENV: &str = "TRAWL_CONFIG";

/// The configured sources of a pipeline, resolved once at start and loaded again on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// Files and folders (`*.yaml`, `*.yml` inside, sorted by name), in this order.
    Paths(Vec<PathBuf>),
    /// The pipeline compiled into the binary.
    Embedded,
}

impl Sources {
    /// `-c` arguments if any, else `TRAWL_CONFIG` (paths separated by `:`), else
    /// `/etc/trawl/trawl.yaml` when it exists, else the embedded pipeline.
    pub fn resolve(args: &[PathBuf]) -> Sources {
        Self::resolve_with(
            args,
            std::env::var_os(CONFIG_ENV).as_deref(),
            Path::new(SYSTEM_PIPELINE),
        )
    }

    /// `resolve` with the environment and the system path given (tests).
    pub fn resolve_with(args: &[PathBuf], env: Option<&std::ffi::OsStr>, system: &Path) -> Sources {
        if !args.is_empty() {
            return Sources::Paths(args.to_vec());
        }
        if let Some(value) = env.filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            if !paths.is_empty() {
                return Sources::Paths(paths);
            }
        }
        if system.exists() {
            return Sources::Paths(vec![system.to_path_buf()]);
        }
        Sources::Embedded
    }

    /// How messages name these sources (`a.yaml, conf.d`).
    pub fn describe(&self) -> String {
        match self {
            Sources::Embedded => "<default pipeline>".to_owned(),
            Sources::Paths(paths) => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The pipeline files these sources name, folders expanded; for loading and for watching.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigErrors> {
        let Sources::Paths(paths) = self else {
            return Ok(Vec::new());
        };
        let mut files = Vec::new();
        let mut errs = ConfigErrors::default();
        for path in paths {
            if !path.is_dir() {
                // A missing file is reported by the loader, with its name.
                files.push(path.clone());
                continue;
            }
            match folder_files(path) {
                Ok(found) if found.is_empty() => errs.push(
                    &path.display().to_string(),
                    Mark::default(),
                    "",
                    "no pipeline file in this folder: expected files named *.yaml or *.yml",
                ),
                Ok(found) => files.extend(found),
                Err(e) => errs.push(
                    &path.display().to_string(),
                    Mark::default(),
                    "",
                    format!("cannot list the folder: {e}"),
                ),
            }
        }
        if errs.is_empty() {
            Ok(files)
        } else {
            Err(errs)
        }
    }

    /// Loads and merges every file; `Err` with every problem found.
    pub fn load(&self) -> Result<PipelineConfig, ConfigErrors> {
        let (cfg, errs) = self.load_partial()?;
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(errs)
        }
    }

    /// `load`, but returns what could be read along with the errors, so that `validate` can
    /// go on building components and report everything in one run.
    pub fn load_partial(&self) -> Result<(PipelineConfig, ConfigErrors), ConfigErrors> {
        let env = |v: &str| std::env::var(v).ok();
        let files = match self {
            Sources::Embedded => return parse_partial(&self.describe(), EMBEDDED_PIPELINE, &env),
            Sources::Paths(_) => self.files()?,
        };
        if let [one] = files.as_slice() {
            return load_file_partial(one);
        }
        let mut parts = Vec::new();
        let mut errs = ConfigErrors::default();
        for f in &files {
            match super::read_text(f) {
                Ok((name, text)) => match super::parse_with_global_keys(&name, &text, &env) {
                    Ok((cfg, e, keys)) => {
                        errs.0.extend(e.0);
                        parts.push((cfg, keys));
                    }
                    Err(e) => errs.0.extend(e.0),
                },
                Err(e) => errs.0.extend(e.0),
            }
        }
        if parts.is_empty() {
            return Err(errs);
        }
        let merged = merge(&self.describe(), parts, &mut errs);
        Ok((merged, errs))
    }
}

/// The `*.yaml` and `*.yml` files of a folder, sorted by name; hidden entries (a Kubernetes
/// ConfigMap's `..data`) and subfolders are left out.
fn folder_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with('.') && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// One pipeline from several files, in order. A component name used in two files, or a global
/// key set in two, is an error at its second place naming the first.
fn merge(
    name: &str,
    parts: Vec<(PipelineConfig, GlobalKeys)>,
    errs: &mut ConfigErrors,
) -> PipelineConfig {
    let mut merged = PipelineConfig {
        file: name.to_owned(),
        global: super::Global::default(),
        inputs: Vec::new(),
        processors: Vec::new(),
        outputs: Vec::new(),
        warnings: Vec::new(),
    };
    let mut seen: HashMap<String, (String, Mark)> = HashMap::new();
    let mut first_place = |section: &str, key: &str, file: &str, mark: Mark| {
        seen.insert(format!("{section}.{key}"), (file.to_owned(), mark))
            .map(|(f, m)| format!("{f}:{}:{}", m.line, m.col))
    };
    for (cfg, keys) in parts {
        for (key, mark) in keys {
            if let Some(first) = first_place("global", &key, &cfg.file, mark) {
                errs.push(
                    &cfg.file,
                    mark,
                    &key,
                    format!("`{key}` is also set in {first}: expected each global setting in one file only"),
                );
                continue;
            }
            let g = &cfg.global;
            match key.as_str() {
                "data_dir" => merged.global.data_dir = g.data_dir.clone(),
                "http" => merged.global.http = g.http.clone(),
                "shutdown_timeout" => merged.global.shutdown_timeout = g.shutdown_timeout,
                "pipeline" => merged.global.pipeline = g.pipeline.clone(),
                _ => {}
            }
        }
        for spec in cfg.inputs {
            match first_place("inputs", &spec.name, &spec.file, spec.mark) {
                Some(first) => errs.push(
                    &spec.file,
                    spec.mark,
                    &spec.path,
                    format!("input `{}` is also defined in {first}: expected names unique across the pipeline's files", spec.name),
                ),
                None => merged.inputs.push(spec),
            }
        }
        for o in cfg.outputs {
            match first_place("outputs", &o.spec.name, &o.spec.file, o.spec.mark) {
                Some(first) => errs.push(
                    &o.spec.file,
                    o.spec.mark,
                    &o.spec.path,
                    format!("output `{}` is also defined in {first}: expected names unique across the pipeline's files", o.spec.name),
                ),
                None => merged.outputs.push(o),
            }
        }
        for mut p in cfg.processors {
            // Numbered across files, so that their metrics do not share a name; the key path
            // stays the one in its own file.
            p.spec.name = format!("#{}", merged.processors.len());
            merged.processors.push(p);
        }
        merged.warnings.extend(cfg.warnings);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_then_environment_then_system_file_then_embedded() {
        let none = Path::new("/nonexistent/trawl.yaml");
        let args = [PathBuf::from("a.yaml"), PathBuf::from("conf.d")];
        assert_eq!(
            Sources::resolve_with(&args, Some("x.yaml".as_ref()), none),
            Sources::Paths(args.to_vec())
        );
        assert_eq!(
            Sources::resolve_with(&[], Some("x.yaml:/etc/d".as_ref()), none),
            Sources::Paths(vec!["x.yaml".into(), "/etc/d".into()])
        );
        assert_eq!(
            Sources::resolve_with(&[], Some("".as_ref()), none),
            Sources::Embedded
        );
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("trawl.yaml");
        std::fs::write(&system, "{}").unwrap();
        assert_eq!(
            Sources::resolve_with(&[], None, &system),
            Sources::Paths(vec![system.clone()])
        );
    }
}
