#!/usr/bin/env bash
# The dataplane across cores, on a machine with many (the lent 16-core machine), from the
# bundle perf/scaling-bundle.sh makes: Switchyard on the loopback interface (no namespace,
# iproute2 or Janus needed there), the servers on the first half of the CPUs and the load
# generator on the other half.
#   1. scaling, light: 1, 2, 4 … half the CPUs, each core with $PER_CORE (rooms × the count)
#   2. one core, ramp: one 600 kbit/s publisher, subscribers added until loss or latency
#      ends it — how many subscribers one core carries (issue 7's 2,500)
#   3. scaling, heavy: $HEAVY per core on 1, 2, 4 cores (the load generator's half of the
#      machine cannot drive more at that load)
# Figures are printed (and kept in $OUT/log.txt); the reports go into $OUT/results.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
b=${BUNDLE:-.scaling-bundle}
out=${OUT:-/tmp/switchyard-scaling}
res=$(mktemp -d)
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
# Thousands of load-generator sessions, a UDP socket each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
n=$(nproc)
h=$((n / 2))
[ "$h" -ge 1 ] || h=1
echo "== $n CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); kernel $(uname -r);" \
  "io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo absent); memlock $(ulimit -l); open files $(ulimit -n)"
mkdir -p "${TMPDIR:-/tmp}/switchyard-loadgen-media"
cp "$b"/media/* "${TMPDIR:-/tmp}/switchyard-loadgen-media/"
PER_CORE=${PER_CORE:-"--rooms 5 --subscribers 100 --bitrate 600 --duration 8 --settle 2 --join-rate 250"}
HEAVY=${HEAVY:-"--rooms 10 --subscribers 100 --bitrate 600 --duration 8 --settle 2 --join-rate 250"}
# Ends at loss (issue 7 asks for no loss), not at latency: one core's fan-out of a packet
# to thousands is serial, so the last copy's latency grows with the count.
RAMP=${RAMP:-"--scenario ramp --rooms 1 --publishers 1 --subscribers 500 --ramp-step 250 --ramp-interval 4 --bitrate 600 --max-subscribers 3500 --join-rate 250 --loss-limit 0.005 --latency-limit-ms 1000"}
counts=1
c=2
while [ "$c" -le "$h" ]; do counts="$counts,$c"; c=$((c * 2)); done
heavy=1
c=2
while [ "$c" -le "$h" ] && [ "$c" -le 4 ]; do heavy="$heavy,$c"; c=$((c * 2)); done
gen="$h-$((n - 1))"
[ "$n" -ge 2 ] || gen=0
mb=("$b/media-bench" --loopback --loadgen "$b/switchyard-loadgen"
  --control "$b/switchyard-control" --dataplane "$b/switchyard-dataplane")
rc=0
echo "== 1. scaling, light ($counts cores)"
"${mb[@]}" --scaling "$counts" --server-cpus "0-$((h - 1))" --loadgen-cpus "$gen" \
  --scenario scale-light --load "$PER_CORE" --out "$res/scaling-light.json" || rc=1
echo "== 2. one core, ramp"
"${mb[@]}" --server-cpus 0 --loadgen-cpus "$([ "$n" -ge 2 ] && echo "1-$((n - 1))" || echo 0)" \
  --scenario ramp-1core --load "$RAMP" --out "$res/ramp.json" || rc=1
echo "== 3. scaling, heavy ($heavy cores)"
"${mb[@]}" --scaling "$heavy" --server-cpus "0-$((h - 1))" --loadgen-cpus "$gen" \
  --scenario scale-heavy --load "$HEAVY" --out "$res/scaling-heavy.json" || rc=1
tar czf "$out/results.tgz" -C "$res" .
rm -rf "$res"
exit $rc
