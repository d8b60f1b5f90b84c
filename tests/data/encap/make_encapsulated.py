#!/usr/bin/env python3
"""Makes the encapsulated captures this kernel cannot produce live (no gre, erspan, geneve,
ipip, sit modules): the inner Ethernet frames of the live vxlan.pcap (one HTTP GET over TCP,
two ICMP echo exchanges, ARP) are wrapped again, header by header as the RFCs lay them out,
and written with the link type under test. Checked against tshark's dissection in the test.
Run from this folder: python3 make_encapsulated.py"""
import struct

OUTER_A, OUTER_B = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def read_pcap(path):
    data = open(path, "rb").read()
    magic, = struct.unpack("<I", data[:4])
    assert magic == 0xA1B2C3D4, "little-endian microsecond pcap"
    at, out = 24, []
    while at < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[at:at + 16])
        out.append((sec, usec, data[at + 16:at + 16 + incl]))
        at += 16 + incl
    return out


def write_pcap(path, link, records):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, link))
        for sec, usec, frame in records:
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def inner_frames():
    """(time, inner Ethernet frame, sent by 10.99.1.1) from the live VXLAN capture."""
    out = []
    for sec, usec, frame in read_pcap("vxlan.pcap"):
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue  # the underlay's own ARP
        inner = frame[14 + 20 + 8 + 8:]
        # The outer IPv4 source tells the direction (the inner frame may be ARP).
        out.append((sec, usec, inner, frame[26:30] == OUTER_A))
    return out


def outer(forward, proto, payload, ident):
    src, dst = (OUTER_A, OUTER_B) if forward else (OUTER_B, OUTER_A)
    macs = (MAC_B, MAC_A) if forward else (MAC_A, MAC_B)
    return eth(macs[0], macs[1], 0x0800, ipv4(src, dst, proto, payload, ident))


def build(name, link, wrap):
    recs = []
    for n, (sec, usec, inner, fwd) in enumerate(inner_frames()):
        frame = wrap(n, inner, fwd)
        if frame is not None:
            recs.append((sec, usec, frame))
    write_pcap(name, link, recs)


def ip_only(inner):
    """The inner IP packet, or None for ARP."""
    return inner[14:] if inner[12:14] == b"\x08\x00" else None


# Geneve (RFC 8926) with one 8-byte option (class 0x0102, type 0x80, 4 data bytes), VNI 77.
def geneve(n, inner, fwd):
    opt = struct.pack("!HBB", 0x0102, 0x80, 1) + b"\xde\xad\xbe\xef"
    hdr = struct.pack("!BBH", len(opt) // 4, 0, 0x6558) + struct.pack("!I", 77 << 8)
    return outer(fwd, 17, udp(50000 + (n % 7), 6081, hdr + opt + inner), n + 1)


# GRE (RFC 2784/2890) with checksum, key 5 and sequence number, carrying Ethernet (gretap).
def gretap(n, inner, fwd):
    body = struct.pack("!HH", 0xB000, 0x6558)
    rest = struct.pack("!I", 5) + struct.pack("!I", n) + inner
    c = csum(body + b"\0\0\0\0" + rest)
    return outer(fwd, 47, body + struct.pack("!HH", c, 0) + rest, n + 1)


# Plain GRE carrying IPv4.
def gre_ip(n, inner, fwd):
    ip = ip_only(inner)
    return None if ip is None else outer(fwd, 47, struct.pack("!HH", 0, 0x0800) + ip, n + 1)


# ERSPAN type I: GRE 0x88be without sequence number, the mirrored frame right after.
def erspan_i(n, inner, fwd):
    return outer(fwd, 47, struct.pack("!HH", 0, 0x88BE) + inner, n + 1)


# ERSPAN type II: GRE with sequence number; version 1, session 123, index 0.
def erspan_ii(n, inner, fwd):
    hdr = struct.pack("!HHI", (1 << 12) | 0, 123, 0)
    return outer(fwd, 47, struct.pack("!HHI", 0x1000, 0x88BE, n) + hdr + inner, n + 1)


# ERSPAN type III: version 2, session 321, a timestamp, frame type 0 (Ethernet), hardware id
# 7, O bit set with its 8-byte platform-specific subheader.
def erspan_iii(n, inner, fwd):
    w0 = struct.pack("!HH", (2 << 12) | 0, 321)
    ts = struct.pack("!I", 1000 + n)
    w2 = struct.pack("!HBB", 0, (0 << 7) | (0 << 2) | (7 >> 4), ((7 & 0xF) << 4) | 1)
    platform = struct.pack("!II", 3 << 26, 0)
    return outer(fwd, 47, struct.pack("!HHI", 0x1000, 0x22EB, n) + w0 + ts + w2 + platform + inner, n + 1)


# IPv4 in IPv4 (protocol 4).
def ipip(n, inner, fwd):
    ip = ip_only(inner)
    return None if ip is None else outer(fwd, 4, ip, n + 1)


# MPLS: labels 100 and 200 (bottom of stack), then IPv4.
def mpls(n, inner, fwd):
    ip = ip_only(inner)
    if ip is None:
        return None
    stack = struct.pack("!I", (100 << 12) | 64) + struct.pack("!I", (200 << 12) | 0x100 | 64)
    macs = (MAC_B, MAC_A) if fwd else (MAC_A, MAC_B)
    return eth(macs[0], macs[1], 0x8847, stack + ip)


# 802.1ad service tag 10, 802.1Q customer tag 20, PPPoE session 0x42, PPP IPv4.
def qinq_pppoe(n, inner, fwd):
    ip = ip_only(inner)
    if ip is None:
        return None
    ppp = struct.pack("!H", 0x0021) + ip
    pppoe = struct.pack("!BBHH", 0x11, 0, 0x42, len(ppp)) + ppp
    tags = struct.pack("!HH", 10, 0x8100) + struct.pack("!HH", 20, 0x8864)
    macs = (MAC_B, MAC_A) if fwd else (MAC_A, MAC_B)
    return eth(macs[0], macs[1], 0x88A8, tags + pppoe)


build("geneve_options.pcap", 1, geneve)
build("gretap_key_csum_seq.pcap", 1, gretap)
build("gre_ip.pcap", 1, gre_ip)
build("erspan_i.pcap", 1, erspan_i)
build("erspan_ii.pcap", 1, erspan_ii)
build("erspan_iii.pcap", 1, erspan_iii)
build("ipip.pcap", 1, ipip)
build("mpls.pcap", 1, mpls)
build("qinq_pppoe.pcap", 1, qinq_pppoe)
# Link types, each with the inner IPv4 packets.
build("link_c_hdlc.pcap", 104, lambda n, i, f: ip_only(i) and b"\x0f\x00\x08\x00" + ip_only(i))
build("link_ppp.pcap", 9, lambda n, i, f: ip_only(i) and b"\xff\x03\x00\x21" + ip_only(i))
build("link_null.pcap", 0, lambda n, i, f: ip_only(i) and struct.pack("<I", 2) + ip_only(i))
build("link_loop.pcap", 108, lambda n, i, f: ip_only(i) and struct.pack(">I", 2) + ip_only(i))
build("link_raw.pcap", 101, lambda n, i, f: ip_only(i))
build("link_ipv4.pcap", 228, lambda n, i, f: ip_only(i))

# VXLAN on 4789 with every reserved bit set (RFC 7348: "MUST be set to zero on transmission
# and ignored on receipt"), the I bit among them, VNI 44. The P bit is one of those bits here:
# only VXLAN-GPE's own port (4790) gives it a meaning.
def vxlan_reserved_bits(n, inner, fwd):
    hdr = b"\xff\xff\xff\xff" + struct.pack("!I", (44 << 8) | 0xFF)
    return outer(fwd, 17, udp(40000 + (n % 5), 4789, hdr + inner), n + 1)


def icmp_echo(request, ident, seq, payload=b"trawl-echo-test!"):
    body = struct.pack("!BBHHH", 8 if request else 0, 0, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]


def echo_both_ways():
    """192.0.2.1 pings 192.0.2.2 and 192.0.2.2 pings 192.0.2.1, both with identifier 0x77
    (RFC 792: the identifier is the requester's, so these are two exchanges): two requests
    and two replies each."""
    recs, t = [], 0
    for asker_is_a in (True, False):
        for seq in (1, 2):
            for request in (True, False):
                fwd = asker_is_a == request
                recs.append((1700000000, t, outer(fwd, 1, icmp_echo(request, 0x77, seq), t + 1)))
                t += 1000
    write_pcap("icmp_echo_both_ways.pcap", 1, recs)


# GTP-U (3GPP TS 29.281) on 2152, TEID 0x1234, with the E and S flags: sequence number, then
# one extension header (a PDU session container, type 0x85, one 4-byte word) and no next one.
def gtp_u(n, inner, fwd):
    ip = ip_only(inner)
    if ip is None:
        return None
    ext = bytes([1, 0x00, 0x05, 0x00])
    opt = struct.pack("!HBB", n, 0, 0x85) + ext
    hdr = struct.pack("!BBHI", 0x30 | 0x04 | 0x02, 255, len(opt) + len(ip), 0x1234)
    return outer(fwd, 17, udp(2152, 2152, hdr + opt + ip), n + 1)


# IEEE 802.3 with LLC/SNAP (RFC 1042): a length in place of the type, AA AA 03, OUI 0, IPv4.
def snap(n, inner, fwd):
    ip = ip_only(inner)
    if ip is None:
        return None
    llc = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip
    macs = (MAC_B, MAC_A) if fwd else (MAC_A, MAC_B)
    return macs[0] + macs[1] + struct.pack("!H", len(llc)) + llc


# Linux NFLOG: AF_INET, version 0, group 42; a prefix attribute (type 10) then the payload
# (type 9), lengths and types little-endian as an x86 machine writes them, padded to 4 bytes.
def nflog(n, inner, fwd):
    ip = ip_only(inner)
    if ip is None:
        return None
    def tlv(kind, value):
        body = struct.pack("<HH", 4 + len(value), kind) + value
        return body + b"\0" * (-len(body) % 4)
    return struct.pack("!BBH", 2, 0, 42) + tlv(10, b"trawl\0") + tlv(9, ip)


build("vxlan_reserved_bits.pcap", 1, vxlan_reserved_bits)
build("gtp_u.pcap", 1, gtp_u)
build("snap.pcap", 1, snap)
build("link_nflog.pcap", 239, nflog)
echo_both_ways()


# AYIYA (draft-massar-v6ops-ayiya) on UDP 5072, as a SixXS client sends it: a 16-byte identity
# (length code 4, type 1), a 20-byte SHA-1 signature (5 words, hash method 2), shared-secret
# authentication, operation 1 (forward), next header 4 (IPv4), an epoch. The tunnel's ARP
# frames become heartbeats (operation 0, nothing forwarded): outer UDP packets only.
def ayiya(n, inner, fwd):
    ip = ip_only(inner)
    op, nh, payload = (1, 4, ip) if ip is not None else (0, 59, b"")
    hdr = struct.pack("!BBBBI", (4 << 4) | 1, (5 << 4) | 2, (1 << 4) | op, nh, 1700000000 + n)
    ident = (OUTER_A if fwd else OUTER_B) * 4
    sig = bytes(range(20))
    sport, dport = (40001, 5072) if fwd else (5072, 40001)
    return outer(fwd, 17, udp(sport, dport, hdr + ident + sig + payload), n + 1)


# GRE-in-UDP (RFC 8086): destination port 4754 both ways, the source port a flow-entropy
# value; then a GRE header with key 9 carrying the Ethernet frame (0x6558), ARP included.
def gre_udp(n, inner, fwd):
    gre = struct.pack("!HHI", 0x2000, 0x6558, 9) + inner
    return outer(fwd, 17, udp(49152 + (n % 3), 4754, gre), n + 1)


build("ayiya.pcap", 1, ayiya)
build("gre_udp.pcap", 1, gre_udp)


def tcp_seg(src, sport, dst, dport, seq, ack, flags, payload=b""):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    return h + payload


def late_segments():
    """Two connections on one 5-tuple, 192.0.2.1:40001 -> 192.0.2.2:80 (RFC 9293). The first
    closes with FIN both ways; the client's last ACK is lost, so the server retransmits its
    FIN with exponential backoff (0.2 s doubling: the last ones 6.4 and 12.8 s apart) and the
    client, in TIME-WAIT, acknowledges each: late segments of the closed connection. Then a
    SYN on the same 5-tuple opens the second, which the server resets; a data segment the
    client sent before seeing the RST arrives 5 s after it. Meanwhile two other hosts
    exchange UDP."""
    A, B = OUTER_A, OUTER_B
    ACK, PSH, SYN, FIN, RST = 0x10, 0x08, 0x02, 0x01, 0x04
    recs, ident = [], [0]

    def pkt(t, fwd, seg):
        ident[0] += 1
        src, dst = (A, B) if fwd else (B, A)
        sec = 1700000000 + int(t)
        recs.append((sec, int(round((t - int(t)) * 1e6)), outer(fwd, 6, seg, ident[0])))

    def c(t, seq, ack, flags, data=b""):
        pkt(t, True, tcp_seg(A, 40001, B, 80, seq, ack, flags, data))

    def s(t, seq, ack, flags, data=b""):
        pkt(t, False, tcp_seg(B, 80, A, 40001, seq, ack, flags, data))

    req = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    c(0.000, 1000, 0, SYN)
    s(0.001, 5000, 1001, SYN | ACK)
    c(0.002, 1001, 5001, ACK)
    c(0.003, 1001, 5001, ACK | PSH, req)
    s(0.004, 5001, 1001 + len(req), ACK | PSH, resp)
    cs, ss = 1001 + len(req), 5001 + len(resp)
    c(0.010, cs, ss, FIN | ACK)
    t = 0.011
    s(t, ss, cs + 1, FIN | ACK)
    # The client's ACK of that FIN is lost; the server retransmits, the client re-ACKs.
    rto = 0.2
    for _ in range(7):
        t += rto
        s(t, ss, cs + 1, FIN | ACK)
        c(t + 0.001, cs + 1, ss + 1, ACK)
        rto *= 2
    # t is now about 25.4 s: a new connection on the same 5-tuple, reset by the server.
    t += 2.0
    c(t, 90000, 0, SYN)
    s(t + 0.001, 70000, 90001, SYN | ACK)
    c(t + 0.002, 90001, 70001, ACK)
    s(t + 0.003, 70001, 90001, RST | ACK)
    c(t + 5.003, 90001, 70001, ACK | PSH, req)
    # Other traffic on the link all along (a UDP query every 250 ms between two other hosts):
    # capture time goes on between the late segments, as on any busy link.
    C, D = bytes([192, 0, 2, 3]), bytes([192, 0, 2, 4])
    for i in range(int(34 / 0.25)):
        u = i * 0.25 + 0.0005
        frame = eth(MAC_B, MAC_A, 0x0800, ipv4(C, D, 17, udp(5353, 5353, b"q"), 1000 + i))
        recs.append((1700000000 + int(u), int(round((u - int(u)) * 1e6)), frame))
    recs.sort(key=lambda r: (r[0], r[1]))
    write_pcap("tcp_late_segments.pcap", 1, recs)


late_segments()


# A mirror port that tags one direction only: the client's frames (10.99.1.1) carry 802.1Q
# VLAN 3136, the server's none (as in suricata-verify's bug-4376). Same conversation.
def vlan_one_side(n, inner, fwd):
    if not fwd:
        return inner
    return inner[:12] + struct.pack("!HH", 0x8100, 3136) + inner[12:]


build("vlan_one_side.pcap", 1, vlan_one_side)


# GTP-U (3GPP TS 29.281 section 5) in the forms a user plane sends, TEID 0x1234 on 2152, each
# G-PDU in turn: only the S flag (sequence number; the next extension type byte is not to be
# interpreted without E, so it carries a stale 0x85 here), only PN (N-PDU number, byte 11
# likewise 0xc0), E with two chained extension headers (a PDU session container, type 0x85,
# then a UDP port extension, type 0x40, each one word, the last next type 0), and no flag at
# all. A G-PDU whose outer IPv4 datagram exceeds 200 bytes leaves in fragments of 128 bytes
# (the underlay MTU), as in Zeek's core.tunnels.gtp.outer_ip_frag. Each ARP frame becomes an
# echo request and its echo response (types 1 and 2: path management, no payload), and the
# capture ends with an end marker (type 254): tunnel messages, counted in the outer flow only.
def gtp_u_variants():
    recs = []
    ident = 100

    def gtp(msg, flags, opt, payload):
        return struct.pack("!BBHI", 0x30 | flags, msg, len(opt) + len(payload), 0x1234) + opt + payload

    def send(sec, usec, fwd, datagram):
        nonlocal ident
        ident += 1
        src, dst = (OUTER_A, OUTER_B) if fwd else (OUTER_B, OUTER_A)
        macs = (MAC_B, MAC_A) if fwd else (MAC_A, MAC_B)
        if 20 + len(datagram) <= 200:
            recs.append((sec, usec, eth(macs[0], macs[1], 0x0800, ipv4(src, dst, 17, datagram, ident))))
            return
        for off in range(0, len(datagram), 128):
            piece = datagram[off:off + 128]
            more = off + 128 < len(datagram)
            h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(piece), ident,
                            (0x2000 if more else 0) | (off // 8), 64, 17, 0, src, dst)
            h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
            recs.append((sec, usec, eth(macs[0], macs[1], 0x0800, h + piece)))
            usec += 1

    n_pdu = 0
    last = (0, 0)
    for n, (sec, usec, inner, fwd) in enumerate(inner_frames()):
        last = (sec, usec)
        ip = ip_only(inner)
        if ip is None:
            send(sec, usec, fwd, udp(2152, 2152, gtp(1, 0x02, struct.pack("!HBB", n, 0, 0), b"")))
            send(sec, usec + 1, not fwd, udp(2152, 2152, gtp(2, 0x02, struct.pack("!HBB", n, 0, 0), b"")))
            continue
        form = n_pdu % 4
        n_pdu += 1
        if form == 0:
            flags, opt = 0x02, struct.pack("!HBB", n, 0, 0x85)
        elif form == 1:
            flags, opt = 0x01, struct.pack("!HBB", 0, 7, 0xC0)
        elif form == 2:
            flags = 0x04
            opt = struct.pack("!HBB", 0, 0, 0x85) + bytes([1, 0x00, 0x05, 0x40]) + bytes([1, 0x08, 0x68, 0x00])
        else:
            flags, opt = 0x00, b""
        send(sec, usec, fwd, udp(2152, 2152, gtp(255, flags, opt, ip)))
    send(last[0], last[1] + 10, True, udp(2152, 2152, gtp(254, 0, b"", b"")))
    write_pcap("gtp_u_variants.pcap", 1, recs)


gtp_u_variants()


# The two VXLAN tenants of vni_overlap.pcap (make_vni_overlap.sh: VNI 100 and 200, the same
# inner addresses and ports) carried instead in Geneve with the same VNIs, and in GRE with
# keys 100 and 200 carrying Ethernet (gretap): what `key_by_tunnel` keys on in those.
def overlap_rewrapped():
    geneve_recs, gre_recs = [], []
    for n, (sec, usec, frame) in enumerate(read_pcap("vni_overlap.pcap")):
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        vni = struct.unpack("!I", frame[14 + 20 + 8 + 4:14 + 20 + 8 + 8])[0] >> 8
        inner = frame[14 + 20 + 8 + 8:]
        fwd = frame[26:30] == OUTER_A
        hdr = struct.pack("!BBH", 0, 0, 0x6558) + struct.pack("!I", vni << 8)
        geneve_recs.append((sec, usec, outer(fwd, 17, udp(50000 + vni, 6081, hdr + inner), n + 1)))
        gre = struct.pack("!HHI", 0x2000, 0x6558, vni) + inner
        gre_recs.append((sec, usec, outer(fwd, 47, gre, n + 1)))
    write_pcap("geneve_overlap.pcap", 1, geneve_recs)
    write_pcap("gretap_overlap.pcap", 1, gre_recs)


overlap_rewrapped()
