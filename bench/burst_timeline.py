"""Joins the strace logs of one burst (bench/burst_trace.sh) into a timeline per start, by
spawn request id and pid: thaw sends the spawn request -> the spawner receives it -> the
child (shell or fork) execs -> the runtime says it is ready on its channel -> the spawner
answers -> thaw reads the answer. Prints when each step happened across the burst (ms after
the first call arrived) and how long each step took per start. Usage: burst_timeline.py DIR
(DIR holds th.trace and sp.trace)."""
import re
import sys


def seconds(stamp):
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def lines(path):
    for line in open(path, errors="replace"):
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit():
            yield int(parts[0]), seconds(parts[1]), parts[2]


def main():
    d = sys.argv[1]
    starts, t0 = {}, None
    put = lambda i, k, t: starts.setdefault(i, {}).setdefault(k, t)
    spawn = re.compile(r'sendmsg\(\d+, .*iov_base="S\\0(?:00)?(\d+)\\0')
    answer = re.compile(r'iov_base="(\d+)\\0ok\\0(?:00)?(\d+)')
    for _, t, call in lines(d + "/th.trace"):
        if t0 is None and "POST /" in call:
            t0 = t
        if m := spawn.search(call):
            put(int(m.group(1)), "thaw sends", t)
        if "recvmsg" in call and (m := answer.search(call)):
            put(int(m.group(1)), "thaw reads answer", t)
    pid_of, execs, ready = {}, {}, {}
    received = re.compile(r'recvmsg\(\d+, .*iov_base="S\\0(?:00)?(\d+)\\0')
    for pid, t, call in lines(d + "/sp.trace"):
        if m := received.search(call):
            put(int(m.group(1)), "spawner receives", t)
        if call.startswith("sendmsg(") and (m := answer.search(call)):
            put(int(m.group(1)), "spawner answers", t)
            pid_of[int(m.group(1))] = int(m.group(2))
        if call.startswith("execve(") and pid not in execs:
            execs[pid] = t
        if call.startswith('writev(5, [{iov_base="\\1\\0\\0\\0N"') and pid not in ready:
            ready[pid] = t
    for i, pid in pid_of.items():
        if pid in execs:
            put(i, "child execs", execs[pid])
        if pid in ready:
            put(i, "runtime ready", ready[pid])
    steps = ["thaw sends", "spawner receives", "child execs", "runtime ready", "spawner answers",
             "thaw reads answer"]
    if t0 is None:
        sys.exit("no call found in th.trace")
    pct = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print(f"{len(starts)} starts; ms after the first call arrived:")
    for k in steps:
        v = sorted((s[k] - t0) * 1000 for s in starts.values() if k in s)
        if v:
            print(f"  {k:18s} n={len(v):3d} first {v[0]:7.1f}  p50 {pct(v, .5):7.1f}  last {v[-1]:7.1f}")
    print("per start, ms:")
    for a, b in zip(steps, steps[1:]):
        v = sorted((s[b] - s[a]) * 1000 for s in starts.values() if a in s and b in s)
        if v:
            print(f"  {a} -> {b}: p50 {pct(v, .5):7.1f}  p90 {pct(v, .9):7.1f}  max {v[-1]:7.1f}")


main()
