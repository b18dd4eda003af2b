#!/usr/bin/env bash
# Installs puppeteer-core (the browser driver the console tests use, pointed at Debian's
# chromium) into DEST, once; concurrent callers wait for the first. Fails loudly: the tests
# need the real driver and the real browser.
set -euo pipefail
dest=${1:?usage: install.sh DEST}
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if ! command -v chromium > /dev/null; then
  echo "install.sh: chromium is missing: run scripts/deps.sh (Debian's chromium)" >&2
  exit 1
fi
[ -f "$dest/node_modules/puppeteer-core/package.json" ] && exit 0
if ! command -v npm > /dev/null; then
  echo "install.sh: npm is missing: run scripts/deps.sh (Debian's nodejs and npm)" >&2
  exit 1
fi
echo "installing puppeteer-core into $dest" >&2
# 24.x is the newest line that runs on node 20 (25 needs node 22); pinned to the version tested.
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error 'puppeteer-core@24.43.1' >&2
