#!/usr/bin/env bash
# Builds the image of docker/Dockerfile on a machine without Docker or a registry: a Debian base
# made here with debootstrap, the binaries of `cargo build --release` in place of the Dockerfile's
# `build` stage, and buildah (chroot isolation, vfs storage: no daemon, no overlay mounts).
# Prints the image name. Usage: scripts/build-image.sh [TAG]   (default localhost/trawl:dev)
# The storage lives in target/containers; run the image with the same flags (see README):
#   podman --root target/containers/root --runroot target/containers/run --storage-driver vfs \
#     run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --cap-add NET_RAW \
#     localhost/trawl:dev
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/trawl:dev}
SUITE=bookworm # the Dockerfile's debian:bookworm-slim
BASE=localhost/trawl-base:$SUITE
STORE=$PWD/target/containers
STORAGE=(--root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs)
mkdir -p "$STORE"
for tool in buildah podman debootstrap runc; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is missing (apt-get install buildah podman runc debootstrap)" >&2; exit 1; }
done

# The base: a minimal Debian of the same release as the Dockerfile's, made once.
if ! podman "${STORAGE[@]}" image exists "$BASE"; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase "$SUITE" "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
  # What debian:*-slim drops: documentation and the apt lists.
  rm -rf "$rootfs"/usr/share/{doc,man,info}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | podman "${STORAGE[@]}" import --change 'CMD ["bash"]' - "$BASE" >&2
  rm -rf "$rootfs"
  trap - EXIT
fi

# The binary the Dockerfile's `build` stage makes (there with LTO and PGO).
CTX=target/image-binaries
mkdir -p "$CTX/out"
cargo build --release >&2
install -m755 target/release/trawl "$CTX/out/trawl"
strip "$CTX/out/trawl"

buildah "${STORAGE[@]}" build --isolation chroot --layers=false \
  --build-context "build=$CTX" --build-arg "BASE=$BASE" \
  -f docker/Dockerfile -t "$TAG" . >&2
echo "$TAG"
