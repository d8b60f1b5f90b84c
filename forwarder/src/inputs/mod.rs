//! trawl's `inputs` modules the forwarder compiles from ../src, at the paths they use there
//! (`crate::inputs::lines`, `crate::inputs::tee::{spool, forward}`).

#[path = "../../../src/inputs/lines.rs"]
#[allow(dead_code)]
pub mod lines;
pub mod tee;
