# Sourced by the scripts: one persistent cargo target dir outside the clone, so repeated runs
# (and CI on a fresh clone) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcm-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
