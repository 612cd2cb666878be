#!/usr/bin/env bash
# Builds the release binaries: the service (control, dataplane, mixer), its admin
# tool, the load generator and the benchmarks. scripts/run.sh, scripts/test.sh (for the
# end-to-end tests) and perf/run all call this, so one build serves all three: cargo
# unifies features over the packages it builds together, and a different set would
# rebuild everything with fat LTO (≈ 15 minutes on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet \
  -p switchyard-control -p switchyard-dataplane -p switchyard-mixer -p switchyard-admin \
  -p switchyard-loadgen -p switchyard-perf
