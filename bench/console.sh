#!/usr/bin/env bash
# The console's weight and first paint, for `make bench` (appended to docs/benchmarks.md):
# the embedded assets' size raw and gzipped, and over RUNS fresh headless chromium profiles the
# first contentful paint of /ui/ and the time from signing in to the functions table.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${BENCH_CONSOLE_RUNS:-10}
tests/ui/install.sh build/npm-ui
work=$(mktemp -d /tmp/thaw-bench-console-XXXXXX)
build/thaw serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn > "$work/thaw.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; chmod -R u+w "$work"; rm -rf "$work"' EXIT
for _ in $(seq 200); do grep -q "listening on" "$work/thaw.log" && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.:]*' "$work/thaw.log" | head -1)
key=$(cat "$work/data/admin.key")
THAW_SERVER=$url THAW_API_KEY=$key build/thaw deploy examples/hello-python > /dev/null
raw=0
gz=0
for f in ui/*; do
  raw=$((raw + $(curl -s "$url/ui/${f#ui/}" | wc -c)))
  gz=$((gz + $(curl -s "$url/ui/${f#ui/}" | gzip -9 | wc -c)))
done
out=$(THAW_NPM_UI_DIR="$PWD/build/npm-ui" node bench/console_paint.mjs "$url" "$key" hello-python "$RUNS")
stats() {  # p50 and max of field $1 over the runs
  echo "$out" | python3 -c "
import json, sys
v = sorted(json.loads(l)['$1'] for l in sys.stdin if l.strip())
print('%.0f ms / %.0f ms' % (v[(len(v) + 1) // 2 - 1], v[-1]))"
}
cat <<DOC

## Console

The embedded console (\`ui/\`, served at \`/ui/\`): $raw bytes, **$gz bytes gzipped** (each file
gzip -9 on its own; target < 300 KB compressed). Headless Debian chromium, $RUNS fresh profiles,
server and browser on the same cores:

| | p50 / max |
|---|---|
| first contentful paint of /ui/ | $(stats fcp_ms) (target < 1 s) |
| from the sign-in click to the functions table shown | $(stats signin_to_table_ms) |
DOC
