#!/usr/bin/env bash
# How many 1080p59.94 10-bit ST 2110-20 streams one lcore carries: starts one release engine
# (one lcore on CPU 1, the given idle policy) and K `mcm-perf st2110 --no-grade` runs at once,
# each its own SDK sender, multicast group and SDK receiver (tx and rx sessions of all K
# streams on the one lcore), the tools on CPU 0. Prints, per K, every stream's delivered
# frames/s, frames received, lost packets and late packets.
#
# Usage: [IDLE=busy] [PACING=wide] scripts/st2110_streams.sh [FRAMES] [K...]
#   e.g. scripts/st2110_streams.sh 600 1 2 3 4
# Needs: cargo build --release -p mcm-perf -p mcm-engine (binaries under $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/release"
FRAMES="${1:-600}"; shift || true
KS=("${@:-1 2 3 4}")
[ "${#KS[@]}" -eq 1 ] && read -r -a KS <<<"${KS[0]}"
IDLE="${IDLE:-adaptive}"
PACING="${PACING:-narrow}"
for k in "${KS[@]}"; do
  dir=$(mktemp -d)
  cat >"$dir/cores.toml" <<CFG
[lcores]
cpus = [1]
idle = "$IDLE"
[control]
cpu = 0
stats_interval_ms = 0
[sdk]
tcp = "127.0.0.1:0"
[grpc]
addr = "127.0.0.1:0"
[memory]
shm_dir = "$dir/shm"
CFG
  "$BIN/mcm-engine" --config "$dir/cores.toml" --log-level warn &
  engine=$!
  for _ in $(seq 100); do [ -S "$dir/shm/sdk.sock" ] && break; sleep 0.05; done
  cpu0=$(awk '{print $14+$15}' /proc/$engine/stat)
  pids=()
  for i in $(seq "$k"); do
    taskset -c 0 "$BIN/mcm-perf" st2110 --socket "$dir/shm/sdk.sock" --no-grade --json \
      --frames "$FRAMES" --pacing "$PACING" --group "239.77.1.$i" >"$dir/s$i.json" 2>"$dir/s$i.err" &
    pids+=($!)
  done
  ok=1
  for p in "${pids[@]}"; do wait "$p" || ok=0; done
  cpu1=$(awk '{print $14+$15}' /proc/$engine/stat)
  kill "$engine"; wait "$engine" 2>/dev/null || true
  ticks=$(getconf CLK_TCK)
  echo "K=$k $PACING streams on one lcore ($IDLE): engine CPU $(echo "scale=2; ($cpu1-$cpu0)/$ticks" | bc) s"
  for i in $(seq "$k"); do
    python3 - "$dir/s$i.json" "$FRAMES" <<'PY' || { echo "  stream $i failed: $(tail -2 "${1:-/dev/null}" 2>/dev/null)"; ok=0; }
import json, sys
v = json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][-1])
tx = [b for b in v["bridges"] if b["group"].startswith("st2110-tx")][0]
rx = [b for b in v["bridges"] if b["group"].startswith("st2110-rx")][0]
print(f'  {tx["group"][12:]}: {v["frames_per_s"]:.2f} frames/s delivered, {v["received"]}/{sys.argv[2]} frames, '
      f'lost {rx["packets_lost"]}, incomplete {rx["frames_incomplete"]}, socket drops {rx.get("socket_drops", 0)}, '
      f'late {tx["packets_late"]} of {tx["packets"]} packets, p99 latency {v["latency_us"]["p99"]:.0f} us')
PY
  done
  [ "$ok" = 1 ] || cat "$dir"/s*.err | tail -5
  rm -rf "$dir"
done
