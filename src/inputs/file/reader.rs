//! One tailed file: reads it in large chunks from its offset, checks before each read that it
//! was not truncated or rewritten (its first bytes and the bytes before the offset), and turns
//! bytes into events: lines, then container records (partial lines joined per stream up to a
//! cap), then multiline joining.

use super::batcher::Batcher;
use super::container::{self, Format};
use super::identity::{self, FileKey, Fingerprint, END_MARK_BYTES};
use super::multiline::Multiline;
use crate::event::{Map, Value};
use crate::inputs::lines::{LineInfo, LineSplitter};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::inputs::lines::Line;

mod carried;
use carried::{Carried, Handed, HandedLine};

/// What every event of a file carries besides its line.
#[derive(Clone)]
pub struct TailMeta {
    pub key: FileKey,
    pub stream: u64,
    /// Bumped each time the stream is read again after a failed batch (see `retry`).
    pub epoch: u32,
    path: String,
    /// `log.file` (`{ path }`), shared by the file's events: built when the path is known.
    log_file: Value,
    /// `kubernetes.*` and `container.id` from the path, for container logs, their objects
    /// shared by the file's events.
    pub k8s: Option<Map>,
}

impl TailMeta {
    pub fn new(key: FileKey, stream: u64, epoch: u32, path: String, k8s: Option<Map>) -> TailMeta {
        let k8s = k8s.map(|m| {
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::Object(o) => (k, Value::Object(o.into_shared())),
                    other => (k, other),
                })
                .collect()
        });
        TailMeta {
            key,
            stream,
            epoch,
            log_file: log_file(&path),
            path,
            k8s,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file was renamed: its next events carry the new path.
    pub fn set_path(&mut self, path: String) {
        self.log_file = log_file(&path);
        self.path = path;
    }

    pub fn log_file(&self) -> &Value {
        &self.log_file
    }
}

fn log_file(path: &str) -> Value {
    let mut file = Map::with_capacity(1);
    file.push_new("path", Value::String(path.to_owned()));
    Value::Object(file.into_shared())
}

/// A container line split by the runtime, being joined.
pub struct Joining {
    text: Vec<u8>,
    start: u64,
    /// Just past the last part read.
    end: u64,
    truncated: bool,
    stream: Option<&'static str>,
    time: Option<DateTime<Utc>>,
    /// Its first parts were read from the file this one replaced at its path (kubelet's
    /// rotation came between a `P` and its `F`): `start` and `end` are offsets in that file.
    carried: Option<Box<Carried>>,
}

/// Slots of `Decoder::joining`: container runtimes interleave the records of stdout and stderr
/// (containerd may write a stdout line between two `P` parts of a stderr line), so each stream
/// is joined on its own; records without a stream (Docker lines lacking one) have the first slot.
const STREAMS: usize = 3;

fn stream_slot(stream: Option<&'static str>) -> usize {
    match stream {
        None => 0,
        Some("stdout") => 1,
        Some(_) => 2,
    }
}

/// Turns a file's lines into events: format detection, container unwrapping, joining.
pub struct Decoder {
    format: Format,
    /// The line being joined on each stream, each capped at `max_bytes` on its own.
    joining: [Option<Joining>; STREAMS],
    multiline: Option<Multiline>,
    max_bytes: usize,
    /// How long the rest of a line carried over from a rotated file is waited for.
    join_wait: Duration,
    /// Lines handed over to the file replacing this one: this file's offset is not committed
    /// past their start by its own lines (the joined line commits it), and read again after a
    /// failed batch, their parts are skipped (see `carried`).
    handed: Vec<Handed>,
    /// Lines taken over from the file this one replaced, also once sent: read again after a
    /// failed batch, this file joins their rest to them again.
    taken: Vec<std::sync::Arc<std::sync::Mutex<HandedLine>>>,
    /// Lines with invalid UTF-8 (replaced with U+FFFD).
    pub invalid_utf8: u64,
    /// Records that claimed a container format and could not be decoded (kept as plain lines).
    pub undecodable: u64,
}

impl Decoder {
    pub fn new(format: Format, multiline: Option<Multiline>, max_bytes: usize) -> Decoder {
        Decoder {
            format,
            joining: Default::default(),
            multiline,
            max_bytes,
            join_wait: Duration::from_secs(5),
            handed: Vec::new(),
            taken: Vec::new(),
            invalid_utf8: 0,
            undecodable: 0,
        }
    }

    /// How long the rest of a line whose first parts a rotated file holds is waited for.
    pub fn with_join_wait(mut self, wait: Duration) -> Decoder {
        self.join_wait = wait;
        self
    }

    /// Whether lines of this file may be split in records to join (a container format, or
    /// not detected yet).
    pub fn joins_records(&self) -> bool {
        self.format != Format::Raw
    }

    /// Where the first byte not to be committed past by this file's own lines is: the start of
    /// a line being joined from it (or handed over from it).
    fn held_here(&self) -> Option<u64> {
        self.joining
            .iter()
            .flatten()
            .filter_map(|j| match &j.carried {
                None => Some(j.start),
                Some(c) => c.here_start,
            })
            .chain(self.handed.iter().map(|h| h.start))
            .min()
    }

    fn text(&mut self, bytes: &[u8]) -> String {
        crate::inputs::lines::to_text(bytes).unwrap_or_else(|replaced| {
            self.invalid_utf8 += 1;
            replaced
        })
    }

    /// One line of the file.
    pub fn line(
        &mut self,
        bytes: &[u8],
        info: LineInfo,
        now: Instant,
        meta: &TailMeta,
        batcher: &mut Batcher,
    ) {
        if bytes.is_empty() && !info.truncated {
            // Blank lines carry nothing; Filebeat skips them too.
            return;
        }
        if self.format == Format::Auto {
            self.format = container::detect(bytes);
        }
        let decoded = match self.format {
            Format::Docker => container::decode_docker(bytes),
            Format::Cri => container::decode_cri(bytes),
            Format::Raw | Format::Auto => None,
        };
        let Some(d) = decoded else {
            if self.format != Format::Raw {
                self.undecodable += 1;
            }
            if self.multiline.is_none() && self.joining.iter().all(Option::is_none) {
                // A line as it is: its bytes go to the batch's buffer, without a `Line`.
                if batcher.push_bytes(meta, bytes, info) {
                    self.invalid_utf8 += 1;
                }
                return;
            }
            let (line, replaced) = Line::decoded(bytes, info);
            if replaced {
                self.invalid_utf8 += 1;
            }
            return self.joined(line, now, &mut |line| batcher.push(meta, line));
        };
        let slot = stream_slot(d.stream);
        if self.skip_handed(slot, info.start, meta, batcher) {
            return;
        }
        let mut j = self.joining[slot].take().unwrap_or_else(|| Joining {
            text: Vec::new(),
            start: info.start,
            end: info.end,
            truncated: false,
            stream: d.stream,
            time: d.time,
            carried: None,
        });
        match j.carried.as_mut() {
            // `end` stays in the rotated file: this part is this file's.
            Some(c) => {
                c.here_start.get_or_insert(info.start);
            }
            None => j.end = info.end,
        }
        let room = self.max_bytes.saturating_sub(j.text.len());
        if d.message.len() > room {
            j.text.extend_from_slice(&d.message[..room]);
            j.truncated = true;
        } else {
            j.text.extend_from_slice(&d.message);
        }
        j.truncated |= info.truncated;
        if d.partial {
            self.joining[slot] = Some(j);
            return;
        }
        if j.carried.is_some() {
            return self.send_carried(j, Some(info.end), meta, batcher);
        }
        if j.text.is_empty() && !j.truncated {
            // An empty line the container printed: skipped as a blank line of a file is.
            return;
        }
        let text = self.text(&j.text);
        let line = Line {
            text,
            start: j.start,
            end: info.end,
            truncated: j.truncated,
            multiline: false,
            partial: false,
            stream: j.stream,
            time: j.time,
        };
        self.joined(line, now, &mut |line| batcher.push(meta, line))
    }

    fn joined(&mut self, mut line: Line, now: Instant, out: &mut dyn FnMut(Line)) {
        // Reading must resume no later than where a line still being joined on another stream
        // began: its first parts are not delivered yet (at the cost of reading again, after a
        // restart, the lines of the other stream written in between).
        if let Some(start) = self.held_here() {
            line.end = line.end.min(start);
        }
        match &mut self.multiline {
            Some(m) => m.push(line, now, out),
            None => out(line),
        }
    }

    pub fn flush_if_due(&mut self, now: Instant, meta: &TailMeta, batcher: &mut Batcher) {
        self.send_carried_due(now, meta, batcher);
        if let Some(m) = &mut self.multiline {
            m.flush_if_due(now, &mut |line| batcher.push(meta, line));
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        let multiline = self.multiline.as_ref().and_then(|m| m.deadline());
        match (multiline, self.carried_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what is being joined (the file is going away): a line whose last part never came
    /// is sent as far as it got, flagged partial, oldest first (those carried over from a
    /// rotated file first).
    pub fn flush(&mut self, now: Instant, meta: &TailMeta, batcher: &mut Batcher) {
        while let Some(slot) = (0..STREAMS)
            .filter(|i| self.joining[*i].is_some())
            .min_by_key(|i| {
                self.joining[*i]
                    .as_ref()
                    .map(|j| (j.carried.is_none(), j.start))
            })
        {
            let Some(j) = self.joining[slot].take() else {
                break;
            };
            if j.carried.is_some() {
                self.send_carried(j, None, meta, batcher);
                continue;
            }
            let line = Line {
                text: self.text(&j.text),
                start: j.start,
                end: j.end,
                truncated: j.truncated,
                multiline: false,
                partial: true,
                stream: j.stream,
                time: j.time,
            };
            self.joined(line, now, &mut |line| batcher.push(meta, line));
        }
        if let Some(m) = &mut self.multiline {
            m.flush(&mut |line| batcher.push(meta, line));
        }
    }

    /// The same settings with no state (a truncated file starts over).
    pub fn fresh(&self, format: Format) -> Decoder {
        Decoder::new(format, self.multiline.clone(), self.max_bytes).with_join_wait(self.join_wait)
    }
}

/// What a read attempt found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Read this many bytes.
    Data(usize),
    /// Nothing new.
    Eof { deleted: bool },
    /// The file is shorter than the offset, or its first bytes changed: it was truncated.
    Truncated,
}

/// One file being followed.
pub struct Tail {
    pub meta: TailMeta,
    pub path: PathBuf,
    pub fp: Fingerprint,
    file: Option<File>,
    splitter: LineSplitter,
    pub decoder: Decoder,
    /// Last time the file grew.
    pub last_growth: Instant,
    /// Since when the file is no longer found under `paths` (renamed away or deleted).
    pub unseen_since: Option<Instant>,
    /// Since when the lines being joined in the file it replaced at its path (kubelet's
    /// rotation) are to be taken over, before it is read (see `tailer::carry`).
    pub take_over_since: Option<Instant>,
    /// The file's first bytes as read (up to the fingerprint size, kept: 1 KiB per file): the
    /// fingerprint grows from the bytes actually read, never from a later content of the file.
    prefix: Vec<u8>,
    /// The last bytes read before `position()` (up to `END_MARK_BYTES`): a file truncated and
    /// rewritten with the same first bytes past our offset between two reads still differs here.
    recent: Vec<u8>,
}

impl Tail {
    pub fn new(
        meta: TailMeta,
        path: PathBuf,
        prefix: Vec<u8>,
        file: File,
        offset: u64,
        decoder: Decoder,
        max_line: usize,
    ) -> Tail {
        // Unreadable, the mark is left empty: the file is then checked by its first bytes only.
        let recent = identity::read_before(&file, offset).unwrap_or_default();
        Tail {
            recent,
            fp: Fingerprint::of(&prefix),
            prefix,
            meta,
            path,
            file: Some(file),
            splitter: LineSplitter::new(max_line, offset),
            decoder,
            last_growth: Instant::now(),
            unseen_since: None,
            take_over_since: Some(Instant::now()),
        }
    }

    /// Offset of the first byte not read yet.
    pub fn position(&self) -> u64 {
        self.splitter.position()
    }

    /// Where and what the last bytes read are (offset just past them, FNV-1a of the
    /// `END_MARK_BYTES` before it, fewer near the start), for the registry to check the file
    /// against at the next start; `None` before any byte was read.
    pub fn end_mark(&self) -> Option<(u64, u64)> {
        let at = self.position();
        (at > 0 && self.recent.len() as u64 == at.min(END_MARK_BYTES))
            .then(|| (at, identity::fnv1a(&self.recent)))
    }

    /// The first bytes read from the file (what its fingerprint covers).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Offset where the line being read began: reading its copy elsewhere resumes here.
    pub fn line_start(&self) -> u64 {
        self.splitter.position() - self.splitter.pending() as u64
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The file's current size: of the open file, else of what is at its path now.
    pub fn size(&self) -> Option<u64> {
        match &self.file {
            Some(f) => f.metadata().ok().map(|m| m.len()),
            None => std::fs::metadata(&self.path).ok().map(|m| m.len()),
        }
    }

    /// True when the open file still has a name (link count above 0): closed, it could be
    /// opened again. A file deleted since the last scan must stay open.
    pub fn still_linked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.nlink() > 0)
    }

    pub fn close(&mut self) {
        self.file = None;
    }

    /// Reopens a closed file (same identity checked by the caller).
    pub fn reopen(&mut self, file: File) {
        self.file = Some(file);
    }

    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Starts the file over at 0 with a new stream id (after truncation).
    pub fn restart(&mut self, stream: u64, prefix: Vec<u8>, format: Format, max_line: usize) {
        self.meta.stream = stream;
        self.fp = Fingerprint::of(&prefix);
        self.prefix = prefix;
        self.splitter = LineSplitter::new(max_line, 0);
        self.recent.clear();
        self.decoder = self.decoder.fresh(format);
        self.last_growth = Instant::now();
    }

    /// Reads again from `offset` (where delivery stopped before a failed batch) under `epoch`.
    /// Nothing held is kept: every line from `offset` on is read again.
    pub fn rewind(&mut self, offset: u64, epoch: u32, format: Format, max_line: usize) {
        self.meta.epoch = epoch;
        self.splitter = LineSplitter::new(max_line, offset);
        // Lines carried over from a rotated file, or handed over to the file replacing this
        // one, outlive the reading again (see `carried`).
        let mut fresh = self.decoder.fresh(format);
        self.decoder.rewound(&mut fresh, offset, Instant::now());
        self.decoder = fresh;
        self.last_growth = Instant::now();
        // The next read checks the bytes before its offset against these: kept from the old
        // position, they made every reading again look like a truncation (the file was then
        // read again from 0 under a new stream id: new `_id`s, and a registry left behind).
        self.recent = self
            .file
            .as_ref()
            .and_then(|f| identity::read_before(f, offset).ok())
            .unwrap_or_default();
    }

    /// Reads one chunk into `buf` and hands the resulting events to `batcher`.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        fp_max: u64,
        now: Instant,
        batcher: &mut Batcher,
    ) -> io::Result<ReadOutcome> {
        let Some(file) = self.file.as_ref() else {
            return Ok(ReadOutcome::Eof { deleted: false });
        };
        let md = file.metadata()?;
        let position = self.splitter.position();
        if md.len() < position {
            return Ok(ReadOutcome::Truncated);
        }
        if md.len() == position {
            return Ok(ReadOutcome::Eof {
                deleted: md.nlink() == 0,
            });
        }
        // A rewrite after truncation can grow past our offset before we look again: the first
        // bytes tell. One small pread per large read.
        if !self.fp.matches(file)? || !identity::bytes_before_are(file, position, &self.recent)? {
            return Ok(ReadOutcome::Truncated);
        }
        let n = loop {
            match file.read_at(buf, position) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(ReadOutcome::Eof {
                deleted: md.nlink() == 0,
            });
        }
        self.last_growth = now;
        let keep = END_MARK_BYTES as usize;
        if n >= keep {
            self.recent.clear();
            self.recent.extend_from_slice(&buf[n - keep..n]);
        } else {
            self.recent.extend_from_slice(&buf[..n]);
            let excess = self.recent.len().saturating_sub(keep);
            self.recent.drain(..excess);
        }
        let Tail {
            meta,
            splitter,
            decoder,
            ..
        } = self;
        splitter.push(&buf[..n], &mut |bytes, info| {
            decoder.line(bytes, info, now, meta, batcher);
        });
        let have = self.prefix.len() as u64;
        if have < fp_max && position <= have && have < position + n as u64 {
            let from = (have - position) as usize;
            let to = n.min((fp_max - position) as usize);
            self.prefix.extend_from_slice(&buf[from..to]);
            self.fp = Fingerprint::of(&self.prefix);
        } else if have < fp_max && position > have {
            // Started past the first bytes (resumed, `start_at: end`): they were just checked
            // by the fingerprint, so reading them again only adds what follows.
            if let Some(f) = &self.file {
                self.prefix = super::identity::read_first(f, fp_max)?;
                self.fp = Fingerprint::of(&self.prefix);
            }
        }
        Ok(ReadOutcome::Data(n))
    }

    /// Sends a multiline event that waited too long.
    pub fn flush_if_due(&mut self, now: Instant, batcher: &mut Batcher) {
        let Tail { meta, decoder, .. } = self;
        decoder.flush_if_due(now, meta, batcher);
    }

    /// Sends what multiline is joining, because nothing more will be read (`once`); an
    /// unterminated last line stays unread, as it may not be complete.
    pub fn flush_joined(&mut self, now: Instant, batcher: &mut Batcher) {
        let Tail { meta, decoder, .. } = self;
        decoder.flush(now, meta, batcher);
    }

    /// Sends everything held (the file is being dropped), including an unterminated last line.
    pub fn flush_all(&mut self, now: Instant, batcher: &mut Batcher) {
        let Tail {
            meta,
            splitter,
            decoder,
            ..
        } = self;
        splitter.finish(&mut |bytes, info| {
            decoder.line(bytes, info, now, meta, batcher);
        });
        decoder.flush(now, meta, batcher);
    }
}
