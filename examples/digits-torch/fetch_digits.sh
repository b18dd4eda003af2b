#!/usr/bin/env bash
# Build step for examples/digits-torch: takes scikit-learn's copy of the UCI handwritten-digits
# table (digits.csv.gz) out of Debian's python3-sklearn package. The package is downloaded and
# unpacked here, never installed: its dependencies pull in Boost 1.74, which cannot sit beside
# the libboost1.81-dev thaw builds with. No copy of the data is committed, so a failed download
# fails the build.
#   usage: fetch_digits.sh WORK_DIR OUT_FILE
set -euo pipefail
work=$1
out=$2
pkg=python3-sklearn
member=./usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz

fail() {
  echo "digits-torch: $*" >&2
  echo "digits-torch: the example's training data comes from Debian's $pkg package;" \
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
[ -f "unpacked/$member" ] || fail "$deb holds no $member"
gzip -t "unpacked/$member" || fail "$member in $deb is corrupt"
cp "unpacked/$member" "$out.tmp"
mv "$out.tmp" "$out"
rm -rf unpacked  # the rest of scikit-learn is not needed
echo "digits-torch: took digits.csv.gz from $deb"
