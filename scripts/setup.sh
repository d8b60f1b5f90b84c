#!/usr/bin/env bash
# Installs what building and testing trawl needs on a fresh Debian machine with Rust:
# system packages (libpcap for capture, tshark as the HTTP and DNS oracle in tests, dnsmasq and
# dig as the real DNS server and client of tests/wire/dns_live.rs, iproute2 for the
# live tests that create interfaces and namespaces, prometheus for `promtool check metrics` on
# trawl's /metrics, tmux for the terminal test of `trawl top`, systemd-journal-remote to write
# the journals of the journald tests, strace for the test that watches fsyncs; podman, buildah,
# runc and debootstrap for the image test, which builds and runs the image without a daemon;
# binutils for readelf in the static forwarder's test; the real servers of the protocol
# decoders' tests: nginx (TLS), postgresql, redis-server, dnsmasq with dig from bind9-dnsutils,
# mariadb-server; python3-h2 and curl (Debian's, built with nghttp2: `--http2-prior-knowledge`)
# for the HTTP/1.1-and-h2c server and its clients in tests/wire/shared_port_live.rs)
# Apache Kafka, the broker of the Kafka tests (scripts/systems/kafka.sh), and kube-apiserver
# with etcd, the real API of the Kubernetes tests (scripts/systems/kubernetes.sh). Safe to run
# again; skips what is there.
set -euo pipefail

need_apt=()
for pkg in libpcap-dev tshark pkg-config openssl iproute2 systemd systemd-journal-remote \
  prometheus tmux strace podman buildah runc debootstrap binutils nginx postgresql \
  redis-server dnsmasq-base bind9-dnsutils mariadb-server python3-h2 curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Only promtool is wanted from `prometheus`: the server it installs need not run.
  if [[ " ${need_apt[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  # The MariaDB tests start throwaway servers of their own: the packaged one need not run.
  if [[ " ${need_apt[*]} " == *" mariadb-server "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now mariadb >/dev/null 2>&1 || true
  fi
fi

# A real Kubernetes API server and etcd, built from the Go module proxy for the `kubernetes`
# processor's tests (scripts/systems/kubernetes.sh). Mostly compiling: it runs beside the
# downloads below, and the set-up waits for it at the end.
"$(dirname "$0")/systems/kubernetes.sh" &
kubernetes_build=$!

# Apache Kafka from Maven Central (Java 17 and Maven), the broker of the Kafka tests.
"$(dirname "$0")/systems/kafka.sh"

# OpenSearch: a real single-node cluster for the Elasticsearch-output tests (Java, from Maven).
"$(dirname "$0")/systems/opensearch.sh"

# kubernetes-validate (PyPI): tests/packaging/manifests.rs checks docker/kubernetes/ against the Kubernetes
# schemas, which ship inside the package (no network at test time).
# Debian's own python3 refuses pip outside a venv (PEP 668): then it goes to the user's site.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install -q kubernetes-validate 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages kubernetes-validate
fi

# PyMySQL and mysql-connector-python (PyPI): the text-protocol and prepared-statement clients of
# tests/wire/mysql_real_server.rs (pure Python; the server is Debian's mariadb-server).
if ! python3 -c "import pymysql, mysql.connector" >/dev/null 2>&1; then
  python3 -m pip install -q PyMySQL mysql-connector-python 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages PyMySQL mysql-connector-python
fi

# grpcio (PyPI): the gRPC server and client of tests/wire/http2_grpc.rs (behind Debian's nginx).
if ! python3 -c "import grpc" >/dev/null 2>&1; then
  python3 -m pip install -q grpcio 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages grpcio
fi

# hypercorn (PyPI): the server of tests/wire/http2_h2c_upgrade.rs (it answers `Upgrade: h2c`;
# nginx and nghttpd do not).
if ! python3 -c "import hypercorn" >/dev/null 2>&1; then
  python3 -m pip install -q hypercorn 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages hypercorn
fi

# psycopg 3 (PyPI): the extended-protocol client of tests/wire/pgsql_real_server.rs (libpq comes with
# Debian's postgresql).
if ! python3 -c "import psycopg" >/dev/null 2>&1; then
  python3 -m pip install -q psycopg 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages psycopg
fi

wait "$kubernetes_build" || { echo "setup: building kube-apiserver and etcd failed" >&2; exit 1; }
