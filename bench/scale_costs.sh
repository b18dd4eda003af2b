#!/usr/bin/env bash
# The measured costs docs/scale.md's capacity model stands on: PostgreSQL writes per
# invocation, per deploy and per queued event, and etcd writes per node per second, counted on
# one thaw node (`--store postgres://`, `--etcd`) against a private PostgreSQL (Debian's, as
# tests/pg_server.cc starts it, with pg_stat_statements) and a private etcd, both on loopback.
# Also this machine's PostgreSQL commit rate (pgbench, one-row update transactions). Prints a
# markdown section (bench/run.sh appends it to docs/benchmarks.md).
#
# PostgreSQL counts: write statements and rows written (INSERT/UPDATE/DELETE calls and their
# rows, pg_stat_statements), transactions committed (pg_stat_database.xact_commit, read after
# the 10 s the server may hold a busy backend's counters) and WAL bytes. etcd counts: raft
# proposals committed (every write: puts, deletes, lease grants and revokes), puts, lease
# renewals (keepalives: the leader's, no raft round) and range reads, from etcd's /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
CALL_DURATION=${SCALE_CALL_DURATION:-5s}
DEPLOYS=${SCALE_DEPLOYS:-10}
EVENT_DURATION=${SCALE_EVENT_DURATION:-2s}
IDLE_S=${SCALE_IDLE_S:-20}
LEASE_S=${SCALE_LEASE_S:-5}
CONNS=${BENCH_CONNECTIONS:-16}
load0=$(cut -d" " -f1 /proc/loadavg)
work=$(mktemp -d /tmp/thaw-bench-scale-XXXXXX)
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cleanup() {
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  [ -n "${etcd_pid:-}" ] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null || true
  [ -d "$work/pg/data" ] && as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate -w stop > /dev/null 2>&1 || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# postgres refuses to run as root: as root it runs as nobody, as tests/pg_server.cc does.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- PostgreSQL, fsync and synchronous_commit on (a primary's real commit path) ---
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown nobody "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U thaw --encoding=UTF8 --locale=C > /dev/null
PGPORT=$(free_port)
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -o "-p $PGPORT -k $work/pg \
  -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements \
  -c pg_stat_statements.track=all -c max_connections=200" start > /dev/null
psql_at() { psql -X -q -At -h 127.0.0.1 -p "$PGPORT" -U thaw -d "$1" -c "$2"; }
psql_at postgres "CREATE DATABASE thaw" > /dev/null
psql_at postgres "CREATE DATABASE pgbench" > /dev/null
psql_at thaw "CREATE EXTENSION pg_stat_statements" > /dev/null

# --- etcd ---
ETCD=http://127.0.0.1:$(free_port)
peer=http://127.0.0.1:$(free_port)
/usr/bin/etcd --name=s --data-dir="$work/etcd" --listen-client-urls="$ETCD" \
  --advertise-client-urls="$ETCD" --listen-peer-urls="$peer" \
  --initial-advertise-peer-urls="$peer" --initial-cluster="s=$peer" > "$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 200); do curl -sf "$ETCD/health" 2>/dev/null | grep -q true && break; sleep 0.1; done

# --- one thaw node on both ---
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
  --store "postgres://thaw@127.0.0.1:$PGPORT/thaw" --etcd "$ETCD" --node-name n1 \
  --node-lease-s "$LEASE_S" --async-queue-events 1000000 --max-queued-events 1000000 \
  > "$work/thaw.log" 2>&1 &
thaw_pid=$!
for _ in $(seq 300); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
KEY=$(cat "$work/data/admin.key")
T="build/thaw --server $URL --api-key $KEY"

metric() {  # url name-regex -> the sum of the matching series
  curl -s -H "Authorization: Bearer $KEY" "$1/metrics" |
    awk -v re="^$2(\\\\{| )" '$0 ~ re {s += $NF} END {printf "%.0f", s}'
}
calls() { metric "$URL" 'thaw_invocations_total'; }
settle() {  # the meter's batches committed and the event queue empty
  for _ in $(seq 600); do
    [ "$(metric "$URL" thaw_meter_write_lag_records)" = 0 ] &&
      [ "$(metric "$URL" thaw_async_events_queued)" = 0 ] && return 0
    sleep 0.1
  done
}
# PostgreSQL counters now: "write_statements rows_written statements commits wal_bytes" (the
# statements exclude BEGIN/COMMIT; commits count read-only transactions too).
pg_snap() {
  sleep 11  # a busy backend's pg_stat_database counters reach shared memory within 10 s
  local w c
  w=$(psql_at thaw "SELECT coalesce(sum(s.calls) FILTER (WHERE s.query ~* '^\s*(insert|update|delete)'),0)
      || ' ' || coalesce(sum(s.rows) FILTER (WHERE s.query ~* '^\s*(insert|update|delete)'),0)
      || ' ' || coalesce(sum(s.calls) FILTER (WHERE s.query !~* '^\s*(begin|commit|rollback)'
        AND s.query !~ 'pg_stat|pg_current_wal'),0)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'thaw'")
  c=$(psql_at thaw "SELECT xact_commit || ' ' || (pg_current_wal_lsn() - '0/0')::bigint
    FROM pg_stat_database WHERE datname = 'thaw'")
  echo "$w $c"
}
etcd_snap() {  # "proposals puts renewals ranges"
  curl -s "$ETCD/metrics" | awk '
    /^etcd_server_proposals_committed_total / {p = $2}
    /^etcd_mvcc_put_total / {u = $2}
    /^etcd_debugging_lease_renewed_total / {r = $2}
    /^etcd_mvcc_range_total / {g = $2}
    END {printf "%.0f %.0f %.0f %.0f", p, u, r, g}'
}
per() {  # "before" "after" divisor [own] -> the deltas divided, four significant digits each;
  # `own` is subtracted from the 4th field first (pg_snap's own two transactions).
  awk -v a="$1" -v b="$2" -v n="$3" -v own="${4:-0}" 'BEGIN {
    split(a, x, " "); split(b, y, " "); y[4] -= own;
    for (i = 1; i <= length(x); i++) printf "%s%.4g", (i > 1 ? " " : ""), (y[i] - x[i]) / n }'
}
field() { echo "$1" | cut -d" " -f"$2"; }

# Idle: what a node costs with nothing to do.
sleep 2
pg0=$(pg_snap); e0=$(etcd_snap); t0=$(date +%s.%N)
sleep "$IDLE_S"
e1=$(etcd_snap); t1=$(date +%s.%N)
pg1=$(pg_snap)
idle_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
idle_pg_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
etcd_idle=$(per "$e0" "$e1" "$idle_s")
pg_idle=$(per "$pg0" "$pg1" "$idle_pg_s" 2)

# Deploys: each a new version (the bundles differ by a file).
mkdir -p "$work/fn"
cp build/examples/hello-cpp/bootstrap "$work/fn/"
printf 'name: scale\nruntime: cpp\n' > "$work/fn/thaw.yaml"
pg0=$(pg_snap)
for i in $(seq "$DEPLOYS"); do
  echo "$i" > "$work/fn/n"
  $T deploy "$work/fn" > /dev/null
done
pg1=$(pg_snap)
pg_deploy=$(per "$pg0" "$pg1" "$DEPLOYS" 2)

# Warm synchronous invocations.
$T invoke scale > /dev/null 2>&1
settle
pg0=$(pg_snap); c0=$(calls); e0=$(etcd_snap); t0=$(date +%s.%N)
BENCH_API_KEY=$KEY wrk -t1 -c"$CONNS" -d"$CALL_DURATION" -s bench/wrk_invoke.lua \
  "$URL/v1/functions/scale/invoke" > "$work/wrk-calls.txt"
e1=$(etcd_snap); t1=$(date +%s.%N)
settle
c1=$(calls)
pg1=$(pg_snap)
n_calls=$((c1 - c0))
call_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
pg_call=$(per "$pg0" "$pg1" "$n_calls" 2)
conns=$(psql_at thaw "SELECT count(*) FROM pg_stat_activity
  WHERE datname = 'thaw' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
etcd_busy=$(per "$e0" "$e1" "$call_s")
call_rps=$(awk -v n="$n_calls" -v s="$call_s" 'BEGIN {printf "%.0f", n / s}')

# Event invocations: accepted (durably queued), run, and metered.
pg0=$(pg_snap); c0=$(calls)
BENCH_API_KEY=$KEY wrk -t1 -c"$CONNS" -d"$EVENT_DURATION" -s bench/wrk_event.lua \
  "$URL/2015-03-31/functions/scale/invocations" > "$work/wrk-events.txt"
settle
c1=$(calls)
pg1=$(pg_snap)
n_events=$((c1 - c0))
pg_event=$(per "$pg0" "$pg1" "$n_events" 2)

# This machine's PostgreSQL: pgbench's simple-update transactions per second (each an UPDATE, a
# SELECT and an INSERT, one commit), 16 clients, fsync on.
pgbench -h 127.0.0.1 -p "$PGPORT" -U thaw -i -s 4 -q pgbench > /dev/null 2>&1
tps=$(pgbench -h 127.0.0.1 -p "$PGPORT" -U thaw -c 16 -j 2 -T 10 -b simple-update -n pgbench 2>/dev/null |
  awk '/^tps/ {printf "%.0f", $3}')

row() {  # label "writes rows statements commits wal" -> a table row
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(field "$2" 1)" "$(field "$2" 2)" \
    "$(field "$2" 3)" "$(field "$2" 4)" "$(awk -v b="$(field "$2" 5)" 'BEGIN {printf "%.0f", b}')"
}
# The size of this node's record in etcd, which every node reads back every poll.
record_bytes=$(curl -s -X POST "$ETCD/v3/kv/range" \
  -d "{\"key\":\"$(printf /thaw/nodes/n1 | base64)\"}" |
  /usr/bin/python3 -c 'import sys, json, base64; kv = json.load(sys.stdin)["kvs"][0]; print(len(base64.b64decode(kv["value"])))')
cat <<DOC

## Capacity costs: PostgreSQL and etcd per unit of work

bench/scale_costs.sh: one thaw node with \`--store postgres://\` (PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), fsync on) and \`--etcd\`
(etcd $(/usr/bin/etcd --version | awk '/etcd Version/ {print $3}'), one member), both private on loopback; hello-cpp. $n_calls warm calls
(wrk -c$CONNS, $CALL_DURATION, $call_rps/s), $DEPLOYS deploys, $n_events Event invocations. Load average at start $load0.
Background (idle node, per second) is included in each figure, not subtracted: it is
$(field "$pg_idle" 1) write statements/s, $(field "$pg_idle" 3) statements/s, $(field "$pg_idle" 4) transactions/s.
Write statements are INSERT/UPDATE/DELETE calls (pg_stat_statements); all statements exclude
BEGIN/COMMIT; transactions are pg_stat_database's xact_commit, read-only ones included (less
the two this script's own snapshots add). The node holds $conns connections to PostgreSQL.

| PostgreSQL, per | write statements | rows written | all statements | transactions | WAL bytes |
|---|---|---|---|---|---|
$(row "invocation (sync)" "$pg_call")
$(row "deploy" "$pg_deploy")
$(row "Event invocation (queued, run, metered)" "$pg_event")
$(row "second, idle node" "$pg_idle")

| etcd, per node per second | proposals (writes) | puts | lease renewals | range reads |
|---|---|---|---|---|
| idle | $(field "$etcd_idle" 1) | $(field "$etcd_idle" 2) | $(field "$etcd_idle" 3) | $(field "$etcd_idle" 4) |
| under load ($call_rps calls/s) | $(field "$etcd_busy" 1) | $(field "$etcd_busy" 2) | $(field "$etcd_busy" 3) | $(field "$etcd_busy" 4) |

A node's record in etcd (\`/thaw/nodes/NAME\`, hello-cpp warm): $record_bytes bytes; every node reads
every record back each poll (range reads above).

This machine's PostgreSQL (pgbench simple-update: an UPDATE, a SELECT and an INSERT per
transaction; 16 clients, fsync on), measured while the node was idle: $tps transactions/s.
DOC
