#!/usr/bin/env python3
"""Makes tests/data/dns_tls_odd.pcap: DNS and TLS messages that are legal but uncommon, sent
over real sockets on the loopback of a network namespace of its own (`dnstls-cap`) and
captured with dumpcap. A UDP server on port 53 answers each query with a response written
here byte by byte (no resolver produces these on demand):
  0x1001  a query with two questions, the first naming the second by a forward compression
          pointer (RFC 1035 4.1.4 speaks of prior occurrences; resolvers follow either)
  0x1002  an SRV response whose additional record is cut short (its data length runs past
          the message): the two answers before it are whole
  0x1003  NULL, 0x1004 SSHFP, 0x1005 SPF (RFC 4408: TXT's format) answers
  0x1006  two responses without a question, as mDNS sends them (RFC 6762 6): the first answers
          another name (an announcement that shares the id), the second the name asked
  0x1007  a query for a name of 40 labels of 30 characters (1,240 octets, past RFC 1035's 255),
          answered FORMERR
  0x1009  an RFC 2136 UPDATE (op code 5) of zone trawl.test: a prerequisite and an RRset
          deletion with empty data, as the RFC has them, and an addition; refused
  0x1008  a response alone from 127.0.0.2 port 53 to 127.0.0.1 port 53 (servers talk from
          port 53 to port 53; only the QR bit says which side asked)
A TCP server on port 443 answers a ClientHello offering TLS 1.3 draft 18 with a draft-18
ServerHello (draft-ietf-tls-tls13-18 4.1.3: version, random, cipher suite, extensions; no
session id, no compression method), as servers did in 2017 (none ships it today), then a
second one with the same layout naming version 0x0304, as the drafts before 16 did.
openssl s_server on port 8443 sends a TLS 1.2 Certificate message of about 90 KiB (its
certificate and 100 copies as the chain), past trawl's 64 KiB message limit (and past what
tshark reassembles); `openssl x509 -fingerprint -sha1` of its certificate is kept in
dns_tls_odd.sha1.
openssl s_server on port 8445 has a certificate of its own past 64 KiB (dns_tls_odd.bigleaf
keeps openssl's subject, issuer and serial of it).
openssl s_server on port 8444 asks for a client certificate (-Verify, TLS 1.2) and s_client
sends one issued by a CA of its own (mutual TLS, as service meshes run it).
A server on port 4443 answers a ClientHello offering 0x7e01 with an RFC 8446 ServerHello
(0x0303, a session id, supported_versions naming 0x7e01), as the TLS 1.3 experiment
servers did in 2017-2018.
A Python server speaks IMAP on port 143 (RFC 3501 STARTTLS), SMTP on port 25 (RFC 3207) and
PostgreSQL's SSLRequest on port 5432, then TLS 1.2 with a certificate whose subject names
emailAddress and postalCode; `openssl s_client -starttls imap|smtp|postgres` is the client.
A server on port 444 reads two ClientHellos and never answers (one offering TLS 1.0 alone in
its version field, one listing GREASE, 1.3 and 1.2 in supported_versions).
A DNS server over TCP on port 53 answers four queries on one connection (RFC 7766); the
second query is sent in two segments and the second segment is cut out of the capture
afterwards (dumpcap saw it: the server's acknowledgement covers it), a hole mid-message.
An HTTP server on port 8080 gets `GET /HTTP/1.1` (the space before the version missing) with
a Host field line, and answers 400 as RFC 9112 3 asks of a server.
tests/wire/dns_tls_odd.rs reads the capture, with tshark as the oracle. Run as root:
`python3 tests/data/dns_tls_odd.py`."""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

NS = "dnstls-cap"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dns_tls_odd.pcap")


def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\x00"


def header(id_, flags, qd, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def rr(owner, rtype, rdata, ttl=300):
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def question(n, qtype):
    return name(n) + struct.pack(">HH", qtype, 1)


def exchanges():
    """(query, [responses]) pairs, by id."""
    out = []
    # Forward pointer: the first question's name is at offset 18, the second question's.
    q = header(0x1001, 0x0100, 2) + b"\xc0\x12" + struct.pack(">HH", 1, 1) + question("fwd.trawl.test", 1)
    r = header(0x1001, 0x8180, 1, 1) + question("fwd.trawl.test", 1) + rr(b"\xc0\x0c", 1, bytes([192, 0, 2, 1]))
    out.append((q, [r]))
    # SRV answers, then an additional record claiming 40 bytes of data with 4 present.
    q = header(0x1002, 0x0100, 1) + question("_sip._udp.trawl.test", 33)
    srv = lambda prio, target: struct.pack(">HHH", prio, 1, 5060) + name(target)
    r = (header(0x1002, 0x8180, 1, 2, 0, 1) + question("_sip._udp.trawl.test", 33)
         + rr(b"\xc0\x0c", 33, srv(10, "a.trawl.test")) + rr(b"\xc0\x0c", 33, srv(20, "b.trawl.test"))
         + name("a.trawl.test") + struct.pack(">HHIH", 1, 1, 300, 40) + bytes([192, 0, 2, 2]))
    out.append((q, [r]))
    for id_, qname, qtype, rdata in (
        (0x1003, "null.trawl.test", 10, b"\x00\x01hello\xff"),
        (0x1004, "host.trawl.test", 44, b"\x04\x02" + bytes(range(32))),
        (0x1005, "spf.trawl.test", 99, b"\x0ev=spf1 mx -all"),
    ):
        q = header(id_, 0x0100, 1) + question(qname, qtype)
        r = header(id_, 0x8180, 1, 1) + question(qname, qtype) + rr(b"\xc0\x0c", qtype, rdata)
        out.append((q, [r]))
    q = header(0x1006, 0x0000, 1) + question("printer.trawl.test", 1)
    other = header(0x1006, 0x8400, 0, 1) + rr(name("other.trawl.test"), 1, bytes([192, 0, 2, 7]))
    mine = header(0x1006, 0x8400, 0, 1) + rr(name("printer.trawl.test"), 1, bytes([192, 0, 2, 6]))
    out.append((q, [other, mine]))
    q = header(0x1007, 0x0100, 1) + question(LONG_NAME, 1)
    out.append((q, [header(0x1007, 0x8181, 1) + question(LONG_NAME, 1)]))
    # RFC 2136 UPDATE: the zone where the question is, a prerequisite (no CNAME at the name:
    # class NONE, no data), an RRset deletion (class ANY, no data) and an addition.
    def rr_class(owner, rtype, rclass, ttl, rdata):
        return name(owner) + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata
    sections = (question("trawl.test", 6) + rr_class("host.trawl.test", 5, 254, 0, b"")
                + rr_class("host.trawl.test", 1, 255, 0, b"") + rr_class("host.trawl.test", 1, 1, 300, bytes([192, 0, 2, 9])))
    out.append((header(0x1009, 0x2800, 1, 1, 2) + sections, [header(0x1009, 0xA805, 1, 1, 2) + sections]))
    return out


LONG_NAME = ".".join(("l%02d" % i) + "x" * 27 for i in range(40))


def flipped_response():
    """A response sent from port 53 to port 53, its query never seen."""
    return header(0x1008, 0x8180, 1, 1) + question("peer.trawl.test", 1) + rr(b"\xc0\x0c", 1, bytes([192, 0, 2, 8]))


def dns_server(sock, answers):
    while True:
        q, peer = sock.recvfrom(4096)
        for r in answers.get(q[:2], []):
            sock.sendto(r, peer)
            time.sleep(0.01)


def ext(t, data):
    return struct.pack(">HH", t, len(data)) + data


def record(ctype, body):
    return struct.pack(">BHH", ctype, 0x0301, len(body)) + body


def handshake(htype, body):
    return bytes([htype]) + struct.pack(">I", len(body))[1:] + body


DRAFT18 = 0x7F12
KEY_SHARE_DRAFT = 40  # key_share's number in the drafts (51 in RFC 8446)


def client_hello(version=DRAFT18):
    sni = b"draft.trawl.test"
    exts = (ext(0, struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni)
            + ext(43, b"\x02" + struct.pack(">H", version))
            + ext(10, b"\x00\x02\x00\x1d")
            + ext(13, b"\x00\x02\x04\x03")
            + ext(KEY_SHARE_DRAFT, struct.pack(">HHH", 36, 0x1D, 32) + bytes(32)))
    body = (struct.pack(">H", 0x0303) + bytes(range(32)) + b"\x00"
            + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    return record(22, handshake(1, body))


def server_hello(version=DRAFT18):
    exts = ext(KEY_SHARE_DRAFT, struct.pack(">HH", 0x1D, 32) + bytes(range(32, 64)))
    body = struct.pack(">H", version) + bytes(range(64, 96)) + b"\x13\x01" + struct.pack(">H", len(exts)) + exts
    # The rest of a draft-18 handshake is encrypted: application data records.
    return record(22, handshake(2, body)) + record(23, bytes(range(200)))


EXPERIMENT = 0x7E01


def experiment_hello():
    """The ServerHello of a TLS 1.3 experiment server: RFC 8446's layout, the code in
    supported_versions."""
    exts = ext(43, struct.pack(">H", EXPERIMENT)) + ext(51, struct.pack(">HH", 0x1D, 32) + bytes(range(32, 64)))
    body = (struct.pack(">H", 0x0303) + bytes(range(64, 96)) + b"\x20" + bytes(range(32)) + b"\x13\x01\x00"
            + struct.pack(">H", len(exts)) + exts)
    return record(22, handshake(2, body)) + record(20, b"\x01") + record(23, bytes(range(200)))


def experiment_server(lsock):
    c, _ = lsock.accept()
    c.recv(4096)
    c.sendall(experiment_hello())
    c.recv(4096)
    c.close()


def starttls_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/k.pem",
                    "-out", f"{d}/c.pem", "-days", "3650", "-subj",
                    "/C=DE/postalCode=57250/L=Netphen/O=Trawl Test/CN=mail.trawl.test"
                    "/emailAddress=certs@trawl.test"], check=True, capture_output=True)


def starttls_conn(c, ctx, mode):
    """One upgrade, as the server side of RFC 3501 6.2.1, RFC 3207 or PostgreSQL's SSLRequest."""
    f = c.makefile("rb")
    if mode == "imap":
        c.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] trawl ready\r\n")
        while True:
            line = f.readline()
            tag = line.split(b" ")[0]
            if b"CAPABILITY" in line.upper():
                c.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
            elif b"STARTTLS" in line.upper():
                c.sendall(tag + b" OK begin TLS\r\n")
                break
    elif mode == "smtp":
        c.sendall(b"220 mail.trawl.test ESMTP\r\n")
        while True:
            line = f.readline().upper()
            if line.startswith(b"EHLO"):
                c.sendall(b"250-mail.trawl.test\r\n250 STARTTLS\r\n")
            elif line.startswith(b"STARTTLS"):
                c.sendall(b"220 go ahead\r\n")
                break
    else:
        assert c.recv(8) == bytes([0, 0, 0, 8, 4, 0xD2, 0x16, 0x2F])
        c.sendall(b"S")
    s = ctx.wrap_socket(c, server_side=True)
    try:
        s.recv(4096)
        s.sendall(b"bye\r\n")
    except (OSError, ssl.SSLError):
        pass
    s.close()


def starttls_server(lsock, ctx, mode):
    c, _ = lsock.accept()
    starttls_conn(c, ctx, mode)


def starttls():
    d = tempfile.mkdtemp()
    try:
        starttls_cert(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(f"{d}/c.pem", f"{d}/k.pem")
        for port, mode in ((143, "imap"), (25, "smtp"), (5432, "postgres")):
            l = socket.socket()
            l.bind(("127.0.0.1", port))
            l.listen()
            t = threading.Thread(target=starttls_server, args=(l, ctx, mode), daemon=True)
            t.start()
            time.sleep(0.1)
            subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", mode,
                            "-tls1_2"], input=b"hello\n", capture_output=True, timeout=10)
            t.join(5)
            l.close()
    finally:
        shutil.rmtree(d)


def tls_server(lsock):
    for version in (DRAFT18, 0x0304):
        c, _ = lsock.accept()
        c.recv(4096)
        c.sendall(server_hello(version))
        c.recv(4096)
        c.close()


def big_chain():
    d = tempfile.mkdtemp()
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/k.pem",
                        "-out", f"{d}/c.pem", "-days", "3650", "-subj", "/O=Trawl Test/CN=big.trawl.test",
                        "-addext", "subjectAltName=DNS:big.trawl.test,IP:192.0.2.9"],
                       check=True, capture_output=True)
        with open(f"{d}/c.pem") as f:
            cert = f.read()
        fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", f"{d}/c.pem"],
                            check=True, capture_output=True, text=True).stdout
        with open(os.path.join(HERE, "dns_tls_odd.sha1"), "w") as f:
            f.write(fp)
        with open(f"{d}/chain.pem", "w") as f:
            f.write(cert * 100)
        srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:8443", "-cert", f"{d}/c.pem",
                                "-key", f"{d}/k.pem", "-cert_chain", f"{d}/chain.pem", "-tls1_2", "-www"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:8443", "-tls1_2", "-servername",
                        "big.trawl.test"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        time.sleep(0.3)
        srv.terminate()
        srv.wait()
    finally:
        shutil.rmtree(d)


def big_leaf():
    """openssl s_server on port 8445 with a certificate of its own past 64 KiB (a 70,000-byte
    nsComment extension after the subject), as Zeek's ssl.fragment trace has one of 339 KB.
    openssl's subject, issuer and serial of it are kept in dns_tls_odd.bigleaf."""
    d = tempfile.mkdtemp()
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/k.pem",
                        "-out", f"{d}/c.pem", "-days", "3650", "-subj", "/O=Trawl Test/CN=bigleaf.trawl.test",
                        "-addext", "nsComment=" + "x" * 70000], check=True, capture_output=True)
        info = subprocess.run(["openssl", "x509", "-noout", "-nameopt", "RFC2253", "-subject", "-issuer", "-serial",
                               "-in", f"{d}/c.pem"], check=True, capture_output=True, text=True).stdout
        with open(os.path.join(HERE, "dns_tls_odd.bigleaf"), "w") as f:
            f.write(info)
        srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:8445", "-cert", f"{d}/c.pem",
                                "-key", f"{d}/k.pem", "-tls1_2", "-www"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:8445", "-tls1_2"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        time.sleep(0.3)
        srv.terminate()
        srv.wait()
    finally:
        shutil.rmtree(d)


def mutual_tls():
    d = tempfile.mkdtemp()
    try:
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, cwd=d)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "3650", "-subj", "/O=Trawl Test/CN=Trawl Mesh CA")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "s.key", "-out", "s.pem",
            "-days", "3650", "-subj", "/CN=mesh-server.trawl.test")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "c.key", "-out", "c.csr",
            "-subj", "/O=Trawl Test/OU=payments/CN=client.trawl.test")
        run("openssl", "x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            "0x1d2c3b4a5968", "-days", "3650", "-out", "c.pem")
        srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:8444", "-cert", "s.pem", "-key", "s.key",
                                "-Verify", "1", "-CAfile", "ca.pem", "-tls1_2", "-www"], cwd=d,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:8444", "-tls1_2", "-cert", "c.pem", "-key",
                        "c.key", "-servername", "mesh-server.trawl.test"], cwd=d, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
        time.sleep(0.3)
        srv.terminate()
        srv.wait()
    finally:
        shutil.rmtree(d)


def legacy_hello(version):
    """A ClientHello of a TLS <= 1.2 client: `version` in the hello, no supported_versions."""
    sni = b"quiet.trawl.test"
    exts = ext(0, struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni)
    body = (struct.pack(">H", version) + bytes(range(32)) + b"\x00" + b"\x00\x04\x00\x2f\x00\x35"
            + b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    return record(22, handshake(1, body))


def modern_hello():
    """A TLS 1.3 client's hello: 1.2 in the version field, GREASE, 1.3 and 1.2 listed."""
    sni = b"quiet.trawl.test"
    exts = (ext(0, struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni)
            + ext(43, b"\x06\x0a\x0a\x03\x04\x03\x03")
            + ext(10, b"\x00\x02\x00\x1d")
            + ext(13, b"\x00\x02\x04\x03")
            + ext(51, struct.pack(">HHH", 36, 0x1D, 32) + bytes(32)))
    body = (struct.pack(">H", 0x0303) + bytes(range(32)) + b"\x00"
            + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    return record(22, handshake(1, body))


def silent_server(lsock):
    for _ in range(2):
        c, _ = lsock.accept()
        c.recv(4096)
        time.sleep(0.3)
        c.close()


def dns_tcp_server(lsock, answers):
    c, _ = lsock.accept()
    buf = b""
    while True:
        data = c.recv(4096)
        if not data:
            break
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
            n = struct.unpack(">H", buf[:2])[0]
            q, buf = buf[2:2 + n], buf[2 + n:]
            r = answers[q[:2]]
            c.sendall(struct.pack(">H", len(r)) + r)
    c.close()


GAP_NAME = "gap.trawl.test"


def tcp_exchanges():
    out = []
    for id_, qname, ip in ((0x2001, "one.trawl.test", 11), (0x2002, GAP_NAME, 12),
                           (0x2003, "three.trawl.test", 13), (0x2004, "four.trawl.test", 14)):
        q = header(id_, 0x0100, 1) + question(qname, 1)
        r = header(id_, 0x8180, 1, 1) + question(qname, 1) + rr(b"\xc0\x0c", 1, bytes([192, 0, 2, ip]))
        out.append((q, r))
    return out


def dns_over_tcp():
    pairs = tcp_exchanges()
    c = socket.create_connection(("127.0.0.1", 53))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.settimeout(2)
    for q, r in pairs:
        framed = struct.pack(">H", len(q)) + q
        if q[12:] == question(GAP_NAME, 1):
            # Header in one segment, question in the next (the one cut out afterwards).
            c.sendall(framed[:14])
            time.sleep(0.1)
            c.sendall(framed[14:])
        else:
            c.sendall(framed)
        got = b""
        while len(got) < 2 + len(r):
            got += c.recv(4096)
        time.sleep(0.05)
    c.close()


def cut_gap_segment(path):
    """Drops the first packet carrying the gap query's question (the client's second
    segment): a capture with bytes missing mid-message, as a lossy capture has them."""
    with open(path, "rb") as f:
        data = f.read()
    head, at, out, cut = data[:24], 24, [], False
    marker = question(GAP_NAME, 1)
    while at + 16 <= len(data):
        incl = struct.unpack("<I", data[at + 8:at + 12])[0]
        rec = data[at:at + 16 + incl]
        at += 16 + incl
        if not cut and rec.endswith(marker):
            cut = True
            continue
        out.append(rec)
    assert cut, "the gap query's second segment was captured"
    with open(path, "wb") as f:
        f.write(head + b"".join(out))


def glued_version_server(lsock):
    c, _ = lsock.accept()
    buf = b""
    while b"\n\n" not in buf:
        buf += c.recv(4096)
    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c.close()


def glued_version():
    s = socket.create_connection(("127.0.0.1", 8080))
    s.sendall(b"GET /HTTP/1.1\nHost: glued.trawl.test\n\n")
    s.settimeout(2)
    while s.recv(4096):
        pass
    s.close()


def inside():
    pairs = exchanges()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 53))
    threading.Thread(target=dns_server, args=(u, {q[:2]: r for q, r in pairs}), daemon=True).start()
    t = socket.socket()
    t.bind(("127.0.0.1", 443))
    t.listen()
    threading.Thread(target=tls_server, args=(t,), daemon=True).start()
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 444))
    quiet.listen()
    threading.Thread(target=silent_server, args=(quiet,), daemon=True).start()
    tcp53 = socket.socket()
    tcp53.bind(("127.0.0.1", 53))
    tcp53.listen()
    threading.Thread(target=dns_tcp_server, args=(tcp53, {q[:2]: r for q, r in tcp_exchanges()}),
                     daemon=True).start()
    web = socket.socket()
    web.bind(("127.0.0.1", 8080))
    web.listen()
    threading.Thread(target=glued_version_server, args=(web,), daemon=True).start()
    time.sleep(0.3)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(2)
    for q, r in pairs:
        c.sendto(q, ("127.0.0.1", 53))
        for _ in r:
            c.recv(4096)
        time.sleep(0.05)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.2", 53))
    peer.sendto(flipped_response(), ("127.0.0.1", 53))
    time.sleep(0.05)
    x = socket.socket()
    x.bind(("127.0.0.1", 4443))
    x.listen()
    threading.Thread(target=experiment_server, args=(x,), daemon=True).start()
    s = socket.create_connection(("127.0.0.1", 4443))
    s.sendall(client_hello(EXPERIMENT))
    s.recv(4096)
    s.sendall(record(20, b"\x01") + record(23, bytes(100)))
    time.sleep(0.2)
    s.close()
    starttls()
    big_chain()
    for version in (DRAFT18, 0x0304):
        s = socket.create_connection(("127.0.0.1", 443))
        s.sendall(client_hello(version))
        s.recv(4096)
        s.sendall(record(23, bytes(100)))
        time.sleep(0.2)
        s.close()
    mutual_tls()
    big_leaf()
    for hello in (legacy_hello(0x0301), modern_hello()):
        s = socket.create_connection(("127.0.0.1", 444))
        s.sendall(hello)
        s.recv(4096)
        s.close()
    dns_over_tcp()
    glued_version()
    time.sleep(0.5)


def capture_in_netns(ns, out, script):
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
        cut_gap_segment(out)
        os.chmod(out, 0o644)
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    capture_in_netns(NS, OUT, os.path.abspath(__file__))
