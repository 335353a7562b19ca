#!/usr/bin/env bash
# Sets up the build environment, builds mcm-engine (release) and runs it on configs/cores.toml.
# Extra arguments go to mcm-engine (e.g. --stats-interval-ms 1000, -t 9002). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
MCM_SKIP_MIRI=1 scripts/setup_build_env.sh
cargo build --release -p mcm-engine -p mcm-sdk   # the engine, and libmcm_dp for applications
exec "$CARGO_TARGET_DIR/release/mcm-engine" --config configs/cores.toml "$@"
