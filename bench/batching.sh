#!/usr/bin/env bash
# Dynamic batching, side by side in one run: digits-torch (no batching) and
# digits-torch-batched (the same handler and model.pt with batch: {max_size: 16,
# max_wait_ms: 5}) under 64 concurrent clients, and at one client. Prints a docs/benchmarks.md
# section on stdout (bench/run.sh appends it); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_BATCH_DURATION:-10s}
WARM=${BENCH_BATCH_WARMUP:-20s}
CONNS=${BENCH_BATCH_CONNECTIONS:-64}
work=$(mktemp -d /tmp/thaw-bench-batch-XXXXXX)
load=$(cut -d' ' -f1-3 /proc/loadavg)
cleanup() {
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Long init and queue timeouts: torch's import takes seconds on a loaded machine, and the
# warm-up starts instances while 64 clients wait.
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
  --init-timeout-ms 120000 --queue-timeout-ms 60000 > "$work/thaw.log" 2>&1 &
thaw_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
export BENCH_API_KEY=$(cat "$work/data/admin.key")
T="build/thaw --server $THAW --api-key $BENCH_API_KEY"
$T deploy build/examples/digits-torch > /dev/null
$T deploy build/examples/digits-torch-batched > /dev/null

wrk_run() {  # url, connections, duration -> "rps p50 p99 non2xx"
  local out rps p50 p99 bad
  # A long timeout: wrk's 2 s default would drop calls waiting for torch's import, and the
  # server would still run them.
  out=$(wrk -t1 -c"$2" -d"$3" --timeout 60s --latency -s bench/wrk_digits.lua "$1")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  echo "$rps $p50 $p99 ${bad:-0}"
}
to_us() {  # wrk latency like 812.00us / 1.20ms / 2.00s -> microseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}
settle() {  # waits (up to 3 minutes) until function $1 has no instance starting
  for _ in $(seq 360); do
    curl -s -H "Authorization: Bearer $BENCH_API_KEY" "$THAW/v1/functions/$1" |
      grep -q '"starting":0' && return 0
    sleep 0.5
  done
}
instances() {  # ready instances of function $1
  curl -s -H "Authorization: Bearer $BENCH_API_KEY" "$THAW/v1/functions/$1" |
    sed -n 's/.*"ready":\([0-9]*\).*/\1/p' | head -1
}

for fn in digits-torch digits-torch-batched; do
  $T invoke "$fn" '{"images":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}' > /dev/null
  echo "batching: warming $fn up under $CONNS clients for $WARM..." >&2
  wrk_run "$THAW/v1/functions/$fn/invoke" "$CONNS" "$WARM" > /dev/null
  settle "$fn"  # scale-out done: no torch import competes with the measured run
done
echo "batching: $CONNS clients, $DUR each..." >&2
read -r u_rps u_p50 u_p99 u_bad < <(wrk_run "$THAW/v1/functions/digits-torch/invoke" "$CONNS" "$DUR")
u_inst=$(instances digits-torch)
read -r b_rps b_p50 b_p99 b_bad < <(wrk_run "$THAW/v1/functions/digits-torch-batched/invoke" "$CONNS" "$DUR")
b_inst=$(instances digits-torch-batched)
mean=$(curl -s -H "Authorization: Bearer $BENCH_API_KEY" \
  "$THAW/v1/usage?function=digits-torch-batched" |
  sed -n 's/.*"total":{.*"mean_batch_size":\([0-9.]*\).*/\1/p')
# One client: short runs alternating between the two, so that the machine's other load falls on
# both alike; the medians are compared.
echo "batching: one client, 7 x ${ONE_DUR:=3s} each, alternating..." >&2
u1_runs=() b1_runs=()
for _ in 1 2 3 4 5 6 7; do
  read -r _ p50 _ _ < <(wrk_run "$THAW/v1/functions/digits-torch/invoke" 1 "$ONE_DUR")
  u1_runs+=("$(to_us "$p50")")
  read -r _ p50 _ _ < <(wrk_run "$THAW/v1/functions/digits-torch-batched/invoke" 1 "$ONE_DUR")
  b1_runs+=("$(to_us "$p50")")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 4p; }
u1_p50=$(median "${u1_runs[@]}")
b1_p50=$(median "${b1_runs[@]}")
ratio=$(awk -v a="$b_rps" -v b="$u_rps" 'BEGIN { printf "%.2f", a / b }')
p99_ratio=$(awk -v a="$(to_us "$b_p99")" -v b="$(to_us "$u_p99")" 'BEGIN { printf "%.2f", a / b }')
added=$(awk -v a="$b1_p50" -v b="$u1_p50" 'BEGIN { printf "%.0f", a - b }')

cat <<DOC

## Dynamic batching

digits-torch (PyTorch on the CPU, one image per call, concurrency 1, up to 8 instances) and
digits-torch-batched (the same handler, model and limits, plus \`batch: {max_size: 16,
max_wait_ms: 5}\`), on one server, measured one after the other in this run by
bench/batching.sh: wrk -t1 with one image per request, after one call and a $WARM warm-up of
each under $CONNS clients, and until no instance of it is still starting (torch imported).

| $CONNS clients | req/s | p50 | p99 | non-2xx | ready instances after |
|---|---|---|---|---|---|
| digits-torch | $u_rps | $u_p50 | $u_p99 | $u_bad | $u_inst |
| digits-torch-batched | $b_rps | $b_p50 | $b_p99 | $b_bad | $b_inst |

**Throughput batched / unbatched: $ratio** (target ≥ 3), p99 batched / unbatched: $p99_ratio
(target ≤ 1). Mean batch size of digits-torch-batched over its first call, warm-up and
64-client run (\`/v1/usage\`): ${mean:-?}. Load average of the machine when the run began
(other work included): $load.

One client, wrk -c1, $ONE_DUR runs alternating between the two; p50 of each run in µs:

| 1 client | p50 per run (µs, in order) | median p50 (µs) |
|---|---|---|
| digits-torch | ${u1_runs[*]} | $u1_p50 |
| digits-torch-batched | ${b1_runs[*]} | $b1_p50 |

**Added p50 at one client (medians): ${added} µs** (target ≤ 1 ms: a lone call is dispatched
at once).
DOC
