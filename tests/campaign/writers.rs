//! The campaign's writers: each owns one log stream (a plain file, or a kubelet-style CRI file
//! behind a `/var/log/containers` symlink), numbers every line (`wNN SEQ xxx`), and performs the
//! file-side faults (rotation, copytruncate, truncation, new and deleted files) under its lock,
//! keeping for every line which file holds it, so that lines a fault legitimately destroys are
//! excused and every other one is required.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines each writer appends every 50 ms.
pub const LINES_PER_TICK: u64 = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Plain,
    Kubelet,
}

/// A file on disk and the sequence numbers it holds (`start..end`).
pub struct PhysFile {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

pub struct Stream {
    pub id: u32,
    pub layout: Layout,
    /// Where the active file lives (the logs folder, or the pod's container folder).
    dir: PathBuf,
    active_name: String,
    file: File,
    active: PhysFile,
    /// Files no longer written: renamed, copied, or left behind by a new file.
    pub rotated: Vec<PhysFile>,
    /// A file deleted while the app still writes to it, until the app reopens its path.
    unlinked: bool,
    unlinked_from: u64,
    pub next_seq: u64,
    /// Sequence ranges a fault destroyed before trawl could have read them: not required.
    pub excused: Vec<(u64, u64)>,
    /// Every file that held lines, with what happened to it, to say where a lost line was.
    history: Vec<(u64, u64, String)>,
    /// Files deleted while written (`unlink_active`), each with the lines it held, and whether
    /// its lines were excused already (`excuse_skipped`).
    deleted: Vec<(PhysFile, bool)>,
    /// The inode of each entry of `deleted`, and whether trawl held it open when it was killed.
    deleted_inodes: Vec<(u64, bool)>,
    unlinked_ino: u64,
    counter: u32,
}

/// The message of line `seq` of writer `id`; its padding varies so lines differ in length.
pub fn message(id: u32, seq: u64) -> String {
    let pad = 30 + (seq.wrapping_mul(7919) % 60) as usize;
    format!("w{id:02} {seq:09} {}", "x".repeat(pad))
}

/// `(writer, seq)` from a delivered message, or None when it is not exactly one of ours (a
/// line cut, or two lines joined, are not).
pub fn parse(text: &str) -> Option<(u32, u64)> {
    if text.len() < 15 || !text.is_char_boundary(13) || !text.starts_with('w') {
        return None;
    }
    let id: u32 = text.get(1..3)?.parse().ok()?;
    let seq: u64 = text.get(4..13)?.parse().ok()?;
    (text == message(id, seq)).then_some((id, seq))
}

/// A CRI log line as containerd writes it, stamped with the time of writing.
fn cri(stream: &str, tag: char, text: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!("{now} {stream} {tag} {text}\n")
}

impl Stream {
    /// Creates the stream's file (and for kubelet, the pod folder and the containers symlink).
    pub fn create(id: u32, layout: Layout, root: &Path) -> Stream {
        let (dir, active_name) = match layout {
            Layout::Plain => (root.join("logs"), format!("app-{id}.log")),
            Layout::Kubelet => {
                let pod = root.join(format!("pods/shop_web-{id}_0000-{id:04}/app"));
                (pod, "0.log".to_owned())
            }
        };
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&active_name);
        let file = open_append(&path);
        if layout == Layout::Kubelet {
            let links = root.join("containers");
            std::fs::create_dir_all(&links).unwrap();
            let link = links.join(format!("web-{id}_shop_app-{:064x}.log", id));
            std::os::unix::fs::symlink(&path, link).unwrap();
        }
        Stream {
            id,
            layout,
            dir,
            active_name,
            file,
            active: PhysFile {
                path,
                start: 0,
                end: 0,
            },
            rotated: Vec::new(),
            unlinked: false,
            unlinked_from: 0,
            next_seq: 0,
            excused: Vec::new(),
            history: Vec::new(),
            deleted: Vec::new(),
            deleted_inodes: Vec::new(),
            unlinked_ino: 0,
            counter: 0,
        }
    }

    /// Appends `n` lines. Kubelet streams split some stdout lines into a CRI `P` part and an
    /// `F` part with a whole stderr line between them, as a container writing to both does.
    pub fn write_lines(&mut self, n: u64) {
        let mut buf = String::new();
        let mut written = 0;
        while written < n {
            let seq = self.next_seq;
            let text = message(self.id, seq);
            match self.layout {
                Layout::Plain => {
                    buf.push_str(&text);
                    buf.push('\n');
                    self.next_seq += 1;
                    written += 1;
                }
                Layout::Kubelet if seq % 10 == 3 => {
                    let other = message(self.id, seq + 1);
                    buf.push_str(&cri("stdout", 'P', &text[..9]));
                    buf.push_str(&cri("stderr", 'F', &other));
                    buf.push_str(&cri("stdout", 'F', &text[9..]));
                    self.next_seq += 2;
                    written += 2;
                }
                Layout::Kubelet => {
                    buf.push_str(&cri("stdout", 'F', &text));
                    self.next_seq += 1;
                    written += 1;
                }
            }
        }
        self.file.write_all(buf.as_bytes()).unwrap();
        self.active.end = self.next_seq;
    }

    fn fresh_active(&mut self) {
        let path = self.dir.join(&self.active_name);
        self.file = open_append(&path);
        self.unlinked = false;
        self.active = PhysFile {
            path,
            start: self.next_seq,
            end: self.next_seq,
        };
    }

    fn rotated_name(&mut self) -> PathBuf {
        self.counter += 1;
        match self.layout {
            Layout::Plain => self
                .dir
                .join(format!("{}.{}", self.active_name, self.counter)),
            Layout::Kubelet => self
                .dir
                .join(format!("0.log.20261130-13{:04}", self.counter)),
        }
    }

    /// Rotation by rename (logrotate `create`, or kubelet): the app writes one more chunk to
    /// the renamed file before it reopens its path.
    pub fn rotate_rename(&mut self) {
        let to = self.rotated_name();
        std::fs::rename(&self.active.path, &to).unwrap();
        self.write_lines(LINES_PER_TICK);
        let old = std::mem::replace(
            &mut self.active,
            PhysFile {
                path: to.clone(),
                start: 0,
                end: 0,
            },
        );
        self.note(
            old.start,
            self.next_seq,
            format!("renamed {} -> {}", old.path.display(), to.display()),
        );
        self.rotated.push(PhysFile {
            path: to,
            start: old.start,
            end: self.next_seq,
        });
        self.fresh_active();
    }

    /// kubelet's rotation as it runs it: the rotated file still plain is gzipped (`<f>.tmp`
    /// written, renamed to `<f>.gz`, `<f>` deleted; its lines stay required, trawl finds them
    /// there), then the log is renamed (`rotate_rename`).
    pub fn kubelet_rotate(&mut self) {
        for f in self.rotated.iter_mut() {
            if f.path.extension().is_some_and(|x| x == "gz") || !f.path.exists() {
                continue;
            }
            let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
            let gz = f.path.with_file_name(format!("{name}.gz"));
            let tmp = f.path.with_file_name(format!("{name}.tmp"));
            let mut enc = flate2::write::GzEncoder::new(
                File::create(&tmp).unwrap(),
                flate2::Compression::default(),
            );
            enc.write_all(&std::fs::read(&f.path).unwrap()).unwrap();
            enc.finish().unwrap().sync_all().unwrap();
            std::fs::rename(&tmp, &gz).unwrap();
            std::fs::remove_file(&f.path).unwrap();
            let what = format!("gzipped {} -> {}", f.path.display(), gz.display());
            self.history.push((f.start, f.end, what));
            f.path = gz;
        }
        self.rotate_rename();
    }

    /// logrotate `copytruncate`, with the app paused between copy and truncation (so no line
    /// falls in the window real copytruncate has).
    pub fn copytruncate(&mut self) {
        let to = self.rotated_name();
        std::fs::copy(&self.active.path, &to).unwrap();
        self.file.set_len(0).unwrap();
        self.note(
            self.active.start,
            self.active.end,
            format!("copied to {} then truncated", to.display()),
        );
        self.rotated.push(PhysFile {
            path: to,
            start: self.active.start,
            end: self.active.end,
        });
        self.active.start = self.next_seq;
        self.active.end = self.next_seq;
    }

    /// Truncation in place (`: > app.log`): what trawl had not read yet is gone by design.
    pub fn truncate(&mut self) {
        self.file.set_len(0).unwrap();
        self.note(
            self.active.start,
            self.active.end,
            format!("truncated {}", self.active.path.display()),
        );
        self.excused.push((self.active.start, self.active.end));
        self.active.start = self.next_seq;
    }

    /// The app starts a new file (plain streams): the old one stays, complete.
    pub fn new_file(&mut self) {
        self.counter += 1;
        let old_path = self.active.path.clone();
        self.note(
            self.active.start,
            self.active.end,
            format!("{} left for a new file", old_path.display()),
        );
        self.rotated.push(PhysFile {
            path: old_path,
            start: self.active.start,
            end: self.active.end,
        });
        self.active_name = format!("app-{}-{}.log", self.id, self.counter);
        self.fresh_active();
    }

    /// Deletes the active file while the app keeps writing to it (until `reopen`).
    pub fn unlink_active(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.unlinked_ino = std::fs::metadata(&self.active.path).unwrap().ino();
        std::fs::remove_file(&self.active.path).unwrap();
        self.unlinked = true;
        self.unlinked_from = self.active.end;
    }

    /// The app reopens its path after `unlink_active`.
    pub fn reopen(&mut self) {
        if self.unlinked {
            self.deleted_inodes.push((self.unlinked_ino, false));
            self.deleted.push((
                PhysFile {
                    path: self.active.path.clone(),
                    start: self.active.start,
                    end: self.active.end,
                },
                false,
            ));
            self.note(
                self.active.start,
                self.active.end,
                format!(
                    "{} deleted while written (from {})",
                    self.active.path.display(),
                    self.unlinked_from
                ),
            );
            self.fresh_active();
        }
    }

    /// Deletes the oldest rotated file (as logrotate's `rotate N` does); its lines trawl had
    /// not read are gone by design. Returns the path deleted.
    pub fn delete_oldest_rotated(&mut self) -> Option<PathBuf> {
        if self.rotated.is_empty() {
            return None;
        }
        let f = self.rotated.remove(0);
        let _ = std::fs::remove_file(&f.path);
        self.note(f.start, f.end, format!("{} deleted", f.path.display()));
        self.excused.push((f.start, f.end));
        Some(f.path)
    }

    /// A file created and deleted again (while trawl is down): never seen, excused.
    pub fn short_lived_file(&mut self, lines: u64) {
        self.counter += 1;
        let p = self
            .dir
            .join(format!("short-{}-{}.log", self.id, self.counter));
        let mut buf = String::new();
        let start = self.next_seq;
        for _ in 0..lines {
            if self.layout == Layout::Kubelet {
                buf.push_str(&cri("stdout", 'F', &message(self.id, self.next_seq)));
            } else {
                buf.push_str(&message(self.id, self.next_seq));
                buf.push('\n');
            }
            self.next_seq += 1;
        }
        std::fs::write(&p, buf).unwrap();
        std::fs::remove_file(&p).unwrap();
        self.note(
            start,
            self.next_seq,
            format!("{} created and deleted", p.display()),
        );
        self.excused.push((start, self.next_seq));
    }

    /// trawl said that a file at `path`, waiting for a `max_open_files` slot, was deleted before
    /// it got one, its bytes from `from` on lost (the risk that limit takes): the missing lines
    /// of the earliest file deleted at that path not excused yet that start at or after `from`
    /// are excused, and only those (a missing line before it was read by trawl: lost). Returns
    /// how many.
    pub fn excuse_skipped(&mut self, path: &Path, from: u64, missing: &dyn Fn(u64) -> bool) -> u64 {
        let Some((f, done)) = self
            .deleted
            .iter_mut()
            .find(|(f, done)| !*done && f.path == path && (f.start..f.end).any(missing))
        else {
            return 0;
        };
        *done = true;
        let (start, end) = (f.start, f.end);
        // Deleted files are plain ones: line `start` at byte 0, one line and a newline each.
        let mut at = 0u64;
        let mut gone = Vec::new();
        for q in start..end {
            if at >= from && missing(q) {
                gone.push(q);
            }
            at += message(self.id, q).len() as u64 + 1;
        }
        for &q in &gone {
            self.excused.push((q, q + 1));
        }
        self.note(
            start,
            end,
            format!(
                "{} deleted while it waited for a max_open_files slot (trawl counted it skipped)",
                path.display()
            ),
        );
        gone.len() as u64
    }

    /// trawl is about to be killed holding descriptors of these deleted inodes: the files
    /// deleted while written among them can be read by no process once it is gone.
    pub fn held_at_kill(&mut self, inodes: &[u64]) {
        for (ino, held) in self.deleted_inodes.iter_mut() {
            *held |= inodes.contains(ino);
        }
    }

    /// The lines of files deleted while written that trawl still held open when it was killed
    /// (`held_at_kill`) and that did not reach the output: gone with the last descriptor of a
    /// deleted file (trawl was reading them, or waiting on its output, when the kill came).
    /// A file it did not hold stays required: trawl never opening it is its own loss. Returns
    /// how many were excused.
    pub fn excuse_held_at_kill(&mut self, missing: &dyn Fn(u64) -> bool) -> u64 {
        let mut gone = Vec::new();
        let mut notes = Vec::new();
        for ((f, done), &(_, held)) in self.deleted.iter_mut().zip(&self.deleted_inodes) {
            if *done || !held {
                continue;
            }
            let before = gone.len();
            gone.extend((f.start..f.end).filter(|&q| missing(q)));
            if gone.len() > before {
                *done = true;
                notes.push((
                    f.start,
                    f.end,
                    format!(
                        "{} deleted while written, held by trawl when it was killed",
                        f.path.display()
                    ),
                ));
            }
        }
        for (a, b, what) in notes {
            self.note(a, b, what);
        }
        for &q in &gone {
            self.excused.push((q, q + 1));
        }
        gone.len() as u64
    }

    pub fn is_excused(&self, seq: u64) -> bool {
        self.excused.iter().any(|&(a, b)| seq >= a && seq < b)
    }

    fn note(&mut self, start: u64, end: u64, what: String) {
        self.history.push((start, end, what));
    }

    /// The first line of the file that held line `seq` (rotated, deleted or the active one),
    /// which tells the files of one stream apart.
    pub fn file_of(&self, seq: u64) -> Option<u64> {
        self.rotated
            .iter()
            .chain(self.deleted.iter().map(|(f, _)| f))
            .chain(std::iter::once(&self.active))
            .find(|f| seq >= f.start && seq < f.end)
            .map(|f| f.start)
    }

    /// Which file held line `seq`, and what became of it.
    pub fn where_is(&self, seq: u64) -> String {
        let mut found: Vec<&str> = self
            .history
            .iter()
            .filter(|(a, b, _)| seq >= *a && seq < *b)
            .map(|(_, _, w)| w.as_str())
            .collect();
        if seq >= self.active.start && seq < self.active.end {
            found.push("the active file at the end");
        }
        let mut text = found.join("; ");
        if self.layout == Layout::Kubelet && seq % 10 == 3 {
            text.push_str(", a CRI P+F stdout line");
        } else if self.layout == Layout::Kubelet && seq % 10 == 4 {
            text.push_str(", the stderr line inside a P+F pair");
        }
        text
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Writes `LINES_PER_TICK` lines to every stream every 50 ms until `stop`.
pub fn start_writing(
    streams: Vec<Arc<Mutex<Stream>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for s in &streams {
                s.lock().unwrap().write_lines(LINES_PER_TICK);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}
