//! The `trawl` binary: everything lives in the library; this only hands over the exit code.
//! mimalloc because events are allocated on input threads and freed on output threads, a pattern
//! where it doubles throughput over the system allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // With transparent huge pages, each thread's first touch of mimalloc's eagerly committed
    // arena makes a whole 2 MiB page resident: ~8 MB at idle for nothing. trawl must stay small
    // on every node, and huge pages bring it no measurable throughput.
    // SAFETY: prctl with plain integer arguments; only affects this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    std::process::exit(trawl::cli::main());
}
