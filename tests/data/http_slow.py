#!/usr/bin/env python3
"""Makes tests/data/http_slow.pcap: slow HTTP/1.1 servers, captured with dumpcap on the loopback
of a network namespace of its own (`http-slow`). What a node sees every day: a blocking query
(Consul, etcd v2 and long-polling APIs answer only when something changes or their wait ends)
answered after 25 s of silence on a keep-alive connection, then a quick request on the same
connection; and a response whose head comes at once and whose chunked body trickles for 24 s.
tests/wire/http_fidelity.rs holds the transactions expected. Run as root: `python3 tests/data/http_slow.py`."""

import os
import socket
import threading
import time

from http_edge_cases import capture_in_netns

NS = "http-slow"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "http_slow.pcap")
WAIT = 25  # seconds the blocking query holds its answer
TRICKLE = 6  # chunks of the trickled body, one every 4 s


def read_head(conn, buf):
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def handle(conn):
    buf = b""
    while True:
        head, buf = read_head(conn, buf)
        if head is None:
            conn.close()
            return
        target = head.split(b" ")[1]
        if target.startswith(b"/v1/kv/config"):
            time.sleep(WAIT)
            body = b'{"index": 43, "value": "changed"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif target == b"/report":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(TRICKLE):
                time.sleep(4)
                row = b"row-%d,%s\n" % (i, b"x" * 100)
                conn.sendall(b"%x\r\n%s\r\n" % (len(row), row))
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def serve():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 8080))
    s.listen(8)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def exchange(requests):
    """Sends each request on one connection and reads its whole answer before the next."""
    s = socket.create_connection(("127.0.0.1", 8080))
    for req, end in requests:
        s.sendall(req)
        got = b""
        while not got.endswith(end):
            d = s.recv(65536)
            if not d:
                break
            got += d
    s.close()


def client():
    blocking = threading.Thread(target=exchange, args=([
        (b"GET /v1/kv/config?index=42&wait=30s HTTP/1.1\r\nHost: consul:8080\r\n\r\n", b"}"),
        (b"GET /v1/status/leader HTTP/1.1\r\nHost: consul:8080\r\n\r\n", b"\r\n\r\n"),
    ],))
    report = threading.Thread(target=exchange, args=([
        (b"GET /report HTTP/1.1\r\nHost: reports:8080\r\n\r\n", b"0\r\n\r\n"),
    ],))
    blocking.start()
    time.sleep(0.2)
    report.start()
    blocking.join()
    report.join()


def inside():
    serve()
    time.sleep(0.3)
    client()
    time.sleep(0.5)


if __name__ == "__main__":
    capture_in_netns(NS, OUT, __file__, inside)
