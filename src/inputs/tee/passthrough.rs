//! The child-process half of `trawl tee`, shared by trawl and the static forwarder
//! (`forwarder/`, which compiles this file by path): passes the command's output through byte
//! for byte (`tee(2)` when our output is a pipe), copies it into the spool, forwards signals.
//! Only std, libc and the spool: the forwarder has nothing else.

use super::spool::{Chunk, Spool, StreamKind};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The child's pid for the signal handler (0: none yet, or it has exited).
pub static CHILD: AtomicI32 = AtomicI32::new(0);

/// Set by a stopping signal (TERM, INT, HUP, QUIT) that comes after the child has exited: the
/// user does not want to wait out the flush deadline, as with a second Ctrl-C in Vector.
pub static STOP_FLUSH: AtomicBool = AtomicBool::new(false);

/// What a wrapper passes on, as tini does: every signal a process may be asked to act on.
/// SIGCHLD, SIGPIPE and the job-control stops stay ours; the fatal faults are not sent.
const FORWARDED: [libc::c_int; 8] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
];

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our child's.
        unsafe {
            libc::kill(pid, sig);
        }
    } else if matches!(
        sig,
        libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
    ) {
        STOP_FLUSH.store(true, Ordering::Relaxed);
    }
}

/// Whether `sig` is ignored in this process: as `nohup` (SIGHUP) or a shell starting a
/// background job (`app &` in a script: SIGINT and SIGQUIT) leave it.
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction only fills the zeroed `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The signals in `FORWARDED` go to the child; the shipping side stays up to ship what is left.
/// A signal ignored when trawl starts stays ignored, by trawl and by the child (an ignored
/// signal stays ignored across exec), as a wrapper such as `nice` or `env` leaves it: under
/// `nohup trawl tee -- app`, a hangup must not kill the app, nor Ctrl-C a script's background
/// `trawl tee -- app &`. A handler would make it forwarded and the child would get it.
pub fn install_signal_forwarding() {
    for sig in FORWARDED {
        if ignored(sig) {
            continue;
        }
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the
        // handler only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Waits for the command; returns the exit code a shell gives (128 + signal when killed).
/// From then on, signals end the flush instead of going to the (gone) child.
pub fn wait_child(child: &mut std::process::Child) -> i32 {
    let status = loop {
        match child.wait() {
            Ok(s) => break Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("error: waiting for the command: {e}");
                break None;
            }
        }
    };
    CHILD.store(0, Ordering::Relaxed);
    match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        None => 1,
    }
}

/// Waits for the shipper's report (bytes it could not send) until `deadline`, or until a
/// stopping signal; then tells it to give up and waits a moment more for its count. None when
/// no report came: the shipper is stuck (in a write to a receiver that stopped reading).
pub fn wait_shipper(
    done: &std::sync::mpsc::Receiver<u64>,
    deadline: std::time::Duration,
    give_up: &AtomicBool,
) -> Option<u64> {
    let end = std::time::Instant::now() + deadline;
    // Slices, so that a signal is seen within a tenth of a second; at most deadline/100ms
    // wake-ups, only after the command has exited.
    let slice = std::time::Duration::from_millis(100);
    loop {
        let now = std::time::Instant::now();
        if now >= end || STOP_FLUSH.load(Ordering::Relaxed) {
            break;
        }
        match done.recv_timeout(slice.min(end - now)) {
            Ok(n) => return Some(n),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    give_up.store(true, Ordering::Relaxed);
    done.recv_timeout(std::time::Duration::from_millis(500))
        .ok()
}

/// Writes all of `data` to `fd`, as `tee` does; false once the fd is gone (the reader closed it).
fn write_fd(fd: i32, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: data is valid for reads of data.len() bytes.
        let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[r as usize..];
    }
    true
}

/// Whether `fd` is a pipe (what `tee(2)` can write to).
fn is_pipe(fd: i32) -> bool {
    // SAFETY: fstat fills a zeroed stat of the right type; failure is handled.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}

/// What `tee(2)` did.
enum Dup {
    /// This many bytes, now waiting both in our output pipe and still in the child's pipe.
    Bytes(usize),
    /// The child closed its end and everything was read.
    End,
    /// Our output is gone (the reader closed it).
    OutputGone,
    /// `tee(2)` cannot be used here: copy through userspace.
    Unsupported,
}

/// Duplicates up to `max` bytes of the child's pipe into our output pipe without consuming
/// them (`tee(2)`): the pass-through costs no copy through userspace. Blocks like a write.
fn dup_pipe(from: i32, to: i32, max: usize) -> Dup {
    loop {
        // SAFETY: plain syscall on two fds we hold; no memory is passed.
        let r = unsafe { libc::tee(from, to, max, 0) };
        if r > 0 {
            return Dup::Bytes(r as usize);
        }
        if r == 0 {
            return Dup::End;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            Some(libc::EPIPE) => return Dup::OutputGone,
            _ => return Dup::Unsupported,
        }
    }
}

/// Fills `buf` from the pipe; false at its end or on an error.
fn read_exact_fd(from: &mut impl Read, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Copies one of the child's streams to ours, and into the spool. When ours is a pipe (as
/// under a container runtime), the pass-through is `tee(2)`, then the same bytes are read for
/// the spool; otherwise they are read, then written.
pub fn copy(mut from: impl Read + AsRawFd, fd: i32, kind: StreamKind, spool: Arc<Spool>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut passing = true;
    let mut use_tee = is_pipe(fd);
    loop {
        if passing && use_tee {
            match dup_pipe(from.as_raw_fd(), fd, buf.len()) {
                Dup::Bytes(n) => {
                    if !read_exact_fd(&mut from, &mut buf[..n]) {
                        break;
                    }
                    spool.push(Chunk {
                        stream: kind,
                        data: buf[..n].to_vec(),
                    });
                    continue;
                }
                Dup::End => break,
                Dup::OutputGone => passing = false,
                Dup::Unsupported => use_tee = false,
            }
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if passing && !write_fd(fd, &buf[..n]) {
            // Our own output is gone; keep reading so the child never blocks on a full pipe.
            passing = false;
        }
        spool.push(Chunk {
            stream: kind,
            data: buf[..n].to_vec(),
        });
    }
    spool.writer_done();
}

/// Starts `command` with its stdout and stderr piped, forwards our signals to it, and starts
/// the two copy threads (pass-through plus spool). On failure to start, says why on stderr and
/// returns the exit code a shell gives (127).
pub fn start(
    command: &[String],
    spool: &Arc<Spool>,
) -> Result<(std::process::Child, Vec<std::thread::JoinHandle<()>>), i32> {
    install_signal_forwarding();
    let Some(program) = command.first() else {
        eprintln!("error: no command to run");
        return Err(127);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(&command[1..])
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // If trawl is killed outright (SIGKILL, OOM), the command gets SIGTERM rather than running
    // on unseen: what it writes then has no reader and would be lost without a word. (The
    // signal follows the thread that forks, the main thread, which lives as long as we do.)
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, kill on itself).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            // Died between fork and prctl: the signal would never come.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run `{program}`: {e}");
            return Err(127);
        }
    };
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    // Bigger pipes absorb the moments the copy threads are not scheduled, so the command does
    // not stall on a full 64 KiB pipe (Linux allows up to 1 MiB unprivileged).
    for fd in [
        child.stdout.as_ref().map(|p| p.as_raw_fd()),
        child.stderr.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        // SAFETY: fcntl on a pipe fd we own; failure only leaves the default size.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    let mut copies = Vec::new();
    if let Some(out) = child.stdout.take() {
        let s = spool.clone();
        copies.push(std::thread::spawn(move || {
            copy(out, 1, StreamKind::Stdout, s)
        }));
    }
    if let Some(err) = child.stderr.take() {
        let s = spool.clone();
        copies.push(std::thread::spawn(move || {
            copy(err, 2, StreamKind::Stderr, s)
        }));
    }
    Ok((child, copies))
}
