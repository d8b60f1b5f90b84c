//! `trawl run --once`: every file input reads its files to their current end and ends, so the
//! pipeline drains, commits and exits (backfills, benchmarks). Inputs that never end are refused.

use crate::config::{ConfigErrors, Node, NodeKind, PipelineConfig};

/// Inputs that end by themselves at the end of what they read.
const ENDING: [&str; 2] = ["stdin", "pcap_file"];

/// Sets `once: true` on every file input; an input that never ends (a socket, a live capture) is
/// an error at its `type`, since the run would never finish.
pub fn prepare(cfg: &mut PipelineConfig) -> Result<(), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    for spec in &mut cfg.inputs {
        match spec.type_name.as_str() {
            "file" => set_key(&mut spec.node, "once", "true"),
            t if ENDING.contains(&t) => {}
            t => errs.push(
                &spec.file,
                spec.type_mark,
                &format!("{}.type", spec.path),
                format!(
                    "--once reads inputs to their end and a `{t}` input never ends: expected only `file`, `stdin` or `pcap_file` inputs with --once (remove this input, or run without --once)"
                ),
            ),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Sets `key: value` in a mapping, replacing what the file said.
fn set_key(node: &mut Node, key: &str, value: &str) {
    let mark = node.mark;
    if let NodeKind::Map(entries) = &mut node.kind {
        entries.retain(|(k, _)| k.as_str() != Some(key));
        entries.push((Node::scalar(key, mark), Node::scalar(value, mark)));
    }
}
