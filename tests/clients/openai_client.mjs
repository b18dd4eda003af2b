// Drives thaw's OpenAI routes with the official `openai` npm SDK, unmodified, and prints what
// it saw as one JSON object, for tests/openai_test.cc. Usage: node openai_client.mjs BASE_URL
// (e.g. http://127.0.0.1:PORT/v1) with OPENAI_API_KEY set to a thaw key; THAW_NPM_DIR is where
// install.sh put the SDK. Each step records its outcome or the SDK's typed error.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.THAW_NPM_DIR}/`);
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;

const [baseURL] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY, maxRetries: 0 });
const out = {};

async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = {
      error: e.constructor.name,
      status: e.status ?? null,
      code: e.code ?? null,
      type: e.type ?? null,
      message: String(e.message),
    };
  }
}

await step('models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return { ids };
});
await step('chat', async () => {
  const c = await client.chat.completions.create({
    model: 'tiny-chat',
    messages: [{ role: 'user', content: 'hello there thaw' }],
  });
  return { object: c.object, content: c.choices[0].message.content, usage: c.usage };
});
await step('chat_stream', async () => {
  const stream = await client.chat.completions.create({
    model: 'tiny-chat',
    messages: [{ role: 'user', content: 'one two three' }],
    stream: true,
  });
  const deltas = [];
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.object !== 'chat.completion.chunk') throw new Error(`chunk ${chunk.object}`);
    const d = chunk.choices[0]?.delta?.content;
    if (d) deltas.push(d);
  }
  return { chunks, deltas, content: deltas.join('') };
});
await step('embeddings', async () => {
  const e = await client.embeddings.create({ model: 'tiny-embed', input: ['abc', 'hello'] });
  return { count: e.data.length, embedding: e.data.map((d) => Array.from(d.embedding)) };
});
await step('embeddings_float', async () => {
  const e = await client.embeddings.create({
    model: 'tiny-embed',
    input: 'abc',
    encoding_format: 'float',
  });
  return { embedding: Array.from(e.data[0].embedding) };
});
await step('unknown_model', async () =>
  client.chat.completions.create({ model: 'no-such', messages: [{ role: 'user', content: 'x' }] }),
);
await step('bad_key', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'not-a-key', maxRetries: 0 });
  return bad.models.list();
});
await step('rate_limited', async () => {
  // A tenant held to 1 request/s: a quick burst runs into its limit.
  const slow = new OpenAI({ baseURL, apiKey: process.env.OPENAI_SLOW_KEY, maxRetries: 0 });
  for (let i = 0; i < 5; ++i) {
    await slow.chat.completions.create({
      model: 'slow-chat',
      messages: [{ role: 'user', content: 'x' }],
    });
  }
  return { limited: false };
});
console.log(JSON.stringify(out));
