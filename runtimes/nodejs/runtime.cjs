// thaw nodejs runtime: AWS Lambda Runtime API (2018-06-01) client loop, or, under thaw, the
// same loop on its native channel (THAW_CHANNEL_FD). One CommonJS file
// with built-in modules only, so that it is both what bootstrap.mjs runs (a full start) and
// the entry of `node --build-snapshot` (a restore start: see buildSnapshot at the end).
//
// Mirrors AWS's aws-lambda-nodejs-runtime-interface-client where a function can
// tell the difference: handler resolution, the context object, the handler
// styles, error bodies ({errorType, errorMessage, trace}), exit codes and the
// console line format. On purpose it differs in that a callback responds at
// once (as if callbackWaitsForEmptyEventLoop were false), a plain function's
// return value is its result, and WARN/ERROR/FATAL console lines go to stderr.
'use strict';
const net = require('node:net');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const v8 = require('node:v8');
const { pathToFileURL } = require('node:url');
const { Writable } = require('node:stream');

// Everything read from the environment is read by configure(), when the runtime starts: a
// restored snapshot (see buildSnapshot below) has the environment of its own process, not the
// one it was built in.
let env = process.env;
const API = '/2018-06-01/runtime/';

// --- console, as AWS patches it ------------------------------------------------
// One line per call, "time\trequestId\tLEVEL\tmessage", with the message's
// newlines turned into \r so that a multi-line message stays one log line; with
// AWS_LAMBDA_LOG_FORMAT=JSON, one JSON object per call ({timestamp, level,
// requestId, message}, an Error as {errorType, errorMessage, stackTrace}). Calls
// below AWS_LAMBDA_LOG_LEVEL (TRACE, the default, to FATAL) print nothing; fatal
// always prints. Before the first invocation the request id is undefined, as on AWS.
let requestId;
let logJson = false;
const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

function errorJson(_key, v) {
  if (!(v instanceof Error)) return v;
  return { errorType: v?.constructor?.name ?? 'UnknownError', errorMessage: v.message,
           stackTrace: typeof v.stack === 'string' ? v.stack.split('\n') : v.stack, ...v };
}

function jsonLine(level, params) {
  const line = { timestamp: new Date().toISOString(), level, requestId };
  if (params.length === 1) {
    line.message = params[0];
    try { return JSON.stringify(line, errorJson); } catch { line.message = util.format(params[0]); }
    return JSON.stringify(line);
  }
  line.message = util.format(...params);
  const err = params.find((p) => p instanceof Error);
  if (err) {
    line.errorType = err.constructor?.name ?? 'UnknownError';
    line.errorMessage = err.message;
    line.stackTrace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
  }
  return JSON.stringify(line);
}

// `toStderr`: while a snapshot is built every line goes to stderr (its stdout is not a log).
function patchConsole(toStderr) {
  logJson = env.AWS_LAMBDA_LOG_FORMAT?.toUpperCase() === 'JSON';
  const minLevel = Math.max(levels.indexOf(env.AWS_LAMBDA_LOG_LEVEL?.toUpperCase()), 0);
  for (const [names, level, out] of [
    [['log', 'info'], 'INFO', 'stdout'], [['debug'], 'DEBUG', 'stdout'],
    [['trace'], 'TRACE', 'stdout'], [['warn'], 'WARN', 'stderr'],
    [['error'], 'ERROR', 'stderr'], [['fatal'], 'FATAL', 'stderr']]) {
    const stream = process[toStderr ? 'stderr' : out];
    const write = logJson
      ? (...args) => stream.write(`${jsonLine(level, args)}\n`)
      : (...args) => stream.write(`${new Date().toISOString()}\t${requestId}\t${level}\t` +
                                  `${util.format(...args).replace(/\n/g, '\r')}\n`);
    const shown = level === 'FATAL' || levels.indexOf(level) >= minLevel;
    for (const name of names) console[name] = shown ? write : () => {};
  }
}

// Errors the runtime itself logs: as a label and the formatted error in text, as
// the error alone in JSON (AWS's structuredConsole.logError).
function logError(label, err) {
  if (logJson) console.error(err instanceof Error ? err : toRapidResponse(err));
  else console.error(label, toFormatted(err));
}

// --- Runtime API client --------------------------------------------------------
// A minimal HTTP/1.1 client on one keep-alive socket, as in the Python runtime:
// node:http costs ~3 ms more at start-up (its import and first request).
// Requests on one Client are strictly sequential. An idle socket is unref'd so
// that it does not hold the event loop open (see the beforeExit listener).
let address = '', host = '', port = 0;

function configure(toStderr) {
  env = process.env;
  // thaw does not know which node it runs; this does.
  env.AWS_EXECUTION_ENV = `AWS_Lambda_nodejs${process.versions.node.split('.')[0]}.x`;
  address = env.AWS_LAMBDA_RUNTIME_API || '';
  const colon = address.lastIndexOf(':');
  host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'); // "[v6]:port"
  port = Number(address.slice(colon + 1));
  const channelFd = env.THAW_CHANNEL_FD;
  delete env.THAW_CHANNEL_FD; // the function's own processes see no channel
  if (channelFd) client = new Channel(Number(channelFd));
  patchConsole(toStderr);
}

class Client {
  sock = null;
  wake = null; // the pending request's reader
  // Bytes in `parts` are joined onto `buf` only once `have` reaches `need`, the
  // size a complete response needs so far: joining on every packet would copy a
  // large event over and over.
  buf = Buffer.alloc(0);
  parts = [];
  have = 0;
  need = 0;

  connect() {
    const s = this.sock = net.connect({ host, port, noDelay: true });
    [this.buf, this.parts, this.have, this.need] = [Buffer.alloc(0), [], 0, 0];
    s.on('data', (d) => {
      this.parts.push(d);
      if ((this.have += d.length) >= this.need) this.wake?.();
    });
    s.on('error', () => {}); // kept in s.errored; 'close' follows
    s.on('close', () => { if (this.sock === s) this.sock = null; this.wake?.(); });
  }

  drop(s) {
    s.destroy();
    if (this.sock === s) this.sock = null;
  }

  request(method, route, body = '', headers = '') {
    return new Promise((resolve, reject) => {
      const attempt = (mayRetry) => {
        const reused = this.sock !== null;
        if (!reused) this.connect();
        const s = this.sock.ref();
        this.wake = () => {
          const res = this.parse(s.closed) ??
            (s.closed ? s.errored || new Error('Runtime API closed the connection') : null);
          if (res === null) return; // not all there yet
          this.wake = null;
          if (res instanceof Error) {
            this.drop(s);
            // The server may have dropped an idle keep-alive connection: retry
            // once on a fresh one; a fresh one failing is fatal.
            return mayRetry && reused ? attempt(false) : reject(res);
          }
          if (res.close) this.drop(s); else s.unref();
          resolve(res);
        };
        s.write(`${method} ${API}${route} HTTP/1.1\r\nHost: ${address}\r\n${headers}` +
                `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      };
      attempt(true);
    });
  }

  // One response off the front of the buffer, or null while incomplete. eof:
  // the server has closed, which ends a body that has no length or chunks.
  parse(eof) {
    const buf = this.buf = Buffer.concat([this.buf, ...this.parts]);
    this.parts = [];
    const more = (n = buf.length + 1) => { this.need = n; return null; };
    const headEnd = buf.indexOf('\r\n\r\n');
    if (headEnd < 0) return more();
    const [statusLine, ...lines] = buf.toString('latin1', 0, headEnd).split('\r\n');
    const h = {};
    for (const line of lines) {
      const i = line.indexOf(':');
      h[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    let pos = headEnd + 4, body;
    if (/chunked/i.test(h['transfer-encoding'])) {
      const chunks = [];
      for (let size; size !== 0;) {
        const eol = buf.indexOf('\r\n', pos);
        if (eol < 0) return more();
        size = parseInt(buf.toString('latin1', pos, eol), 16); // stops at ";ext"
        if (Number.isNaN(size)) return new Error('Runtime API sent a bad chunk size');
        if (buf.length < eol + 4 + size) return more(eol + 4 + size);
        chunks.push(buf.subarray(eol + 2, eol + 2 + size));
        pos = eol + 4 + size; // past the chunk's CRLF; for the last one, past "0\r\n\r\n"
      }
      body = Buffer.concat(chunks); // (no trailers: no Runtime API sends them)
    } else if (h['content-length'] !== undefined) {
      const end = pos + Number(h['content-length']);
      if (buf.length < end) return more(end);
      [body, pos] = [buf.subarray(pos, end), end];
    } else { // no framing: the body runs until the server closes
      if (!eof) return more();
      [body, pos, h.connection] = [buf.subarray(pos), buf.length, 'close'];
    }
    this.buf = buf.subarray(pos);
    [this.have, this.need] = [this.buf.length, 0];
    const [version, status] = statusLine.split(' ');
    const conn = (h.connection || '').toLowerCase();
    return { status: Number(status), headers: h, body: body.toString(),
             close: conn === 'close' || (version === 'HTTP/1.0' && conn !== 'keep-alive') };
  }
}

// --- the native channel (THAW_CHANNEL_FD) ------------------------------------------
// Under thaw, events come on a socketpair this process inherits instead of HTTP: frames of
// `u32 size` (little-endian), a type byte and u32-length-prefixed fields (thaw's
// src/runtime_api/channel_frame.h). "N": ready; "R" id, body: the response, and ready for the
// next event; "E" id, type, body: an error, and ready; "I" type, body: init error; thaw sends
// "V" id, deadline ms, ARN, trace id, client context, identity, payload. Streamed responses
// and fatal()'s reports still go over HTTP. Same interface as Client's request().
const HEADERS = ['lambda-runtime-aws-request-id', 'lambda-runtime-deadline-ms',
  'lambda-runtime-invoked-function-arn', 'lambda-runtime-trace-id',
  'lambda-runtime-client-context', 'lambda-runtime-cognito-identity'];

class Channel {
  ready = false; // an "R" or "E" said so already
  buf = Buffer.alloc(0);
  wake = null;

  constructor(fd) {
    this.sock = new net.Socket({ fd, readable: true, writable: true });
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.(); });
    this.sock.on('error', () => {});
    this.sock.on('close', () => process.exit(0)); // thaw is stopping this instance
    this.sock.unref(); // only a wait for an event keeps the loop alive (see beforeExit)
  }

  send(type, ...fields) {
    const parts = [Buffer.alloc(5)];
    parts[0].write(type, 4, 'latin1');
    for (const f of fields) {
      const b = Buffer.from(f);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      parts.push(len, b);
    }
    const frame = Buffer.concat(parts);
    frame.writeUInt32LE(frame.length - 4, 0);
    this.sock.write(frame);
  }

  request(method, route, body = '', headers = '') {
    if (method === 'GET') return this.next();
    if (route === 'init/error') {
      this.send('I', /Error-Type: ([^\r]*)/.exec(headers)?.[1] ?? '', body);
    } else if (route.endsWith('/error')) {
      this.send('E', route.split('/')[1], /Error-Type: ([^\r]*)/.exec(headers)?.[1] ?? '', body);
      this.ready = true;
    } else {
      this.send('R', route.split('/')[1], body);
      this.ready = true;
    }
    return Promise.resolve({ status: 202, headers: {}, body: '' });
  }

  next() {
    if (!this.ready) this.send('N');
    this.ready = false;
    this.sock.ref();
    return new Promise((resolve) => {
      this.wake = () => {
        const buf = this.buf;
        if (buf.length < 4 || buf.length < 4 + buf.readUInt32LE(0)) return;
        const end = 4 + buf.readUInt32LE(0);
        const fields = [];
        for (let at = 5; at < end;) {
          const n = buf.readUInt32LE(at);
          fields.push(buf.subarray(at + 4, at + 4 + n));
          at += 4 + n;
        }
        this.buf = buf.subarray(end);
        this.wake = null;
        this.sock.unref();
        const h = {};
        HEADERS.forEach((k, i) => { if (fields[i].length) h[k] = fields[i].toString(); });
        resolve({ status: 200, headers: h, body: fields[6].toString() });
      };
      this.wake();
    });
  }
}

// Under thaw, configure() swaps in the native channel (a restored snapshot reads its own
// process's THAW_CHANNEL_FD, not the builder's).
let client = new Client();

async function post(route, payload, errorType, via = client) {
  let headers = 'Content-Type: application/json\r\n';
  if (errorType) { // printable ASCII only: err.name is the user's, CR/LF included
    headers += `Lambda-Runtime-Function-Error-Type: ${errorType.replace(/[^\x20-\x7e]/g, '?')}\r\n`;
  }
  const res = await via.request('POST', route, payload, headers);
  if (res.status >= 300) {
    process.stderr.write(`[thaw] POST ${route}: HTTP ${res.status} ${res.body.slice(0, 200)}\n`);
  }
}

// --- errors, in the shape AWS's runtime reports them -----------------------------
function str(x) {
  try { return String(x); } catch { return Object.prototype.toString.call(x); }
}

// A "Runtime.*" error. Its stack continues with the cause's (for a CommonJS
// SyntaxError that shows file, line and code), not with this file's frames.
function runtimeError(type, message, cause) {
  const err = new Error(message);
  Object.defineProperty(err, 'name', { value: type, writable: true, configurable: true });
  let rest = typeof cause?.stack === 'string' ? cause.stack : '';
  const head = str(cause);
  rest = rest.startsWith(head) ? rest.slice(head.length) : rest && '\n' + rest;
  err.stack = `${type}: ${message}${rest}`;
  return err;
}

// A stack as lines, cut at this file's first frame: below the user's frames
// there is only this runtime's machinery (the Python runtime drops its own too).
function traceLines(stack) {
  const lines = typeof stack === 'string' ? stack.split('\n') : [];
  const ours = lines.findIndex((l) => l.startsWith('    at ') && l.includes(__filename));
  return ours < 0 ? lines : lines.slice(0, ours);
}

// The body posted to .../error: AWS's toRapidResponse. A thrown non-Error
// gives its typeof as the type: throw "x" -> {"errorType": "string", ...}.
function toRapidResponse(e) {
  try {
    if (util.types.isNativeError(e) || (e && typeof e.name === 'string' &&
        typeof e.message === 'string' && typeof e.stack === 'string')) {
      return { errorType: str(e.name || 'Error'), errorMessage: str(e.message),
               trace: traceLines(e.stack) };
    }
    return { errorType: typeof e, errorMessage: e.toString(), trace: [] };
  } catch {
    return { errorType: 'handled', trace: [],
             errorMessage: 'callback called with Error argument, but there was a problem ' +
                           'while retrieving one or more of its message, name, and stack' };
  }
}

// The logged form: AWS's toFormatted (enumerable properties kept, stack as lines).
function toFormatted(e) {
  try {
    return '\t' + JSON.stringify(e, (_k, v) => {
      if (!(v instanceof Error)) return v;
      const o = { errorType: v.name, errorMessage: v.message, code: v.code, ...v };
      if (typeof v.stack === 'string') o.stack = traceLines(v.stack);
      return o;
    });
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(e));
  }
}

// --- response streaming: Lambda's awslambda global ----------------------------------
// awslambda.streamifyResponse(async (event, responseStream, context) => ...) marks a
// handler that streams: responseStream is a Writable whose bytes go to the caller as
// they are written (Lambda's streaming response mode: a chunked POST, errors in
// trailers). HttpResponseStream.from(stream, {statusCode, headers, cookies}) writes
// the prelude a function URL turns into the HTTP status and headers.
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const PRELUDE_TYPE = 'application/vnd.awslambda.http-integration-response';

class ResponseStream extends Writable {
  constructor(route) {
    super();
    this.route = route;
    this.contentType = 'application/octet-stream';
    this.sock = null;
    this.answer = null; // settles with the Runtime API's status once it has answered
    this.error = null; // [type, json] for the trailers
  }

  setContentType(type) {
    if (this.sock) throw new Error('setContentType: the stream has already started');
    this.contentType = type;
  }

  start() {
    if (this.sock) return;
    const s = this.sock = net.connect({ host, port, noDelay: true });
    let got = '';
    this.answer = new Promise((resolve) => {
      s.on('data', (d) => {
        got += d.toString('latin1');
        // thaw answers before the end only to stop us: its caller left, or a limit.
        if (got.includes('\r\n\r\n')) {
          const status = Number(got.split(' ')[1]);
          if (!this.writableFinished) this.destroy(new Error(`stream stopped: HTTP ${status}`));
          resolve(status);
        }
      });
      s.on('error', () => {});
      s.on('close', () => {
        if (!this.writableFinished) this.destroy(new Error('Runtime API closed the stream'));
        resolve(0);
      });
    });
    s.write(`POST ${API}${this.route} HTTP/1.1\r\nHost: ${address}\r\n` +
            `Content-Type: ${this.contentType}\r\n` +
            'Lambda-Runtime-Function-Response-Mode: streaming\r\n' +
            'Transfer-Encoding: chunked\r\n' +
            'Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n' +
            '\r\n');
  }

  _write(chunk, encoding, cb) {
    this.start();
    if (chunk.length === 0) return cb();
    this.sock.write(`${chunk.length.toString(16)}\r\n`);
    this.sock.write(chunk);
    this.sock.write('\r\n', cb);
  }

  _final(cb) {
    this.start();
    let trailers = '';
    if (this.error) {
      const [type, body] = this.error;
      trailers = `Lambda-Runtime-Function-Error-Type: ${type.replace(/[^\x20-\x7e]/g, '?')}\r\n` +
        `Lambda-Runtime-Function-Error-Body: ${Buffer.from(body).toString('base64')}\r\n`;
    }
    this.sock.write(`0\r\n${trailers}\r\n`, cb);
  }

  _destroy(err, cb) {
    this.sock?.destroy();
    cb(err);
  }
}

globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = 'response';
    return handler;
  },
  HttpResponseStream: {
    from(stream, prelude = {}) {
      stream.setContentType(PRELUDE_TYPE);
      stream.write(JSON.stringify(prelude));
      stream.write(new Uint8Array(8));
      return stream;
    },
  },
};

// Runs a streaming handler. An error before the first byte is reported as usual;
// after it, in the trailers.
async function invokeStreaming(handler, h, id, body) {
  const stream = new ResponseStream(`invocation/${id}/response`);
  current = { id, settle() {} }; // for fatal(): an uncaught error reports against this call
  let err = null;
  try {
    const event = JSON.parse(body);
    const context = makeContext(h, id, () => {});
    await handler(event, stream, context);
  } catch (e) {
    err = e ?? 'handled';
  }
  if (err && !stream.sock) {
    logError('Invoke Error', err);
    const r = toRapidResponse(err);
    return post(`invocation/${id}/error`, JSON.stringify(r), r.errorType);
  }
  if (err) {
    logError('Invoke Error', err);
    const r = toRapidResponse(err);
    stream.error = [r.errorType, JSON.stringify(r)];
  }
  if (!stream.destroyed && !stream.writableEnded) stream.end();
  if (!stream.destroyed && !stream.writableFinished) {
    await new Promise((resolve) => stream.on('finish', resolve).on('close', resolve));
  }
  if (stream.answer) await stream.answer;
  stream.sock?.destroy();
}

// --- handler loading: AWS's UserFunction.load ------------------------------------
// "src/app.handler": module root "src/", module "app" (the basename up to its
// first dot), then "handler", which may be a nested path such as "v1.handler".
async function loadHandler(appRoot, full, loader = nodeLoader) {
  if (full.includes('..')) {
    throw runtimeError('Runtime.MalformedHandlerName', `'${full}' is not a valid handler name. ` +
                       'Use absolute paths when specifying root directories in handler names.');
  }
  const base = path.basename(full);
  const moduleRoot = full.slice(0, full.indexOf(base));
  const dot = base.indexOf('.');
  if (dot < 0) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, base.slice(0, dot), loader);
  } catch (e) {
    if (e instanceof SyntaxError) throw runtimeError('Runtime.UserCodeSyntaxError', str(e), e);
    if (e?.code === 'MODULE_NOT_FOUND' || e?.code === 'ERR_MODULE_NOT_FOUND') {
      throw runtimeError('Runtime.ImportModuleError', str(e), e);
    }
    throw e;
  }
  const fn = base.slice(dot + 1).split('.').reduce((o, key) => o && o[key], app);
  if (!fn) throw runtimeError('Runtime.HandlerNotFound', `${full} is undefined or not exported`);
  if (typeof fn !== 'function') {
    throw runtimeError('Runtime.HandlerNotFound', `${full} is not a function`);
  }
  return fn;
}

// AWS's order: the bare path (a file, or a folder with index.js), then .js
// (import() where the nearest package.json says "type": "module", else
// require), .mjs by import(), .cjs by require, and last a package of that name
// in node_modules, whose failure gives AWS's "Cannot find module 'index'".
// `loader` is Node's own (nodeLoader), or while a snapshot is built, snapshotLoader.
async function loadModule(appRoot, moduleRoot, mod, loader) {
  const file = path.resolve(appRoot, moduleRoot, mod);
  const has = (ext) => fs.existsSync(file + ext);
  const { require: load, esm } = loader;
  if (has('')) return load(file);
  if (has('.js')) return isModuleFolder(path.dirname(file)) ? esm(file + '.js') : load(file + '.js');
  if (has('.mjs')) return esm(file + '.mjs');
  if (has('.cjs')) return load(file + '.cjs');
  return load(load.resolve(mod, { paths: [appRoot, moduleRoot] }));
}

const nodeLoader = { require, esm: (file) => import(pathToFileURL(file).href) };

function isModuleFolder(dir) {
  for (;; dir = path.dirname(dir)) {
    if (dir.endsWith('/node_modules')) return false;
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try { return JSON.parse(fs.readFileSync(pj, 'utf8'))?.type === 'module'; } catch {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`);
        return false;
      }
    }
    if (dir === '/' || dir === '.') return false;
  }
}

// --- invocations -------------------------------------------------------------------
let invoked = false; // whether an invocation has begun (before: errors go to init/error)
let current = null;  // the invocation in flight, until its result is posted: { id, settle }
let dying = false;

function parseJson(text, what) {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot parse ${what} as json: ${e}`);
  }
}

function makeContext(h, id, callback) {
  const deadline = Number(h['lambda-runtime-deadline-ms']) || 0;
  let waits = true; // kept for code that reads it back; the callback never waits
  const done = (err, result) => { waits = false; callback(err, result); };
  return {
    get callbackWaitsForEmptyEventLoop() { return waits; },
    set callbackWaitsForEmptyEventLoop(v) { waits = v; },
    done,
    succeed: (result) => done(null, result),
    fail: (err) => done(err ?? 'handled'),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJson(h['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJson(h['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
  };
}

// Runs the handler; resolves with [error] or [null, result], the first outcome.
function runHandler(handler, h, id, body) {
  return new Promise((settle) => {
    current = { id, settle };
    const callback = (err, result) => settle(err != null ? [err] : [null, result]);
    let event, context;
    try {
      event = JSON.parse(body);
      context = makeContext(h, id, callback);
    } catch (e) {
      const message = `Unable to unmarshal input: ${e.message}`;
      return settle([runtimeError('Runtime.UnmarshalError', message)]);
    }
    try {
      const ret = handler(event, context, callback);
      if (ret && typeof ret.then === 'function') {
        ret.then((r) => callback(null, r), (e) => callback(e ?? 'handled'));
      } else if (handler.length < 3) {
        callback(null, ret);
      } // else: wait for the callback, or for an empty event loop (beforeExit).
    } catch (e) {
      callback(e ?? 'handled');
    }
  });
}

async function invoke(handler, h, body) {
  const id = h['lambda-runtime-aws-request-id'] || '';
  [requestId, invoked] = [id, true];
  if (h['lambda-runtime-trace-id']) env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
  else delete env._X_AMZN_TRACE_ID;
  if (handler[STREAMING] === 'response') {
    try {
      return await invokeStreaming(handler, h, id, body);
    } finally {
      current = null;
    }
  }
  let [err, result] = await runHandler(handler, h, id, body);
  if (dying) return new Promise(() => {}); // fatal() reports and exits
  try {
    if (!err) {
      let payload;
      try { // undefined (and functions, symbols) -> null
        payload = JSON.stringify(result === undefined ? null : result) ?? 'null';
      } catch (e) {
        const message = `Unable to stringify response body: ${e.message}`;
        err = runtimeError('Runtime.MarshalError', message);
      }
      if (!err) return await post(`invocation/${id}/response`, payload);
    }
    logError('Invoke Error', err);
    const r = toRapidResponse(err);
    await post(`invocation/${id}/error`, JSON.stringify(r), r.errorType);
  } finally {
    current = null;
  }
}

// Reports an error nobody caught (to init/error before the first invocation,
// else against the invocation in flight, if any), then exits so that thaw
// replaces this instance: 129 for an exception, 128 for a rejection, as AWS.
async function fatal(label, err, code) {
  if (dying) return;
  dying = true;
  logError(label, err);
  const r = toRapidResponse(err);
  const route = current ? `invocation/${current.id}/error` : invoked ? null : 'init/error';
  try {
    // A fresh connection: the main one may be mid-request, or long-polling /next.
    if (route) await post(route, JSON.stringify(r), r.errorType, new Client());
  } catch (e) {
    process.stderr.write(`[thaw] could not report the error: ${e.message}\n`);
  }
  process.exit(code);
}

function installProcessHandlers() {
  process.on('uncaughtException', (err) => fatal('Uncaught Exception', err, 129));
  process.on('unhandledRejection', (reason) => fatal('Unhandled Promise Rejection',
    runtimeError('Runtime.UnhandledPromiseRejection', str(reason), reason), 128));
  // The event loop is empty. During an invocation: a callback-style handler has
  // neither called back nor left work pending, so respond null, as AWS does.
  // Before any (once loaded, the long poll on /next keeps the loop busy): the
  // handler module never finished loading, e.g. a top-level await never settled.
  process.on('beforeExit', () => {
    if (current) current.settle([null, undefined]);
    else if (!invoked) {
      fatal('Uncaught Exception', runtimeError('Runtime.InitError', 'the handler module never ' +
            'finished loading (a top-level await that never settles?)'), 129);
    }
  });
}

// `loaded`: the handler, already loaded by a snapshot's init; else it is loaded now.
async function main(loaded) {
  let handler = loaded;
  try {
    handler ??= await loadHandler(env.LAMBDA_TASK_ROOT || process.cwd(), env._HANDLER || '');
  } catch (e) {
    return fatal('Uncaught Exception', e, 129);
  }
  for (;;) {
    const res = await client.request('GET', 'invocation/next');
    if (res.status !== 200) {
      const detail = `HTTP ${res.status} ${res.body.slice(0, 200)}`;
      process.stderr.write(`[thaw] invocation/next: ${detail}\n`);
      process.exit(1);
    }
    await invoke(handler, res.headers, res.body);
  }
}

// A full start (bootstrap.mjs), or a restored snapshot's (buildSnapshot).
function start(loaded) {
  configure(false);
  installProcessHandlers();
  main(loaded).catch((e) => { // the Runtime API is unreachable or broke the protocol
    process.stderr.write(`[thaw] runtime API: ${e.stack || e}\n`);
    process.exit(1);
  });
}

// --- snapshots: the `restore` start kind --------------------------------------------
// `node --snapshot-blob BLOB --build-snapshot runtime.cjs` runs the function's init (loads the
// handler's module, so its top-level code runs) and node writes the heap to BLOB; an instance
// then starts with `node --snapshot-blob BLOB`, which runs start() with that handler. V8 draws
// a new Math.random seed in each restored process; process.env is the new process's own.
//
// While a snapshot is built only built-in modules may be require()d, so the handler's CommonJS
// files are read and wrapped here as Node's loader would. What a snapshot cannot hold (an ES
// module, a native addon, handles left open by the init) ends the build with exit status 3 and
// the reason on stderr; thaw then starts instances fresh.
const kUnsupported = 3;

class Unsupported extends Error {}

const builtinRequire = require;
const snapshotCache = new Map(); // file -> module

function isBuiltinId(id) {
  if (id.startsWith('node:')) return true;
  // The builder's require() knows only built-in modules (node:module, which could say, is not
  // verified for snapshots).
  try { builtinRequire(id); return true; } catch { return false; }
}

function isFile(p) {
  try { return fs.statSync(p).isFile(); } catch { return false; }
}

function resolveAsFile(base) {
  for (const ext of ['', '.js', '.json', '.node']) if (isFile(base + ext)) return base + ext;
  return null;
}

function resolveAsFolder(base) {
  const pj = path.join(base, 'package.json');
  if (isFile(pj)) {
    let main;
    try { main = JSON.parse(fs.readFileSync(pj, 'utf8')).main; } catch { main = undefined; }
    if (typeof main === 'string') {
      const m = path.resolve(base, main);
      const found = resolveAsFile(m) ?? resolveAsFile(path.join(m, 'index'));
      if (found) return found;
    }
  }
  return resolveAsFile(path.join(base, 'index'));
}

function resolveUser(id, dirs) {
  const bases = [];
  if (id.startsWith('/') || id.startsWith('./') || id.startsWith('../') || id === '.' ||
      id === '..') {
    bases.push(path.resolve(dirs[0], id));
  } else {
    for (const start of dirs) {
      for (let d = path.resolve(start); ; d = path.dirname(d)) {
        if (!d.endsWith('/node_modules')) bases.push(path.join(d, 'node_modules', id));
        if (d === '/') break;
      }
    }
  }
  for (const b of bases) {
    const found = resolveAsFile(b) ?? resolveAsFolder(b);
    if (found) return found;
  }
  const err = new Error(`Cannot find module '${id}'`);
  err.code = 'MODULE_NOT_FOUND';
  throw err;
}

function requireFrom(dir) {
  const req = (id) => (isBuiltinId(id) ? builtinRequire(id) : loadUserFile(resolveUser(id, [dir])));
  req.resolve = (id, options) =>
    (isBuiltinId(id) ? id : resolveUser(id, options?.paths ?? [dir]));
  req.cache = Object.create(null);
  return req;
}

function loadUserFile(file) {
  const cached = snapshotCache.get(file);
  if (cached) return cached.exports;
  if (file.endsWith('.node')) throw new Unsupported(`a native addon (${file})`);
  if (file.endsWith('.mjs') || (file.endsWith('.js') && isModuleFolder(path.dirname(file)))) {
    throw new Unsupported(`an ES module handler (${file})`);
  }
  const module = { id: file, filename: file, exports: {}, loaded: false, children: [] };
  snapshotCache.set(file, module);
  try {
    const text = fs.readFileSync(file, 'utf8');
    if (file.endsWith('.json')) {
      module.exports = JSON.parse(text);
    } else {
      const dir = path.dirname(file);
      // Node's own wrapper; the sourceURL gives its frames the file's name, as Node's do.
      const wrapper = (0, eval)('(function (exports, require, module, __filename, __dirname) { ' +
                                text.replace(/^#!.*/, '') + '\n})\n//# sourceURL=' + file);
      wrapper.call(module.exports, module.exports, requireFrom(dir), module, file, dir);
    }
  } catch (e) {
    snapshotCache.delete(file);
    throw e;
  }
  module.loaded = true;
  return module.exports;
}

const snapshotLoader = {
  require: Object.assign((file) => loadUserFile(file), {
    resolve: (id, options) => resolveUser(id, options?.paths ?? [process.cwd()]),
  }),
  esm: (file) => { throw new Unsupported(`an ES module handler (${file})`); },
};

async function buildSnapshot() {
  configure(true);
  const refuse = (why) => {
    process.stderr.write(`[thaw] no snapshot: ${why} cannot be in a snapshot; instances start ` +
                         'fresh\n');
    process.exit(kUnsupported);
  };
  let handler;
  try {
    handler = await loadHandler(env.LAMBDA_TASK_ROOT || process.cwd(), env._HANDLER || '',
                                snapshotLoader);
  } catch (e) {
    if (e instanceof Unsupported) return refuse(e.message);
    logError('Uncaught Exception', e); // the full start that follows reports it as init error
    process.exit(129);
  }
  // A socket, timer or child the init left open would not survive in a heap image. stdio's
  // pipes and TTYs (up to three) do: node makes them again in the restored process.
  let stdio = 3;
  const open = process.getActiveResourcesInfo().filter(
    (r) => !((r === 'PipeWrap' || r === 'TTYWrap') && stdio-- > 0));
  if (open.length > 0) return refuse(`handles the init left open (${open.join(', ')})`);
  v8.startupSnapshot.setDeserializeMainFunction(() => start(handler));
}

if (v8.startupSnapshot?.isBuildingSnapshot()) {
  buildSnapshot();
} else {
  module.exports = { start };
}
