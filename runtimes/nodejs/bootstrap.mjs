// thaw nodejs runtime: AWS Lambda Runtime API (2018-06-01) client loop.
//
// Mirrors AWS's aws-lambda-nodejs-runtime-interface-client where a function
// can tell the difference: handler resolution, the context object, the three
// handler styles, error bodies ({errorType, errorMessage, trace}) and the
// console line format. Differences: a callback responds at once (as if
// callbackWaitsForEmptyEventLoop were false), a plain function's return value
// is its result, and warn/error/fatal console lines go to stderr.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const env = process.env;
const API = '/2018-06-01/runtime/';

// --- console, as AWS patches it --------------------------------------------
// One line per call: "time\trequestId\tLEVEL\tmessage", with newlines inside
// the message turned into \r so that a multi-line message stays one log line.
// Before the first invocation the request id reads "undefined", as on AWS.
let requestId = 'undefined';
function logger(level, stream) {
  return (...args) => {
    const msg = util.format(...args).replace(/\n/g, '\r');
    stream.write(`${new Date().toISOString()}\t${requestId}\t${level}\t${msg}\n`);
  };
}
console.log = console.info = logger('INFO', process.stdout);
console.debug = logger('DEBUG', process.stdout);
console.trace = logger('TRACE', process.stdout);
console.warn = logger('WARN', process.stderr);
console.error = logger('ERROR', process.stderr);
console.fatal = logger('FATAL', process.stderr);

// --- Runtime API client ------------------------------------------------------
// One keep-alive connection. The agent unrefs it while idle, so it does not
// hold the event loop open (that matters for the beforeExit listener below).
const address = env.AWS_LAMBDA_RUNTIME_API || '';
const colon = address.lastIndexOf(':');
const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'); // "[v6]:port"
const port = Number(address.slice(colon + 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, route, body, headers) {
  return new Promise((resolve, reject) => {
    const send = (mayRetry) => {
      const req = http.request({ agent, host, port, method, path: API + route, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                      body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', (err) => {
        // The server may have dropped an idle keep-alive connection: retry
        // once on a fresh one; a fresh one failing is fatal.
        if (mayRetry && req.reusedSocket) send(false);
        else reject(err);
      });
      req.end(body);
    };
    send(true);
  });
}

async function post(route, payload, errorType) {
  const headers = { 'Content-Type': 'application/json',
                    'Content-Length': Buffer.byteLength(payload) };
  // A header value may not hold control or non-Latin-1 characters (Node throws).
  if (errorType) headers['Lambda-Runtime-Function-Error-Type'] = errorType.replace(/[^\x20-\x7e]/g, '?');
  const res = await request('POST', route, payload, headers);
  if (res.status >= 300) {
    process.stderr.write(`[thaw] POST ${route}: HTTP ${res.status} ${res.body.slice(0, 200)}\n`);
  }
}

// --- errors, in the shape AWS's runtime reports them -------------------------
function str(x) {
  try { return String(x); } catch { return Object.prototype.toString.call(x); }
}

// A "Runtime.*" error. Its trace is the cause's stack (for a SyntaxError that
// shows file, line and code) rather than this file's frames, which AWS shows.
function runtimeError(type, message, cause) {
  const err = new Error(message);
  Object.defineProperty(err, 'name', { value: type, writable: true, configurable: true });
  let rest = typeof cause?.stack === 'string' ? cause.stack : '';
  const head = str(cause);
  rest = rest.startsWith(head) ? rest.slice(head.length) : rest && '\n' + rest;
  err.stack = `${type}: ${message}${rest}`;
  return err;
}

function isError(e) {
  return util.types.isNativeError(e) || (e && typeof e.name === 'string' &&
    typeof e.message === 'string' && typeof e.stack === 'string');
}

// A stack as lines, cut at this file's first frame: below the user's frames
// there is only this runtime's machinery (the Python runtime drops its own too).
function traceLines(stack) {
  const lines = typeof stack === 'string' ? stack.split('\n') : [];
  const ours = lines.findIndex((l) => l.startsWith('    at ') && l.includes(import.meta.url));
  return ours < 0 ? lines : lines.slice(0, ours);
}

// The body posted to .../error: AWS's toRapidResponse.
function toRapidResponse(e) {
  try {
    if (isError(e)) {
      return { errorType: str(e.name || 'Error'), errorMessage: str(e.message),
               trace: traceLines(e.stack) };
    }
    return { errorType: typeof e, errorMessage: e.toString(), trace: [] };
  } catch {
    return { errorType: 'handled', trace: [], errorMessage: 'callback called with Error argument, ' +
             'but there was a problem while retrieving one or more of its message, name, and stack' };
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

// --- handler loading: AWS's UserFunction.load --------------------------------
// "src/app.handler": module root "src/", module "app" (the basename up to its
// first dot), then "handler", which may be a nested path such as "v1.handler".
async function loadHandler(appRoot, full) {
  if (full.includes('..')) {
    throw runtimeError('Runtime.MalformedHandlerName', `'${full}' is not a valid handler name. ` +
                       'Use absolute paths when specifying root directories in handler names.');
  }
  const base = path.basename(full);
  const moduleRoot = full.slice(0, full.indexOf(base));
  const dot = base.indexOf('.');
  if (dot < 0) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  const [mod, fnPath] = [base.slice(0, dot), base.slice(dot + 1)];
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, mod);
  } catch (e) {
    if (e instanceof SyntaxError) throw runtimeError('Runtime.UserCodeSyntaxError', str(e), e);
    if (e?.code === 'MODULE_NOT_FOUND' || e?.code === 'ERR_MODULE_NOT_FOUND') {
      throw runtimeError('Runtime.ImportModuleError', str(e), e);
    }
    throw e;
  }
  const fn = fnPath.split('.').reduce((o, key) => o && o[key], app);
  if (!fn) throw runtimeError('Runtime.HandlerNotFound', `${full} is undefined or not exported`);
  if (typeof fn !== 'function') throw runtimeError('Runtime.HandlerNotFound', `${full} is not a function`);
  return fn;
}

// Same order as AWS: the bare path (a file or a folder with index.js) and .js
// through require, unless package.json says "type": "module", then .js and
// .mjs through import(), .cjs through require, and last a package of that
// name in node_modules (whose failure gives AWS's "Cannot find module" text).
async function loadModule(appRoot, moduleRoot, mod) {
  const file = path.resolve(appRoot, moduleRoot, mod);
  if (fs.existsSync(file)) return require(file);
  const esm = fs.existsSync(file + '.js') && isModuleFolder(path.dirname(file));
  if (fs.existsSync(file + '.js')) return esm ? import(pathToFileURL(file + '.js').href) : require(file + '.js');
  if (fs.existsSync(file + '.mjs')) return import(pathToFileURL(file + '.mjs').href);
  if (fs.existsSync(file + '.cjs')) return require(file + '.cjs');
  return require(require.resolve(mod, { paths: [appRoot, moduleRoot] }));
}

// Whether the nearest package.json up from dir says "type": "module".
function isModuleFolder(dir) {
  for (;;) {
    if (dir.endsWith('/node_modules')) return false;
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try { return JSON.parse(fs.readFileSync(pj, 'utf8'))?.type === 'module'; } catch {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`);
        return false;
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
}

// --- invocations -------------------------------------------------------------
let invoked = false; // whether an invocation has started: before, errors go to init/error
let current = null;  // the invocation in flight: { id, settle }
let dying = false;

function parseJson(text, what) {
  if (text === undefined || text === '') return undefined;
  try { return JSON.parse(text); } catch (e) { throw new Error(`Cannot parse ${what} as json: ${e}`); }
}

function makeContext(h, id, callback) {
  const deadline = Number(h['lambda-runtime-deadline-ms']) || 0;
  let waits = true; // read by nothing here: thaw always responds at the callback
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

// Runs the handler; resolves with [error] or [null, result], first outcome wins.
function runHandler(handler, h, id, body) {
  return new Promise((settle) => {
    current = { id, settle };
    const callback = (err, result) => settle(err !== undefined && err !== null ? [err] : [null, result]);
    let event, context;
    try {
      event = JSON.parse(body);
      context = makeContext(h, id, callback);
    } catch (e) {
      return settle([runtimeError('Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`)]);
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
  requestId = id;
  invoked = true;
  if (h['lambda-runtime-trace-id']) env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
  else delete env._X_AMZN_TRACE_ID;
  let [err, result] = await runHandler(handler, h, id, body);
  if (dying) return new Promise(() => {}); // an uncaught error is reporting; park.
  if (!err) {
    let payload;
    try {
      payload = JSON.stringify(result === undefined ? null : result) ?? 'null'; // functions, symbols
    } catch (e) {
      err = runtimeError('Runtime.MarshalError', `Unable to stringify response body: ${e.message}`);
    }
    if (!err) return post(`invocation/${id}/response`, payload).finally(() => { current = null; });
  }
  console.error('Invoke Error', toFormatted(err));
  const r = toRapidResponse(err);
  return post(`invocation/${id}/error`, JSON.stringify(r), r.errorType).finally(() => { current = null; });
}

// Reports an error nobody caught (to init/error before the first invocation,
// else against the invocation in flight, if any), then exits so that thaw replaces this instance:
// 129 for an exception, 128 for a rejection, as AWS's runtime does.
async function fatal(label, err, code) {
  if (dying) return;
  dying = true;
  console.error(label, toFormatted(err));
  const r = toRapidResponse(err);
  const route = current ? `invocation/${current.id}/error` : invoked ? null : 'init/error';
  try {
    if (route) await post(route, JSON.stringify(r), r.errorType);
  } catch (e) {
    process.stderr.write(`[thaw] could not report the error: ${e.message}\n`);
  }
  process.exit(code);
}

process.on('uncaughtException', (err) => fatal('Uncaught Exception', err, 129));
process.on('unhandledRejection', (reason) => {
  const err = runtimeError('Runtime.UnhandledPromiseRejection', str(reason), reason);
  fatal('Unhandled Promise Rejection', err, 128);
});
// The loop is empty while a callback-style handler has neither called back nor
// left work pending: respond null, as AWS does.
process.on('beforeExit', () => current?.settle([null, undefined]));

async function main() {
  let handler;
  try {
    handler = await loadHandler(env.LAMBDA_TASK_ROOT || process.cwd(), env._HANDLER || '');
  } catch (e) {
    return fatal('Uncaught Exception', e, 129);
  }
  for (;;) {
    const res = await request('GET', 'invocation/next');
    if (res.status !== 200) {
      process.stderr.write(`[thaw] invocation/next: HTTP ${res.status} ${res.body.slice(0, 200)}\n`);
      process.exit(1);
    }
    await invoke(handler, res.headers, res.body);
  }
}

main().catch((e) => { // the Runtime API is unreachable or broke the protocol
  process.stderr.write(`[thaw] runtime API: ${e.stack || e}\n`);
  process.exit(1);
});
