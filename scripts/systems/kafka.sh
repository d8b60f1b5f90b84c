#!/usr/bin/env bash
# Fetches Apache Kafka (the broker and its runtime jars) from Maven Central into
# ${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/kafka/lib, where tests/support/kafka/mod.rs finds it
# and runs a single-node KRaft broker with `java -cp 'lib/*'`. Needs Java 17+ and Maven; skips
# the download when the jars of the pinned version are already there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka-pom.xml"
lib="${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/kafka/lib"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  need=()
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || need+=(maven)
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -f "$lib/kafka_2.13-$version.jar" ] && [ -f "$lib/.complete" ]; then
  exit 0
fi

# Copied into a fresh folder first and moved into place whole, so that an interrupted download
# never leaves a half-filled lib/ that looks installed.
mkdir -p "$(dirname "$lib")"
tmp="$(mktemp -d "$(dirname "$lib")/lib.XXXXXX")"
trap 'rm -rf "$tmp" "$tmp.log"' EXIT
if ! mvn -B -f "$pom" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
  cat "$tmp.log" >&2
  echo "scripts/systems/kafka.sh: Maven could not fetch Apache Kafka $version (log above)" >&2
  exit 1
fi
rm -f "$tmp.log"
touch "$tmp/.complete"
rm -rf "$lib"
mv "$tmp" "$lib"
trap - EXIT
echo "Apache Kafka $version: $(ls "$lib" | wc -l) jars in $lib"
