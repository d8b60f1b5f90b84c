//! IP fragment reassembly on captures this test writes itself: a DNS answer too big for one
//! packet (a 2.5 KB TXT record, over UDP with EDNS) fragmented over IPv4 (RFC 791) and IPv6
//! (RFC 8200), read by `trawl run` with a `pcap_file` input. Reassembled, the answer is a DNS
//! transaction with its TXT data; the flow counts every fragment as a packet, bytes as on the
//! wire. Overlapping fragments (RFC 5722; Linux does the same for IPv4), a datagram whose last
//! fragment comes after the 30 s reassembly timeout, and fragments past the reassembly table's
//! limit leave the answer missing, while the flow still counts the fragments.

use serde_json::Value as J;
use std::path::Path;
use std::process::Command;

const CLIENT4: [u8; 4] = [10, 1, 0, 1];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// TXT strings in the answer: 10 of 250 bytes.
const TXT_STRINGS: usize = 10;

/// One captured frame: time in microseconds and the Ethernet frame.
struct Frame {
    us: u64,
    data: Vec<u8>,
}

fn write_pcap(path: &Path, frames: &[Frame]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for fr in frames {
        let us = 1_700_000_000_000_000 + fr.us;
        f.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(fr.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&(fr.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&fr.data);
    }
    std::fs::write(path, f).unwrap();
}

fn qname() -> Vec<u8> {
    let mut q = Vec::new();
    for label in ["big", "frag", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q
}

/// A TXT query for big.frag.test with id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&qname());
    m.extend_from_slice(&[0, 16, 0, 1]);
    m
}

/// The answer: one TXT record of `TXT_STRINGS` strings, each 250 copies of one letter.
fn dns_answer(id: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&qname());
    m.extend_from_slice(&[0, 16, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
    let rdata: Vec<u8> = (0..TXT_STRINGS)
        .flat_map(|i| {
            let mut s = vec![250u8];
            s.extend(std::iter::repeat_n(b'a' + i as u8, 250));
            s
        })
        .collect();
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    m
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ether(ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// An IPv4 packet carrying `data` at byte `offset` of datagram `id`'s UDP payload.
fn ipv4(src: [u8; 4], dst: [u8; 4], id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let total = 20 + data.len();
    let frag = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, 17, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(data);
    ether(0x0800, &p)
}

/// An IPv6 packet with a fragment header carrying `data` at `offset` of datagram `id`.
fn ipv6(src: [u8; 16], dst: [u8; 16], id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[44, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[17, 0]);
    p.extend_from_slice(&((offset as u16) | more as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(data);
    ether(0x86dd, &p)
}

/// Server `host`'s address: 10.1.0.`host` or fd00::`host`.
fn server4(host: u8) -> [u8; 4] {
    [10, 1, 0, host]
}
fn server6(host: u8) -> [u8; 16] {
    let mut a = CLIENT6;
    a[15] = host;
    a
}

/// A query: an unfragmented IPv4 or IPv6 UDP packet from the client to server `host`.
fn query_packet(v6: bool, host: u8, sport: u16, payload: &[u8]) -> Vec<u8> {
    let u = udp(sport, 53, payload);
    if !v6 {
        return ipv4(CLIENT4, server4(host), 1, 0, false, &u);
    }
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(u.len() as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&CLIENT6);
    p.extend_from_slice(&server6(host));
    p.extend_from_slice(&u);
    ether(0x86dd, &p)
}

/// The pieces (offset, more, bytes) of `datagram` cut at multiples of `size`.
fn pieces(datagram: &[u8], size: usize) -> Vec<(usize, bool, Vec<u8>)> {
    datagram
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (i * size, (i + 1) * size < datagram.len(), c.to_vec()))
        .collect()
}

/// IP length of a fragment carrying `len` bytes.
fn fragment_ip_len(v6: bool, len: usize) -> u64 {
    if v6 {
        48 + len as u64
    } else {
        20 + len as u64
    }
}

fn run_pcap(dir: &Path, frames: &[Frame]) -> Vec<J> {
    let pcap = dir.join("frags.pcap");
    write_pcap(&pcap, frames);
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  cap:\n    type: pcap_file\n    path: {}\n    flows: {{ period: -1s, timeout: 300s }}\n    dns: {{ ports: [53], transaction_timeout: 120s, connection_timeout: 300s }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            pcap.display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trawl run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn dataset<'a>(events: &'a [J], name: &str) -> Vec<&'a J> {
    events
        .iter()
        .filter(|e| e["event"]["dataset"] == name)
        .collect()
}

/// What one exchange should give: the answer decoded or not; the server's `fragments`
/// all counted as packets (with `bytes`, client's then server's) in the flows between the two
/// addresses, `attributed` of them in the flow with the client's port.
struct Expect {
    case: String,
    x: Exchange,
    answered: bool,
    fragments: u64,
    bytes: (u64, u64),
    attributed: u64,
}

fn check(events: &[J], e: &Expect) {
    let (case, x) = (&e.case, &e.x);
    let port = |ev: &&J, side: &str| ev[side]["port"].as_u64() == Some(x.cport as u64);
    let dns: Vec<&J> = dataset(events, "dns")
        .into_iter()
        .filter(|ev| port(ev, "client") || port(ev, "source"))
        .collect();
    assert_eq!(dns.len(), 1, "{case}: one DNS transaction, got {dns:#?}");
    let d = dns[0];
    if e.answered {
        assert_eq!(d["dns"]["type"], "answer", "{case}: {d:#}");
        let data = d["dns"]["answers"][0]["data"].as_str().unwrap_or("");
        assert_eq!(
            data.len(),
            TXT_STRINGS * (250 + 3) - 1,
            "{case}: the whole TXT record: {d:#}"
        );
        assert!(data.ends_with(&("j".repeat(250) + "\"")), "{case}: {d:#}");
    } else {
        assert_eq!(d["event"]["reason"], "response_missing", "{case}: {d:#}");
    }
    let server = x.server();
    let between: Vec<&J> = dataset(events, "flow")
        .into_iter()
        .filter(|f| f["source"]["ip"] == server || f["destination"]["ip"] == server)
        .collect();
    let from_server = |f: &J, what: &str| {
        let side = if f["source"]["ip"] == server {
            "source"
        } else {
            "destination"
        };
        f[side][what].as_u64().unwrap_or(0)
    };
    let total = |what| between.iter().map(|f| from_server(f, what)).sum::<u64>();
    assert_eq!(
        (total("packets"), total("bytes")),
        (e.fragments, e.bytes.1),
        "{case}: every fragment is a packet of the flows between the two hosts: {between:#?}"
    );
    let flows: Vec<&&J> = between
        .iter()
        .filter(|f| port(f, "source") || port(f, "destination"))
        .collect();
    assert_eq!(flows.len(), 1, "{case}: one flow, got {flows:#?}");
    let f = flows[0];
    assert_eq!(
        f["source"]["port"], x.cport,
        "{case}: client is the source: {f:#}"
    );
    assert_eq!(f["network"]["transport"], "udp", "{case}: {f:#}");
    assert_eq!(f["source"]["packets"], 1, "{case}: {f:#}");
    assert_eq!(f["source"]["bytes"], e.bytes.0, "{case}: {f:#}");
    assert_eq!(f["destination"]["packets"], e.attributed, "{case}: {f:#}");
}

/// One DNS exchange: a query from client port `cport` to server `host`, an answer in
/// fragments of datagram `id`.
struct Exchange {
    v6: bool,
    host: u8,
    cport: u16,
    id: u32,
}

impl Exchange {
    fn new(v6: bool, n: usize) -> Exchange {
        Exchange {
            v6,
            host: 10 + n as u8,
            cport: 40000 + n as u16,
            id: 700 + n as u32,
        }
    }

    fn server(&self) -> String {
        match self.v6 {
            false => std::net::Ipv4Addr::from(server4(self.host)).to_string(),
            true => std::net::Ipv6Addr::from(server6(self.host)).to_string(),
        }
    }

    fn query(&self, us: u64) -> Frame {
        Frame {
            us,
            data: query_packet(self.v6, self.host, self.cport, &dns_query(self.id as u16)),
        }
    }

    /// The answer datagram cut for a 1500-byte MTU.
    fn pieces(&self) -> Vec<(usize, bool, Vec<u8>)> {
        let datagram = udp(53, self.cport, &dns_answer(self.id as u16));
        pieces(&datagram, if self.v6 { 1448 } else { 1480 })
    }

    fn fragment(&self, us: u64, piece: &(usize, bool, Vec<u8>)) -> Frame {
        let (offset, more, data) = piece;
        let data = match self.v6 {
            false => ipv4(
                server4(self.host),
                CLIENT4,
                self.id as u16,
                *offset,
                *more,
                data,
            ),
            true => ipv6(server6(self.host), CLIENT6, self.id, *offset, *more, data),
        };
        Frame { us, data }
    }

    /// Expectations when the answer goes as `pieces`.
    fn expect(self, case: String, pieces: &[(usize, bool, Vec<u8>)], answered: bool) -> Expect {
        let q = 8 + dns_query(0).len() as u64 + if self.v6 { 40 } else { 20 };
        let a = pieces
            .iter()
            .map(|p| fragment_ip_len(self.v6, p.2.len()))
            .sum();
        Expect {
            case,
            answered,
            fragments: pieces.len() as u64,
            bytes: (q, a),
            attributed: pieces.len() as u64,
            x: self,
        }
    }
}

#[test]
fn fragmented_dns_answers_are_reassembled_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    let mut cases = Vec::new();
    for (n, (v6, reversed)) in [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .enumerate()
    {
        let x = Exchange::new(v6, n);
        let t = n as u64 * 1_000_000;
        frames.push(x.query(t));
        let mut pieces = x.pieces();
        assert!(pieces.len() >= 2, "the answer spans several fragments");
        if reversed {
            pieces.reverse();
        }
        for (i, piece) in pieces.iter().enumerate() {
            frames.push(x.fragment(t + 1000 + i as u64, piece));
        }
        cases.push(x.expect(format!("v6 {v6}, reversed {reversed}"), &pieces, true));
    }
    let events = run_pcap(dir.path(), &frames);
    for e in &cases {
        check(&events, e);
    }
}

#[test]
fn overlapping_fragments_discard_the_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    let mut cases = Vec::new();
    for (n, v6) in [false, true].into_iter().enumerate() {
        let x = Exchange::new(v6, n);
        let t = n as u64 * 1_000_000;
        frames.push(x.query(t));
        let mut pieces = x.pieces();
        // An extra fragment rewriting the second half of the first one and the start of the
        // second (8-byte aligned, as Teardrop-style evasions do), before the last fragment.
        let (first_len, second) = (pieces[0].2.len(), pieces[1].2.clone());
        let mut overlap = vec![b'X'; first_len / 2];
        overlap.extend_from_slice(&second[..64]);
        let last = pieces.len() - 1;
        pieces.insert(last, (first_len / 2, true, overlap));
        for (i, piece) in pieces.iter().enumerate() {
            frames.push(x.fragment(t + 1000 + i as u64, piece));
        }
        cases.push(x.expect(format!("overlap, v6 {v6}"), &pieces, false));
    }
    let events = run_pcap(dir.path(), &frames);
    for e in &cases {
        check(&events, e);
    }
}

/// The last fragment 29 s after the first completes the answer; 31 s after, the datagram was
/// dropped (Linux's `ipfrag_time`), and the late fragment, whose ports were in the first
/// fragment, cannot be told to belong to the client's flow.
#[test]
fn a_datagram_not_complete_within_30_seconds_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    let mut cases = Vec::new();
    for (n, (v6, gap_s)) in [(false, 29), (false, 31), (true, 29), (true, 31)]
        .into_iter()
        .enumerate()
    {
        let x = Exchange::new(v6, n);
        // Each case 100 s after the last, so that only the gap inside it matters.
        let t = n as u64 * 100_000_000;
        frames.push(x.query(t));
        let pieces = x.pieces();
        for (i, piece) in pieces.iter().enumerate() {
            let late = if i + 1 == pieces.len() {
                gap_s * 1_000_000
            } else {
                0
            };
            frames.push(x.fragment(t + 1000 + i as u64 + late, piece));
        }
        let mut e = x.expect(
            format!("last fragment after {gap_s} s, v6 {v6}"),
            &pieces,
            gap_s < 30,
        );
        if gap_s > 30 {
            e.attributed -= 1;
        }
        cases.push(e);
    }
    let events = run_pcap(dir.path(), &frames);
    for e in &cases {
        check(&events, e);
    }
}

/// Datagrams waiting for their fragments are bounded (8,192): past the bound the fragments
/// of a new datagram are not kept (as Linux drops them past `ipfrag_high_thresh`), and the
/// answer whose fragments came then is lost; once the waiting datagrams have timed out, an
/// answer is reassembled again.
#[test]
fn fragments_past_the_reassembly_limit_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    // 8,192 first fragments from other hosts that never complete.
    for i in 0..8192u32 {
        let src = [10, 2, (i >> 8) as u8, i as u8];
        frames.push(Frame {
            us: i as u64,
            data: ipv4(src, CLIENT4, 7, 0, true, &udp(5000, 6000, &[0; 64])),
        });
    }
    let mut cases = Vec::new();
    for (n, t) in [(0, 10_000_000), (1, 60_000_000)] {
        let x = Exchange::new(false, n);
        frames.push(x.query(t));
        let pieces = x.pieces();
        for (i, piece) in pieces.iter().enumerate() {
            frames.push(x.fragment(t + 1000 + i as u64, piece));
        }
        let mut e = x.expect(format!("case {n}"), &pieces, n == 1);
        if n == 0 {
            // Not kept: only the first fragment, which has the ports, is in the client's flow.
            e.case = "table full".into();
            e.attributed = 1;
        } else {
            e.case = "after the waiting datagrams timed out".into();
        }
        cases.push(e);
    }
    let events = run_pcap(dir.path(), &frames);
    for e in &cases {
        check(&events, e);
    }
}
