"""An h2c client with prior knowledge that keeps several streams open at once on one
connection (RFC 9113 5.1.2), as a gRPC channel or Envoy does and Debian 12's curl does not.
Used by tests/wire/shared_port_live.rs against shared_port_server.py.

Each argument after ADDRESS PORT is METHOD:PATH[:BODY]. Every stream's HEADERS go out before
any stream ends; a body is sent in DATA frames of three bytes, round-robin across the streams,
so the frames of different streams interleave on the wire; the same custom header on every
request lets HPACK index it once and refer to it after (the dynamic table across streams).
Prints "done <streams answered>" once every stream has its whole answer, then says GOAWAY and
closes. Usage: multi_stream_client.py ADDRESS PORT GET:/a POST:/b:body ...
"""

import socket
import sys

import h2.config
import h2.connection
import h2.events


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    requests = []
    for spec in sys.argv[3:]:
        method, path, *body = spec.split(":", 2)
        requests.append((method, path, body[0].encode() if body else b""))
    sock = socket.create_connection((address, port), timeout=10)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    pending = {}
    for method, path, body in requests:
        stream = conn.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":scheme", "http"),
            (":authority", f"{address}:{port}"),
            (":path", path),
            ("user-agent", "trawl-test-multi-stream"),
            ("x-request-group", "one-connection"),
        ]
        if body:
            headers.append(("content-length", str(len(body))))
        conn.send_headers(stream, headers, end_stream=not body)
        if body:
            pending[stream] = body
    # Bodies three bytes a frame, one frame per stream per round.
    while pending:
        for stream in list(pending):
            chunk, rest = pending[stream][:3], pending[stream][3:]
            conn.send_data(stream, chunk, end_stream=not rest)
            if rest:
                pending[stream] = rest
            else:
                del pending[stream]
    sock.sendall(conn.data_to_send())
    open_streams = len(requests)
    answered = 0
    while open_streams:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                open_streams -= 1
                answered += 1
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    print(f"done {answered}", flush=True)


main()
