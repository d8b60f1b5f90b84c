#!/usr/bin/env python3
"""Writes resp_framing.pcap: real TCP between two network namespaces joined by a veth, a
server answering each request with crafted bytes (RFC 9112 section 6 framing cases), a client
sending requests one at a time on keep-alive connections, captured by tcpdump on the client's
side. Run as root: python3 resp_framing.py (needs ip, tcpdump).

Each connection is one case; its client port says which (41001...), so that the tests can
select them. The last connection is left open when the capture stops (a response cut short
by the capture's end).
"""
import os, socket, subprocess, sys, threading, time

NS_C, NS_S = "f3rc", "f3rs"
CIP, SIP, PORT = "10.93.0.1", "10.93.0.2", 80
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resp_framing.pcap")

OK2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# The body of a close-delimited response that looks like a response: it is body all the same.
FAKE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# (client port, [(request, response)], how the connection ends): "client" closes after the
# last response, "server" has the server close after sending it, "hold" leaves it open.
CASES = [
    # RFC 9112 6.3 (1): HEAD, 1xx, 204 and 304 have no body, whatever their headers say.
    (41001, [
        (b"HEAD /head HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
        (b"GET /nc HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"),
        (b"GET /nm HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (b"GET /cont HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (b"GET /after1 HTTP/1.1\r\nHost: s\r\n\r\n", OK2),
    ], "client"),
    # 6.3 (3): Transfer-Encoding beside Content-Length: chunked decides, and it is flagged.
    (41002, [
        (b"GET /tecl HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        (b"GET /after2 HTTP/1.1\r\nHost: s\r\n\r\n", OK2),
    ], "client"),
    # RFC 9110 8.6: the same length repeated is that length.
    (41003, [
        (b"GET /samecl HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        (b"GET /samelist HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"),
        (b"GET /after3 HTTP/1.1\r\nHost: s\r\n\r\n", OK2),
    ], "client"),
    # 6.3 (5): lengths that disagree: unrecoverable; the client closes (a compliant one).
    (41004, [
        (b"GET /twocl HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc"),
    ], "client"),
    # 6.3 (5): a length that is not a number, and a client that goes on anyway: nothing after
    # the invalid head can be framed, so /after5's answer is not known.
    (41005, [
        (b"GET /negcl HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc"),
        (b"GET /after5 HTTP/1.1\r\nHost: s\r\n\r\n", OK2),
    ], "client"),
    # 7.1: a chunk size that is not hexadecimal.
    (41006, [
        (b"GET /badchunk HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ], "client"),
    # 6.3 (8): neither length nor chunked: the body runs to the close, response-like bytes in it.
    (41007, [
        (b"GET /toclose HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 3000 + FAKE),
        (b"GET /after7 HTTP/1.1\r\nHost: s\r\n\r\n", b""),
    ], "server"),
    # 6.3 (5), 8: a body cut short by the server's FIN, by length and chunked.
    (41008, [
        (b"GET /short HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
    ], "server"),
    (41009, [
        (b"GET /shortchunk HTTP/1.1\r\nHost: s\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    ], "server"),
    # A body cut short by the end of the capture.
    (41010, [
        (b"GET /cut HTTP/1.1\r\nHost: s\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
    ], "hold"),
]


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True)


def setup():
    for ns in (NS_C, NS_S):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "f3rc0", "netns", NS_C, "type", "veth", "peer", "name", "f3rs0", "netns", NS_S)
    for ns, dev, ip in ((NS_C, "f3rc0", CIP), (NS_S, "f3rs0", SIP)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # One segment per send: no offloads merging or splitting what the capture sees.
        sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", check=False)


def in_ns(ns):
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    os.setns(fd, os.CLONE_NEWNET)
    os.close(fd)


def main():
    if len(sys.argv) > 1:
        return {"server": server, "client": client}[sys.argv[1]]()
    setup()
    dump = subprocess.Popen(["ip", "netns", "exec", NS_C, "tcpdump", "-i", "f3rc0", "-s0", "-U", "-w", OUT, "tcp"],
                            stderr=subprocess.DEVNULL)
    time.sleep(1)
    srv = subprocess.Popen(["ip", "netns", "exec", NS_S, sys.executable, __file__, "server"])
    time.sleep(0.5)
    cli = subprocess.Popen(["ip", "netns", "exec", NS_C, sys.executable, __file__, "client"], stdout=subprocess.PIPE)
    # The client prints "held" once the last case is sent and answered, its connection open.
    cli.stdout.readline()
    time.sleep(0.5)
    dump.terminate(); dump.wait()
    cli.kill(); srv.kill()
    for ns in (NS_C, NS_S):
        sh("ip", "netns", "del", ns, check=False)
    print("wrote", OUT)


def server():
    answers = {req: (resp, end) for _, steps, end in CASES for req, resp in steps}
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SIP, PORT)); ls.listen(16)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, answers), daemon=True).start()


def serve(c, answers):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            c.close(); return
        buf += d
        while b"\r\n\r\n" in buf:
            i = buf.index(b"\r\n\r\n") + 4
            req, buf = buf[:i], buf[i:]
            resp, end = answers[req]
            if resp:
                c.sendall(resp)
            if end == "server" and any(req == steps[-1][0] for _, steps, e in CASES if e == "server"):
                time.sleep(0.2)
                c.close(); return


def client():
    for port, steps, end in CASES:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((CIP, port)); s.connect((SIP, PORT))
        s.settimeout(0.3)
        for req, _ in steps:
            s.sendall(req)
            try:
                while s.recv(65536):
                    pass
            except socket.timeout:
                pass
        if end == "hold":
            print("held", flush=True)
            time.sleep(30)
        s.close()
        time.sleep(0.2)


if __name__ == "__main__":
    main()
