//! Lines of the two streams of a tee'd command, each split on its own (a stderr line never
//! joins a stdout one). Shared with the static forwarder, which compiles this file by path.

use super::spool::{Chunk, StreamKind};
use crate::inputs::lines::{LineInfo, LineSplitter};

/// Splits the chunks of both streams into lines, each stream on its own.
pub struct StreamLines {
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl StreamLines {
    pub fn new(max_line_bytes: usize) -> StreamLines {
        StreamLines {
            stdout: LineSplitter::new(max_line_bytes, 0),
            stderr: LineSplitter::new(max_line_bytes, 0),
        }
    }

    pub fn push(&mut self, chunk: &Chunk, emit: &mut dyn FnMut(StreamKind, &[u8], LineInfo)) {
        let kind = chunk.stream;
        let splitter = match kind {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        };
        splitter.push(&chunk.data, &mut |l, i| emit(kind, l, i));
    }

    /// Bytes of unfinished lines held.
    pub fn pending(&self) -> usize {
        self.stdout.pending() + self.stderr.pending()
    }

    /// Unterminated last lines, at the end of the child's output.
    pub fn finish(&mut self, emit: &mut dyn FnMut(StreamKind, &[u8], LineInfo)) {
        self.stdout
            .finish(&mut |l, i| emit(StreamKind::Stdout, l, i));
        self.stderr
            .finish(&mut |l, i| emit(StreamKind::Stderr, l, i));
    }
}
