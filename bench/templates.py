#!/usr/bin/env python3
"""Templates: cold starts forked from a per-version template against full ones, in one run.

Starts two jailed thaw servers, one with templates (the default) and one with
`--templates false`, and measures on each: the cold start to response of digits-torch,
hello-python and hello-node scaled to zero (idle_timeout_s: 0) before every sample; the memory
(sum of PSS) of 8 digits-torch instances forked from one template (template included) against
one instance and against 8 started in full; and 64 concurrent calls to a scaled-to-zero
digits-torch with max_instances 8. Prints a markdown section (bench/run.sh adds it to
docs/benchmarks.md). Usage: bench/templates.py [SAMPLES] [FULL_SAMPLES], or
bench/templates.py memory for the memory table alone.

The memory figures come from servers run one at a time, after the cold-start servers have
stopped: a sum of PSS divides each shared page among every process that maps it, so a process
outside the group measured (another server's template, say, mapping the same libtorch pages)
would lower the group's sum and make it depend on what else happens to run.
"""
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THAW = os.path.join(ROOT, "build", "thaw")
ARGS = [a for a in sys.argv[1:] if a.isdigit()]
SAMPLES = int(ARGS[0]) if ARGS else 30
FULL_SAMPLES = int(ARGS[1]) if len(ARGS) > 1 else 10


class Server:
    def __init__(self, work, name, flags):
        self.dir = os.path.join(work, name)
        self.log = open(os.path.join(work, name + ".log"), "w+")
        self.proc = subprocess.Popen(
            [THAW, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.dir, "--log-level",
             "warn", "--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"] + flags,
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(400):
            self.log.seek(0)
            m = re.search(r"http://[0-9.:]+", self.log.read())
            if m and "listening on" in open(self.log.name).read():
                self.url = m.group(0)
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"{name}: thaw did not start")
        self.key = open(os.path.join(self.dir, "admin.key")).read().strip()

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else body.encode(),
                                     headers={"Authorization": "Bearer " + self.key})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def deploy(self, folder):
        subprocess.run([THAW, "--server", self.url, "--api-key", self.key, "deploy", folder],
                       check=True, stdout=subprocess.DEVNULL)

    def function(self, name):
        return json.loads(self.call("GET", "/v1/functions/" + name)[2])

    def wait(self, pred, what, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.02)
        raise SystemExit("timed out waiting for " + what)

    def template_ready(self, name):
        t = self.function(name).get("templates", [])
        return bool(t) and t[-1]["state"] == "ready"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def copy_example(work, src, name, extra):
    dst = os.path.join(work, "bundles", name)
    if os.path.isdir(dst):  # the same bundle for both servers
        return dst
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    with open(os.path.join(dst, "thaw.yaml")) as f:
        yaml = re.sub(r"^name:.*$", "name: " + name, f.read(), flags=re.M)
    with open(os.path.join(dst, "thaw.yaml"), "w") as f:
        f.write(yaml + extra)
    return dst


def cold_starts(server, name, payload, samples):
    """ms per sample, each from a scaled-to-zero function, and the start kinds seen."""
    ms, kinds = [], set()
    for _ in range(samples):
        server.wait(lambda: all(v == 0 for v in server.function(name)["instances"].values()),
                    name + " scaled to zero")
        t0 = time.monotonic()
        status, headers, body = server.call("POST", f"/v1/functions/{name}/invoke", payload)
        ms.append((time.monotonic() - t0) * 1000)
        if status != 200 or headers.get("X-Thaw-Cold-Start") != "true":
            raise SystemExit(f"{name}: not a successful cold start: {status} {body[:200]}")
        kinds.add(headers.get("X-Thaw-Start-Kind"))
    return ms, "/".join(sorted(kinds))


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, (p * len(v) + 99) // 100 - 1))]


def burst(server, name, payload, n):
    def one(_):
        t0 = time.monotonic()
        status, headers, _ = server.call("POST", f"/v1/functions/{name}/invoke", payload)
        return status, headers.get("X-Thaw-Start-Kind"), (time.monotonic() - t0) * 1000
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def rollup(pid):
    """/proc/PID/smaps_rollup's fields in kB ({} once the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", f.read(), re.M)}
    except OSError:
        return {}


def call_each(server, name, want, payload):
    """Calls until each of the `want` ready instances has answered one (digits-torch names the
    instance that answered): so that what is measured is an instance that has served."""
    seen = set()
    for _ in range(20):
        for status, _, body in burst_bodies(server, name, payload, want):
            if status == 200:
                seen.add(json.loads(body)["model"]["id"])
        if len(seen) >= want:
            break
    return len(seen)


def burst_bodies(server, name, payload, n):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(
            lambda _: server.call("POST", f"/v1/functions/{name}/invoke", payload), range(n)))


def group_memory(server, name, want, payload):
    """The `want` ready instances of `name`, after each has served a call, and its template:
    (instances, instances that served, sum of their PSS, the template's PSS, mean private
    dirty per instance), in kB."""
    server.wait(lambda: server.function(name)["instances"].get("ready", 0) >= want, name + " ready")
    served = call_each(server, name, want, payload)
    time.sleep(1)  # let the calls' after-effects (a collection, freed buffers) settle
    f = server.function(name)
    pids = [i["pid"] for i in f["instance_list"] if i["state"] == "ready"][:want]
    tpl = [t["pid"] for t in f.get("templates", []) if t["state"] == "ready"]
    rolls = [rollup(p) for p in pids]
    pss = sum(r.get("Pss", 0) for r in rolls)
    dirty = sum(r.get("Private_Dirty", 0) for r in rolls) / max(len(rolls), 1)
    return len(pids), served, pss, sum(rollup(p).get("Pss", 0) for p in tpl), dirty


def memory_table(work, digits):
    """Memory of digits-torch instances, each group on a server of its own, run alone."""
    pixels = json.dumps({"pixels": [0] * 64})
    # The runtime as it was before gc.freeze: the same file, the freeze taken out.
    old_rt = os.path.join(work, "runtimes-nofreeze")
    shutil.copytree(os.path.join(ROOT, "runtimes"), old_rt)
    boot = os.path.join(old_rt, "python3", "bootstrap.py")
    src = open(boot).read()
    if "gc.freeze()" not in src:
        raise SystemExit("bootstrap.py has no gc.freeze() to take out")
    with open(boot, "w") as f:
        f.write(src.replace("gc.collect()", "pass").replace("gc.freeze()", "pass"))
    # digits-torch whose handler ends each call with a full collection: what a long-lived
    # instance's collector does sooner or later (or a handler that calls gc.collect() itself).
    collecting = os.path.join(work, "bundles", "digits-gc")
    shutil.copytree(digits, collecting)
    with open(os.path.join(collecting, "app.py"), "a") as f:
        f.write("\n\nimport gc as _gc\n_handler = handler\n\n\n"
                "def handler(event, context):\n    try:\n        return _handler(event, context)\n"
                "    finally:\n        _gc.collect()\n")
    rows = []

    def measure(label, flags, yaml, want, bundle=digits):
        s = Server(work, "mem-" + str(len(rows)), flags)
        name = "digits-mem" + str(len(rows))
        try:
            s.deploy(copy_example(work, bundle, name, yaml))
            rows.append((label,) + group_memory(s, name, want, pixels))
        finally:
            s.stop()

    # The runtimes of this checkout, not the copy in build/ that a build refreshes.
    now_rt = ["--runtimes-dir", os.path.join(ROOT, "runtimes")]
    eight = "min_instances: 8\n"
    measure("one instance, `--templates false`", ["--templates", "false"] + now_rt,
            "min_instances: 1\n", 1)
    measure("started in full, `--templates false`", ["--templates", "false"] + now_rt, eight, 8)
    measure("forked, without `gc.freeze()`", ["--runtimes-dir", old_rt], eight, 8)
    measure("forked, `gc.freeze()` (now)", now_rt, eight, 8)
    measure("forked, without `gc.freeze()`, each call ends with `gc.collect()`",
            ["--runtimes-dir", old_rt], eight, 8, collecting)
    measure("forked, `gc.freeze()` (now), each call ends with `gc.collect()`", now_rt, eight, 8,
            collecting)
    one = max(rows[0][3], 1)
    mb = lambda kb: kb / 1024
    out = ["Memory of digits-torch instances, sum of PSS (`/proc/PID/smaps_rollup`, template "
           "included),", "each group on a server of its own, run alone, after every instance "
           "served a call; forked groups are", "8 instances forked from one template:", "",
           "| | instances (served a call) | PSS (MB) | / one full instance | template PSS (MB) "
           "| private dirty per instance (MB) |", "|---|---|---|---|---|---|"]
    for label, n, served, pss, tpl, dirty in rows:
        target = " (target ≤ 2)" if tpl > 0 else ""
        out.append(f"| {label} | {n} ({served}) | {mb(pss + tpl):.0f} | "
                   f"{(pss + tpl) / one:.2f}{target} | {mb(tpl):.0f} | {mb(dirty):.1f} |")
    return "\n".join(out) + "\n"


def main():
    work = tempfile.mkdtemp(prefix="thaw-templates-")
    digits = os.path.join(ROOT, "build", "examples", "digits-torch")
    on = Server(work, "on", [])
    off = Server(work, "off", ["--templates", "false"])
    try:
        zero = "idle_timeout_s: 0\n"
        for s in (on, off):
            s.deploy(copy_example(work, digits, "digits-cold", zero))
        on.deploy(copy_example(work, os.path.join(ROOT, "examples", "hello-python"),
                               "py-cold", zero))
        on.deploy(copy_example(work, os.path.join(ROOT, "examples", "hello-node"),
                               "node-cold", zero))
        on.wait(lambda: on.template_ready("digits-cold") and on.template_ready("py-cold"),
                "templates")
        pixels = json.dumps({"pixels": [0] * 64})
        d_on, d_on_kind = cold_starts(on, "digits-cold", pixels, SAMPLES)
        d_off, d_off_kind = cold_starts(off, "digits-cold", pixels, FULL_SAMPLES)
        py, py_kind = cold_starts(on, "py-cold", "{}", SAMPLES)
        node, node_kind = cold_starts(on, "node-cold", "{}", SAMPLES)

        # 64 concurrent calls, scaled to zero, max_instances 8 (the default).
        on.deploy(copy_example(work, digits, "digits-burst", "idle_timeout_s: 5\n"))
        on.wait(lambda: on.template_ready("digits-burst"), "digits-burst template")
        calls = burst(on, "digits-burst", pixels, 64)
        ok = sum(1 for c in calls if c[0] == 200)
        kinds = {}
        for c in calls:
            kinds[c[1]] = kinds.get(c[1], 0) + 1
        burst_ms = [c[2] for c in calls]
    finally:
        on.stop()
        off.stop()
    try:
        mem = memory_table(work, digits)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    p50_on, p50_off = pct(d_on, 50), pct(d_off, 50)
    mb = lambda kb: kb / 1024
    print(f"""
## Templates: cold starts forked from an initialised runtime

Two jailed servers in this run, one with templates (the default) and one with
`--templates false`; each function scaled to zero (`idle_timeout_s: 0`) before every sample,
timed from sending the invoke to the complete response (bench/templates.py).

| function | start kind | samples | p50 (ms) | p99 (ms) | min (ms) | max (ms) | target |
|---|---|---|---|---|---|---|---|
| digits-torch, template | {d_on_kind} | {len(d_on)} | {p50_on:.1f} | {pct(d_on, 99):.1f} | {min(d_on):.1f} | {max(d_on):.1f} | ≤ 50 ms |
| digits-torch, `--templates false` | {d_off_kind} | {len(d_off)} | {p50_off:.1f} | {pct(d_off, 99):.1f} | {min(d_off):.1f} | {max(d_off):.1f} | |
| hello-python, template | {py_kind} | {len(py)} | {pct(py, 50):.1f} | {pct(py, 99):.1f} | {min(py):.1f} | {max(py):.1f} | ≤ 8 ms |
| hello-node, template (restore: see below) | {node_kind} | {len(node)} | {pct(node, 50):.1f} | {pct(node, 99):.1f} | {min(node):.1f} | {max(node):.1f} | ≤ 8 ms |

**digits-torch cold start, full / fork (p50): {p50_off / p50_on:.0f}x** (target ≥ 50x).

64 concurrent calls to a scaled-to-zero digits-torch (template ready, `max_instances: 8`):
{ok}/64 answered 200; start kinds {json.dumps(kinds, sort_keys=True)} (target: all 200, none
`full`); latency p50 {pct(burst_ms, 50):.1f} ms, max {max(burst_ms):.1f} ms.

{mem}""")


if __name__ == "__main__":
    if sys.argv[1:] == ["memory"]:
        w = tempfile.mkdtemp(prefix="thaw-templates-")
        try:
            print("\n" + memory_table(w, os.path.join(ROOT, "build", "examples", "digits-torch")))
        finally:
            shutil.rmtree(w, ignore_errors=True)
    else:
        main()
