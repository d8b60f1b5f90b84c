#!/usr/bin/env python3
"""Makes tests/data/http_edge_cases.pcap: real HTTP exchanges on the loopback of a network
namespace of its own (`http-cap`), captured with dumpcap. A raw-socket client sends what
RFC 9112 allows and what it does not (HTTP/0.9, bare LF, unknown methods, spaces in the
target, a missing version, 100-continue, CONNECT tunnels carrying HTTP and TLS) to a small
server that answers per the RFC. tests/wire/http_fidelity.rs holds the transactions expected from
what is sent here. Run as root: `python3 tests/data/http_edge_cases.py`."""

import os
import socket
import ssl
import subprocess
import sys
import threading
import time

NS = "http-cap"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "http_edge_cases.pcap")
KNOWN = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT"}


def read_line(sock, buf):
    while b"\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\n")
    return buf[: i + 1], buf[i + 1 :]


def read_exact(sock, buf, n):
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf[:n], buf[n:]


def relay(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def handle(conn):
    """One connection: requests answered per RFC 9110/9112 until either side closes."""
    buf = b""
    try:
        while True:
            line, buf = read_line(conn, buf)
            if line is None:
                return
            lf = not line.endswith(b"\r\n")
            eol = b"\n" if lf else b"\r\n"
            parts = line.strip(b"\r\n").split(b" ")
            if len(parts) == 2:
                # HTTP/0.9 has GET only, and its answer is the body alone.
                if parts[0] == b"GET":
                    conn.sendall(b"<html>simple</html>\n")
                else:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            headers = {}
            while True:
                h, buf = read_line(conn, buf)
                if h is None:
                    return
                if h in (b"\r\n", b"\n"):
                    break
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if len(parts) != 3:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            method, target, _version = parts
            if method not in KNOWN:
                conn.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                continue
            if method == b"CONNECT":
                host, _, port = target.rpartition(b":")
                up = socket.create_connection((host.decode(), int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                if buf:
                    up.sendall(buf)
                t = threading.Thread(target=relay, args=(up, conn))
                t.start()
                relay(conn, up)
                t.join()
                return
            if headers.get(b"expect", b"").lower() == b"100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            n = int(headers.get(b"content-length", b"0"))
            _body, buf = read_exact(conn, buf, n)
            path = target.decode()
            if path == "/chunked":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
            elif path == "/head":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
            elif path == "/nocontent":
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif path == "/notmodified":
                conn.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
            elif path == "/close":
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"c" * 100)
                return
            elif path == "/upload":
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            else:
                conn.sendall(eol.join([b"HTTP/1.1 200 OK", b"Content-Length: 2", b"", b"ok"]))
    finally:
        conn.close()


def serve(family, addr, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def tls_sink(port):
    """A port that reads a TLS ClientHello and hangs up (the tunnel's far end)."""
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(4)

    def loop():
        while True:
            c, _ = s.accept()
            c.recv(65536)
            c.close()

    threading.Thread(target=loop, daemon=True).start()


def until_close(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def recv_until(s, marker):
    out = b""
    while marker not in out:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out


def client():
    a = ("127.0.0.1", 8080)
    # 1. Keep-alive: chunked, HEAD, 204, 304, then a POST with Expect: 100-continue whose
    # body is sent only after the interim answer.
    s = socket.create_connection(a)
    s.sendall(b"GET /chunked HTTP/1.1\r\nHost: edge.example\r\nUser-Agent: edge/1\r\n\r\n")
    recv_until(s, b"X-Trailer: 1\r\n\r\n")
    s.sendall(b"HEAD /head HTTP/1.1\r\nHost: edge.example\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.sendall(b"GET /nocontent HTTP/1.1\r\nHost: edge.example\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.sendall(b"GET /notmodified HTTP/1.1\r\nHost: edge.example\r\nIf-None-Match: \"x\"\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: edge.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    recv_until(s, b"100 Continue\r\n\r\n")
    s.sendall(b"hello")
    recv_until(s, b"Content-Length: 0\r\n\r\n")
    s.close()
    # 2. HTTP/1.0 response delimited by the close.
    s = socket.create_connection(a)
    s.sendall(b"GET /close HTTP/1.0\r\nHost: edge.example\r\n\r\n")
    until_close(s)
    s.close()
    # 3. HTTP/0.9 simple request; the answer is the body until close.
    s = socket.create_connection(a)
    s.sendall(b"GET /simple\r\n")
    until_close(s)
    s.close()
    # 4. A method outside the registry.
    s = socket.create_connection(a)
    s.sendall(b"BREW /pot HTTP/1.1\r\nHost: edge.example\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.close()
    # 5. Spaces in the target.
    s = socket.create_connection(a)
    s.sendall(b"GET /a b HTTP/1.1\r\nHost: edge.example\r\n\r\n")
    until_close(s)
    s.close()
    # 6. No version on a method other than GET.
    s = socket.create_connection(a)
    s.sendall(b"POST /nover\r\n")
    until_close(s)
    s.close()
    # 7. Bare LF line ends both ways.
    s = socket.create_connection(a)
    s.sendall(b"GET /lf HTTP/1.1\nHost: lf.example\n\n")
    recv_until(s, b"\n\nok")
    s.close()
    # 8. IPv6 literal in Host.
    s = socket.create_connection(("::1", 8080))
    s.sendall(b"GET /v6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
    recv_until(s, b"\r\n\r\nok")
    s.close()
    # 9. CONNECT to the origin on 8000, HTTP inside the tunnel.
    s = socket.create_connection(a)
    s.sendall(b"CONNECT 127.0.0.1:8000 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.sendall(b"GET /in-tunnel HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
    recv_until(s, b"\r\n\r\nok")
    s.close()
    # 10. CONNECT to a TLS port: a real ClientHello through the tunnel.
    s = socket.create_connection(a)
    s.sendall(b"CONNECT 127.0.0.1:9443 HTTP/1.1\r\nHost: 127.0.0.1:9443\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(inc, outg, server_hostname="tls.example")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(outg.read())
    until_close(s)
    s.close()


def capture_in_netns(ns, out, script, inside):
    """Runs `inside()` (when this is `script` started with --inside) or starts `script --inside`
    in network namespace `ns` while dumpcap writes what crosses its loopback to `out`."""
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        inside()
        return
    subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        cap = subprocess.Popen(["ip", "netns", "exec", ns, "dumpcap", "-q", "-i", "lo", "-P", "-w", out])
        time.sleep(1.5)
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, script, "--inside"], check=True)
        time.sleep(1)
        cap.terminate()
        cap.wait()
        os.chmod(out, 0o644)
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def inside():
    serve(socket.AF_INET, "127.0.0.1", 8080)
    serve(socket.AF_INET6, "::1", 8080)
    serve(socket.AF_INET, "127.0.0.1", 8000)
    tls_sink(9443)
    time.sleep(0.3)
    client()
    time.sleep(0.5)


if __name__ == "__main__":
    capture_in_netns(NS, OUT, __file__, inside)
