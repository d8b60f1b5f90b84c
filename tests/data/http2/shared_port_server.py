"""One TCP listener speaking HTTP/1.1 and cleartext HTTP/2 with prior knowledge (RFC 9113 3.3),
as Envoy or a gRPC gateway without TLS does: a connection whose first 24 bytes are the client
preface is HTTP/2, any other is HTTP/1.1. Used by tests/wire/shared_port_live.rs.

The answer depends only on the request, so the test derives what it expects from what its
clients send: /missing... is 404, a POST is 201, anything else 200; the body is
"<METHOD> <path> <request body bytes>\n". Usage: shared_port_server.py ADDRESS PORT.
"""

import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def answer(method, path, body_len):
    if path.startswith("/missing"):
        status = 404
    elif method == "POST":
        status = 201
    else:
        status = 200
    return status, f"{method} {path} {body_len}\n".encode()


def recv_more(sock, buf):
    data = sock.recv(65536)
    if not data:
        raise EOFError
    return buf + data


def serve_http1(sock, buf):
    reasons = {200: "OK", 201: "Created", 404: "Not Found"}
    while True:
        while b"\r\n\r\n" not in buf:
            buf = recv_more(sock, buf)
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            if name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        while len(buf) < length:
            buf = recv_more(sock, buf)
        buf = buf[length:]
        status, body = answer(method, path, length)
        sock.sendall(
            f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        if close:
            return


def serve_h2(sock, buf):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    requests = {}
    data = buf
    while True:
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                h = dict(ev.headers)
                requests[ev.stream_id] = [h[":method"], h[":path"], 0]
            elif isinstance(ev, h2.events.DataReceived):
                requests[ev.stream_id][2] += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                method, path, length = requests.pop(ev.stream_id)
                status, body = answer(method, path, length)
                conn.send_headers(
                    ev.stream_id,
                    [(":status", str(status)), ("content-type", "text/plain"),
                     ("content-length", str(len(body)))],
                )
                conn.send_data(ev.stream_id, body, end_stream=True)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            return


def handle(sock):
    try:
        buf = b""
        # Decide on the first 24 bytes, or fewer when they already differ from the preface.
        while len(buf) < len(PREFACE) and PREFACE.startswith(buf):
            buf = recv_more(sock, buf)
        if buf.startswith(PREFACE):
            serve_h2(sock, buf)
        else:
            serve_http1(sock, buf)
    except (EOFError, ConnectionError):
        pass
    finally:
        sock.close()


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], int(sys.argv[2])))
    listener.listen(64)
    print("ready", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=handle, args=(sock,), daemon=True).start()


main()
