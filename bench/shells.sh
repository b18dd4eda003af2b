# Sourced by the burst benches. wait_ready_shells SPAWNER_PID N: waits (up to 60 s) until N of
# the spawner's children are ready shells (blocked reading their socket for a request), as on a
# node that has been idle, then 1 s more for the machine to settle.
wait_ready_shells() {
  local spawner=$1 want=$2 waiting c
  for _ in $(seq 1200); do
    waiting=0
    for c in $(cat "/proc/$spawner/task/$spawner/children"); do
      grep -q __skb_wait_for_more_packets "/proc/$c/wchan" 2>/dev/null && waiting=$((waiting + 1))
    done
    [ "$waiting" -ge "$want" ] && break
    sleep 0.05
  done
  sleep 1
}
# wait_fork_cgroups SPAWNER_PID N: waits (up to 60 s) until the spawner holds N cgroups made for
# forks (those it makes ahead while a template is ready, and its spare's), as on an idle node.
wait_fork_cgroups() {
  local spawner=$1 want=$2 dir=/sys/fs/cgroup/pids/thaw
  [ -d "$dir" ] || dir=/sys/fs/cgroup/thaw
  for _ in $(seq 1200); do
    [ "$(ls -d "$dir/shell-$spawner-fork"* 2>/dev/null | wc -l)" -ge "$want" ] && break
    sleep 0.05
  done
}
# wait_idle [MAX_S]: waits (up to MAX_S, default 30 s) until the last half second's CPU time was
# at least 90% idle: a server stopped just before leaves the kernel seconds of work (its cgroups
# offlined by kernel workers) that would otherwise share the cores with the next measurement.
wait_idle() {
  local a b
  for _ in $(seq $(( ${1:-30} * 2 ))); do
    a=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
      exit !((y[2] - x[2]) >= 0.9 * (y[1] - x[1])) }' && return 0
  done
}
