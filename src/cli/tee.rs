//! `trawl tee`: runs a command, passes its stdout and stderr through byte for byte, and ships
//! its lines to an in-process pipeline (`-c`) or to a sidecar trawl (`--forward unix:PATH`),
//! never slowing the command; forwards signals and exits with the command's status.

use crate::config::{ByteSize, Duration};
use crate::inputs::tee::forward;
use crate::inputs::tee::spool::{Chunk, Spool, SpoolLimits, StreamKind};
use crate::inputs::tee::TeeInput;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TeeArgs {
    /// Pipeline file for the command's lines (processors and outputs; the lines are the input
    /// named `tee`, so no `inputs:` section is needed). Run in-process.
    #[arg(short, long, conflicts_with = "forward")]
    pub config: Option<PathBuf>,
    /// Ship the lines to another trawl's `socket` input instead: `unix:PATH`.
    #[arg(long)]
    pub forward: Option<String>,
    /// Memory for lines waiting to be shipped; beyond it they go to the spill file.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub memory_buffer: ByteSize,
    /// Largest size of the spill file; beyond it lines are dropped and counted.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub spill_max: ByteSize,
    /// Folder of the spill file (default: the system's temporary folder).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// After the command exits, how long to wait for its last lines to be shipped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
    /// Longer lines are cut and flagged `log.flags: [truncated]`.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub max_line_bytes: ByteSize,
    /// Joins the lines of one event per stream, with the keys of the file input's `multiline`
    /// as inline YAML: `--multiline '{preset: go, timeout: 2s}'`. In-process (`-c`) only.
    #[arg(long, conflicts_with = "forward")]
    pub multiline: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    Duration::parse(s)
}

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

/// SIGTERM, SIGINT and SIGHUP go to the child; trawl itself stays up to ship what is left.
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

/// `--multiline` as the same `Config` the inputs' `multiline:` key takes.
fn parse_multiline(text: &str) -> Result<crate::inputs::multiline::Multiline, String> {
    let node = crate::config::node::parse(text)
        .map_err(|e| format!("--multiline: {} at column {}", e.message, e.mark.col))?;
    let config: crate::inputs::multiline::Config =
        crate::config::from_node(&node, "--multiline").map_err(|e| describe(&e))?;
    config
        .compile(Some(node.mark), "--multiline")
        .map_err(|e| describe(&e))
}

fn describe(e: &crate::config::DeError) -> String {
    format!(
        "{}: {}",
        e.path.as_deref().unwrap_or("--multiline"),
        e.message
    )
}

/// Runs `trawl tee`; returns the exit code (the child's).
pub fn run(args: TeeArgs) -> i32 {
    let multiline = match args.multiline.as_deref().map(parse_multiline) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let forward_path = match &args.forward {
        Some(f) => match f.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                eprintln!("error: --forward expects unix:PATH, got `{f}`");
                return 2;
            }
        },
        None => None,
    };
    let cfg = match (&args.config, &forward_path) {
        (Some(path), _) => match crate::config::load_file(path) {
            Ok(c) => Some(c),
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("error: {e}");
                }
                return 2;
            }
        },
        (None, Some(_)) => None,
        (None, None) => {
            eprintln!("error: trawl tee needs -c PIPELINE or --forward unix:PATH");
            return 2;
        }
    };
    // A pipeline that cannot be built is reported before the command runs, not after.
    if let Some(cfg) = &cfg {
        let probe = TeeInput::new(
            Arc::new(Spool::new(
                SpoolLimits {
                    memory_bytes: 0,
                    spill_bytes: 0,
                    spill_dir: std::env::temp_dir(),
                },
                0,
            )),
            1,
            None,
        );
        if let Err(errs) =
            crate::pipeline::Pipeline::build(cfg.clone(), vec![("tee".to_owned(), Box::new(probe))])
        {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            return 2;
        }
    }
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

    // Shipping yields the CPU to the command: threads started from here on (the pipeline, its
    // workers, the forwarder) inherit a lower priority; the copy threads above keep the normal
    // one, since the command waits on them when its pipe is full. On Linux the nice value is per
    // thread, and new threads inherit their creator's.
    // SAFETY: plain syscall on the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }

    // The shipper: the in-process pipeline, or the forwarder. It reports on `done` when finished.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let give_up = Arc::new(AtomicBool::new(false));
    let max_line = args.max_line_bytes.as_usize();
    match (cfg, forward_path) {
        (Some(cfg), _) => {
            let input = TeeInput::new(spool.clone(), max_line, multiline);
            std::thread::spawn(move || {
                let code = super::run_pipeline_with(
                    cfg,
                    vec![("tee".to_owned(), Box::new(input))],
                    super::Signals::Ignore,
                );
                if code != 0 {
                    tracing::error!("the tee pipeline failed (exit code {code})");
                }
                let _ = done_tx.send(0);
            });
        }
        (None, Some(path)) => {
            let s = spool.clone();
            let g = give_up.clone();
            std::thread::spawn(move || {
                let report = forward::run(&s, path, max_line, g);
                let _ = done_tx.send(report.unsent_bytes);
            });
        }
        (None, None) => unreachable!("checked above"),
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

    // Ship what is in flight, within the deadline.
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
            "trawl tee: {dropped} bytes of output dropped (buffers full), {left} bytes not shipped before the {}ms flush deadline",
            deadline.as_millis()
        );
    }
    code
}
