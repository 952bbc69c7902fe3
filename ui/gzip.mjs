// After `vite build`: a .gz twin of every text asset, which the binary sends to clients that accept
// gzip (crates/http/src/dashboard.rs). zlib's gzip header has no timestamp here, so the output is
// the same on every build and the committed dist/ can be checked against a rebuild.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

let raw = 0, packed = 0;
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) { walk(p); continue; }
    if (!/\.(js|css|html|svg|json)$/.test(name)) continue;
    const bytes = readFileSync(p);
    const gz = gzipSync(bytes, { level: 9 });
    writeFileSync(p + '.gz', gz);
    raw += bytes.length; packed += gz.length;
  }
}
walk('dist');
console.log(`dashboard: ${(raw / 1024).toFixed(1)} kB, ${(packed / 1024).toFixed(1)} kB gzipped`);
