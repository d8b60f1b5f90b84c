//! Raising CAP_NET_RAW into the effective set of the thread that opens capture sockets. The
//! image gives the binary `cap_net_raw=p` (permitted, not effective), so a container without
//! NET_RAW can still exec trawl for everything else; capture raises it when it starts.

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit words.
const VERSION_3: u32 = 0x2008_0522;
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

/// Where CAP_NET_RAW stands for the calling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetRaw {
    /// Already effective (root with it in its bounding set, or systemd's ambient capability).
    Effective,
    /// Was permitted only (the file capability) and is now effective on this thread.
    Raised,
    /// Not even permitted: the container, unit or user does not grant NET_RAW.
    Missing,
    /// The capability calls failed (a kernel without them, a seccomp filter).
    Unknown(String),
}

/// Makes CAP_NET_RAW effective on the calling thread when it is permitted. Capabilities are
/// per thread on Linux: call it on the thread that opens the capture sockets; threads it starts
/// afterwards inherit the raised set.
pub fn raise_net_raw() -> NetRaw {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` words for version 3 into the array we pass.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return NetRaw::Unknown(format!("capget: {}", std::io::Error::last_os_error()));
    }
    let bit = 1u32 << CAP_NET_RAW;
    if data[0].effective & bit != 0 {
        return NetRaw::Effective;
    }
    if data[0].permitted & bit == 0 {
        return NetRaw::Missing;
    }
    data[0].effective |= bit;
    // SAFETY: capset reads the header and two `Data` words; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return NetRaw::Unknown(format!("capset: {}", std::io::Error::last_os_error()));
    }
    NetRaw::Raised
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
            NetRaw::Effective | NetRaw::Raised => assert_eq!(second, NetRaw::Effective),
            NetRaw::Missing => assert_eq!(second, NetRaw::Missing),
            NetRaw::Unknown(e) => panic!("capability calls failed: {e}"),
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
            second == NetRaw::Effective,
            "CapEff {eff:x}"
        );
    }
}
