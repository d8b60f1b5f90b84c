#!/usr/bin/env bash
# Makes the live tunnel captures in this folder (run as root; needs iproute2, dumpcap, curl,
# python3). Two namespaces joined by a veth pair (the underlay, 192.0.2.0/24); for each
# tunnel type, a tunnel device in each namespace (inner 10.99.N.0/24), then through it: one
# `curl` GET of /hello.txt from python's http.server and 2 ICMP echo requests (identifier
# 0x4200+N), captured on the underlay veth. Names carry the `encap-` prefix; all removed at exit.
set -euo pipefail
cd "$(dirname "$0")"
A="ip netns exec encap-a"; B="ip netns exec encap-b"
cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  ip netns del encap-a 2>/dev/null || true; ip netns del encap-b 2>/dev/null || true
  rm -rf "${WWW:-/nonexistent}"
}
trap cleanup EXIT
cleanup
ip netns add encap-a; ip netns add encap-b
ip link add encap-va netns encap-a type veth peer name encap-vb netns encap-b
$A ip addr add 192.0.2.1/24 dev encap-va; $B ip addr add 192.0.2.2/24 dev encap-vb
for ns in encap-a encap-b; do
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip netns exec $ns ip link set lo up
done
$A ip link set encap-va up; $B ip link set encap-vb up
WWW=$(mktemp -d); echo "hello through a tunnel" > "$WWW/hello.txt"
$B python3 -m http.server 8080 --bind 0.0.0.0 --directory "$WWW" >/dev/null 2>&1 & SRV=$!

ping4() { # ns dst ident: two echo requests, each waiting for its reply
  ip netns exec "$1" python3 - "$2" "$3" <<'PY'
import socket, struct, sys, time
dst, ident = sys.argv[1], int(sys.argv[2], 0)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
for seq in (1, 2):
    body = b"trawl-encap-ping"
    h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(h + body), ident, seq) + body, (dst, 0))
    while True:
        d = s.recv(2048)
        t, _, _, i, q = struct.unpack("!BBHHH", d[20:28])
        if t == 0 and i == ident and q == seq: break
    time.sleep(0.05)
PY
}

capture() { # name n setup-a setup-b: tunnel devices encap-t in both namespaces, inner 10.99.n.{1,2}
  local name=$1 n=$2
  $A sh -c "$3"; $B sh -c "$4"
  for ns in encap-a encap-b; do ip netns exec $ns ip link set encap-t up; done
  $A ip addr add 10.99.$n.1/24 dev encap-t; $B ip addr add 10.99.$n.2/24 dev encap-t
  sleep 0.5
  rm -f "$name.pcap"
  $A dumpcap -q -i encap-va -P -w "$name.pcap" 2>/dev/null & local cap=$!
  for _ in $(seq 50); do [ -s "$name.pcap" ] && break; sleep 0.1; done
  sleep 0.3
  $A curl -s -o /dev/null --max-time 5 "http://10.99.$n.2:8080/hello.txt"
  ping4 encap-a 10.99.$n.2 $((0x4200 + n))
  sleep 0.5; kill -INT $cap; wait $cap || true
  $A ip link del encap-t; $B ip link del encap-t
  echo "$name: $(stat -c %s "$name.pcap") bytes"
}
capture vxlan 1 "ip link add encap-t type vxlan id 42 remote 192.0.2.2 local 192.0.2.1 dstport 4789" \
                "ip link add encap-t type vxlan id 42 remote 192.0.2.1 local 192.0.2.2 dstport 4789"
capture vxlan_port9999 2 "ip link add encap-t type vxlan id 43 remote 192.0.2.2 local 192.0.2.1 dstport 9999" \
                         "ip link add encap-t type vxlan id 43 remote 192.0.2.1 local 192.0.2.2 dstport 9999"
# This kernel has no gre, gretap, erspan, geneve, ipip, sit or ip6tnl device types: the other
# encapsulations are made by make_encapsulated.py around vxlan.pcap's inner frames.

# Flows without a tunnel on the underlay: 2 echo requests; one UDP datagram to a closed port
# (answered by ICMP port unreachable); two TCP connections from the same source port 40001 to
# 8080, each a GET then closed by RST (SO_LINGER 0), so the 5-tuple is re-opened after a close.
rm -f flows_plain.pcap
$A dumpcap -q -i encap-va -P -w flows_plain.pcap 2>/dev/null & cap=$!
for _ in $(seq 50); do [ -s flows_plain.pcap ] && break; sleep 0.1; done
sleep 0.3
ping4 encap-a 192.0.2.2 0x4300
$A python3 - <<'PY'
import socket, struct, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("192.0.2.1", 40000))
u.sendto(b"anyone there?", ("192.0.2.2", 9)); time.sleep(0.2)
for _ in range(2):
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("192.0.2.1", 40001)); c.connect(("192.0.2.2", 8080))
    c.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: 192.0.2.2:8080\r\nConnection: close\r\n\r\n")
    got = b""
    while b"hello through a tunnel" not in got:
        got += c.recv(4096)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
    time.sleep(0.2)
PY
sleep 0.5; kill -INT $cap; wait $cap || true
echo "flows_plain: $(stat -c %s flows_plain.pcap) bytes"
