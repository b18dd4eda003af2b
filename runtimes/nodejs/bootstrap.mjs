// thaw nodejs runtime, a full start: `node bootstrap.mjs`. The runtime is runtime.cjs, which a
// restore start runs from a snapshot instead (see its end).
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./runtime.cjs').start();
