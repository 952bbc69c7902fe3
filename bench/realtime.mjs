#!/usr/bin/env node
// Realtime fan-out benchmark for a running PocketBase-protocol server (Basalt or PocketBase).
//
// What it measures
//   SUBSCRIBERS guest SSE streams (GET /api/realtime), each subscribed to `bench/*`, all in this
//   one Node process, then two phases of record creates on the public collection `bench`:
//
//   latency     one writer creates RATE records/s for SECONDS. Each record carries its send time
//               in field `t` (performance.timeOrigin + performance.now(), the same clock the
//               receiver uses), so every (event, subscriber) delivery gives
//               latency = receive time - send time, which covers the create request, the commit
//               and the fan-out. Reported: p50/p99/max over all deliveries, and p50/p99 of the
//               time until the LAST subscriber had each event.
//   throughput  WRITERS concurrent writers create as fast as they can for SECONDS. Reported:
//               writes/s, and deliveries/s = deliveries received / (last delivery - phase start),
//               i.e. the fan-out rate actually achieved, plus the same latency columns (these are
//               latencies under saturation, so mostly queueing).
//
//   After each phase it waits up to DRAIN seconds for stragglers, then counts missing deliveries
//   (events written x subscribers - deliveries received); it should be 0. A stream the server
//   closes (e.g. a subscriber judged too slow) is not reopened: its losses show up as missing.
//
//   The client's own CPU use is printed: when it is near 100% of a core, Node (parsing ~all
//   deliveries on one thread) was the bottleneck, not the server.
//
// How to run
//   Normally through bench/realtime.sh, which starts the server pinned to one core and this script
//   pinned to the other. Directly, against a server that is already running:
//
//     BASE_URL=http://127.0.0.1:8090 SU_EMAIL=admin@example.com SU_PASSWORD=adminpass123 \
//       node bench/realtime.mjs [--subscribers=1000] [--rate=50] [--seconds=10] [--writers=8]
//
//   Settings come from the environment or from --name=value arguments (arguments win):
//     BASE_URL      server URL                                     (default http://127.0.0.1:8090)
//     SU_EMAIL / SU_PASSWORD   superuser, used to (re)create the `bench` collection
//     SUBSCRIBERS   SSE streams                                    (default 1000)
//     RATE          writes/s in the latency phase                  (default 50)
//     SECONDS       length of each phase                           (default 10)
//     WRITERS       concurrent writers in the throughput phase     (default 8)
//     DRAIN         seconds to wait for stragglers after a phase   (default 3)
//     PHASES        comma list of latency,throughput               (default both)
//     LABEL         server description for the report heading      (default: BASE_URL)
//     SERVER_PID    if set, the server's CPU use and RSS are read from /proc and reported
//     CLK_TCK       clock ticks per second for /proc (default 100; the wrapper passes getconf's)
//
//   It DROPS AND RECREATES the collection `bench` on the target server.
//   Output: the Markdown report on stdout, progress on stderr. Exit status 1 on setup failure.
//   Needs the open-file limit above SUBSCRIBERS (the wrapper raises `ulimit -n`).

import http from 'node:http';
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

// ------------------------------------------------------------------ settings

function setting(name, def) {
  const flag = `--${name.toLowerCase().replace(/_/g, '-')}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(flag));
  if (arg) return arg.slice(flag.length);
  return process.env[name] ?? def;
}
function intSetting(name, def) {
  const v = Number(setting(name, String(def)));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${v}`);
  return v;
}

const BASE_URL = new URL(setting('BASE_URL', 'http://127.0.0.1:8090'));
const SU_EMAIL = setting('SU_EMAIL', 'admin@example.com');
const SU_PASSWORD = setting('SU_PASSWORD', 'adminpass123');
const SUBSCRIBERS = Math.round(intSetting('SUBSCRIBERS', 1000));
const RATE = intSetting('RATE', 50);
const SECONDS = intSetting('SECONDS', 10);
const WRITERS = Math.round(intSetting('WRITERS', 8));
const DRAIN = intSetting('DRAIN', 3);
const PHASES = setting('PHASES', 'latency,throughput').split(',').filter(Boolean);
const LABEL = setting('LABEL', BASE_URL.origin);
const SERVER_PID = setting('SERVER_PID', '');
const CLK_TCK = intSetting('CLK_TCK', 100);
for (const p of PHASES) {
  if (p !== 'latency' && p !== 'throughput') throw new Error(`unknown phase in PHASES: ${p}`);
}

const TOPIC = 'bench/*';
const COLLECTION = 'bench';
const CONNECT_PARALLEL = 100; // streams opened / subscribed at a time during setup

const say = (msg) => process.stderr.write(`>> ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms precision

// ------------------------------------------------------------------ plain HTTP requests

// Keep-alive pool for setup calls and writers (the SSE streams each get their own socket).
const pool = new http.Agent({ keepAlive: true, maxSockets: Math.max(64, WRITERS * 2) });

/** One JSON request; resolves to {status, body} (body as a string), rejects on network errors. */
function call(method, path, body, token) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = {};
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    if (token) headers.authorization = token;
    const req = http.request(
      { host: BASE_URL.hostname, port: BASE_URL.port, method, path, headers, agent: pool },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function expect(status, method, path, body, token) {
  const res = await call(method, path, body, token);
  if (res.status !== status) {
    throw new Error(`${method} ${path} -> HTTP ${res.status} (wanted ${status}): ${res.body.slice(0, 300)}`);
  }
  return res.body ? JSON.parse(res.body) : null;
}

/** Runs fn(i) for i in [0, n) with at most `parallel` in flight. */
async function forEachLimited(n, parallel, fn) {
  let next = 0;
  const lane = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, lane));
}

// ------------------------------------------------------------------ latency histogram

/**
 * Fixed-memory latency histogram: 10 µs buckets up to 1 s, then 1 ms buckets up to 120 s
 * (later values land in the last bucket). Quantiles are exact to the bucket width; max is exact.
 */
class Hist {
  static FINE = 100_000; // 10 µs * 100k = 1 s
  static COARSE = 119_000; // 1 ms * 119k = 119 s more
  constructor() {
    this.bins = new Uint32Array(Hist.FINE + Hist.COARSE);
    this.count = 0;
    this.max = 0;
  }
  add(ms) {
    if (ms < 0) ms = 0; // cannot happen with one clock; guard anyway
    const b = ms < 1000 ? Math.floor(ms * 100) : Math.min(Hist.FINE + Math.floor(ms - 1000), this.bins.length - 1);
    this.bins[b]++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }
  /** Upper edge of the bucket holding the q-quantile, capped at max. */
  quantile(q) {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let b = 0; b < this.bins.length; b++) {
      seen += this.bins[b];
      if (seen >= rank) {
        const edge = b < Hist.FINE ? (b + 1) / 100 : 1000 + (b - Hist.FINE + 1);
        return Math.min(edge, this.max);
      }
    }
    return this.max;
  }
}

// ------------------------------------------------------------------ events and phases

/**
 * Per written record (keyed by record id; created by whichever comes first, the create response
 * or the first delivery): send time, phase, how many subscribers got it, and when the last did.
 */
const events = new Map();

/** A phase's counters. `ids` holds the records the server acknowledged (HTTP 200). */
function newPhase(name) {
  return {
    name,
    ids: [],
    writeErrors: 0,
    firstError: '',
    deliveries: 0, // deliveries of this phase's events, duplicates excluded
    lastDelivery: 0, // epoch ms
    hist: new Hist(), // per (event, subscriber) latency
    writeHist: new Hist(), // create request round trip
    start: 0,
    writeEnd: 0,
    cpu: null, // client CPU, in cores
    serverCpu: null, // server CPU, in cores (with SERVER_PID)
    othersCpu: null, // everything else, as a share of the whole machine
  };
}
const phases = { probe: newPhase('probe'), latency: newPhase('latency'), throughput: newPhase('throughput') };
let duplicates = 0;

function eventFor(id) {
  let ev = events.get(id);
  if (!ev) {
    ev = { t: NaN, phase: null, n: 0, last: 0 };
    events.set(id, ev);
  }
  return ev;
}

/** Creates one record stamped with its send time; resolves once the server answered. */
async function createRecord(phase) {
  const t = nowMs();
  let res;
  try {
    res = await call('POST', `/api/collections/${COLLECTION}/records`, { t, title: phase.name });
  } catch (e) {
    res = { status: 0, body: String(e) };
  }
  phase.writeHist.add(nowMs() - t);
  if (res.status !== 200) {
    phase.writeErrors++;
    phase.firstError ||= `HTTP ${res.status}: ${res.body.slice(0, 200)}`;
    return;
  }
  phase.ids.push(JSON.parse(res.body).id);
}

// ------------------------------------------------------------------ SSE subscribers

const subscribers = [];
let streamsClosed = 0; // streams that ended after they were subscribed

/**
 * Opens one SSE stream; resolves with the subscriber once PB_CONNECT arrived. Frames are parsed
 * incrementally: the text is kept as latin1 (1 byte = 1 char, so a chunk boundary never splits a
 * character; everything we look for is ASCII) and split on "\n\n".
 */
function openStream(index) {
  return new Promise((resolve, reject) => {
    const sub = { index, clientId: null, rest: '', subscribed: false, req: null, closed: false };
    const req = http.request({
      host: BASE_URL.hostname,
      port: BASE_URL.port,
      path: '/api/realtime',
      headers: { accept: 'text/event-stream' },
      agent: false, // one socket per stream, outside any pool limit
    });
    sub.req = req;
    const timer = setTimeout(() => reject(new Error(`stream ${index}: no PB_CONNECT after 30 s`)), 30_000);
    req.on('error', (e) => {
      clearTimeout(timer);
      if (!sub.clientId) reject(new Error(`stream ${index}: ${e.message}`));
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        reject(new Error(`stream ${index}: GET /api/realtime -> HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      res.on('data', (chunk) => {
        const at = nowMs(); // one receive time for every frame in the chunk
        const s = sub.rest ? sub.rest + chunk.toString('latin1') : chunk.toString('latin1');
        let pos = 0;
        let end;
        while ((end = s.indexOf('\n\n', pos)) !== -1) {
          onFrame(sub, s, pos, end, at);
          pos = end + 2;
        }
        sub.rest = pos < s.length ? s.slice(pos) : '';
        if (sub.clientId && !sub.connected) {
          sub.connected = true;
          clearTimeout(timer);
          resolve(sub);
        }
      });
      res.on('error', () => {}); // an aborted stream also emits 'close', handled below
      res.on('close', () => {
        sub.closed = true;
        if (sub.subscribed && !shuttingDown) streamsClosed++;
      });
    });
    req.end();
  });
}

/** Handles one frame s[pos, end): PB_CONNECT before the client id is known, then record events. */
function onFrame(sub, s, pos, end, at) {
  const d = s.indexOf('data:', pos);
  if (d === -1 || d > end) return; // e.g. a keep-alive comment
  if (!sub.clientId) {
    if (s.lastIndexOf('event:PB_CONNECT', d) >= pos) {
      sub.clientId = JSON.parse(s.slice(d + 5, end)).clientId;
    }
    return;
  }
  // Fast path: the record id keys the event, so the JSON is parsed once per event, not per delivery.
  const i = s.indexOf('"id":"', d);
  if (i === -1 || i > end) return;
  const id = s.slice(i + 6, s.indexOf('"', i + 6));
  const ev = eventFor(id);
  if (ev.phase === null) {
    const rec = JSON.parse(s.slice(d + 5, end)).record;
    ev.t = rec.t;
    ev.phase = phases[rec.title] ?? null;
    if (!ev.phase) return;
  }
  if (++ev.n > SUBSCRIBERS) {
    duplicates++;
    return;
  }
  if (at > ev.last) ev.last = at;
  const ph = ev.phase;
  ph.deliveries++;
  if (at > ph.lastDelivery) ph.lastDelivery = at;
  ph.hist.add(at - ev.t);
}
let shuttingDown = false;

async function subscribe(sub) {
  await expect(204, 'POST', '/api/realtime', { clientId: sub.clientId, subscriptions: [TOPIC] });
  sub.subscribed = true;
}

/** Resolves when every acknowledged event of the phase reached every subscriber, or after ms. */
async function waitDelivered(phase, ms) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (missing(phase) === 0) return true;
    await sleep(20);
  }
  return missing(phase) === 0;
}

function missing(phase) {
  let got = 0;
  for (const id of phase.ids) got += Math.min(events.get(id)?.n ?? 0, SUBSCRIBERS);
  return phase.ids.length * SUBSCRIBERS - got;
}

// ------------------------------------------------------------------ CPU and memory accounting

function serverTicks() {
  if (!SERVER_PID) return 0;
  try {
    const stat = readFileSync(`/proc/${SERVER_PID}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 on
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return 0;
  }
}
function serverRssMb() {
  if (!SERVER_PID) return null;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${SERVER_PID}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Busy clock ticks of the whole machine (steal included), as bench/run.sh counts them. */
function machineTicks() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
    return [1, 2, 3, 6, 7, 8].reduce((sum, i) => sum + Number(f[i]), 0);
  } catch {
    return NaN;
  }
}

/**
 * Runs fn, recording the phase's wall time, this process's CPU use, the server's, and what
 * everything else on the machine used (a build running alongside makes the numbers noisy).
 */
async function measured(phase, fn) {
  const cpu0 = process.cpuUsage();
  const srv0 = serverTicks();
  const all0 = machineTicks();
  phase.start = nowMs();
  await fn();
  phase.writeEnd = nowMs();
  const wall = (phase.writeEnd - phase.start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const srv = serverTicks() - srv0;
  phase.cpu = (cpu.user + cpu.system) / 1e6 / wall; // cores
  phase.serverCpu = SERVER_PID ? srv / CLK_TCK / wall : null;
  const others = ((machineTicks() - all0 - srv) / CLK_TCK - phase.cpu * wall) / wall; // cores
  phase.othersCpu = Number.isFinite(others) ? Math.max(0, others) / os.cpus().length : null; // of the machine
}

// ------------------------------------------------------------------ the run

async function setup() {
  say(`${LABEL}: superuser auth, (re)creating collection ${COLLECTION}`);
  const { token } = await expect(200, 'POST', '/api/collections/_superusers/auth-with-password', {
    identity: SU_EMAIL,
    password: SU_PASSWORD,
  });
  const del = await call('DELETE', `/api/collections/${COLLECTION}`, undefined, token);
  if (del.status !== 204 && del.status !== 404) {
    throw new Error(`DELETE /api/collections/${COLLECTION} -> HTTP ${del.status}: ${del.body.slice(0, 300)}`);
  }
  await expect(
    200,
    'POST',
    '/api/collections',
    {
      name: COLLECTION,
      type: 'base',
      listRule: '',
      viewRule: '',
      createRule: '',
      fields: [
        { name: 't', type: 'number' },
        { name: 'title', type: 'text' },
      ],
    },
    token,
  );

  let t0 = performance.now();
  await forEachLimited(SUBSCRIBERS, CONNECT_PARALLEL, async (i) => {
    subscribers[i] = await openStream(i);
  });
  say(`${SUBSCRIBERS} streams connected in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  t0 = performance.now();
  await forEachLimited(SUBSCRIBERS, CONNECT_PARALLEL, (i) => subscribe(subscribers[i]));
  say(`${SUBSCRIBERS} streams subscribed to ${TOPIC} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // One unmeasured write that must reach everyone: proves the subscriptions are live.
  await createRecord(phases.probe);
  if (phases.probe.writeErrors) throw new Error(`probe create failed: ${phases.probe.firstError}`);
  if (!(await waitDelivered(phases.probe, 15_000))) {
    throw new Error(`probe event reached ${SUBSCRIBERS - missing(phases.probe)} of ${SUBSCRIBERS} subscribers in 15 s`);
  }
  say(`probe event reached all ${SUBSCRIBERS} subscribers in ${phases.probe.hist.max.toFixed(1)} ms`);
}

/** Latency phase: one writer at a fixed RATE; a late tick fires at once (the schedule catches up). */
async function latencyPhase() {
  const ph = phases.latency;
  const n = Math.round(RATE * SECONDS);
  say(`latency phase: ${n} creates at ${RATE}/s`);
  await measured(ph, async () => {
    const start = performance.now();
    const inflight = [];
    for (let i = 0; i < n; i++) {
      const wait = start + (i * 1000) / RATE - performance.now();
      if (wait > 0) await sleep(wait);
      inflight.push(createRecord(ph));
    }
    await Promise.all(inflight);
  });
  await waitDelivered(ph, DRAIN * 1000);
}

/** Throughput phase: WRITERS loops, each creating back to back until SECONDS are up. */
async function throughputPhase() {
  const ph = phases.throughput;
  say(`throughput phase: ${WRITERS} writers for ${SECONDS} s`);
  await measured(ph, async () => {
    const stop = performance.now() + SECONDS * 1000;
    const writer = async () => {
      while (performance.now() < stop) await createRecord(ph);
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
  });
  await waitDelivered(ph, DRAIN * 1000);
}

// ------------------------------------------------------------------ report

const f2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : '-');
const f0 = (v) => (Number.isFinite(v) ? Math.round(v).toString() : '-');
const pct = (cores) => (cores === null || cores === undefined ? '?' : `${Math.round(cores * 100)}%`);

function row(ph, title) {
  const writeSecs = (ph.writeEnd - ph.start) / 1000;
  const fanSecs = ph.deliveries ? (ph.lastDelivery - ph.start) / 1000 : NaN;
  // time until the last subscriber had the event, over the events everyone got
  const last = new Hist();
  for (const id of ph.ids) {
    const ev = events.get(id);
    if (ev && ev.n >= SUBSCRIBERS) last.add(ev.last - ev.t);
  }
  return (
    `| ${SUBSCRIBERS} | ${title} | ${f0(ph.ids.length / writeSecs)} | ${f0(ph.deliveries / fanSecs)} | ` +
    `${f2(ph.hist.quantile(0.5))} | ${f2(ph.hist.quantile(0.99))} | ${f2(ph.hist.max)} | ` +
    `${f2(last.quantile(0.5))} / ${f2(last.quantile(0.99))} | ${missing(ph)} |`
  );
}

function report(rssSubscribed) {
  const out = [];
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  out.push(`## Realtime fan-out: ${LABEL}`, '');
  out.push(`- date: ${new Date().toISOString().replace('T', ' ').slice(0, 19)} UTC`);
  out.push(`- machine: ${os.cpus().length} cores, ${cpuModel}, Node ${process.version} client`);
  out.push(
    `- ${SUBSCRIBERS} guest SSE subscribers to \`${TOPIC}\` in one Node process; phases of ${SECONDS} s; ` +
      `latency phase offering ${RATE} creates/s, throughput phase with ${WRITERS} writers; ${DRAIN} s drain`,
  );
  out.push('');
  out.push('| subscribers | phase | writes/s | deliveries/s | p50 ms | p99 ms | max ms | last-subscriber p50/p99 ms | missing |');
  out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  if (PHASES.includes('latency')) out.push(row(phases.latency, `latency (${RATE}/s)`));
  if (PHASES.includes('throughput')) out.push(row(phases.throughput, `throughput (${WRITERS} writers)`));
  out.push('');
  out.push(
    '- latency = delivery time - the writer\'s send time (create request + commit + fan-out + client read); ' +
      'writes/s = acknowledged creates / (time until the last create was answered), so below RATE when the ' +
      'server cannot keep up; deliveries/s = deliveries / (last delivery - phase start)',
  );
  for (const name of PHASES) {
    const ph = phases[name];
    const busy = ph.cpu >= 0.9 ? ' (≥90%: the client was probably the bottleneck)' : '';
    const noisy = ph.othersCpu > 0.1 ? ' (>10%: noisy, rerun on an idle machine)' : '';
    out.push(
      `- ${name}: client (Node) CPU ${pct(ph.cpu)} of a core${busy}; server CPU ${pct(ph.serverCpu)} of a core; ` +
        `other processes ${pct(ph.othersCpu)} of the machine${noisy}; ` +
        `create round trip p50 ${f2(ph.writeHist.quantile(0.5))} ms, p99 ${f2(ph.writeHist.quantile(0.99))} ms; ` +
        `${ph.ids.length} creates acknowledged, ${ph.writeErrors} failed` +
        (ph.firstError ? ` (first: ${ph.firstError})` : ''),
    );
  }
  const rssEnd = serverRssMb();
  if (rssEnd !== null) {
    out.push(`- server RSS: ${f2(rssSubscribed)} MB with all streams subscribed, ${f2(rssEnd)} MB at the end`);
  }
  if (streamsClosed) out.push(`- WARNING: the server closed ${streamsClosed} of ${SUBSCRIBERS} streams during the run`);
  if (duplicates) out.push(`- WARNING: ${duplicates} duplicate deliveries`);
  return out.join('\n');
}

async function main() {
  await setup();
  const rssSubscribed = serverRssMb();
  if (PHASES.includes('latency')) await latencyPhase();
  if (PHASES.includes('throughput')) await throughputPhase();
  shuttingDown = true;
  process.stdout.write(report(rssSubscribed) + '\n');
  for (const s of subscribers) s?.req.destroy();
  pool.destroy();
}

main().then(
  () => process.exit(0),
  (e) => {
    say(`FAILED: ${e.message}`);
    process.exit(1);
  },
);
