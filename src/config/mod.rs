//! The pipeline file: loading, `${VAR}` interpolation, the global section, and the split into
//! component specs that `pipeline::build` turns into running parts. Every error is collected
//! with its file, line, column and key path, so `trawl validate` reports them all at once.

pub mod de;
pub mod interpolate;
pub mod node;
pub mod sources;
pub mod units;

pub use de::{from_node, DeError};
pub use node::{Mark, Node, NodeKind};
pub use sources::Sources;
pub use units::{ByteSize, Duration};

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub mark: Mark,
    /// Key path such as `outputs.es.hosts[0]` (empty for the whole file).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: about the file as a whole (it cannot be read), not a place in it.
        if self.mark.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.mark.line, self.mark.col)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn push(&mut self, file: &str, mark: Mark, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            file: file.to_owned(),
            mark,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub fn push_de(&mut self, file: &str, fallback: Mark, fallback_path: &str, e: DeError) {
        let also = e.also;
        self.0.push(ConfigError {
            file: file.to_owned(),
            mark: e.mark.unwrap_or(fallback),
            path: e.path.unwrap_or_else(|| fallback_path.to_owned()),
            message: e.message,
        });
        for more in also {
            self.push_de(file, fallback, fallback_path, more);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The global section: everything at the top level besides the components.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Where trawl keeps state (file offsets, disk buffers).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The self-monitoring endpoint (`/metrics`, `/health`).
    #[serde(default)]
    pub http: HttpConfig,
    /// How long SIGTERM waits for in-flight events to be delivered.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Sizes of the batches and queues between stages.
    #[serde(default)]
    pub pipeline: PipelineTuning,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/trawl")
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for Global {
    fn default() -> Self {
        Global {
            data_dir: default_data_dir(),
            http: HttpConfig::default(),
            shutdown_timeout: default_shutdown_timeout(),
            pipeline: PipelineTuning::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `host:port`, or `unix:/path` (reachable only by local processes the file mode allows).
    #[serde(default = "default_http_address")]
    pub address: String,
    /// When set, every request must carry `Authorization: Bearer <token>` (`/metrics` and
    /// `/api/graph` describe the node's traffic).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// When `/health` stops answering 200.
    #[serde(default)]
    pub health: HealthConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `/health` answers 503 once an output has failed every attempt for this long (a down
    /// cluster or broker, refused credentials); 200 again as soon as it delivers.
    #[serde(default = "default_output_failure_threshold")]
    pub output_failure_threshold: Duration,
}

fn default_output_failure_threshold() -> Duration {
    Duration::from_secs(300)
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            output_failure_threshold: default_output_failure_threshold(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_http_address() -> String {
    "127.0.0.1:5066".to_owned()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            address: default_http_address(),
            bearer_token: None,
            health: HealthConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineTuning {
    /// Most events an input puts in one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches each queue holds before its sender waits.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Threads that run the processors, batches in parallel, handed on in their order.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

/// One per core up to 4: past that, parsing is rarely what limits a node's agent.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

fn default_batch_size() -> usize {
    1024
}

fn default_queue_batches() -> usize {
    4
}

impl Default for PipelineTuning {
    fn default() -> Self {
        PipelineTuning {
            batch_size: default_batch_size(),
            queue_batches: default_queue_batches(),
            workers: default_workers(),
        }
    }
}

/// Processing threads beyond any node's use for them.
const MAX_WORKERS: usize = 256;

/// What parses but could not run as written: an address `http` could not listen on, batches or
/// queues of size 0 (which would be run as 1, many times slower).
fn check_global(g: &Global, node: &Node, file: &str, errs: &mut ConfigErrors) {
    let mark_of = |section: &str, key: &str| {
        node.get(section)
            .and_then(|s| s.get(key))
            .map_or(node.mark, |n| n.mark)
    };
    if g.http.enabled {
        if let Err(why) = check_listen_address(&g.http.address) {
            errs.push(
                file,
                mark_of("http", "address"),
                "http.address",
                format!("`{}` is not a listen address: {why}", g.http.address),
            );
        }
    }
    if g.http
        .bearer_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        // `${TRAWL_HTTP_TOKEN}` with the variable unset: running would serve /metrics and
        // /-/reload to anyone, which the key was written to prevent.
        errs.push(
            file,
            mark_of("http", "bearer_token"),
            "http.bearer_token",
            "empty: requests would need no token at all; set the variable it names, or remove the key to serve without one",
        );
    }
    let top_mark = |key: &str| node.get(key).map_or(node.mark, |n| n.mark);
    if g.shutdown_timeout.positive().is_none() {
        errs.push(
            file,
            top_mark("shutdown_timeout"),
            "shutdown_timeout",
            "expected a duration above 0 (`30s`): with none, every stop gives up on what is in flight",
        );
    }
    if g.data_dir.as_os_str().is_empty() {
        errs.push(
            file,
            top_mark("data_dir"),
            "data_dir",
            "empty (an unset variable?): expected the folder for registries and buffers, such as /var/lib/trawl",
        );
    }
    if g.pipeline.workers > MAX_WORKERS {
        errs.push(
            file,
            mark_of("pipeline", "workers"),
            "pipeline.workers",
            format!("expected at most {MAX_WORKERS} (one thread each)"),
        );
    }
    for (key, value) in [
        ("batch_size", g.pipeline.batch_size),
        ("queue_batches", g.pipeline.queue_batches),
        ("workers", g.pipeline.workers),
    ] {
        if value == 0 {
            errs.push(
                file,
                mark_of("pipeline", key),
                &format!("pipeline.{key}"),
                "expected at least 1",
            );
        }
    }
}

/// `HOST:PORT` as the listener will take it: an IP address, `[IPv6]`, or a host name, and a port
/// from 0 to 65535; or `unix:/path` for a socket file.
fn check_listen_address(address: &str) -> Result<(), String> {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    if let Some(path) = address.strip_prefix("unix:") {
        return if path.is_empty() {
            Err("expected `unix:/path/to.sock`".into())
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected HOST:PORT or unix:/path".into());
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("port `{port}` is not a number from 0 to 65535"));
    }
    let looks_numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if host.is_empty() || host.starts_with('[') || looks_numeric {
        return Err(format!("`{host}` is not an IP address"));
    }
    Ok(())
}

/// A component as written: its name, `type`, and the rest of its keys.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// The file it was written in (several files may make one pipeline).
    pub file: String,
    pub name: String,
    pub type_name: String,
    /// The component's own keys (without `type` and the pipeline's keys).
    pub node: Node,
    /// Key path of the component (`inputs.app`, `processors[2]`).
    pub path: String,
    pub mark: Mark,
    /// Where `type:` was written.
    pub type_mark: Mark,
}

impl ComponentSpec {
    pub fn node_type_mark(&self) -> Mark {
        self.type_mark
    }
}

#[derive(Debug, Clone)]
pub struct ProcessorSpec {
    pub spec: ComponentSpec,
    pub when: Option<Node>,
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub spec: ComponentSpec,
    /// Names of the inputs routed to this output, with where each was written; `None`: all.
    pub inputs: Option<Vec<(String, Mark)>>,
    /// Name of the output that receives what this one rejects for good.
    pub dead_letter: Option<(String, Mark)>,
    /// Only events matching this condition are sent to the output.
    pub when: Option<Node>,
    /// The `buffer:` section, parsed when the pipeline is built.
    pub buffer: Option<Node>,
}

/// A parsed, interpolated pipeline file, not yet built.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub file: String,
    pub global: Global,
    pub inputs: Vec<ComponentSpec>,
    pub processors: Vec<ProcessorSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Unset variables without default and other non-fatal remarks, formatted like errors.
    pub warnings: Vec<ConfigError>,
}

const TOP_KEYS: [&str; 7] = [
    "inputs",
    "processors",
    "outputs",
    "data_dir",
    "http",
    "shutdown_timeout",
    "pipeline",
];

/// Reads and parses a pipeline file with the process environment.
pub fn load_file(path: &Path) -> Result<PipelineConfig, ConfigErrors> {
    let (cfg, errs) = load_file_partial(path)?;
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(errs)
    }
}

/// `load_file`, but returns what could be read along with the errors found, so that
/// `validate` can go on building components and report everything in one run.
pub fn load_file_partial(path: &Path) -> Result<(PipelineConfig, ConfigErrors), ConfigErrors> {
    let (name, text) = read_text(path)?;
    parse_partial(&name, &text, &|v| std::env::var(v).ok())
}

/// A pipeline file's name (as messages give it) and text; a file that cannot be read or is not
/// UTF-8 is an error naming it (and its first bad byte's line and column).
pub(crate) fn read_text(path: &Path) -> Result<(String, String), ConfigErrors> {
    let name = path.display().to_string();
    let fail = |mark: Mark, message: String| {
        let mut errs = ConfigErrors::default();
        errs.push(&name, mark, "", message);
        errs
    };
    let bytes = read_source(path).map_err(|e| {
        fail(
            Mark::default(),
            format!("cannot read the pipeline file: {e}"),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Name the first bad byte's line and column, as for any other error in the file.
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = 1 + String::from_utf8_lossy(&good[line_start..]).chars().count();
        fail(
            Mark { line, col },
            "the pipeline file is not UTF-8 text: expected a UTF-8 YAML file".into(),
        )
    })?;
    Ok((name, text))
}

/// The most a pipeline file may hold: far above any real one (a 50 MB file validates in a
/// fraction of a second), low enough that `-c /dev/zero` fails instead of filling memory.
const MAX_PIPELINE_BYTES: u64 = 64 << 20;

/// Reads a pipeline source: a regular file of at most `MAX_PIPELINE_BYTES`. A FIFO put in a
/// file's place would block the reload (and the stop asked meanwhile) until someone writes it;
/// it is opened without waiting for a writer and refused.
pub(crate) fn read_source(path: &Path) -> std::io::Result<Vec<u8>> {
    read_regular_file(path, MAX_PIPELINE_BYTES, "a YAML file")
}

/// A regular file of at most `limit` bytes, `what` naming what was expected in the error. It is
/// opened without waiting for a writer, so a FIFO (or a device) is refused rather than blocking
/// or read without end.
pub(crate) fn read_regular_file(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "not a regular file (a FIFO, device or socket): expected {what}"
        )));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB: expected {what}",
            limit >> 20
        )));
    }
    Ok(bytes)
}

/// Parses pipeline text; `file` names it in messages; `env` resolves `${VAR}`.
pub fn parse_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, ConfigErrors> {
    let (cfg, errs) = parse_partial(file, text, env)?;
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(errs)
    }
}

/// Parses what it can: `Err` only when the text is not YAML at all; otherwise the config (with
/// defaults where a value was wrong) and every error found.
pub fn parse_partial(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PipelineConfig, ConfigErrors), ConfigErrors> {
    parse_with_global_keys(file, text, env).map(|(cfg, errs, _)| (cfg, errs))
}

/// The global keys a file sets, with where (for merging several files into one pipeline).
pub(crate) type GlobalKeys = Vec<(String, Mark)>;

/// `parse_partial`, also returning the global keys the file sets.
pub(crate) fn parse_with_global_keys(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PipelineConfig, ConfigErrors, GlobalKeys), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut root = match node::parse(text) {
        Ok(n) => n,
        Err(e) => {
            errs.push(file, e.mark, "", format!("invalid YAML: {}", e.message));
            return Err(errs);
        }
    };
    if root.is_null() {
        root = Node::empty_map(root.mark);
    }
    let (mut ierrs, mut iwarn) = (Vec::new(), Vec::new());
    interpolate::interpolate(&mut root, env, &mut ierrs, &mut iwarn);
    for e in ierrs {
        errs.push(file, e.mark, &e.path, e.message);
    }
    let warnings = iwarn
        .into_iter()
        .map(|w| ConfigError {
            file: file.to_owned(),
            mark: w.mark,
            path: w.path,
            message: w.message,
        })
        .collect();

    let NodeKind::Map(entries) = &root.kind else {
        errs.push(
            file,
            root.mark,
            "",
            format!(
                "expected a mapping with inputs, processors and outputs, found {}",
                root.kind_name()
            ),
        );
        return Err(errs);
    };
    let entries = entries.clone();
    let mut global_keys = Vec::new();
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("");
        if TOP_KEYS.contains(&key) && !["inputs", "processors", "outputs"].contains(&key) {
            global_keys.push((key.to_owned(), k.mark));
        }
        // `x-` keys hold anchors to share (`x-defaults: &d {...}`, then `<<: *d`), as in
        // Compose files; trawl reads nothing else of them.
        if !TOP_KEYS.contains(&key) && !key.starts_with("x-") {
            errs.push(
                file,
                k.mark,
                key,
                format!(
                    "unknown key `{key}`, expected one of {} (or a key starting with `x-` to hold anchors)",
                    quoted_list(&TOP_KEYS)
                ),
            );
        }
    }

    let global_node = root.without_keys(&["inputs", "processors", "outputs"]);
    let global_node = Node {
        kind: match global_node.kind {
            NodeKind::Map(e) => NodeKind::Map(
                e.into_iter()
                    .filter(|(k, _)| k.as_str().is_some_and(|k| TOP_KEYS.contains(&k)))
                    .collect(),
            ),
            other => other,
        },
        mark: global_node.mark,
    };
    let global = match from_node::<Global>(&global_node, "") {
        Ok(g) => {
            check_global(&g, &global_node, file, &mut errs);
            g
        }
        Err(whole) => {
            // Each key on its own, so that a bad `http:` does not hide a bad `pipeline:`; the
            // keys that read well are then checked as usual.
            let keys: Vec<String> = match &global_node.kind {
                NodeKind::Map(e) => e
                    .iter()
                    .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let mut bad = Vec::new();
            for key in &keys {
                let others: Vec<&str> = keys
                    .iter()
                    .filter(|k| *k != key)
                    .map(String::as_str)
                    .collect();
                if let Err(e) = from_node::<Global>(&global_node.without_keys(&others), "") {
                    errs.push_de(file, root.mark, "", e);
                    bad.push(key.as_str());
                }
            }
            if bad.is_empty() {
                errs.push_de(file, root.mark, "", whole);
            }
            let good = global_node.without_keys(&bad);
            match from_node::<Global>(&good, "") {
                Ok(g) => {
                    check_global(&g, &good, file, &mut errs);
                    g
                }
                Err(_) => Global::default(),
            }
        }
    };

    let inputs = named_components(file, &root, "inputs", &["type"], &mut errs)
        .into_iter()
        .map(|(spec, _)| spec)
        .collect();

    let mut outputs = Vec::new();
    for (spec, raw) in named_components(
        file,
        &root,
        "outputs",
        &["type", "inputs", "dead_letter", "when", "buffer"],
        &mut errs,
    ) {
        let inputs = raw.get("inputs").and_then(|n| match &n.kind {
            NodeKind::Seq(items) => Some(
                items
                    .iter()
                    .filter_map(|i| match i.as_str() {
                        Some(s) => Some((s.to_owned(), i.mark)),
                        None => {
                            errs.push(
                                file,
                                i.mark,
                                &format!("{}.inputs", spec.path),
                                "expected an input name",
                            );
                            None
                        }
                    })
                    .collect(),
            ),
            NodeKind::Scalar { value, .. } if !n.is_null() => Some(vec![(value.clone(), n.mark)]),
            _ if n.is_null() => None,
            _ => {
                errs.push(
                    file,
                    n.mark,
                    &format!("{}.inputs", spec.path),
                    "expected a list of input names",
                );
                None
            }
        });
        let dead_letter = raw.get("dead_letter").and_then(|n| match n.as_str() {
            Some(s) if !n.is_null() => Some((s.to_owned(), n.mark)),
            _ => {
                if !n.is_null() {
                    errs.push(
                        file,
                        n.mark,
                        &format!("{}.dead_letter", spec.path),
                        "expected the name of an output",
                    );
                }
                None
            }
        });
        let buffer = raw.get("buffer").filter(|n| !n.is_null()).cloned();
        outputs.push(OutputSpec {
            spec,
            inputs,
            dead_letter,
            when: raw.get("when").cloned(),
            buffer,
        });
    }

    let mut processors = Vec::new();
    if let Some(list) = root.get("processors") {
        match &list.kind {
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("processors[{i}]");
                    if let Some(spec) = component(
                        file,
                        &format!("#{i}"),
                        &path,
                        item,
                        &["type", "when"],
                        &mut errs,
                    ) {
                        processors.push(ProcessorSpec {
                            spec,
                            when: item.get("when").cloned(),
                        });
                    }
                }
            }
            _ if list.is_null() => {}
            _ => errs.push(
                file,
                list.mark,
                "processors",
                format!("expected a list of processors, found {}", list.kind_name()),
            ),
        }
    }

    Ok((
        PipelineConfig {
            file: file.to_owned(),
            global,
            inputs,
            processors,
            outputs,
            warnings,
        },
        errs,
        global_keys,
    ))
}

fn quoted_list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The entries of `inputs:` or `outputs:`, each with its raw node for pipeline keys.
fn named_components(
    file: &str,
    root: &Node,
    section: &str,
    pipeline_keys: &[&str],
    errs: &mut ConfigErrors,
) -> Vec<(ComponentSpec, Node)> {
    let mut out = Vec::new();
    let Some(sec) = root.get(section) else {
        return out;
    };
    match &sec.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let name = k.as_str().unwrap_or("").to_owned();
                let path = format!("{section}.{name}");
                if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '.') {
                    errs.push(
                        file,
                        k.mark,
                        &path,
                        "a component name must be non-empty, without spaces or dots",
                    );
                    continue;
                }
                if let Some(spec) = component(file, &name, &path, v, pipeline_keys, errs) {
                    out.push((spec, v.clone()));
                }
            }
        }
        _ if sec.is_null() => {}
        _ => errs.push(
            file,
            sec.mark,
            section,
            format!(
                "expected a mapping of names to {section}, found {}",
                sec.kind_name()
            ),
        ),
    }
    out
}

fn component(
    file: &str,
    name: &str,
    path: &str,
    node: &Node,
    pipeline_keys: &[&str],
    errs: &mut ConfigErrors,
) -> Option<ComponentSpec> {
    if !matches!(node.kind, NodeKind::Map(_)) {
        errs.push(
            file,
            node.mark,
            path,
            format!(
                "expected a mapping with a `type`, found {}",
                node.kind_name()
            ),
        );
        return None;
    }
    let (type_name, type_mark) = match node.get("type") {
        Some(t) => match t.as_str() {
            Some(s) if !t.is_null() => (s.to_owned(), t.mark),
            // `type: null` is YAML's null, not the `null` output: say so, since the message
            // would otherwise name a type the user did write.
            Some(word) if t.is_null() && !word.is_empty() && word != "~" => {
                errs.push(
                    file,
                    t.mark,
                    &format!("{path}.type"),
                    format!("expected the component type as text, found YAML's null (`{word}` unquoted); write `type: \"null\"` for the null output"),
                );
                return None;
            }
            _ => {
                errs.push(
                    file,
                    t.mark,
                    &format!("{path}.type"),
                    "expected the component type as text",
                );
                return None;
            }
        },
        None => {
            errs.push(file, node.mark, path, "missing key `type`");
            return None;
        }
    };
    Some(ComponentSpec {
        file: file.to_owned(),
        name: name.to_owned(),
        type_name,
        node: node.without_keys(pipeline_keys),
        path: path.to_owned(),
        mark: node.mark,
        type_mark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &str) -> Option<String> {
        (v == "ES").then(|| "es:9200".to_owned())
    }

    #[test]
    fn parses_the_issue_example() {
        let text = "inputs:\n  app:   { type: stdin }\nprocessors:\n  - { type: add_tags, tags: [k8s-beat] }\noutputs:\n  console: { type: stdout }\n  kafka: { type: kafka, inputs: [app], hosts: \"${ES}\" }\nshutdown_timeout: 5s\n";
        let c = parse_str("p.yaml", text, &env).unwrap();
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(c.inputs[0].type_name, "stdin");
        assert_eq!(c.processors[0].spec.type_name, "add_tags");
        assert!(c.processors[0].spec.node.get("type").is_none());
        assert_eq!(c.outputs[0].inputs, None);
        assert_eq!(c.outputs[1].inputs.as_ref().unwrap()[0].0, "app");
        assert_eq!(
            c.outputs[1].spec.node.get("hosts").unwrap().as_str(),
            Some("es:9200")
        );
        assert_eq!(c.global.shutdown_timeout, Duration::from_secs(5));
        assert!(c.global.http.enabled);
    }

    #[test]
    fn reports_every_error_with_position() {
        let text = "inputz: {}\nshutdown_timeout: soon\noutputs:\n  o: { kind: stdout }\nhttp: { enabled: maybe }\nfoo: ${NOPE:?must be set}\n";
        let errs = parse_str("p.yaml", text, &env).unwrap_err();
        let all = errs.to_string();
        assert!(
            all.contains("p.yaml:1:1: inputz: unknown key `inputz`"),
            "{all}"
        );
        assert!(
            all.contains("p.yaml:4:6: outputs.o: missing key `type`"),
            "{all}"
        );
        assert!(
            all.contains("environment variable `NOPE` is not set: must be set"),
            "{all}"
        );
        assert!(all.contains("p.yaml:6:1: foo: unknown key"), "{all}");
        // The global section stops at its first error (serde), the rest are all reported.
        assert!(errs.0.len() >= 4, "{all}");
    }

    #[test]
    fn global_errors_name_the_key() {
        let errs = parse_str("p.yaml", "shutdown_timeout: soon\n", &env).unwrap_err();
        assert_eq!(errs.0[0].path, "shutdown_timeout");
        assert_eq!(errs.0[0].mark, Mark { line: 1, col: 19 });
        let errs = parse_str("p.yaml", "http: { enable: false }\n", &env).unwrap_err();
        assert_eq!(errs.0[0].path, "http.enable");
        assert!(errs.0[0].message.contains("unknown field `enable`"));
    }

    #[test]
    fn invalid_yaml_is_an_error_with_a_line() {
        let errs = parse_str("p.yaml", "inputs:\n  a: [\n", &env).unwrap_err();
        assert!(errs.0[0].message.starts_with("invalid YAML"));
        assert!(errs.0[0].mark.line >= 2);
    }
}
