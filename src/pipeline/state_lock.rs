//! One process per state on disk: `trawl run` locks each input's read positions (the file
//! input's registry, journald's cursor) and each output's disk buffer for its whole life, as
//! Filebeat locks `path.data`. Two processes on one registry read every file twice and
//! overwrite each other's offsets, so a restart after them resumes from whichever wrote last.
//! A reload locks the states of the components it adds and lets go of those it removes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The locks held, by lock file; released when the process ends (or this is dropped).
#[derive(Default)]
pub struct StateLocks {
    held: Vec<(PathBuf, File)>,
}

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is held by another trawl process{holder}{}: two processes cannot share an input's read positions or an output's disk buffer (they would read every file twice and overwrite each other's offsets); give each its own data_dir (or stop the other)", waited_for(*.waited))]
    Held {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
}

/// " past 40s" when the start waited for the holder; nothing when it did not wait.
fn waited_for(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" past {waited:?}")
    }
}

/// `<state>.lock`: beside what it guards (not inside: a disk buffer locks a file of its own
/// there, and a second lock on it from this process would conflict), so that components of
/// different names (two pipelines sharing a `data_dir`) never wait for each other.
fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of each state, given as (what keeps it, e.g. `input logs`; its file or
/// folder). One held by another process (an old instance still draining while its replacement
/// starts, as in a rollout with `maxSurge`) is waited for, up to `wait`, logged once with the
/// holder's pid; past that, the start is refused.
pub fn acquire(states: &[(String, &Path)], wait: Duration) -> Result<StateLocks, LockError> {
    let mut locks = StateLocks::default();
    locks.add(states, wait)?;
    Ok(locks)
}

impl StateLocks {
    /// Takes the locks of `states` not held yet, as `acquire` does; on an error, lets go of
    /// those it took, so that a refused reload holds what it held before. Returns the lock files
    /// it took.
    pub fn add(
        &mut self,
        states: &[(String, &Path)],
        wait: Duration,
    ) -> Result<Vec<PathBuf>, LockError> {
        let deadline = Instant::now() + wait;
        let mut taken = Vec::new();
        for (owner, state) in states {
            let path = lock_path(state);
            if self.held.iter().any(|(p, _)| *p == path) {
                continue;
            }
            match take(owner, path, deadline, wait) {
                Ok((path, file)) => {
                    taken.push(path.clone());
                    self.held.push((path, file));
                }
                Err(e) => {
                    self.release(&taken);
                    return Err(e);
                }
            }
        }
        Ok(taken)
    }

    /// Lets go of these lock files (as `add` returned them).
    pub fn release(&mut self, locks: &[PathBuf]) {
        self.held.retain(|(p, _)| !locks.contains(p));
    }

    /// Lets go of every lock but those of `states`: what a reload removed.
    pub fn keep_only(&mut self, states: &[(String, &Path)]) {
        let keep: Vec<PathBuf> = states.iter().map(|(_, s)| lock_path(s)).collect();
        self.held.retain(|(p, _)| keep.contains(p));
    }
}

/// Takes one lock, waiting for another process until `deadline` (`wait` after the first).
fn take(
    owner: &str,
    path: PathBuf,
    deadline: Instant,
    wait: Duration,
) -> Result<(PathBuf, File), LockError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LockError::Open {
            path: path.clone(),
            source,
        })?;
    }
    let open_error = |source| LockError::Open {
        path: path.clone(),
        source,
    };
    // Held open read-only: a descriptor open for writing would keep the volume from being
    // remounted read-only (EBUSY), and flock needs none.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(open_error)?;
    let mut file = File::open(&path).map_err(open_error)?;
    let mut logged = false;
    while !try_lock(&file) {
        let holder = holder_of(&mut file);
        if Instant::now() >= deadline {
            return Err(LockError::Held {
                path,
                holder,
                waited: wait,
            });
        }
        if !logged {
            logged = true;
            tracing::warn!(component = %owner, lock = %path.display(), holder = %holder.trim(), wait = ?wait,
                "state held by another trawl process (this input's read positions or this output's disk buffer): waiting for it to stop before starting (refused past the wait)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Who holds it, for the message of the next one that finds it taken.
    let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
    Ok((path, file))
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own, valid for the duration of the call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// " (pid N)" from the lock file, or nothing when it cannot be read.
fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flock locks belong to open file descriptions: a second open in this process conflicts
    /// like another process would, which lets one test play both.
    #[test]
    fn a_held_state_file_is_waited_for_then_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("registry").join("logs.json");
        let first = acquire(&[("input logs".into(), &registry)], Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = acquire(
            &[("input logs".into(), &registry)],
            Duration::from_millis(300),
        )
        .err()
        .expect("a second holder is refused");
        assert!(start.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(msg.contains("logs.json.lock"), "{msg}");
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        // Another input's file is not held by it.
        let other = dir.path().join("registry").join("app.json");
        assert!(acquire(&[("input app".into(), &other)], Duration::ZERO).is_ok());
        // Released by the first: taken at once.
        drop(first);
        assert!(acquire(&[("input logs".into(), &registry)], Duration::ZERO).is_ok());
    }

    #[test]
    fn a_holder_that_stops_within_the_wait_lets_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("logs.json");
        let first = acquire(&[("input logs".into(), &registry)], Duration::ZERO).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let start = Instant::now();
        assert!(acquire(&[("input logs".into(), &registry)], Duration::from_secs(10)).is_ok());
        assert!(start.elapsed() < Duration::from_secs(5));
        release.join().unwrap();
    }

    #[test]
    fn a_refused_addition_takes_nothing_and_a_removal_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.json"),
            dir.path().join("b.json"),
            dir.path().join("c.json"),
        );
        let mut mine = acquire(&[("input a".into(), &a)], Duration::ZERO).unwrap();
        let other = acquire(&[("input c".into(), &c)], Duration::ZERO).unwrap();
        // `b` is free, `c` is the other's: the addition is refused and `b` is let go again.
        let refused = mine.add(
            &[
                ("input a".into(), &a),
                ("input b".into(), &b),
                ("input c".into(), &c),
            ],
            Duration::ZERO,
        );
        assert!(matches!(refused, Err(LockError::Held { .. })));
        assert!(acquire(&[("input b".into(), &b)], Duration::ZERO).is_ok());
        // Without `c`, `b` is taken, and only `b` (`a` was held already).
        let taken = mine
            .add(
                &[("input a".into(), &a), ("input b".into(), &b)],
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(taken, vec![lock_path(&b)]);
        assert!(acquire(&[("input b".into(), &b)], Duration::ZERO).is_err());
        // A reload that keeps only `b`: `a` is free for another process.
        mine.keep_only(&[("input b".into(), &b)]);
        assert!(acquire(&[("input a".into(), &a)], Duration::ZERO).is_ok());
        assert!(acquire(&[("input b".into(), &b)], Duration::ZERO).is_err());
        drop(other);
    }
}
