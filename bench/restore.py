#!/usr/bin/env python3
"""nodejs templates: hello-node cold starts restored from a heap snapshot against full ones.

Starts two jailed thaw servers in one run, one with templates (the default: a nodejs version's
template is a `node --build-snapshot` blob, instances start with `node --snapshot-blob`) and
one with `--templates false`, and times hello-node scaled to zero before every sample, from
sending the invoke to the complete response; and, for reference, `node -e 0` and a bare
`node --snapshot-blob` of an empty snapshot on this machine. Prints a markdown section
(bench/run.sh adds it to docs/benchmarks.md). Usage: bench/restore.py [SAMPLES]
"""
import os
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from templates import ROOT, Server, copy_example, cold_starts, pct  # noqa: E402

SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 30


def timed(argv, n):
    ms = []
    for _ in range(n):
        t0 = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        ms.append((time.monotonic() - t0) * 1000)
    return ms


def main():
    work = tempfile.mkdtemp(prefix="thaw-restore-")
    on = Server(work, "on", [])
    off = Server(work, "off", ["--templates", "false"])
    try:
        bundle = copy_example(work, os.path.join(ROOT, "examples", "hello-node"), "node-cold",
                              "idle_timeout_s: 0\n")
        on.deploy(bundle)
        off.deploy(bundle)
        on.wait(lambda: on.template_ready("node-cold"), "node-cold snapshot")
        # Alternating runs, so that both see the same load.
        restore, full, kinds_on, kinds_off = [], [], set(), set()
        for _ in range(SAMPLES // 5):
            ms, k = cold_starts(on, "node-cold", "{}", 5)
            restore += ms
            kinds_on.add(k)
            ms, k = cold_starts(off, "node-cold", "{}", 5)
            full += ms
            kinds_off.add(k)
        empty = os.path.join(work, "empty.js")
        with open(empty, "w") as f:
            f.write("require('v8').startupSnapshot.setDeserializeMainFunction(() => {});\n")
        blob = os.path.join(work, "empty.blob")
        subprocess.run(["node", "--snapshot-blob", blob, "--build-snapshot", empty], check=True)
        node0 = timed(["node", "-e", "0"], SAMPLES)
        bare = timed(["node", "--snapshot-blob", blob], SAMPLES)
    finally:
        on.stop()
        off.stop()
        shutil.rmtree(work, ignore_errors=True)

    def row(name, kind, v):
        return (f"| {name} | {kind} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 99):.1f} | "
                f"{min(v):.1f} | {max(v):.1f} |")
    print(f"""
## nodejs templates: restore from a heap snapshot

Two jailed servers in this run, one with templates and one with `--templates false`; hello-node
scaled to zero (`idle_timeout_s: 0`) before every sample, the two servers alternating five
samples at a time, timed from sending the invoke to the complete response (bench/restore.py).
For reference, the bare process start of node on this machine, outside thaw.

| what | start kind | samples | p50 (ms) | p99 (ms) | min (ms) | max (ms) |
|---|---|---|---|---|---|---|
{row("hello-node, template", "/".join(sorted(kinds_on)), restore)}
{row("hello-node, `--templates false`", "/".join(sorted(kinds_off)), full)}
{row("`node -e 0`", "", node0)}
{row("`node --snapshot-blob` (empty snapshot)", "", bare)}

Target: hello-node cold start p50 ≤ 8 ms with a template.
""")


if __name__ == "__main__":
    main()
