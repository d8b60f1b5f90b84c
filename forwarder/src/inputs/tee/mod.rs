//! trawl's tee modules the forwarder compiles from ../src/inputs/tee/, at the paths they use
//! there: the spool, the forwarding client and its acknowledgement protocol, the child-process pass-through and the per-stream
//! line splitting (src/inputs/tee/mod.rs itself also holds the pipeline input, not wanted here).

#[path = "../../../../src/inputs/tee/ack.rs"]
pub mod ack;
#[path = "../../../../src/inputs/tee/forward.rs"]
pub mod forward;
#[path = "../../../../src/inputs/tee/passthrough.rs"]
pub mod passthrough;
#[path = "../../../../src/inputs/tee/spool.rs"]
#[allow(dead_code)]
pub mod spool;
#[path = "../../../../src/inputs/tee/stream_lines.rs"]
pub mod stream_lines;

pub use stream_lines::StreamLines;
