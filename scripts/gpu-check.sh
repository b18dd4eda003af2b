#!/usr/bin/env bash
# gpu-check: proves thaw's GPU path on a machine with a real NVIDIA GPU, in one short run
# (<= 5 minutes, no network). It builds thaw (unless build/thaw already runs here), starts it
# with the NVML inventory, deploys a GPU function that does a real CUDA computation, checks
# that another instance cannot see the first one's GPU while both run, and prints the cold
# start, host-to-GPU copy bandwidth and the GPU-seconds billed. With PyTorch it also writes
# GPU_CHECK_LOAD_GB (default 1) GB of random fp16 weights twice (thaw_gpu.save, torch.save),
# pushes them to the model store, and has the GPU function load them both ways from the page
# cache: thaw_gpu.load (runtimes/python3/lib) against torch.load, GB/s each and the ratio.
#
#   scripts/gpu-check.sh --loader-cpu   # only that comparison, on the CPU, no GPU, no thaw
#
# The CUDA stack, found in this order (the first that works on the host is used):
#   1. PyTorch with CUDA in a python3 (THAW_GPU_PYTHON, else python3, /usr/bin/python3,
#      /usr/local/bin/python3): `torch.cuda.is_available()` must be true;
#   2. nvcc (PATH or /usr/local/cuda/bin): scripts/gpu-check/gpucheck.cu is compiled into the
#      bundle and the python function runs it.
# Neither: it fails, saying so. Run as root for the jail and the device cgroup; otherwise (or
# when the CUDA stack lives outside /usr, which a jail cannot see) instances are plain
# processes and the isolation check covers CUDA_VISIBLE_DEVICES only, and it says so.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEADLINE=$((SECONDS + 290))
fail() { echo "gpu-check: FAIL: $*" >&2; exit 1; }
left() { echo $((DEADLINE - SECONDS)); }
step() { echo "gpu-check: [$((SECONDS))s] $*"; }
LOAD_GB=${GPU_CHECK_LOAD_GB:-1}

if [[ ${1:-} == --loader-cpu ]]; then
  PY=${THAW_GPU_PYTHON:-/usr/bin/python3}
  "$PY" -c 'import torch' 2> /dev/null || fail "--loader-cpu: $PY has no torch"
  step "thaw_gpu.load vs torch.load, $LOAD_GB GB fp16, page cache -> CPU memory ($PY)"
  exec "$PY" scripts/gpu-check/loader_bench.py run --gb "$LOAD_GB" --device cpu
elif [[ -n ${1:-} ]]; then
  fail "unknown argument $1 (usage: $0 [--loader-cpu])"
fi

command -v nvidia-smi > /dev/null && nvidia-smi -L || echo "gpu-check: (no nvidia-smi)"

# --- the CUDA stack -------------------------------------------------------------------------
MODE="" PY="" EXTRA_SITE=""
for cand in ${THAW_GPU_PYTHON:-} python3 /usr/bin/python3 /usr/local/bin/python3; do
  command -v "$cand" > /dev/null 2>&1 || continue
  # Also creates /dev/nvidia-uvm (nvidia-modprobe) before thaw binds the nodes into jails.
  if site=$(timeout 120 "$cand" -c 'import os, torch
assert torch.cuda.is_available(), "torch without CUDA"
torch.zeros(1, device="cuda")
print(os.path.dirname(os.path.dirname(torch.__file__)))' 2> /tmp/gpu-check-torch.err); then
    MODE=torch PY=$(command -v "$cand") EXTRA_SITE=$site
    break
  fi
done
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)
if [[ -z $MODE && -n $NVCC ]]; then
  MODE=nvcc PY=$( [[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3 || true)
  [[ -n $PY ]] || fail "nvcc found ($NVCC) but no python3 to run the function"
fi
if [[ -z $MODE ]]; then
  fail "no CUDA-capable stack: no python3 with torch.cuda.is_available() ($(tail -1 /tmp/gpu-check-torch.err 2> /dev/null)) and no nvcc"
fi
step "CUDA stack: $MODE (python $PY${EXTRA_SITE:+, torch in $EXTRA_SITE}${NVCC:+, nvcc $NVCC})"

# --- thaw -----------------------------------------------------------------------------------
BIN=${THAW_BIN:-build/thaw}
if ! [[ -x $BIN ]] || ! "$BIN" version > /dev/null 2>&1; then
  step "building thaw (cmake, -j$(nproc))"
  command -v cmake > /dev/null || fail "cmake missing: cannot build thaw here (no network for scripts/deps.sh)"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo > /tmp/gpu-check-cmake.log 2>&1 ||
    fail "cmake failed (build dependencies missing?): $(tail -3 /tmp/gpu-check-cmake.log)"
  timeout $(($(left) - 90)) cmake --build build-gpu -j"$(nproc)" --target thaw runtimes \
    > /tmp/gpu-check-build.log 2>&1 || fail "build failed: $(tail -5 /tmp/gpu-check-build.log)"
  BIN=build-gpu/thaw
fi
step "thaw: $BIN"

WORK=$(mktemp -d /tmp/thaw-gpu-check.XXXXXX)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2> /dev/null && wait "$SERVER_PID" 2> /dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

SANDBOX=true
if [[ $(id -u) != 0 ]]; then
  SANDBOX=false
  echo "gpu-check: not root: no jail or device cgroup; the isolation check covers CUDA_VISIBLE_DEVICES only"
elif [[ ( -n $EXTRA_SITE && $EXTRA_SITE != /usr/* ) || $PY != /usr/* ]]; then
  SANDBOX=false
  echo "gpu-check: the CUDA stack ($PY, $EXTRA_SITE) is outside /usr, which jails do not see:"
  echo "gpu-check: instances run unjailed; the isolation check covers CUDA_VISIBLE_DEVICES only"
fi

PORT=$((20000 + RANDOM % 20000))
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --python "$PY" \
  --sandbox "$SANDBOX" --init-timeout-ms 120000 --queue-timeout-ms 120000 > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
export THAW_SERVER="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
  [[ -s $WORK/data/admin.key ]] && "$PY" -c "import urllib.request as u; u.urlopen('$THAW_SERVER/healthz')" 2> /dev/null && break
  kill -0 "$SERVER_PID" 2> /dev/null || fail "thaw exited: $(tail -5 "$WORK/serve.log")"
  sleep 0.1
done
export THAW_API_KEY=$(cat "$WORK/data/admin.key")

# call METHOD PATH [BODY]: prints {"status", "headers", "body"} as one JSON line.
call() {
  "$PY" - "$@" << 'PYEOF'
import json, os, sys, urllib.request, urllib.error
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(os.environ["THAW_SERVER"] + path, data=body, method=method,
                             headers={"Authorization": "Bearer " + os.environ["THAW_API_KEY"]})
try:
    with urllib.request.urlopen(req, timeout=200) as r:
        status, headers, text = r.status, dict(r.headers), r.read().decode()
except urllib.error.HTTPError as e:
    status, headers, text = e.code, dict(e.headers), e.read().decode()
print(json.dumps({"status": status, "headers": headers, "body": text}))
PYEOF
}
field() { "$PY" -c 'import json, sys
v = json.loads(sys.stdin.read())
for k in sys.argv[1:]:
    v = json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v
    v = v[int(k)] if isinstance(v, list) else v.get(k)
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$@"; }

NODE=$(call GET /v1/node)
[[ $(echo "$NODE" | field body gpus source) == nvml ]] ||
  fail "thaw found no GPUs through NVML: $(echo "$NODE" | field body gpus source)"
NGPU=$(echo "$NODE" | field body gpus devices | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
step "NVML inventory: $NGPU GPU(s): $(echo "$NODE" | field body gpus devices)"
step "isolation: $(echo "$NODE" | field body isolation)"

# --- the bundles ----------------------------------------------------------------------------
bundle() {  # bundle NAME GPU_YAML [MORE_YAML]
  mkdir -p "$WORK/$1"
  cp scripts/gpu-check/app.py scripts/gpu-check/loader_bench.py "$WORK/$1/"
  [[ $MODE == nvcc ]] && cp "$WORK/gpucheck" "$WORK/$1/"
  cat > "$WORK/$1/thaw.yaml" << EOF
name: $1
runtime: python3
handler: app.handler
memory_mb: 8192
timeout_s: 120
max_instances: 1
$2
${3:-}
environment:
  MODE: $MODE
  EXTRA_SITE: "$EXTRA_SITE"
EOF
  "$BIN" deploy "$WORK/$1" > /dev/null || fail "deploy $1 failed"
}
if [[ $MODE == nvcc ]]; then
  step "compiling gpucheck.cu with $NVCC"
  "$NVCC" -O2 -o "$WORK/gpucheck" scripts/gpu-check/gpucheck.cu || fail "nvcc failed"
fi
LOADER=false
if [[ $MODE == torch ]]; then
  step "model loader: writing $LOAD_GB GB of fp16 weights (thaw_gpu.save and torch.save)"
  "$PY" scripts/gpu-check/loader_bench.py write "$WORK/weights" --gb "$LOAD_GB" > /dev/null ||
    fail "writing the weights failed"
  "$BIN" models push weights "$WORK/weights" > "$WORK/push.log" 2>&1 ||
    fail "models push failed: $(tail -3 "$WORK/push.log")"
  rm -rf "$WORK/weights"  # the store holds them now
  LOADER=true
  step "model loader: pushed to the store as weights:latest"
else
  echo "gpu-check: model loader: skipped (it needs PyTorch with CUDA; this run uses nvcc)"
fi
if [[ $LOADER == true ]]; then
  bundle gpucheck "gpu: {count: 1}" "models: [{name: weights, mount: /opt/models/weights}]"
else
  bundle gpucheck "gpu: {count: 1}"
fi
bundle nogpu "gpu: 0"

# --- a real CUDA computation, cold then warm ------------------------------------------------
step "invoking gpucheck (cold start)"
COLD=$(call POST /v1/functions/gpucheck/invoke '{"op":"compute"}')
[[ $(echo "$COLD" | field status) == 200 ]] || fail "gpucheck: $(echo "$COLD" | field body)"
[[ $(echo "$COLD" | field body ok) == True ]] || fail "CUDA result wrong: $(echo "$COLD" | field body)"
WARM=$(call POST /v1/functions/gpucheck/invoke '{"op":"compute"}')
[[ $(echo "$WARM" | field status) == 200 ]] || fail "gpucheck warm: $(echo "$WARM" | field body)"

# --- the model loader: page cache -> GPU, thaw_gpu.load vs torch.load -----------------------
LOAD=""
if [[ $LOADER == true ]]; then
  step "model loader: loading the store's weights onto the GPU both ways"
  LOAD=$(call POST /v1/functions/gpucheck/invoke '{"op":"load"}')
  [[ $(echo "$LOAD" | field status) == 200 ]] || fail "load: $(echo "$LOAD" | field body)"
  [[ $(echo "$LOAD" | field body equal) == True ]] ||
    fail "thaw_gpu.load and torch.load returned different tensors: $(echo "$LOAD" | field body)"
fi

# --- isolation: while gpucheck's instance holds its GPU --------------------------------------
MINE=$(call POST /v1/functions/gpucheck/invoke '{"op":"probe"}')
[[ $(echo "$MINE" | field body devices) == 1 ]] ||
  fail "the GPU instance should see exactly its 1 GPU: $(echo "$MINE" | field body)"
OTHER=$(call POST /v1/functions/nogpu/invoke '{"op":"probe"}')
[[ $(echo "$OTHER" | field status) == 200 ]] || fail "nogpu: $(echo "$OTHER" | field body)"
[[ $(echo "$OTHER" | field body devices) == 0 ]] ||
  fail "an instance without a GPU sees $(echo "$OTHER" | field body devices) CUDA device(s): $(echo "$OTHER" | field body)"
if [[ $SANDBOX == true && $(echo "$OTHER" | field body dev) != "[]" ]]; then
  fail "an instance without a GPU sees /dev nodes: $(echo "$OTHER" | field body dev)"
fi
if ((NGPU == 1)); then
  bundle second "gpu: 1"
  SECOND=$(call POST /v1/functions/second/invoke '{"op":"probe"}')
  [[ $(echo "$SECOND" | field status) == 429 ]] ||
    fail "a second GPU instance should wait for the only GPU (429): $(echo "$SECOND" | field body)"
else
  bundle second "gpu: 1"
  SECOND=$(call POST /v1/functions/second/invoke '{"op":"probe"}')
  [[ $(echo "$SECOND" | field body devices) == 1 ]] || fail "second: $(echo "$SECOND" | field body)"
  [[ $(echo "$SECOND" | field body uuids 0) != $(echo "$MINE" | field body uuids 0) ]] ||
    fail "two instances share GPU $(echo "$MINE" | field body uuids 0)"
fi
step "isolation: gpucheck sees $(echo "$MINE" | field body uuids) ($(echo "$MINE" | field body dev)); nogpu sees $(echo "$OTHER" | field body devices) device(s), /dev $(echo "$OTHER" | field body dev); second GPU instance: $(echo "$SECOND" | field status)"

# --- numbers --------------------------------------------------------------------------------
sleep 1  # the meter commits in batches
USAGE=$(call GET "/v1/usage?function=gpucheck")
echo
echo "gpu-check: PASS ($MODE, $(echo "$COLD" | field body name))"
echo "  cold start:        init $(echo "$COLD" | field headers X-Thaw-Init-Ms) ms (import $(echo "$COLD" | field body import_ms) ms), first call billed $(echo "$COLD" | field headers X-Thaw-Billed-Ms) ms"
echo "  warm call:         billed $(echo "$WARM" | field headers X-Thaw-Billed-Ms) ms"
echo "  host-to-GPU copy:  pinned $(echo "$WARM" | field body h2d_pinned_gbps) GB/s, pageable $(echo "$WARM" | field body h2d_pageable_gbps) GB/s"
echo "  GPU-seconds billed: $(echo "$USAGE" | field body total gpu_seconds) (idle-held so far: $(echo "$USAGE" | field body total gpu_idle_seconds)), cost $(echo "$USAGE" | field body total cost_lambda usd) at \$0.001097/GPU-s"
if [[ -n $LOAD ]]; then
  b() { echo "$LOAD" | field body "$@"; }
  echo "  model load:        $(b bytes) B fp16 in $(b tensors) tensors, page cache -> GPU: thaw_gpu.load $(b thaw_gbps) GB/s ($(b thaw_ms) ms), torch.load $(b torch_load_gbps) GB/s ($(b torch_load_ms) ms): $(b ratio)x$( [[ $(b safetensors_gbps) != None ]] && echo ", safetensors $(b safetensors_gbps) GB/s")"
fi
echo "  GPUs now:          $(call GET /v1/node | field body gpus devices)"
