"""tiny-embed: text embeddings from the character-level language model tiny-chat is (trained on
Debian's fortunes during the build, examples/tiny-chat/train.py), served under thaw's OpenAI
routes as the model `tiny-embed` (/v1/embeddings).

A text's embedding is the mean of the model's states over its characters, less the corpus'
mean, turned onto the corpus' principal axes and normalised: 64 floats of length 1, where texts
that share words and spelling score higher (cosine, i.e. dot product) than unrelated ones.
`dimensions` (1 to 64) keeps the first, most telling, dimensions and normalises again, as
OpenAI's text-embedding-3 models do; thaw rejects a larger one from the `openai` block in
thaw.yaml before the call. thaw turns the floats into base64 when the client asks for it.

Importing torch and loading model.pt happens once per instance, at the cold start.
"""
import os

import torch

torch.set_num_threads(1)
MODEL = torch.jit.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pt"),
                       map_location="cpu")
MODEL.eval()
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
NATIVE_DIMENSIONS = 64
MAX_INPUTS = 2048
MAX_CHARS = 32768  # per input


class InvalidRequestError(ValueError):
    """A bad request: thaw's OpenAI routes answer it as a 400 invalid_request_error."""


def encode(text):
    unknown = ALPHABET.index("?")
    return [ALPHABET.find(c) if ALPHABET.find(c) >= 0 else unknown for c in text]


def inputs_of(event):
    value = event.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_INPUTS:
        raise InvalidRequestError(f"input must be a string or a list of 1 to {MAX_INPUTS} strings")
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InvalidRequestError(f"input[{i}] must be a string (tiny-embed takes no token "
                                      "arrays)")
        if not text or len(text) > MAX_CHARS:
            raise InvalidRequestError(f"input[{i}] must hold 1 to {MAX_CHARS} characters")
    return inputs


def handler(event, context):
    inputs = inputs_of(event)
    dimensions = event.get("dimensions", NATIVE_DIMENSIONS)
    if (isinstance(dimensions, bool) or not isinstance(dimensions, int)
            or not 1 <= dimensions <= NATIVE_DIMENSIONS):
        raise InvalidRequestError(f"dimensions must be an integer from 1 to {NATIVE_DIMENSIONS}")
    data = []
    with torch.inference_mode():
        for i, text in enumerate(inputs):
            v = MODEL(torch.tensor([encode(text)]))[:dimensions]
            v = v / v.norm().clamp_min(1e-6)
            data.append({"object": "embedding", "index": i, "embedding": v.tolist()})
    tokens = sum(len(t) for t in inputs)  # one character is one token
    return {"object": "list", "data": data, "model": event.get("model", "tiny-embed"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
