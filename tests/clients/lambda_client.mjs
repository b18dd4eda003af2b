// Runs one @aws-sdk/client-lambda command against thaw and prints the outcome as JSON, for
// tests/lambda_api_test.cc. Usage: node lambda_client.mjs ENDPOINT COMMAND 'INPUT_JSON'
// (COMMAND as the SDK names it, e.g. InvokeCommand). THAW_NPM_DIR is where install.sh put the
// SDK. Payload inputs are text; Code.ZipFileBase64 stands for Code.ZipFile's bytes.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.THAW_NPM_DIR}/`);
const sdk = require('@aws-sdk/client-lambda');

const [endpoint, command, inputJson] = process.argv.slice(2);
const input = JSON.parse(inputJson || '{}');
if (typeof input.Payload === 'string') input.Payload = Buffer.from(input.Payload);
if (input.Code && input.Code.ZipFileBase64) {
  input.Code.ZipFile = Buffer.from(input.Code.ZipFileBase64, 'base64');
  delete input.Code.ZipFileBase64;
}
const client = new sdk.LambdaClient({
  endpoint,
  region: 'us-east-1',
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
  maxAttempts: 1,
});
try {
  const out = await client.send(new sdk[command](input));
  if (out.Payload) out.Payload = Buffer.from(out.Payload).toString('utf8');
  if (out.EventStream) {
    // InvokeWithResponseStream: each event as it arrives, with its arrival (wall seconds).
    const events = [];
    for await (const ev of out.EventStream) {
      const at = Date.now() / 1000;
      if (ev.PayloadChunk) {
        events.push({ PayloadChunk: Buffer.from(ev.PayloadChunk.Payload).toString('utf8'), at });
      } else {
        events.push({ ...ev, at });
      }
    }
    out.EventStream = events;
  }
  console.log(JSON.stringify({ ok: true, status: out.$metadata.httpStatusCode, output: out }));
} catch (e) {
  console.log(JSON.stringify({
    ok: false,
    name: e.name,
    status: e.$metadata && e.$metadata.httpStatusCode,
    message: e.message,
    reason: e.Reason,
  }));
}
