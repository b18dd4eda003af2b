# thaw-python-flags: -S -E -s
"""thaw python3 runtime: AWS Lambda Runtime API (2018-06-01) client loop, or, under thaw,
the same loop on thaw's native channel (THAW_CHANNEL_FD: one write answers and asks for the
next event).

Cold start matters most, so this avoids the stdlib modules that dominate
start-up: `socket` (pulls in enum, selectors, collections), `json` (compiles
regexes via `re` at import) and http.client/urllib (pull in `email`). Their C
cores `_socket` and `_json` cost well under 1 ms to import, against ~10 ms
for `import socket, json` on our test box. `traceback` is imported only on
error. -S skips `site` and its .pth processing (~2-3 ms), so Debian's
dist-packages directories are added to sys.path by hand in main(); -E -s keep
the host's PYTHON* variables and ~/.local out of the function.
"""
import os
import sys
import time
import _json
import _socket

API = "/2018-06-01/runtime/"
JSON_WS = " \t\n\r"

# --- JSON through the C accelerator: same output as json.dumps/json.loads ---
class _ScanCtx:  # the attributes _json.make_scanner reads
    strict = True
    object_hook = object_pairs_hook = None
    parse_float = parse_constant = float  # float("-Infinity"/"NaN") works
    parse_int = int


_scan = _json.make_scanner(_ScanCtx)


def _default(o):
    dec = sys.modules.get("decimal")  # as AWS's runtime: Decimal -> number
    if dec is not None and isinstance(o, dec.Decimal):
        return int(o) if o.is_finite() and o == o.to_integral_value() else float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj):
    # A fresh markers dict per call gives json.dumps' circular-reference check.
    return "".join(_json.make_encoder({}, _default, _json.encode_basestring_ascii,
                                      None, ": ", ", ", False, False, True)(obj, 0))


def loads(s):
    try:
        obj, end = _scan(s, len(s) - len(s.lstrip(JSON_WS)))
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    if end != len(s.rstrip(JSON_WS)):
        raise ValueError(f"Extra data: char {end}")
    return obj


def dumps_log(obj):
    """JSON for log lines: UTF-8 as is, and str() of what JSON cannot hold (as AWS's)."""
    return "".join(_json.make_encoder({}, str, _json.encode_basestring, None, ": ", ", ",
                                      False, False, True)(obj, 0))


# --- minimal HTTP/1.1 keep-alive client ---------------------------------------
class Client:
    def __init__(self, address):  # "host:port" or "[v6addr]:port"
        host, _, port = address.rpartition(":")
        self.family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        self.addr = (host.strip("[]"), int(port))
        self.host = address
        self.sock = None
        self.buf = bytearray()  # bytearray: appends and front-deletes are cheap

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method, path, body=b"", headers=""):
        req = (f"{method} {API}{path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
               f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1", "replace") + body
        for attempt in (0, 1):
            reused = self.sock is not None
            if not reused:
                self.sock, self.buf = _socket.socket(self.family, _socket.SOCK_STREAM), bytearray()
                self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                self.sock.connect(self.addr)
            try:
                self.sock.sendall(req)
                return self._read_response()
            except (ConnectionError, EOFError):
                # The server may have dropped an idle keep-alive connection:
                # retry once on a fresh one; a fresh one failing is fatal.
                self.close()
                if attempt or not reused:
                    raise

    def _recv(self):
        data = self.sock.recv(262144)
        if not data:
            raise EOFError("Runtime API closed the connection")
        self.buf += data

    def _read_until(self, sep):
        while (i := self.buf.find(sep)) < 0:
            self._recv()
        line = self.buf[:i]
        del self.buf[:i + len(sep)]
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._recv()
        data = self.buf[:n]
        del self.buf[:n]
        return data

    def _read_response(self):
        status_line, *lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        headers = {}
        for line in lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                chunks.append(self._read_exact(size))
                self._read_exact(2)  # CRLF after each chunk
            while self._read_until(b"\r\n"):  # trailers, up to the blank line
                pass
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:  # no framing: the body runs until the server closes
            try:
                while True:
                    self._recv()
            except EOFError:
                body, headers["connection"] = self.buf[:], "close"
        conn = headers.get("connection", "").lower()
        if conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive"):
            self.close()
        return int(status), headers, body

    def stream(self, path, items, content_type):
        """POSTs `items` (bytes) as Lambda's streaming response: chunked, each item
        sent as it comes; `items` may return (error_type, error_json) as its value to
        end with the error trailers. False when thaw stopped reading (its caller left
        or the stream grew past its limit): the rest is dropped."""
        import select
        if self.sock is not None and select.select([self.sock], [], [], 0)[0]:
            self.close()  # closed by thaw while it sat idle
        if self.sock is None:
            self.sock, self.buf = _socket.socket(self.family, _socket.SOCK_STREAM), bytearray()
            self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self.sock.connect(self.addr)
        head = (f"POST {API}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: {content_type}\r\n"
                "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                "Transfer-Encoding: chunked\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
                "\r\n\r\n").encode("latin-1", "replace")
        error = None
        try:
            self.sock.sendall(head)
            while True:
                try:
                    data = next(items)
                except StopIteration as done:
                    error = done.value
                    break
                if not data:
                    continue
                # thaw answers early only to stop us: its caller left, or a limit.
                if select.select([self.sock], [], [], 0)[0]:
                    break
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            else_trailers = b""
            if error:
                import binascii
                etype, ejson = error
                else_trailers = (f"Lambda-Runtime-Function-Error-Type: {etype}\r\n"
                                 "Lambda-Runtime-Function-Error-Body: ").encode() + \
                    binascii.b2a_base64(ejson, newline=False) + b"\r\n"
            if error is not None or not select.select([self.sock], [], [], 0)[0]:
                self.sock.sendall(b"0\r\n" + else_trailers + b"\r\n")
            status, _, body = self._read_response()
        except (ConnectionError, EOFError, OSError):
            self.close()
            return False
        if status >= 300:
            print(f"[thaw] streamed response: HTTP {status} {body[:200]!r}", file=sys.stderr)
            self.close()
        return status < 300

    def post(self, path, payload, error_type=None):
        hdrs = "Content-Type: application/json\r\n"
        if error_type:
            hdrs += f"Lambda-Runtime-Function-Error-Type: {error_type}\r\n"
        status, _, body = self.request("POST", path, payload, hdrs)
        if status >= 300:
            print(f"[thaw] POST {path}: HTTP {status} {body[:200]!r}", file=sys.stderr)


# --- the native channel (THAW_CHANNEL_FD) ----------------------------------
# thaw's own runtimes may skip HTTP: frames on an inherited socketpair, each `u32 size`
# (little-endian), a type byte and u32-length-prefixed fields (thaw's
# src/runtime_api/channel_frame.h). "N": ready; "R" id, body: the response, and ready for the
# next event; "E" id, type, body: an error, and ready; "I" type, body: init error; thaw sends
# "V" id, deadline ms, ARN, trace id, client context, identity, payload. Streamed responses
# still go over HTTP (Lambda's streaming mode), then "N".
class Channel:
    HEADERS = ("lambda-runtime-aws-request-id", "lambda-runtime-deadline-ms",
               "lambda-runtime-invoked-function-arn", "lambda-runtime-trace-id",
               "lambda-runtime-client-context", "lambda-runtime-cognito-identity")

    def __init__(self, fd, address):
        os.set_inheritable(fd, False)  # the function's subprocesses must not hold it
        self.fd = fd
        self.buf = bytearray()
        self.ready = False  # an "R" or "E" said so already
        # Streamed responses. Connected now, as the HTTP loop would be by its first GET: thaw
        # checks who holds a new Runtime API connection when it accepts it, which a runtime
        # that dies right after its first chunk would no longer pass.
        self.http = Client(address)
        try:
            self.http.sock = _socket.socket(self.http.family, _socket.SOCK_STREAM)
            self.http.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self.http.sock.connect(self.http.addr)
        except OSError:
            self.http.close()

    def send(self, kind, *fields):
        parts = [b"", kind]
        for f in fields:
            parts.append(len(f).to_bytes(4, "little"))
            parts.append(f)
        data = b"".join(parts)
        data = memoryview(len(data).to_bytes(4, "little") + data)
        while data:
            data = data[os.write(self.fd, data):]

    def _fill(self, n):
        while len(self.buf) < n:
            data = os.read(self.fd, max(262144, n - len(self.buf)))
            if not data:  # thaw is stopping this instance
                sys.exit(0)
            self.buf += data

    def request(self, method, path):  # only GET invocation/next
        if not self.ready:
            self.send(b"N")
        self.ready = False
        self._fill(4)
        size = int.from_bytes(self.buf[:4], "little")
        self._fill(4 + size)
        frame = memoryview(self.buf)[4:4 + size]
        fields, at = [], 1
        while at < size:
            n = int.from_bytes(frame[at:at + 4], "little")
            fields.append(bytes(frame[at + 4:at + 4 + n]))
            at += 4 + n
        frame.release()
        del self.buf[:4 + size]
        if len(fields) != 7:
            sys.exit("[thaw] malformed event frame on the channel")
        headers = {k: v.decode() for k, v in zip(self.HEADERS, fields) if v}
        return 200, headers, fields[6]

    def post(self, path, payload, error_type=None):
        sys.stdout.flush()
        if path == "init/error":
            return self.send(b"I", (error_type or "").encode(), payload)
        request_id = path.split("/")[1].encode()
        if path.endswith("/error"):
            self.send(b"E", request_id, (error_type or "").encode(), payload)
        else:
            self.send(b"R", request_id, payload)
        self.ready = True

    def stream(self, path, items, content_type):
        return self.http.stream(path, items, content_type)


def runtime_client():
    fd = os.environ.pop("THAW_CHANNEL_FD", "")
    if fd:
        return Channel(int(fd), os.environ["AWS_LAMBDA_RUNTIME_API"])
    return Client(os.environ["AWS_LAMBDA_RUNTIME_API"])


# --- errors, in the shape AWS's runtime reports them -------------------------
class Fault(Exception):
    def __init__(self, etype, msg, trace=None):
        self.error = make_error(msg, etype, trace)


def make_error(msg, etype, trace=None, request_id=""):
    return {"errorMessage": msg, "errorType": etype, "requestId": request_id,
            "stackTrace": trace or []}


def error_from_exception(exc, request_id=""):
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    # Drop this file's frames (compare with co_filename, not __file__, so this
    # also holds when run from a precompiled .pyc).
    while frames and frames[0].filename == make_error.__code__.co_filename:
        del frames[0]
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def post_error(client, path, err):
    sys.stdout.flush()
    if LOG_JSON:  # one JSON line, as AWS's runtime logs errors with JSON logs
        print(dumps_log({"timestamp": time.strftime(LOG_JSON_TIME, time.gmtime()),
                         "log_level": "ERROR", **err}), file=sys.stderr)
        return client.post(path, dumps(err).encode(), err["errorType"])
    lines = [f"[ERROR] {err['errorType']}: {err['errorMessage']}"]
    if err["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines += [line for frame in err["stackTrace"] for line in frame.splitlines()]
    print("\n".join(lines), file=sys.stderr)
    client.post(path, dumps(err).encode(), err["errorType"])


# --- logging, as AWS's runtime sets it up -------------------------------------------
# A handler on the root logger writes each record to stdout as
# "[LEVEL]\t<UTC time>Z\t<request id>\t<message>", or with AWS_LAMBDA_LOG_FORMAT=JSON as one
# JSON object; AWS_LAMBDA_LOG_LEVEL sets the root logger's level. `import logging` costs
# ~10 ms (re, traceback, threading), so this runs when the function first imports it: a
# sys.meta_path entry wraps the module's loader, and sets it up right after it has loaded.
LOG_JSON = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
LOG_JSON_TIME = "%Y-%m-%dT%H:%M:%SZ"
LOG_LEVELS = {"TRACE": 0, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40,
              "FATAL": 50, "CRITICAL": 50}
LOG_RECORD_ATTRS = frozenset((
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process", "taskName",
    "message", "asctime", "aws_request_id"))
request_id = ""  # the invocation in flight, for log lines


def setup_logging(logging):
    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            try:
                record.aws_request_id = request_id
                msg = self.format(record)
                sys.stdout.write(msg if msg.endswith("\n") else msg + "\n")
            except Exception:
                self.handleError(record)

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            out = {"timestamp": self.formatTime(record, LOG_JSON_TIME),
                   "level": record.levelname, "message": record.getMessage(),
                   "logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                import traceback
                etype, exc, tb = record.exc_info
                out["stackTrace"] = traceback.format_list(traceback.extract_tb(tb))
                out["errorType"] = etype.__name__
                out["errorMessage"] = str(exc)
            out["requestId"] = record.aws_request_id
            if record.exc_info:
                out["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
            for k, v in record.__dict__.items():  # what extra= added
                if k not in LOG_RECORD_ATTRS and k not in out and not k.startswith("_"):
                    out[k] = v
            return dumps_log({k: v for k, v in out.items() if v is not None})

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(JsonFormatter() if LOG_JSON else logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in LOG_LEVELS:
        root.setLevel(LOG_LEVELS[level])
    root.addHandler(handler)


class LoggingHook:
    """A sys.meta_path finder: finds `logging` as the others would, then sets it up."""
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        loader = spec.loader

        class SetUpAfterLoad:
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                setup_logging(module)

            def __getattr__(self, attr):  # get_source, is_package, ...: the real loader's
                return getattr(loader, attr)
        spec.loader = SetUpAfterLoad()
        return spec


# --- handler and context --------------------------------------------------------
def load_handler(spec):
    modname, _, fname = spec.rpartition(".")
    if not modname:
        raise Fault("Runtime.MalformedHandlerName",
                    f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)")
    modname = modname.replace("/", ".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict",
                    f"Cannot use built-in module {modname} as a handler module")
    try:
        __import__(modname)
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError",
                    f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        raise Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}",
                    [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']) from None
    try:
        return getattr(sys.modules[modname], fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound",
                    f"Handler '{fname}' missing on module '{modname}'") from None


class Obj:
    """Attribute bag for context.identity and context.client_context."""
    def __init__(self, **attrs):
        self.__dict__.update(attrs)


class LambdaContext:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as AWS's
    log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")

    def __init__(self, headers):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        ci = loads(headers.get("lambda-runtime-cognito-identity") or "{}") or {}
        self.identity = Obj(cognito_identity_id=ci.get("cognitoIdentityId"),
                            cognito_identity_pool_id=ci.get("cognitoIdentityPoolId"))
        cc = loads(headers.get("lambda-runtime-client-context") or "null")
        self.client_context = None if cc is None else Obj(
            client=cc.get("client") and Obj(**cc["client"]),
            custom=cc.get("custom"), env=cc.get("env"))

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


# --- streaming ---------------------------------------------------------------
GeneratorType = type((lambda: (yield))())
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"


def as_bytes(item):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode()
    return dumps(item).encode()


def stream_chunks(gen, first):
    """The generator's items as bytes, starting with `first`; returns (type, json)
    when the handler raises mid-stream."""
    try:
        item = first
        while True:
            yield as_bytes(item)
            sys.stdout.flush()
            item = next(gen)
    except StopIteration:
        return None
    except Exception as e:
        err = error_from_exception(e, request_id)
        print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", file=sys.stderr)
        return err["errorType"], dumps(err).encode()


def stream_response(client, gen):
    """A generator handler streams: each yielded str/bytes is a chunk as it comes;
    a dict first item with statusCode, headers or cookies sets them (function URLs); any
    other dict is a chunk, as JSON (an OpenAI chunk, say)."""
    END = object()
    first = next(gen, END)  # raises before anything is sent: a plain error
    content_type = "application/octet-stream"
    prelude = None
    if isinstance(first, dict) and ({"statusCode", "headers", "cookies"} & first.keys()):
        content_type = PRELUDE_TYPE
        head = {"statusCode": first.get("statusCode", 200), "headers": first.get("headers") or {}}
        if first.get("cookies"):
            head["cookies"] = first["cookies"]
        prelude = dumps(head).encode() + b"\0" * 8
        first = next(gen, END)

    def items():
        if prelude is not None:
            yield prelude
        if first is END:
            return None
        return (yield from stream_chunks(gen, first))

    ok = client.stream(f"invocation/{request_id}/response", items(), content_type)
    if not ok:
        gen.close()


# --- main loop ---------------------------------------------------------------
def invoke(client, handler, headers, body):
    global request_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        event = loads(body.decode()) if body else None
        context = LambdaContext(headers)
    except Exception as e:  # malformed JSON or UTF-8 from the API
        err = make_error(f"Unable to unmarshal input: {e}", "Runtime.UnmarshalError",
                         request_id=request_id)
    else:
        try:
            result = handler(event, context)
            if type(result) is GeneratorType:
                return stream_response(client, result)
        except Exception as e:
            err = error_from_exception(e, request_id)
        else:
            try:
                payload = dumps(result).encode()
            except Exception as e:  # TypeError, ValueError, RecursionError...
                err = make_error(f"Unable to marshal response: {e}", "Runtime.MarshalError",
                                 request_id=request_id)
            else:
                sys.stdout.flush()  # the handler's output lands before the response
                return client.post(f"invocation/{request_id}/response", payload)
    post_error(client, f"invocation/{request_id}/error", err)


def main():
    # thaw reads stdout/stderr line by line as they are written, but a pipe
    # makes stdout block-buffered by default (stderr is always line-buffered).
    sys.stdout.reconfigure(line_buffering=True)
    # sys.path[0] is this script's directory: the task root replaces it. Then
    # what Debian's `site` would add (we run with -S), if present.
    sys.path[0] = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    ver = "python%d.%d" % sys.version_info[:2]
    # thaw does not know which python it runs; this does.
    os.environ["AWS_EXECUTION_ENV"] = "AWS_Lambda_" + ver
    if "logging" in sys.modules:
        setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, LoggingHook)
    for d in (f"/usr/local/lib/{ver}/dist-packages", "/usr/lib/python3/dist-packages",
              f"/usr/lib/{ver}/dist-packages"):
        if d not in sys.path and os.path.isdir(d):
            sys.path.append(d)
    # thaw's own modules (thaw_gpu), last: a bundle may bring its own.
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

    if "THAW_TEMPLATE_FD" in os.environ:
        handler = template_main(int(os.environ.pop("THAW_TEMPLATE_FD")))
        client = runtime_client()
    else:
        client = runtime_client()
        try:
            handler = load_handler(os.environ.get("_HANDLER", ""))
        except Exception as e:  # anything the module raises at import time, too
            err = e.error if isinstance(e, Fault) else error_from_exception(e)
            post_error(client, "init/error", err)
            sys.exit(1)

    while True:
        status, headers, body = client.request("GET", "invocation/next")
        if status != 200:
            sys.exit(f"[thaw] invocation/next: HTTP {status} {body[:200]!r}")
        invoke(client, handler, headers, body)


# --- templates: init once, then fork instances -------------------------------------
# A template (thaw's docs/sandbox.md) runs the function's init and then, instead of asking for
# events, waits on its channel to the spawner (fd THAW_TEMPLATE_FD) for fork requests: "P"
# with a fork socket. It refuses when it holds more than one thread (a fork keeps only the
# calling thread: locks held by the others would never be released), saying why on the fork
# socket (["E", why]). Else its child says ["H", pid] there and waits for its identity,
# ["I", nodump, env...] with its stdout and stderr (and its native channel, when thaw gave it
# one), sent once thaw has moved it into a cgroup of its own. The template reports each child it reaps as ["X", pid, wait status]. Fields end
# in NUL (thaw's sandbox/wire.h).
def template_main(fd):
    import ctypes
    import select
    import signal
    import socket
    chan = socket.socket(fileno=fd)
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:  # the full cold start that follows reports it to the caller
        err = e.error if isinstance(e, Fault) else error_from_exception(e)
        print(f"[thaw] template init failed: {err['errorType']}: {err['errorMessage']}",
              file=sys.stderr)
        sys.exit(1)
    sys.stdout.flush()
    # Keep the forks' hands off the init's objects: a collection in an instance writes to the
    # GC header of every object it traverses, which copies each page holding one (~25 MB per
    # digits-torch instance). Collect the init's garbage once here, then freeze what is left
    # into the permanent generation, which no collection visits (docs/benchmarks.md).
    import gc
    gc.collect()
    gc.freeze()
    libc = ctypes.CDLL(None, use_errno=True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    old_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
    chan.send(b"R\0")
    while True:
        readable = select.select([chan, wake_r], [], [])[0]
        if wake_r in readable:
            while True:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    break
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                chan.send(b"X\0%d\0%d\0" % (pid, status))
        if chan not in readable:
            continue
        msg, fds, _, _ = socket.recv_fds(chan, 4096, 1)
        if not msg:  # thaw is gone
            os._exit(0)
        if msg != b"P\0" or len(fds) != 1:
            for f in fds:
                os.close(f)
            continue
        fork_fd = fds[0]
        threads = len(os.listdir("/proc/self/task"))
        if threads > 1:
            why = (f"the template holds {threads} threads after init (a fork keeps only one); "
                   "start no threads at import, e.g. torch.set_num_threads(1)")
            try:
                os.write(fork_fd, b"E\0" + why.encode() + b"\0")
            except OSError:
                pass
            os.close(fork_fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() != 0:
            os.close(fork_fd)
            continue
        # The child: becomes an instance before any of the function's code runs again.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, old_chld)
        os.close(wake_r)
        os.close(wake_w)
        chan.close()
        become_instance(libc, socket.socket(fileno=fork_fd))
        return handler


def become_instance(libc, sock):
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: it ends with its template
    os.setsid()
    sock.send(b"H\0%d\0" % os.getpid())
    import socket
    msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
    fields = msg.split(b"\0")[:-1]
    if len(fds) not in (2, 3) or len(fields) < 2 or fields[0] != b"I":  # not taken: it must not run
        os._exit(0)
    sock.close()
    out, err = fds[:2]
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    # Siblings share the template's uid: none may read another's memory or descriptors
    # (ptrace is refused by seccomp; this covers /proc/PID/mem, environ and pidfd_getfd).
    if fields[1] == b"1":
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    os.environ.clear()
    for kv in fields[2:]:
        k, _, v = kv.decode().partition("=")
        os.environ[k] = v
    # Its own native channel, at whatever number it arrived (the template's fds are in the way
    # of the one an exec'd instance gets).
    if len(fds) == 3:
        os.environ["THAW_CHANNEL_FD"] = str(fds[2])
    else:
        os.environ.pop("THAW_CHANNEL_FD", None)
    os.environ["AWS_EXECUTION_ENV"] = "AWS_Lambda_python%d.%d" % sys.version_info[:2]
    for attr, var in (("function_name", "AWS_LAMBDA_FUNCTION_NAME"),
                      ("function_version", "AWS_LAMBDA_FUNCTION_VERSION"),
                      ("memory_limit_in_mb", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                      ("log_group_name", "AWS_LAMBDA_LOG_GROUP_NAME"),
                      ("log_stream_name", "AWS_LAMBDA_LOG_STREAM_NAME")):
        setattr(LambdaContext, attr, os.environ.get(var))
    # Siblings must not draw the same random numbers as each other or as the template. (A
    # spare is forked ahead of its request: it is reseeded here, when it becomes one.)
    seed = int.from_bytes(os.urandom(8), "little") >> 1
    if "random" in sys.modules:
        sys.modules["random"].seed(os.urandom(32))
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        np.random.seed(seed & 0xFFFFFFFF)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(seed)


if __name__ == "__main__":
    main()
