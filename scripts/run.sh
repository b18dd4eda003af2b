#!/usr/bin/env bash
# `make run`: serve on 127.0.0.1:8080 with data in ./.thaw, deploy the examples, print a
# working curl line, and stay in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN=${THAW_LISTEN:-127.0.0.1:8080}
export THAW_DATA_DIR=${THAW_DATA_DIR:-.thaw}
export THAW_SERVER="http://$LISTEN"
log=$(mktemp)
build/thaw serve --listen "$LISTEN" > "$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT INT TERM
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.05
done
cat "$log"
build/thaw deploy build/examples/hello-cpp
# digits-torch-store's model lives in the model store: push it before its bundle is deployed.
build/thaw models push digits:v1 build/examples/digits-torch-model
build/thaw deploy examples/hello-python
for ex in examples/*/; do
  case "$ex" in examples/hello-cpp/|examples/hello-python/) continue ;; esac
  if [ -d "build/$ex" ]; then build/thaw deploy "build/$ex"; else build/thaw deploy "$ex"; fi
done
echo
echo "thaw is serving on http://$LISTEN (data in $THAW_DATA_DIR)."
echo "Console: http://$LISTEN/ui/ (sign in with the key in $THAW_DATA_DIR/admin.key). Try:"
echo "  curl -H \"Authorization: Bearer \$(cat $THAW_DATA_DIR/admin.key)\" -d '{\"name\":\"ada\"}' http://$LISTEN/v1/functions/hello-python/invoke"
echo "  build/thaw invoke hello-cpp '{\"name\":\"ada\"}'"
echo "Ctrl-C stops the server."
tail -n +1 -f "$log" --pid=$server &
wait $server
