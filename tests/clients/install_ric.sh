#!/usr/bin/env bash
# Installs the npm aws-lambda-ric (the AWS Lambda Runtime Interface Client for node) into DEST,
# once; concurrent callers (and install.sh, which shares DEST's lock) wait for the first. Its
# install compiles a bundled curl and aws-lambda-cpp (about 2 minutes): it needs Debian's
# autoconf automake libtool cmake make g++ python3 (scripts/deps.sh). Fails loudly.
set -euo pipefail
dest=${1:?usage: install_ric.sh DEST}
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
[ -f "$dest/node_modules/aws-lambda-ric/dist/rapid-client.node" ] && exit 0
for tool in npm autoconf automake libtoolize cmake make g++ python3; do
  if ! command -v "$tool" > /dev/null; then
    echo "install_ric.sh: $tool is missing: run scripts/deps.sh" >&2
    exit 1
  fi
done
echo "installing aws-lambda-ric@3.3.0 into $dest (builds native code, ~2 min)" >&2
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error --save-exact 'aws-lambda-ric@3.3.0' >&2
