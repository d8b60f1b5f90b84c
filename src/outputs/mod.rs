//! Outputs: where events go. Each output owns a loop that takes batches from its queue,
//! delivers them, and settles each batch's acknowledgement only once delivery is durable.
//! Every output type is registered in `build` below, and nowhere else.

pub mod buffer;
pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
pub mod kafka;
pub mod null;
pub mod probe;
pub mod stdout;
pub mod template;

use crate::config::{from_node, ComponentSpec, DeError};
use crate::inputs::{BoxFuture, BuildContext};
use crate::pipeline::channel::{BatchReceiver, BatchSender};
use crate::telemetry::metrics::ComponentMetrics;
use std::path::PathBuf;
use std::sync::Arc;

pub trait Output: Send {
    /// Delivers batches from `ctx.rx` until it is closed and empty.
    fn run(self: Box<Self>, ctx: OutputContext) -> BoxFuture<anyhow::Result<()>>;

    /// Whether it reads events' fields. `false` when it takes a batch of lines as it is
    /// (`Batch::lines`): `null` reads nothing, `stdout` and `file` write JSON or text straight
    /// from the lines. Decides where events are built (`Live::place_event_building`).
    fn reads_fields(&self) -> bool {
        true
    }
}

/// What a running output is given.
pub struct OutputContext {
    pub name: Arc<str>,
    pub rx: BatchReceiver,
    pub metrics: Arc<ComponentMetrics>,
    /// Where events rejected for good go (`dead_letter: NAME`), if configured.
    pub dead_letter: Option<BatchSender>,
    pub data_dir: PathBuf,
    /// Fires when a reload replaces this output while it cannot deliver (a wrong host, refused
    /// credentials): an output that heeds it drops what it holds unsettled (counted failed, so
    /// inputs and a disk buffer that can read it again do, for its successor) and returns.
    /// Outputs that ignore it deliver what they hold first, as at any replacement.
    pub retire: crate::pipeline::channel::Shutdown,
}

/// Builds an output from its spec: the one place where output types are registered.
pub fn build(spec: &ComponentSpec, _ctx: &BuildContext) -> Result<Box<dyn Output>, DeError> {
    match spec.type_name.as_str() {
        "stdout" => Ok(Box::new(stdout::Stdout::new(from_node(
            &spec.node, &spec.path,
        )?))),
        "null" => {
            let _: null::Config = from_node(&spec.node, &spec.path)?;
            Ok(Box::new(null::Null))
        }
        "elasticsearch" => {
            let config: elasticsearch::Config = from_node(&spec.node, &spec.path)?;
            if let Some(ca) = &config.tls.ca_file {
                if let Err(why) = elasticsearch::root_certificates(ca) {
                    return Err(invalid_at(spec, &["tls", "ca_file"], why));
                }
            }
            let output = elasticsearch::Elasticsearch::new(config).map_err(|e| invalid(spec, e))?;
            Ok(Box::new(output))
        }
        "file" => {
            let config: file::Config = from_node(&spec.node, &spec.path)?;
            if config.path.as_os_str().is_empty() {
                return Err(invalid_at(
                    spec,
                    &["path"],
                    "empty: expected the file to write",
                ));
            }
            if config.path.as_os_str().as_encoded_bytes().ends_with(b"/") {
                return Err(invalid_at(
                    spec,
                    &["path"],
                    "ends with `/`: expected the file to write, not a folder",
                ));
            }
            let output = file::FileOutput::new(config).map_err(|e| invalid(spec, e))?;
            Ok(Box::new(output))
        }
        "kafka" => {
            let config: kafka::Config = from_node(&spec.node, &spec.path)?;
            if config.topic.is_static() {
                if let Err(why) = kafka::check_topic_name(config.topic.source()) {
                    return Err(invalid_at(spec, &["topic"], why));
                }
            }
            if let Some(Err((key, why))) = config.tls.as_ref().map(kafka::check_tls_files) {
                return Err(invalid_at(spec, &["tls", key], why));
            }
            if let Err((key, why)) = kafka::check_properties(&config.librdkafka) {
                let keys: &[&str] = if key.is_empty() {
                    &["librdkafka"]
                } else {
                    &["librdkafka", &key]
                };
                // Named `librdkafka`: the property's own name, dots and all, is in `why`.
                let path = format!("{}.librdkafka", spec.path);
                return Err(DeError::new(why, node_at(spec, keys).mark, &path));
            }
            let output = kafka::Kafka::new(config).map_err(|e| invalid(spec, e))?;
            Ok(Box::new(output))
        }
        other => Err(crate::inputs::unknown_type(spec, other, TYPES)),
    }
}

/// The output types `build` knows.
pub const TYPES: &[&str] = &["stdout", "null", "file", "elasticsearch", "kafka"];

/// `invalid`, at the value `keys` lead to (`["tls", "ca_file"]`) and named by them.
fn invalid_at(spec: &ComponentSpec, keys: &[&str], message: impl Into<String>) -> DeError {
    let mut path = spec.path.clone();
    for k in keys {
        path.push('.');
        path.push_str(k);
    }
    DeError::new(message, node_at(spec, keys).mark, &path)
}

/// The value `keys` lead to, or the component's own mapping when there is none.
fn node_at<'a>(spec: &'a ComponentSpec, keys: &[&str]) -> &'a crate::config::node::Node {
    keys.iter()
        .try_fold(&spec.node, |n, k| n.get(k))
        .unwrap_or(&spec.node)
}

/// A configuration that parsed but does not make sense (checked when building).
fn invalid(spec: &ComponentSpec, message: String) -> DeError {
    DeError::new(message, spec.mark, &spec.path)
}
