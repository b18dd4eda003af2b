#!/usr/bin/env bash
# Density and burst, against one jailed thaw server: 0 -> 100 hello-cpp instances in one burst,
# 500 warm instances, 1,000 deployed functions. Prints a markdown section (bench/run.sh adds it
# to docs/benchmarks.md). Usage: bench/density.sh [BURST] [WARM] [FUNCTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
BURST=${1:-100}
WARM=${2:-500}
FUNCS=${3:-1000}
PY=/usr/bin/python3
. bench/shells.sh
work=$(mktemp -d /tmp/thaw-density-XXXXXX)
cleanup() {
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Room for every instance asked for here, whatever the machine's memory.
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
  --node-memory-mb 1000000 --max-queue 10000 > "$work/thaw.log" 2>&1 &
thaw_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
KEY=$(cat "$work/data/admin.key")
T="build/thaw --server $THAW --api-key $KEY"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$thaw_pid/status"; }
ready() {
  curl -s -H "Authorization: Bearer $KEY" "$THAW/v1/functions/$1" |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["instances"]["ready"])'
}
percentile() {  # P < numbers, one a line (seconds) -> ms
  sort -n | awk -v p="$1" '{v[NR]=$1} END {i=int((p*NR+99)/100); if(i<1)i=1; printf "%.1f", v[i]*1000}'
}

# --- 0 -> BURST: every call of one burst needs an instance of its own (concurrency 1) ---
mkdir -p "$work/burst"
cp build/examples/hello-cpp/bootstrap "$work/burst/"
printf 'name: burst\nruntime: cpp\nmax_instances: %s\nmemory_mb: 64\n' "$BURST" > "$work/burst/thaw.yaml"
$T deploy "$work/burst" > /dev/null
# Each call holds its instance HOLD_MS, so the calls overlap and each needs an instance; the
# start figure is the time to the response less that hold. bench/burst.cc makes the BURST
# connections first and then sends every call at once from one process.
HOLD_MS=1000
sleep 1  # the spawner's ready shells, as on a node that has been idle
build/bench/burst "${THAW#http://}" "$KEY" /v1/functions/burst/invoke "{\"sleep_ms\":$HOLD_MS}" \
  "$BURST" > "$work/burst.txt"
burst_ok=$(grep -c '^200 ' "$work/burst.txt" || true)
burst_p50=$(awk -v h=$HOLD_MS '{print $2 - h / 1000}' "$work/burst.txt" | percentile 50)
burst_p99=$(awk -v h=$HOLD_MS '{print $2 - h / 1000}' "$work/burst.txt" | percentile 99)
burst_instances=$(ready burst)

# --- WARM warm instances: thaw's own memory per instance ---
rss0=$(rss_kb)
mkdir -p "$work/warm"
cp build/examples/hello-cpp/bootstrap "$work/warm/"
printf 'name: warm\nruntime: cpp\nmin_instances: %s\nmax_instances: %s\nmemory_mb: 64\n' \
  "$WARM" "$WARM" > "$work/warm/thaw.yaml"
start=$(date +%s.%N)
$T deploy "$work/warm" > /dev/null
deployed=$(date +%s.%N)
for _ in $(seq 1200); do [ "$(ready warm)" -ge "$WARM" ] && break; sleep 0.1; done
all_ready=$(date +%s.%N)
warm_ready=$(ready warm)
rss1=$(rss_kb)
per_instance=$(( (rss1 - rss0) / WARM ))
deploy_ms=$(awk -v a="$start" -v b="$deployed" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
ready_s=$(awk -v a="$start" -v b="$all_ready" 'BEGIN { printf "%.1f", b - a }')
$T rm warm > /dev/null

# --- FUNCS deployed functions: memory per idle function, GET /v1/functions ---
for _ in $(seq 600); do [ "$(ready warm 2>/dev/null || echo 0)" = 0 ] && break; sleep 0.1; done
rss2=$(rss_kb)
mkdir -p "$work/fn"
cp examples/hello-python/app.py "$work/fn/"
for i in $(seq "$FUNCS"); do
  printf 'name: fn%s\nruntime: python3\nhandler: app.handler\n' "$i" > "$work/fn/thaw.yaml"
  $T deploy "$work/fn" > /dev/null
done
rss3=$(rss_kb)
per_function=$(( (rss3 - rss2) * 1024 / FUNCS ))
# Each python3 deploy made a template (and its spare fork): listed once they are idle, not while
# a thousand interpreters still import on the same two cores.
idle_from=$(date +%s)
wait_idle 600
settle_s=$(( $(date +%s) - idle_from ))
for _ in $(seq 20); do
  curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $KEY" "$THAW/v1/functions"
done > "$work/list.txt"
list_p50=$(percentile 50 < "$work/list.txt")

cat <<DOC

## Density and burst

bench/density.sh, one jailed server. Memory figures are thaw's own resident set (VmRSS of
\`thaw serve\`; instances are processes of their own and not in it).

| | measured | target |
|---|---|---|
| 0 → $BURST hello-cpp, one burst of $BURST calls (bench/burst.cc: $BURST connections, the calls sent at once, each holding its instance ${HOLD_MS} ms), concurrency 1 | $burst_ok/$BURST answered 200, $burst_instances instances ready after; time to response less the hold: p50 ${burst_p50} ms, p99 ${burst_p99} ms | all 200, p99 start ≤ 50 ms |
| $WARM warm hello-cpp instances (\`min_instances\`) | $warm_ready ready ${ready_s} s after the deploy began (the deploy answered in ${deploy_ms} ms); thaw RSS +$(( (rss1 - rss0) / 1024 )) MB: **${per_instance} KB per instance** | ≤ 64 KB |
| $FUNCS deployed hello-python functions, idle | thaw RSS +$(( (rss3 - rss2) / 1024 )) MB: **$(( per_function / 1024 )) KB per function**; \`GET /v1/functions\` p50 ${list_p50} ms (once the machine was idle, ${settle_s} s after the last deploy) | ≤ 10 KB; ≤ 20 ms |
DOC
