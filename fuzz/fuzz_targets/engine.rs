#![no_main]
//! Coverage-guided fuzzing of the packet engine: every protocol on, flows on or off. The input
//! is raw frames of a link type, or a TCP connection (or UDP datagrams) built around its bytes
//! on a protocol's port, so that mutations reach the application parsers. Each input runs twice,
//! as `trawl pcap` (JSON lines) and as `trawl run` (events): no panic, every line valid JSON,
//! and both forms the same documents.

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use trawl::wire::out::Out;
use trawl::wire::registry::{self, Protocols};
use trawl::wire::{Analyzers, Engine, Stats};

/// The server port of a built connection (the second byte's low nibble): every protocol's
/// default port, and some that only content recognition claims.
const PORTS: [u16; 16] = [
    80, 443, 53, 5432, 3306, 6379, 8080, 50051, 8443, 853, 1234, 9200, 4789, 6081, 3128, 5353,
];
/// The link type of raw frames (the second byte's low nibble): Ethernet, raw, SLL, SLL2, BSD
/// loopback, PPP, Cisco HDLC, raw IPv4/IPv6 and the odd ones libpcap also numbers.
const LINKS: [i32; 16] = [
    1, 101, 113, 276, 0, 9, 104, 228, 229, 12, 108, 14, 50, 51, 1, 1,
];

/// The fuzzer's bytes, read from the front. The first byte: bits 0-1 the shape (0 and 3: a
/// TCP connection, 1: UDP datagrams, 2: raw frames), bit 3 flows off, bit 4 IPv6, bit 5 no
/// handshake (picked up mid-stream); then chunks of (a flags byte, a little-endian length, bytes).
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
}

fn engine(events: bool, flows: bool) -> Engine {
    let mut protocols = Protocols::default();
    for r in registry::registered() {
        let mut section = (r.default)();
        if r.name == "http" {
            section.connection_mut().ports = Vec::new();
        }
        protocols.insert(section);
    }
    let analyzers = Analyzers {
        flows: flows.then(Default::default),
        protocols,
        ..Default::default()
    };
    let mut e = Engine::new(
        Arc::from("fuzz"),
        analyzers,
        Arc::new(Stats::default()),
        None,
    );
    e.out = if events {
        Out::Events(Vec::new())
    } else {
        Out::json()
    };
    e
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12] = 8;
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

fn ipv6(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12] = 0x86;
    f[13] = 0xdd;
    let len = l4.len() as u16;
    f.extend_from_slice(&[0x60, 0, 0, 0, (len >> 8) as u8, len as u8, proto, 64]);
    for a in [src, dst] {
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&a);
    }
    f.extend_from_slice(l4);
    f
}

fn tcp(sp: u16, dp: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sp.to_be_bytes());
    t.extend_from_slice(&dp.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn udp(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

const FIN: u8 = 1;
const SYN: u8 = 2;
const RST: u8 = 4;
const PSH: u8 = 8;
const ACK: u8 = 16;

/// The input as frames (link type, capture time, bytes).
fn frames(data: &[u8]) -> Option<(bool, Vec<(i32, i64, Vec<u8>)>)> {
    let mut input = Input { data };
    let head = input.byte()?;
    let sel = input.byte()?;
    let mut out: Vec<(i32, i64, Vec<u8>)> = Vec::new();
    let mut ts: i64 = 1_600_000_000_000_000_000;
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let port = PORTS[(sel & 15) as usize];
    let v6 = head & 16 != 0;
    let ip = |proto: u8, fwd: bool, l4: &[u8]| {
        let (a, b) = if fwd { (c, s) } else { (s, c) };
        if v6 {
            ipv6(proto, a, b, l4)
        } else {
            ipv4(proto, a, b, l4)
        }
    };
    match head & 3 {
        // One TCP connection: chunks of (flags byte, length, bytes).
        0 | 3 => {
            let (mut cseq, mut sseq) = (1000u32, 5000u32);
            let cport = 40000 + (sel as u16 >> 4);
            if head & 32 == 0 {
                out.push((1, ts, ip(6, true, &tcp(cport, port, cseq, 0, SYN, &[]))));
                out.push((
                    1,
                    ts + 1000,
                    ip(6, false, &tcp(port, cport, sseq, cseq + 1, SYN | ACK, &[])),
                ));
                out.push((
                    1,
                    ts + 2000,
                    ip(6, true, &tcp(cport, port, cseq + 1, sseq + 1, ACK, &[])),
                ));
                cseq += 1;
                sseq += 1;
            }
            while let Some(h) = input.byte() {
                let Some(len) = input.u16() else { break };
                let payload = input.take(len as usize);
                let server = h & 0x80 != 0;
                ts += ((h & 7) as i64 + 1) * 1_000_000 * if h & 0x08 != 0 { 1000 } else { 1 };
                let mut flags = ACK | PSH;
                if h & 0x20 != 0 {
                    flags |= FIN;
                }
                if h & 0x10 != 0 && h & 0x20 != 0 {
                    flags = RST | ACK;
                }
                let (seq, ack) = if server {
                    (&mut sseq, cseq)
                } else {
                    (&mut cseq, sseq)
                };
                if h & 0x40 != 0 {
                    // A hole: these bytes never reach the capture.
                    *seq = seq.wrapping_add(payload.len() as u32);
                    continue;
                }
                let (sp, dp) = if server { (port, cport) } else { (cport, port) };
                let frame = ip(6, !server, &tcp(sp, dp, *seq, ack, flags, payload));
                *seq = seq.wrapping_add(payload.len() as u32 + (flags & FIN != 0) as u32);
                out.push((1, ts, frame));
            }
        }
        // UDP datagrams between two endpoints.
        1 => {
            let cport = 40000 + (sel as u16 >> 4);
            while let Some(h) = input.byte() {
                let Some(len) = input.u16() else { break };
                let payload = input.take(len as usize);
                let server = h & 0x80 != 0;
                ts += ((h & 7) as i64 + 1) * 1_000_000 * if h & 0x08 != 0 { 1000 } else { 1 };
                let (sp, dp) = if server { (port, cport) } else { (cport, port) };
                out.push((1, ts, ip(17, !server, &udp(sp, dp, payload))));
            }
        }
        // Raw frames of a link type.
        _ => {
            let link = LINKS[(sel & 15) as usize];
            while let Some(dt) = input.byte() {
                let Some(len) = input.u16() else { break };
                let frame = input.take(len as usize);
                ts += (dt as i64) * 1_000_000 * if dt & 0x80 != 0 { 1000 } else { 1 };
                out.push((link, ts, frame.to_vec()));
            }
        }
    }
    Some((head & 8 == 0, out))
}

/// Runs the frames through an engine writing JSON lines (`trawl pcap`) or events (`trawl run`),
/// taking its output as text either way.
fn run(flows: bool, events: bool, frames: &[(i32, i64, Vec<u8>)]) -> String {
    let mut e = engine(events, flows);
    let mut text = String::new();
    let mut take = |e: &mut Engine| match &mut e.out {
        Out::Events(v) => {
            for ev in v.drain(..) {
                text += &serde_json::to_string(&ev.fields).expect("serializable");
                text.push('\n');
            }
        }
        Out::Json { buf, lines, .. } => {
            text += std::str::from_utf8(buf).expect("JSON lines are UTF-8");
            buf.clear();
            *lines = 0;
        }
    };
    let mut last = 0;
    for (link, ts, f) in frames {
        e.packet(*link, *ts, f);
        last = *ts;
        if e.out.pending() > 64 {
            take(&mut e);
        }
    }
    e.tick(last + 3_600_000_000_000);
    take(&mut e);
    while e.finish_batch() {
        take(&mut e);
    }
    take(&mut e);
    text
}

fuzz_target!(|data: &[u8]| {
    let Some((flows, frames)) = frames(data) else {
        return;
    };
    let json = run(flows, false, &frames);
    for line in json.lines() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            panic!("not JSON ({e}): {line}");
        }
    }
    let events = run(flows, true, &frames);
    assert_eq!(json, events, "JSON mode and event mode differ");
});
