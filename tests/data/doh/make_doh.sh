#!/bin/sh
# Makes doh.pcap: DNS over HTTPS in the clear (RFC 8484) between curl and hypercorn serving
# doh_app.py on 127.0.0.1:18053, captured with dumpcap on lo. Four exchanges, each on its own
# connection: over HTTP/2 with prior knowledge a GET (`dns` parameter) for www.example.com A
# and a POST (`application/dns-message` body) for mail.example.org AAAA; over HTTP/1.1 a GET
# for api.example.net A and a POST for www.example.com A. Then a GET of / (a 404, no DNS).
# Run from this folder as root: sh make_doh.sh   (needs hypercorn, curl, dumpcap, python3)
set -e
PORT=18053
hypercorn --bind 127.0.0.1:$PORT doh_app:app >/dev/null 2>&1 & srv=$!
dumpcap -q -i lo -f "tcp port $PORT" -w doh.pcap 2>/dev/null & cap=$!
sleep 2
# A DNS query (RFC 1035 4.1): id, RD, one question.
query() {
  python3 -c '
import struct, sys
name, qtype, qid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
sys.stdout.buffer.write(q + struct.pack("!HH", qtype, 1))' "$@"
}
b64url() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).decode().rstrip("="))'; }
URL=http://127.0.0.1:$PORT/dns-query
H='accept: application/dns-message'
CT='content-type: application/dns-message'
# RFC 8484 4.1: a GET's id should be 0 (caches); POSTs keep theirs.
curl -s -o /dev/null --http2-prior-knowledge -H "$H" "$URL?dns=$(query www.example.com 1 0 | b64url)"
query mail.example.org 28 4660 > /tmp/doh-q.bin
curl -s -o /dev/null --http2-prior-knowledge -H "$H" -H "$CT" --data-binary @/tmp/doh-q.bin "$URL"
curl -s -o /dev/null --http1.1 -H "$H" "$URL?dns=$(query api.example.net 1 0 | b64url)"
query www.example.com 1 22136 > /tmp/doh-q.bin
curl -s -o /dev/null --http1.1 -H "$H" -H "$CT" --data-binary @/tmp/doh-q.bin "$URL"
curl -s -o /dev/null --http2-prior-knowledge http://127.0.0.1:$PORT/
rm -f /tmp/doh-q.bin
sleep 1
kill $cap $srv
wait 2>/dev/null || true
