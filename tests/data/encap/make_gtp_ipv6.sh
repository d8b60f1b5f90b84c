#!/usr/bin/env bash
# Makes gtp_u_ipv6.pcap and gtp_u_ipv6_outer6.pcap (run as root; needs iproute2, dumpcap, curl, python3): an IPv6 user's
# traffic in GTP-U, as on an S1-U/N3 link. The IPv6 exchange is real: namespaces gtp6-ue
# (2001:db8:a::10) and gtp6-srv (2001:db8:a::80) joined by a veth pair; curl GETs /hello.txt
# from python's http.server on port 8080, then two ICMPv6 echo requests (identifier 0x6464), captured
# on the veth (TCP and echo only). This kernel has no GTP device, so each captured IPv6 packet
# is wrapped as a G-PDU (3GPP TS 29.281) between the base station 192.0.2.1 and the gateway
# 192.0.2.2 on UDP 2152: uplink (from the UE) with TEID 0x1001, the gateway's, downlink with
# TEID 0x2002, the base station's; the uplink G-PDUs with the E flag and a PDU session
# container (type 0x85, one word) as a 5G N3 user plane sends them, the downlink without.
# gtp_u_ipv6_outer6.pcap carries the same G-PDUs between 2001:db8:ffff::1 and ::2 (IPv6
# underlay), the datagrams over 200 bytes in 128-byte fragments.
set -euo pipefail
cd "$(dirname "$0")"
RAW=$(mktemp --suffix .pcap)
cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  ip netns del gtp6-ue 2>/dev/null || true; ip netns del gtp6-srv 2>/dev/null || true
  rm -rf "${WWW:-/nonexistent}" "$RAW"
}
trap cleanup EXIT
cleanup
ip netns add gtp6-ue; ip netns add gtp6-srv
ip link add gtp6-a netns gtp6-ue type veth peer name gtp6-b netns gtp6-srv
ip -n gtp6-ue addr add 2001:db8:a::10/64 dev gtp6-a nodad
ip -n gtp6-srv addr add 2001:db8:a::80/64 dev gtp6-b nodad
for ns in gtp6-ue gtp6-srv; do ip -n $ns link set lo up; done
ip -n gtp6-ue link set gtp6-a up; ip -n gtp6-srv link set gtp6-b up
WWW=$(mktemp -d); echo "hello over IPv6 in GTP-U" > "$WWW/hello.txt"
ip netns exec gtp6-srv python3 -m http.server 8080 --bind 2001:db8:a::80 --directory "$WWW" >/dev/null 2>&1 & SRV=$!
sleep 1
ip netns exec gtp6-ue dumpcap -q -i gtp6-a -f "tcp or icmp6[0] == 128 or icmp6[0] == 129" -P -w "$RAW" 2>/dev/null & cap=$!
for _ in $(seq 50); do [ -s "$RAW" ] && break; sleep 0.1; done
sleep 0.3
ip netns exec gtp6-ue curl -s -o /dev/null --max-time 5 "http://[2001:db8:a::80]:8080/hello.txt"
ip netns exec gtp6-ue python3 - <<'PY'
import socket, struct, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); s.settimeout(3)
for seq in (1, 2):  # the kernel fills in the ICMPv6 checksum
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x6464, seq) + b"trawl-gtp6-ping!", ("2001:db8:a::80", 0))
    while True:
        t, _, _, i, q = struct.unpack("!BBHHH", s.recv(2048)[:8])
        if t == 129 and i == 0x6464 and q == seq: break
    time.sleep(0.2)
PY
sleep 0.5; kill -INT $cap; wait $cap || true

python3 - "$RAW" <<'PY'
import struct, sys
UE, ENB, SGW = bytes.fromhex("20010db8000a00000000000000000010"), bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
ENB6, SGW6 = bytes.fromhex("20010db8ffff00000000000000000001"), bytes.fromhex("20010db8ffff00000000000000000002")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
data = open(sys.argv[1], "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "little-endian microsecond pcap"

def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def write(name, recs):
    with open(name, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for sec, usec, fr in recs:
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
    print(f"{name}: {len(recs)} frames")

recs4, recs6, at, ident = [], [], 24, 0
while at < len(data):
    sec, usec, incl, _ = struct.unpack("<IIII", data[at:at + 16])
    frame = data[at + 16:at + 16 + incl]
    at += 16 + incl
    if frame[12:14] != b"\x86\xdd":
        continue
    ip6 = frame[14:]
    uplink = ip6[8:24] == UE
    if uplink:  # E flag, PDU session container (UL PDU session information, QFI 9)
        opt = struct.pack("!HBB", 0, 0, 0x85) + bytes([1, 0x10, 0x09, 0x00])
        gtp = struct.pack("!BBHI", 0x34, 255, len(opt) + len(ip6), 0x1001) + opt + ip6
    else:
        gtp = struct.pack("!BBHI", 0x30, 255, len(ip6), 0x2002) + ip6
    u = struct.pack("!HHHH", 2152, 2152, 8 + len(gtp), 0) + gtp
    macs = MAC_B + MAC_A if uplink else MAC_A + MAC_B
    ident += 1
    # Outer IPv4 (UDP checksum 0, as IPv4 allows).
    src, dst = (ENB, SGW) if uplink else (SGW, ENB)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), ident, 0x4000, 64, 17, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    recs4.append((sec, usec, macs + b"\x08\x00" + h + u))
    # Outer IPv6 (N3 over IPv6): the UDP checksum is mandatory; a datagram over 200 bytes is
    # sent in fragments of 128 bytes (Fragment header, RFC 8200 4.5), each a frame.
    src, dst = (ENB6, SGW6) if uplink else (SGW6, ENB6)
    pseudo = src + dst + struct.pack("!IxxxB", len(u), 17)
    u = u[:6] + struct.pack("!H", csum(pseudo + u) or 0xFFFF) + u[8:]
    if len(u) <= 200:
        h = struct.pack("!IHBB16s16s", 6 << 28, len(u), 17, 64, src, dst)
        recs6.append((sec, usec, macs + b"\x86\xdd" + h + u))
        continue
    for off in range(0, len(u), 128):
        piece = u[off:off + 128]
        more = off + 128 < len(u)
        frag = struct.pack("!BBHI", 17, 0, off | int(more), 0x6000 + ident)
        h = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(piece), 44, 64, src, dst)
        recs6.append((sec, usec, macs + b"\x86\xdd" + h + frag + piece))
        usec += 1
write("gtp_u_ipv6.pcap", recs4)
write("gtp_u_ipv6_outer6.pcap", recs6)
PY
