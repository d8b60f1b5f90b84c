#!/usr/bin/env python3
"""Writes tests/data/tls_resumed.pcap: two TLS 1.2 handshakes on port 443, built record by
record from RFC 5246 (7.3 and 7.4), with the TCP handshake around them.

1. A full handshake whose client goes quiet: ClientHello with no session id, a ServerHello
   giving a new one, Certificate and ServerHelloDone, the client's ClientKeyExchange, then the
   server's ChangeCipherSpec and Finished with no ChangeCipherSpec from the client before it.
   The server changes cipher first, yet this is no resumption (figure 1, not figure 2).
2. An abbreviated handshake (figure 2): the ServerHello echoes the client's session id and
   the server's ChangeCipherSpec and Finished come first, then the client's.

The certificate is a fresh self-signed one (openssl), so the bytes differ on each run.
Usage: python3 tests/data/tls_resumed.py [OUT]
"""
import os
import struct
import subprocess
import sys
import tempfile

CLIENT, SERVER = "10.1.0.1", "10.1.0.2"


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, ip4(src), ip4(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + tcp


def record(ctype, body):
    return struct.pack("!BHH", ctype, 0x0303, len(body)) + body


def handshake(htype, body):
    return struct.pack("!B", htype) + len(body).to_bytes(3, "big") + body


def client_hello(session_id):
    body = struct.pack("!H", 0x0303) + bytes(range(32)) + bytes([len(session_id)]) + session_id
    body += struct.pack("!HHH", 4, 0x002F, 0x0004) + b"\x01\x00"  # two suites, null compression
    return handshake(1, body)


def server_hello(session_id, suite):
    body = struct.pack("!H", 0x0303) + bytes(range(32, 64)) + bytes([len(session_id)]) + session_id
    return handshake(2, body + struct.pack("!HB", suite, 0))


def certificate(der):
    one = len(der).to_bytes(3, "big") + der
    return handshake(11, len(one).to_bytes(3, "big") + one)


def self_signed():
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "c.der")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=late.example",
                        "-days", "365", "-outform", "DER", "-keyout", os.path.join(d, "k.pem"),
                        "-out", out], check=True, capture_output=True)
        with open(out, "rb") as f:
            return f.read()


def connection(sport, flights, t0):
    """Packets of one connection: the TCP handshake, each flight (from_server, bytes) in its
    own segment, then FINs."""
    seq = {False: 1000, True: 5000}
    pkts = []
    t = t0

    def add(from_server, flags, payload=b""):
        nonlocal t
        t += 0.001
        src, dst = (SERVER, CLIENT) if from_server else (CLIENT, SERVER)
        sp, dp = (443, sport) if from_server else (sport, 443)
        ack = seq[not from_server] if flags != 0x02 else 0
        pkts.append((t, frame(src, dst, sp, dp, seq[from_server], ack, flags, payload)))
        seq[from_server] += len(payload) + (1 if flags & 0x03 else 0)

    add(False, 0x02)
    add(True, 0x12)
    add(False, 0x10)
    for from_server, data in flights:
        add(from_server, 0x18, data)
    add(False, 0x11)
    add(True, 0x11)
    add(False, 0x10)
    return pkts, t


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "tls_resumed.pcap")
    der = self_signed()
    sid = bytes(range(100, 132))
    finished = record(22, bytes(range(200, 240)))  # encrypted: opaque to a passive reader
    full = [
        (False, record(22, client_hello(b""))),
        (True, record(22, server_hello(sid, 0x0004) + certificate(der) + handshake(14, b""))),
        (False, record(22, handshake(16, struct.pack("!H", 64) + bytes(64)))),
        (True, record(20, b"\x01") + finished),
        (True, record(23, bytes(48))),
    ]
    abbreviated = [
        (False, record(22, client_hello(sid))),
        (True, record(22, server_hello(sid, 0x002F)) + record(20, b"\x01") + finished),
        (False, record(20, b"\x01") + finished),
        (False, record(23, bytes(48))),
    ]
    a, t = connection(40001, full, 1_700_000_000.0)
    b, _ = connection(40002, abbreviated, t + 1)
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, data in a + b:
            f.write(struct.pack("<IIII", int(ts), int(round(ts % 1 * 1e6)), len(data), len(data)) + data)


if __name__ == "__main__":
    main()
