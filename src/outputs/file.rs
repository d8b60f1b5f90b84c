//! The `file` output: one JSON object per line, appended to a file that is rotated by size
//! (`app.log` → `app.log.1` → ...). A batch is acknowledged once written and flushed to the
//! kernel (it survives `kill -9`), or fsynced too with `sync: true` (it survives power loss).

use super::stdout::{write_each, Format};
use super::{Output, OutputContext};
use crate::config::ByteSize;
use crate::inputs::BoxFuture;
use crate::telemetry::metrics::ComponentMetrics;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to append to; its folder is created when missing.
    pub path: PathBuf,
    /// `json` (one object per line) or `text` (the `message` only).
    #[serde(default)]
    pub format: Format,
    /// Rotate when the file would grow past this size.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Rotated files kept besides the current one (`path.1` is the newest).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// fsync each batch before acknowledging it.
    #[serde(default)]
    pub sync: bool,
}

fn default_max_size() -> ByteSize {
    ByteSize(100 << 20)
}

fn default_max_files() -> u32 {
    5
}

pub struct FileOutput {
    config: Config,
}

impl FileOutput {
    pub fn new(config: Config) -> Result<FileOutput, String> {
        if config.max_size.bytes() == 0 {
            return Err("max_size must be more than 0".into());
        }
        Ok(FileOutput { config })
    }
}

/// The open file and its size, rotating as it grows (also the default dead-letter file's).
pub(super) struct Rotating {
    config: Config,
    w: BufWriter<File>,
    size: u64,
    /// The size at the last commit: what a failed batch is cut back to.
    committed: u64,
}

impl Rotating {
    pub(super) fn open(config: Config) -> std::io::Result<Rotating> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&config.path)?;
        let size = cut_torn_tail(&mut f, &config.path)?;
        if config.sync && size == 0 {
            // Possibly just created: its directory entry must survive a power loss too.
            sync_parent(&config.path)?;
        }
        Ok(Rotating {
            config,
            w: BufWriter::with_capacity(256 * 1024, f),
            size,
            committed: size,
        })
    }

    fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        if self.config.sync {
            self.w.get_ref().sync_all()?;
        }
        let path = self.config.path.clone();
        if self.config.max_files == 0 {
            std::fs::remove_file(&path)?;
        } else {
            let _ = std::fs::remove_file(Self::rotated(&path, self.config.max_files));
            for n in (1..self.config.max_files).rev() {
                let from = Self::rotated(&path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated(&path, n + 1))?;
                }
            }
            std::fs::rename(&path, Self::rotated(&path, 1))?;
        }
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        // The renames and the new file are directory entries: without this, a power loss can
        // undo a rotation whose lines were fsynced.
        if self.config.sync {
            sync_parent(&path)?;
        }
        self.w = BufWriter::with_capacity(256 * 1024, f);
        self.size = 0;
        self.committed = 0;
        Ok(())
    }

    /// Writes one already-encoded line, rotating first when it would not fit.
    pub(super) fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.config.max_size.bytes() {
            self.rotate()?;
        }
        self.w.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    pub(super) fn commit(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        if self.config.sync {
            self.w.get_ref().sync_data()?;
        }
        self.committed = self.size;
        Ok(())
    }

    /// After a failed write (a full disk): drops what was buffered and cuts the file back to
    /// its last commit, so that the batch, sent again, is not preceded by a torn line.
    pub(super) fn roll_back(&mut self) -> std::io::Result<()> {
        let fresh = OpenOptions::new().append(true).open(&self.config.path)?;
        let old = std::mem::replace(&mut self.w, BufWriter::with_capacity(256 * 1024, fresh));
        // The buffered bytes are thrown away, not written (into_parts does not flush).
        let (file, _) = old.into_parts();
        file.set_len(self.committed)?;
        self.size = self.committed;
        Ok(())
    }
}

/// Cuts a line the last run left half-written (killed, or a full disk, in the middle of a
/// write) off the end of `f`, and gives the size left. Such a line was never committed, so
/// its batch comes again; appended to, the fragment joined the next line into one that is
/// neither. Every line ends with a newline: the file is cut just after its last one.
fn cut_torn_tail(f: &mut File, path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let size = f.metadata()?.len();
    let mut end = size;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let n = block.len().min(end as usize);
        f.seek(SeekFrom::Start(end - n as u64))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            end = end - n as u64 + i as u64 + 1;
            break;
        }
        end -= n as u64;
    }
    if end < size {
        tracing::warn!(
            path = %path.display(),
            bytes = size - end,
            "cut a torn last line (left by a crash or a full disk while writing) off the output file; its events are written again"
        );
        f.set_len(end)?;
    }
    Ok(end)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl Output for FileOutput {
    /// Writes JSON or text straight from lines (see `stdout::write_each`).
    fn reads_fields(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, mut ctx: OutputContext) -> BoxFuture<anyhow::Result<()>> {
        let config = self.config;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let path = config.path.clone();
                let format = config.format;
                let mut file = Rotating::open(config)
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
                let mut line = Vec::with_capacity(1024);
                let mut failing = false;
                while let Some(mut batch) = ctx.rx.blocking_recv() {
                    let n = batch.len() as u64;
                    ComponentMetrics::add(&ctx.metrics.events_in, n);
                    let mut bytes = 0u64;
                    line.clear();
                    let written = write_each(&mut batch, format, &mut line, |line| {
                        bytes += line.len() as u64;
                        let w = file.write_line(line);
                        line.clear();
                        w
                    })
                    .and_then(|_| file.commit());
                    if let Err(e) = written {
                        // A full disk passes: the batch fails (its input reads it again after
                        // a back-off), the file is cut back to its last whole line, and the
                        // output keeps taking batches, /health 503 until a write works again.
                        ComponentMetrics::add(&ctx.metrics.events_failed, n);
                        // Its input sends it again: a retry, as an ES or Kafka output's are.
                        ComponentMetrics::add(&ctx.metrics.retries, 1);
                        ctx.metrics
                            .attempt_failed(&format!("writing {}: {e}", path.display()));
                        batch.ack.failed();
                        if let Err(r) = file.roll_back() {
                            ctx.metrics.set_failed(format!("writing {}: {e}; cannot cut it back to its last whole line: {r}", path.display()));
                            while let Some(b) = ctx.rx.blocking_recv() {
                                ComponentMetrics::add(&ctx.metrics.events_failed, b.len() as u64);
                                b.ack.failed();
                            }
                            return Err(anyhow::anyhow!("writing {}: {e}; roll back: {r}", path.display()));
                        }
                        if !failing {
                            failing = true;
                            tracing::error!(output = %ctx.name, path = %path.display(), error = %e,
                                "cannot write: batches fail and are read again by their inputs until writing works (logged once)");
                        }
                        ctx.metrics
                            .set_failed(format!("writing {}: {e}", path.display()));
                        continue;
                    }
                    if failing {
                        failing = false;
                        tracing::info!(output = %ctx.name, path = %path.display(), "writing works again");
                        ctx.metrics.clear_failed();
                    }
                    ctx.metrics.delivering();
                    ComponentMetrics::add(&ctx.metrics.events_out, n);
                    ComponentMetrics::add(&ctx.metrics.bytes_out, bytes);
                    batch.ack.delivered();
                }
                Ok(())
            })
            .await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON lines at `path`, rotated past `max_size` bytes, two rotated files kept.
    fn config(path: &Path, max_size: u64, sync: bool) -> Config {
        Config {
            path: path.to_owned(),
            format: Format::Json,
            max_size: ByteSize(max_size),
            max_files: 2,
            sync,
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.log");
        let mut r = Rotating::open(config(&path, 25, true)).unwrap();
        for i in 0..5 {
            r.write_line(format!("line-{i}-0123456789\n").as_bytes())
                .unwrap();
            r.commit().unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "line-4-0123456789\n");
        assert_eq!(read(Rotating::rotated(&path, 1)), "line-3-0123456789\n");
        assert_eq!(read(Rotating::rotated(&path, 2)), "line-2-0123456789\n");
        assert!(!Rotating::rotated(&path, 3).exists());
    }

    /// A run killed in the middle of a write leaves part of a line at the end of the file:
    /// the next run starts after the last whole line, so the line it writes is whole and
    /// alone, whatever the fragment's length (here past the 64 KiB step of the look back).
    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let long = "x".repeat(200_000);
        for (before, torn) in [
            ("{\"message\":\"a\"}\n{\"message\":\"b\"}\n", "{\"mess"),
            ("{\"message\":\"a\"}\n", long.as_str()),
            ("", "{\"message\":\"half"),
            ("{\"message\":\"whole\"}\n", ""),
            ("", ""),
        ] {
            std::fs::write(&path, format!("{before}{torn}")).unwrap();
            let mut r = Rotating::open(config(&path, 100 << 20, false)).unwrap();
            assert_eq!(r.size, before.len() as u64);
            r.write_line(b"{\"message\":\"c\"}\n").unwrap();
            r.commit().unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{before}{{\"message\":\"c\"}}\n"),
                "{torn:.20}"
            );
        }
    }
}
