#!/usr/bin/env bash
# Warm hello-cpp over the native channel vs the HTTP Runtime API, against nginx `return 200`,
# in one run: two fresh servers that differ only in --runtime-channel. With BENCH_STRACE=1,
# also the system calls thaw makes per call on each (strace -c -f over BENCH_STRACE_CALLS
# calls on one keep-alive connection). Prints a markdown section (bench/run.sh appends it).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-32}
CALLS=${BENCH_STRACE_CALLS:-2000}
. bench/nginx.sh
nginx_bench_work chan

NGINX_PORT=${BENCH_NGINX_PORT:-18182}
start_nginx "$work" "$NGINX_PORT"

start() {  # name, extra flags... -> sets URL_<name>, KEY_<name>, PID_<name>
  local name=$1
  shift
  build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn "$@" \
    > "$work/$name.log" 2>&1 &
  pids+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  local url key
  url=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)
  key=$(cat "$work/$name/admin.key")
  eval "URL_$name=$url KEY_$name=$key"
  build/thaw --server "$url" --api-key "$key" deploy build/examples/hello-cpp > /dev/null
  build/thaw --server "$url" --api-key "$key" invoke hello-cpp > /dev/null 2>&1
}
start chan
start http --runtime-channel false

wrk_run() {  # url, connections, extra args -> "rps p50 p99"
  local out
  out=$(wrk -t1 -c"$2" -d"$DUR" --latency "${@:3}" "$1")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}')"
}
to_us() {
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}
invoke() { BENCH_API_KEY=$2 wrk_run "$1/v1/functions/hello-cpp/invoke" "$3" -s bench/wrk_invoke.lua; }

read -r n_rps n_p50 n_p99 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" "$CONNS")
read -r c_rps c_p50 c_p99 < <(invoke "$URL_chan" "$KEY_chan" "$CONNS")
read -r h_rps h_p50 h_p99 < <(invoke "$URL_http" "$KEY_http" "$CONNS")
read -r n1_rps n1_p50 n1_p99 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" 1)
read -r c1_rps c1_p50 c1_p99 < <(invoke "$URL_chan" "$KEY_chan" 1)
read -r h1_rps h1_p50 h1_p99 < <(invoke "$URL_http" "$KEY_http" 1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
added() { awk -v a="$(to_us "$1")" -v b="$(to_us "$n1_p50")" 'BEGIN { printf "%.0f", a - b }'; }

# Per call, on one keep-alive connection: thaw's system calls (its threads; not the runtime's).
syscalls() {  # name -> "per-call-total top-calls"
  local url key pid
  eval "url=\$URL_$1 key=\$KEY_$1 pid=\$PID_$1"
  strace -c -f -p "$pid" -o "$work/$1.strace" 2> /dev/null &
  local st=$!
  sleep 1
  curl -s -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" \
    -d '{"name":"bench"}' $(yes "$url/v1/functions/hello-cpp/invoke" | head -n "$CALLS") \
    > /dev/null
  kill -INT "$st"
  wait "$st" 2> /dev/null || true
  awk -v n="$CALLS" '$NF=="total" {printf "%.1f ", $4/n}' "$work/$1.strace"
  awk -v n="$CALLS" '$1 ~ /^[0-9.]+$/ && $NF!="total" && $4/n >= 0.1 {print $4, $NF}' \
    "$work/$1.strace" | sort -rn | awk -v n="$CALLS" '{printf "%s%s %.1f", sep, $2, $1/n; sep=", "}'
  echo
}
if [ "${BENCH_STRACE:-0}" = 1 ]; then
  read -r c_sys c_top < <(syscalls chan)
  read -r h_sys h_top < <(syscalls http)
fi

cat <<DOC

## Native channel vs HTTP Runtime API

Warm hello-cpp (C++ SDK) on two fresh jailed servers in this run that differ only in
\`--runtime-channel\`: the native channel (one socketpair per instance, one write answers a
call and asks for the next) or the HTTP Runtime API (POST response → 202, then GET next).
wrk -t1 -d$DUR, nginx \`return 200\` (one worker) as the baseline in the same run.

| | req/s (-c$CONNS) | p50 | p99 | ratio to nginx | p50 at -c1 | added p50 at -c1 |
|---|---|---|---|---|---|---|
| nginx | $n_rps | $n_p50 | $n_p99 | 1.00 | $n1_p50 | |
| thaw, native channel | $c_rps | $c_p50 | $c_p99 | $(ratio "$c_rps" "$n_rps") | $c1_p50 | $(added "$c1_p50") µs |
| thaw, HTTP Runtime API | $h_rps | $h_p50 | $h_p99 | $(ratio "$h_rps" "$n_rps") | $h1_p50 | $(added "$h1_p50") µs |

Targets: native channel ≥ 0.5x nginx and ≤ 50 µs added p50; HTTP Runtime API ≥ 0.3x, ≤ 80 µs.
DOC
if [ "${BENCH_STRACE:-0}" = 1 ]; then
  cat <<DOC

System calls thaw makes per warm call (\`strace -c -f\` on \`thaw serve\`, $CALLS calls on one
keep-alive connection; the runtime's own calls not counted): native channel **$c_sys**
($c_top); HTTP Runtime API **$h_sys** ($h_top).
DOC
fi
