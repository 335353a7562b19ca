#!/usr/bin/env bash
# Soak: a realistic mix against one engine (local fan-out with receivers that join, leave,
# crash and hang; ST 2110-20 and -30 streams; TCP clients), then leak and counter checks.
# Usage: scripts/soak.sh [SECONDS] [--release]   (default 60 s, debug build; CI runs 60 s)
# Prints a JSON summary; exits 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
secs="${1:-60}"
profile=debug
flags=()
if [ "${2:-}" = --release ]; then profile=release; flags=(--release); fi
cargo build -q "${flags[@]}" -p mcm-engine -p mcm-perf
lcore=1
[ "$(nproc)" -lt 2 ] && lcore=0
exec "$CARGO_TARGET_DIR/$profile/mcm-perf" soak --duration-s "$secs" --lcores "$lcore" --control-cpu 0
