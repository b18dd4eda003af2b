// Measures the console in Debian's headless chromium, for bench/console.sh: per run, a fresh
// browser profile opens /ui/ (first contentful paint of the sign-in page), signs in and waits for
// the functions table to show FUNCTION. Prints one JSON line per run.
// Usage: node console_paint.mjs URL KEY FUNCTION RUNS (THAW_NPM_UI_DIR: puppeteer-core).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(`${process.env.THAW_NPM_UI_DIR}/`);
const puppeteer = require('puppeteer-core');
const [url, key, fn, runs] = process.argv.slice(2);
for (let i = 0; i < Number(runs); i++) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'thaw-bench-ui-'));
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium', headless: true, userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/ui/`, { waitUntil: 'load' });
    await page.waitForSelector('#api-key', { visible: true });
    const fcp = await page.evaluate(() =>
      performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
    await page.$eval('#api-key', (el, k) => { el.value = k; }, key);
    const t0 = Date.now();
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector(`tr[data-function="${fn}"]`, { timeout: 60000 });
    console.log(JSON.stringify({ fcp_ms: fcp, signin_to_table_ms: Date.now() - t0 }));
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}
