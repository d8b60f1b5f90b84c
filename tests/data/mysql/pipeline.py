"""A client that pipelines: tests/wire/mysql_real_server.rs's pipelining test.

Usage: pipeline.py HOST PORT PASSWORD N
Logs in with PyMySQL, then writes N COM_QUERY packets in one go on its socket, before reading
any answer (MariaDB reads and answers them in order), and reads until every answer has come.
Command i is `SELECT seq FROM seq_1_to_R` with R = i % 97 + 1: its answer has R rows, so an
answer given to the wrong command shows in its row count.
"""
import socket
import sys
import threading

import pymysql

host, port, password, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c = pymysql.connect(host=host, port=port, user="shop", password=password, database="shop",
                    ssl_disabled=True)
sock = c._sock

batch = bytearray()
for i in range(n):
    body = b"\x03" + f"SELECT seq FROM seq_1_to_{i % 97 + 1}".encode()
    batch += len(body).to_bytes(3, "little") + b"\x00" + body

sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
writer = threading.Thread(target=sock.sendall, args=(bytes(batch),))
writer.start()

# Every answer is a text result set with classic EOFs (PyMySQL does not ask for
# CLIENT_DEPRECATE_EOF): column count, definition, EOF, rows, EOF; two EOFs an answer.
buf = bytearray()
eofs = 0
sock.settimeout(30)
while eofs < 2 * n:
    chunk = sock.recv(1 << 16)
    if not chunk:
        sys.exit(f"connection closed after {eofs} EOFs")
    buf += chunk
    while len(buf) >= 4:
        length = int.from_bytes(buf[:3], "little")
        if len(buf) < 4 + length:
            break
        payload = buf[4:4 + length]
        if payload[:1] == b"\xff":
            sys.exit(f"error answer: {bytes(payload)!r}")
        if payload[:1] == b"\xfe" and length < 9:
            eofs += 1
        del buf[:4 + length]
writer.join()
c.close()
print(f"{n} answers")
