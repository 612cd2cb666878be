#!/usr/bin/env bash
# Packs what perf/scaling.sh needs on a machine with no Rust toolchain or ffmpeg (the lent
# 16-core machine): the release binaries, stripped, and the load generator's encoded clips,
# into .scaling-bundle/ (git ignores it; ≈ 35 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-release.sh
b=.scaling-bundle
rm -rf "$b"
mkdir -p "$b/media"
for bin in switchyard-dataplane switchyard-control switchyard-loadgen media-bench; do
  strip -o "$b/$bin" "target/release/$bin"
done
# The clips the load generator encodes with ffmpeg on first use (VP8 600 kbit/s, opus).
clips=${TMPDIR:-/tmp}/switchyard-loadgen-media
if [ ! -f "$clips/vp8-600k-30fps.ivf" ] || [ ! -f "$clips/opus-32k.ogg" ]; then
  target/release/media-bench --loopback --scenario clips \
    --load "--rooms 1 --subscribers 1 --bitrate 600 --duration 1 --settle 0" \
    --out "$b/clips.json" >/dev/null
  rm -f "$b"/clips*.json
fi
cp "$clips/vp8-600k-30fps.ivf" "$clips/opus-32k.ogg" "$b/media/"
du -sh "$b"
