"""tiny-chat: a character-level language model trained on Debian's fortunes during the build
(train.py), served under thaw's OpenAI routes as the model `tiny-chat`, for both
/v1/chat/completions and /v1/completions.

One character is one token. Chat answers the conversation with a fortune of its own (each
message is read as a fortune before it); completions continue the prompt. Sampling follows the
request: temperature (0 is greedy), top_p, max_tokens (max_completion_tokens too), stop (a
string or up to 4), seed (the same seed and request give the same text). With `stream: true`
the handler is a generator: each character goes out as one OpenAI chunk as soon as it is
sampled, and a last chunk carries `usage`, which thaw meters.

Importing torch and loading model.pt happens once per instance, at the cold start.
"""
import os
import time

import torch

torch.set_num_threads(1)
MODEL = torch.jit.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pt"),
                       map_location="cpu")
MODEL.eval()
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
END_OF_FORTUNE = "\n%"  # how the corpus separates fortunes: the model's own stop
MAX_TOKENS = 1024


class InvalidRequestError(ValueError):
    """A bad request: thaw's OpenAI routes answer it as a 400 invalid_request_error."""


def encode(text):
    unknown = ALPHABET.index("?")
    return [ALPHABET.find(c) if ALPHABET.find(c) >= 0 else unknown for c in text]


def number(event, name, default, low, high):
    value = event.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidRequestError(f"{name} must be a number from {low} to {high}")
    return value


def integer(event, name, default, low, high):
    value = number(event, name, default, low, high)
    if isinstance(value, float):  # JSON does not tell 2 from 2.0
        if not value.is_integer():
            raise InvalidRequestError(f"{name} must be an integer")
        value = int(value)
    return value


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text ones
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    if content is None:
        return ""
    raise InvalidRequestError("message content must be a string or a list of parts")


def prompt_of(event, chat):
    if chat:
        messages = event.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list")
        if not all(isinstance(m, dict) for m in messages):
            raise InvalidRequestError("each message must be an object")
        return "%\n" + "".join(text_of(m.get("content")) + "\n%\n" for m in messages)
    prompt = event.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be a string (or a list of one string)")
    return "%\n" + prompt


def stops_of(event):
    stop = event.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or len(stops) > 4
            or not all(isinstance(s, str) and s for s in stops)):
        raise InvalidRequestError("stop must be a string or a list of up to 4 non-empty strings")
    return stops


class Sampler:
    """Samples one character at a time and says which of them may be sent: it holds back a
    tail that could still grow into a stop sequence, which is never sent."""

    def __init__(self, event, chat):
        self.temperature = number(event, "temperature", 1.0, 0, 2)
        self.top_p = number(event, "top_p", 1.0, 0, 1)
        limit = event.get("max_completion_tokens", event.get("max_tokens"))
        self.max_tokens = integer({"max_tokens": limit}, "max_tokens", 256, 1, MAX_TOKENS)
        seed = integer(event, "seed", None, -2**63, 2**64)
        if integer(event, "n", 1, 1, 2**31) != 1:
            raise InvalidRequestError("tiny-chat samples one choice: n must be 1")
        self.generator = torch.Generator()
        self.generator.manual_seed(seed % 2**63 if seed is not None
                                   else int.from_bytes(os.urandom(8), "little") % 2**63)
        self.stops = stops_of(event) + [END_OF_FORTUNE]
        self.prompt = prompt_of(event, chat)
        self.codes = encode(self.prompt)
        self.text = ""  # sampled so far
        self.sent = 0  # of self.text
        self.finish_reason = None

    def next_piece(self):
        """Samples one character; returns the text now safe to send (may be empty)."""
        with torch.inference_mode():
            logits = MODEL(torch.tensor([self.codes]))
        if self.temperature == 0:
            code = int(logits.argmax())
        else:
            probs = torch.softmax(logits / self.temperature, dim=0)
            if self.top_p < 1:
                ordered, order = probs.sort(descending=True)
                keep = ordered.cumsum(0) - ordered < self.top_p  # the nucleus, at least one
                probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
            code = int(torch.multinomial(probs, 1, generator=self.generator))
        self.codes.append(code)
        self.text += ALPHABET[code]
        for stop in self.stops:
            at = self.text.find(stop, self.sent)
            if at >= 0:
                self.text = self.text[:at]
                self.finish_reason = "stop"
                return self.flush()
        if len(self.text) >= self.max_tokens:
            self.finish_reason = "length"
            return self.flush()
        held = 0  # the longest tail that begins a stop sequence
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.text) - self.sent), held, -1):
                if self.text.endswith(stop[:n]):
                    held = n
                    break
        return self.flush(len(self.text) - held)

    def flush(self, upto=None):
        upto = len(self.text) if upto is None else upto
        piece = self.text[self.sent:upto]
        self.sent = upto
        return piece

    def usage(self):
        return {"prompt_tokens": len(self.prompt), "completion_tokens": len(self.text),
                "total_tokens": len(self.prompt) + len(self.text)}


def handler(event, context):
    chat = event.get("thaw", {}).get("endpoint") != "completions"
    sampler = Sampler(event, chat)  # raises on a bad request, before anything is sent
    head = {"id": ("chatcmpl-" if chat else "cmpl-") + context.aws_request_id,
            "created": int(time.time()), "model": event.get("model", "tiny-chat")}
    if event.get("stream"):
        return stream(sampler, head, chat)
    while sampler.finish_reason is None:
        sampler.next_piece()
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": sampler.text},
                  "logprobs": None, "finish_reason": sampler.finish_reason}
        return {**head, "object": "chat.completion", "choices": [choice],
                "usage": sampler.usage()}
    choice = {"index": 0, "text": sampler.text, "logprobs": None,
              "finish_reason": sampler.finish_reason}
    return {**head, "object": "text_completion", "choices": [choice], "usage": sampler.usage()}


def stream(sampler, head, chat):
    head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}

    def chunk(text, finish_reason=None, role=None):
        if not chat:
            return {**head, "choices": [{"index": 0, "text": text, "logprobs": None,
                                         "finish_reason": finish_reason}]}
        delta = {"role": role, "content": text} if role else {"content": text}
        if finish_reason:
            delta = {}
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish_reason}]}

    if chat:
        yield chunk("", role="assistant")
    while sampler.finish_reason is None:
        piece = sampler.next_piece()
        if piece:
            yield chunk(piece)
    yield chunk("", finish_reason=sampler.finish_reason)
    yield {**head, "choices": [], "usage": sampler.usage()}
