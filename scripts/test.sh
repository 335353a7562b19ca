#!/usr/bin/env bash
# Sets up the build environment and runs the whole test suite: formatting, lints, unit and
# integration tests, the loom model of the SPSC ring, and Miri over the ring and pool code.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup_build_env.sh

step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, integration, real engine binary)"
cargo test --workspace

step "loom model of the SPSC ring"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$CARGO_TARGET_DIR-loom" \
    cargo test -p mcm-proto --release --lib loom

step "soak: one minute of the realistic mix, then leak and counter checks"
scripts/soak.sh "${MCM_SOAK_SECONDS:-60}"

if [ "${MCM_SKIP_MIRI:-0}" != 1 ]; then
    step "Miri over the shared-memory ring and the pool's slot access (heap-backed tests)"
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR-miri" MIRIFLAGS="-Zmiri-disable-isolation" \
        cargo +nightly miri test -p mcm-proto --lib -- shm::ring shm::pool::tests::heap
fi
if [ "${MCM_SKIP_FUZZ:-0}" != 1 ]; then
    step "fuzz smoke: every ST 2110 parser's cargo-fuzz target, bounded runs over its seeds"
    scripts/fuzz_smoke.sh
fi
step "all tests passed"
