#!/usr/bin/env python3
"""Makes h2_prior_knowledge.pcap (and h2_server_settings_first.pcap, where the server's
SETTINGS come before the client's preface): one cleartext HTTP/2 connection with prior knowledge (RFC 9113
section 3.3) on port 8080, written frame by frame as the RFC lays them out: the client's
preface, SETTINGS and a GET on stream 1 (HPACK static-table entries, RFC 7541 appendix A),
the server's SETTINGS, the SETTINGS acknowledgements, a 200 HEADERS and a DATA frame ending
the stream, then FIN both ways. Run from this folder: python3 make_prior_knowledge.py"""
import struct

CLIENT, SERVER = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20])
CPORT, SPORT = 41000, 8080


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, payload, ident):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    macs = bytes.fromhex("020000000002020000000001") if src == CLIENT else bytes.fromhex("020000000001020000000002")
    return macs + b"\x08\x00" + ip + tcp


def h2(ftype, flags, stream, payload):
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", ftype, flags, stream) + payload


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# :method GET, :scheme http, :path /, :authority example.com (literal, indexed name 1).
REQ = b"\x82\x86\x84\x41\x0bexample.com"
body = b"hello over h2\n"
client_msgs = [PREFACE + h2(4, 0, 0, b"") + h2(1, 0x05, 1, REQ), h2(4, 0x01, 0, b"")]
server_msgs = [h2(4, 0, 0, b"") + h2(4, 0x01, 0, b""), h2(1, 0x04, 1, b"\x88") + h2(0, 0x01, 1, body)]

def connection(server_first):
    """The exchange; with `server_first` the server sends its SETTINGS before the client's
    preface arrives (as nghttp2's server does), which RFC 9113 section 3.4 allows."""
    global recs, t, cseq, sseq
    recs, t = [], 0
    cseq, sseq = 1000, 5000
    add(True, SYN)
    add(False, SYN | ACK)
    add(True, ACK)
    if server_first:
        add(False, PSH | ACK, h2(4, 0, 0, b""))
        add(True, PSH | ACK, client_msgs[0] + h2(4, 0x01, 0, b""))
        add(False, PSH | ACK, h2(4, 0x01, 0, b""))
    else:
        add(True, PSH | ACK, client_msgs[0])
        add(False, PSH | ACK, server_msgs[0])
        add(True, PSH | ACK, client_msgs[1])
    add(False, PSH | ACK, server_msgs[1])
    add(True, FIN | ACK)
    add(False, FIN | ACK)
    add(True, ACK)
    return recs


def add(from_client, flags, payload=b""):
    global t, cseq, sseq
    if from_client:
        f = frame(CLIENT, SERVER, CPORT, SPORT, cseq, sseq if flags & ACK else 0, flags, payload, len(recs) + 1)
        cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
    else:
        f = frame(SERVER, CLIENT, SPORT, CPORT, sseq, cseq, flags, payload, len(recs) + 1)
        sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
    recs.append((1700000000, t, f))
    t += 1000

for name, server_first in [("h2_prior_knowledge.pcap", False), ("h2_server_settings_first.pcap", True)]:
    records = connection(server_first)
    with open(name, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for sec, usec, fr in records:
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
