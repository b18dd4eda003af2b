// Drives the console in Debian's headless chromium with puppeteer-core, for tests/ui_test.cc.
// Usage: node console_test.mjs SCENARIO (admin | tenant | wrong-key), with THAW_URL,
// THAW_NPM_UI_DIR (where tests/ui/install.sh put puppeteer-core), SCREENSHOT_DIR and, per
// scenario, ADMIN_KEY / TENANT_KEY, TENANT and the function names (ECHO_FN, STREAM_FN,
// TENANT_FN, OTHER_FN). Every request the page makes must go to THAW_URL: any other is aborted and fails
// the run, and chromium resolves no host name but the server's address. Prints one line per
// step; exits non-zero on the first failure.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(`${process.env.THAW_NPM_UI_DIR}/`);
const puppeteer = require('puppeteer-core');

const scenario = process.argv[2];
const base = process.env.THAW_URL;
const origin = new URL(base).origin;
const shots = process.env.SCREENSHOT_DIR;
const WAIT = { timeout: 60000 };
fs.mkdirSync(shots, { recursive: true });

const step = (s) => console.log(`step: ${s}`);
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'thaw-ui-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: profile,
  protocolTimeout: 120000,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
         '--disable-background-networking', '--disable-component-update',
         // No network but the thaw server: every other host name fails to resolve.
         `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${new URL(base).hostname}`],
});
const outside = [];
const problems = [];
let failed = false;
try {
  const page = await browser.newPage();
  // SHOT_SCALE < 1 and a low SHOT_HEIGHT make smaller screenshots (the README's: docs/*.png).
  await page.setViewport({ width: 1280, height: Number(process.env.SHOT_HEIGHT || 900),
                           deviceScaleFactor: Number(process.env.SHOT_SCALE || 1) });
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    const u = req.url();
    if (u.startsWith('data:') || u.startsWith('blob:') || new URL(u).origin === origin) {
      req.continue();
    } else {
      outside.push(u);
      req.abort();
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) {
      problems.push(m.text());
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const text = (sel) => page.$eval(sel, (el) => el.textContent);
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

  step('open /ui/');
  const res = await page.goto(`${base}/ui/`, { waitUntil: 'load' });
  check(res.status() === 200, `GET /ui/ answered ${res.status()}`);
  check((res.headers()['content-security-policy'] || '').includes("script-src 'self'"),
        'the page has a strict Content-Security-Policy');
  await page.waitForSelector('#api-key', { visible: true, ...WAIT });
  const paint = await page.evaluate(() =>
    performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
  console.log(`paint: ${JSON.stringify(paint)}`);

  async function signIn(key) {
    await page.$eval('#api-key', (el) => { el.value = ''; });
    // Enter in the field submits the form (implicit submission): unlike a click at the
    // button's coordinates, it cannot land elsewhere while the page's layout still moves.
    await page.type('#api-key', key);
    await page.keyboard.press('Enter');
  }

  if (scenario === 'wrong-key') {
    await shot('signin');
    step('sign in with a wrong key');
    await signIn('AKTHNOTAKEY-0000000000000000000000000000');
    await page.waitForFunction(() => document.querySelector('#signin-error').textContent.length > 0, WAIT);
    const msg = await text('#signin-error');
    console.log(`message: ${msg}`);
    check(/not accepted/.test(msg) && /401/.test(msg), `a clear message for a wrong key (got "${msg}")`);
    check(await page.$eval('#top', (el) => el.hidden), 'the app stays hidden');
    check(await page.evaluate(() => sessionStorage.getItem('thaw.key')) === null,
          'a refused key is not kept');
    await shot('wrong-key');
  } else if (scenario === 'tenant') {
    step('sign in as a tenant');
    await signIn(process.env.TENANT_KEY);
    await page.waitForSelector(`tr[data-function="${process.env.TENANT_FN}"]`, WAIT);
    const names = await page.$$eval('tr[data-function]', (rows) => rows.map((r) => r.dataset.function));
    console.log(`functions: ${names.join(',')}`);
    check(!names.includes(process.env.OTHER_FN) && names.every((n) => !n.includes('.')),
          "a tenant sees none of another tenant's functions");
    check(await page.$eval('#nav-admin', (el) => el.hidden), 'no admin page for a tenant');
    check((await text('#who')).includes('tenant'), 'the header names the role');
    await shot('tenant-functions');
    step("another tenant's function page is not found");
    await page.goto(`${base}/ui/#/fn/${process.env.OTHER_FN}`);
    await page.waitForFunction(() => !document.querySelector('#flash').hidden, WAIT);
    const flash = await text('#flash');
    check(/404/.test(flash), `another tenant's function is 404 (got "${flash}")`);
  } else if (scenario === 'admin') {
    const echo = process.env.ECHO_FN, stream = process.env.STREAM_FN;
    const tenantFn = `${process.env.TENANT}.${process.env.TENANT_FN}`;  // as the admin sees it
    step('sign in as admin');
    await signIn(process.env.ADMIN_KEY);
    for (const n of [echo, stream, tenantFn]) await page.waitForSelector(`tr[data-function="${n}"]`, WAIT);
    check(await page.evaluate(() => sessionStorage.getItem('thaw.key')) === process.env.ADMIN_KEY,
          'the key is in sessionStorage');
    check(await page.evaluate(() => document.cookie) === '', 'no cookie');
    check(!page.url().includes(process.env.ADMIN_KEY), 'the key is not in the URL');

    step('filter and sort the functions');
    await page.type('#filter', 'stream');
    await page.waitForFunction((n) => {
      const rows = [...document.querySelectorAll('tr[data-function]')];
      return rows.length === 1 && rows[0].dataset.function === n;
    }, WAIT, stream);
    await page.$eval('#filter', (el) => { el.value = ''; el.dispatchEvent(new Event('input')); });
    await page.click('th[data-key="name"]');  // name was ascending: now descending
    const order = await page.$$eval('tr[data-function]', (rows) => rows.map((r) => r.dataset.function));
    check(order.join() === [...order].sort().reverse().join(), `sorted by name, descending: ${order}`);
    await page.click('th[data-key="name"]');
    await shot('functions');

    step('open a function');
    await page.click(`tr[data-function="${echo}"] a`);
    await page.waitForSelector('#config dt', WAIT);
    check((await text('#view h1')).startsWith(echo), 'the function page is titled with its name');

    step('invoke it from the form');
    await page.$eval('#payload', (el) => { el.value = '{"name": "from-the-console"}'; });
    await page.click('#invoke');
    await page.waitForFunction(() => document.querySelector('#invoke-status').textContent.startsWith('200') &&
        document.querySelector('#invoke-billed').textContent.endsWith(' ms'), WAIT);
    const result = await text('#invoke-result');
    check(result.includes('from-the-console'), `the result shows the answer (got "${result}")`);
    const start = await text('#invoke-start');
    check(/^(cold|warm)/.test(start), `the start kind shows (got "${start}")`);
    console.log(`invoke: ${await text('#invoke-figures')}`);

    step('its log line arrives in the tail');
    await page.waitForFunction(() => document.querySelector('#log-tail').textContent.includes('ui-marker from-the-console'), WAIT);

    step('a chart with data points');
    await page.waitForFunction(() => Number(document.querySelector('#chart-calls').dataset.nonzero) >= 1 &&
        Number(document.querySelector('#chart-duration').dataset.points) >= 1 &&
        Number(document.querySelector('#chart-instances').dataset.nonzero) >= 1, WAIT);

    step('cold starts split by kind, in the chart and the table');
    await page.waitForFunction(() => Number(document.querySelector('#chart-cold').dataset.nonzero) >= 1 &&
        document.querySelectorAll('#start-kinds tr[data-kind]').length >= 3, WAIT);
    const kinds = await page.$$eval('#start-kinds tr[data-kind]', (rows) =>
      Object.fromEntries(rows.map((r) => [r.dataset.kind, Number(r.children[1].textContent)])));
    check(['warm', 'fork', 'full'].every((k) => k in kinds), `warm, fork and full rows (got ${JSON.stringify(kinds)})`);
    check(kinds.fork + kinds.full >= 1, `the console's first call was a cold start (got ${JSON.stringify(kinds)})`);
    const legend = await text('#chart-cold + .legend');
    check(legend.includes('fork') && legend.includes('full') && !legend.includes('warm'),
      `the cold-start chart has a series per cold kind (legend "${legend}")`);
    await shot('function');

    step('a streamed result appears as it streams');
    await page.goto(`${base}/ui/#/fn/${stream}`);
    await page.waitForSelector('#config dt', WAIT);
    await page.click('#invoke');
    // The function yields its first chunk, then sleeps before the second: the page must show the
    // first alone.
    await page.waitForFunction(() => {
      const t = document.querySelector('#invoke-result').textContent;
      return t.includes('first chunk') && !t.includes('second chunk');
    }, { ...WAIT, polling: 'mutation' });
    await page.waitForFunction(() => document.querySelector('#invoke-result').textContent.includes('second chunk'), WAIT);

    step('usage and costs, with the advisor and a CSV');
    await page.goto(`${base}/ui/#/usage`);
    await page.waitForSelector(`#usage tr[data-row="${echo}"]`, WAIT);
    await page.waitForSelector(`#advice tr[data-advice="${echo}"] td.why`, WAIT);
    const downloads = fs.mkdtempSync(path.join(os.tmpdir(), 'thaw-ui-dl-'));
    const cdp = await page.createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
    await page.click('#usage-csv');
    let csv = null;
    for (let i = 0; i < 600 && csv === null; i++) {
      const f = fs.readdirSync(downloads).find((n) => n.endsWith('.csv'));
      if (f) csv = fs.readFileSync(path.join(downloads, f), 'utf8');
      else await new Promise((r) => setTimeout(r, 100));
    }
    check(csv !== null, 'the CSV downloaded');
    check(csv.startsWith('function,invocations,') && csv.includes(`\n${echo},`), `the CSV has the rows: ${csv}`);
    await shot('usage');

    step('admin: tenants, limits, keys, node');
    await page.goto(`${base}/ui/#/admin`);
    await page.waitForSelector('#tenants tr[data-tenant="acme"]', WAIT);
    await page.waitForSelector('#node dt', WAIT);
    check((await text('#node')).includes('isolation'), 'the node shows its isolation');
    await page.click('#tenants tr[data-tenant="acme"] button');
    await page.waitForSelector('#tenants tr.edit input', WAIT);
    await page.$eval('#tenants tr.edit input', (el) => { el.value = '7'; });
    await page.click('#tenants tr.edit button');
    await page.waitForFunction(() => {
      const r = document.querySelector('#tenants tr[data-tenant="acme"]');
      return r && r.children[1].textContent === '7';
    }, WAIT);
    await page.select('#key-tenant', 'acme');
    await page.type('#key-description', 'made in the console');
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#new-secret .secret', WAIT);
    const secret = await text('#new-secret .secret');
    check(/^\S{40}$/.test(secret), `the new key's secret is shown (got "${secret}")`);
    const keyId = (await text('#new-secret p')).split(' ')[1];
    await page.waitForSelector(`#keys tr[data-key="${keyId}"]`, WAIT);
    await shot('admin');
    await page.click(`#keys tr[data-key="${keyId}"] button`);
    await page.click(`#keys tr[data-key="${keyId}"] button`);
    await page.waitForFunction((id) => !document.querySelector(`#keys tr[data-key="${id}"]`), WAIT, keyId);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  check(outside.length === 0, `every request went to the thaw server (others: ${outside.join(', ')})`);
  check(problems.length === 0, `no CSP violation or script error: ${problems.join(' | ')}`);
  console.log(`ok: ${scenario}`);
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.message}`);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
