//! The seeded fault campaign's parts: randomness, writers, the trawl process under test, the
//! pipelines driven, and the invariants checked on what they delivered.

pub mod files;
pub mod node;
pub mod outcome;
pub mod rng;
pub mod sinks;
pub mod tee;
pub mod writers;
