//! What a flow held in the flow table costs in memory, measured on the real binary: a capture
//! this test writes of 90,000 TCP connections opened (SYN, SYN-ACK, ACK) and never closed, so
//! that every flow is still in the table when the capture ends, read by `trawl pcap --only
//! flows`. Its peak RSS above a run on a one-connection capture, divided by the flows, must
//! stay under 1 kB: the table's entry, the allocator's slack and the order of the final
//! reports, but not the final reports themselves, which go out a batch at a time.

use std::path::Path;
use std::process::{Command, Stdio};

const FLOWS: u32 = 90_000;
/// Bytes of peak RSS a held flow may cost (its table entry is under 200 bytes; the hash
/// table grows by doubling and the allocator keeps the smaller tables it had for a while).
const MAX_BYTES_PER_FLOW: u64 = 1_000;

/// An Ethernet/IPv4/TCP frame without payload (checksums zero: trawl does not check them).
fn tcp_frame(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// A classic pcap of `conns` handshakes, 10 µs apart, from distinct clients to one server.
fn write_handshakes(path: &Path, conns: u32) {
    let mut out = Vec::with_capacity(conns as usize * 3 * 70 + 24);
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let server = [10, 96, 0, 1];
    let mut us: u64 = 1_700_000_000_000_000;
    for c in 0..conns {
        let client = [10, 244, (c >> 8) as u8, c as u8];
        let sport = 20_000 + (c >> 16) as u16;
        let (cseq, sseq) = (c.wrapping_mul(7919), c.wrapping_mul(104_729));
        for frame in [
            tcp_frame(client, sport, server, 8080, cseq, 0, 0x02),
            tcp_frame(server, 8080, client, sport, sseq, cseq + 1, 0x12),
            tcp_frame(client, sport, server, 8080, cseq + 1, sseq + 1, 0x10),
        ] {
            us += 10;
            out.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&frame);
        }
    }
    std::fs::write(path, out).expect("write the capture");
}

/// Runs `trawl pcap --only flows FILE`; returns its flow events (lines) and its peak RSS in
/// bytes (the child's `ru_maxrss`). The child is reaped with `wait4`, for its rusage
/// (`Child::wait` does not give it).
#[allow(clippy::zombie_processes)]
fn run(path: &Path) -> (u64, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", "flows"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start trawl pcap");
    let mut stdout = child.stdout.take().expect("stdout piped");
    // Read everything before reaping: a pipe left full would block the child for ever.
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = [0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return lines,
                Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
            }
        }
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is this process's child, not reaped yet; the pointers are to locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 on trawl pcap");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "trawl pcap failed (status {status})"
    );
    let lines = reader.join().expect("reader thread");
    (lines, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_flow_held_at_the_end_of_a_capture_costs_under_a_kilobyte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (one, many) = (dir.path().join("one.pcap"), dir.path().join("many.pcap"));
    write_handshakes(&one, 1);
    write_handshakes(&many, FLOWS);
    let (one_flows, idle_rss) = run(&one);
    assert_eq!(one_flows, 1, "one connection, one flow");
    let (flows, rss) = run(&many);
    // Every connection is still open at the end: each is one final flow report.
    assert_eq!(flows, FLOWS as u64, "one flow event per connection");
    let per_flow = rss.saturating_sub(idle_rss) / FLOWS as u64;
    eprintln!(
        "peak RSS {} KiB with {FLOWS} flows held, {} KiB with one: {per_flow} bytes a flow",
        rss / 1024,
        idle_rss / 1024
    );
    assert!(
        per_flow < MAX_BYTES_PER_FLOW,
        "a held flow costs {per_flow} bytes of peak RSS (goal < {MAX_BYTES_PER_FLOW}): \
         {} KiB with {FLOWS} flows held, {} KiB with one",
        rss / 1024,
        idle_rss / 1024
    );
}
