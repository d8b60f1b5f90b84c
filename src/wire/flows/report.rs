//! A flow's report (`event.*`, `flow.*`, `source`/`destination`, `network.*`, `tunnel.*`):
//! what the flow table hands to `Out` when a flow ends or is due an interim report.

use super::{is_icmp, EndReason, Flow, FlowKey, UNSET};
use crate::wire::community_id::{icmp_counterpart, CommunityId};
use crate::wire::decode::{tcp_flags, ESP};
use crate::wire::out::{clock_text, Clock, Fields, Fixed, Out, Report, Room};
use crate::wire::tunnel::Tunnel;
use std::borrow::Cow;
use std::sync::Arc;

pub(super) fn report(
    input: &Arc<str>,
    k: &FlowKey,
    f: &Flow,
    fin: bool,
    why: Option<EndReason>,
    out: &mut Out,
) {
    out.push(input, &FlowReport { k, f, fin, why });
}

fn flag_names(flags: u8) -> ([&'static str; 6], usize) {
    let all = [
        (tcp_flags::SYN, "SYN"),
        (tcp_flags::ACK, "ACK"),
        (tcp_flags::PSH, "PSH"),
        (tcp_flags::FIN, "FIN"),
        (tcp_flags::RST, "RST"),
        (tcp_flags::URG, "URG"),
    ];
    let mut names = [""; 6];
    let mut n = 0;
    for (b, name) in all {
        if flags & b != 0 {
            names[n] = name;
            n += 1;
        }
    }
    (names, n)
}

pub fn transport_name(proto: u8) -> Cow<'static, str> {
    match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        n => n.to_string().into(),
    }
}

static EVENT_END: Fixed = Fixed::new(|w| {
    w.str("kind", "event");
    w.strs("category", &["network"]);
    w.strs("type", &["connection", "end"]);
    w.str("dataset", "flow");
});
static EVENT_INFO: Fixed = Fixed::new(|w| {
    w.str("kind", "event");
    w.strs("category", &["network"]);
    w.strs("type", &["connection", "info"]);
    w.str("dataset", "flow");
});

/// One flow report (interim or final).
pub(super) struct FlowReport<'a> {
    pub(super) k: &'a FlowKey,
    pub(super) f: &'a Flow,
    pub(super) fin: bool,
    pub(super) why: Option<EndReason>,
}

impl Report for FlowReport<'_> {
    fn write_json(&self, buf: &mut Vec<u8>, clock: &mut Clock) -> bool {
        write_json(self, buf, clock)
    }

    fn write<W: Fields>(&self, w: &mut W) {
        let FlowReport { k, f, fin, why } = *self;
        let (s, d) = (f.initiator as usize, f.initiator as usize ^ 1);
        let ep = |dir: usize| if dir == 0 { (k.a, k.ap) } else { (k.b, k.bp) };
        let ((sip, sport), (dip, dport)) = (ep(s), ep(d));
        w.time("@timestamp", f.last_ns);
        w.open("event");
        w.fixed(if fin { &EVENT_END } else { &EVENT_INFO });
        w.time("start", f.first_ns);
        w.time("end", f.last_ns);
        w.int("duration", f.last_ns - f.first_ns);
        w.close();
        w.open("flow");
        w.word("id", hex16(flow_hash(k, f.first_ns), &mut [0; 16]));
        w.bool("final", fin);
        if let Some(why) = why {
            w.word("end_reason", why.as_str());
        }
        if k.proto == 6 {
            w.open("tcp");
            w.open("flags");
            let (names, n) = flag_names(f.flags[s]);
            w.words("source", &names[..n]);
            let (names, n) = flag_names(f.flags[d]);
            w.words("destination", &names[..n]);
            w.close();
            if f.setup_ns != UNSET {
                w.int("setup_duration", f.setup_ns);
            }
            w.close();
        }
        w.close();
        let ports = matches!(k.proto, 6 | 17 | 132 | 33 | 136);
        for (name, ip, port, dir) in [("source", sip, sport, s), ("destination", dip, dport, d)] {
            w.open(name);
            match ip.v4_text(&mut [0; 15]) {
                Some(text) => w.word("ip", text),
                None => w.string("ip", ip.text()),
            }
            if ports {
                w.int("port", port as i64);
            }
            w.int("packets", f.dirs[dir].packets as i64);
            w.int("bytes", f.dirs[dir].bytes as i64);
            w.close();
        }
        w.open("network");
        w.word("transport", &transport_name(k.proto));
        w.word("iana_number", &iana_number(k.proto));
        w.word("type", if sip.is_v4() { "ipv4" } else { "ipv6" });
        w.int("packets", (f.dirs[0].packets + f.dirs[1].packets) as i64);
        w.int("bytes", (f.dirs[0].bytes + f.dirs[1].bytes) as i64);
        let (cs, cd) = icmp_ports(f, k.proto, s, sport, dport);
        let id = if is_icmp(k.proto) {
            CommunityId::of(0, sip, cs, dip, cd, k.proto)
        } else {
            f.community_id
        };
        w.string("community_id", id.string());
        if f.vlan != 0 {
            w.open("vlan");
            w.string("id", f.vlan.to_string());
            w.close();
            if f.inner_vlan != 0 {
                w.open("inner");
                w.open("vlan");
                w.string("id", f.inner_vlan.to_string());
                w.close();
                w.close();
            }
        }
        w.close();
        if k.proto == ESP.0 && k.label != 0 {
            // One flow per security association (RFC 4303): the SPI is what tells two of
            // them between the same hosts apart.
            w.open("esp");
            w.int("spi", i64::from(k.label));
            w.close();
        }
        match f.tunnel.as_deref() {
            Some((t, _)) if f.outer => write_outer_tunnel(w, t),
            Some((t, dir)) => write_tunnel(w, t, *dir == s),
            None => {}
        }
    }
}

/// `FlowReport::write`'s JSON line from a template (`Room`), for every flow but one that came
/// through a tunnel or is an ESP security association: those return `false` before writing
/// and go through `JsonFields`. Same bytes, in the same order (a unit test compares the two
/// over every optional field); where a report through `JsonFields` cost about 3,200
/// instructions.
fn write_json(r: &FlowReport<'_>, buf: &mut Vec<u8>, clock: &mut Clock) -> bool {
    let FlowReport { k, f, fin, why } = *r;
    if f.tunnel.is_some() || k.proto == ESP.0 && k.label != 0 {
        return false;
    }
    let (s, d) = (f.initiator as usize, f.initiator as usize ^ 1);
    let ep = |dir: usize| if dir == 0 { (k.a, k.ap) } else { (k.b, k.bp) };
    let ((sip, sport), (dip, dport)) = (ep(s), ep(d));
    let mut w = Room::new(buf, 1024);
    w.put(b"{\"@timestamp\":\"");
    w.put(clock_text(clock, f.last_ns));
    w.put(if fin {
        b"\",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\
          \"type\":[\"connection\",\"end\"],\"dataset\":\"flow\",\"start\":\""
    } else {
        b"\",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\
          \"type\":[\"connection\",\"info\"],\"dataset\":\"flow\",\"start\":\""
    });
    w.put(clock_text(clock, f.first_ns));
    w.put(b"\",\"end\":\"");
    w.put(clock_text(clock, f.last_ns));
    w.put(b"\",\"duration\":");
    w.int(f.last_ns - f.first_ns);
    w.put(b"},\"flow\":{\"id\":\"");
    w.put(hex16(flow_hash(k, f.first_ns), &mut [0; 16]).as_bytes());
    w.put(if fin {
        b"\",\"final\":true"
    } else {
        b"\",\"final\":false"
    });
    if let Some(why) = why {
        w.put(b",\"end_reason\":\"");
        w.put(why.as_str().as_bytes());
        w.put(b"\"");
    }
    if k.proto == 6 {
        let lists: [(&[u8], u8); 2] = [
            (b",\"tcp\":{\"flags\":{\"source\":[", f.flags[s]),
            (b"],\"destination\":[", f.flags[d]),
        ];
        for (head, bits) in lists {
            w.put(head);
            let (names, n) = flag_names(bits);
            for (i, name) in names[..n].iter().enumerate() {
                w.put(if i > 0 { b",\"" } else { b"\"" });
                w.put(name.as_bytes());
                w.put(b"\"");
            }
        }
        w.put(b"]}");
        if f.setup_ns != UNSET {
            w.put(b",\"setup_duration\":");
            w.int(f.setup_ns);
        }
        w.put(b"}");
    }
    w.put(b"}");
    let ports = matches!(k.proto, 6 | 17 | 132 | 33 | 136);
    let sides: [(&[u8], _, _, _); 2] = [
        (b",\"source\":{\"ip\":\"", sip, sport, s),
        (b",\"destination\":{\"ip\":\"", dip, dport, d),
    ];
    for (head, ip, port, dir) in sides {
        w.put(head);
        match ip.v4_text(&mut [0; 15]) {
            Some(text) => w.put(text.as_bytes()),
            None => w.put(ip.text().as_bytes()),
        }
        if ports {
            w.put(b"\",\"port\":");
            w.int(port as i64);
            w.put(b",\"packets\":");
        } else {
            w.put(b"\",\"packets\":");
        }
        w.int(f.dirs[dir].packets as i64);
        w.put(b",\"bytes\":");
        w.int(f.dirs[dir].bytes as i64);
        w.put(b"}");
    }
    w.put(b",\"network\":{\"transport\":\"");
    w.put(transport_name(k.proto).as_bytes());
    w.put(b"\",\"iana_number\":\"");
    w.put(iana_number(k.proto).as_bytes());
    w.put(if sip.is_v4() {
        b"\",\"type\":\"ipv4\",\"packets\":"
    } else {
        b"\",\"type\":\"ipv6\",\"packets\":"
    });
    w.int((f.dirs[0].packets + f.dirs[1].packets) as i64);
    w.put(b",\"bytes\":");
    w.int((f.dirs[0].bytes + f.dirs[1].bytes) as i64);
    w.put(b",\"community_id\":\"");
    if is_icmp(k.proto) {
        let (cs, cd) = icmp_ports(f, k.proto, s, sport, dport);
        w.put(&CommunityId::of(0, sip, cs, dip, cd, k.proto).text());
    } else {
        w.put(&f.community_id.text());
    }
    w.put(b"\"");
    if f.vlan != 0 {
        w.put(b",\"vlan\":{\"id\":\"");
        w.int(i64::from(f.vlan));
        w.put(b"\"}");
        if f.inner_vlan != 0 {
            w.put(b",\"inner\":{\"vlan\":{\"id\":\"");
            w.int(i64::from(f.inner_vlan));
            w.put(b"\"}}");
        }
    }
    w.put(b"}}\n");
    w.finish();
    true
}

/// What Community ID hashes in place of ports: for ICMP the type and code of the flow's
/// first message, seen from the source.
fn icmp_ports(f: &Flow, proto: u8, s: usize, sport: u16, dport: u16) -> (u16, u16) {
    match f.icmp {
        Some((t, code, dir)) if dir as usize == s => (t, code),
        Some((t, code, _)) => (icmp_counterpart(proto == 58, t).unwrap_or(t), code),
        None => (sport, dport),
    }
}

/// `tunnel.{type,id,source.ip,destination.ip}`; `forward` when the packet that carried the
/// tunnel went from the flow's source to its destination (the outer addresses follow it).
pub fn write_tunnel<W: Fields>(w: &mut W, t: &Tunnel, forward: bool) {
    let (src, dst) = if forward {
        (t.src, t.dst)
    } else {
        (t.dst, t.src)
    };
    w.open("tunnel");
    w.str("type", t.kind.as_str());
    if let Some(id) = t.id {
        w.string("id", id.to_string());
    }
    for (name, ip) in [("source", src), ("destination", dst)] {
        w.open(name);
        w.string("ip", ip.text());
        w.close();
    }
    w.close();
}

/// The outer flow of a tunnel: `tunnel.type` and `tunnel.outer: true`, which tells it from the
/// inner flows it carries (their bytes are inside its bytes). No `tunnel.id`: one outer
/// 5-tuple may carry several VNIs; the outer addresses are the flow's own.
fn write_outer_tunnel<W: Fields>(w: &mut W, t: &Tunnel) {
    w.open("tunnel");
    w.str("type", t.kind.as_str());
    w.bool("outer", true);
    w.close();
}

/// `{:016x}` without the formatter, written into `text`.
pub(super) fn hex16(v: u64, text: &mut [u8; 16]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in text.iter_mut().enumerate() {
        *d = HEX[(v >> ((15 - i) * 4)) as usize & 15];
    }
    // Only hex digits were written.
    std::str::from_utf8(text).unwrap_or_default()
}

/// The protocol number as text; the common ones without formatting.
pub(super) fn iana_number(proto: u8) -> Cow<'static, str> {
    match proto {
        6 => "6".into(),
        17 => "17".into(),
        1 => "1".into(),
        58 => "58".into(),
        n => n.to_string().into(),
    }
}

/// `flow.id`: the key and start hashed field by field, the addresses as byte strings, so that
/// ids stay what earlier versions gave (`Addr`'s own `Hash` is a faster 128-bit one).
fn flow_hash(k: &FlowKey, first_ns: i64) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for a in [k.a, k.b] {
        h.write_usize(a.0.len());
        h.write(&a.0);
    }
    h.write_u16(k.ap);
    h.write_u16(k.bp);
    h.write_u8(k.proto);
    h.write_u16(k.vlan);
    // Only when set, so that ids of port-keyed flows stay what earlier versions gave.
    if k.label != 0 {
        h.write_u32(k.label);
    }
    // Two tenants' flows of one 5-tuple may start in the same instant (`key_by_tunnel`).
    if k.tunnel != 0 {
        h.write_u32(k.tunnel);
    }
    h.write_i64(first_ns);
    h.finish()
}
