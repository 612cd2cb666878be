#!/usr/bin/env bash
# Installs what building, running and testing Switchyard needs on Debian 12.
# Idempotent: installs only what is missing; safe to run on every build.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential   # cc for the bundled SQLite and ring; make
  pkg-config
  ca-certificates
  curl              # rustup (if cargo is missing), tests
  openssl           # tests make throwaway TLS certificates
  systemd           # systemd-analyze verifies the unit files
  chromium          # end-to-end tests in a real browser (headless)
  ffmpeg            # the load generator encodes its clips with libvpx, libx264, libopus
  janus             # the peer perf/run measures side by side
  iproute2          # perf/run's network namespace and veth pair
  nftables          # e2e: random loss on a client's path (this kernel has no netem)
  util-linux        # taskset
  cmake             # the mixer's bundled libopus
  nasm              # openh264's assembly (without it the mixer's H.264 is ~3x slower)
  libvpx-dev        # the mixer's VP8 decoder and encoder
)
# Node.js for the browser tests' driver (playwright-core); any 18+ will do.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# The browser tests' npm packages (pinned by tests/e2e/package-lock.json).
if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/socket.io-client ]; then
  echo "setup: installing the browser tests' npm packages"
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
