//! pcapng as dumpcap, Wireshark and mergecap write it, read by trawl and by tshark, the oracle:
//! several interfaces with their own link types (which libpcap refuses in one file), sections
//! in both byte orders, every timestamp resolution, blocks without packets; and `trawl pcap`
//! on a file whose interfaces each saw the same conversation counts it once with a dedup window;
//! a cut or overwritten file gives the packets before the damage and never panics.

use crate::support;
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use trawl::wire::pcapfile::{Reader, Sniffed};

fn encap(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/encap")
        .join(name)
}

/// A shared suricata-verify capture.
fn shared(name: &str) -> PathBuf {
    support::process::shared_dir()
        .join("data/pcaps/suricata-verify")
        .join(name)
        .join("input.pcap")
}

/// One packet as trawl's reader gives it.
#[derive(Debug, PartialEq)]
struct Read {
    interface: Option<u32>,
    link: i32,
    ts_ns: i64,
    data: Vec<u8>,
}

fn read_pcapng(path: &Path) -> Vec<Read> {
    let (packets, error) =
        read_damaged(path).unwrap_or_else(|| panic!("{} is not read as pcapng", path.display()));
    if let Some(e) = error {
        panic!("{}: {e}", path.display());
    }
    packets
}

/// A classic pcap file's link type and packets (time, bytes).
fn read_classic(path: &Path) -> (i32, Vec<(i64, Vec<u8>)>) {
    let stop = AtomicBool::new(false);
    let Ok(Sniffed::Classic(mut r)) = Reader::open(path, &stop) else {
        panic!("{} is not classic pcap", path.display());
    };
    let link = r.link;
    let mut out = Vec::new();
    while let Some((ts, data)) = r.next_record().expect("a whole capture") {
        out.push((ts, data.to_vec()));
    }
    (link, out)
}

/// What tshark reads: per packet, the interface id, the time in ns and the captured length
/// (custom blocks, which tshark lists as records of their own, left out).
fn tshark(path: &Path) -> Vec<(u32, i64, usize)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_id",
            "-e",
            "frame.time_epoch",
        ])
        .args(["-e", "frame.cap_len"])
        .stderr(Stdio::null())
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark cannot read {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let (secs, frac) = f[1].split_once('.').unwrap_or((f[1], "0"));
            let frac = format!("{frac:0<9}");
            let ns =
                secs.parse::<i64>().unwrap() * 1_000_000_000 + frac[..9].parse::<i64>().unwrap();
            (f[0].parse().unwrap(), ns, f[2].parse().unwrap())
        })
        .collect()
}

fn mergecap(out: &Path, inputs: &[PathBuf]) {
    let st = Command::new("mergecap")
        .args(["-F", "pcapng", "-w"])
        .arg(out)
        .args(inputs)
        .stderr(Stdio::null())
        .status()
        .expect("mergecap is installed (scripts/setup.sh: tshark)");
    assert!(st.success(), "mergecap failed");
}

/// Real captures of four link types (Ethernet, raw IP, BSD loopback, PPP), merged by
/// mergecap into one pcapng of four interfaces, read packet by packet as tshark reads them,
/// each interface with its file's link type and packets.
#[test]
fn interfaces_of_different_link_types_read_as_tshark_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        shared("http-all-headers"),
        encap("link_raw.pcap"),
        encap("link_null.pcap"),
        encap("link_ppp.pcap"),
    ];
    let merged = dir.path().join("merged.pcapng");
    mergecap(&merged, &parts);
    let read = read_pcapng(&merged);
    let want = tshark(&merged);
    assert_eq!(read.len(), want.len(), "packets");
    for (i, (r, (id, ts, len))) in read.iter().zip(&want).enumerate() {
        assert_eq!(
            (r.interface, r.ts_ns, r.data.len()),
            (Some(*id), *ts, *len),
            "packet {}",
            i + 1
        );
    }
    for (id, part) in parts.iter().enumerate() {
        let (link, packets) = read_classic(part);
        let mine: Vec<(i64, Vec<u8>)> = read
            .iter()
            .filter(|r| r.interface == Some(id as u32))
            .map(|r| {
                assert_eq!(
                    r.link,
                    link,
                    "interface {id}: the link type of {}",
                    part.display()
                );
                (r.ts_ns, r.data.clone())
            })
            .collect();
        assert_eq!(
            mine,
            packets,
            "interface {id}: the packets of {}",
            part.display()
        );
    }
}

/// Blocks written by hand from the pcapng specification, in the byte order `big`.
struct Writer {
    big: bool,
    out: Vec<u8>,
}

impl Writer {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let (k, l) = (self.u32(kind), self.u32(len));
        self.out.extend_from_slice(&k);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
    }
    fn option(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = self.u16(code).to_vec();
        o.extend_from_slice(&self.u16(value.len() as u16));
        o.extend_from_slice(value);
        while !o.len().is_multiple_of(4) {
            o.push(0);
        }
        o
    }
    fn section(&mut self, big: bool) {
        self.big = big;
        let mut b = self.u32(0x1A2B_3C4D).to_vec();
        b.extend_from_slice(&self.u16(1));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown: -1
        let comment = self.option(1, b"written by trawl's test");
        b.extend_from_slice(&comment);
        b.extend_from_slice(&[0, 0, 0, 0]);
        self.block(0x0A0D_0D0A, &b);
    }
    fn interface(&mut self, link: u16, snaplen: u32, options: &[(u16, Vec<u8>)]) {
        let mut b = self.u16(link).to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.u32(snaplen));
        for (code, value) in options {
            let o = self.option(*code, value);
            b.extend_from_slice(&o);
        }
        b.extend_from_slice(&[0, 0, 0, 0]);
        self.block(1, &b);
    }
    fn enhanced(&mut self, interface: u32, t: u64, data: &[u8], original: u32) {
        let mut b = self.u32(interface).to_vec();
        b.extend_from_slice(&self.u32((t >> 32) as u32));
        b.extend_from_slice(&self.u32(t as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(original));
        b.extend_from_slice(data);
        self.block(6, &b);
    }
    fn obsolete(&mut self, interface: u16, t: u64, data: &[u8]) {
        let mut b = self.u16(interface).to_vec();
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32((t >> 32) as u32));
        b.extend_from_slice(&self.u32(t as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(data);
        self.block(2, &b);
    }
    fn simple(&mut self, data: &[u8]) {
        let mut b = self.u32(data.len() as u32).to_vec();
        b.extend_from_slice(data);
        self.block(3, &b);
    }
}

/// The first packet of the real raw-IP capture (a TCP SYN), its last byte (in its options)
/// made `tag`.
fn packet(tag: u8) -> Vec<u8> {
    let (_, packets) = read_classic(&encap("link_raw.pcap"));
    let mut p = packets[0].1.clone();
    if let Some(last) = p.last_mut() {
        *last = tag;
    }
    p
}

/// A big-endian section with microsecond, nanosecond, millisecond-with-offset and binary
/// (2^-20 s) clocks, then a little-endian one, with an Obsolete and a Simple Packet Block and
/// blocks that carry no packet (name resolution, statistics, custom) in between: every packet,
/// its interface and its time, as tshark reads them.
#[test]
fn both_byte_orders_every_clock_and_every_packet_block_read_as_tshark_reads_them() {
    let mut w = Writer {
        big: true,
        out: Vec::new(),
    };
    let base: u64 = 1_700_000_000;
    w.section(true);
    w.interface(101, 65535, &[]);
    w.interface(101, 65535, &[(2, b"eth1".to_vec()), (9, vec![9])]);
    w.interface(
        101,
        2048,
        &[(9, vec![3]), (14, 100u64.to_be_bytes().to_vec())],
    );
    w.interface(101, 0, &[(9, vec![0x80 | 20])]);
    w.enhanced(0, base * 1_000_000 + 123_456, &packet(1), 60);
    w.enhanced(1, base * 1_000_000_000 + 123_456_789, &packet(2), 60);
    // Name resolution and custom blocks: nothing to read.
    w.block(4, &[0, 0, 0, 0]);
    w.block(0xBAD, &[1, 2, 3, 4, 5, 6, 7, 8]);
    w.enhanced(2, (base - 100) * 1_000 + 250, &packet(3), 60);
    w.enhanced(3, ((base + 1) << 20) | (1 << 19), &packet(4), 60);
    w.obsolete(1, (base + 2) * 1_000_000_000 + 5, &packet(5));
    // Interface statistics.
    let mut isb = w.u32(0).to_vec();
    isb.extend_from_slice(&[0; 8]);
    isb.extend_from_slice(&[0, 0, 0, 0]);
    w.block(5, &isb);
    w.section(false);
    w.interface(1, 262144, &[]);
    w.interface(101, 262144, &[]);
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    frame.extend_from_slice(&packet(6));
    w.enhanced(0, (base + 3) * 1_000_000, &frame, 74);
    w.enhanced(1, (base + 4) * 1_000_000, &packet(7), 60);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handmade.pcapng");
    std::fs::write(&path, &w.out).unwrap();

    let read = read_pcapng(&path);
    let got: Vec<(i64, usize)> = read.iter().map(|r| (r.ts_ns, r.data.len())).collect();
    let want: Vec<(i64, usize)> = tshark(&path).iter().map(|&(_, t, l)| (t, l)).collect();
    assert_eq!(got, want, "packets (time, length) against tshark");
    // A new section's interfaces are new ones (tshark 4.0 numbers them from 0 again, and
    // names them after the first section's: not an oracle here).
    let interfaces: Vec<Option<u32>> = read.iter().map(|r| r.interface).collect();
    assert_eq!(
        interfaces,
        [0, 1, 2, 3, 1, 4, 5].map(Some),
        "interfaces, numbered across sections"
    );
    let tags: Vec<u8> = read.iter().map(|r| *r.data.last().unwrap()).collect();
    assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7], "every packet block, in order");
    let links: Vec<i32> = read.iter().map(|r| r.link).collect();
    assert_eq!(links, [101, 101, 101, 101, 101, 1, 101]);

    // A Simple Packet Block: interface 0's, no time of its own (the previous packet's), cut
    // at the interface's snapshot length.
    let mut w = Writer {
        big: false,
        out: Vec::new(),
    };
    w.section(false);
    w.interface(101, 40, &[]);
    w.enhanced(0, base * 1_000_000, &packet(8)[..40], 60);
    w.simple(&packet(9));
    std::fs::write(&path, &w.out).unwrap();
    let read = read_pcapng(&path);
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].interface, None, "one interface: not told apart");
    assert_eq!(read[1].ts_ns, read[0].ts_ns);
    assert_eq!(read[1].data, packet(9)[..40]);
}

/// A file cut inside a block, or holding a block whose trailing length disagrees, gives the
/// packets before it and then an error (`trawl pcap` exits 1 with what came before printed).
#[test]
fn a_damaged_pcapng_gives_what_came_before_then_an_error() {
    let mut w = Writer {
        big: false,
        out: Vec::new(),
    };
    w.section(false);
    w.interface(101, 65535, &[]);
    w.enhanced(0, 1_700_000_000_000_000, &packet(1), 60);
    let whole = w.out.len();
    w.enhanced(0, 1_700_000_001_000_000, &packet(2), 60);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcapng");
    let stop = AtomicBool::new(false);
    let mut bent = w.out.clone();
    let n = bent.len();
    bent[n - 1] ^= 0x40;
    for (what, bytes) in [("cut", &w.out[..whole + 30]), ("bent", &bent[..])] {
        std::fs::write(&path, bytes).unwrap();
        let Ok(Sniffed::Pcapng(mut r)) = Reader::open(&path, &stop) else {
            panic!("{what}: not read as pcapng");
        };
        assert!(
            matches!(r.next_packet(), Ok(Some(_))),
            "{what}: the first packet"
        );
        assert!(r.next_packet().is_err(), "{what}: the damage is an error");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", "flows"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "trawl pcap on a damaged file");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trailing length"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "the first packet's flow"
    );
}

/// Transactions and flows, by what identifies them and what they counted.
fn summary(events: &str) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for e in events
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
    {
        let key = match e["event"]["dataset"].as_str() {
            Some("http") => format!(
                "http {} {} {} {}",
                e["network"]["community_id"],
                e["url"]["original"],
                e["http"]["response"]["status_code"],
                e["http"]["response"]["body"]["bytes"]
            ),
            Some("flow") if e["flow"]["final"] == true => format!(
                "flow {} {}/{} packets {}/{} bytes",
                e["network"]["community_id"],
                e["source"]["packets"],
                e["destination"]["packets"],
                e["source"]["bytes"],
                e["destination"]["bytes"]
            ),
            _ => continue,
        };
        *m.entry(key).or_default() += 1;
    }
    m
}

fn trawl_pcap(pipeline: &Path, file: &Path) -> String {
    trawl_pcap_with(&["-c".as_ref(), pipeline.as_os_str()], file)
}

fn trawl_pcap_with(args: &[&std::ffi::OsStr], file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .args(args)
        .arg(file)
        .output()
        .expect("run trawl pcap");
    assert!(
        out.status.success(),
        "trawl pcap {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same conversation seen on three interfaces of different link types (raw IP, BSD
/// loopback, PPP) beside a real Ethernet capture, in one pcapng: with a dedup window, trawl
/// reports each transaction and each flow's packets once, as from the conversation's own file
/// and the Ethernet capture's; so does `trawl pcap --dedup-window` without a pipeline.
#[test]
fn one_conversation_on_three_interfaces_counts_once_with_a_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("three.pcapng");
    let ethernet = shared("http-all-headers");
    mergecap(
        &merged,
        &[
            ethernet.clone(),
            encap("link_raw.pcap"),
            encap("link_null.pcap"),
            encap("link_ppp.pcap"),
        ],
    );
    let pipeline = |name: &str, window: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "inputs:\n  wire:\n    type: packet\n    capture: {{ interfaces: [\"x*\"], dedup_window: {window} }}\n    \
                 flows: {{ period: -1s }}\n    protocols:\n      http: {{}}\n\
                 outputs:\n  out: {{ type: stdout }}\n"
            ),
        )
        .unwrap();
        p
    };
    let (dedup, plain) = (
        pipeline("dedup.yaml", "100ms"),
        pipeline("plain.yaml", "0s"),
    );
    let mut want = summary(&trawl_pcap(&plain, &encap("link_raw.pcap")));
    assert!(
        want.keys().any(|k| k.starts_with("http")),
        "the conversation has HTTP: {want:?}"
    );
    for (k, n) in summary(&trawl_pcap(&plain, &ethernet)) {
        *want.entry(k).or_default() += n;
    }
    assert_eq!(summary(&trawl_pcap(&dedup, &merged)), want);
    // The same without a pipeline, with `--dedup-window`.
    let cli = |args: &[&str], file: &Path| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        summary(&trawl_pcap_with(&args, file))
    };
    let mut want = cli(&[], &encap("link_raw.pcap"));
    for (k, n) in cli(&[], &ethernet) {
        *want.entry(k).or_default() += n;
    }
    assert_eq!(cli(&["--dedup-window", "100ms"], &merged), want);
    assert_ne!(
        cli(&[], &merged),
        want,
        "without a window, each copy counts"
    );
}

/// A conversation taken on two interfaces, the client's packets on one and the server's on the
/// other, with the second interface's packets written first, as dumpcap hands each interface's
/// packets to its file in batches (220 ms apart in a recording of two veths): trawl puts them
/// back in capture order, and reports what it reports from the conversation's own file.
#[test]
fn interfaces_written_in_batches_are_put_back_in_capture_order() {
    let original = encap("link_raw.pcap");
    let (link, packets) = read_classic(&original);
    assert_eq!(link, 101, "raw IPv4");
    let client = packets[0].1[12..16].to_vec();
    let mut w = Writer {
        big: false,
        out: Vec::new(),
    };
    w.section(false);
    w.interface(101, 65535, &[(9, vec![9])]);
    w.interface(101, 65535, &[(9, vec![9])]);
    for from_client in [false, true] {
        for (ts, data) in &packets {
            if (data[12..16] == client[..]) == from_client {
                w.enhanced(from_client as u32, *ts as u64, data, data.len() as u32);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batches.pcapng");
    std::fs::write(&file, &w.out).unwrap();
    let pipeline = dir.path().join("plain.yaml");
    std::fs::write(
        &pipeline,
        "inputs:\n  wire:\n    type: packet\n    capture: { interfaces: [\"x*\"] }\n    \
         flows: { period: -1s }\n    protocols:\n      http: {}\n\
         outputs:\n  out: { type: stdout }\n",
    )
    .unwrap();
    let want = summary(&trawl_pcap(&pipeline, &original));
    assert!(
        want.keys().any(|k| k.starts_with("http")),
        "the conversation has HTTP: {want:?}"
    );
    assert_eq!(summary(&trawl_pcap(&pipeline, &file)), want);
}

/// A section that declares interfaces without end (a hostile or broken file) is refused past
/// 65,536 of them, rather than held in memory until the file ends.
#[test]
fn a_section_of_too_many_interfaces_is_refused() {
    let mut w = Writer {
        big: false,
        out: Vec::new(),
    };
    w.section(false);
    for _ in 0..65_537 {
        w.interface(1, 65535, &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interfaces.pcapng");
    std::fs::write(&path, &w.out).unwrap();
    let stop = AtomicBool::new(false);
    let Ok(Sniffed::Pcapng(mut r)) = Reader::open(&path, &stop) else {
        panic!("not read as pcapng");
    };
    match r.next_packet() {
        Err(e) => assert!(e.contains("interfaces"), "{e}"),
        Ok(p) => panic!("read on: {:?}", p.map(|p| p.data.len())),
    }
}

/// The blocks of a little-endian pcapng file (what mergecap writes here): (start, length,
/// whether it carries a packet).
fn blocks(bytes: &[u8]) -> Vec<(usize, usize, bool)> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = word(at + 4) as usize;
        out.push((at, len, matches!(word(at), 2 | 3 | 6)));
        at += len;
    }
    assert_eq!(at, bytes.len(), "mergecap's file is whole");
    out
}

/// Reads a possibly damaged pcapng as far as it goes: its packets and the error it ended in.
/// `None` when it is not even taken for pcapng.
fn read_damaged(path: &Path) -> Option<(Vec<Read>, Option<String>)> {
    let stop = AtomicBool::new(false);
    let Ok(Sniffed::Pcapng(mut r)) = Reader::open(path, &stop) else {
        return None;
    };
    let mut out = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => out.push(Read {
                interface: p.interface,
                link: p.link,
                ts_ns: p.ts_ns,
                data: p.data.to_vec(),
            }),
            Ok(None) => return Some((out, None)),
            Err(e) => return Some((out, Some(e))),
        }
    }
}

/// A real pcapng of three interfaces (mergecap of three captures), cut anywhere or with bytes
/// overwritten anywhere: the reader never panics, gives every packet whose block lies before
/// the damage exactly as in the whole file, and a cut inside a block is an error. The damaged
/// files also go through the whole engine (reordering, dedup, flows, HTTP) without a panic.
#[test]
fn a_cut_or_overwritten_pcapng_keeps_the_packets_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcapng");
    mergecap(
        &merged,
        &[
            shared("http-all-headers"),
            shared("http-multiple100"),
            encap("link_raw.pcap"),
        ],
    );
    let full = std::fs::read(&merged).unwrap();
    let whole = read_pcapng(&merged);
    let blocks = blocks(&full);
    assert_eq!(
        blocks.iter().filter(|b| b.2).count(),
        whole.len(),
        "one packet per packet block"
    );
    // Packets whose blocks end at or before `offset`.
    let before = |offset: usize| {
        blocks
            .iter()
            .filter(|&&(at, len, packet)| packet && at + len <= offset)
            .count()
    };
    let path = dir.path().join("damaged.pcapng");
    let mut errors = 0;
    for cut in (0..full.len()).step_by(37) {
        std::fs::write(&path, &full[..cut]).unwrap();
        let Some((got, error)) = read_damaged(&path) else {
            assert!(cut < 24, "a cut at {cut} bytes is still a pcapng");
            continue;
        };
        let n = before(cut);
        assert_eq!(got.len(), n, "cut at {cut}: the packets before it");
        assert!(got[..] == whole[..n], "cut at {cut}: packets changed");
        let on_boundary = blocks.iter().any(|&(at, _, _)| at == cut);
        assert_eq!(
            error.is_some(),
            !on_boundary,
            "cut at {cut}: an error unless between blocks"
        );
        errors += error.is_some() as usize;
    }
    assert!(errors > 0);
    let analyzers = || trawl::wire::Analyzers {
        flows: Some(Default::default()),
        protocols: trawl::wire::registry::Protocols::default()
            .with(trawl::wire::section::Section::<trawl::wire::http::HttpConfig>::default()),
        dedup_window: Some(std::time::Duration::from_millis(100)),
        ..Default::default()
    };
    // A small deterministic generator: the same damage on every run.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        let mut bytes = full.clone();
        let mut first = bytes.len();
        for _ in 0..(1 + next() % 6) {
            let at = 28 + (next() as usize % (bytes.len() - 28));
            let value = next() as u8;
            if bytes[at] != value {
                bytes[at] = value;
                first = first.min(at);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let (got, _) = read_damaged(&path).expect("the section header is intact");
        // The block holding the first damaged byte may still read (a byte of its packet's
        // data changed): only the packets of the blocks before it are fixed.
        let n = before(first).min(got.len());
        assert!(
            n == before(first) && got[..n] == whole[..n],
            "round {round}: damage at {first} changed the packets before it"
        );
        let mut engine = trawl::wire::Engine::new(
            std::sync::Arc::from("t"),
            analyzers(),
            std::sync::Arc::new(trawl::wire::Stats::default()),
            None,
        );
        let stop = AtomicBool::new(false);
        let _ = trawl::wire::capture::read_file(&path, &mut engine, &stop, 64, &mut |e| {
            if let trawl::wire::out::Out::Events(v) = &mut e.out {
                v.clear();
            }
            true
        });
    }
}

/// `if_tsresol` and `if_tsoffset` at their extremes: 2^-63 s and 10^-19 s (a 64-bit count of
/// them spans 2 s and 1.8 s), 10^-127 s (none: every time is 1970), offsets of nearly
/// `i64::MAX` and `i64::MIN` seconds, and `u64::MAX` whole seconds. Every packet is read, none
/// wraps (times past what `i64` nanoseconds hold are clamped to its ends), and `trawl pcap`
/// decodes the file, exits 0, and says so on stderr: the first odd interface once, and the
/// count of clamped times.
#[test]
fn extreme_time_resolutions_and_offsets_are_clamped_and_logged_once() {
    let mut w = Writer {
        big: false,
        out: Vec::new(),
    };
    w.section(false);
    w.interface(101, 65535, &[(9, vec![0x80 | 63])]);
    w.interface(101, 65535, &[(9, vec![19])]);
    w.interface(101, 65535, &[(9, vec![127])]);
    w.interface(101, 65535, &[(14, (i64::MAX - 5).to_le_bytes().to_vec())]);
    w.interface(101, 65535, &[(14, (i64::MIN + 5).to_le_bytes().to_vec())]);
    w.interface(101, 65535, &[(9, vec![0])]);
    for (i, t) in [u64::MAX, u64::MAX, u64::MAX, 1_000_000, 0, u64::MAX]
        .into_iter()
        .enumerate()
    {
        w.enhanced(i as u32, t, &packet(i as u8), 60);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extremes.pcapng");
    std::fs::write(&path, &w.out).unwrap();
    let times: Vec<i64> = read_pcapng(&path).iter().map(|r| r.ts_ns).collect();
    assert_eq!(
        times,
        [
            1_999_999_999,
            1_844_674_407,
            0,
            i64::MAX,
            i64::MIN,
            i64::MAX
        ]
    );

    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["pcap", "--only", "flows"])
        .arg(&path)
        .env("TRAWL_LOG_LEVEL", "warn")
        .output()
        .expect("run trawl pcap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let odd: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("if_tsresol 2^-63 s is finer than"))
        .collect();
    assert_eq!(odd.len(), 1, "the first odd interface, once: {stderr}");
    assert!(
        !stderr.contains("if_tsresol 10^-19"),
        "logged once per capture: {stderr}"
    );
    let clamped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("clamped") && l.contains("packets"))
        .collect();
    assert!(
        clamped.len() == 1 && clamped[0].contains("packets=3"),
        "three clamped times counted: {stderr}"
    );
}
