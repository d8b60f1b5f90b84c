#!/usr/bin/env bash
# Records the real captures tests/wire/fuzz_captures.rs damages: Debian's dnsmasq answering dig over
# UDP and TCP (dns.pcap), redis-server answering redis-cli (redis.pcap: RESP2 and RESP3, a
# WRONGTYPE error, a pipeline, a transaction) and MariaDB running tests/data/mysql/workload.py
# (mysql.pcap: text protocol, prepared statements, errors, a refused login), each taken by
# dumpcap on lo as classic pcap. Run as root in a scratch folder: `bash make.sh [DIR]`.
set -euo pipefail
D=${1:-$PWD}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$D" && cd "$D"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
capture() { # file, filter: starts dumpcap, waits for its file header
  dumpcap -q -P -i lo -f "$2" -w "$1" 2>/dev/null & CAP=$!
  for _ in $(seq 100); do [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge 24 ] && break; sleep 0.1; done
  sleep 0.5
}
stop_capture() { sleep 1; kill "$CAP"; wait "$CAP" 2>/dev/null || true; }

# DNS
port=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --port="$port" --listen-address=127.0.0.1 \
  --bind-interfaces --no-resolv --no-hosts --pid-file= --user=root --local=/analyzers.test/ \
  --host-record=web.analyzers.test,192.0.2.10,2001:db8::10 \
  --cname=alias.analyzers.test,web.analyzers.test --txt-record=txt.analyzers.test,"hello world" \
  --mx-host=analyzers.test,mail.analyzers.test,10 \
  --srv-host=_http._tcp.analyzers.test,web.analyzers.test,80,0,5 2>/dev/null & DNSMASQ=$!
sleep 1
capture dns.pcap "port $port"
for q in "web.analyzers.test A" "web.analyzers.test AAAA" "alias.analyzers.test A" \
  "nope.analyzers.test A" "txt.analyzers.test TXT" "analyzers.test MX" \
  "_http._tcp.analyzers.test SRV" "example.com A"; do
  dig @127.0.0.1 -p "$port" $q +tries=1 +time=2 >/dev/null
done
for q in "web.analyzers.test A" "alias.analyzers.test AAAA" "txt.analyzers.test TXT"; do
  dig @127.0.0.1 -p "$port" $q +tcp +tries=1 +time=2 >/dev/null
done
stop_capture
kill $DNSMASQ

# Redis
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$D" >/dev/null & REDIS=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
capture redis.pcap "tcp port $port"
# Raw RESP from python (redis-cli fetches COMMAND DOCS, 200 kB, when fed from a pipe): each
# batch on one connection, its replies read before the next.
python3 - "$port" <<'PY'
import socket, sys, time
def enc(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
def session(*batches):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    for b in batches:
        s.sendall(b)
        time.sleep(0.05)
        s.recv(65536)
    s.close()
session(enc(b"SET", b"user:1", b"secret-value"), enc(b"GET", b"user:1"),
        enc(b"LPUSH", b"user:1", b"x"), enc(b"HSET", b"h", b"f1", b"v1", b"f2", b"v2"),
        enc(b"HGETALL", b"h"), enc(b"GET", b"nokey"))
session(b"".join(enc(b"INCR", b"c%d" % i) for i in range(5)) + enc(b"MGET", b"c1", b"c2", b"nokey"),
        enc(b"MULTI"), enc(b"SET", b"tx", b"1"), enc(b"INCR", b"tx"), enc(b"EXEC"),
        b"PING\r\n")
session(enc(b"HELLO", b"3"), enc(b"HGETALL", b"h"), enc(b"SMEMBERS", b"nokey"),
        enc(b"INCRBYFLOAT", b"f", b"1.5"), enc(b"DEL", b"c0", b"c1", b"c2", b"c3", b"c4", b"tx", b"h", b"f", b"user:1"))
PY
stop_capture
kill $REDIS

# MySQL / MariaDB (as tests/wire/mysql_real_server.rs sets it up)
port=$(free_port)
mkdir -p mysql/data && chmod 777 "$D" && chown -R mysql mysql
mariadb-install-db --no-defaults --datadir="$D/mysql/data" --user=mysql \
  --auth-root-authentication-method=normal --skip-test-db >/dev/null
/usr/sbin/mariadbd --no-defaults --datadir="$D/mysql/data" --user=mysql --bind-address=127.0.0.1 \
  --port="$port" --socket="$D/mysql/sock" --pid-file="$D/mysql/pid" --log-error="$D/mysql/error.log" \
  --skip-ssl --local-infile=1 --innodb-buffer-pool-size=16M & MARIADB=$!
for _ in $(seq 300); do mariadb --no-defaults --socket="$D/mysql/sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
mariadb --no-defaults --socket="$D/mysql/sock" -u root -e \
  "CREATE USER 'shop'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('sekret'); CREATE DATABASE shop; GRANT ALL ON shop.* TO 'shop'@'%'"
printf 'secret-melon,5.25\nsecret-lime,0.5\n' > items.csv
capture mysql.pcap "tcp port $port"
python3 "$HERE/../mysql/workload.py" 127.0.0.1 "$port" sekret "$D/items.csv" >/dev/null
stop_capture
kill $MARIADB; wait $MARIADB 2>/dev/null || true
ls -l dns.pcap redis.pcap mysql.pcap
