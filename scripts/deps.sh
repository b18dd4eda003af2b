#!/usr/bin/env bash
# Installs the Debian packages thaw needs when they are missing: with apt-get when root,
# otherwise prints the one command to run and fails. BENCH=1 adds the benchmark tools.
set -euo pipefail
pkgs=(cmake g++ make pkg-config ccache
      libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
      libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev libsqlite3-dev libarchive-dev
      libpq-dev postgresql
      libssl-dev libseccomp-dev libgtest-dev libgmock-dev googletest libbenchmark-dev python3
      awscli prometheus)
# tests/ric_test.cc builds the npm aws-lambda-ric, which compiles a bundled curl.
pkgs+=(autoconf automake libtool)
# The Lambda API tests drive the npm @aws-sdk/client-lambda: Debian's node and npm unless a
# node with npm is already installed (e.g. NodeSource's, which bundles npm).
command -v npm > /dev/null || pkgs+=(nodejs npm)
# The console's browser tests (tests/ui_test.cc) drive Debian's headless chromium.
pkgs+=(chromium)
# Nodes in a cluster (tests/nodes_test.cc) join a real etcd: Debian's etcd 3.4.
pkgs+=(etcd-server etcd-client)
# deploy/k8s is checked with kubectl's client-side dry-run (tests/k8s_manifests_test.sh); the
# three-node tests (tests/cluster3_test.cc) make network namespaces with iproute2's `ip`. A
# kubectl from elsewhere (Kubernetes' own apt repository) does as well as Debian's.
pkgs+=(iproute2)
command -v kubectl > /dev/null || pkgs+=(kubernetes-client)
# examples/digits-torch trains (during the build) and serves with Debian's PyTorch.
pkgs+=(python3-torch)
if [ "${BENCH:-0}" = 1 ]; then pkgs+=(wrk nginx-light); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
else
  echo "thaw needs these Debian packages; run:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
