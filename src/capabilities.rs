//! Raising capabilities the binary holds as permitted only into the effective set: CAP_NET_RAW
//! on the thread that opens capture sockets, CAP_DAC_READ_SEARCH for the whole process at start.
//! The image gives the binary `cap_net_raw,cap_dac_read_search=p` (permitted, not effective), so
//! a container granting neither can still exec trawl for everything else.

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit words.
const VERSION_3: u32 = 0x2008_0522;
/// `CAP_DAC_READ_SEARCH` from linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
/// `CAP_NET_RAW` from linux/capability.h.
const CAP_NET_RAW: u32 = 13;

#[repr(C)]
struct Header {
    version: u32,
    /// 0: the calling thread.
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Where a capability stands for the calling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Already effective (root with it in its bounding set, or an ambient capability).
    Effective,
    /// Was permitted only (the file capability) and is now effective on this thread.
    Raised,
    /// Not even permitted: the container, unit or user does not grant it.
    Missing,
    /// The capability calls failed (a kernel without them, a seccomp filter).
    Unknown(String),
}

/// Makes CAP_NET_RAW effective on the calling thread when it is permitted. Capabilities are
/// per thread on Linux: call it on the thread that opens the capture sockets; threads it starts
/// afterwards inherit the raised set.
pub fn raise_net_raw() -> Capability {
    raise(CAP_NET_RAW)
}

/// Makes CAP_DAC_READ_SEARCH effective when it is permitted: a non-root DaemonSet reads every
/// pod's log files (root's, mode 0640, under directories only root may search). Called once
/// on the main thread before any other starts, so that every thread inherits it: the file
/// input touches paths from several (scan, read, the inotify watcher's own). The binary holds
/// it only when the container grants it (`capabilities: { add: [DAC_READ_SEARCH] }`): the
/// kernel gives a file capability only within the container's bounding set.
pub fn raise_dac_read_search() -> Capability {
    raise(CAP_DAC_READ_SEARCH)
}

fn raise(cap: u32) -> Capability {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` words for version 3 into the array we pass.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Capability::Unknown(format!("capget: {}", std::io::Error::last_os_error()));
    }
    // Both capabilities raised here are below 32: the first word.
    let bit = 1u32 << cap;
    if data[0].effective & bit != 0 {
        return Capability::Effective;
    }
    if data[0].permitted & bit == 0 {
        return Capability::Missing;
    }
    data[0].effective |= bit;
    // SAFETY: capset reads the header and two `Data` words; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Capability::Unknown(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Capability::Raised
}

/// The hint added to capture errors when CAP_NET_RAW is missing.
pub const NET_RAW_HINT: &str = "live capture needs the capability NET_RAW (container: `--cap-add NET_RAW` or `capabilities: { add: [NET_RAW] }`; systemd: `AmbientCapabilities=CAP_NET_RAW`; or run as root)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_is_idempotent_and_agrees_with_proc_status() {
        // Whatever this process is granted, a second call sees what the first left.
        let first = raise_net_raw();
        let second = raise_net_raw();
        match first {
            Capability::Effective | Capability::Raised => {
                assert_eq!(second, Capability::Effective)
            }
            Capability::Missing => assert_eq!(second, Capability::Missing),
            Capability::Unknown(e) => panic!("capability calls failed: {e}"),
        }
        // The thread's effective set as the kernel reports it.
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("proc status");
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .expect("CapEff line");
        assert_eq!(
            eff & (1 << CAP_NET_RAW) != 0,
            second == Capability::Effective,
            "CapEff {eff:x}"
        );
    }
}
