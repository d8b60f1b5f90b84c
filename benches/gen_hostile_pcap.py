#!/usr/bin/env python3
"""Hostile TCP streams for benches/hostile.sh, one classic pcap per case in DIR: a handshake,
the client's bytes, the server's bytes, a FIN each way (Ethernet/IPv4, no checksums). Each case
is what a decoder's worst case looks like for one protocol: thousands of tiny headers, chunks,
pipelined requests, frames or records, nesting, a byte per segment, segments in reverse order,
and a DNS message of names pointing into one run of labels. Usage: gen_hostile_pcap.py DIR"""
import struct, sys, os
ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01
C, S = bytes([10,0,0,1]), bytes([10,0,0,2])
def frame(src, sport, dst, dport, seq, ack, flags, payload=b""):
    total = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    return ETH + ip + tcp + payload
def write(path, port, client, server, seg=1448, order="normal"):
    pk = []
    cs, ss = 1000, 5000
    pk.append(frame(C, 40000, S, port, cs, 0, SYN)); cs += 1
    pk.append(frame(S, port, C, 40000, ss, cs, SYN|ACK)); ss += 1
    pk.append(frame(C, 40000, S, port, cs, ss, ACK))
    segs = []
    for i in range(0, len(client), seg):
        segs.append(frame(C, 40000, S, port, cs + i, ss, ACK|PSH, client[i:i+seg]))
    if order == "reverse":
        segs.reverse()
    elif order == "holes":
        segs = segs[0::2][:1] + segs[2::2] + segs[1::2]
    pk += segs
    cs += len(client)
    for i in range(0, len(server), seg):
        pk.append(frame(S, port, C, 40000, ss + i, cs, ACK|PSH, server[i:i+seg]))
    ss += len(server)
    pk.append(frame(C, 40000, S, port, cs, ss, FIN|ACK))
    pk.append(frame(S, port, C, 40000, ss, cs+1, FIN|ACK))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000
        for n, p in enumerate(pk):
            f.write(struct.pack("<IIII", t + n // 100000, n % 100000 * 10, len(p), len(p)) + p)
MB = 2_000_000
def h2frame(t, flags, sid, payload):
    return struct.pack("!I", len(payload))[1:] + bytes([t, flags]) + struct.pack("!I", sid) + payload
cases = {
 "http_headers": (80, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * (MB // 6) + b"\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
 "http_pipelined": (80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * (MB // 27), b""),
 "http_pipelined_answered": (80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * (MB // 27), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * (MB // 27)),
 "http_chunks": (80, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * (MB // 6) + b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
 "http_longuri": (80, b"GET /" + b"a" * MB + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
 "http_longheader": (80, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * MB + b"\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
 "http_nolf": (80, b"a" * MB, b""),
 "http_bytewise": (80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4000, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 4000, 1),
 "http_reverse": (80, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MB + b"a" * MB, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100, "reverse"),
 "http_holes": (80, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MB + b"a" * MB, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100, "holes"),
 "http_100continue": (80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n" * (MB // 25)),
 "redis_nested": (6379, b"*1\r\n" * (MB // 4) + b":1\r\n", b"+OK\r\n"),
 "redis_wide": (6379, b"*%d\r\n" % (MB // 4) + b":1\r\n" * (MB // 4), b"+OK\r\n"),
 "redis_many": (6379, b"*1\r\n$4\r\nPING\r\n" * (MB // 14), b"+PONG\r\n" * (MB // 14)),
 "redis_nested_reply": (6379, b"*1\r\n$4\r\nPING\r\n", b"*1\r\n" * (MB // 4) + b":1\r\n"),
 "h2_continuation": (80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0, b"") + h2frame(1, 0, 1, b"\x82") + b"".join(h2frame(9, 0, 1, b"\x82") for _ in range(MB // 10)) + h2frame(9, 4, 1, b"\x84"), b""),
 "h2_streams": (80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0, b"") + b"".join(h2frame(1, 5, 2*i+1, b"\x82\x84\x86\x41\x01x") for i in range(MB // 16)), b""),
 "h2_settings": (80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"".join(h2frame(4, 0, 0, b"\x00\x01\x00\x00\x10\x00" * 10) for _ in range(MB // 70)), b""),
 "h2_table": (80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0, b"") + b"".join(h2frame(1, 5, 2*i+1, b"\x82\x84\x86" + b"\x40\x01a\x01b" * 40) for i in range(MB // 220)), b""),
 "tls_frag": (443, b"".join(b"\x16\x03\x01\x00\x01" + bytes([1 if i == 0 else 0]) for i in range(MB // 6)), b""),
 "tls_records": (443, b"\x17\x03\x03\x00\x01a" * (MB // 6), b"\x17\x03\x03\x00\x01a" * (MB // 6)),
 "pgsql_many": (5432, struct.pack("!II", 8, 80877103) + b"".join(b"Q" + struct.pack("!I", 5) + b"\x00" for _ in range(MB // 6)), b"N" + b"".join(b"Z" + struct.pack("!I", 5) + b"I" for _ in range(MB // 6))),
 "mysql_many": (3306, b"".join(struct.pack("<I", 1)[:3] + bytes([i & 0xff]) + b"\x0e" for i in range(MB // 5)), b""),
 "dns_pointer_run": (53, (lambda m: struct.pack("!H", len(m)) + m)(b"\x00\x01\x81\x80" + struct.pack("!H", 7800) + b"\x00" * 6 + b"\x01\xfb" * 8000 + b"\x00\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01" * 7799), b""),
 "dns_tcp_many": (53, b"".join(struct.pack("!H", 29) + b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01" for _ in range(MB // 31)), b""),
}
os.makedirs(sys.argv[1], exist_ok=True)
for name, spec in cases.items():
    port, client, server = spec[:3]
    seg = spec[3] if len(spec) > 3 else 1448
    order = spec[4] if len(spec) > 4 else "normal"
    write(os.path.join(sys.argv[1], name + ".pcap"), port, client, server, seg, order)
    print(name, len(client) + len(server))
