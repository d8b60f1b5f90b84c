//! The `trawl` binary: everything lives in the library; this only hands over the exit code.
//! mimalloc because events are allocated on input threads and freed on output threads, a pattern
//! where it doubles throughput over the system allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's option ids (its `mi_option_e` enum in the v3 sources vendored by libmimalloc-sys
// 0.1.49, pinned by Cargo.lock): re-check `include/mimalloc.h` when that crate is upgraded.
const MI_OPTION_ARENA_EAGER_COMMIT: libc::c_int = 4;

extern "C" {
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

/// Runs from `.init_array` before mimalloc's own constructor and before Rust's first allocation:
/// options read after the first arena exists come too late. Eager commit makes every arena chunk
/// count as resident as soon as a thread touches it, which alone pushed idle RSS past 15 MB; with
/// commit on demand trawl pays only for what it uses, at no measured throughput cost.
extern "C" fn configure_allocator() {
    // SAFETY: plain store into mimalloc's option table; no allocation happens here.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

// Prioritised `.init_array.NNNNN` entries run before unprioritised constructors such as
// mimalloc's process attach; 101 is the first priority not reserved for the C runtime.
#[used]
#[link_section = ".init_array.00101"]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

fn main() {
    // With transparent huge pages, each thread's first touch of mimalloc's arena makes a whole
    // 2 MiB page resident: ~8 MB at idle for nothing. trawl must stay small on every node, and
    // huge pages bring it no measurable throughput.
    // SAFETY: prctl with plain integer arguments; only affects this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Before any thread starts, so that all inherit it. Missing unless the container granted
    // it: reading a file trawl may not read then fails as it would without this, and is logged
    // by the input with its path.
    let _ = trawl::capabilities::raise_dac_read_search();
    std::process::exit(trawl::cli::main());
}
