"""gpu-check: a GPU function for scripts/gpu-check.sh (not an example to deploy by hand).

MODE=torch: PyTorch with CUDA (its site directory given in EXTRA_SITE, since the runtime
runs python with -S). MODE=nvcc: the bundled ./gpucheck binary, built by nvcc from gpucheck.cu.
Event {"op": "compute"}: a real CUDA computation checked against the CPU, and host-to-GPU copy
bandwidth (pinned and pageable). {"op": "probe"}: what this instance can see: CUDA devices,
their UUIDs, /dev/nvidia* and CUDA_VISIBLE_DEVICES. {"op": "load"} (torch only): the store's
model `weights` (thaw.yaml models:) loaded onto the GPU by thaw_gpu.load and by torch.load,
timed by loader_bench.measure.
"""
import json
import os
import subprocess
import sys
import time

MODE = os.environ.get("MODE", "torch")
for d in os.environ.get("EXTRA_SITE", "").split(":"):
    if d and d not in sys.path:
        sys.path.append(d)
_t0 = time.monotonic()
if MODE == "torch":
    import torch  # noqa: E402
IMPORT_MS = round((time.monotonic() - _t0) * 1000, 1)


def _dev_nodes():
    return sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))


def _probe_torch():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    uuids = []
    for i in range(n):
        props = torch.cuda.get_device_properties(i)
        uuids.append(str(getattr(props, "uuid", props.name)))
    return {"devices": n, "uuids": uuids}


def _compute_torch():
    dev = torch.device("cuda:0")
    t = time.monotonic()
    a = torch.randn(4096, 4096, device=dev)
    b = torch.randn(4096, 4096, device=dev)
    c = a @ b
    torch.cuda.synchronize()
    first_ms = (time.monotonic() - t) * 1000
    ref = a.double().cpu() @ b.double().cpu()
    err = float((c.double().cpu() - ref).abs().max() / ref.abs().max())
    size = 512 << 20
    out = {"name": torch.cuda.get_device_name(0), "matmul_first_ms": round(first_ms, 1),
           "matmul_rel_error": err, "ok": err < 1e-2}
    for kind in ("pinned", "pageable"):
        host = torch.empty(size, dtype=torch.uint8)
        if kind == "pinned":
            host = host.pin_memory()
        dst = torch.empty(size, dtype=torch.uint8, device=dev)
        dst.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 5
        start.record()
        for _ in range(reps):
            dst.copy_(host, non_blocking=True)
        end.record()
        torch.cuda.synchronize()
        out[f"h2d_{kind}_gbps"] = round(reps * size / (start.elapsed_time(end) / 1000) / 1e9, 2)
        del host, dst
    return out


def _binary(arg):
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run([os.path.join(here, "gpucheck"), arg], capture_output=True, text=True,
                         timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"gpucheck {arg}: {run.returncode}: {run.stderr.strip()}")
    return json.loads(run.stdout)


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    if event.get("op") == "load":
        import loader_bench  # beside this file; it imports thaw_gpu, which the runtime ships
        device = event.get("device", "cuda")  # "cpu" to try the path on a machine without GPU
        return loader_bench.measure(os.environ["THAW_MODEL_WEIGHTS"], device)
    if event.get("op") == "probe":
        seen = _probe_torch() if MODE == "torch" else _binary("probe")
        seen.update({"dev": _dev_nodes(), "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                     "hold_s": event.get("hold_s", 0)})
        time.sleep(float(event.get("hold_s", 0)))
        return seen
    out = _compute_torch() if MODE == "torch" else _binary("compute")
    out.update({"mode": MODE, "import_ms": IMPORT_MS,
                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")})
    return out
