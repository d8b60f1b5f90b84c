//! Field and tag processors: `add_tags` (more of the family arrive with the processors issue).

use super::{Processor, Verdict};
use crate::event::Event;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTagsConfig {
    /// Tags appended to `tags` (each once).
    pub tags: Vec<String>,
}

pub struct AddTags {
    tags: Vec<String>,
}

impl AddTags {
    pub fn new(config: AddTagsConfig) -> AddTags {
        AddTags { tags: config.tags }
    }
}

impl Processor for AddTags {
    fn process(&mut self, event: &mut Event) -> Verdict {
        for t in &self.tags {
            event.add_tag(t);
        }
        Verdict::Keep
    }
}
