"""Streaming figures for `make bench` (bench/streaming.sh). Prints `key=value` pairs.

  ttft-thaw URL KEY N        time to first token of tiny-chat through thaw's OpenAI route
                             (POST /v1/chat/completions, stream: true), over a raw socket
  ttft-local APP_DIR N       the same requests to tiny-chat's handler called in-process
  chunks-thaw URL KEY N RUNS a function yields N small chunks; the time until the client
                             has the last one, through thaw (native invoke, chunked)
  chunks-local N RUNS        the same generator written by the runtime's own streaming loop
                             (select + sendall of an HTTP chunk, as runtimes/python3 does) to
                             a local TCP socket that another process drains

Times are wall clock (time.perf_counter); percentiles are nearest rank.
"""
import json
import os
import re
import select
import socket
import sys
import time
from urllib.parse import urlsplit

PROMPT = "What does the future hold?"


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-p * len(ordered) // 100) - 1))]


def chat_event(seed):
    return {"model": "tiny-chat", "stream": True, "seed": seed, "max_tokens": 8,
            "messages": [{"role": "user", "content": PROMPT}]}


def connect(url):
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def post(sock, url, path, key, body):
    data = json.dumps(body).encode()
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
                  f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode() + data)


def read_until(sock, buf, needle):
    while not (needle.search(buf) if isinstance(needle, re.Pattern) else needle in buf):
        more = sock.recv(65536)
        if not more:
            raise RuntimeError(f"connection closed before {needle!r}: {bytes(buf[-300:])!r}")
        buf += more
    return buf


# A chunk with non-empty content (the role chunk's is ""); the runtime writes JSON with spaces.
FIRST_TOKEN = re.compile(rb'"content": ?"[^"]')


def read_to_end(sock, buf):
    """Reads a chunked response to its end (the last chunk, any trailers, the blank line)."""
    body = read_until(sock, buf, b"\r\n\r\n").index(b"\r\n\r\n") + 4
    while True:
        last = buf.find(b"\r\n0\r\n", body - 2)
        if last >= 0 and buf.find(b"\r\n\r\n", last + 3) >= 0:
            return body
        more = sock.recv(65536)
        if not more:
            raise RuntimeError(f"connection closed mid-response: {bytes(buf[-300:])!r}")
        buf += more


def ttft_thaw(url, key, n):
    times = []
    sock = connect(url)
    for i in range(n + 3):
        buf = bytearray()
        started = time.perf_counter()
        post(sock, url, "/v1/chat/completions", key, chat_event(i))
        read_until(sock, buf, FIRST_TOKEN)
        first = time.perf_counter() - started
        read_to_end(sock, buf)
        if i >= 3:  # the first calls warm the instance
            times.append(first)
    print(f"p50_ms={percentile(times, 50) * 1e3:.2f} p99_ms={percentile(times, 99) * 1e3:.2f}")


def ttft_local(app_dir, n):
    sys.path.insert(0, app_dir)
    import app  # noqa: E402  (tiny-chat's handler, model loaded at import)

    class Context:
        aws_request_id = "local"

    times = []
    for i in range(n + 3):
        event = dict(chat_event(i), thaw={"tenant": "default", "endpoint": "chat.completions"})
        started = time.perf_counter()
        chunks = app.handler(event, Context())
        first = None
        for chunk in chunks:
            choice = chunk["choices"][0] if chunk["choices"] else {}
            if first is None and choice.get("delta", {}).get("content"):
                first = time.perf_counter() - started
            json.dumps(chunk)  # as the runtime would before sending it
        if i >= 3:
            times.append(first)
    print(f"p50_ms={percentile(times, 50) * 1e3:.2f} p99_ms={percentile(times, 99) * 1e3:.2f}")


CHUNK = b"0123456789abcdef"


def dechunk(data):
    body, pos = bytearray(), 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        body += data[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def chunks_thaw(url, key, n, runs):
    rates = []
    sock = connect(url)
    for i in range(runs + 1):
        buf = bytearray()
        started = time.perf_counter()
        post(sock, url, "/v1/functions/stream-chunks/invoke", key, {"n": n})
        start = read_to_end(sock, buf)
        elapsed = time.perf_counter() - started
        if b" 200 " not in buf[:20]:
            raise RuntimeError(bytes(buf[:300]))
        body = dechunk(bytes(buf[start:]))
        if body != CHUNK * n:
            raise RuntimeError(f"got {len(body)} bytes, not {n} chunks of {len(CHUNK)}")
        if i >= 1:
            rates.append(n / elapsed)
    print(f"median_chunks_per_s={percentile(rates, 50):.0f}")


def chunks_local(n, runs):
    rates = []
    for _ in range(runs):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        reader = os.fork()
        if reader == 0:  # drains until the chunked body's end, like thaw reading the runtime
            conn, _ = listener.accept()
            buf = bytearray()
            while not buf.endswith(b"0\r\n\r\n"):
                more = conn.recv(65536)
                if not more:
                    break
                buf += more
            conn.sendall(b"k")
            os._exit(0)
        sock = socket.create_connection(listener.getsockname())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        for data in (CHUNK for _ in range(n)):
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            sys.stdout.flush()
        sock.sendall(b"0\r\n\r\n")
        sock.recv(1)
        rates.append(n / (time.perf_counter() - started))
        os.waitpid(reader, 0)
        sock.close()
        listener.close()
    print(f"median_chunks_per_s={percentile(rates, 50):.0f}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ttft-thaw":
        ttft_thaw(args[0], args[1], int(args[2]))
    elif cmd == "ttft-local":
        ttft_local(args[0], int(args[1]))
    elif cmd == "chunks-thaw":
        chunks_thaw(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "chunks-local":
        chunks_local(int(args[0]), int(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
