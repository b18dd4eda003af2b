"""loader_bench: thaw_gpu.load against torch.load on the same weights, from the page cache.

    loader_bench.py write DIR --gb G      # DIR/weights.safetensors and DIR/weights.pt
    loader_bench.py measure DIR --device cuda|cpu
    loader_bench.py run --gb G --device cpu   # both, in a temp dir removed afterwards

The weights are random fp16 matrices the shape of a transformer's (4096 x 4096 projections,
with small norm vectors between them), written once by thaw_gpu.save and once by torch.save.
`measure` reads both files once (so both loaders start from the page cache), then times each
loader twice, alternating, until its tensors are on the device (synchronized), keeps the best
of each, checks the two results are equal tensor by tensor, and prints one JSON line: bytes,
thaw_gbps, torch_load_gbps, ratio (and safetensors_gbps where the safetensors package is
installed). scripts/gpu-check.sh runs `measure` inside a GPU function, on the store's copy of
the files; the app there imports this file.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch

try:
    import thaw_gpu
except ImportError:  # run from the source tree, not in a function
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                 "runtimes", "python3", "lib"))
    import thaw_gpu

ST, PT = "weights.safetensors", "weights.pt"


def write(folder, gb):
    os.makedirs(folder, exist_ok=True)
    gen_device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=gen_device).manual_seed(0)
    tensors, total, i = {}, 0, 0
    while total < gb * 1e9:
        w = torch.randn(4096, 4096, generator=g, device=gen_device, dtype=torch.float16)
        tensors[f"layers.{i}.proj.weight"] = w.cpu()
        tensors[f"layers.{i}.norm.weight"] = torch.ones(4096, dtype=torch.float16)
        total += (w.numel() + 4096) * 2
        i += 1
    thaw_gpu.save(tensors, os.path.join(folder, ST), metadata={"format": "pt"})
    torch.save(tensors, os.path.join(folder, PT))
    return total


def _warm(path):
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while f.readinto(buf):
            pass


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(folder, device="cuda", reps=2):
    device = torch.device(device)
    st, pt = os.path.join(folder, ST), os.path.join(folder, PT)
    _warm(st)
    _warm(pt)
    loaders = {"thaw": lambda: thaw_gpu.load(st, device=device),
               "torch_load": lambda: torch.load(pt, map_location=device)}
    try:
        from safetensors.torch import load_file  # only to compare, where installed
        loaders["safetensors"] = lambda: load_file(st, device=str(device))
    except ImportError:
        pass
    best, results = {}, {}
    for _ in range(reps):
        for name, fn in loaders.items():
            results.pop(name, None)  # free the last copy before timing the next
            _sync(device)
            t0 = time.perf_counter()
            results[name] = fn()
            _sync(device)
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    ref = results["torch_load"]
    equal = all(sorted(r) == sorted(ref) and all(torch.equal(r[k], ref[k]) for k in ref)
                for r in results.values())
    nbytes = sum(t.numel() * t.element_size() for t in ref.values())
    out = {"device": str(device), "bytes": nbytes, "tensors": len(ref), "equal": equal,
           "reps": reps}
    for name, secs in best.items():
        out[f"{name}_gbps"] = round(nbytes / secs / 1e9, 2)
        out[f"{name}_ms"] = round(secs * 1000, 1)
    out["ratio"] = round(best["torch_load"] / best["thaw"], 2)
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("write", "measure", "run"))
    p.add_argument("dir", nargs="?")
    p.add_argument("--gb", type=float, default=1.0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()
    if a.what != "run" and not a.dir:
        p.error(f"{a.what} needs DIR")
    if a.what == "write":
        print(json.dumps({"bytes": write(a.dir, a.gb), "dir": a.dir}))
        return
    folder = a.dir or tempfile.mkdtemp(prefix="thaw-loader-bench.")
    try:
        if a.what == "run":
            write(folder, a.gb)
        result = measure(folder, a.device, a.reps)
        print(json.dumps(result))
        if not result["equal"]:
            sys.exit("loader_bench: the loaders returned different tensors")
    finally:
        if a.what == "run" and not a.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
