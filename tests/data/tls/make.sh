#!/usr/bin/env bash
# Captures the TLS fixtures: openssl s_server on loopback, openssl s_client and curl as clients,
# each handshake's streams extracted with `tshark -z follow,tcp,raw` (*.follow, what the unit
# tests in src/wire/tls/tests.rs read). Run in a copy of this folder (it writes key.pem, the
# session files and the clients' and servers' logs too); `ONLY=name` captures one scenario.
set -euo pipefail
D=${1:-$PWD}
cd "$D"
[ -f cert.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 3650 \
  -subj "/C=FR/O=Trawl Test, Inc/CN=tls.trawl.test" -addext "subjectAltName=DNS:tls.trawl.test" 2>/dev/null
[ -f server-cert.der ] || openssl x509 -in cert.pem -outform der -out server-cert.der
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
run() { # name, server args, client command (PORT substituted)
  local name=$1 sargs=$2 client=$3 port
  if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then return; fi
  port=$(free_port)
  dumpcap -q -i lo -f "tcp port $port" -w "$name.pcapng" 2>/dev/null & local cap=$!
  sleep 1
  openssl s_server -accept 127.0.0.1:$port -cert cert.pem -key key.pem -www $sargs >"$name.server.log" 2>&1 & local srv=$!
  sleep 0.5
  timeout 10 bash -c "${client//PORT/$port}" >"$name.client.log" 2>&1 </dev/null || true
  sleep 0.5
  kill $srv; sleep 0.5; kill $cap; wait $cap 2>/dev/null || true
  tshark -r "$name.pcapng" -w "$name.pcap" -F pcap
  rm "$name.pcapng"
  for s in $(tshark -r "$name.pcap" -T fields -e tcp.stream 2>/dev/null | sort -u); do
    tshark -r "$name.pcap" -q -z "follow,tcp,raw,$s" >"$name.$s.follow" 2>/dev/null
  done
}
run tls12_alpn "-alpn h2,http/1.1" "openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername tls.trawl.test -alpn h2,http/1.1 </dev/null"
run tls13_h2 "-alpn h2,http/1.1" "openssl s_client -connect 127.0.0.1:PORT -tls1_3 -servername tls.trawl.test -alpn h2,http/1.1 </dev/null"
run tls12_http11 "" "curl -sk --tlsv1.2 --tls-max 1.2 --http1.1 --resolve tls.trawl.test:PORT:127.0.0.1 https://tls.trawl.test:PORT/ -o /dev/null"
run tls12_resumed "" "openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername tls.trawl.test -sess_out sess12.pem </dev/null; openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername tls.trawl.test -sess_in sess12.pem </dev/null"
run tls13_resumed "" "sleep 1 | openssl s_client -connect 127.0.0.1:PORT -tls1_3 -servername tls.trawl.test -sess_out sess13.pem; openssl s_client -connect 127.0.0.1:PORT -tls1_3 -servername tls.trawl.test -sess_in sess13.pem </dev/null"
run version_alert "-tls1_3" "openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername tls.trawl.test </dev/null"
run cipher_alert "-tls1_2 -cipher AES128-SHA" "openssl s_client -connect 127.0.0.1:PORT -tls1_2 -cipher AES256-GCM-SHA384 </dev/null"
run tls13_retry "-groups P-256" "openssl s_client -connect 127.0.0.1:PORT -tls1_3 -groups X25519:P-256 -servername tls.trawl.test </dev/null"
