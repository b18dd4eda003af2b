#!/usr/bin/env bash
# One burst of bench/burst.sh's kind (BURST hello-cpp calls holding their instance HOLD_MS,
# against a fresh server started with the extra `thaw serve` ARGS), traced: strace, filtered
# in the kernel (--seccomp-bpf) to the few calls the timeline needs, on thaw, the spawner and
# every ready shell, then bench/burst_timeline.py joins the logs per start (where each start
# waited: the spawn request, the spawner, the exec, the runtime's init, the answer). The trace
# slows what it watches a little; compare runs traced alike. Usage: [SHELLS=N]
# [SERVER_BIN=path] bench/burst_trace.sh [BURST] [-- ARGS...]; the logs stay in $KEEP (or a
# temporary folder, removed).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/shells.sh
BURST=${1:-100}
shift $(( $# >= 1 ? 1 : 0 ))
[ "${1:-}" = "--" ] && shift
HOLD_MS=${HOLD_MS:-1000}
SERVER_BIN=${SERVER_BIN:-build/thaw}
work=${KEEP:-$(mktemp -d /tmp/thaw-burst-trace-XXXXXX)}
mkdir -p "$work/fn"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
}
trap cleanup EXIT
cp build/examples/hello-cpp/bootstrap "$work/fn/"
printf 'name: burst\nruntime: cpp\nmax_instances: %s\nmemory_mb: 64\n' "$BURST" > "$work/fn/thaw.yaml"
"$SERVER_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
  --node-memory-mb 1000000 --max-queue 10000 "$@" > "$work/thaw.log" 2>&1 &
thaw_pid=$!
pids+=("$thaw_pid")
for _ in $(seq 600); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
KEY=$(cat "$work/data/admin.key")
"$SERVER_BIN" --server "$THAW" --api-key "$KEY" deploy "$work/fn" > /dev/null
spawner=$(ps -o pid= --ppid "$thaw_pid" | head -1 | tr -d ' ')
wait_ready_shells "$spawner" "${SHELLS:-0}"
targets=(-p "$spawner")
for c in $(cat "/proc/$spawner/task/$spawner/children"); do targets+=(-p "$c"); done
strace -f -tt --seccomp-bpf -e trace=sendmsg,recvmsg,writev,execve "${targets[@]}" \
  -o "$work/sp.trace" 2>/dev/null &
pids+=("$!")
strace -f -tt --seccomp-bpf -e trace=sendmsg,recvmsg,writev,read -p "$thaw_pid" \
  -o "$work/th.trace" 2>/dev/null &
pids+=("$!")
sleep 2  # strace attached
build/bench/burst "${THAW#http://}" "$KEY" /v1/functions/burst/invoke \
  "{\"sleep_ms\":$HOLD_MS}" "$BURST" > "$work/burst.txt"
ok=$(grep -c '^200 ' "$work/burst.txt" || true)
echo "$ok/$BURST answered 200 (traced); load average $(cut -d' ' -f1-3 /proc/loadavg)"
kill "${pids[1]}" "${pids[2]}"
sleep 0.5
/usr/bin/python3 bench/burst_timeline.py "$work"
