//! Start-up code (argument and YAML parsing, validation, building components and their clients)
//! runs once, but the pages it touched stay mapped, and counted in trawl's RSS, for as long as
//! trawl runs: about 6 MB of a 15 MB idle figure. Once started, trawl unmaps its own read-only
//! pages; the code still in use is mapped again from the page cache on its next call.

use std::ffi::c_void;

/// Unmaps the executable's read-only pages (code and constants, never written), and returns
/// how many bytes that covered. Safe at any time: the pages keep their content in the page
/// cache, and a thread running code there takes a minor fault and goes on. Writable segments,
/// and RELRO (written at load, then made read-only), are left alone: their pages hold what
/// was written to them.
pub fn release() -> usize {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the program headers it is given, and writes to the Vec
    // passed through `data`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(main_program), (&raw mut ranges).cast());
    }
    // A debugger's breakpoint or a uprobe is a written copy of a code page: a mapping holding
    // any is left as it is, or they would silently go.
    let written = written_mappings();
    let mut released = 0;
    for (start, end) in ranges {
        if written.iter().any(|&(a, b)| a < end && start < b) {
            continue;
        }
        // SAFETY: the range is whole pages of a private, read-only file mapping of this
        // program's, which were never written: dropping them loses nothing.
        let done = unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED) };
        if done == 0 {
            released += end - start;
        }
    }
    released
}

/// Releases the start-up pages `after` each of these delays (in a task of the running
/// runtime): start-up ends in steps (outputs connect and install templates in the background),
/// and what a step touched for the last time goes at the next release.
pub fn release_after(delays: &'static [std::time::Duration]) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for d in delays {
            tokio::time::sleep_until(start + *d).await;
            let bytes = tokio::task::spawn_blocking(release).await.unwrap_or(0);
            tracing::debug!(bytes, "start-up code pages released");
        }
    });
}

/// The mappings of this process with private copies of pages (`Anonymous:` above 0 in
/// `/proc/self/smaps`), of read-only ones only: a writable mapping is never released anyway.
/// If smaps cannot be read, every mapping counts as written, and nothing is released.
fn written_mappings() -> Vec<(usize, usize)> {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return vec![(0, usize::MAX)];
    };
    let mut written = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(first), Some(second)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-') {
            // A mapping's first line: `start-end perms offset dev inode path`.
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            current = range.filter(|_| !second.contains('w'));
        } else if first == "Anonymous:" && second != "0" {
            written.extend(current.take());
        }
    }
    written
}

/// `dl_iterate_phdr`'s callback: the main program comes first; its read-only loaded segments,
/// shrunk to whole pages and without RELRO, go to the `Vec` behind `data`. Returns 1 to stop
/// after it.
unsafe extern "C" fn main_program(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: as `release` says, `info` is the loader's for the duration of the call and
    // `data` is the Vec `release` passed.
    let (info, ranges) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: the loader gives `dlpi_phnum` headers at `dlpi_phdr`.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    // SAFETY: sysconf reads a constant of the running system.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let base = info.dlpi_addr as usize;
    let span = |h: &libc::Elf64_Phdr| {
        let start = base + h.p_vaddr as usize;
        (start, start + h.p_memsz as usize)
    };
    let relro: Vec<(usize, usize)> = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_GNU_RELRO)
        .map(span)
        .collect();
    for h in headers {
        if h.p_type != libc::PT_LOAD || h.p_flags & libc::PF_W != 0 {
            continue;
        }
        let (start, end) = span(h);
        // Inward to whole pages: a page shared with a writable neighbour is kept.
        let (start, end) = (start.div_ceil(page) * page, end / page * page);
        let overlaps = relro
            .iter()
            .any(|&(a, b)| a < end.div_ceil(page) * page && start < b.div_ceil(page) * page);
        if start < end && !overlaps {
            ranges.push((start, end));
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of files mapped by this process (`RssFile:`), in KiB.
    fn rss_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The code and constants of this test binary stop being resident, and what runs next
    /// (this function, the formatting machinery, the constants it reads) works as before.
    #[test]
    fn release_unmaps_the_code_and_the_program_still_runs() {
        let before = rss_file_kib();
        let released = release();
        let after = rss_file_kib();
        assert!(released > 64 * 1024, "released {released} bytes");
        // Other tests' threads map some back meanwhile (a CI run saw 952 KiB net against a
        // 1 MiB floor), but never all of it: without a release, `RssFile` only grows.
        assert!(after < before, "RssFile {before} -> {after} KiB");
        let text = format!("{:?}", (1..5).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(text, "[2, 4, 6, 8]");
        assert!(release() > 0);
    }
}
