#!/usr/bin/env bash
# Builds the image of docker/Dockerfile on a machine without Docker or a registry, with buildah
# (chroot isolation, vfs storage: no daemon, no overlay mounts) on a Debian base made here with
# debootstrap. Prints the image name.
# Usage: scripts/build-image.sh [--from-source] [TAG]   (default localhost/trawl:dev)
#  - by default the Dockerfile's `build` stage is replaced (`--build-context build=...`) by the
#    binaries of `cargo build --release` (or $TRAWL_BIN) and scripts/build-forwarder.sh: seconds;
#  - --from-source runs the whole Dockerfile, `build` stage included, as a Docker host would:
#    its `FROM rust:1-bookworm` is made here (the base, a C toolchain, this machine's Rust
#    toolchain) and the stage downloads crates and builds trawl as shipped (LTO, PGO; PGO=0 to
#    skip the profile). Measured here with PGO=0 on 2 busy cores: 37 minutes, from the debootstrap
#    base to the tagged image; with PGO, about twice the build.
# The storage lives in target/containers; run the image with the same flags (see README):
#   podman --root target/containers/root --runroot target/containers/run --storage-driver vfs \
#     run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/trawl:dev
set -euo pipefail
cd "$(dirname "$0")/.."
FROM_SOURCE=0
if [ "${1:-}" = --from-source ]; then FROM_SOURCE=1; shift; fi
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
  # mktemp's 0700 would become the image's `/`: no user but root could reach any file.
  chmod 0755 "$rootfs"
  debootstrap --variant=minbase "$SUITE" "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
  # What debian:*-slim drops: documentation and the apt lists.
  rm -rf "$rootfs"/usr/share/{doc,man,info}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  # The PATH of Debian's official images: an imported tarball has no environment at all.
  tar -C "$rootfs" -c . | podman "${STORAGE[@]}" import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >&2
  rm -rf "$rootfs"
  trap - EXIT
fi

if [ "$FROM_SOURCE" = 1 ]; then
  # The official rust:1-bookworm is Debian with buildpack-deps' C toolchain and rustup's Rust
  # in /usr/local; this one copies in the toolchain this machine builds with. Tagged with the
  # name Docker resolves `rust:1-bookworm` to, so the Dockerfile is used unchanged.
  RUST_BASE=docker.io/library/rust:1-bookworm
  if ! podman "${STORAGE[@]}" image exists "$RUST_BASE"; then
    sysroot=$(rustc --print sysroot)
    toolchain=$(basename "$(realpath "$sysroot")")
    bin=$(dirname "$(command -v rustup)")
    ctr=$(buildah "${STORAGE[@]}" from --pull=never "$BASE")
    trap 'buildah "${STORAGE[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
    buildah "${STORAGE[@]}" run --isolation chroot "$ctr" -- sh -c \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential ca-certificates curl git >/dev/null && rm -rf /var/lib/apt/lists/*' >&2
    # This machine's own certificate authorities (a TLS-intercepting proxy's, say): without
    # them rustup and cargo in the build stage cannot reach static.rust-lang.org or crates.io.
    for ca in /usr/local/share/ca-certificates/*.crt; do
      [ -f "$ca" ] && buildah "${STORAGE[@]}" copy "$ctr" "$ca" /usr/local/share/ca-certificates/ >&2
    done
    buildah "${STORAGE[@]}" run --isolation chroot "$ctr" -- update-ca-certificates >&2
    buildah "${STORAGE[@]}" copy "$ctr" "$(realpath "$sysroot")" "/usr/local/rustup/toolchains/$toolchain" >&2
    for tool in rustup cargo rustc rustdoc rust-gdb rust-lldb cargo-clippy clippy-driver rustfmt cargo-fmt; do
      [ -e "$bin/$tool" ] && buildah "${STORAGE[@]}" copy "$ctr" "$bin/$tool" "/usr/local/cargo/bin/$tool" >&2
    done
    buildah "${STORAGE[@]}" config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
      --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    buildah "${STORAGE[@]}" run --isolation chroot "$ctr" -- rustup default "$toolchain" >&2
    buildah "${STORAGE[@]}" commit --rm "$ctr" "$RUST_BASE" >&2
    trap - EXIT
  fi
  buildah "${STORAGE[@]}" build --isolation chroot --layers=false --pull=never \
    --build-arg "BASE=$BASE" --build-arg "PGO=${PGO:-1}" \
    -f docker/Dockerfile -t "$TAG" . >&2
  echo "$TAG"
  exit 0
fi

# The binaries the Dockerfile's `build` stage makes (trawl there with LTO and PGO).
CTX=target/image-binaries
mkdir -p "$CTX/out"
if [ -z "${TRAWL_BIN:-}" ]; then
  cargo build --release >&2
  TRAWL_BIN=target/release/trawl
fi
install -m755 "$TRAWL_BIN" "$CTX/out/trawl"
strip "$CTX/out/trawl"
install -m755 "$(scripts/build-forwarder.sh)" "$CTX/out/trawl-forward"

buildah "${STORAGE[@]}" build --isolation chroot --layers=false \
  --build-context "build=$CTX" --build-arg "BASE=$BASE" \
  -f docker/Dockerfile -t "$TAG" . >&2
echo "$TAG"
