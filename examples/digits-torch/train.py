"""Build step for examples/digits-torch: trains a small MLP on the 8x8 handwritten digits.

Run by CMake with Debian's /usr/bin/python3 (it has python3-torch):
    train.py DIGITS_CSV_GZ MODEL_OUT TESTDATA_OUT

Writes MODEL_OUT as TorchScript, so the function needs no copy of the class below, and
TESTDATA_OUT as JSON {"images": [[64 ints]...], "labels": [...]}: the held-out 20% the model
never saw, which tests/examples_test.cc sends to the deployed function.
"""
import csv
import gzip
import json
import sys
import time

try:
    import torch
    from torch import nn
except ImportError as e:
    sys.exit(f"train.py: {e}: needs Debian's python3-torch (scripts/deps.sh installs it) "
             "and Debian's /usr/bin/python3 to run it")

SEED = 0
TEST_FRACTION = 0.2
EPOCHS = 40
BATCH = 64


class DigitsMLP(nn.Module):
    """64 pixels (0-16) -> 10 logits. The /16 lives in the model so callers send raw pixels."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x / 16.0)


def load(path):
    # sklearn's digits.csv.gz: 1797 rows of 64 pixel values then the label, no header.
    with gzip.open(path, "rt") as f:
        rows = [[int(float(v)) for v in row] for row in csv.reader(f) if row]
    if len(rows) != 1797 or any(len(r) != 65 for r in rows):
        sys.exit(f"train.py: {path} is not the 1797x65 digits table")
    return [r[:64] for r in rows], [r[64] for r in rows]


def main():
    data_path, model_path, testdata_path = sys.argv[1:4]
    started = time.monotonic()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # a model this small trains fastest without a thread pool
    images, labels = load(data_path)

    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SEED)).tolist()
    n_test = round(len(images) * TEST_FRACTION)
    test_idx, train_idx = order[:n_test], order[n_test:]
    x = torch.tensor(images, dtype=torch.float32)
    y = torch.tensor(labels)
    x_train, y_train = x[train_idx], y[train_idx]

    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(train_idx)).split(BATCH):
            opt.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            opt.step()

    model.eval()
    with torch.no_grad():
        predicted = model(x[test_idx]).argmax(dim=1)
    correct = int((predicted == y[test_idx]).sum())
    accuracy = correct / n_test
    print(f"digits-torch: trained on {len(train_idx)} images in "
          f"{time.monotonic() - started:.1f} s; held-out accuracy {accuracy:.1%} "
          f"({correct}/{n_test})")
    if accuracy < 0.9:
        sys.exit("train.py: held-out accuracy below 90%; refusing to ship this model")

    torch.jit.script(model).save(model_path)
    with open(testdata_path, "w") as f:
        json.dump({"images": [images[i] for i in test_idx],
                   "labels": [labels[i] for i in test_idx]}, f)


if __name__ == "__main__":
    main()
