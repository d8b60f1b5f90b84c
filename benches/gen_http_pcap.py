#!/usr/bin/env python3
"""Synthesizes a capture of HTTP/1.1 traffic for benchmarks: keep-alive connections between
many clients and a few servers, each with a handshake, request/response exchanges (some
responses chunked, some errors, varied paths) and a FIN close. Ethernet/IPv4/TCP, no
checksums (analyzers ignore them). Usage: gen_http_pcap.py OUT.pcap [MIN_PACKETS] [PROFILE]
PROFILE `small` (default): one-segment requests and responses, the most transactions per
packet (worst case for an HTTP analyzer). `mixed`: response bodies from 200 B to 24 KB cut in
1448-byte segments with a client ACK every two, and some POST bodies, like web traffic.
`churn`: one request per connection (10 packets), about 10,000 connections per second of
capture time: the flow table's worst case, every flow closing soon after it opened. `open`:
the same without the closing FINs (6 packets a connection): every flow is still open, held in
the table, when the capture ends.
Prints the number of packets and transactions written."""
import random
import struct
import sys

out = sys.argv[1]
min_packets = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
profile = sys.argv[3] if len(sys.argv) > 3 else "small"
MSS = 1448
rnd = random.Random(42)

ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01


def ip4(a):
    return bytes(a)


def frame(src, sport, dst, dport, seq, ack, flags, payload=b""):
    total = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, rnd.getrandbits(16), 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    return ETH + ip + tcp + payload


def main():
    packets = 0
    txs = 0
    t = 1_700_000_000.0
    servers = [ip4([10, 96, 0, i]) for i in range(1, 5)]
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        buf = []

        def emit(data):
            nonlocal packets, t
            t += 0.00001
            sec = int(t)
            usec = int((t - sec) * 1_000_000)
            buf.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
            packets += 1
            if len(buf) >= 4096:
                f.write(b"".join(buf))
                buf.clear()

        conn = 0
        while packets < min_packets:
            conn += 1
            cli = ip4([10, 244, (conn >> 8) & 0xFF, conn & 0xFF])
            srv = servers[conn % len(servers)]
            sport, dport = 30000 + conn % 30000, 8080
            cseq, sseq = rnd.getrandbits(32), rnd.getrandbits(32)
            emit(frame(cli, sport, srv, dport, cseq, 0, SYN))
            emit(frame(srv, dport, cli, sport, sseq, cseq + 1, SYN | ACK))
            cseq += 1
            sseq += 1
            emit(frame(cli, sport, srv, dport, cseq, sseq, ACK))
            for _ in range(1 if profile in ("churn", "open") else rnd.randint(5, 15)):
                uid = rnd.randint(1, 100000)
                path = rnd.choice([f"/api/users/{uid}", f"/api/orders/{uid}/items", "/healthz", f"/static/app.{uid % 7}.js"])
                req = (f"GET {path}?v={uid % 10} HTTP/1.1\r\nHost: svc-{conn % 4}.default.svc\r\n"
                       f"User-Agent: bench/1.0\r\nAccept: */*\r\n\r\n").encode()
                emit(frame(cli, sport, srv, dport, cseq, sseq, ACK | PSH, req))
                cseq += len(req)
                status = rnd.choice([200] * 16 + [404, 500, 304, 201])
                body = b"x" * rnd.randint(20, 600)
                if rnd.random() < 0.2:
                    resp = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                            f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
                elif status == 304:
                    resp = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
                else:
                    resp = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
                if profile == "mixed":
                    if rnd.random() < 0.3:
                        extra = b"y" * rnd.randint(100, 4000)
                        resp = resp.replace(b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + len(extra))) + extra if b"Content-Length" in resp else resp
                    if rnd.random() < 0.25:
                        big = b"z" * rnd.randint(4000, 24000)
                        resp = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(big)}\r\n\r\n").encode() + big
                segs = [resp[i:i + MSS] for i in range(0, len(resp), MSS)] if profile == "mixed" else [resp]
                for i, seg in enumerate(segs):
                    emit(frame(srv, dport, cli, sport, sseq, cseq, ACK | (PSH if i == len(segs) - 1 else 0), seg))
                    sseq += len(seg)
                    if i % 2 == 1 and i != len(segs) - 1:
                        emit(frame(cli, sport, srv, dport, cseq, sseq, ACK))
                emit(frame(cli, sport, srv, dport, cseq, sseq, ACK))
                txs += 1
            if profile == "open":
                continue
            emit(frame(cli, sport, srv, dport, cseq, sseq, FIN | ACK))
            emit(frame(srv, dport, cli, sport, sseq, cseq + 1, FIN | ACK))
            emit(frame(cli, sport, srv, dport, cseq + 1, sseq + 1, ACK))
        f.write(b"".join(buf))
    print(f"{packets} {txs}")


main()
