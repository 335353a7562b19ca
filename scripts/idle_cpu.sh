#!/usr/bin/env bash
# Measures the CPU an idle mcm-engine uses: starts the release build on configs/cores.toml (or
# $MCM_CONFIG) with a private socket and directory, lets it idle for N seconds (default 30), and
# reports user+system CPU time per thread and in total, as a percentage of one core.
# Usage: scripts/idle_cpu.sh [SECONDS] [extra mcm-engine flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
secs="${1:-30}"; shift || true
cargo build --release -q -p mcm-engine
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$CARGO_TARGET_DIR/release/mcm-engine" --config "${MCM_CONFIG:-configs/cores.toml}" \
    --shm-dir "$dir/shm" -t 127.0.0.1:0 -g 127.0.0.1:0 --stats-interval-ms 0 "$@" 2>"$dir/log" &
pid=$!
sleep 1
# schedstat's first field: nanoseconds this task has run on a CPU.
ns() { awk '{print $1}' "$1/schedstat"; }
declare -A before
for t in /proc/$pid/task/*; do before[$t]=$(ns "$t"); done
sleep "$secs"
printf '%-16s %12s %9s\n' thread cpu_ms "% core"
total=0
for t in /proc/$pid/task/*; do
    d=$(( $(ns "$t") - ${before[$t]:-0} ))
    total=$(( total + d ))
    awk -v n="$(cat "$t/comm")" -v d="$d" -v s="$secs" \
        'BEGIN { printf "%-16s %12.3f %8.4f%%\n", n, d/1e6, 100*d/1e9/s }'
done
awk -v d="$total" -v s="$secs" 'BEGIN { printf "%-16s %12.3f %8.4f%%  (over %d s)\n", "total", d/1e6, 100*d/1e9/s, s }'
kill -TERM "$pid"; wait "$pid"
