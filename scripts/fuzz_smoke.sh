#!/usr/bin/env bash
# Bounded smoke run of every cargo-fuzz target in proto/fuzz and engine/fuzz: builds the fuzz
# crates (nightly, AddressSanitizer, debug assertions on) and runs each target over its seed
# corpus for a bounded number of executions. A crash fails the script once the other targets
# have run; libFuzzer leaves the reproducer in proto/fuzz/artifacts/<target>/
# (engine/fuzz/artifacts/<target>/ for convert).
# Usage: scripts/fuzz_smoke.sh [target...]      (default: every target)
# Env:   MCM_FUZZ_RUNS (default 20000), MCM_FUZZ_SECS (default 15) bound each target's run;
#        MCM_FUZZ_SEED (default 1) fixes libFuzzer's random seed so a CI run is repeatable.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcm-target}-fuzz"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
runs="${MCM_FUZZ_RUNS:-20000}"
secs="${MCM_FUZZ_SECS:-15}"
seed="${MCM_FUZZ_SEED:-1}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz_smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# New inputs go to a scratch directory (the first corpus directory), so the committed seeds
# under corpus/<target>/ stay as they are.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
ran=0
failed=()
for crate in proto/fuzz engine/fuzz; do
    (cd "$crate" && cargo +nightly fuzz build)
    for t in $(cd "$crate" && cargo +nightly fuzz list); do
        if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$t"; then continue; fi
        printf '\n=== fuzz %s/%s (-runs=%s -max_total_time=%s)\n' "$crate" "$t" "$runs" "$secs"
        mkdir -p "$scratch/$t"
        if (cd "$crate" && cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
            -runs="$runs" -max_total_time="$secs" -seed="$seed" -print_final_stats=1); then
            ran=$((ran + 1))
        else
            failed+=("$crate/$t")
        fi
    done
done
if [ ${#failed[@]} -gt 0 ]; then
    printf '\n=== fuzz smoke: %d passed, FAILED: %s (reproducers in <crate>/artifacts/<target>/)\n' \
        "$ran" "${failed[*]}" >&2
    exit 1
fi
printf '\n=== fuzz smoke: %d targets passed\n' "$ran"
