#!/usr/bin/env bash
# Installs everything the build and the tests need on Debian 12. Idempotent: a second run only checks.
# Usage: scripts/setup_build_env.sh            (as root, or with sudo available)
set -euo pipefail

# System packages: C toolchain for -sys crates and build scripts, pkg-config, iproute2 for netns
# topologies, procps for ps/pgrep in scripts; the real ST 2110 peers of the interop tests
# (GStreamer's rtpvrawpay/rtpvrawdepay and L24 elements, FFmpeg), GStreamer's shmsink/shmsrc
# (in -bad: the local peer of `mcm-perf compare`) and nftables for loss injection; libfabric
# (headers, and its providers and tools) and libclang for bindgen, for ffi/libfabric-sys; cmake
# and OpenSSL's headers for grpcio's bundled gRPC core (the control plane, TLS through Debian's
# libssl).
PACKAGES=(build-essential pkg-config ca-certificates iproute2 procps cmake libssl-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    ffmpeg nftables libfabric-dev libfabric-bin libclang-dev)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # On this image a large install can fail with "cannot access archive": repair and retry once.
    if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        $SUDO apt-get -f install -y -q
        $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# Rust: the toolchain pinned in rust-toolchain.toml, plus nightly's Miri for the ring and pool checks.
if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: rustup is required (https://rustup.rs); install it, then rerun" >&2
    exit 1
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$here/rust-toolchain.toml")"
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal
rustup component list --toolchain "$toolchain" --installed | grep -q '^clippy' || rustup component add --toolchain "$toolchain" clippy
rustup component list --toolchain "$toolchain" --installed | grep -q '^rustfmt' || rustup component add --toolchain "$toolchain" rustfmt
if [ "${MCM_SKIP_MIRI:-0}" != 1 ]; then
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    rustup component list --toolchain nightly --installed | grep -q '^miri' || rustup component add --toolchain nightly miri rust-src
fi
echo "setup: build environment ready"
