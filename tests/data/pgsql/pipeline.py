"""A client that pipelines: tests/wire/pgsql_real_server.rs's pipelining test.

Usage: pipeline.py HOST PORT PASSWORD N
Logs in with psycopg, creates tables r1..r97 (table rR holds R rows), then writes N simple
Query messages in one go on the connection's socket, before reading any answer (PostgreSQL
reads and answers them in order), and reads until every ReadyForQuery has come. Query i is
`SELECT n FROM rR` with R = i % 97 + 1: an answer given to the wrong query shows in its rows.
"""
import socket
import sys
import threading

import psycopg

host, port, password, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
conn = psycopg.connect(host=host, port=port, user="postgres", password=password,
                       dbname="shop", autocommit=True)
for r in range(1, 98):
    conn.execute(f"CREATE TABLE r{r} AS SELECT generate_series(1, {r}) AS n")

sock = socket.socket(fileno=conn.pgconn.socket)
sock.setblocking(True)
batch = bytearray()
for i in range(n):
    q = f"SELECT n FROM r{i % 97 + 1}".encode() + b"\x00"
    batch += b"Q" + (4 + len(q)).to_bytes(4, "big") + q
writer = threading.Thread(target=sock.sendall, args=(bytes(batch),))
writer.start()

buf = bytearray()
ready = 0
sock.settimeout(30)
while ready < n:
    chunk = sock.recv(1 << 16)
    if not chunk:
        sys.exit(f"connection closed after {ready} answers")
    buf += chunk
    while len(buf) >= 5:
        length = int.from_bytes(buf[1:5], "big")
        if len(buf) < 1 + length:
            break
        kind = buf[0:1]
        if kind == b"E":
            sys.exit(f"error answer: {bytes(buf[:1 + length])!r}")
        if kind == b"Z":
            ready += 1
        del buf[:1 + length]
writer.join()
sock.detach()
print(f"{n} answers")
