//! The file input's own gauges on `/metrics`: open files, files waiting for a `max_open_files`
//! slot, and how far delivery is behind each file (size − committed offset), refreshed by the
//! reading thread and rendered at each scrape; and the lines of failed batches that could not
//! be read again (their bytes gone from every file), and the files deleted before they got a
//! `max_open_files` slot.

use crate::telemetry::metrics::{escape_label, Collector};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What the reading thread saw last.
#[derive(Default)]
pub struct Snapshot {
    pub open_files: usize,
    pub waiting_files: usize,
    /// Bytes not yet delivered, per followed file.
    pub lags: Vec<(PathBuf, u64)>,
}

pub struct FileStats {
    input: String,
    /// Most files given their own `trawl_file_lag_bytes` series (the largest lags): a node
    /// with thousands of log files must not make thousands of series.
    max_lag_series: usize,
    snapshot: Mutex<Snapshot>,
    /// Lines of failed batches whose bytes were found in no file any more (truncated or
    /// deleted before they could be read again, no copy found): lost.
    lost_lines: AtomicU64,
    /// Files deleted while they waited for a `max_open_files` slot, with bytes not read, and
    /// rotated files forgotten past the bound on those waiting.
    skipped_files: AtomicU64,
    /// Container lines sent flagged partial (`log.flags: [partial]`): split by the runtime,
    /// their rest never came.
    partial_lines: AtomicU64,
    /// Whether forgotten rotated files were logged.
    warned_forgotten: AtomicBool,
}

impl FileStats {
    pub fn new(input: &str, max_lag_series: usize) -> FileStats {
        FileStats {
            input: escape_label(input),
            max_lag_series,
            snapshot: Mutex::new(Snapshot::default()),
            lost_lines: AtomicU64::new(0),
            skipped_files: AtomicU64::new(0),
            partial_lines: AtomicU64::new(0),
            warned_forgotten: AtomicBool::new(false),
        }
    }

    /// Counts lines of failed batches that cannot be read again.
    pub fn lost(&self, lines: u64) {
        self.lost_lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Counts container lines sent flagged partial.
    pub fn partial(&self, lines: u64) {
        self.partial_lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Counts a file deleted before it got a `max_open_files` slot, with bytes not read.
    pub fn skipped_file(&self) {
        self.skipped_files.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts rotated files that will not be read because more than `bound` already waited
    /// for the reader (a `max_open_files` slot, or its next turn); logged the first time.
    pub fn forgot_rotated(&self, files: usize, bound: usize) {
        if files == 0 {
            return;
        }
        self.skipped_files
            .fetch_add(files as u64, Ordering::Relaxed);
        if !self.warned_forgotten.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                input = %self.input,
                files,
                bound,
                "more rotated files wait to be read than are remembered: the newest are not read (logged once; counted in trawl_file_skipped_files_total; raise max_open_files)"
            );
        }
    }

    pub fn publish(&self, mut snapshot: Snapshot) {
        // Largest lags first, then by path so equal lags keep a stable series set.
        snapshot
            .lags
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Ok(mut s) = self.snapshot.lock() {
            *s = snapshot;
        }
    }
}

impl Collector for FileStats {
    fn render(&self, out: &mut String) {
        let Ok(s) = self.snapshot.lock() else {
            return;
        };
        let c = &self.input;
        let _ = writeln!(
            out,
            "# HELP trawl_file_open_files Files the file input holds open.\n# TYPE trawl_file_open_files gauge\ntrawl_file_open_files{{component=\"{c}\"}} {}",
            s.open_files
        );
        let _ = writeln!(
            out,
            "# HELP trawl_file_waiting_files Files found that wait for a max_open_files slot.\n# TYPE trawl_file_waiting_files gauge\ntrawl_file_waiting_files{{component=\"{c}\"}} {}",
            s.waiting_files
        );
        let _ = writeln!(
            out,
            "# HELP trawl_file_lost_lines_total Lines of batches an output failed that could not be read again: their file was truncated or deleted meanwhile and no copy holds them.\n# TYPE trawl_file_lost_lines_total counter\ntrawl_file_lost_lines_total{{component=\"{c}\"}} {}",
            self.lost_lines.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP trawl_file_skipped_files_total Files not read (lost): deleted while they waited for a max_open_files slot with bytes not read, or rotated while more than 4096 rotated files waited.\n# TYPE trawl_file_skipped_files_total counter\ntrawl_file_skipped_files_total{{component=\"{c}\"}} {}",
            self.skipped_files.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP trawl_file_partial_lines_total Container lines sent as far as they got, flagged log.flags: [partial]: the runtime split them (CRI P, Docker without newline) and their rest never came (the container died, or its file was let go first).\n# TYPE trawl_file_partial_lines_total counter\ntrawl_file_partial_lines_total{{component=\"{c}\"}} {}",
            self.partial_lines.load(Ordering::Relaxed)
        );
        let total: u64 = s.lags.iter().map(|(_, l)| l).sum();
        let _ = writeln!(
            out,
            "# HELP trawl_file_lag_total_bytes Bytes of every followed file not yet delivered (size minus committed offset).\n# TYPE trawl_file_lag_total_bytes gauge\ntrawl_file_lag_total_bytes{{component=\"{c}\"}} {total}"
        );
        let _ = writeln!(
            out,
            "# HELP trawl_file_lag_bytes Bytes of a file not yet delivered (size minus committed offset), for the files with the largest lags.\n# TYPE trawl_file_lag_bytes gauge"
        );
        for (path, lag) in s.lags.iter().take(self.max_lag_series) {
            let _ = writeln!(
                out,
                "trawl_file_lag_bytes{{component=\"{c}\",path=\"{}\"}} {lag}",
                escape_label(&path.to_string_lossy())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_largest_lags_get_a_series_and_the_total_counts_all() {
        let stats = FileStats::new("logs", 2);
        stats.publish(Snapshot {
            open_files: 3,
            waiting_files: 1,
            lags: vec![
                (PathBuf::from("/a"), 10),
                (PathBuf::from("/b"), 300),
                (PathBuf::from("/c"), 20),
            ],
        });
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains("trawl_file_lag_bytes{component=\"logs\",path=\"/b\"} 300"));
        assert!(out.contains("trawl_file_lag_bytes{component=\"logs\",path=\"/c\"} 20"));
        assert!(!out.contains("path=\"/a\""), "{out}");
        assert!(out.contains("trawl_file_lag_total_bytes{component=\"logs\"} 330"));
        assert!(out.contains("trawl_file_open_files{component=\"logs\"} 3"));
        assert!(out.contains("trawl_file_waiting_files{component=\"logs\"} 1"));
    }
}
