#!/usr/bin/env bash
# Two thaw builds and nginx `return 200`, back to back, several rounds, on one machine: warm
# hello-cpp over the native channel, wrk -t1 at -c32 and -c1. Prints the medians of each and
# their ratio to nginx. For a change to the hot path measured while the machine is busy with
# other work: each round runs the three within seconds of each other, and medians damp the rest.
#   bench/side_by_side.sh BEFORE_BINARY AFTER_BINARY   (BENCH_ROUNDS=5 BENCH_DURATION=5s)
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
ROUNDS=${BENCH_ROUNDS:-5}
DUR=${BENCH_DURATION:-5s}
work=$(mktemp -d /tmp/thaw-sbs-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

NGINX_PORT=${BENCH_NGINX_PORT:-18183}
. bench/nginx.sh
start_nginx "$work" "$NGINX_PORT"

start() {  # name, binary -> sets URL_<name>, KEY_<name>
  local name=$1 bin=$2
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn \
    > "$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  local url key
  url=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)
  key=$(cat "$work/$name/admin.key")
  eval "URL_$name=$url KEY_$name=$key"
  "$bin" --server "$url" --api-key "$key" deploy "${BENCH_EXAMPLE:-build/examples/hello-cpp}" > /dev/null
  "$bin" --server "$url" --api-key "$key" invoke hello-cpp > /dev/null 2>&1
}
start before "$BEFORE"
start after "$AFTER"

wrk_run() {  # url, connections, extra args -> "rps p50"
  local out
  out=$(wrk -t1 -c"$2" -d"$DUR" --latency "${@:3}" "$1")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}')"
}
to_us() {
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}
median() { sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }

for c in 32 1; do
  : > "$work/n$c" && : > "$work/b$c" && : > "$work/a$c"
  : > "$work/n$c.p50" && : > "$work/b$c.p50" && : > "$work/a$c.p50"
  for r in $(seq "$ROUNDS"); do
    read -r rps p50 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" "$c")
    echo "$rps" >> "$work/n$c" && to_us "$p50" >> "$work/n$c.p50"
    read -r rps p50 < <(BENCH_API_KEY=$KEY_before wrk_run "$URL_before/v1/functions/hello-cpp/invoke" "$c" -s bench/wrk_invoke.lua)
    echo "$rps" >> "$work/b$c" && to_us "$p50" >> "$work/b$c.p50"
    read -r rps p50 < <(BENCH_API_KEY=$KEY_after wrk_run "$URL_after/v1/functions/hello-cpp/invoke" "$c" -s bench/wrk_invoke.lua)
    echo "$rps" >> "$work/a$c" && to_us "$p50" >> "$work/a$c.p50"
    echo "c$c round $r: nginx $(tail -1 "$work/n$c") before $(tail -1 "$work/b$c") after $(tail -1 "$work/a$c") req/s" >&2
  done
  n=$(median < "$work/n$c"); b=$(median < "$work/b$c"); a=$(median < "$work/a$c")
  np=$(median < "$work/n$c.p50"); bp=$(median < "$work/b$c.p50"); ap=$(median < "$work/a$c.p50")
  awk -v c="$c" -v n="$n" -v b="$b" -v a="$a" -v np="$np" -v bp="$bp" -v ap="$ap" -v r="$ROUNDS" 'BEGIN {
    printf "| -c%s (median of %d) | %.0f req/s, p50 %.0f us | %.0f req/s (%.2fx), p50 %.0f us (+%.0f) | %.0f req/s (%.2fx), p50 %.0f us (+%.0f) |\n",
      c, r, n, np, b, b / n, bp, bp - np, a, a / n, ap, ap - np }'
done
