//! The `trawl` binary: everything lives in the library; this only hands over the exit code.

/// Events are allocated on input threads and freed on output threads; mimalloc handles that
/// cross-thread pattern far better than glibc's malloc (see benches/logs.py).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(trawl::cli::main());
}
