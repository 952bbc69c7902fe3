// Realtime (SSE): record events through the SDK's subscribe/unsubscribe,
// per-subscriber API rules, subscription options (filter/expand/fields/headers),
// auth records and email visibility, and raw protocol checks on /api/realtime.
//
// How the tests wait:
// - After `subscribe()` resolves, the subscription is active on the server.
// - Events are awaited with a promise that fails after WAIT_MS (`Inbox.next()`).
// - Events of one SSE connection arrive in the order the writes happened.
//   So "X was not delivered" is proven without sleeping: after X, make a
//   write the same connection *must* see (a "barrier"), and check that the
//   barrier is the next event. Only the tests for a fully closed connection
//   use a short negative wait (NEGATIVE_WAIT_MS).
import { test, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { superuser, guest, uniq, uniqEmail, raw, signUpAndLogin, BASE_URL } from './helpers.mjs';

// The SDK calls `new EventSource(url)`; Node 20 has no global EventSource.
globalThis.EventSource = EventSource;

const WAIT_MS = 5000;
const NEGATIVE_WAIT_MS = 500;
const USERS_ID = '_pb_users_auth_';
const PASSWORD = 'Realtime-pass-1';

let su; // superuser client used for writes (never subscribes)
let u1; // { pb, email, password, record }
let u2;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// helpers

/** SDK clients and raw SSE connections opened by the current test; closed after it. */
const live = new Set();

afterEach(async () => {
  for (const c of live) {
    if (typeof c.close === 'function') c.close();
    else await c.realtime.unsubscribe();
  }
  live.clear();
});

/** Register an SDK client so that its realtime connection is closed after the test. */
function track(pb) {
  live.add(pb);
  return pb;
}

/**
 * Collects values in arrival order. `cb` is the callback to hand to
 * `subscribe()`. Several subscriptions may share one inbox: then it sees
 * the events of one connection in order.
 */
class Inbox {
  constructor(name = 'inbox') {
    this.name = name;
    this.items = [];
    this.pos = 0;
    this.waiters = new Set();
    this.cb = (e) => this.push(e);
  }

  push(e) {
    this.items.push(e);
    for (const w of [...this.waiters]) w();
  }

  /** The next value not taken yet; rejects after `ms`. */
  next(label = 'an event', ms = WAIT_MS) {
    if (this.pos < this.items.length) return Promise.resolve(this.items[this.pos++]);
    return new Promise((resolve, reject) => {
      const take = () => {
        if (this.pos >= this.items.length) return;
        clearTimeout(timer);
        this.waiters.delete(take);
        resolve(this.items[this.pos++]);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(take);
        reject(new Error(`${this.name}: no ${label} within ${ms} ms (received so far: ${JSON.stringify(this.items)})`));
      }, ms);
      this.waiters.add(take);
    });
  }

  /** Take the next event and check its action and record id. */
  async expect(action, id, label = `${action} of ${id}`) {
    const e = await this.next(label);
    assert.equal(e.action, action, `${this.name}: expected ${label}, got ${JSON.stringify(e)}`);
    assert.equal(e.record?.id, id, `${this.name}: expected ${label}, got ${JSON.stringify(e)}`);
    return e;
  }

  /** Values received but not taken yet. */
  pending() {
    return this.items.slice(this.pos);
  }

  /** Nothing received beyond what was taken. */
  assertEmpty() {
    assert.deepEqual(this.pending(), [], `${this.name}: unexpected extra events`);
  }
}

/** Parse one SSE frame ("field:value" lines, one optional space after the colon). */
function parseFrame(text) {
  const frame = { raw: text, id: undefined, event: undefined, data: undefined };
  for (const line of text.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`;
    else if (field === 'id' || field === 'event') frame[field] = value;
  }
  return frame;
}

/**
 * Open GET /api/realtime with plain fetch. Resolves once the first frame
 * (PB_CONNECT) has arrived. `frames` is an Inbox of parsed frames that
 * still holds the PB_CONNECT frame.
 */
async function openSSE() {
  const ctrl = new AbortController();
  const res = await fetch(`${BASE_URL}/api/realtime`, { signal: ctrl.signal });
  const frames = new Inbox('raw sse');
  const conn = { res, frames, clientId: undefined, close: () => ctrl.abort() };
  live.add(conn);
  (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          frames.push(parseFrame(buf.slice(0, i)));
          buf = buf.slice(i + 2);
        }
      }
    } catch { /* aborted */ }
  })();
  const first = await frames.next('PB_CONNECT frame');
  frames.pos = 0; // keep it for the caller
  conn.clientId = first.id;
  return conn;
}

/** POST /api/realtime (set subscriptions). `token` goes verbatim into Authorization. */
function setSubs(clientId, subscriptions, token) {
  return raw('/api/realtime', { method: 'POST', token, body: { clientId, subscriptions } });
}

/** A base collection with the given rules (defaults: public list/view) and fields. */
function mkCollection(prefix, fields, rules = {}) {
  return su.collections.create({ name: uniq(prefix), listRule: '', viewRule: '', fields, ...rules });
}

const TITLE_N = [
  { name: 'title', type: 'text' },
  { name: 'n', type: 'number' },
];

before(async () => {
  su = await superuser();
  u1 = await signUpAndLogin('users');
  u2 = await signUpAndLogin('users');
});

// ---------------------------------------------------------------------------
// 1. basics

test("subscribe('*'): create, update, delete arrive in order with {action, record}", async () => {
  // A user sees every change of a public collection, as it happens.
  const c = await mkCollection('rt_basic', TITLE_N);
  const pb = track(guest());
  const inbox = new Inbox('guest *');
  const unsub = await pb.collection(c.name).subscribe('*', inbox.cb);
  assert.equal(typeof unsub, 'function');
  assert.equal(pb.realtime.isConnected, true);
  assert.ok(pb.realtime.clientId, 'the SDK learned the client id from PB_CONNECT');

  const created = await su.collection(c.name).create({ title: 'first', n: 1 });
  const e1 = await inbox.expect('create', created.id);
  assert.deepEqual(Object.keys(e1).sort(), ['action', 'record']);
  assert.deepEqual(e1.record, {
    id: created.id, collectionId: c.id, collectionName: c.name, title: 'first', n: 1,
  });

  const updated = await su.collection(c.name).update(created.id, { title: 'second', n: 2 });
  const e2 = await inbox.expect('update', created.id);
  assert.deepEqual(e2.record, updated);
  assert.equal(e2.record.title, 'second');

  await su.collection(c.name).delete(created.id);
  const e3 = await inbox.expect('delete', created.id);
  assert.deepEqual(e3.record, updated, 'delete carries the record as it was before the delete');
  inbox.assertEmpty();

  // the returned function removes the subscription (and closes the connection: it was the last one)
  await unsub();
  assert.equal(pb.realtime.isConnected, false);
});

test('a collection can be subscribed by id as well as by name', async () => {
  // pb.collection(<collection id>).subscribe('*') gets the same events.
  const c = await mkCollection('rt_byid', TITLE_N);
  const pb = track(guest());
  const byId = new Inbox('by id');
  const byName = new Inbox('by name');
  await pb.collection(c.id).subscribe('*', byId.cb);
  await pb.collection(c.name).subscribe('*', byName.cb);
  const r = await su.collection(c.name).create({ title: 'x' });
  const a = await byId.expect('create', r.id);
  const b = await byName.expect('create', r.id);
  assert.deepEqual(a, b);
  assert.equal(a.record.collectionName, c.name);
});

// ---------------------------------------------------------------------------
// 2. single-record topic

test('subscribe(id) receives only that record\'s events', async () => {
  // Watching one record: changes to other records are not delivered.
  const c = await mkCollection('rt_one', TITLE_N);
  const watched = await su.collection(c.name).create({ title: 'watched' });
  const other = await su.collection(c.name).create({ title: 'other' });
  const pb = track(guest());
  const inbox = new Inbox('guest id');
  await pb.collection(c.name).subscribe(watched.id, inbox.cb);

  await su.collection(c.name).update(other.id, { title: 'other 2' });
  await su.collection(c.name).update(watched.id, { title: 'watched 2' });
  const e1 = await inbox.expect('update', watched.id, 'update of the watched record (and nothing before it)');
  assert.equal(e1.record.title, 'watched 2');

  await su.collection(c.name).create({ title: 'new one' });
  await su.collection(c.name).delete(other.id);
  await su.collection(c.name).delete(watched.id);
  const e2 = await inbox.expect('delete', watched.id);
  assert.equal(e2.record.title, 'watched 2');
  inbox.assertEmpty();
});

test("subscribe(id) also fires on create of that id; a client with '*' and id topics gets one event per topic", async () => {
  // A record created later with a client-chosen id is seen by its id-watcher.
  const c = await mkCollection('rt_one_create', TITLE_N);
  const id = ('rt' + Date.now().toString(36) + 'aaaaaaaaaaaaaaa').slice(0, 15);
  const pb = track(guest());
  const both = new Inbox('id + *');
  await pb.collection(c.name).subscribe(id, both.cb);
  await pb.collection(c.name).subscribe('*', both.cb);
  await su.collection(c.name).create({ id, title: 'pre-known id' });
  await both.expect('create', id, 'first copy of the create');
  await both.expect('create', id, 'second copy of the create');
});

test("'*' topics use listRule, record-id topics use viewRule", async () => {
  // listRule null + viewRule "": a guest watching '*' gets nothing, watching the id gets the event.
  const c = await mkCollection('rt_lv', TITLE_N, { listRule: null, viewRule: '' });
  const r = await su.collection(c.name).create({ title: 'x' });
  const pb = track(guest());
  const inbox = new Inbox('guest');
  await pb.collection(c.name).subscribe('*', inbox.cb); // must stay silent
  await pb.collection(c.name).subscribe(r.id, inbox.cb);
  await su.collection(c.name).update(r.id, { title: 'y' });
  const e = await inbox.expect('update', r.id);
  assert.equal(e.record.title, 'y');
  await su.collection(c.name).update(r.id, { title: 'z' });
  assert.equal((await inbox.next('second update')).record.title, 'z', 'the * topic never delivered a copy');
  inbox.assertEmpty();
});

// ---------------------------------------------------------------------------
// 3. rules per subscriber

test('owner rules: each user only gets events of own records, superuser gets all', async () => {
  // Two users watching the same collection each see only their own notes; an admin sees all.
  const c = await mkCollection('rt_owner', [
    { name: 'title', type: 'text' },
    { name: 'secret', type: 'text', hidden: true },
    { name: 'owner', type: 'relation', collectionId: USERS_ID, maxSelect: 1 },
  ], { listRule: 'owner = @request.auth.id', viewRule: 'owner = @request.auth.id' });
  const col = () => su.collection(c.name);

  const in1 = new Inbox('u1');
  const in2 = new Inbox('u2');
  const inSu = new Inbox('superuser');
  await track(u1.pb).collection(c.name).subscribe('*', in1.cb);
  await track(u2.pb).collection(c.name).subscribe('*', in2.cb);
  const suSub = track(await superuser());
  await suSub.collection(c.name).subscribe('*', inSu.cb);

  const r1 = await col().create({ title: 'of u1', secret: 's1', owner: u1.record.id });
  const r2 = await col().create({ title: 'of u2', secret: 's2', owner: u2.record.id });
  const e1 = await in1.expect('create', r1.id);
  assert.equal(e1.record.title, 'of u1');
  assert.equal('secret' in e1.record, false, 'hidden fields are not sent to users');
  await in2.expect('create', r2.id, 'u2 gets its own record first (not u1\'s)');

  await col().update(r1.id, { title: 'of u1, edited' });
  await col().delete(r1.id);
  assert.equal((await in1.expect('update', r1.id)).record.title, 'of u1, edited');
  await in1.expect('delete', r1.id);
  const r3 = await col().create({ title: 'barrier for u2', owner: u2.record.id });
  await in2.expect('create', r3.id, 'u2 saw no update/delete of u1\'s record');

  // the superuser receives everything, hidden fields included
  const s1 = await inSu.expect('create', r1.id);
  assert.equal(s1.record.secret, 's1', 'superusers get hidden fields');
  await inSu.expect('create', r2.id);
  await inSu.expect('update', r1.id);
  await inSu.expect('delete', r1.id);
  await inSu.expect('create', r3.id);
  for (const i of [in1, in2, inSu]) i.assertEmpty();
});

test('listRule null: guests and users subscribe fine (204) but never receive events', async () => {
  // A superuser-only collection: the subscribe call succeeds, yet non-superusers get nothing.
  const locked = await mkCollection('rt_locked', TITLE_N, { listRule: null, viewRule: null });
  const open = await mkCollection('rt_open', TITLE_N);
  const g = track(guest());
  const gInbox = new Inbox('guest');
  const uInbox = new Inbox('u1');
  await g.collection(locked.name).subscribe('*', gInbox.cb); // resolves: the POST was accepted
  await g.collection(open.name).subscribe('*', gInbox.cb); // barrier topic on the same connection
  await track(u1.pb).collection(locked.name).subscribe('*', uInbox.cb);
  await u1.pb.collection(open.name).subscribe('*', uInbox.cb);

  const hidden = await su.collection(locked.name).create({ title: 'locked' });
  // the same POST the SDK makes, checked raw: 204 and an empty body
  const res = await setSubs(g.realtime.clientId, [`${locked.name}/*`, `${open.name}/*`, `${locked.name}/${hidden.id}`]);
  assert.equal(res.status, 204);
  assert.equal(res.text, '');
  await su.collection(locked.name).update(hidden.id, { title: 'locked 2' });
  await su.collection(locked.name).delete(hidden.id);
  const barrier = await su.collection(open.name).create({ title: 'open' });
  await gInbox.expect('create', barrier.id, 'the barrier, with no locked event before it');
  await uInbox.expect('create', barrier.id, 'the barrier, with no locked event before it');
  gInbox.assertEmpty();
  uInbox.assertEmpty();
});

// ---------------------------------------------------------------------------
// 4. subscription options

test('subscribe options: filter, expand and fields shape the delivered events', async () => {
  // Options given to subscribe() apply to each event like they do to a list query.
  const authors = await mkCollection('rt_authors', [{ name: 'name', type: 'text' }]);
  const c = await mkCollection('rt_opts', [
    ...TITLE_N,
    { name: 'rel', type: 'relation', collectionId: authors.id, maxSelect: 1 },
  ]);
  const alice = await su.collection(authors.name).create({ name: 'Alice' });
  const pb = track(guest());
  const filtered = new Inbox('filter n > 5');
  const expanded = new Inbox('expand rel');
  const picked = new Inbox('fields id,title');
  const nested = new Inbox('fields id,expand.rel.name');
  const bad = new Inbox('invalid filter');
  await pb.collection(c.name).subscribe('*', filtered.cb, { filter: 'n > 5' });
  await pb.collection(c.name).subscribe('*', expanded.cb, { expand: 'rel' });
  await pb.collection(c.name).subscribe('*', picked.cb, { fields: 'id,title' });
  await pb.collection(c.name).subscribe('*', nested.cb, { expand: 'rel', fields: 'id,expand.rel.name' });
  await pb.collection(c.name).subscribe('*', bad.cb, { filter: 'nosuchfield > 1' }); // accepted, never fires

  const small = await su.collection(c.name).create({ title: 'small', n: 1, rel: alice.id });
  const big = await su.collection(c.name).create({ title: 'big', n: 10, rel: alice.id });

  // filter: the first matching event is the big one
  const f = await filtered.expect('create', big.id, 'create of the n=10 record (n=1 filtered out)');
  assert.equal(f.record.n, 10);

  // expand: the relation is expanded with the full related record
  const x1 = await expanded.expect('create', small.id);
  assert.equal(x1.record.rel, alice.id);
  assert.deepEqual(x1.record.expand, {
    rel: { id: alice.id, collectionId: authors.id, collectionName: authors.name, name: 'Alice' },
  });
  await expanded.expect('create', big.id);

  // fields: only the listed keys
  const p = await picked.expect('create', small.id);
  assert.deepEqual(p.record, { id: small.id, title: 'small' });
  const n = await nested.expect('create', small.id);
  assert.deepEqual(n.record, { id: small.id, expand: { rel: { name: 'Alice' } } });

  // wait until the last event of this batch reached every inbox, then check for extras
  await picked.expect('create', big.id);
  await nested.expect('create', big.id);
  for (const i of [filtered, expanded, picked, nested, bad]) i.assertEmpty();
});

test("subscribe options: headers reach @request.headers, and rules see @request.context = 'realtime'", async () => {
  // Custom headers passed to subscribe() are what the collection rules see.
  const c = await mkCollection('rt_hdr', TITLE_N, {
    listRule: "@request.headers.x_key = 'abc'",
    viewRule: "@request.context = 'realtime'",
  });
  const pb = track(guest());
  const withHeader = new Inbox('X-Key: abc');
  const snakeHeader = new Inbox('x_key: abc');
  const noHeader = new Inbox('no header');
  const wrongHeader = new Inbox('X-Key: nope');
  const ctx = new Inbox('id topic, context rule');
  await pb.collection(c.name).subscribe('*', withHeader.cb, { headers: { 'X-Key': 'abc' } });
  await pb.collection(c.name).subscribe('*', snakeHeader.cb, { headers: { x_key: 'abc' } });
  await pb.collection(c.name).subscribe('*', noHeader.cb);
  await pb.collection(c.name).subscribe('*', wrongHeader.cb, { headers: { 'X-Key': 'nope' } });

  const r = await su.collection(c.name).create({ title: 'h' });
  await withHeader.expect('create', r.id);
  await snakeHeader.expect('create', r.id);

  // viewRule "@request.context = 'realtime'" passes for realtime but not for REST
  await pb.collection(c.name).subscribe(r.id, ctx.cb);
  assert.equal((await raw(`/api/collections/${c.name}/records/${r.id}`)).status, 404, 'REST view is denied');
  await su.collection(c.name).update(r.id, { title: 'h2' });
  assert.equal((await ctx.expect('update', r.id)).record.title, 'h2');
  await withHeader.expect('update', r.id);
  await snakeHeader.expect('update', r.id);
  // noHeader/wrongHeader share the connection with the inboxes above, which already got the later update
  noHeader.assertEmpty();
  wrongHeader.assertEmpty();
});

// ---------------------------------------------------------------------------
// 5. unsubscribe

test('unsubscribe stops events; dropping the last subscription closes the connection', async () => {
  // After unsubscribing, writes no longer reach the user; the SSE connection goes away.
  const a = await mkCollection('rt_unsub_a', TITLE_N);
  const b = await mkCollection('rt_unsub_b', TITLE_N);
  const pb = track(guest());
  const inbox = new Inbox('guest');
  await pb.collection(a.name).subscribe('*', inbox.cb);
  await pb.collection(b.name).subscribe('*', inbox.cb);
  const firstClientId = pb.realtime.clientId;

  const ra = await su.collection(a.name).create({ title: 'a1' });
  await inbox.expect('create', ra.id);

  // drop one topic: the connection stays, the other topic still works
  await pb.collection(a.name).unsubscribe('*');
  assert.equal(pb.realtime.isConnected, true);
  assert.equal(pb.realtime.clientId, firstClientId);
  await su.collection(a.name).update(ra.id, { title: 'a2' });
  const rb = await su.collection(b.name).create({ title: 'b1' });
  await inbox.expect('create', rb.id, 'the b event, with no a event before it');

  // drop the last topic: the SDK disconnects
  await pb.collection(b.name).unsubscribe();
  assert.equal(pb.realtime.isConnected, false);
  assert.equal(pb.realtime.clientId, '');
  await su.collection(b.name).update(rb.id, { title: 'b2' });
  await su.collection(a.name).update(ra.id, { title: 'a3' });
  await sleep(NEGATIVE_WAIT_MS);
  inbox.assertEmpty();

  // the server forgets the closed client: its id becomes unknown (poll, no fixed sleep)
  let status;
  for (const t0 = Date.now(); Date.now() - t0 < WAIT_MS;) {
    status = (await setSubs(firstClientId, [])).status;
    if (status === 404) break;
    await sleep(50);
  }
  assert.equal(status, 404, 'POST with the id of a closed connection');

  // subscribing again opens a new connection with a new client id
  await pb.collection(b.name).subscribe('*', inbox.cb);
  assert.equal(pb.realtime.isConnected, true);
  assert.notEqual(pb.realtime.clientId, firstClientId);
  await su.collection(b.name).delete(rb.id);
  await inbox.expect('delete', rb.id);
});

test('a raw POST with an empty subscription list unsubscribes from everything', async () => {
  // Sending subscriptions: [] keeps the connection open but silences it.
  const c = await mkCollection('rt_empty', TITLE_N);
  const sse = await openSSE();
  await sse.frames.next('PB_CONNECT');
  assert.equal((await setSubs(sse.clientId, [`${c.name}/*`])).status, 204);
  const r = await su.collection(c.name).create({ title: 'x' });
  const f = await sse.frames.next('create frame');
  assert.equal(JSON.parse(f.data).record.id, r.id);
  assert.equal((await setSubs(sse.clientId, [])).status, 204);
  await su.collection(c.name).update(r.id, { title: 'y' });
  // re-subscribe to the other record-level topic only and use it as barrier
  assert.equal((await setSubs(sse.clientId, [`${c.name}/${r.id}`])).status, 204);
  await su.collection(c.name).update(r.id, { title: 'z' });
  const g = await sse.frames.next('barrier frame');
  assert.equal(g.event, `${c.name}/${r.id}`);
  assert.equal(JSON.parse(g.data).record.title, 'z');
  sse.frames.assertEmpty();
});

// ---------------------------------------------------------------------------
// 6. raw protocol

test('GET /api/realtime: event-stream headers and a PB_CONNECT frame carrying the client id', async () => {
  // A client connecting by hand first sees "id:<clientId>", "event:PB_CONNECT", data {"clientId":...}.
  const sse = await openSSE();
  assert.equal(sse.res.status, 200);
  assert.equal(sse.res.headers.get('content-type'), 'text/event-stream');
  assert.equal(sse.res.headers.get('cache-control'), 'no-store');
  assert.equal(sse.res.headers.get('x-accel-buffering'), 'no');
  const f = await sse.frames.next('PB_CONNECT');
  assert.match(f.raw, /^id:/m);
  assert.equal(f.event, 'PB_CONNECT');
  assert.ok(f.id && f.id.length > 0, 'non-empty client id');
  assert.deepEqual(JSON.parse(f.data), { clientId: f.id });
  assert.equal(f.raw, `id:${f.id}\nevent:PB_CONNECT\ndata:{"clientId":"${f.id}"}`, 'reference frame format');

  // two connections get two different ids
  const other = await openSSE();
  assert.notEqual(other.clientId, sse.clientId);
});

test('POST /api/realtime errors: unknown client 404, bad body 400, too many/too long topics 400', async () => {
  // Bad subscription requests are rejected with PocketBase's usual error JSON.
  const unknown = await setSubs('nosuchclientid', []);
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.json, { data: {}, message: 'Missing or invalid client id.', status: 404 });

  const BAD = 'Something went wrong while processing your request.';
  const noClient = await setSubs('', ['x']);
  assert.equal(noClient.status, 400);
  assert.deepEqual(noClient.json, {
    data: { clientId: { code: 'validation_required', message: 'Cannot be blank.' } }, message: BAD, status: 400,
  });

  const badJson = await raw('/api/realtime', { method: 'POST', body: undefined, headers: { 'Content-Type': 'application/json' } });
  assert.equal(badJson.status, 400, 'empty body = missing clientId');
  assert.equal(badJson.json.data.clientId.code, 'validation_required');
  const res = await fetch(`${BASE_URL}/api/realtime`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{not json',
  });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { data: {}, message: BAD, status: 400 });

  const sse = await openSSE();
  // 1000 topics is fine, 1001 is not (checked before the client id is looked up)
  const many = Array.from({ length: 1000 }, (_, i) => `nosuch/${i}`);
  assert.equal((await setSubs(sse.clientId, many)).status, 204);
  for (const id of [sse.clientId, 'nosuchclientid']) {
    const tooMany = await setSubs(id, [...many, 'one/more']);
    assert.equal(tooMany.status, 400);
    assert.deepEqual(tooMany.json, {
      data: { subscriptions: { code: 'validation_length_too_long', message: 'The length must be no more than 1000.', params: { max: 1000, min: 0 } } },
      message: BAD,
      status: 400,
    });
  }
  // a single topic may be at most 2500 characters
  assert.equal((await setSubs(sse.clientId, ['a'.repeat(2500)])).status, 204);
  const tooLong = await setSubs(sse.clientId, ['ok', 'a'.repeat(2501)]);
  assert.equal(tooLong.status, 400);
  assert.deepEqual(tooLong.json.data, {
    subscriptions: { 1: { code: 'validation_length_too_long', message: 'The length must be no more than 2500.', params: { max: 2500, min: 0 } } },
  });
});

test('POST /api/realtime: the auth of a client is fixed by its first authorized POST (403 on change)', async () => {
  // A connection can go from guest to user, but never switch to another user or back to guest.
  const MISMATCH = { data: {}, message: "The current and the previous request authorization don't match.", status: 403 };
  const t1 = u1.pb.authStore.token;
  const t2 = u2.pb.authStore.token;
  const tSu = su.authStore.token;

  const sse = await openSSE();
  assert.equal((await setSubs(sse.clientId, ['users/*'])).status, 204, 'guest');
  assert.equal((await setSubs(sse.clientId, ['users/*'], t1)).status, 204, 'guest -> u1 is allowed');
  assert.equal((await setSubs(sse.clientId, ['users/*'], t1)).status, 204, 'same user again');
  assert.equal((await setSubs(sse.clientId, ['users/*'], `Bearer ${t1}`)).status, 204, 'same user with Bearer prefix');
  for (const [label, token] of [['u2', t2], ['guest', undefined], ['superuser', tSu], ['garbage token', 'garbage']]) {
    const r = await setSubs(sse.clientId, ['users/*'], token);
    assert.equal(r.status, 403, `u1 -> ${label}`);
    assert.deepEqual(r.json, MISMATCH, `u1 -> ${label}`);
  }

  const sse2 = await openSSE();
  assert.equal((await setSubs(sse2.clientId, [], tSu)).status, 204);
  const r = await setSubs(sse2.clientId, [], t1);
  assert.equal(r.status, 403, 'superuser -> user');
  assert.deepEqual(r.json, MISMATCH);

  // the auth was bound by the POST: the SSE stream itself never carried a token,
  // and u1's own record events now reach this connection
  assert.equal((await setSubs(sse.clientId, ['users/*'], t1)).status, 204);
  await su.collection('users').update(u1.record.id, { name: 'bound' });
  await sse.frames.next('PB_CONNECT');
  const f = await sse.frames.next('u1 update frame');
  assert.equal(f.event, 'users/*');
  assert.equal(JSON.parse(f.data).record.id, u1.record.id);
});

test('raw frames: event name is the exact subscription string, id is the client id, data is {record, action}', async () => {
  // Every matching topic (name, id, bare name, with ?options=) gets its own frame named after it.
  const c = await mkCollection('rt_raw', TITLE_N);
  const sse = await openSSE();
  await sse.frames.next('PB_CONNECT');
  const opts = `?options=${encodeURIComponent(JSON.stringify({ query: { filter: 'n > 5' } }))}`;
  const optsFields = `?options=${encodeURIComponent(JSON.stringify({ query: { fields: 'id' }, headers: {} }))}`;
  const subs = [`${c.name}/*`, `${c.id}/*`, c.name, `${c.name}/*${opts}`, `${c.name}/*${optsFields}`];
  assert.equal((await setSubs(sse.clientId, subs)).status, 204);

  const r = await su.collection(c.name).create({ title: 'raw', n: 10 });
  const frames = [];
  for (let i = 0; i < subs.length; i++) frames.push(await sse.frames.next(`create frame ${i + 1}/${subs.length}`));
  // the order of frames for one write across topics is not specified
  assert.deepEqual(frames.map((f) => f.event).sort(), [...subs].sort());
  for (const f of frames) {
    assert.equal(f.id, sse.clientId, 'the id line of every frame is the client id');
    const data = JSON.parse(f.data);
    assert.deepEqual(Object.keys(data).sort(), ['action', 'record']);
    assert.equal(data.action, 'create');
    if (f.event.endsWith(optsFields)) assert.deepEqual(data.record, { id: r.id });
    else assert.deepEqual(data.record, r);
  }

  // n drops to 1: the filtered topic stays silent, the 4 others fire
  await su.collection(c.name).update(r.id, { n: 1 });
  const upd = [];
  for (let i = 0; i < 4; i++) upd.push(await sse.frames.next(`update frame ${i + 1}/4`));
  assert.deepEqual(upd.map((f) => f.event).sort(), subs.filter((s) => s !== `${c.name}/*${opts}`).sort());
  // barrier: record-id topic added, then updated again
  assert.equal((await setSubs(sse.clientId, [`${c.name}/${r.id}`])).status, 204);
  await su.collection(c.name).update(r.id, { n: 2 });
  assert.equal((await sse.frames.next('barrier')).event, `${c.name}/${r.id}`);
  sse.frames.assertEmpty();
});

// ---------------------------------------------------------------------------
// 7. auth collection records

test("users '*' with default rules: a user only gets own record events; guests get none; superuser all", async () => {
  // Watching `users`, a user sees changes to their own account (with email) and nobody else's.
  const open = await mkCollection('rt_users_barrier', TITLE_N);
  const in1 = new Inbox('u1');
  const inG = new Inbox('guest');
  const inSu = new Inbox('superuser');
  await track(u1.pb).collection('users').subscribe('*', in1.cb);
  await u1.pb.collection(open.name).subscribe('*', in1.cb);
  const g = track(guest());
  await g.collection('users').subscribe('*', inG.cb);
  await g.collection(open.name).subscribe('*', inG.cb);
  const suSub = track(await superuser());
  await suSub.collection('users').subscribe('*', inSu.cb);

  await su.collection('users').update(u2.record.id, { name: 'two' });
  await su.collection('users').update(u1.record.id, { name: 'one' });
  const own = await in1.expect('update', u1.record.id, 'own update (u2\'s was not delivered before it)');
  assert.equal(own.record.name, 'one');
  assert.equal(own.record.email, u1.email, 'own email is visible even with emailVisibility false');
  assert.equal(own.record.emailVisibility, false);
  for (const k of ['password', 'tokenKey', 'passwordConfirm']) assert.equal(k in own.record, false, k);

  const s2 = await inSu.expect('update', u2.record.id);
  assert.equal(s2.record.email, u2.email, 'superuser sees every email');
  assert.equal('password' in s2.record || 'tokenKey' in s2.record, false);
  await inSu.expect('update', u1.record.id);

  const barrier = await su.collection(open.name).create({ title: 'barrier' });
  await inG.expect('create', barrier.id, 'guest: barrier with no users events before it');
  await in1.expect('create', barrier.id);
  for (const i of [in1, inG, inSu]) i.assertEmpty();
});

test('auth collection with a public listRule: email only in events when emailVisibility is true (or for the owner)', async () => {
  // Others watching members see an email only if its owner made it visible.
  const m = await su.collections.create({
    name: uniq('rt_members'),
    type: 'auth',
    listRule: '',
    viewRule: '',
    fields: [{ name: 'nick', type: 'text' }],
  });
  const shyEmail = uniqEmail('shy');
  const shy = await su.collection(m.name).create({ email: shyEmail, password: PASSWORD, passwordConfirm: PASSWORD, nick: 'shy', emailVisibility: false });
  const me = track(guest());
  await me.collection(m.name).authWithPassword(shyEmail, PASSWORD);

  const inG = new Inbox('guest');
  const inShy = new Inbox('shy');
  await track(guest()).collection(m.name).subscribe('*', inG.cb);
  await me.collection(m.name).subscribe('*', inShy.cb);

  const openEmail = uniqEmail('open');
  const open = await su.collection(m.name).create({ email: openEmail, password: PASSWORD, passwordConfirm: PASSWORD, nick: 'open', emailVisibility: true });
  await su.collection(m.name).update(shy.id, { nick: 'shy 2' });

  const gOpen = await inG.expect('create', open.id);
  assert.equal(gOpen.record.email, openEmail);
  const gShy = await inG.expect('update', shy.id);
  assert.equal('email' in gShy.record, false, 'hidden for others');
  assert.deepEqual(Object.keys(gShy.record).sort(), ['collectionId', 'collectionName', 'emailVisibility', 'id', 'nick', 'verified']);

  const sOpen = await inShy.expect('create', open.id);
  assert.equal(sOpen.record.email, openEmail);
  const sShy = await inShy.expect('update', shy.id);
  assert.equal(sShy.record.email, shyEmail, 'the owner sees own email');
  inG.assertEmpty();
  inShy.assertEmpty();
});

// ---------------------------------------------------------------------------
// 8. records that stop (or start) matching

test('an update that makes a record stop matching the rule sends nothing to the old viewer; the new one gets "update"', async () => {
  // Handing a note from u1 to u2: u1 silently stops seeing it; u2 sees an update (not a create).
  const c = await mkCollection('rt_move', [
    { name: 'title', type: 'text' },
    { name: 'owner', type: 'relation', collectionId: USERS_ID, maxSelect: 1 },
  ], { listRule: 'owner = @request.auth.id', viewRule: 'owner = @request.auth.id' });
  const in1 = new Inbox('u1');
  const in2 = new Inbox('u2');
  await track(u1.pb).collection(c.name).subscribe('*', in1.cb);
  await track(u2.pb).collection(c.name).subscribe('*', in2.cb);

  const r = await su.collection(c.name).create({ title: 'note', owner: u1.record.id });
  await in1.expect('create', r.id);

  await su.collection(c.name).update(r.id, { owner: u2.record.id });
  const moved = await in2.expect('update', r.id, 'u2 first hears of the record as an update');
  assert.equal(moved.record.owner, u2.record.id);

  await su.collection(c.name).delete(r.id);
  await in2.expect('delete', r.id);
  const barrier = await su.collection(c.name).create({ title: 'barrier', owner: u1.record.id });
  await in1.expect('create', barrier.id, 'u1 got neither the hand-over update nor the delete');
  in1.assertEmpty();
  in2.assertEmpty();
});

test('with a filter option: leaving the filter sends nothing, re-entering sends "update", delete only if matching', async () => {
  // A "n > 5" watcher only hears about the record while it matches.
  const c = await mkCollection('rt_filter_move', TITLE_N);
  const pb = track(guest());
  const inbox = new Inbox('filter n > 5');
  await pb.collection(c.name).subscribe('*', inbox.cb, { filter: 'n > 5' });

  const r = await su.collection(c.name).create({ title: 'r', n: 10 });
  await inbox.expect('create', r.id);
  await su.collection(c.name).update(r.id, { n: 1 }); // leaves the filter: no event
  await su.collection(c.name).update(r.id, { n: 20 }); // re-enters: update
  const back = await inbox.expect('update', r.id, 'update when the record matches again (no event for n=1)');
  assert.equal(back.record.n, 20);

  await su.collection(c.name).update(r.id, { n: 0 });
  await su.collection(c.name).delete(r.id); // deleted while not matching: no event
  const b = await su.collection(c.name).create({ title: 'barrier', n: 6 });
  await inbox.expect('create', b.id, 'barrier, with no update/delete before it');
  await su.collection(c.name).delete(b.id); // deleted while matching: delete event
  await inbox.expect('delete', b.id);
  inbox.assertEmpty();
});
