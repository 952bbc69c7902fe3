// GraphQL (Basalt only: PocketBase has none), driven by the reference JavaScript implementation:
// - `graphql`: the introspected schema passes buildClientSchema + assertValidSchema, and every
//   query this file sends passes `validate` against it;
// - `graphql-ws`: subscriptions over the graphql-transport-ws protocol, with each subscriber's rules
//   and filter applied (as realtime does), a schema change while connected, PII masks in events;
// - the official SDK writes and signs in next to it: one set of rules and records for both APIs;
// - MFA sign-in (password, then an OTP from a real SMTP server) and files by the multipart request spec.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildClientSchema, getIntrospectionQuery, assertValidSchema, validate, parse,
} from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { BASE_URL, superuser, guest, uniq, uniqEmail, signUpAndLogin } from './helpers.mjs';
import { startSmtp, configureSmtp } from './smtp.mjs';

const BASALT = !!process.env.BASALT_BACKEND;
const skip = !BASALT && 'Basalt only (PocketBase has no GraphQL)';

let su;
let alice; // { pb, record }
let bob;
let posts;
let comments;
const clients = [];

/** POST /api/graphql; checks the query against the current introspected schema first. */
async function gql(query, variables = {}, token = '') {
  const schema = await clientSchema();
  const errs = validate(schema, parse(query));
  assert.deepEqual(errs.map((e) => e.message), [], `query invalid against the schema: ${query}`);
  const res = await fetch(`${BASE_URL}/api/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { Authorization: token } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function clientSchema() {
  const res = await fetch(`${BASE_URL}/api/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', Authorization: su.authStore.token },
    body: JSON.stringify({ query: getIntrospectionQuery() }),
  });
  const body = await res.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return buildClientSchema(body.data);
}

function wsClient(token = '') {
  const c = createClient({
    url: `${BASE_URL.replace(/^http/, 'ws')}/api/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: token ? { Authorization: token } : {},
    retryAttempts: 0,
    lazy: false,
  });
  clients.push(c);
  return c;
}

/** Subscribes; `events` fills as `next` messages arrive. */
function subscribe(client, query, variables = {}) {
  const events = [];
  const errors = [];
  const dispose = client.subscribe({ query, variables }, {
    next: (v) => events.push(v),
    error: (e) => errors.push(e),
    complete: () => {},
  });
  return { events, errors, dispose };
}

async function until(cond, what, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A subscription is registered once a realtime fan-out would find it: give the socket a moment. */
const settle = () => new Promise((r) => setTimeout(r, 300));

before(async () => {
  if (!BASALT) return;
  su = await superuser();
  alice = await signUpAndLogin('users');
  bob = await signUpAndLogin('users');
  posts = await su.collections.create({
    name: uniq('gq_posts'),
    listRule: 'published = true || author = @request.auth.id',
    viewRule: 'published = true || author = @request.auth.id',
    createRule: "@request.auth.id != ''",
    updateRule: 'author = @request.auth.id',
    fields: [
      { name: 'title', type: 'text', required: true },
      { name: 'published', type: 'bool' },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      { name: 'notes', type: 'text', hidden: true },
    ],
  });
  comments = await su.collections.create({
    name: uniq('gq_comments'),
    listRule: '', viewRule: '', createRule: "@request.auth.id != ''",
    fields: [
      { name: 'body', type: 'text' },
      { name: 'post', type: 'relation', collectionId: posts.id, maxSelect: 1 },
    ],
  });
});

after(async () => {
  for (const c of clients) await c.dispose();
});

/** The multipart request spec: `operations`, `map`, then the files. */
async function gqlFiles(query, variables, files, token = '') {
  const schema = await clientSchema();
  assert.deepEqual(validate(schema, parse(query)).map((e) => e.message), []);
  const form = new FormData();
  form.append('operations', JSON.stringify({ query, variables }));
  const map = {};
  files.forEach((f, i) => { map[String(i)] = [f.path]; });
  form.append('map', JSON.stringify(map));
  files.forEach((f, i) => form.append(String(i), new Blob([f.content]), f.name));
  const res = await fetch(`${BASE_URL}/api/graphql`, {
    method: 'POST', body: form, headers: token ? { Authorization: token } : {},
  });
  assert.equal(res.status, 200);
  return res.json();
}

test('the introspected schema is valid for the reference implementation', { skip }, async () => {
  // A collection with nothing to update (only its id) still makes a valid schema.
  const bare = await su.collections.create({ name: uniq('gq_bare'), fields: [] });
  // A view collection: read in the schema, no write mutations.
  const view = await su.collections.create({
    name: uniq('gq_view'), type: 'view', listRule: '', viewRule: '',
    viewQuery: `SELECT id, title, author FROM ${posts.name}`,
  });
  const schema = await clientSchema();
  assert.ok(schema.getMutationType().getFields()[`create_${bare.name}`]);
  assert.equal(schema.getMutationType().getFields()[`update_${bare.name}`], undefined);
  assert.ok(schema.getQueryType().getFields()[view.name]);
  assert.equal(schema.getMutationType().getFields()[`create_${view.name}`], undefined);
  assertValidSchema(schema);
  const t = schema.getType(posts.name);
  const fields = Object.keys(t.getFields());
  assert.ok(fields.includes('title') && fields.includes('author'));
  assert.ok(fields.includes(`${comments.name}_via_post`), fields.join());
  assert.ok(!fields.includes('notes'), 'hidden fields are not in the schema');
  const users = Object.keys(schema.getType('users').getFields());
  assert.ok(!users.includes('password') && !users.includes('tokenKey'));
  assert.ok(schema.getQueryType().getFields()[`${posts.name}_by_id`]);
  assert.ok(schema.getMutationType().getFields().users_auth_with_password);
  assert.ok(schema.getSubscriptionType().getFields()[`${posts.name}_events`]);
});

test('records written with the SDK read through GraphQL under the same rules', { skip }, async () => {
  const pub = await alice.pb.collection(posts.name).create({ title: 'sdk public', published: true, author: alice.record.id });
  await alice.pb.collection(posts.name).create({ title: 'sdk draft', published: false, author: alice.record.id });
  await bob.pb.collection(comments.name).create({ body: 'nice', post: pub.id });
  const q = `query($f: String) { ${posts.name}(filter: $f, sort: "title") { totalItems items {
    title author { id } ${comments.name}_via_post { body } } } }`;
  const asGuest = await gql(q, { f: "title ~ 'sdk'" });
  assert.equal(asGuest.data[posts.name].totalItems, 1);
  assert.deepEqual(asGuest.data[posts.name].items[0][`${comments.name}_via_post`], [{ body: 'nice' }]);
  const rest = await guest().collection(posts.name).getList(1, 10, { filter: "title ~ 'sdk'" });
  assert.equal(rest.totalItems, 1);
  const asAlice = await gql(q, { f: "title ~ 'sdk'" }, alice.pb.authStore.token);
  assert.equal(asAlice.data[posts.name].totalItems, 2);
  // A relation path in the filter.
  const byAuthor = await gql(q, { f: `author.id = '${alice.record.id}'` }, alice.pb.authStore.token);
  assert.equal(byAuthor.data[posts.name].totalItems, 2);
  // Signed in through GraphQL, the token works with the SDK.
  const login = await gql(`mutation($e: String!, $p: String!) { users_auth_with_password(identity: $e, password: $p) { token record { id } } }`,
    { e: bob.email, p: bob.password });
  const token = login.data.users_auth_with_password.token;
  const pb = guest();
  pb.authStore.save(token, null);
  const me = await pb.collection('users').getOne(bob.record.id);
  assert.equal(me.id, bob.record.id);
});

/** Runs a query over the WebSocket (async-graphql's engine) and returns its one result. */
function overSocket(client, query, variables = {}) {
  return new Promise((resolve, reject) => {
    let result;
    client.subscribe({ query, variables }, {
      next: (v) => { result = v; },
      error: reject,
      complete: () => resolve(result),
    });
  });
}

test('queries answer the same through the query executor (HTTP) and the resolvers (WebSocket)', { skip }, async () => {
  const p = await alice.pb.collection(posts.name).create({ title: 'parity', published: true, author: alice.record.id });
  await bob.pb.collection(comments.name).create({ body: 'one', post: p.id });
  await bob.pb.collection(comments.name).create({ body: 'two', post: p.id });
  const q = `query($f: String, $withBody: Boolean = true, $id: ID!) {
    __typename
    list: ${posts.name}(filter: $f, perPage: 5) {
      __typename totalItems perPage
      items { ...postFields author { __typename id } }
      again: items { id }
    }
    one: ${posts.name}_by_id(id: $id) { title ... on ${posts.name} { published } }
    missing: ${posts.name}_by_id(id: "nope") { id }
    bad: ${posts.name}(filter: "title ~") { totalItems }
  }
  fragment postFields on ${posts.name} {
    __typename id title
    cs: ${comments.name}_via_post(sort: "body") { body @include(if: $withBody) id @skip(if: true) }
  }`;
  const vars = { f: "title = 'parity'", id: p.id };
  const http = await gql(q, vars, alice.pb.authStore.token);
  const ws = await overSocket(wsClient(alice.pb.authStore.token), q, vars);
  assert.deepEqual(http, ws);
  assert.equal(http.data.list.items[0].cs.length, 2);
  assert.deepEqual(http.data.list.items[0].cs[0], { body: 'one' });
  assert.equal(http.data.missing, null);
  assert.equal(http.data.bad, null);
  assert.deepEqual(http.errors.map((e) => e.path), [['bad']]);
  assert.equal(http.errors[0].extensions.code, 'bad_request');
});

test('subscriptions deliver what each subscriber may see, with its filter', { skip }, async () => {
  const q = `subscription($f: String) { ${posts.name}_events(filter: $f) { action record { title published author { id } } } }`;
  assert.deepEqual(validate(await clientSchema(), parse(q)).map((e) => e.message), []);
  const g = subscribe(wsClient(), q);
  const b = subscribe(wsClient(bob.pb.authStore.token), q, { f: "title ~ 'bob'" });
  const a = subscribe(wsClient(alice.pb.authStore.token), q);
  await settle();
  await alice.pb.collection(posts.name).create({ title: 'alice draft', published: false, author: alice.record.id });
  await alice.pb.collection(posts.name).create({ title: 'alice public', published: true, author: alice.record.id });
  await bob.pb.collection(posts.name).create({ title: 'bob public', published: true, author: bob.record.id });
  await until(() => a.events.length >= 3 && g.events.length >= 2 && b.events.length >= 1, 'events');
  await new Promise((r) => setTimeout(r, 300));
  const titles = (s) => s.events.map((e) => e.data[`${posts.name}_events`].record.title);
  assert.deepEqual(titles(a), ['alice draft', 'alice public', 'bob public'], 'the author sees her draft');
  assert.deepEqual(titles(g), ['alice public', 'bob public'], 'a guest sees published posts only');
  assert.deepEqual(titles(b), ['bob public'], "bob's filter");
  assert.equal(a.events[0].data[`${posts.name}_events`].action, 'create');
  assert.equal(a.events[0].data[`${posts.name}_events`].record.author.id, alice.record.id);
  for (const s of [a, b, g]) assert.deepEqual(s.errors, []);
});

test('a collection created while connected can be subscribed to on the same connection', { skip }, async () => {
  const c = wsClient(su.authStore.token);
  // Connected and acknowledged before the schema changes.
  const first = subscribe(c, `subscription { ${posts.name}_events { action } }`);
  await settle();
  const late = await su.collections.create({
    name: uniq('gq_late'), listRule: '', viewRule: '', createRule: '',
    fields: [{ name: 'text', type: 'text' }],
  });
  const s = subscribe(c, `subscription { ${late.name}_events { action record { text } } }`);
  await settle();
  await guest().collection(late.name).create({ text: 'hello' });
  await until(() => s.events.length >= 1, 'the new collection\'s event');
  assert.deepEqual(s.events[0].data[`${late.name}_events`], { action: 'create', record: { text: 'hello' } });
  assert.deepEqual(first.errors, []);
  // An unknown collection is an error message for that operation only.
  const bad = subscribe(c, 'subscription { nope_events { action } }');
  await until(() => bad.errors.length >= 1, 'the validation error');
  assert.match(JSON.stringify(bad.errors[0]), /nope_events/);
});

test('pii values are masked in GraphQL reads and events as in REST', { skip }, async () => {
  const coll = await su.collections.create({
    name: uniq('gq_pii'), listRule: '', viewRule: '', createRule: '',
    fields: [
      { name: 'label', type: 'text' },
      { name: 'phone', type: 'text', pii: { mask: 'last4', revealRule: '@request.auth.id != ""' } },
    ],
  });
  const q = `subscription { ${coll.name}_events { record { label phone } } }`;
  const g = subscribe(wsClient(), q);
  await settle();
  await guest().collection(coll.name).create({ label: 'x', phone: '+44 7700 900123' });
  await until(() => g.events.length >= 1, 'the pii event');
  assert.equal(g.events[0].data[`${coll.name}_events`].record.phone, '****0123');
  const r = await gql(`{ ${coll.name} { items { phone } } }`);
  const rest = await guest().collection(coll.name).getFullList();
  assert.equal(r.data[coll.name].items[0].phone, rest[0].phone);
  assert.notEqual(rest[0].phone, '+44 7700 900123');
  const asUser = await gql(`{ ${coll.name} { items { phone } } }`, {}, alice.pb.authStore.token);
  assert.equal(asUser.data[coll.name].items[0].phone, '+44 7700 900123');
});

test('MFA sign-in: the password answers an mfaId, an OTP from the mail completes it', { skip }, async () => {
  const smtp = await startSmtp();
  const restore = await configureSmtp(su, smtp, BASE_URL);
  try {
    const coll = await su.collections.create({
      name: uniq('gq_mfa'), type: 'auth', listRule: 'id = @request.auth.id', viewRule: 'id = @request.auth.id',
      fields: [{ name: 'name', type: 'text' }],
      mfa: { enabled: true }, otp: { enabled: true, duration: 180, length: 8 },
    });
    const email = uniqEmail('gqmfa');
    const password = 'Mfa-pass-12345';
    const rec = await su.collection(coll.name).create({ email, password, passwordConfirm: password, name: 'M' });
    const first = await gql(`mutation($e: String!, $p: String!) { ${coll.name}_auth_with_password(identity: $e, password: $p) { token mfaId } }`,
      { e: email, p: password });
    const { token, mfaId } = first.data[`${coll.name}_auth_with_password`];
    assert.equal(token, null);
    assert.ok(mfaId);
    const since = smtp.mark();
    const otp = await gql(`mutation($e: String!) { ${coll.name}_request_otp(email: $e) { otpId } }`, { e: email });
    const otpId = otp.data[`${coll.name}_request_otp`].otpId;
    const mail = await smtp.waitForMailTo(email, /OTP/i, { since });
    const code = (/one-time password is:?\s*(?:<strong>)?\s*(\d{4,})/i.exec(mail.text) || /(\d{8})/.exec(mail.text))[1];
    const done = await gql(`mutation($o: String!, $c: String!, $m: String) { ${coll.name}_auth_with_otp(otpId: $o, password: $c, mfaId: $m) { token record { id name email } } }`,
      { o: otpId, c: code, m: mfaId });
    const out = done.data[`${coll.name}_auth_with_otp`];
    assert.deepEqual(out.record, { id: rec.id, name: 'M', email }, 'the signed-in record sees its own email');
    const pb = guest();
    pb.authStore.save(out.token, null);
    assert.equal((await pb.collection(coll.name).getOne(rec.id)).id, rec.id);
  } finally {
    await su.settings.update(restore);
    await smtp.close();
  }
});

test('files by the multipart request spec, readable through the SDK', { skip }, async () => {
  const coll = await su.collections.create({
    name: uniq('gq_docs'), listRule: '', viewRule: '', createRule: '', updateRule: '',
    fields: [{ name: 'title', type: 'text' }, { name: 'files', type: 'file', maxSelect: 3, maxSize: 100000 }],
  });
  const r = await gqlFiles(`mutation($i: ${coll.name}_create_input!) { create_${coll.name}(input: $i) { id files } }`,
    { i: { title: 'two', files: [null, null] } },
    [{ path: 'variables.i.files.0', name: 'a.txt', content: 'hello' }, { path: 'variables.i.files.1', name: 'b.txt', content: 'world' }]);
  assert.equal(r.errors, undefined, JSON.stringify(r.errors));
  const created = r.data[`create_${coll.name}`];
  assert.equal(created.files.length, 2);
  const rec = await guest().collection(coll.name).getOne(created.id);
  assert.deepEqual(rec.files, created.files);
  const url = guest().files.getURL(rec, rec.files[0]);
  assert.equal(await (await fetch(url)).text(), 'hello');
});

test("the socket's token is the caller: a bad one makes a guest, as with REST", { skip }, async () => {
  const q = `{ users(filter: "id = '${alice.record.id}'") { totalItems } }`;
  const asAlice = await overSocket(wsClient(alice.pb.authStore.token), q);
  assert.equal(asAlice.data.users.totalItems, 1);
  const bad = await overSocket(wsClient('not-a-token'), q);
  assert.equal(bad.data.users.totalItems, 0);
  const rest = await guest().collection('users').getList(1, 1, { filter: `id = '${alice.record.id}'` });
  assert.equal(rest.totalItems, 0);
});
