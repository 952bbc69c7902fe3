// First load of an admin dashboard in headless Chromium, cold cache (a new browser context each
// time): navigation timing and first contentful paint from the browser's performance API, and the
// bytes transferred. Usage: node bench/dashboard.mjs NAME URL [RUNS]  → one JSON line.
import { createRequire } from 'node:module';
const require = createRequire(new URL('../ui/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [name, url, runs = '20'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const load = [], fcp = [], dcl = [];
let bytes = 0, requests = 0;
for (let i = 0; i < Number(runs); i++) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: 'load' });
  // The sign-in form is the first screen of both dashboards.
  await page.locator('input[type=email], input[name=email], input[type=text]').first().waitFor();
  const t = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const p = performance.getEntriesByName('first-contentful-paint')[0];
    const res = performance.getEntriesByType('resource');
    return { load: n.loadEventEnd, dcl: n.domContentLoadedEventEnd, fcp: p ? p.startTime : null,
      bytes: res.reduce((s, r) => s + r.transferSize, n.transferSize), requests: res.length + 1 };
  });
  load.push(t.load); dcl.push(t.dcl); if (t.fcp != null) fcp.push(t.fcp);
  bytes = t.bytes; requests = t.requests;
  await ctx.close();
}
await browser.close();
const q = (a, p) => { const s = [...a].sort((x, y) => x - y); return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]); };
console.log(JSON.stringify({ name, runs: Number(runs), load_p50: q(load, 0.5), load_p95: q(load, 0.95), dcl_p50: q(dcl, 0.5), fcp_p50: fcp.length ? q(fcp, 0.5) : null, bytes, requests }));
