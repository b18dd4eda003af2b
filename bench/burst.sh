#!/usr/bin/env bash
# 0 -> BURST hello-cpp instances in one burst of BURST calls (bench/burst.cc: one process, BURST
# connections made first, the calls sent at once), REPEATS times, each against a fresh server
# (so each burst starts from zero instances) started with the extra `thaw serve` arguments.
# Each call holds its instance HOLD_MS (concurrency 1), so every call needs an instance of its
# own; the start figure is the time to the response less that hold. Prints one line per run and
# the medians. Usage: [SHELLS=N] [FORK_CGROUPS=N] [SERVER_BIN=path] bench/burst.sh [BURST]
# [REPEATS] [-- ARGS...] (ARGS: of `thaw serve`; SHELLS: wait for that many ready shells before
# the burst; FORK_CGROUPS: for the function's template and that many cgroups made for its forks;
# with templates on, hello-cpp's instances are forks of its template).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/shells.sh
BURST=${1:-100}
REPEATS=${2:-3}
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
HOLD_MS=${HOLD_MS:-1000}
PY=/usr/bin/python3
# Another build of thaw to measure (not THAW_*: thaw reads those as its config).
SERVER_BIN=${SERVER_BIN:-build/thaw}
work=$(mktemp -d /tmp/thaw-burst-XXXXXX)
thaw_pid=
stop_thaw() {
  [ -n "$thaw_pid" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  thaw_pid=
}
cleanup() {
  stop_thaw
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
percentile() {  # P < numbers, one a line (seconds) -> ms
  sort -n | awk -v p="$1" '{v[NR]=$1} END {i=int((p*NR+99)/100); if(i<1)i=1; printf "%.1f", v[i]*1000}'
}
median() { sort -n | awk '{v[NR]=$1} END {printf "%s", v[int((NR+1)/2)]}'; }
mkdir -p "$work/fn"
cp build/examples/hello-cpp/bootstrap "$work/fn/"
printf 'name: burst\nruntime: cpp\nmax_instances: %s\nmemory_mb: 64\n' "$BURST" > "$work/fn/thaw.yaml"
: > "$work/runs.txt"
for run in $(seq "$REPEATS"); do
  rm -rf "$work/data"
  wait_idle
  "$SERVER_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
    --node-memory-mb 1000000 --max-queue 10000 "$@" > "$work/thaw.log" 2>&1 &
  thaw_pid=$!
  for _ in $(seq 600); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
  THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1 || true)
  [ -n "$THAW" ] || { echo "thaw did not start:"; cat "$work/thaw.log"; exit 1; }
  KEY=$(cat "$work/data/admin.key")
  "$SERVER_BIN" --server "$THAW" --api-key "$KEY" deploy "$work/fn" > /dev/null
  # The spawner's ready shells (its children before any start), as on a node that has been
  # idle: SHELLS of them prepared (waiting for a request on their socket) when the server keeps
  # more than the default (--ready-shells).
  spawner=$(ps -o pid= --ppid "$thaw_pid" | head -1 | tr -d ' ')
  [ -n "${FORK_CGROUPS:-}" ] && wait_fork_cgroups "$spawner" "$FORK_CGROUPS"
  wait_ready_shells "$spawner" "${SHELLS:-0}"
  build/bench/burst "${THAW#http://}" "$KEY" /v1/functions/burst/invoke \
    "{\"sleep_ms\":$HOLD_MS}" "$BURST" > "$work/burst.txt"
  ok=$(grep -c '^200 ' "$work/burst.txt" || true)
  p50=$(awk -v h="$HOLD_MS" '{print $2 - h / 1000}' "$work/burst.txt" | percentile 50)
  p99=$(awk -v h="$HOLD_MS" '{print $2 - h / 1000}' "$work/burst.txt" | percentile 99)
  ready=$(curl -s -H "Authorization: Bearer $KEY" "$THAW/v1/functions/burst" |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["instances"]["ready"])')
  echo "run $run: $ok/$BURST answered 200, $ready instances ready after; start p50 $p50 ms, p99 $p99 ms"
  echo "$ok $p50 $p99 $ready" >> "$work/runs.txt"
  stop_thaw
done
echo "median of $REPEATS: $(cut -d' ' -f1 "$work/runs.txt" | median)/$BURST answered 200," \
  "$(cut -d' ' -f4 "$work/runs.txt" | median) instances;" \
  "start p50 $(cut -d' ' -f2 "$work/runs.txt" | median) ms," \
  "p99 $(cut -d' ' -f3 "$work/runs.txt" | median) ms"
