#!/usr/bin/env bash
# Per-protocol decoding speed, printed as a Markdown table: for each protocol a capture made at
# bench time from a real server on loopback (dnsmasq with a UDP query loop, redis-server with
# redis-benchmark, PostgreSQL with pgbench, MariaDB with a PyMySQL query loop, a grpcio server
# with a loop of unary calls for HTTP/2; TLS from openssl s_server/s_client handshakes),
# `trawl pcap --only <protocol>` against tshark decoding the same protocol on the same file:
# packets/s and transactions/s per CPU second, CPU seconds, and the ratio.
# Captures go to benches/data/proto-* (git-ignored; reused when present). Env: TRAWL (binary,
# default target/release/trawl), ROUNDS (runs per tool, median reported; default 3), N (work
# per protocol, default 20000; TLS makes N/20 handshakes, at most TLS_MAX, default 1000: one
# openssl process each); PROTOCOLS (default "dns redis pgsql mysql http2 tls").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TRAWL:-target/release/trawl}
ROUNDS=${ROUNDS:-3}
N=${N:-20000}
TLS_HANDSHAKES=$((N / 20 < ${TLS_MAX:-1000} ? N / 20 : ${TLS_MAX:-1000}))
[ -x "$BIN" ] || { echo "no trawl binary at $BIN (cargo build --release)" >&2; exit 2; }
mkdir -p benches/data
WORK=$(mktemp -d /tmp/trawl-protocols-bench.XXXXXX)
# Each capture's server is stopped by the function that started it (they run in a subshell).
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# capture FILE FILTER CMD...: records lo with FILTER while CMD runs.
capture() {
  local file=$1 filter=$2; shift 2
  dumpcap -q -i lo -f "$filter" -w "$file.tmp" 2>/dev/null &
  local cap=$!
  while [ ! -s "$file.tmp" ]; do sleep 0.1; done
  sleep 0.5
  "$@" >/dev/null 2>&1
  sleep 0.5
  kill -INT "$cap"; wait "$cap" || true
  mv "$file.tmp" "$file"
}

make_dns() {
  local f=$1 port; port=$(free_port)
  dnsmasq --keep-in-foreground --conf-file=/dev/null --port="$port" --listen-address=127.0.0.1 \
    --bind-interfaces --no-resolv --no-hosts --pid-file= --user=root \
    --local=/bench.test/ --host-record=web.bench.test,192.0.2.10 2>/dev/null &
  local server=$!; sleep 0.5
  capture "$f" "udp port $port" python3 - "$port" "$N" <<'EOF'
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
q = b"".join(bytes([len(p)]) + p for p in [b"web", b"bench", b"test"]) + b"\0" + struct.pack(">HH", 1, 1)
for i in range(n):
    s.sendto(struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + q, ("127.0.0.1", port))
    try:
        s.recv(512)
    except socket.timeout:
        pass
EOF
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  echo "$port"
}

make_redis() {
  local f=$1 port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  local server=$!; sleep 0.5
  capture "$f" "tcp port $port" redis-benchmark -p "$port" -n "$N" -c 10 -P 1 -q -t set,get,incr,lpush
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  echo "$port"
}

make_pgsql() {
  local f=$1 port data; port=$(free_port); data=$WORK/pg
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | head -1)
  mkdir -p "$data"; chown postgres "$WORK" "$data" 2>/dev/null || true; chmod 777 "$WORK"
  runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -o "-p $port -k $WORK -c listen_addresses=127.0.0.1 -c ssl=off" -w start >/dev/null
  runuser -u postgres -- "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -s 1 postgres >/dev/null 2>&1
  capture "$f" "tcp port $port" runuser -u postgres -- "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -c 4 -t $((N / 4)) -S postgres
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null
  echo "$port"
}

make_tls() {
  local f=$1 port; port=$(free_port)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/k.pem" -out "$WORK/c.pem" -days 1 -subj /CN=bench.test 2>/dev/null
  openssl s_server -accept "$port" -cert "$WORK/c.pem" -key "$WORK/k.pem" -quiet -naccept $TLS_HANDSHAKES >/dev/null 2>&1 &
  local server=$!; sleep 0.5
  capture "$f" "tcp port $port" bash -c "for i in \$(seq $TLS_HANDSHAKES); do echo | openssl s_client -connect 127.0.0.1:$port -servername bench.test >/dev/null 2>&1; done"
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  echo "$port"
}

make_mysql() {
  local f=$1 port dir; port=$(free_port); dir=$WORK/my
  mkdir -p "$dir/data"; chmod 755 "$WORK"; chown -R mysql "$dir" 2>/dev/null || true
  mariadb-install-db --no-defaults --datadir="$dir/data" --user=mysql --skip-test-db >/dev/null 2>&1
  /usr/sbin/mariadbd --no-defaults --datadir="$dir/data" --user=mysql --bind-address=127.0.0.1 \
    --port="$port" --socket="$dir/sock" --pid-file="$dir/pid" --skip-ssl \
    --innodb-buffer-pool-size=16M >/dev/null 2>&1 &
  local server=$!
  for _ in $(seq 100); do mariadb -S "$dir/sock" -uroot -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  mariadb -S "$dir/sock" -uroot -e "CREATE USER 'b'@'%' IDENTIFIED BY 'b'; GRANT ALL ON *.* TO 'b'@'%'; CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY, v VARCHAR(32))"
  capture "$f" "tcp port $port" python3 - "$port" "$N" <<'PY'
import sys, pymysql
port, n = int(sys.argv[1]), int(sys.argv[2])
c = pymysql.connect(host="127.0.0.1", port=port, user="b", password="b", database="bench", autocommit=True)
cur = c.cursor()
for i in range(n // 2):
    cur.execute("INSERT INTO t VALUES (%s, %s)", (i, "value-%d" % i))
    cur.execute("SELECT v FROM t WHERE id = %s", (i,))
    cur.fetchall()
c.close()
PY
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  echo "$port"
}

make_http2() {
  local f=$1 port; port=$(free_port)
  python3 tests/data/http2/grpc_echo.py serve "$port" "$WORK/grpc.log" >/dev/null 2>&1 &
  local server=$!; sleep 1
  capture "$f" "tcp port $port" python3 - "$port" "$N" <<'PY'
import sys, grpc
port, n = int(sys.argv[1]), int(sys.argv[2])
ch = grpc.insecure_channel(f"127.0.0.1:{port}")
grpc.channel_ready_future(ch).result(timeout=20)
call = ch.unary_unary("/trawl.test.Echo/Unary")
for i in range(n):
    call(b"hello %d" % i, timeout=10)
ch.close()
PY
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  echo "$port"
}

measure() { # prints "cpu_seconds" of the command, its stdout discarded
  local t; t=$(mktemp)
  /usr/bin/time -f "%U %S" -o "$t" "$@" >/dev/null 2>&1 || true
  awk '{printf "%.3f\n", $1 + $2}' "$t"; rm -f "$t"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

echo "### trawl pcap vs tshark, per protocol (load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| protocol | packets | transactions (trawl) | tool | CPU s (median of $ROUNDS) | packets/s (CPU) | transactions/s (CPU) | trawl speed-up |"
echo "|---|---|---|---|---|---|---|---|"
for proto in ${PROTOCOLS:-dns redis pgsql mysql http2 tls}; do
  f=benches/data/proto-$proto.pcap
  if [ ! -s "$f" ] || [ ! -s "$f.port" ]; then
    "make_$proto" "$f" | tail -1 > "$f.port"
  fi
  port=$(cat "$f.port")
  packets=$(capinfos -c -M "$f" | awk '/Number of packets/ {print $NF}')
  txs=$("$BIN" pcap --only "$proto" "--$proto-ports" "$port" "$f" | wc -l)
  # tshark decodes the protocol on that port and prints one line per message of it.
  case $proto in
    dns) dissect=(-d "udp.port==$port,dns" -Y dns -T fields -e dns.id -e dns.qry.name -e dns.flags.rcode) ;;
    redis) dissect=(-d "tcp.port==$port,resp" -Y resp -T fields -e resp.bulk_string.value -e resp.error) ;;
    pgsql) dissect=(-d "tcp.port==$port,pgsql" -Y pgsql -T fields -e pgsql.query -e pgsql.tag -e pgsql.code) ;;
    mysql) dissect=(-d "tcp.port==$port,mysql" -Y mysql -T fields -e mysql.command -e mysql.query -e mysql.error_code) ;;
    http2) dissect=(-d "tcp.port==$port,http2" -Y http2 -T fields -e http2.streamid -e http2.header.value) ;;
    tls) dissect=(-d "tcp.port==$port,tls" -Y tls.handshake -T fields -e tls.handshake.type -e tls.handshake.ciphersuite -e tls.handshake.extensions_server_name) ;;
  esac
  t_cpu=(); s_cpu=()
  for _ in $(seq "$ROUNDS"); do
    t_cpu+=("$(measure "$BIN" pcap --only "$proto" "--$proto-ports" "$port" "$f")")
    s_cpu+=("$(measure tshark -n -r "$f" "${dissect[@]}")")
  done
  t=$(printf '%s\n' "${t_cpu[@]}" | median)
  s=$(printf '%s\n' "${s_cpu[@]}" | median)
  awk -v p="$proto" -v n="$packets" -v x="$txs" -v t="$t" -v s="$s" 'BEGIN {
    tt = (t > 0) ? t : 0.001; ss = (s > 0) ? s : 0.001
    printf "| %s | %d | %d | trawl | %.3f | %.0f | %.0f | %.1fx |\n", p, n, x, t, n / tt, x / tt, ss / tt
    printf "| %s | %d | %d | tshark | %.3f | %.0f | %.0f | |\n", p, n, x, s, n / ss, x / ss
  }'
done
