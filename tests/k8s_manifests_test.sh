#!/bin/sh
# Every object in deploy/k8s parses as a Kubernetes object of a kind the API has: Debian's
# kubectl (kubernetes-client) in client-side dry-run, with no cluster. kubectl still asks a
# server which kinds exist, so it is given a discovery cache of the built-in kinds these files
# may use (and a server address where nothing listens, so nothing is ever sent). Not covered
# without a cluster: field-level schema validation (that needs the server's OpenAPI).
# Usage: k8s_manifests_test.sh DIR. Exit 77 (skipped) without kubectl.
set -eu
dir=${1:?usage: $0 deploy/k8s}
if ! command -v kubectl >/dev/null 2>&1; then
  echo "SKIP: kubectl is not installed (Debian's kubernetes-client; scripts/deps.sh installs it)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=$work/cache/discovery/127.0.0.1_9
mkdir -p "$cache/v1" "$cache/apps/v1"
cat > "$work/kubeconfig" <<'CFG'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none}}]
current-context: none
CFG
group() { printf '{"name":"%s","versions":[{"groupVersion":"%s","version":"v1"}],"preferredVersion":{"groupVersion":"%s","version":"v1"}}' "$1" "$2" "$2"; }
printf '{"kind":"APIGroupList","apiVersion":"v1","groups":[%s,%s]}' \
  "$(group "" v1)" "$(group apps apps/v1)" > "$cache/servergroups.json"
resource() { printf '{"name":"%s","singularName":"","namespaced":%s,"kind":"%s","verbs":["create","get"]}' "$1" "$2" "$3"; }
printf '{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[%s,%s,%s,%s,%s]}' \
  "$(resource namespaces false Namespace)" "$(resource configmaps true ConfigMap)" \
  "$(resource secrets true Secret)" "$(resource services true Service)" \
  "$(resource serviceaccounts true ServiceAccount)" > "$cache/v1/serverresources.json"
printf '{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"apps/v1","resources":[%s,%s,%s]}' \
  "$(resource statefulsets true StatefulSet)" "$(resource daemonsets true DaemonSet)" \
  "$(resource deployments true Deployment)" > "$cache/apps/v1/serverresources.json"

# `create` rather than `apply`: apply's client dry-run still reads the live object.
out=$(kubectl --kubeconfig "$work/kubeconfig" --cache-dir "$work/cache" --request-timeout=5s \
  create --dry-run=client --validate=false -f "$dir" -o name 2>&1) || {
  echo "FAIL: kubectl could not parse $dir:"; echo "$out"; exit 1; }
echo "$out"
# Every document (---) of every file became exactly one object.
docs=$(cat "$dir"/*.yaml | grep -c '^kind: ')
objects=$(printf '%s\n' "$out" | grep -c '/')
if [ "$docs" -ne "$objects" ]; then
  echo "FAIL: $docs objects in $dir, kubectl made $objects"; exit 1
fi
for want in namespace/thaw secret/thaw-keys secret/thaw-postgres configmap/thaw-config \
    service/postgres statefulset.apps/postgres service/etcd statefulset.apps/etcd \
    daemonset.apps/thaw service/thaw; do
  printf '%s\n' "$out" | grep -qx "$want" || { echo "FAIL: no $want"; exit 1; }
done
echo "OK: $objects objects"
