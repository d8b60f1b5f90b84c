#!/usr/bin/env bash
# Installs a single-node OpenSearch for the Elasticsearch-output tests, from Maven Central
# jars (no distribution tarball): the server, its Netty HTTP transport and log4j-core, plus
# TrawlOpenSearchNode, a small launcher that loads the transport as a classpath plugin.
# Into $TRAWL_SYSTEMS_DIR/opensearch (default /var/cache/trawl-systems/opensearch); tests find
# it there (tests/support/opensearch.rs). Needs Java 17 and Maven. Skips what is there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/opensearch"

if ! command -v java >/dev/null || ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

# The pom and the launcher's source are part of the stamp: changing either reinstalls.
stamp="$(cat "$here/opensearch-pom.xml" "$here/TrawlOpenSearchNode.java" | sha256sum | cut -c1-16)"
if [ -f "$dest/READY" ] && [ "$(cat "$dest/READY")" = "$stamp" ]; then
  exit 0
fi

mkdir -p "$dest"
rm -rf "$dest/lib" "$dest/classes" "$dest/READY"
mvn -q -B -f "$here/opensearch-pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$dest/lib" -DincludeScope=runtime
javac -nowarn -cp "$dest/lib/*" -d "$dest/classes" "$here/TrawlOpenSearchNode.java"
echo "$stamp" > "$dest/READY"
echo "OpenSearch $(ls "$dest/lib" | sed -n 's/^opensearch-\([0-9.]*\)\.jar$/\1/p') installed in $dest"
