#!/usr/bin/env bash
# `make bench`: warm throughput and latency of thaw against an always-on nginx baseline, and
# cold starts, in one run on this machine. Writes docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-32}
SAMPLES=${BENCH_COLD_SAMPLES:-50}
work=$(mktemp -d /tmp/thaw-bench-XXXXXX)
cleanup() {
  [ -n "${plain_pid:-}" ] && kill "$plain_pid" 2>/dev/null && wait "$plain_pid" 2>/dev/null || true
  [ -n "${open_pid:-}" ] && kill "$open_pid" 2>/dev/null && wait "$open_pid" 2>/dev/null || true
  [ -n "${on_pid:-}" ] && kill "$on_pid" 2>/dev/null && wait "$on_pid" 2>/dev/null || true
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- baseline: nginx, one worker, `return 200` ---
NGINX_PORT=18181
. bench/nginx.sh
start_nginx "$work" "$NGINX_PORT"

# --- thaw with the examples ---
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn > "$work/thaw.log" 2>&1 &
thaw_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
export BENCH_API_KEY=$(cat "$work/data/admin.key")
T="build/thaw --server $THAW --api-key $BENCH_API_KEY"
$T deploy build/examples/hello-cpp > /dev/null
# Cold-start copies of the examples: scale to zero right after each call.
mkdir -p "$work/cold-cpp" "$work/cold-python" "$work/cold-cpp-none"
cp build/examples/hello-cpp/bootstrap "$work/cold-cpp/"
printf 'name: cold-cpp\nruntime: cpp\nidle_timeout_s: 0\n' > "$work/cold-cpp/thaw.yaml"
cp build/examples/hello-cpp/bootstrap "$work/cold-cpp-none/"
printf 'name: cold-cpp-none\nruntime: cpp\nidle_timeout_s: 0\nnetwork: none\n' > "$work/cold-cpp-none/thaw.yaml"
cp examples/hello-python/app.py "$work/cold-python/"
printf 'name: cold-python\nruntime: python3\nhandler: app.handler\nidle_timeout_s: 0\n' > "$work/cold-python/thaw.yaml"
$T deploy "$work/cold-cpp" > /dev/null
$T deploy "$work/cold-python" > /dev/null
$T deploy "$work/cold-cpp-none" > /dev/null
$T invoke hello-cpp > /dev/null 2>&1  # warm

# The same, without the sandbox: the isolation figures compare the two in this run.
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/plain" --log-level warn --sandbox false \
  > "$work/plain.log" 2>&1 &
plain_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/plain.log" && break; sleep 0.05; done
PLAIN=$(grep -o 'http://[0-9.:]*' "$work/plain.log" | head -1)
PLAIN_KEY=$(cat "$work/plain/admin.key")
P="build/thaw --server $PLAIN --api-key $PLAIN_KEY"
$P deploy build/examples/hello-cpp > /dev/null
$P deploy "$work/cold-cpp" > /dev/null
$P invoke hello-cpp > /dev/null 2>&1
# Two more fresh, jailed servers for the cost of auth and metering: one with both on, called
# with a tenant's key (key lookup, the tenant's limits, one meter record per call), and one
# with both off.
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/open" --log-level warn --auth false \
  --metering false > "$work/open.log" 2>&1 &
open_pid=$!
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/on" --log-level warn > "$work/on.log" 2>&1 &
on_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/open.log" && grep -q "listening on" "$work/on.log" && break; sleep 0.05; done
OPEN=$(grep -o 'http://[0-9.:]*' "$work/open.log" | head -1)
ON=$(grep -o 'http://[0-9.:]*' "$work/on.log" | head -1)
build/thaw --server "$OPEN" deploy build/examples/hello-cpp > /dev/null
build/thaw --server "$OPEN" invoke hello-cpp > /dev/null 2>&1
O="build/thaw --server $ON --api-key $(cat "$work/on/admin.key")"
$O tenants create bench > /dev/null
TENANT_KEY=$($O --json keys create --tenant bench | sed 's/.*"secret":"\([^"]*\)".*/\1/')
build/thaw --server "$ON" --api-key "$TENANT_KEY" deploy build/examples/hello-cpp > /dev/null
build/thaw --server "$ON" --api-key "$TENANT_KEY" invoke hello-cpp > /dev/null 2>&1
isolation=$(curl -s -H "Authorization: Bearer $BENCH_API_KEY" "$THAW/v1/node" | sed 's/.*"isolation":"\([^"]*\)".*/\1/')

wrk_run() {  # url, connections, extra args -> "rps p50 p99"
  local out
  out=$(wrk -t1 -c"$2" -d"$DUR" --latency "${@:3}" "$1")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p50 $p99"
}
to_us() {  # wrk latency like 812.00us / 1.20ms / 2.00s -> microseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else print n*1000000 }'
}

echo "warm throughput, $CONNS connections, $DUR each..."
read -r n_rps n_p50 n_p99 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" "$CONNS")
read -r t_rps t_p50 t_p99 < <(wrk_run "$THAW/v1/functions/hello-cpp/invoke" "$CONNS" -s bench/wrk_invoke.lua)
read -r p_rps p_p50 p_p99 < <(BENCH_API_KEY=$PLAIN_KEY wrk_run "$PLAIN/v1/functions/hello-cpp/invoke" "$CONNS" -s bench/wrk_invoke.lua)
echo "auth and metering on vs off, alternating, 7 x ${AB_DUR:=3s} each..."
on_runs=() off_runs=()
for _ in 1 2 3 4 5 6 7; do
  read -r rps _ _ < <(BENCH_API_KEY=$TENANT_KEY DUR=$AB_DUR wrk_run "$ON/v1/functions/hello-cpp/invoke" "$CONNS" -s bench/wrk_invoke.lua)
  on_runs+=("$rps")
  read -r rps _ _ < <(BENCH_API_KEY=none DUR=$AB_DUR wrk_run "$OPEN/v1/functions/hello-cpp/invoke" "$CONNS" -s bench/wrk_invoke.lua)
  off_runs+=("$rps")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 4p; }
on_rps=$(median "${on_runs[@]}")
off_rps=$(median "${off_runs[@]}")
auth_ratio=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN { printf "%.2f", a / b }')
echo "latency at one connection..."
read -r n1_rps n1_p50 n1_p99 < <(wrk_run "http://127.0.0.1:$NGINX_PORT/" 1)
read -r t1_rps t1_p50 t1_p99 < <(wrk_run "$THAW/v1/functions/hello-cpp/invoke" 1 -s bench/wrk_invoke.lua)
echo "cold starts, $SAMPLES samples each..."
cold_cpp=$(build/bench/coldstart "$THAW" "$BENCH_API_KEY" cold-cpp "$SAMPLES")
cold_py=$(build/bench/coldstart "$THAW" "$BENCH_API_KEY" cold-python "$SAMPLES")
cold_none=$(build/bench/coldstart "$THAW" "$BENCH_API_KEY" cold-cpp-none "$SAMPLES")
cold_plain=$(build/bench/coldstart "$PLAIN" "$PLAIN_KEY" cold-cpp "$SAMPLES")

ratio=$(awk -v a="$t_rps" -v b="$n_rps" 'BEGIN { printf "%.2f", a / b }')
added=$(awk -v a="$(to_us "$t1_p50")" -v b="$(to_us "$n1_p50")" 'BEGIN { printf "%.0f", a - b }')
iso_ratio=$(awk -v a="$t_rps" -v b="$p_rps" 'BEGIN { printf "%.2f", a / b }')
cpu=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

cat > docs/benchmarks.md <<DOC
# Benchmarks

Measured by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),
$(free -g | awk '/Mem:/ {print $2}') GB RAM, $(uname -r). Load generator, baseline, thaw and its
runtime processes share the same $(nproc) cores, so each figure includes their contention.
Every figure below comes from the same run; compare within it, never across runs.

## Warm invoke vs an always-on server

wrk -t1 -c$CONNS -d$DUR. Baseline: nginx (Debian), one worker, \`return 200\` with the same
JSON body. thaw: \`POST /v1/functions/hello-cpp/invoke\` with a bearer key, hello-cpp (C++ SDK,
concurrency 1, up to 8 instances), every request a real round trip to the runtime (over the native
channel; the last section compares it with the HTTP Runtime API).

| | req/s | p50 | p99 |
|---|---|---|---|
| nginx baseline | $n_rps | $n_p50 | $n_p99 |
| thaw, warm hello-cpp | $t_rps | $t_p50 | $t_p99 |

**Throughput ratio thaw / baseline: $ratio** (target ≥ 0.5).

## Added latency at one connection

wrk -t1 -c1 -d$DUR: nginx p50 $n1_p50, thaw p50 $t1_p50 → **added p50 ≈ ${added} µs**
(target ≤ 50 µs).

## Cold start to response

Time from sending the invoke to the complete response, the function scaled to zero before
each of $SAMPLES samples (\`idle_timeout_s: 0\`), measured by bench/coldstart.

| function | p50 (ms) | p99 (ms) | min (ms) | max (ms) | target |
|---|---|---|---|---|---|
| hello-cpp | $(field "$cold_cpp" p50) | $(field "$cold_cpp" p99) | $(field "$cold_cpp" min) | $(field "$cold_cpp" max) | ≤ 5 ms |
| hello-python | $(field "$cold_py" p50) | $(field "$cold_py" p99) | $(field "$cold_py" min) | $(field "$cold_py" max) | ≤ 60 ms |

## Cost of isolation

The figures above run with the sandbox thaw uses as root: $isolation.
The same server with \`--sandbox false\` (plain processes), in this run:

| | jailed | plain process | |
|---|---|---|---|
| hello-cpp cold start p50 (ms) | $(field "$cold_cpp" p50) | $(field "$cold_plain" p50) | added p50: $(awk -v a="$(field "$cold_cpp" p50)" -v b="$(field "$cold_plain" p50)" 'BEGIN { printf "%.2f ms", a - b }') (target ≤ 1 ms) |
| hello-cpp cold start p99 (ms) | $(field "$cold_cpp" p99) | $(field "$cold_plain" p99) | |
| hello-cpp \`network: none\` cold start p50 (ms) | $(field "$cold_none" p50) | | added over egress: $(awk -v a="$(field "$cold_none" p50)" -v b="$(field "$cold_cpp" p50)" 'BEGIN { printf "%.2f ms", a - b }') (its own network namespace, made ahead in a ready shell) |
| hello-cpp \`network: none\` cold start p99 (ms) | $(field "$cold_none" p99) | | |
| warm hello-cpp req/s (-c$CONNS) | $t_rps | $p_rps | ratio $iso_ratio (target ≥ 0.95) |

## Cost of auth and metering

Warm hello-cpp, wrk -c$CONNS, $AB_DUR runs alternating between two fresh jailed servers in this run:
**on** — a tenant's Bearer key (hash lookup, the tenant's limits checked, its month-to-date
spend updated) and one meter record per call (journaled before the response, committed in
batches); **off** — \`--auth false --metering false\`.

| | runs (req/s, in order) | median req/s |
|---|---|---|
| auth + metering on | ${on_runs[*]} | $on_rps |
| both off | ${off_runs[*]} | $off_rps |

**Ratio on / off (medians): $auth_ratio** (target ≥ 0.95).
DOC
# Density and burst run against a server of their own, after the others have stopped.
cleanup
bench/density.sh >> docs/benchmarks.md
bench/batching.sh >> docs/benchmarks.md
bench/console.sh >> docs/benchmarks.md
bench/simulate.sh >> docs/benchmarks.md
bench/streaming.sh >> docs/benchmarks.md
bench/models.sh >> docs/benchmarks.md
/usr/bin/python3 bench/templates.py >> docs/benchmarks.md
/usr/bin/python3 bench/restore.py >> docs/benchmarks.md
bench/events.sh >> docs/benchmarks.md
bench/scale_costs.sh >> docs/benchmarks.md
bench/forward.sh >> docs/benchmarks.md
BENCH_STRACE=1 bench/channel.sh >> docs/benchmarks.md
{
  echo
  echo "## The floor of a warm call: one hop to a function process (bench/hop_floor.sh)"
  echo
  bench/hop_floor.sh 2> /dev/null
} >> docs/benchmarks.md
if [ -f docs/benchmarks-notes.md ]; then cat docs/benchmarks-notes.md >> docs/benchmarks.md; fi
cat docs/benchmarks.md
