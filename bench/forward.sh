#!/usr/bin/env bash
# Calls forwarded between nodes: two thaw nodes on loopback (one etcd; each its own data dir,
# sharing admin.key and master.key), hello-cpp deployed on both but warm on B only. wrk against
# B directly and through A (which forwards every call to B), alternating runs in one invocation:
# the latency one hop adds (-c1, p50) and the throughput kept (-c32). Prints a markdown section
# (bench/run.sh appends it to docs/benchmarks.md). Skips, saying so, without /usr/bin/etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${FORWARD_DURATION:-5s}
CONNS=${BENCH_CONNECTIONS:-32}
RUNS=${FORWARD_RUNS:-3}
if [ ! -x /usr/bin/etcd ]; then
  printf '\n## Forwarding between nodes\n\nNot measured: /usr/bin/etcd is missing (apt-get install etcd-server).\n'
  exit 0
fi
load0=$(cut -d" " -f1 /proc/loadavg)
work=$(mktemp -d /tmp/thaw-bench-forward-XXXXXX)
cleanup() {
  for p in ${a_pid:-} ${b_pid:-} ${etcd_pid:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ETCD="http://127.0.0.1:$(free_port)"
peer="http://127.0.0.1:$(free_port)"
/usr/bin/etcd --name=bench --data-dir="$work/etcd" --listen-client-urls="$ETCD" \
  --advertise-client-urls="$ETCD" --listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer" \
  --initial-cluster="bench=$peer" --logger=zap --log-outputs="$work/etcd.log" > /dev/null 2>&1 &
etcd_pid=$!
for _ in $(seq 200); do curl -sf "$ETCD/health" > /dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$ETCD/health" > /dev/null || { echo "forward.sh: etcd did not start" >&2; exit 1; }

start() {  # name -> sets URL_<name>
  local name=$1
  build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn \
    --etcd "$ETCD" --node-name "$name" > "$work/$name.log" 2>&1 &
  eval "${name}_pid=$!"
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  eval "URL_$name=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)"
}
start b
mkdir -p "$work/a"
cp "$work/b/admin.key" "$work/b/master.key" "$work/a/"
start a
export BENCH_API_KEY=$(cat "$work/b/admin.key")
for name in a b; do
  url=URL_$name
  build/thaw --server "${!url}" --api-key "$BENCH_API_KEY" deploy build/examples/hello-cpp > /dev/null
done
# Warm on B: a call B runs itself (a cold call would go where placement says, maybe A).
curl -s -o /dev/null -X POST -H "Authorization: Bearer $BENCH_API_KEY" -H "X-Thaw-Forwarded-By: bench" \
  -d '{}' "$URL_b/v1/functions/hello-cpp/invoke"
# A learns that B holds it warm (B republishes within a second, A polls every half second).
for _ in $(seq 100); do
  curl -s -H "Authorization: Bearer $BENCH_API_KEY" "$URL_a/v1/nodes" | grep -q 'hello-cpp:1' && break
  sleep 0.1
done
node=$(curl -s -o /dev/null -D - -X POST -H "Authorization: Bearer $BENCH_API_KEY" -d '{}' \
  "$URL_a/v1/functions/hello-cpp/invoke" | awk -F': ' 'tolower($1)=="x-thaw-node" {print $2}' | tr -d '\r')
if [ "$node" != "b" ]; then
  echo "forward.sh: a call through A ran on '$node', not B" >&2
  exit 1
fi

errors=0
wrk_run() {  # url, connections -> "rps p50 non-2xx"
  local out
  out=$(wrk -t1 -c"$2" -d"$DUR" --latency -s bench/wrk_invoke.lua "$1/v1/functions/hello-cpp/invoke")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}') $(echo "$out" | awk '/Non-2xx/ {print $NF}')"
}
to_us() {  # 812.00us / 1.20ms / 2.00s -> microseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
d1=() f1=() dn=() fn=()
for _ in $(seq "$RUNS"); do
  read -r _ p e < <(wrk_run "$URL_b" 1); d1+=("$(to_us "$p")"); errors=$((errors + ${e:-0}))
  read -r _ p e < <(wrk_run "$URL_a" 1); f1+=("$(to_us "$p")"); errors=$((errors + ${e:-0}))
  read -r r _ e < <(wrk_run "$URL_b" "$CONNS"); dn+=("$r"); errors=$((errors + ${e:-0}))
  read -r r _ e < <(wrk_run "$URL_a" "$CONNS"); fn+=("$r"); errors=$((errors + ${e:-0}))
done
md1=$(median "${d1[@]}"); mf1=$(median "${f1[@]}")
mdn=$(median "${dn[@]}"); mfn=$(median "${fn[@]}")
# A must have started no instance: every call ran on B.
a_instances=$(curl -s -H "Authorization: Bearer $BENCH_API_KEY" "$URL_a/v1/functions/hello-cpp" |
  /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)["instance_list"]))')
added=$(awk -v a="$mf1" -v b="$md1" 'BEGIN { printf "%.0f", a - b }')
ratio=$(awk -v a="$mfn" -v b="$mdn" 'BEGIN { printf "%.2f", a / b }')

cat <<DOC

## Forwarding between nodes

Two nodes on this machine's loopback (one etcd, \`--etcd --node-name\`), \`hello-cpp\` deployed
on both and warm on B only, so A forwards every call to B over its pooled keep-alive
connections (src/gateway/forwarder.h). wrk -t1, $RUNS runs of $DUR each, alternating B directly
and through A, \`POST /v1/functions/hello-cpp/invoke\`. Both nodes, wrk and the function share
the $(nproc) cores: a forwarded call costs A's CPU on the same cores as B's. Load average at the
start: $load0 (other work on the machine counts in these figures).

| | B directly | through A | |
|---|---|---|---|
| -c1 p50 (µs), runs | ${d1[*]} | ${f1[*]} | added p50 **${added} µs** (target ≤ 300) |
| -c$CONNS requests/s, runs | ${dn[*]} | ${fn[*]} | through A **${ratio}x** of direct (target ≥ 0.5x) |

Answers other than 2xx in all these runs: $errors. Instances A started: $a_instances (a call
through A was checked to carry \`X-Thaw-Node: b\` before the runs).
DOC
