#!/usr/bin/env bash
# The floor of issue 9's warm-call targets on this machine: nginx `return 200`, bench/hop_floor.c
# (the least a server can do that relays each call to a separate function process: no auth,
# metering, logs or timeouts; 2 threads with 4 worker processes each) and thaw (warm hello-cpp
# over the native channel, a tenant's key: auth and metering on), in rounds, wrk -t1 at -c32 and
# -c1. Prints markdown: medians, ratios to nginx, and thaw's ratio to the floor.
#   bench/hop_floor.sh [THAW_BINARY]   (BENCH_ROUNDS=3 BENCH_DURATION=5s)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/thaw}
ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-5s}
. bench/nginx.sh
nginx_bench_work floor

NGINX_PORT=${BENCH_NGINX_PORT:-18184}
FLOOR_PORT=${BENCH_FLOOR_PORT:-18185}
start_nginx "$work" "$NGINX_PORT"
cc -O2 -pthread -o "$work/hop_floor" bench/hop_floor.c
"$work/hop_floor" "$FLOOR_PORT" 2 4 2> "$work/floor.log" &
pids+=($!)

"$BIN" serve --listen 127.0.0.1:0 --data-dir "$work/thaw" --log-level warn \
  --runtimes-dir "${BENCH_RUNTIMES:-build/runtimes}" > "$work/thaw.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
URL=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
o="$BIN --server $URL --api-key $(cat "$work/thaw/admin.key")"
$o tenants create bench > /dev/null
KEY=$($o --json keys create --tenant bench | sed 's/.*"secret":"\([^"]*\)".*/\1/')
"$BIN" --server "$URL" --api-key "$KEY" deploy build/examples/hello-cpp > /dev/null
"$BIN" --server "$URL" --api-key "$KEY" invoke hello-cpp > /dev/null 2>&1
grep -q "listening" "$work/floor.log" || { echo "hop_floor did not start"; cat "$work/floor.log"; exit 1; }

wrk_run() {  # url, connections, extra args -> "rps p50"
  local out
  out=$(BENCH_API_KEY=$KEY wrk -t1 -c"$2" -d"$DUR" --latency -s bench/wrk_invoke.lua "$1")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}')"
}
to_us() {
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}
median() { sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }

echo "| wrk -t1 | nginx \`return 200\` | hop floor (bench/hop_floor.c) | thaw, warm hello-cpp | thaw / floor |"
echo "|---|---|---|---|---|"
for c in 32 1; do
  for s in n f t; do : > "$work/$s$c"; : > "$work/$s$c.p50"; done
  for r in $(seq "$ROUNDS"); do
    for s in n f t; do
      case $s in
        n) url="http://127.0.0.1:$NGINX_PORT/" ;;
        f) url="http://127.0.0.1:$FLOOR_PORT/" ;;
        t) url="$URL/v1/functions/hello-cpp/invoke" ;;
      esac
      read -r rps p50 < <(wrk_run "$url" "$c")
      echo "$rps" >> "$work/$s$c" && to_us "$p50" >> "$work/$s$c.p50"
    done
    echo "c$c round $r: nginx $(tail -1 "$work/n$c") floor $(tail -1 "$work/f$c") thaw $(tail -1 "$work/t$c") req/s" >&2
  done
  n=$(median < "$work/n$c"); f=$(median < "$work/f$c"); t=$(median < "$work/t$c")
  np=$(median < "$work/n$c.p50"); fp=$(median < "$work/f$c.p50"); tp=$(median < "$work/t$c.p50")
  awk -v c="$c" -v n="$n" -v f="$f" -v t="$t" -v np="$np" -v fp="$fp" -v tp="$tp" -v r="$ROUNDS" 'BEGIN {
    printf "| -c%s, median of %d | %.0f req/s, p50 %.0f µs | %.0f req/s (**%.2fx**), p50 %.0f µs (+%.0f) | %.0f req/s (**%.2fx**), p50 %.0f µs (+%.0f) | %.2fx, p50 +%.0f µs |\n",
      c, r, n, np, f, f / n, fp, fp - np, t, t / n, tp, tp - np, t / f, tp - fp }'
done
