#!/usr/bin/env bash
# Installs a single-node OpenSearch for the Elasticsearch-output tests, from Maven Central
# jars (no distribution tarball): the server, its Netty HTTP transport and log4j-core, plus
# TrawlOpenSearchNode, a small launcher that loads the transport as a classpath plugin.
# Into $TRAWL_SYSTEMS_DIR/opensearch (default /var/cache/trawl-systems/opensearch); tests find
# it there (tests/support/opensearch.rs). And beside it, in opensearch-secure, a node with the
# security plugin (for basic auth): server 2.19.4, the transport as a module, the plugin from
# its Maven Central zip, test certificates. Needs Java 17, Maven, openssl. Skips what is there.
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
if ! { [ -f "$dest/READY" ] && [ "$(cat "$dest/READY")" = "$stamp" ]; }; then
  mkdir -p "$dest"
  rm -rf "$dest/lib" "$dest/classes" "$dest/target" "$dest/READY"
  # Maven runs on a copy of the pom in the cache folder, so that its work files stay out of
  # the repository.
  cp "$here/opensearch-pom.xml" "$dest/pom.xml"
  mvn -q -B -f "$dest/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$dest/lib" -DincludeScope=runtime
  javac -nowarn -cp "$dest/lib/*" -d "$dest/classes" "$here/TrawlOpenSearchNode.java"
  echo "$stamp" > "$dest/READY"
  echo "OpenSearch $(ls "$dest/lib" | sed -n 's/^opensearch-\([0-9.]*\)\.jar$/\1/p') installed in $dest"
fi

secure="${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/opensearch-secure"
stamp="$(cat "$here/opensearch-secure-pom.xml" "$here/TrawlOpenSearchNode.java" "$here/opensearch.sh" | sha256sum | cut -c1-16)"
if [ -f "$secure/READY" ] && [ "$(cat "$secure/READY")" = "$stamp" ]; then
  exit 0
fi
# (Maven's unpack marks what it unpacked; the marks live here too, so that a reinstall unpacks.)
rm -rf "$secure/lib" "$secure/modules" "$secure/plugins" "$secure/security-config" \
  "$secure/classes" "$secure/certs" "$secure/all" "$secure/markers" "$secure/target" \
  "$secure/READY"
mkdir -p "$secure/all" "$secure/lib" "$secure/modules/transport-netty4" "$secure/plugins" "$secure/certs"
cp "$here/opensearch-secure-pom.xml" "$secure/pom.xml"
mvn -q -B -f "$secure/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$secure/all" -DincludeScope=runtime
# The transport is a module here, with its Netty jars: the plugin brings Netty jars of its own,
# which must not meet a second copy on the class path.
mv "$secure"/all/netty-*.jar "$secure"/all/transport-netty4-client-*.jar "$secure/modules/transport-netty4/"
mv "$secure"/all/*.jar "$secure/lib/"
rmdir "$secure/all"
printf '%s\n' "description=Netty 4 based transport implementation" "version=2.19.4" \
  "name=transport-netty4" "classname=org.opensearch.transport.Netty4Plugin" "java.version=11" \
  "opensearch.version=2.19.4" "extended.plugins=" "has.native.controller=false" \
  > "$secure/modules/transport-netty4/plugin-descriptor.properties"
mvn -q -B -f "$secure/pom.xml" dependency:unpack \
  -Dartifact=org.opensearch.plugin:opensearch-security:2.19.4.0:zip \
  -DoutputDirectory="$secure/plugins/opensearch-security" -DmarkersDirectory="$secure/markers"
# Its default security configuration (the demo users, admin:admin among them) is copied into
# each test node's config folder; the plugins folder holds only the plugin.
mv "$secure/plugins/opensearch-security/config" "$secure/security-config"
javac -nowarn -cp "$secure/lib/*:$secure/modules/transport-netty4/*" -d "$secure/classes" \
  "$here/TrawlOpenSearchNode.java"
cd "$secure/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/CN=trawl-test-ca" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
for cn in node admin; do
  openssl req -newkey rsa:2048 -nodes -keyout "$cn.rsa" -out "$cn.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$cn.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$cn.pem" \
    -days 3650 -extfile san.ext 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$cn.rsa" -out "$cn.key"
done
echo "$stamp" > "$secure/READY"
echo "OpenSearch 2.19.4 with the security plugin installed in $secure"
