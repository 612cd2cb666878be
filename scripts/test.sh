#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests (real binaries, real
# SQLite, systemd-analyze), end-to-end tests in headless Chromium, and the quick
# performance regression check.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --quiet
echo "== release build (the binaries scripts/run.sh starts; the end-to-end tests and perf/run use them)"
scripts/build-release.sh
echo "== end-to-end tests in headless Chromium"
(cd tests/e2e && npm test)
echo "== perf/run --quick"
perf/run --quick
echo "all tests passed"
