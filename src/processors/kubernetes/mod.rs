//! stub
use super::{Processor, Verdict};
use crate::config::{ComponentSpec, DeError};
use crate::event::Event;
use crate::inputs::BuildContext;
#[derive(Debug, Clone, serde::Deserialize)]
pub struct KubernetesConfig {}
pub struct Kubernetes;
impl Kubernetes {
    pub fn new(
        _c: KubernetesConfig,
        _s: &ComponentSpec,
        _x: &BuildContext,
    ) -> Result<Kubernetes, DeError> {
        Ok(Kubernetes)
    }
}
impl Processor for Kubernetes {
    fn process(&mut self, _e: &mut Event) -> Verdict {
        Verdict::Keep
    }
}
