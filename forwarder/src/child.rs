//! The child-process half of `trawl tee`, for the forwarder: runs the command, copies its output
//! through byte for byte (`tee(2)` when our output is a pipe) into the spool, forwards signals and
//! returns the command's exit code. Kept in step with src/cli/tee.rs, which also runs pipelines.

use crate::inputs::tee::forward;
use crate::inputs::tee::spool::{Chunk, Spool, SpoolLimits, StreamKind};
use crate::Args;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The child's pid for the signal handler (0: none yet).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our child's.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP go to the child; the forwarder stays up to ship what is left.
fn install_signal_forwarding() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
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

/// Writes all of `data` to `fd`; false once the fd is gone (the reader closed it).
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

fn is_pipe(fd: i32) -> bool {
    // SAFETY: fstat fills a zeroed stat of the right type; failure is handled.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}

enum Dup {
    /// This many bytes, now both in our output pipe and still in the child's pipe.
    Bytes(usize),
    End,
    OutputGone,
    /// `tee(2)` cannot be used here: copy through userspace.
    Unsupported,
}

/// `tee(2)`: duplicates the child's bytes into our output pipe without consuming them.
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

/// Copies one of the child's streams to ours, and into the spool.
fn copy(mut from: impl Read + AsRawFd, fd: i32, kind: StreamKind, spool: Arc<Spool>) {
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

/// Runs the command and forwards its lines; returns its exit code.
pub fn run(args: Args) -> i32 {
    let spool = Arc::new(Spool::new(
        SpoolLimits {
            memory_bytes: args.memory_buffer.as_usize(),
            spill_bytes: args.spill_max.bytes(),
            spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        },
        2,
    ));
    install_signal_forwarding();
    let mut child = match Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run `{}`: {e}", args.command[0]);
            return 127;
        }
    };
    CHILD.store(child.id() as i32, Ordering::Relaxed);

    let mut copies = Vec::new();
    for fd in [
        child.stdout.as_ref().map(|p| p.as_raw_fd()),
        child.stderr.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        // Bigger pipes absorb the moments the copy threads are not scheduled.
        // SAFETY: fcntl on a pipe fd we own; failure only leaves the default size.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
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

    // The forwarding thread (started next) inherits a lower priority; the copy threads keep the
    // normal one, since the command waits on them when its pipe is full.
    // SAFETY: plain syscall on the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let give_up = Arc::new(AtomicBool::new(false));
    {
        let s = spool.clone();
        let g = give_up.clone();
        let path = args.forward.clone();
        let max_line = args.max_line_bytes.as_usize();
        std::thread::spawn(move || {
            let report = forward::run(&s, path, max_line, g);
            let _ = done_tx.send(report.unsent_bytes);
        });
    }

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
    let code = match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        None => 1,
    };

    let deadline = args.flush_timeout.std();
    let unsent = match done_rx.recv_timeout(deadline) {
        Ok(n) => n,
        Err(_) => {
            give_up.store(true, Ordering::Relaxed);
            done_rx
                .recv_timeout(std::time::Duration::from_millis(500))
                .unwrap_or(0)
        }
    };
    let dropped = spool.dropped_bytes();
    let left = spool.queued_bytes() + unsent;
    spool.remove_spill_file();
    if dropped > 0 || left > 0 {
        eprintln!(
            "trawl-forward: {dropped} bytes of output dropped (buffers full), {left} bytes not shipped before the {}ms flush deadline",
            deadline.as_millis()
        );
    }
    code
}
