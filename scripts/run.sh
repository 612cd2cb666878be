#!/usr/bin/env bash
# Sets up, builds and starts the whole Switchyard service on this machine, on the
# embedded store (no database or broker to install). Ctrl-C stops it.
#
# The config is run/switchyard.toml (written on first start from the defaults, with the
# data directory under run/); edit it and start again to change ports or addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "building (release)…"
scripts/build-release.sh

mkdir -p run
config="$PWD/run/switchyard.toml"
if [ ! -f "$config" ]; then
  target/release/switchyard-control --print-default-config |
    sed -e "s|^data_dir = .*|data_dir = \"$PWD/run/data\"|" -e "s|^enabled = false|enabled = true|" > "$config"
  echo "wrote $config"
fi

target/release/switchyard-control --config "$config" --check-config >/dev/null
target/release/switchyard-dataplane --config "$config" --check >/dev/null
target/release/switchyard-mixer --config "$config" --check >/dev/null
target/release/switchyard-dataplane --config "$config" &
dataplane=$!
target/release/switchyard-mixer --config "$config" &
mixer=$!
target/release/switchyard-control --config "$config" &
control=$!
trap 'kill -TERM $control $mixer $dataplane 2>/dev/null; wait $control $mixer $dataplane 2>/dev/null' INT TERM EXIT

port=$(sed -n '/^\[management-api\]/,/^\[/s/^port *= *\([0-9]*\).*/\1/p' "$config" | head -1)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 && break
  kill -0 $control 2>/dev/null || { echo "switchyard-control did not start (see above)"; exit 1; }
  kill -0 $dataplane 2>/dev/null || { echo "switchyard-dataplane did not start (see above)"; exit 1; }
  kill -0 $mixer 2>/dev/null || { echo "switchyard-mixer did not start (see above)"; exit 1; }
  sleep 0.1
done
data_dir=$(sed -n 's/^data_dir *= *"\(.*\)"/\1/p' "$config")

cat <<BANNER

Switchyard is running.
  demo page           http://localhost:${port}/   (publish your camera over WHIP, play over WHEP)
  conference page     http://localhost:${port}/conference   (join a room with others over the client portal)
  management API      http://localhost:${port}/v1
  OpenAPI document    http://localhost:${port}/v1/openapi.json
  Prometheus metrics  http://localhost:${port}/metrics  (dataplane: http://$(sed -n 's/^metrics_address = "\(.*\)"/\1/p' "$config")/metrics)
  super service       ${data_dir}/super-service.json  (id and key; mode 0600)
  config              ${config}

Try it:
  target/release/switchyard-admin --url http://localhost:${port} --credentials ${data_dir}/super-service.json rooms create demo
  target/release/switchyard-admin --url http://localhost:${port} --credentials ${data_dir}/super-service.json rooms list

Ctrl-C stops it.
BANNER
wait -n $control $mixer $dataplane
