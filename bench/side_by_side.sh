#!/usr/bin/env bash
# Two thaw builds and nginx `return 200`, back to back, several rounds, on one machine: warm
# hello-cpp over the native channel, wrk -t1 at -c32 and -c1. Prints the medians of each and
# their ratio to nginx. For a change to the hot path measured while the machine is busy with
# other work: each round runs the three within seconds of each other, and medians damp the rest.
# Also what load does not skew: thaw's own CPU time per call (utime+stime of its process over
# each run, /proc/PID/stat) and, with BENCH_STRACE=1, its system calls per call (strace -c -f
# over BENCH_STRACE_CALLS calls on one keep-alive connection) and its pthread_mutex_lock calls
# per call (a perf uprobe on libc's; every mutex: the pool's, the log store's, asio's).
#   bench/side_by_side.sh BEFORE_BINARY AFTER_BINARY   (BENCH_ROUNDS=5 BENCH_DURATION=5s)
# BENCH_EXAMPLE_BEFORE / BENCH_EXAMPLE_AFTER: each side's function bundle (default BENCH_EXAMPLE,
# else build/examples/hello-cpp), for a change to the runtime SDK; BENCH_SERVE_ARGS: more
# `thaw serve` flags for both (e.g. "--runtime-channel false" for the HTTP Runtime API).
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
ROUNDS=${BENCH_ROUNDS:-5}
DUR=${BENCH_DURATION:-5s}
. bench/nginx.sh
nginx_bench_work sbs

NGINX_PORT=${BENCH_NGINX_PORT:-18183}
start_nginx "$work" "$NGINX_PORT"

start() {  # name, binary -> sets URL_<name>, KEY_<name>
  local name=$1 bin=$2
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn \
    --runtimes-dir "${BENCH_RUNTIMES:-build/runtimes}" ${BENCH_SERVE_ARGS:-} \
    > "$work/$name.log" 2>&1 &
  pids+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  local url key
  url=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)
  key=$(cat "$work/$name/admin.key")
  eval "URL_$name=$url KEY_$name=$key"
  local example_var="BENCH_EXAMPLE_${name^^}"
  "$bin" --server "$url" --api-key "$key" deploy \
    "${!example_var:-${BENCH_EXAMPLE:-build/examples/hello-cpp}}" > /dev/null
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }

for c in 32 1; do
  : > "$work/n$c" && : > "$work/b$c" && : > "$work/a$c"
  : > "$work/n$c.p50" && : > "$work/b$c.p50" && : > "$work/a$c.p50"
  for r in $(seq "$ROUNDS"); do
    read -r rps p50 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" "$c")
    echo "$rps" >> "$work/n$c" && to_us "$p50" >> "$work/n$c.p50"
    for w in before after; do
      eval "url=\$URL_$w key=\$KEY_$w pid=\$PID_$w"
      t0=$(cpu_ticks "$pid")
      read -r rps p50 < <(BENCH_API_KEY=$key wrk_run "$url/v1/functions/hello-cpp/invoke" "$c" -s bench/wrk_invoke.lua)
      t1=$(cpu_ticks "$pid")
      f=${w:0:1}$c
      echo "$rps" >> "$work/$f" && to_us "$p50" >> "$work/$f.p50"
      # CPU microseconds of thaw's process per call (clock ticks of 10 ms over the run).
      awk -v t="$((t1 - t0))" -v r="$rps" -v d="${DUR%s}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f\n", t * 1e6 / hz / (r * d) }' >> "$work/$f.cpu"
    done
    echo "c$c round $r: nginx $(tail -1 "$work/n$c") before $(tail -1 "$work/b$c") after $(tail -1 "$work/a$c") req/s" >&2
  done
  n=$(median < "$work/n$c"); b=$(median < "$work/b$c"); a=$(median < "$work/a$c")
  np=$(median < "$work/n$c.p50"); bp=$(median < "$work/b$c.p50"); ap=$(median < "$work/a$c.p50")
  bc=$(median < "$work/b$c.cpu"); ac=$(median < "$work/a$c.cpu")
  echo "c$c thaw CPU per call (median): before ${bc} us, after ${ac} us"
  awk -v c="$c" -v n="$n" -v b="$b" -v a="$a" -v np="$np" -v bp="$bp" -v ap="$ap" -v r="$ROUNDS" 'BEGIN {
    printf "| -c%s (median of %d) | %.0f req/s, p50 %.0f us | %.0f req/s (%.2fx), p50 %.0f us (+%.0f) | %.0f req/s (%.2fx), p50 %.0f us (+%.0f) |\n",
      c, r, n, np, b, b / n, bp, bp - np, a, a / n, ap, ap - np }'
done

# Per call, on one keep-alive connection: thaw's system calls (its threads; not the runtime's).
syscalls() {  # name -> "per-call-total top-calls"
  local url key pid calls=${BENCH_STRACE_CALLS:-1000}
  eval "url=\$URL_$1 key=\$KEY_$1 pid=\$PID_$1"
  strace -c -f -p "$pid" -o "$work/$1.strace" 2> /dev/null &
  local st=$!
  sleep 1
  curl -s -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" \
    -d '{"name":"bench"}' $(yes "$url/v1/functions/hello-cpp/invoke" | head -n "$calls") \
    > /dev/null
  kill -INT "$st"
  wait "$st" 2> /dev/null || true
  awk -v n="$calls" '$NF=="total" {printf "%.1f ", $4/n}' "$work/$1.strace"
  awk -v n="$calls" '$1 ~ /^[0-9.]+$/ && $NF!="total" && $4/n >= 0.1 {print $4, $NF}' \
    "$work/$1.strace" | sort -rn | awk -v n="$calls" '{printf "%s%s %.1f", sep, $2, $1/n; sep=", "}'
  echo
}
locks() {  # name -> pthread_mutex_lock calls per call
  local url key pid calls=${BENCH_STRACE_CALLS:-1000}
  eval "url=\$URL_$1 key=\$KEY_$1 pid=\$PID_$1"
  perf stat -x, -e probe_libc:pthread_mutex_lock -p "$pid" -o "$work/$1.perf" &
  local st=$!
  sleep 1
  curl -s -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" \
    -d '{"name":"bench"}' $(yes "$url/v1/functions/hello-cpp/invoke" | head -n "$calls") \
    > /dev/null
  kill -INT "$st"
  wait "$st" 2> /dev/null || true
  awk -F, -v n="$calls" '$3 ~ /pthread_mutex_lock/ {printf "%.1f", $1/n}' "$work/$1.perf"
}
if [ "${BENCH_STRACE:-0}" = 1 ]; then
  echo "syscalls per call, before: $(syscalls before)"
  echo "syscalls per call, after: $(syscalls after)"
  perf probe -q -x "$(ldconfig -p | awk '/libc.so.6 .*x86-64/ {print $NF; exit}')" \
    pthread_mutex_lock 2> /dev/null || true
  echo "pthread_mutex_lock per call, before: $(locks before)"
  echo "pthread_mutex_lock per call, after: $(locks after)"
fi
