"""Build step for examples/tiny-chat and examples/tiny-embed: trains a small character-level
language model on the fortunes in Debian's fortunes-min package (fetch_fortunes.sh).

Run by CMake with Debian's /usr/bin/python3 (it has python3-torch):
    train.py FORTUNES_TXT CHAT_MODEL_OUT EMBED_MODEL_OUT

The model is a stack of causal dilated convolutions (WaveNet-style gated blocks) that reads the
last CONTEXT characters and predicts the next one. Convolutions, not a GRU: Debian's torch runs
them through oneDNN, while its matrix products go through the reference BLAS, which makes a
recurrent net train ~20x slower here. Writes two TorchScript files, so the functions need no
copy of the classes below:
- CHAT_MODEL_OUT (tiny-chat): codes [1, n] -> logits of the character after them;
- EMBED_MODEL_OUT (tiny-embed): the same weights read as an encoder: the mean of the last
  block's states over a text, less the corpus' mean, rotated onto the corpus' principal axes
  (so the first k dimensions are the k most telling ones: truncating keeps the best) and
  normalised to length 1.
Training runs MIN_STEPS steps, then more until MAX_STEPS or TIME_BUDGET_S seconds, whichever
comes first: about a minute on 2 idle cores; a busy build machine takes longer for the first
steps and gets fewer of the rest. The held-out loss is checked either way.
"""
import math
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:
    sys.exit(f"train.py: {e}: needs Debian's python3-torch (scripts/deps.sh installs it) "
             "and Debian's /usr/bin/python3 to run it")

SEED = 0
MIN_STEPS = 80  # enough for ~3.1 bits per character held out, however slow the machine
MAX_STEPS = 300
TIME_BUDGET_S = 45.0  # past MIN_STEPS
BATCH = 32
SEQ = 96
CHANNELS = 64  # also the embedding's native size
DILATIONS = (1, 2, 4, 8, 16, 32)
CONTEXT = 64  # characters the model sees: 1 + sum(DILATIONS)
HELD_OUT = 5000  # characters kept out of training to judge the model
# The alphabet: newline and printable ASCII; anything else reads as '?'. Code 0 is newline.
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))


def encode(text):
    unknown = ALPHABET.index("?")
    return [ALPHABET.find(c) if ALPHABET.find(c) >= 0 else unknown for c in text]


class Block(nn.Module):
    """A gated causal convolution of kernel 2 at one dilation, with a residual connection."""

    def __init__(self, dilation):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(CHANNELS, 2 * CHANNELS, 2, dilation=dilation)
        self.out = nn.Conv1d(CHANNELS, CHANNELS, 1)

    def forward(self, x):
        a, g = self.conv(F.pad(x, (self.dilation, 0))).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(g))


class CharLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(ALPHABET), CHANNELS)
        self.blocks = nn.ModuleList([Block(d) for d in DILATIONS])
        self.head = nn.Conv1d(CHANNELS, len(ALPHABET), 1)

    def states(self, codes):
        """codes [batch, n] -> states [batch, CHANNELS, n]."""
        x = self.embed(codes).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, codes):
        return self.head(self.states(codes))


class Chat(nn.Module):
    """codes [1, n] -> logits [len(ALPHABET)] of the next character."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.context = CONTEXT

    def forward(self, codes):
        return self.lm(codes[:, -self.context:])[0, :, -1]


class Embedder(nn.Module):
    """codes [1, n] -> a unit vector of CHANNELS floats, most telling dimensions first."""

    def __init__(self, lm, center, axes):
        super().__init__()
        self.lm = lm
        self.register_buffer("center", center)
        self.register_buffer("axes", axes)

    def forward(self, codes):
        v = (self.lm.states(codes)[0].mean(dim=1) - self.center) @ self.axes
        return v / v.norm().clamp_min(1e-6)


def main():
    corpus_path, chat_path, embed_path = sys.argv[1:4]
    started = time.monotonic()
    torch.manual_seed(SEED)
    # One thread: on a build machine busy compiling, OpenMP's spinning threads lose more to
    # each other than a second core gives.
    torch.set_num_threads(1)
    with open(corpus_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if len(text) < 50_000:
        sys.exit(f"train.py: {corpus_path} holds only {len(text)} characters")
    data = torch.tensor(encode(text))
    train, held_out = data[:-HELD_OUT], data[-HELD_OUT:]

    lm = CharLm()
    opt = torch.optim.Adam(lm.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED)
    steps = 0
    while steps < MIN_STEPS or (steps < MAX_STEPS and
                                time.monotonic() - started < TIME_BUDGET_S):
        starts = torch.randint(0, len(train) - SEQ - 1, (BATCH,), generator=gen).tolist()
        batch = torch.stack([train[s:s + SEQ + 1] for s in starts])
        loss = F.cross_entropy(lm(batch[:, :-1]), batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1

    lm.eval()
    with torch.no_grad():
        bits = F.cross_entropy(lm(held_out[None, :-1]), held_out[None, 1:]).item() / math.log(2)
        # What every text shares (the mean state) is taken out of an embedding, and the rest
        # is turned onto the corpus' principal axes, largest variance first.
        samples = [text[i:i + 200] for i in range(0, len(text) - 200, len(text) // 256)]
        means = torch.stack([lm.states(torch.tensor([encode(s)]))[0].mean(dim=1)
                             for s in samples])
        center = means.mean(dim=0)
        centered = means - center
        variances, axes = torch.linalg.eigh(centered.T @ centered)
        axes = axes[:, variances.argsort(descending=True)].contiguous()
    print(f"tiny-chat: trained on {len(train)} characters of fortunes, {steps} steps in "
          f"{time.monotonic() - started:.1f} s; held-out loss {bits:.2f} bits per character")
    if bits > 3.6:  # a uniform guess over the alphabet is 6.6 bits
        sys.exit("train.py: held-out loss above 3.6 bits per character; refusing to ship it")

    torch.jit.script(Chat(lm)).save(chat_path)
    torch.jit.script(Embedder(lm, center, axes)).save(embed_path)


if __name__ == "__main__":
    main()
