"""digits-torch: classifies 8x8 handwritten digits with a small PyTorch model on the CPU.

Event: {"pixels": [64 ints 0-16]} for one image, or {"images": [[64 ints], ...]} for a batch
(rows of the 8x8 image, top to bottom, as in scikit-learn's digits data set).
Result: {"label": 3, "probabilities": [10 floats]} or {"labels": [...], "probabilities":
[[...], ...]}, plus "model": how this instance loaded the model and how many calls it served.

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
MODEL = torch.jit.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pt"),
                       map_location="cpu")
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


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    if "pixels" in event:
        images = [_check_image(event["pixels"], "pixels")]
    elif isinstance(event.get("images"), list) and event["images"]:
        images = [_check_image(img, f"images[{i}]") for i, img in enumerate(event["images"])]
    else:
        raise ValueError('send {"pixels": [64 numbers 0-16]} or {"images": [[64 numbers], ...]}')

    with torch.inference_mode():
        probs = torch.softmax(MODEL(torch.tensor(images, dtype=torch.float32)), dim=1)
    labels = probs.argmax(dim=1).tolist()
    rounded = [[round(p, 4) for p in row] for row in probs.tolist()]
    INSTANCE["calls"] += 1
    if "pixels" in event:
        return {"label": labels[0], "probabilities": rounded[0], "model": INSTANCE}
    return {"labels": labels, "probabilities": rounded, "model": INSTANCE}
