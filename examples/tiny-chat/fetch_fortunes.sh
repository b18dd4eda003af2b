#!/usr/bin/env bash
# Build step for examples/tiny-chat and examples/tiny-embed: takes the fortunes (the
# `fortunes`, `literature` and `riddles` cookie files, ~100 KB of English text) out of Debian's
# fortunes-min package and writes them as one text file. The package is downloaded and unpacked
# here, never installed. No copy of the text is committed, so a failed download fails the build.
#   usage: fetch_fortunes.sh WORK_DIR OUT_FILE
set -euo pipefail
work=$1
out=$2
pkg=fortunes-min
dir=./usr/share/games/fortunes

fail() {
  echo "tiny-chat: $*" >&2
  echo "tiny-chat: the examples' training text comes from Debian's $pkg package;" \
       "check the network and that 'apt-get update' has run, then build again." >&2
  exit 1
}

rm -rf "$work"
mkdir -p "$work"
cd "$work"
if ! apt-get download "$pkg" > download.log 2>&1; then
  cat download.log >&2
  fail "'apt-get download $pkg' failed"
fi
deb=$(ls "$pkg"_*.deb)
dpkg-deb -x "$deb" unpacked || fail "could not unpack $deb"
: > "$out.tmp"
for f in fortunes literature riddles; do
  [ -f "unpacked/$dir/$f" ] || fail "$deb holds no $dir/$f"
  cat "unpacked/$dir/$f" >> "$out.tmp"
done
mv "$out.tmp" "$out"
rm -rf unpacked
echo "tiny-chat: took $(wc -c < "$out") bytes of fortunes from $deb"
