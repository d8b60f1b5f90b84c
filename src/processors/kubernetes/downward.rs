//! Sidecar metadata from the Downward API: the pod's name, namespace, IP, UID and node from
//! environment variables, its labels and annotations from the files of a downwardAPI volume.
//! No API access is needed; the files are re-read when the kubelet rewrites them.

use super::cache::KeyFilter;
use crate::event::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The pod trawl runs in, as the Downward API describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub ip: Option<String>,
    pub uid: Option<String>,
    pub node: Option<String>,
    pub labels: Map,
    pub annotations: Map,
}

impl PodIdentity {
    /// The fields events get, as (dotted path, value).
    pub fn fields(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k.to_owned(), Value::String(v.clone())));
            }
        };
        put("kubernetes.pod.name", &self.name);
        put("kubernetes.namespace", &self.namespace);
        put("kubernetes.pod.ip", &self.ip);
        put("kubernetes.pod.uid", &self.uid);
        put("kubernetes.node.name", &self.node);
        if !self.labels.is_empty() {
            out.push((
                "kubernetes.labels".to_owned(),
                Value::Object(self.labels.clone()),
            ));
        }
        if !self.annotations.is_empty() {
            out.push((
                "kubernetes.annotations".to_owned(),
                Value::Object(self.annotations.clone()),
            ));
        }
        out
    }
}

/// Reads an environment variable (`std::env::var`, or a fake in tests).
pub type Env = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Reads the Downward API and notices when its files change.
pub struct Downward {
    labels_file: PathBuf,
    annotations_file: PathBuf,
    labels: KeyFilter,
    annotations: KeyFilter,
    env: Env,
    seen: (Option<SystemTime>, Option<SystemTime>),
}

impl Downward {
    pub fn new(
        labels_file: PathBuf,
        annotations_file: PathBuf,
        labels: KeyFilter,
        annotations: KeyFilter,
        env: Env,
    ) -> Downward {
        Downward {
            labels_file,
            annotations_file,
            labels,
            annotations,
            env,
            seen: (None, None),
        }
    }

    /// `true` when a file changed since the last `read` (the kubelet swaps them on updates).
    pub fn changed(&self) -> bool {
        (
            modified(&self.labels_file),
            modified(&self.annotations_file),
        ) != self.seen
    }

    pub fn read(&mut self) -> PodIdentity {
        self.seen = (
            modified(&self.labels_file),
            modified(&self.annotations_file),
        );
        let env = |k: &str| (self.env)(k).filter(|v| !v.is_empty());
        PodIdentity {
            name: env("POD_NAME"),
            namespace: env("POD_NAMESPACE"),
            ip: env("POD_IP"),
            uid: env("POD_UID"),
            node: env("NODE_NAME"),
            labels: read_pairs(&self.labels_file, &self.labels),
            annotations: read_pairs(&self.annotations_file, &self.annotations),
        }
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A missing file means no labels (the volume is optional); an unreadable one is logged.
fn read_pairs(path: &Path, filter: &KeyFilter) -> Map {
    match read_small(path) {
        Ok(text) => {
            let pairs = parse_pairs(&text);
            filter.apply(pairs.iter().map(|(k, v)| (k, v)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read Downward API file");
            Map::new()
        }
    }
}

/// Kubernetes caps a pod's labels and annotations at 256 KiB together.
const MAX_DOWNWARD_BYTES: u64 = 1 << 20;

/// A Downward API file's text: a regular file of at most `MAX_DOWNWARD_BYTES` (a FIFO or
/// `/dev/zero` named by mistake would hang or fill memory on the event path).
fn read_small(path: &Path) -> std::io::Result<String> {
    let bytes = crate::config::read_regular_file(path, MAX_DOWNWARD_BYTES, "a Downward API file")?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Parses the Downward API format: one `key="value"` per line, the value quoted as Go's `%q`
/// does (`\"`, `\\`, `\n`, `\t`). Lines that do not fit are skipped.
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, quoted)) = line.split_once('=') else {
            continue;
        };
        let Some(inner) = quoted
            .trim()
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
        else {
            continue;
        };
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(other) => value.push(other),
                None => {}
            }
        }
        out.push((key.trim().to_owned(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_downward_api_format() {
        let text = "app=\"web\"\napp.kubernetes.io/version=\"1.2\"\nnote=\"say \\\"hi\\\"\\nbye\"\ngarbage\n";
        let p = parse_pairs(text);
        assert_eq!(p[0], ("app".into(), "web".into()));
        assert_eq!(p[1], ("app.kubernetes.io/version".into(), "1.2".into()));
        assert_eq!(p[2], ("note".into(), "say \"hi\"\nbye".into()));
        assert_eq!(p.len(), 3);
    }
}
