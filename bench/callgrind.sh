#!/usr/bin/env bash
# Instructions the server executes per forwarded packet, counted by
# valgrind's callgrind: repeatable where this VM's CPU time is not (the same
# binary and load give the same count within ~1 %, whatever else runs).
#
#   bench/callgrind.sh [BINARY] [SUBSCRIBERS] [SECONDS]
#
# Starts BINARY (default target/release/ferrokit) under callgrind, joins
# 1 audio publisher and SUBSCRIBERS (default 20) subscribers with this
# tree's `ferrokit load-test`, zeroes the counters once the load test
# opens its measurement window (`--settle 8`: joins are not counted), and
# dumps them SECONDS (default 10) later. Prints the instructions, the
# packets the server forwarded in between (its `packet_out` counter) and
# the ratio, and leaves the profile in $OUT (default
# /tmp/ferrokit-callgrind.out.1) for `callgrind_annotate`.
#
# Under valgrind the server runs ~50x slower, so keep the load small: 20
# subscribers is 1,000 packets a second. Counts are user-space only (the
# kernel's send path is not in them) and valgrind hides AVX-512, so
# aws-lc's AES-GCM runs a slower path than on the real CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ferrokit}
SUBS=${2:-20}
SECS=${3:-10}
OUT=${OUT:-/tmp/ferrokit-callgrind.out}
LOADGEN=target/release/ferrokit
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
HTTP=17980 UDP=17982 PROM=17981
CFG=$(mktemp --suffix .yaml)
LOG=$(mktemp)
printf 'prometheus_port: %s\n' "$PROM" > "$CFG"
rm -f "$OUT" "$OUT".*
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" serve --dev \
    --config "$CFG" --port $HTTP --udp-port $UDP > "$LOG" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; rm -f "$CFG"' EXIT
for _ in $(seq 1 120); do
    curl -sf -o /dev/null "http://127.0.0.1:$PROM/metrics" && break
    sleep 0.5
done
forwarded() {
    curl -sf "http://127.0.0.1:$PROM/metrics" | awk '/^livekit_packet_out_total /{print $2}'
}
"$LOADGEN" load-test --url "ws://127.0.0.1:$HTTP" --room callgrind \
    --audio-publishers 1 --subscribers "$SUBS" --settle 8 \
    --duration $((SECS + 10)) --json > "$LOG.lt" 2> "$LOG.err" &
LP=$!
for _ in $(seq 1 600); do
    grep -q measure-start "$LOG.err" && break
    sleep 0.2
done
grep -q measure-start "$LOG.err" || { echo "load test never started measuring: $LOG.err" >&2; exit 1; }
callgrind_control -z $SP > /dev/null 2>&1
P1=$(forwarded)
sleep "$SECS"
P2=$(forwarded)
callgrind_control -d $SP > /dev/null 2>&1
wait $LP || { echo "load test failed: $LOG.err" >&2; exit 1; }
kill $SP; wait $SP 2>/dev/null || true
IR=$(grep -h '^summary:' "$OUT".1 | awk '{print $2}')
python3 - "$IR" "$P1" "$P2" <<'EOF'
import sys
ir, p1, p2 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
n = p2 - p1
print(f"instructions {ir:,}  packets forwarded {n:,.0f}  "
      f"per packet {ir / n:,.0f}" if n else f"instructions {ir:,}, nothing forwarded")
EOF
echo "profile: $OUT.1 (callgrind_annotate --inclusive=yes $OUT.1)"
rm -f "$LOG" "$LOG.lt" "$LOG.err" # kept above only to explain a failure
