// Shared pieces of the dashboard journeys: Debian's Chromium driven by playwright-core, a signed-in
// page, the errors a page must not show, screenshots under test-artifacts/ui/<backend>/.
//
// Env: BASALT_URL, SU_EMAIL, SU_PASSWORD (as sdk-tests), BASALT_BACKEND (sqlite|postgres),
// CHROMIUM (default /usr/bin/chromium).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import PocketBase from 'pocketbase';
import { chromium } from 'playwright-core';

export const BASE_URL = (process.env.BASALT_URL || 'http://127.0.0.1:8090').replace(/\/+$/, '');
export const SU_EMAIL = process.env.SU_EMAIL || 'admin@example.com';
export const SU_PASSWORD = process.env.SU_PASSWORD || 'adminpass123';
const backend = process.env.BASALT_BACKEND || 'sqlite';
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test-artifacts', 'ui', backend);
mkdirSync(ARTIFACTS, { recursive: true });

let browser;
export async function launch() {
  browser ??= await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  return browser;
}
export async function close() { await browser?.close(); browser = undefined; }

/** A new page at `viewport`; `problems` collects what a user must never meet: uncaught errors,
 * console errors other than the browser's note about a 4xx answer the page handled, and any 5xx. */
export async function open({ viewport = { width: 1280, height: 800 } } = {}) {
  const b = await launch();
  const context = await b.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    if (/Failed to load resource: the server responded with a status of 4\d\d/.test(t)) return;
    problems.push(`console error: ${t}`);
  });
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`); });
  page.setDefaultTimeout(10_000);
  return { page, context, problems };
}

/** Signs in through the form and waits for the collections page. */
export async function signIn(page, email = SU_EMAIL, password = SU_PASSWORD) {
  await page.goto(`${BASE_URL}/_/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Sections' }).waitFor();
  // The first collection opens (its records grid) before a journey goes elsewhere.
  await page.locator('main table').waitFor();
}

/** Runs `fn` on a fresh page, saves a screenshot (`<name>.png`, or `<name>-failed.png`), and fails
 * on any page error, unexpected console error or 5xx the browser met on the way. */
export async function journey(name, fn, opts) {
  const { page, context, problems } = await open(opts);
  try {
    await fn(page);
    await shot(page, name);
  } catch (e) {
    await shot(page, `${name}-failed`).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
  assert.deepEqual(problems, [], `${name}: the browser reported problems`);
}

/** Retries an assertion about the page until it holds or 5 s pass (a grid reloads after a click). */
export async function eventually(check) {
  const end = Date.now() + 5000;
  for (;;) {
    try { return await check(); } catch (e) { if (Date.now() > end) throw e; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

export function report(name, data) {
  writeFileSync(join(ARTIFACTS, `${name}.json`), JSON.stringify(data, null, 2));
}

/** A superuser SDK client, for setting up state and checking it afterwards. */
export async function api() {
  const pb = new PocketBase(BASE_URL);
  pb.autoCancellation(false);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  return pb;
}

let n = 0;
export const uniq = (p) => `${p}_${Date.now().toString(36)}${++n}`;

/** A valid PNG: a `w`×`h` square of one colour. */
export function png(w = 8, h = 8, rgb = [200, 40, 40]) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: w }, () => rgb).flat())]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
