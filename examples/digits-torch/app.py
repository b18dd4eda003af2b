"""digits-torch: classifies 8x8 handwritten digits with a small PyTorch model on the CPU.

Event: {"pixels": [64 ints 0-16]} for one image, or {"images": [[64 ints], ...]} for a batch
(rows of the 8x8 image, top to bottom, as in scikit-learn's digits data set).
Result: {"label": 3, "probabilities": [10 floats]} or {"labels": [...], "probabilities":
[[...], ...]}, plus "model": how this instance loaded the model and how many calls it served.

With thaw's dynamic batching (`batch:` in thaw.yaml, as examples/digits-torch-batched deploys
it) the event is {"batch": [event, ...]}: every image of every event goes through the model in
one forward pass, and the result is a list with each event's result in its slot, or
{"error": "..."} for an event that was malformed (that caller alone gets the error).

Everything expensive happens once per instance, at import (the cold start): importing torch
(~2 s) and loading model.pt (TorchScript, written by train.py during the build). Warm calls
only run the forward pass.
"""
import os
import time
import uuid

_started = time.monotonic()
import torch  # noqa: E402  (timed: it is most of the cold start)

# One request at a time per instance (concurrency: 1) and a tiny model: intra-op threads
# would cost more in start-up and hand-off than they save. One thread also keeps this module
# fork-safe: thaw forks new instances from a template that ran this import (README,
# "Templates"), and refuses to when the template holds threads (an intra-op pool started
# here would be one).
torch.set_num_threads(1)
# From the model store when thaw.yaml mounts it (examples/digits-torch-store), else the bundle.
MODEL_DIR = os.environ.get("THAW_MODEL_DIGITS", os.path.dirname(os.path.abspath(__file__)))
MODEL = torch.jit.load(os.path.join(MODEL_DIR, "model.pt"), map_location="cpu")
MODEL.eval()
# TorchScript optimises a model on its first calls: do them here, at init, so that no instance
# pays for them on a call (and instances forked from a template inherit the optimised model).
with torch.inference_mode():
    for _ in range(3):
        MODEL(torch.zeros(1, 64))
INSTANCE = {"id": uuid.uuid4().hex[:12],  # tells callers which instance answered
            "load_ms": round((time.monotonic() - _started) * 1000, 1),
            "calls": 0}
print(f"digits-torch: loaded model.pt in {INSTANCE['load_ms']} ms (instance {INSTANCE['id']})")


def _forked():
    # A forked instance is an instance of its own: its own id and count, the model shared with
    # its template (copy-on-write). Threads are set again: the child starts with none running.
    torch.set_num_threads(1)
    INSTANCE.update(id=uuid.uuid4().hex[:12], calls=0, forked=True)


os.register_at_fork(after_in_child=_forked)


def _check_image(image, where):
    if (not isinstance(image, list) or len(image) != 64
            or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 16
                       for p in image)):
        raise ValueError(f"{where} must be a list of 64 numbers from 0 to 16")
    return image


def _images(event):
    """The images of one event, checked."""
    event = event if isinstance(event, dict) else {}
    if "pixels" in event:
        return [_check_image(event["pixels"], "pixels")]
    if isinstance(event.get("images"), list) and event["images"]:
        return [_check_image(img, f"images[{i}]") for i, img in enumerate(event["images"])]
    raise ValueError('send {"pixels": [64 numbers 0-16]} or {"images": [[64 numbers], ...]}')


def _classify(images):
    with torch.inference_mode():
        probs = torch.softmax(MODEL(torch.tensor(images, dtype=torch.float32)), dim=1)
    return probs.argmax(dim=1).tolist(), [[round(p, 4) for p in row] for row in probs.tolist()]


def _result(event, labels, rounded):
    if "pixels" in event:
        return {"label": labels[0], "probabilities": rounded[0], "model": INSTANCE}
    return {"labels": labels, "probabilities": rounded, "model": INSTANCE}


def _batch(events):
    """One forward pass for every image of every well-formed event of the batch."""
    results = [None] * len(events)
    spans, images = [], []
    for i, event in enumerate(events):
        try:
            imgs = _images(event)
        except ValueError as e:
            results[i] = {"error": {"errorType": "ValueError", "errorMessage": str(e)}}
            continue
        spans.append((i, len(images), len(imgs)))
        images.extend(imgs)
    if images:
        labels, rounded = _classify(images)
        for i, start, n in spans:
            results[i] = _result(events[i], labels[start:start + n], rounded[start:start + n])
    INSTANCE["calls"] += 1
    return results


def handler(event, context):
    if isinstance(event, dict) and isinstance(event.get("batch"), list):
        return _batch(event["batch"])
    images = _images(event)
    labels, rounded = _classify(images)
    INSTANCE["calls"] += 1
    return _result(event, labels, rounded)
