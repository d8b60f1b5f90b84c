#!/usr/bin/env python3
"""Writes dns_malformed.pcap: DNS messages that break RFC 1035's rules for names (4.1.4
compression pointers, 2.3.4 label and name lengths), a truncated (TC) answer over UDP, and
DNS over TCP whose 2-byte length prefix is split from its message and whose messages share
a segment (RFC 7766 8). One UDP flow per case, told apart by the client's port (50001...).
Needs scapy (`pip install scapy`)."""
import struct
from scapy.all import Ether, IP, UDP, Raw, wrpcap
from tcpgen import Conv

C, S = "10.0.0.1", "10.0.0.53"
T0 = 1700000000.0
pkts = []


def hdr(id, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id, flags, qd, an, ns, ar)


def name(s):
    return b"".join(bytes([len(l)]) + l.encode() for l in s.split(".")) + b"\x00"


Q = lambda n: name(n) + b"\x00\x01\x00\x01"  # type A, class IN


def udp(port, msg, response, t):
    src, dst, sp, dp = (S, C, 53, port) if response else (C, S, port, 53)
    p = Ether() / IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / Raw(msg)
    p.time = T0 + t
    pkts.append(p)


A = lambda addr: b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes(addr)
t = 0.0
# 50001: the response's question name is a pointer to itself (offset 12): a loop.
udp(50001, hdr(1, 0x0100) + Q("a.example"), False, t)
udp(50001, hdr(1, 0x8180, an=0) + b"\xc0\x0c\x00\x01\x00\x01", True, t + 0.01)
# 50002: a query whose name is two pointers at each other (14 -> 12 -> 14); never answered.
udp(50002, hdr(2, 0x0100) + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01", False, t + 0.1)
# 50003: an answer whose owner name points past the end of the message.
udp(50003, hdr(3, 0x0100) + Q("c.example"), False, t + 0.2)
udp(50003, hdr(3, 0x8180, an=2) + Q("c.example") + b"\xc0\x0c" + A([192, 0, 2, 3])
    + b"\xc0\xff" + A([192, 0, 2, 4]), True, t + 0.21)
# 50004: an answer whose owner name points forward, to the name in the second answer's data.
q = Q("d.example")
first = 12 + len(q)
# answer 1: pointer (2) + fixed (10) + rdata 4 = 16 bytes; answer 2: owner c00c, CNAME data
second_data = first + 16 + 2 + 10
udp(50004, hdr(4, 0x0100) + q, False, t + 0.3)
udp(50004, hdr(4, 0x8180, an=2) + q + struct.pack(">H", 0xc000 | second_data) + A([192, 0, 2, 5])
    + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c" + struct.pack(">H", len(name("w.d.example")))
    + name("w.d.example"), True, t + 0.31)
# 50005: a query with a label length of 64 (0x40: over 63, an extended label type).
udp(50005, hdr(5, 0x0100) + b"\x40" + b"x" * 64 + b"\x00\x00\x01\x00\x01", False, t + 0.4)
# 50006: a query whose name is 5 labels of 63 octets: 320 octets, past 255.
udp(50006, hdr(6, 0x0100) + Q(".".join(["y" * 63] * 5)), False, t + 0.5)
# 50007: a truncated answer over UDP: TC set, 3 answers announced, 1 sent whole and one cut.
q = Q("g.example")
udp(50007, hdr(7, 0x0100) + q, False, t + 0.6)
udp(50007, hdr(7, 0x8380, an=3) + q + b"\xc0\x0c" + A([192, 0, 2, 7]) + b"\xc0\x0c\x00\x01",
    True, t + 0.61)
# 50008: the same cut without TC: the message ends inside a record.
q = Q("h.example")
udp(50008, hdr(8, 0x0100) + q, False, t + 0.7)
udp(50008, hdr(8, 0x8180, an=3) + q + b"\xc0\x0c" + A([192, 0, 2, 8]) + b"\xc0\x0c\x00\x01",
    True, t + 0.71)

# DNS over TCP (port 53, client 50009): the first query's length prefix alone in a segment,
# then two queries in one segment; the server's first length split after one byte, then two
# responses in one segment.
c = Conv(cip=C, sip=S, cport=50009, sport=53, t0=T0 + 1)
c.handshake()
msgs = {}
for i, n in ((11, "t1.example"), (12, "t2.example"), (13, "t3.example")):
    q = hdr(i, 0x0100) + Q(n)
    r = hdr(i, 0x8180, an=1) + Q(n) + b"\xc0\x0c" + A([192, 0, 2, i])
    msgs[i] = (struct.pack(">H", len(q)) + q, struct.pack(">H", len(r)) + r)
c.send(True, msgs[11][0][:2])
c.send(True, msgs[11][0][2:])
c.send(False, msgs[11][1][:1])
c.send(False, msgs[11][1][1:])
c.send(True, msgs[12][0] + msgs[13][0])
c.send(False, msgs[12][1] + msgs[13][1])
c.close()
pkts += c.pkts
pkts.sort(key=lambda p: p.time)
wrpcap("dns_malformed.pcap", pkts)
