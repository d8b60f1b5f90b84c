#!/usr/bin/env bash
# Builds a real Kubernetes API server (kube-apiserver) and its store (etcd) from the Go module
# proxy into ${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/kubernetes, where
# tests/support/kube_cluster.rs runs them for the `kubernetes` processor's tests against the
# real API (RBAC, service-account tokens, field selectors, metadata-only watches). The versions
# and every module's checksum are pinned by the go.mod and go.sum files beside this script.
# Needs Go (1.24+ for the API server, 1.26 for etcd 3.6). Skips what is there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kubernetes"
dest="${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/kubernetes"
stamp="$(cat "$here"/*/go.mod "$here"/*/go.sum "$here"/*/tools.go "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [ -f "$dest/READY" ] && [ "$(cat "$dest/READY")" = "$stamp" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "kubernetes.sh: Go is needed to build kube-apiserver and etcd" >&2; exit 1; }

mkdir -p "$dest"
rm -f "$dest/READY"
# Built in a copy of the module folders, so that nothing is written into the repository.
work="$(mktemp -d "$dest/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$here/apiserver" "$here/etcd" "$work/"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# Stripped, without the module paths: they are only run by the tests. The API server reports
# its release on /version as a release build does (clients may look at it).
k8s="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/apiserver/go.mod")"
minor="$(echo "$k8s" | cut -d. -f2)"
v=k8s.io/component-base/version
(cd "$work/apiserver" && go build -trimpath \
  -ldflags="-s -w -X $v.gitVersion=$k8s -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
  -o "$dest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
(cd "$work/etcd" && go build -trimpath -ldflags="-s -w" -o "$dest/etcd" go.etcd.io/etcd/server/v3)
echo "$stamp" > "$dest/READY"
echo "kube-apiserver $("$dest/kube-apiserver" --version 2>/dev/null | awk '{print $2}') and etcd $("$dest/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p') installed in $dest"
