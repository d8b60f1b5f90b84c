#!/usr/bin/env bash
# Makes vni_overlap.pcap (run as root; needs iproute2, dumpcap, python3): two tenants of one
# VXLAN underlay that use the SAME inner addresses, as a VTEP uplink or a cloud traffic-mirror
# target sees them. Underlay: namespaces vnio-ua (192.0.2.1) and vnio-ub (192.0.2.2) joined by a
# veth pair. Tenant N (N = 100, 200): VXLAN devices with VNI N created in the underlay
# namespaces (their UDP socket stays there) and moved into tenant namespaces vnio-cN (client,
# 10.0.0.5) and vnio-sN (server, 10.0.0.9). Each server answers on port 80 with its own
# status (tenant 100: 200, tenant 200: 404) and a body naming the tenant; both clients, at the
# same time and from the same source port 40000, send three keep-alive GETs each with paths of
# their own (/t100/..., /t200/...), interleaved: a merged connection mis-pairs them. Then two
# ICMP echo exchanges per tenant, same identifier. Captured on the underlay veth in vnio-ua.
set -euo pipefail
cd "$(dirname "$0")"
NS=(vnio-ua vnio-ub vnio-c100 vnio-s100 vnio-c200 vnio-s200)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
for ns in "${NS[@]}"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip link add vnio-va netns vnio-ua type veth peer name vnio-vb netns vnio-ub
ip -n vnio-ua addr add 192.0.2.1/24 dev vnio-va; ip -n vnio-ub addr add 192.0.2.2/24 dev vnio-vb
ip -n vnio-ua link set vnio-va up; ip -n vnio-ub link set vnio-vb up
for n in 100 200; do
  ip -n vnio-ua link add vx$n type vxlan id $n remote 192.0.2.2 local 192.0.2.1 dstport 4789
  ip -n vnio-ub link add vx$n type vxlan id $n remote 192.0.2.1 local 192.0.2.2 dstport 4789
  ip -n vnio-ua link set vx$n netns vnio-c$n; ip -n vnio-ub link set vx$n netns vnio-s$n
  ip -n vnio-c$n addr add 10.0.0.5/24 dev vx$n; ip -n vnio-s$n addr add 10.0.0.9/24 dev vx$n
  ip -n vnio-c$n link set vx$n up; ip -n vnio-s$n link set vx$n up
  ip netns exec vnio-s$n python3 - $n <<'PY' & PIDS+=($!)
import http.server, sys
tenant = sys.argv[1]
status = 200 if tenant == "100" else 404
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"tenant {tenant} answers {self.path}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("10.0.0.9", 80), H).serve_forever()
PY
done
sleep 1
rm -f vni_overlap.pcap
ip netns exec vnio-ua dumpcap -q -i vnio-va -P -w vni_overlap.pcap 2>/dev/null & cap=$!
for _ in $(seq 50); do [ -s vni_overlap.pcap ] && break; sleep 0.1; done
sleep 0.3

client() { # tenant start-delay: three GETs on one connection from 10.0.0.5:40000
  ip netns exec vnio-c$1 python3 - "$1" "$2" <<'PY'
import socket, sys, time
tenant, delay = sys.argv[1], float(sys.argv[2])
time.sleep(delay)
c = socket.socket()
c.bind(("10.0.0.5", 40000))
c.connect(("10.0.0.9", 80))
for name in ("one", "two", "three"):
    c.sendall(f"GET /t{tenant}/{name} HTTP/1.1\r\nHost: 10.0.0.9\r\n\r\n".encode())
    got = b""
    while not got.endswith(b"\n") or b"answers" not in got:
        got += c.recv(4096)
    time.sleep(0.2)
c.close()
PY
}
# Tenant 200 starts 0.1 s after tenant 100: each request of one falls between a request and
# the next of the other.
client 100 0 & c1=$!
client 200 0.1 & c2=$!
wait $c1 $c2

ping4() { # tenant: two echo requests with identifier 0x4242, each waiting for its reply
  ip netns exec vnio-c$1 python3 - <<'PY'
import socket, struct, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
for seq in (1, 2):
    body = b"trawl-vni-ping!!"
    h = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(h + body), 0x4242, seq) + body, ("10.0.0.9", 0))
    while True:
        d = s.recv(2048)
        t, _, _, i, q = struct.unpack("!BBHHH", d[20:28])
        if t == 0 and i == 0x4242 and q == seq: break
    time.sleep(0.05)
PY
}
ping4 100; ping4 200
sleep 0.5; kill -INT $cap; wait $cap || true
echo "vni_overlap: $(stat -c %s vni_overlap.pcap) bytes"
