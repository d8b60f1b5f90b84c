//! Processors: synchronous steps applied in order to every event (or, with `when:`, to those
//! that match). A processor edits the event in place and says whether to keep it.
//! Every processor type is registered in `build` below, and nowhere else.

pub mod condition;
pub mod fields;

use crate::config::{from_node, ComponentSpec, DeError};
use crate::event::Event;
use crate::inputs::BuildContext;

/// What happens to an event after a processor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

pub trait Processor: Send {
    fn process(&mut self, event: &mut Event) -> Verdict;
}

/// Builds a processor from its spec: the one place where processor types are registered.
pub fn build(spec: &ComponentSpec, _ctx: &BuildContext) -> Result<Box<dyn Processor>, DeError> {
    match spec.type_name.as_str() {
        "add_tags" => Ok(Box::new(fields::AddTags::new(from_node(
            &spec.node, &spec.path,
        )?))),
        other => Err(crate::inputs::unknown_type(spec, other, TYPES)),
    }
}

/// The processor types `build` knows.
pub const TYPES: &[&str] = &["add_tags"];
