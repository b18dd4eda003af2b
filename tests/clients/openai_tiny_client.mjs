// Drives examples/tiny-chat and examples/tiny-embed through thaw's OpenAI routes with the
// official `openai` npm SDK, unmodified, and prints what it saw as one JSON object, for
// tests/examples_test.cc. Usage: node openai_tiny_client.mjs BASE_URL with OPENAI_API_KEY set
// to a thaw key; THAW_NPM_DIR is where install.sh put the SDK.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.THAW_NPM_DIR}/`);
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;

const [baseURL] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY, maxRetries: 0 });
const out = {};

// A streamed chat, chunk by chunk, as a chat UI would read it.
const stream = await client.chat.completions.create({
  model: 'tiny-chat',
  messages: [{ role: 'user', content: 'What does the future hold?' }],
  stream: true,
  seed: 42,
  max_tokens: 60,
  temperature: 0.8,
});
const deltas = [];
let chunks = 0;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  ++chunks;
  if (chunk.object !== 'chat.completion.chunk') throw new Error(`chunk ${chunk.object}`);
  const choice = chunk.choices[0];
  if (choice?.delta?.content) deltas.push(choice.delta.content);
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
}
out.chat_stream = { chunks, deltas, content: deltas.join(''), finish, usage };

// Embeddings in the SDK's default encoding (base64, decoded by the SDK to floats).
const e = await client.embeddings.create({
  model: 'tiny-embed',
  input: ['The cat sat on the mat.', 'The cat sat on a mat.', 'Stock markets fell on Monday.'],
});
out.embeddings = e.data.map((d) => Array.from(d.embedding));
console.log(JSON.stringify(out));
