//! Container lines split across a rotation: kubelet renames `0.log` away between a line's `P`
//! and its `F`, which the runtime writes to the new `0.log`. Before a new file is first read,
//! the lines being joined in the file it replaced at its path are handed over to it.

use super::Tailer;
use crate::inputs::file::identity::FileKey;
use crate::inputs::file::reader::Tail;
use std::collections::HashSet;
use std::time::{Instant, SystemTime};

impl Tailer {
    /// Hands the lines being joined in rotated files over to the files that replaced them,
    /// for the files not read yet since they were found (or read again). Returns the files
    /// not to read in this turn: their predecessor is not read to its end yet (its last
    /// records may be the first parts of a line continued in them), for at most
    /// `close_removed`.
    pub(super) fn carry_over(&mut self, now: Instant) -> HashSet<FileKey> {
        let mut defer = HashSet::new();
        let mut pending: Vec<(Rank, FileKey)> = self
            .tails
            .iter()
            .filter(|(_, t)| t.take_over_since.is_some())
            .map(|(k, t)| (rank(t), *k))
            .collect();
        if pending.is_empty() {
            return defer;
        }
        // Oldest first: after a restart, `0.log.<t1>` hands over to `0.log.<t2>` before that
        // one hands over to `0.log`.
        pending.sort_unstable();
        let wait = self.config.close_removed.std();
        for (rank_here, key) in pending {
            let Some(tail) = self.tails.get(&key) else {
                continue;
            };
            let since = tail.take_over_since.unwrap_or(now);
            let path = tail.path.clone();
            // The file this one replaced: followed under the same path, no longer there, and
            // the latest such before this one.
            let before = self
                .tails
                .iter()
                .filter(|(k, t)| **k != key && t.path == path && t.decoder.joins_records())
                .map(|(k, t)| (rank(t), *k))
                .filter(|(r, _)| *r < rank_here)
                .max()
                .map(|(_, k)| k);
            if let Some(prev) = before.and_then(|k| self.tails.get(&k)) {
                let behind = prev.is_open() && prev.size().is_some_and(|s| s > prev.position());
                let stopping = self.stop_at.is_some();
                if behind && !stopping && now.saturating_duration_since(since) < wait {
                    defer.insert(key);
                    continue;
                }
            }
            let handed = before
                .and_then(|k| self.tails.get_mut(&k))
                .map(|prev| {
                    let read_to = prev.line_start();
                    let Tail { meta, decoder, .. } = prev;
                    decoder.hand_over(meta, read_to, now)
                })
                .unwrap_or_default();
            let Some(tail) = self.tails.get_mut(&key) else {
                continue;
            };
            tail.take_over_since = None;
            if !handed.is_empty() {
                tracing::debug!(input = %self.ctx.name, path = %tail.path.display(), lines = handed.len(), "a line split by a rotation: joined on in the new file");
                let Tail { meta, decoder, .. } = tail;
                decoder.take_over(handed, meta, &mut self.batcher);
            }
        }
        defer
    }
}

/// Order of files followed under one path: those renamed away by last write, then the one at
/// the path now.
type Rank = (bool, Option<SystemTime>, FileKey);

fn rank(tail: &Tail) -> Rank {
    let at_path = std::fs::metadata(&tail.path).is_ok_and(|m| FileKey::of(&m) == tail.meta.key);
    let written = tail
        .file()
        .and_then(|f| f.metadata().ok())
        .and_then(|m| m.modified().ok());
    (at_path, written, tail.meta.key)
}

#[cfg(test)]
mod tests {
    use crate::inputs::file::batcher::Batcher;
    use crate::inputs::file::container::Format;
    use crate::inputs::file::identity::FileKey;
    use crate::inputs::file::reader::{Decoder, TailMeta};
    use crate::inputs::lines::LineInfo;
    use std::time::{Duration, Instant};

    fn json(e: &crate::event::Event) -> serde_json::Value {
        serde_json::from_str(&e.to_json_string()).expect("JSON")
    }

    fn info(start: u64, record: &[u8]) -> LineInfo {
        LineInfo {
            start,
            end: start + record.len() as u64 + 1,
            truncated: false,
        }
    }

    /// The joined line is the rotated file's event, and its batch moves both files' offsets:
    /// the rotated one's past what was read of it, the new one's past the last part.
    #[test]
    fn a_line_handed_over_commits_both_files_in_its_batch() {
        let old = TailMeta::new(FileKey { dev: 1, ino: 1 }, 11, 0, "c.log".into(), None);
        let new = TailMeta::new(FileKey { dev: 1, ino: 2 }, 22, 0, "c.log".into(), None);
        let mut b = Batcher::new("f".into(), 100);
        let now = Instant::now();
        let mut before = Decoder::new(Format::Auto, None, 1 << 20);
        let p = b"2026-11-23T10:00:00Z stdout P {\"a\":";
        let e = b"2026-11-23T10:00:00Z stderr F between";
        before.line(p, info(0, p), now, &old, &mut b);
        before.line(e, info(100, e), now, &old, &mut b);
        let handed = before.hand_over(&old, 200, now);
        assert_eq!(handed.len(), 1);
        let mut after = Decoder::new(Format::Auto, None, 1 << 20);
        after.take_over(handed, &new, &mut b);
        let f = b"2026-11-23T10:00:00Z stdout F 1}";
        after.line(f, info(0, f), now, &new, &mut b);
        let built = b.take_any().expect("a batch");
        let commits: Vec<(u64, u64, u64)> = built
            .commits
            .iter()
            .map(|c| (c.stream, c.offset, c.events))
            .collect();
        // `between` held the rotated file at the first part's start; the joined line moves it
        // past what was read of it.
        assert_eq!(commits, [(11, 200, 2), (22, 33, 0)]);
        let events = built.lines.into_events();
        assert_eq!(json(&events[1])["message"], "{\"a\":1}");
        assert_eq!(json(&events[1])["log"]["offset"], 0);
    }

    /// The rest never comes: after the wait, the first part goes out flagged partial, moving
    /// only the rotated file's offset.
    #[test]
    fn a_line_whose_rest_never_comes_is_sent_partial_after_the_wait() {
        let old = TailMeta::new(FileKey { dev: 1, ino: 1 }, 11, 0, "c.log".into(), None);
        let new = TailMeta::new(FileKey { dev: 1, ino: 2 }, 22, 0, "c.log".into(), None);
        let mut b = Batcher::new("f".into(), 100);
        let now = Instant::now();
        let wait = Duration::from_secs(5);
        let mut before = Decoder::new(Format::Auto, None, 1 << 20).with_join_wait(wait);
        let p = b"2026-11-23T10:00:00Z stdout P half";
        before.line(p, info(0, p), now, &old, &mut b);
        let mut after = Decoder::new(Format::Auto, None, 1 << 20).with_join_wait(wait);
        after.take_over(before.hand_over(&old, 35, now), &new, &mut b);
        assert_eq!(after.deadline(), Some(now + wait));
        after.flush_if_due(now + wait / 2, &new, &mut b);
        assert!(b.take_any().is_none(), "waited for");
        after.flush_if_due(now + wait, &new, &mut b);
        let built = b.take_any().expect("sent");
        assert_eq!(built.commits.len(), 1);
        assert_eq!((built.commits[0].stream, built.commits[0].offset), (11, 35));
        let e = json(&built.lines.into_events()[0]);
        assert_eq!(e["message"], "half");
        assert_eq!(e["log"]["flags"], serde_json::json!(["partial"]));
    }
}
