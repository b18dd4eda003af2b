"""ai-proxy: the API-gateway pattern. Forwards an OpenAI-style chat completion request
({"model", "messages", ...}) to an upstream and returns its answer, so callers never hold the
upstream's API key. Standard library only.

Environment (thaw.yaml):
  UPSTREAM_URL          e.g. https://api.openai.com/v1/chat/completions
  UPSTREAM_API_KEY      sent as "Authorization: Bearer ..."; never logged, never in errors
  UPSTREAM_TIMEOUT_S    per attempt (default 30)
  UPSTREAM_MAX_ATTEMPTS attempts in all, the first included (default 4)
  UPSTREAM_BACKOFF_S    longest first retry delay, doubled for each retry after it; each
                        delay is jittered down to half of that (default 0.5)

429 and 5xx answers, timeouts and connection failures are retried, after Retry-After when the
upstream sends one. Other 4xx answers (a malformed request, a wrong key) would fail the same
way again and are not retried. Failures raise one of the
exceptions below: thaw answers 502 with their name as errorType and message as errorMessage.
"""
import email.utils
import json
import os
import random
import time
import urllib.error
import urllib.request


class InvalidRequest(Exception):
    """The event is not a chat completion request this proxy can forward."""


class UpstreamRejected(Exception):
    """The upstream refused the request (a 4xx other than 429): retrying cannot help."""


class UpstreamUnavailable(Exception):
    """The upstream kept failing (429, 5xx) or could not be reached on every attempt."""


def _setting(name, default, cast):
    value = os.environ.get(name, default)
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "")
API_KEY = os.environ.get("UPSTREAM_API_KEY", "")
TIMEOUT_S = _setting("UPSTREAM_TIMEOUT_S", "30", float)
ATTEMPTS = max(1, _setting("UPSTREAM_MAX_ATTEMPTS", "4", int))
BACKOFF_S = _setting("UPSTREAM_BACKOFF_S", "0.5", float)
MAX_BACKOFF_S = 30.0
# Give up with this much of the invocation's time left, so the caller gets our clear error
# rather than thaw's 504 for a function past its timeout.
RESERVE_S = 0.5
ERROR_BODY_CHARS = 300


class _Failed(Exception):
    def __init__(self, what, retryable, retry_after_s=None):
        super().__init__(what)
        self.what, self.retryable, self.retry_after_s = what, retryable, retry_after_s


def _redact(text):
    # Upstreams echo keys back ("Incorrect API key provided: sk-..."), and a misconfigured URL
    # may carry one: nothing that reaches a log line or an error message keeps it.
    return text.replace(API_KEY, "[redacted]") if API_KEY else text


def _retry_after_s(value):
    """Retry-After in seconds, from delay-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _post(body, timeout_s):
    """One attempt: the upstream's JSON answer, or _Failed saying what went wrong."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if API_KEY:
        headers["Authorization"] = "Bearer " + API_KEY
    request = urllib.request.Request(UPSTREAM_URL, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:  # an answer, but not a 2xx
        try:
            detail = e.read(4 * ERROR_BODY_CHARS).decode("utf-8", "replace")
        except OSError:
            detail = ""
        what = f"HTTP {e.code} {e.reason}"
        if detail.strip():
            what += ": " + " ".join(detail.split())[:ERROR_BODY_CHARS]
        raise _Failed(what, e.code == 429 or e.code >= 500,
                      _retry_after_s(e.headers.get("Retry-After"))) from None
    except TimeoutError:
        raise _Failed(f"no answer within {timeout_s:.1f} s", True) from None
    except urllib.error.URLError as e:  # refused, DNS, TLS, connect timeout
        raise _Failed(f"connection failed: {e.reason}", True) from None
    except OSError as e:  # reset mid-answer and the like
        raise _Failed(f"connection failed: {e}", True) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise _Failed(f"HTTP 200 with a body that is not JSON: {raw[:80]!r}", True) from None


def handler(event, context):
    if not isinstance(event, dict) or not event.get("model") \
            or not isinstance(event.get("messages"), list):
        raise InvalidRequest('expected an OpenAI-style chat request: {"model": "...", '
                             '"messages": [{"role": "user", "content": "..."}], ...}')
    if event.get("stream"):
        raise InvalidRequest('"stream": true is not supported: thaw returns one response body')
    if not UPSTREAM_URL.startswith(("http://", "https://")):
        raise UpstreamUnavailable("UPSTREAM_URL is not an http(s) URL")
    body = json.dumps(event).encode()
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - RESERVE_S
    model = str(event["model"])[:100]

    for attempt in range(1, ATTEMPTS + 1):
        started = time.monotonic()
        try:
            # Never wait on the upstream past our own deadline.
            answer = _post(body, max(0.1, min(TIMEOUT_S, deadline - started)))
        except _Failed as failure:
            what = _redact(failure.what)
            print(f"model={model} attempt {attempt}/{ATTEMPTS} failed after "
                  f"{(time.monotonic() - started) * 1000:.0f} ms: {what}")
            if not failure.retryable:
                raise UpstreamRejected(f"upstream refused the request: {what}") from None
            if attempt == ATTEMPTS:
                raise UpstreamUnavailable(
                    f"upstream failed on all {ATTEMPTS} attempts; last: {what}") from None
            delay = failure.retry_after_s
            if delay is None:  # exponential backoff, jittered so retrying callers spread out
                step = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1))
                delay = random.uniform(step / 2, step)
            if time.monotonic() + delay >= deadline:
                raise UpstreamUnavailable(
                    f"upstream failed on attempt {attempt} of {ATTEMPTS} and a retry in "
                    f"{delay:.1f} s would pass this function's timeout; last: {what}") from None
            time.sleep(delay)
            continue
        print(f"model={model} attempt {attempt}/{ATTEMPTS} ok in "
              f"{(time.monotonic() - started) * 1000:.0f} ms")
        return answer
