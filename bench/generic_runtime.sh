#!/usr/bin/env bash
# An unmodified Lambda runtime over the HTTP Runtime API against thaw's own C++ SDK, side by
# side with nginx `return 200` in one run (bench/side_by_side.sh, one thaw build for both
# sides): "before" is hello-cpp (the C++ SDK, which writes its answer and its next GET in one
# go), "after" is bench/lambda_runtime.c, a plain C `provided` runtime that waits for each
# reply before the next request. Both servers run with `--runtime-channel false`.
#   bench/generic_runtime.sh [THAW_BINARY]   (BENCH_ROUNDS, BENCH_DURATION, BENCH_STRACE as there)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/thaw}
bundle=$(mktemp -d /tmp/thaw-generic-XXXXXX)
trap 'rm -rf "$bundle"' EXIT
cc -O2 -Wall -Wextra -Werror -static -o "$bundle/bootstrap" bench/lambda_runtime.c
# The name side_by_side.sh calls; the same settings as examples/hello-cpp.
sed 's/^runtime: .*/runtime: cpp/' build/examples/hello-cpp/thaw.yaml > "$bundle/thaw.yaml"
BENCH_EXAMPLE_BEFORE=build/examples/hello-cpp BENCH_EXAMPLE_AFTER="$bundle" \
  BENCH_SERVE_ARGS="--runtime-channel false ${BENCH_SERVE_ARGS:-}" \
  bench/side_by_side.sh "$BIN" "$BIN"
