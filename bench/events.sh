#!/usr/bin/env bash
# Accepted Event invokes per second: a server committing each to thaw.db before its 202 (group
# commit) against one keeping them in memory (--durable-events false), alternating runs in one
# invocation on this machine. Prints a markdown section (bench/run.sh appends it to
# docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${EVENT_DURATION:-3s}
CONNS=${BENCH_CONNECTIONS:-32}
RUNS=${EVENT_RUNS:-5}
load0=$(cut -d" " -f1 /proc/loadavg)
work=$(mktemp -d /tmp/thaw-bench-events-XXXXXX)
cleanup() {
  for p in ${durable_pid:-} ${memory_pid:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() {  # name, extra flags... -> sets URL_<name>, KEY_<name>
  local name=$1; shift
  build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn \
    --async-queue-events 10000000 --max-queued-events 10000000 "$@" > "$work/$name.log" 2>&1 &
  eval "${name}_pid=$!"
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  eval "URL_$name=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)"
  eval "KEY_$name=$(cat "$work/$name/admin.key")"
}
start durable
start memory --durable-events false
for name in durable memory; do
  url=URL_$name key=KEY_$name
  build/thaw --server "${!url}" --api-key "${!key}" deploy build/examples/hello-cpp > /dev/null
  build/thaw --server "${!url}" --api-key "${!key}" invoke hello-cpp > /dev/null 2>&1
done

accepted() {  # url key -> accepted (202) invokes per second
  local out total non2xx secs
  out=$(BENCH_API_KEY=$2 wrk -t1 -c"$CONNS" -d"$DUR" -s bench/wrk_event.lua \
    "$1/2015-03-31/functions/hello-cpp/invocations")
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  secs=$(echo "$out" | awk '/requests in/ {v=$4; sub(/,$/, "", v); n=v+0; if (v ~ /ms$/) n/=1000; else if (v ~ /m$/) n*=60; print n}')
  awk -v t="$total" -v e="${non2xx:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (t - e) / s }'
}
durable_runs=() memory_runs=()
for _ in $(seq "$RUNS"); do
  durable_runs+=("$(accepted "$URL_durable" "$KEY_durable")")
  memory_runs+=("$(accepted "$URL_memory" "$KEY_memory")")
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
d=$(median "${durable_runs[@]}")
m=$(median "${memory_runs[@]}")
rows=$(sqlite3 "$work/durable/thaw.db" "SELECT COUNT(*) FROM events" 2>/dev/null || echo "?")

cat <<DOC

## Event invokes accepted per second

wrk -t1 -c$CONNS, $RUNS runs of $DUR alternating between two fresh jailed servers in this run,
\`POST /2015-03-31/functions/hello-cpp/invocations\` with \`X-Amz-Invocation-Type: Event\`
(the events also run, on the same cores): **durable** commits each event to thaw.db (WAL,
synchronous=NORMAL: survives a kill -9, not a power loss) before its 202, concurrent enqueues
sharing one transaction (group commit: one writer thread, cached prepared statements, WAL
checkpoints on a thread of their own); **memory** is \`--durable-events false\`. Only 202
answers count. Load average at the start: $load0 on $(nproc) cores.

| | runs (accepted/s, in order) | median |
|---|---|---|
| durable (group commit) | ${durable_runs[*]} | $d |
| in memory | ${memory_runs[*]} | $m |

**Durable: $d accepted/s** (target ≥ 5,000), $(awk -v a="$d" -v b="$m" 'BEGIN { printf "%.2f", a / b }') of in-memory; $rows events in thaw.db at the end.
DOC
