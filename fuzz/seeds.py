#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, made from real captures and logs, so that mutation starts
from traffic and lines as they are rather than from nothing.

Usage: fuzz/seeds.py OUT DIR [DIR...]
  writes OUT/engine (each capture's first frames as raw frames of its link type, and its three
  busiest TCP or UDP conversations on a port `engine` knows, in its connection form),
  OUT/pcapfile (the first 32 KiB of each capture file, some gzipped) and OUT/logs (the first
  lines of each `*.log`, as they are, as CRI lines and as Docker JSON lines).
The port and link-type tables must stay those of fuzz_targets/engine.rs.
"""
import glob
import gzip
import hashlib
import json
import os
import struct
import sys

PORTS = [80, 443, 53, 5432, 3306, 6379, 8080, 50051, 8443, 853, 1234, 9200, 4789, 6081, 3128, 5353]
LINKS = [1, 101, 113, 276, 0, 9, 104, 228, 229, 12, 108, 14, 50, 51]
MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG = b"\x0a\x0d\x0d\x0a"


def write(folder, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def frames(b):
    """(link type, frames) of a pcap or pcapng file's bytes; (None, []) for anything else."""
    if b[:2] == b"\x1f\x8b":
        try:
            b = gzip.decompress(b)
        except Exception:
            return None, []
    if b[:4] == PCAPNG:
        return pcapng(b)
    if len(b) < 24 or b[:4] not in MAGICS:
        return None, []
    e = "<" if b[:4] in (MAGICS[0], MAGICS[2]) else ">"
    link = struct.unpack(e + "I", b[20:24])[0] & 0xFFFF
    at, out = 24, []
    while at + 16 <= len(b):
        n = struct.unpack(e + "I", b[at + 8:at + 12])[0]
        out.append(b[at + 16:at + 16 + n])
        at += 16 + n
    return link, out


def pcapng(b):
    at, link, out, e = 0, None, [], "<"
    while at + 12 <= len(b):
        if b[at:at + 4] == PCAPNG:
            e = "<" if b[at + 8:at + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        kind, n = struct.unpack(e + "II", b[at:at + 8])
        if n < 12:
            break
        if kind == 1 and link is None:
            link = struct.unpack(e + "H", b[at + 8:at + 10])[0]
        if kind == 6:
            cap = struct.unpack(e + "I", b[at + 20:at + 24])[0]
            out.append(b[at + 28:at + 28 + cap])
        at += n
    return link, out


def ip_of(f):
    """(protocol, source, destination, layer 4 bytes) of an Ethernet frame, VLAN tags skipped."""
    if len(f) < 14:
        return None
    kind, o = struct.unpack(">H", f[12:14])[0], 14
    while kind == 0x8100 and len(f) >= o + 4:
        kind, o = struct.unpack(">H", f[o + 2:o + 4])[0], o + 4
    if kind == 0x0800 and len(f) >= o + 20:
        ihl, total = (f[o] & 15) * 4, struct.unpack(">H", f[o + 2:o + 4])[0]
        return f[o + 9], f[o + 12:o + 16], f[o + 16:o + 20], f[o + ihl:o + total]
    if kind == 0x86DD and len(f) >= o + 40:
        n = struct.unpack(">H", f[o + 4:o + 6])[0]
        return f[o + 6], f[o + 8:o + 24], f[o + 24:o + 40], f[o + 40:o + 40 + n]
    return None


def engine_seeds(out, link, fr):
    if link in LINKS:
        data = bytes([2, LINKS.index(link)])
        for f in fr[:60]:
            if len(data) + len(f) > 60000:
                break
            data += bytes([1]) + struct.pack("<H", len(f)) + f
        write(out, data)
    if link != 1:
        return
    talks = {}
    for f in fr:
        r = ip_of(f)
        if not r:
            continue
        proto, src, dst, l4 = r
        if proto == 6 and len(l4) >= 20:
            payload = l4[(l4[12] >> 4) * 4:]
        elif proto == 17 and len(l4) >= 8:
            payload = l4[8:]
        else:
            continue
        sp, dp = struct.unpack(">HH", l4[:4])
        server = dp if dp in PORTS else (sp if sp in PORTS else None)
        if server is None or not payload:
            continue
        key = (proto, server, frozenset([(src, sp), (dst, dp)]))
        talks.setdefault(key, []).append((sp == server, payload))
    for (proto, server, _), segs in sorted(talks.items(), key=lambda kv: -len(kv[1]))[:3]:
        data = bytes([0 if proto == 6 else 1, PORTS.index(server)])
        for from_server, payload in segs:
            if len(data) + len(payload) > 60000:
                break
            data += bytes([0x80 if from_server else 0]) + struct.pack("<H", len(payload)) + payload
        write(out, data)


def log_seeds(out, path, k):
    with open(path, "rb") as f:
        lines = f.read(200000).split(b"\n")[:40]
    write(out, bytes([k % 17]) + b"\n".join(lines))
    cri = [b"2026-11-30T13:00:0%d.123456789Z stdout %s %s" % (j % 10, b"P" if j % 3 == 0 else b"F", l)
           for j, l in enumerate(lines[:20])]
    write(out, bytes([k % 17 | 0x30]) + b"\n".join(cri))
    docker = [json.dumps({"log": l.decode("latin-1") + "\n", "stream": "stderr",
                          "time": "2026-11-30T13:00:00.1Z"}).encode() for l in lines[:20]]
    write(out, bytes([16]) + b"\n".join(docker))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, roots = sys.argv[1], sys.argv[2:]
    n = {"engine": 0, "pcapfile": 0, "logs": 0}
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
            if not os.path.isfile(path) or os.path.getsize(path) < 24:
                continue
            if path.endswith(".log"):
                log_seeds(os.path.join(out, "logs"), path, n["logs"])
                n["logs"] += 1
                continue
            with open(path, "rb") as f:
                head = f.read(4)
            if head not in MAGICS and head != PCAPNG and head[:2] != b"\x1f\x8b":
                continue
            with open(path, "rb") as f:
                b = f.read()
            link, fr = frames(b)
            if not fr:
                continue
            engine_seeds(os.path.join(out, "engine"), link, fr)
            write(os.path.join(out, "pcapfile"), b[:32768])
            if n["pcapfile"] % 10 == 0:
                write(os.path.join(out, "pcapfile"), gzip.compress(b[:8192]))
            n["engine"] += 1
            n["pcapfile"] += 1
    print(f"seeds from {n['engine']} captures and {n['logs']} logs in {out}")


if __name__ == "__main__":
    main()
