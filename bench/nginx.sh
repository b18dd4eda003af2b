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
