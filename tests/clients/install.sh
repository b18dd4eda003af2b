#!/usr/bin/env bash
# Installs the npm clients the Lambda API tests drive (@aws-sdk/client-lambda) into DEST, once;
# concurrent callers wait for the first. Fails loudly: the tests need the real client.
set -euo pipefail
dest=${1:?usage: install.sh DEST}
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
[ -f "$dest/node_modules/@aws-sdk/client-lambda/package.json" ] && exit 0
if ! command -v npm > /dev/null; then
  echo "install.sh: npm is missing: run scripts/deps.sh (Debian's nodejs and npm)" >&2
  exit 1
fi
echo "installing @aws-sdk/client-lambda into $dest" >&2
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error '@aws-sdk/client-lambda@^3' >&2
