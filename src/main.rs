//! The `trawl` binary: everything lives in the library; this only hands over the exit code.
//! mimalloc because events are allocated on input threads and freed on output threads, a pattern
//! where it doubles throughput over the system allocator.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// mimalloc, asked for plain blocks whenever the alignment allows. The `mimalloc` crate calls
/// `mi_malloc_aligned` for every allocation, and that call keeps to its fast path only while the
/// current page of the size class has a free block at hand: otherwise sizes that are not a power
/// of two (an event's 224-byte field vector, a 112-byte `log` object) are over-allocated in a
/// larger class instead of taking a fresh or collected page. On the file input's path that was
/// four allocations in ten, each a slow path and a larger block. Every mimalloc block is
/// word-aligned, so `mi_malloc` serves any alignment up to a word, which is nearly all of them.
struct Allocator;

/// What every block of `mi_malloc` is aligned to.
const WORD: usize = std::mem::size_of::<usize>();

extern "C" {
    fn mi_malloc(size: usize) -> *mut libc::c_void;
    fn mi_zalloc(size: usize) -> *mut libc::c_void;
    fn mi_realloc(p: *mut libc::c_void, newsize: usize) -> *mut libc::c_void;
}

// SAFETY: each call returns a block of at least `layout.size()` bytes aligned to
// `layout.align()` (plain blocks only when that is at most a word), or null; blocks from either
// kind of call are freed and resized by the same mimalloc, which tells them apart itself.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: as for the impl.
            unsafe { mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's guarantees, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: as for the impl.
            unsafe { mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's guarantees, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (mimalloc), as the caller guarantees.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: `ptr` is a live mimalloc block (the caller's guarantee); the new block is
            // word-aligned like every block.
            unsafe { mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: the caller's guarantees, passed on.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

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
