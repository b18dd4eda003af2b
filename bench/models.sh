#!/usr/bin/env bash
# Model store memory (`make bench`, after run.sh): a function whose instances map a 200 MB model
# from the store (mounted read-only, one inode), at 1 instance and at 8, on a fresh server.
# Memory counts the page cache: the instances' proportional set sizes (Pss, from
# /proc/self/smaps_rollup: shared pages split between the processes that map them) plus the
# model's cached pages that no instance maps (fincore), so the file is counted exactly once
# however many map it, and 8 private copies would count 8 times. Appends to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${BENCH_MODEL_MB:-200}
work=$(mktemp -d /tmp/thaw-bench-models-XXXXXX)
cleanup() {
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() {  # -> THAW, KEY; a server on $work/data
  build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
    --init-timeout-ms 120000 --queue-timeout-ms 120000 > "$work/thaw.log" 2>&1 &
  thaw_pid=$!
  for _ in $(seq 400); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
  THAW=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
  KEY=$(cat "$work/data/admin.key")
}
stop() {  # and wait until no process maps the model any more
  kill "$thaw_pid" && wait "$thaw_pid" 2>/dev/null || true
  thaw_pid=
  for _ in $(seq 200); do
    grep -qs " $inode " /proc/[0-9]*/maps || return 0
    sleep 0.05
  done
}

mkdir -p "$work/model" "$work/fn"
head -c "${SIZE_MB}M" /dev/urandom > "$work/model/model.bin"
cat > "$work/fn/app.py" <<'PY'
import mmap, os, time
PATH = os.path.join(os.environ["THAW_MODEL_BIG"], "model.bin")
with open(PATH, "rb") as f:
    MODEL = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
for off in range(0, len(MODEL), 4096):  # load it: every page touched
    MODEL[off]

def smaps(path, only_model):
    out, inside = {}, not only_model
    for line in open(path):
        parts = line.split()
        if not parts[0].endswith(":"):
            inside = not only_model or parts[-1].endswith("model.bin")
        elif inside and len(parts) > 1 and parts[1].isdigit():
            out[parts[0][:-1]] = out.get(parts[0][:-1], 0) + int(parts[1])
    return out

def handler(event, context):
    # Waits (up to 60 s) until `mappers` processes map the model, so all N instances are up.
    want, deadline = event.get("mappers", 1), time.time() + 60
    m = smaps("/proc/self/smaps", True)
    while want > 1 and time.time() < deadline and m.get("Pss", 0) * (want - 0.5) > m.get("Rss", 1):
        time.sleep(0.05)
        m = smaps("/proc/self/smaps", True)
    total = smaps("/proc/self/smaps_rollup", False)
    return {"pss_kb": total["Pss"], "rss_kb": total["Rss"], "model_pss_kb": m.get("Pss", 0),
            "model_rss_kb": m.get("Rss", 0)}
PY
printf 'name: big\nruntime: python3\nhandler: app.handler\nmemory_mb: 512\ntimeout_s: 120\nmax_instances: 8\nidle_timeout_s: 600\nmodels: [{name: big, tag: v1, mount: /opt/models/big}]\n' > "$work/fn/thaw.yaml"

start
T="build/thaw --server $THAW --api-key $KEY"
$T models push big:v1 "$work/model" > /dev/null 2>&1
prefetch=$($T --json deploy "$work/fn" | sed 's/.*"prefetch_ms":\([0-9.]*\).*/\1/')
blob=$(ls "$work/data/models/blobs/")
inode=$(stat -c %i "$work/data/models/blobs/$blob")

measure() {  # N -> "total_mb per_instance_pss_mb model_cached_mb"
  local n=$1 i pids=()
  for i in $(seq "$n"); do
    curl -s -H "Authorization: Bearer $KEY" -d "{\"mappers\": $n}" \
      "$THAW/v1/functions/big/invoke" > "$work/out.$n.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  local cached_kb
  cached_kb=$(fincore --bytes --noheadings --output RES "$work/data/models/blobs/$blob" | awk '{print int($1 / 1024)}')
  cat "$work"/out."$n".* | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().replace("}{", "}\n{").splitlines() if l.strip()]
n, cached = int(sys.argv[1]), int(sys.argv[2])
assert len(rows) == n and all("pss_kb" in r for r in rows), rows
pss = sum(r["pss_kb"] for r in rows)
model = sum(r["model_pss_kb"] for r in rows)
total = pss + max(cached - model, 0)
mapped = min(r["model_rss_kb"] for r in rows)
print(f"{total / 1024:.1f} {(pss - model) / 1024 / n:.1f} {cached / 1024:.1f} {mapped / 1024:.1f}")
' "$n" "$cached_kb"
}
read -r one_mb one_rest one_cached one_rss < <(measure 1)
stop
start
read -r eight_mb eight_rest eight_cached eight_rss < <(measure 8)
ratio=$(awk -v a="$eight_mb" -v b="$one_mb" 'BEGIN { printf "%.2f", a / b }')

cat <<DOC

## Model store: 8 instances of one model

A python3 function that maps a ${SIZE_MB} MB model from the model store (\`models:\` mounted
read-only; \`mmap\`, every page touched at init) on a fresh jailed server; memory is the
instances' Pss (smaps_rollup) plus the model's cached pages no instance maps (fincore), so
the page cache is counted and the file once however many processes map it. Deploy prefetch of
the model: ${prefetch} ms.

| | memory (MB) | per instance besides the model (MB) | model in page cache (MB) | model mapped per instance (MB) |
|---|---|---|---|---|
| 1 instance | $one_mb | $one_rest | $one_cached | $one_rss |
| 8 instances | $eight_mb | $eight_rest | $eight_cached | $eight_rss |

**8 instances / 1 instance: ${ratio}x** (target ≤ 1.3x).
DOC
