//! The forwarder's run: starts the command, passes its output through into the spool (the
//! pass-through and signal forwarding are trawl's own, src/inputs/tee/passthrough.rs), forwards
//! the lines to the sidecar and returns the command's exit code.

use crate::inputs::tee::forward;
use crate::inputs::tee::passthrough;
use crate::inputs::tee::spool::{Spool, SpoolLimits};
use crate::Args;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs the command and forwards its lines; returns its exit code.
pub fn run(args: Args) -> i32 {
    let spool = Arc::new(Spool::new(
        SpoolLimits {
            memory_bytes: args.memory_buffer.as_usize(),
            spill_bytes: args.spill_max.bytes(),
            spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            when_full: args.when_full,
        },
        2,
    ));
    let (mut child, _copies) = match passthrough::start(&args.command, &spool) {
        Ok(started) => started,
        Err(code) => return code,
    };

    // The forwarding thread (started next) inherits a lower priority; the copy threads keep the
    // normal one, since the command waits on them when its pipe is full.
    // SAFETY: plain syscall on the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let give_up = Arc::new(AtomicBool::new(false));
    // What the forwarder holds unacknowledged, kept current by it (see `forward::run`).
    let forwarding = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let s = spool.clone();
        let g = give_up.clone();
        let u = forwarding.clone();
        let path = args.forward.clone();
        let max_line = args.max_line_bytes.as_usize();
        let held = args.memory_buffer.as_usize();
        std::thread::spawn(move || {
            let report = forward::run(&s, path, max_line, held, g, u);
            s.shipper_gone();
            let _ = done_tx.send(report.unsent_bytes);
        });
    }

    let code = passthrough::wait_child(&mut child);
    let deadline = args.flush_timeout.std();
    // Without a report, the forwarder is stuck writing: what it last said it holds.
    let unsent = passthrough::wait_shipper(&done_rx, deadline, &give_up)
        .unwrap_or_else(|| forwarding.load(std::sync::atomic::Ordering::Relaxed));
    let dropped = spool.dropped_bytes();
    let left = spool.queued_bytes() + unsent;
    spool.remove_spill_file();
    if dropped > 0 || left > 0 {
        let why = if passthrough::STOP_FLUSH.load(std::sync::atomic::Ordering::Relaxed) {
            "a signal ended the wait".to_owned()
        } else {
            format!("{}ms flush deadline", deadline.as_millis())
        };
        eprintln!(
            "trawl-forward: {dropped} bytes of output dropped (buffers full), {left} bytes not shipped ({why})"
        );
    }
    code
}
