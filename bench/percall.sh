#!/usr/bin/env bash
# What thaw spends per warm call with auth and metering on (a tenant's key, one meter record per
# call): system calls by name (strace -c -f on `thaw serve`) and mutex acquisitions
# (pthread_mutex_lock/trylock through bench/lockcount.c, LD_PRELOADed), over BENCH_CALLS calls on
# one keep-alive connection and over a wrk -c$CONNS run; then the auth + metering on / off
# throughput ratio as bench/run.sh measures it, on two more servers without the shim (counting
# locks costs a call more than it counts). PERCALL_BUILD picks the build folder (default build),
# to compare two builds on the same machine; PERCALL_RATIO_ONLY=1 measures only the ratio (and
# thaw's CPU per call on each side); BENCH_KEEP=1 leaves the servers and their folder behind for
# a look. Prints markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${PERCALL_BUILD:-build}
CALLS=${BENCH_CALLS:-2000}
DUR=${BENCH_DURATION:-3s}
CONNS=${BENCH_CONNECTIONS:-32}
RUNS=${BENCH_AB_RUNS:-5}
work=$(mktemp -d /tmp/thaw-percall-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${BENCH_KEEP:-}" ] && trap - EXIT
cc -O2 -shared -fPIC -o "$work/lockcount.so" bench/lockcount.c -ldl

serve() {  # name, env prefix, flags... -> PID_<name>, URL_<name>
  local name=$1 pre=$2
  shift 2
  env $pre "$B/thaw" serve --listen 127.0.0.1:0 --data-dir "$work/$name" --log-level warn "$@" \
    > "$work/$name.log" 2>&1 &
  pids+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 400); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  eval "URL_$name=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1)"
}
setup_on() {  # name -> KEY_<name>: a tenant's key, hello-cpp deployed and warm
  local url
  url=$(eval echo "\$URL_$1")
  local o="$B/thaw --server $url --api-key $(cat "$work/$1/admin.key")"
  $o tenants create bench > /dev/null
  local key
  key=$($o --json keys create --tenant bench | sed 's/.*"secret":"\([^"]*\)".*/\1/')
  "$B/thaw" --server "$url" --api-key "$key" deploy "$B/examples/hello-cpp" > /dev/null
  "$B/thaw" --server "$url" --api-key "$key" invoke hello-cpp > /dev/null 2>&1
  eval "KEY_$1=$key"
}
setup_off() {  # name
  local url
  url=$(eval echo "\$URL_$1")
  "$B/thaw" --server "$url" deploy "$B/examples/hello-cpp" > /dev/null
  "$B/thaw" --server "$url" invoke hello-cpp > /dev/null 2>&1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of the whole process
# The ratio: auth + metering on / off, alternating, neither server under a shim or a tracer.
ratio() {
  serve ron ""
  serve roff "" --auth false --metering false
  setup_on ron
  setup_off roff
  local on_runs=() off_runs=() on_calls=0 off_calls=0 on_ticks=0 off_ticks=0 t0 out n
  for _ in $(seq "$RUNS"); do
    t0=$(cpu_ticks "$PID_ron")
    out=$(BENCH_API_KEY=$KEY_ron wrk -t1 -c"$CONNS" -d"$DUR" -s bench/wrk_invoke.lua \
      "$URL_ron/v1/functions/hello-cpp/invoke")
    on_ticks=$((on_ticks + $(cpu_ticks "$PID_ron") - t0))
    on_runs+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    on_calls=$((on_calls + n))
    t0=$(cpu_ticks "$PID_roff")
    out=$(BENCH_API_KEY=none wrk -t1 -c"$CONNS" -d"$DUR" -s bench/wrk_invoke.lua \
      "$URL_roff/v1/functions/hello-cpp/invoke")
    off_ticks=$((off_ticks + $(cpu_ticks "$PID_roff") - t0))
    off_runs+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    off_calls=$((off_calls + n))
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  local on off hz
  on=$(median "${on_runs[@]}")
  off=$(median "${off_runs[@]}")
  hz=$(getconf CLK_TCK)
  cat <<DOC
Auth + metering on / off ($B/thaw, $(date -u +%F)), wrk -c$CONNS, $RUNS x $DUR alternating, no
shim: on ${on_runs[*]} (median $on), off ${off_runs[*]} (median $off): **ratio $(
    awk -v a="$on" -v b="$off" 'BEGIN { printf "%.2f", a / b }')**; thaw CPU per call: on $(
    awk -v t="$on_ticks" -v n="$on_calls" -v hz="$hz" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
  ) µs, off $(
    awk -v t="$off_ticks" -v n="$off_calls" -v hz="$hz" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
  ) µs.
DOC
}
if [ -n "${PERCALL_RATIO_ONLY:-}" ]; then
  ratio
  exit 0
fi

serve on "LD_PRELOAD=$work/lockcount.so"
setup_on on
KEY=$KEY_on
FN="$URL_on/v1/functions/hello-cpp/invoke"

locks() { kill -USR2 "$PID_on"; sleep 0.2; grep '^LOCKS' "$work/on.log" | tail -1 | cut -d' ' -f2; }
sequential() {
  curl -s -X POST -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
    -d '{"name":"bench"}' $(yes "$FN" | head -n "$CALLS") > /dev/null
}
concurrent() {  # -> requests served
  BENCH_API_KEY=$KEY wrk -t1 -c"$CONNS" -d"$DUR" -s bench/wrk_invoke.lua "$FN" |
    awk '/requests in/ {print $1}'
}
per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.2f", a / n }'; }

l0=$(locks); sequential; l1=$(locks)
seq_locks=$(per $((l1 - l0)) "$CALLS")
l0=$(locks); conc_n=$(concurrent); l1=$(locks)
conc_locks=$(per $((l1 - l0)) "$conc_n")

strace_of() {  # name, command -> file with strace -c output; echoes what the command printed
  strace -c -f -p "$PID_on" -o "$work/$1.strace" 2> /dev/null &
  local st=$!
  sleep 1
  local out
  out=$($2)
  kill -INT "$st"
  wait "$st" 2> /dev/null || true
  echo "$out"
}
strace_of seq sequential > /dev/null
strace_n=$(strace_of conc concurrent)
# The meter journal's own writes (strace -y names each fd's file: segments end in .jnl), apart
# from SQLite's pwrite64s, which commit batches.
journal_writes() {  # command -> "writes calls"
  strace -f -y -e trace=pwrite64,write -p "$PID_on" -o "$work/jnl.strace" 2> /dev/null &
  local st=$!
  sleep 1
  local n
  n=$($1)
  kill -INT "$st"
  wait "$st" 2> /dev/null || true
  echo "$(grep -c '\.jnl>' "$work/jnl.strace" || true) ${n:-$CALLS}"
}
read -r w n < <(journal_writes sequential)
seq_jnl=$(per "$w" "$n")
read -r w n < <(journal_writes concurrent)
conc_jnl=$(per "$w" "$n")
table() {  # file, calls -> "total|name n, name n..."
  awk -v n="$2" '$NF=="total" {printf "%.1f|", $4/n}' "$1"
  awk '$1 ~ /^[0-9.]+$/ && $NF!="total" {print $4, $NF}' "$1" | sort -rn |
    awk -v n="$2" '$1/n >= 0.05 {printf "%s%s %.2f", sep, $2, $1/n; sep=", "}'
  echo
}
IFS='|' read -r seq_sys seq_top < <(table "$work/seq.strace" "$CALLS")
IFS='|' read -r conc_sys conc_top < <(table "$work/conc.strace" "$strace_n")

cat <<DOC
Per warm hello-cpp call, auth and metering on ($B/thaw, $(date -u +%F)):

| | one connection ($CALLS calls) | wrk -c$CONNS ($strace_n calls under strace, $conc_n without) |
|---|---|---|
| system calls | **$seq_sys**: $seq_top | **$conc_sys**: $conc_top |
| of which meter journal writes | $seq_jnl | $conc_jnl |
| mutex acquisitions (pthread_mutex_lock) | $seq_locks | $conc_locks |

DOC
kill "$PID_on" 2>/dev/null || true  # the ratio's servers have the machine to themselves
echo
ratio
