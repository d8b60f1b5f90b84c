//! trawl's own process in `/metrics`: `trawl_build_info` and Prometheus' standard `process_*`
//! families (CPU seconds, resident memory, open and maximum file descriptors, start time), read
//! from `/proc/self` at each scrape.

use std::fmt::Write as _;

/// Appends the families; a figure `/proc` cannot give is left out rather than reported as 0.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP trawl_build_info The running trawl's version (always 1).\n# TYPE trawl_build_info gauge\ntrawl_build_info{{version=\"{}\",target_arch=\"{}\",target_os=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
    );
    // SAFETY: sysconf reads a constant of the running system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if let Some(stat) = self_stat() {
        // After the command name (which may hold spaces): state is field 3, utime 14, stime 15,
        // starttime 22, rss 24 (proc(5)).
        let f: Vec<&str> = stat.split_whitespace().collect();
        let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (num(14), num(15)) {
            if ticks > 0 {
                family(
                    out,
                    "process_cpu_seconds_total",
                    "counter",
                    "User and system CPU time spent, in seconds.",
                    (u + s) / ticks as f64,
                );
            }
        }
        if let (Some(start), Some(boot)) = (num(22), boot_time()) {
            if ticks > 0 {
                family(
                    out,
                    "process_start_time_seconds",
                    "gauge",
                    "Start time of the process since the Unix epoch, in seconds.",
                    boot + start / ticks as f64,
                );
            }
        }
        if let Some(rss) = num(24) {
            family(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                rss * page as f64,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(
            out,
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count() as f64,
        );
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        family(
            out,
            "process_max_fds",
            "gauge",
            "Most file descriptors the process may open.",
            limit.rlim_cur as f64,
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// `/proc/self/stat` from its state field on (the command name before it may hold anything).
fn self_stat() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = s.rfind(')')?;
    Some(s[after + 1..].to_owned())
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
