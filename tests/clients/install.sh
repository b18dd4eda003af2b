#!/usr/bin/env bash
# Installs the npm clients the tests drive (@aws-sdk/client-lambda for the Lambda API, openai
# for the OpenAI routes) into DEST, once;
# concurrent callers wait for the first. Fails loudly: the tests need the real client.
set -euo pipefail
dest=${1:?usage: install.sh DEST}
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
[ -f "$dest/node_modules/@aws-sdk/client-lambda/package.json" ] &&
  [ -f "$dest/node_modules/openai/package.json" ] && exit 0
if ! command -v npm > /dev/null; then
  echo "install.sh: npm is missing: run scripts/deps.sh (Debian's nodejs and npm)" >&2
  exit 1
fi
echo "installing @aws-sdk/client-lambda and openai into $dest" >&2
# openai 6.x is the newest line that runs on Debian's node 20; pinned to the version tested.
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error '@aws-sdk/client-lambda@^3' \
  'openai@6.49.0' >&2
