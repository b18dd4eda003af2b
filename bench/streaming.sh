#!/usr/bin/env bash
# Streaming figures for `make bench`, on a thaw server of their own; prints a Markdown section
# for docs/benchmarks.md. Needs the build's examples/tiny-chat (trained during the build) and
# Debian's python3-torch for the in-process baseline.
#   time to first token: tiny-chat through thaw's OpenAI route (SSE) vs its handler in-process;
#   streaming overhead: 10,000 small chunks through thaw vs the runtime's loop to a local socket.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_TTFT_SAMPLES:-100}
CHUNKS=10000
RUNS=${BENCH_CHUNK_RUNS:-7}
PY=${THAW_TORCH_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/thaw-stream-bench-XXXXXX)
cleanup() {
  [ -n "${thaw_pid:-}" ] && kill "$thaw_pid" 2>/dev/null && wait "$thaw_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
  --init-timeout-ms 120000 > "$work/thaw.log" 2>&1 &
thaw_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
URL=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
KEY=$(cat "$work/data/admin.key")
T="build/thaw --server $URL --api-key $KEY"
$T deploy build/examples/tiny-chat > /dev/null
mkdir -p "$work/stream-chunks"
cat > "$work/stream-chunks/app.py" <<'PY'
def handler(event, context):
    def chunks():
        for _ in range(event["n"]):
            yield b"0123456789abcdef"
    return chunks()
PY
printf 'name: stream-chunks\nruntime: python3\nhandler: app.handler\ntimeout_s: 60\n' \
  > "$work/stream-chunks/thaw.yaml"
$T deploy "$work/stream-chunks" > /dev/null

field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
echo "time to first token, $N samples each..." >&2
ttft_thaw=$(python3 bench/stream_bench.py ttft-thaw "$URL" "$KEY" "$N")
ttft_local=$("$PY" bench/stream_bench.py ttft-local build/examples/tiny-chat "$N")
echo "10,000 chunks, $RUNS runs each..." >&2
chunks_thaw=$(python3 bench/stream_bench.py chunks-thaw "$URL" "$KEY" "$CHUNKS" "$RUNS")
chunks_local=$(python3 bench/stream_bench.py chunks-local "$CHUNKS" "$RUNS")
added=$(awk -v a="$(field "$ttft_thaw" p50_ms)" -v b="$(field "$ttft_local" p50_ms)" \
  'BEGIN { printf "%.2f", a - b }')
rate_thaw=$(field "$chunks_thaw" median_chunks_per_s)
rate_local=$(field "$chunks_local" median_chunks_per_s)
ratio=$(awk -v a="$rate_thaw" -v b="$rate_local" 'BEGIN { printf "%.2f", a / b }')

cat <<DOC

## Streaming

bench/streaming.sh, one jailed server, $(date -u +%Y-%m-%d), load average
$(cut -d' ' -f1 /proc/loadavg) at the end.

Time to first token: tiny-chat (examples/tiny-chat, warm, \`max_tokens: 8\`), from sending
\`POST /v1/chat/completions\` with \`stream: true\` over a kept-alive socket to the first
content event arriving, vs the same requests (same seeds) to its handler called in-process,
from the call to the first content chunk. $N samples each after 3 to warm up.

| | p50 (ms) | p99 (ms) |
|---|---|---|
| in-process (handler called directly) | $(field "$ttft_local" p50_ms) | $(field "$ttft_local" p99_ms) |
| through thaw (SSE, OpenAI route) | $(field "$ttft_thaw" p50_ms) | $(field "$ttft_thaw" p99_ms) |

**Added p50: $added ms** (target ≤ 2 ms).

Streaming overhead: a python3 function yields $CHUNKS chunks of 16 bytes; the time from the
invoke to the client holding the last one (native invoke, chunked), vs the same generator
written by the python runtime's own streaming loop (\`select\` + \`sendall\` of an HTTP chunk
each) to a local TCP socket that another process drains. Median of $RUNS runs.

| | chunks/s |
|---|---|
| runtime loop to a local socket | $rate_local |
| through thaw (runtime → thaw → client) | $rate_thaw |

**Ratio thaw / local socket: $ratio** (target ≥ 0.8).
DOC
