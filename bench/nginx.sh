# Sourced by the benchmarks: start_nginx DIR PORT starts Debian's nginx, one worker, answering
# every request with `return 200` and a small JSON body: the baseline a warm thaw call is
# compared with. Its pid file is DIR/nginx.pid (the caller's cleanup kills it).
start_nginx() {
  local dir=$1 port=$2
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$port; location / { return 200 '{"message":"hello, bench"}'; } }
}
CONF
  /usr/sbin/nginx -c "$dir/nginx.conf"
}

# nginx_bench_work TAG: a work folder ($work, /tmp/thaw-TAG-*) and a list of background pids
# ($pids) for a benchmark that runs nginx beside servers of its own; on exit, those processes
# and nginx are stopped and the folder removed.
nginx_bench_work() {
  work=$(mktemp -d "/tmp/thaw-$1-XXXXXX")
  pids=()
  trap nginx_bench_cleanup EXIT
}
nginx_bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
