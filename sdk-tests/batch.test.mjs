// Batch: POST /api/batch through pb.createBatch(): create/update/delete/upsert
// in one transaction, results in request order, rollback of the whole batch on
// the first failing request and its error shape, settings.batch (enabled,
// maxRequests, maxBodySize), files inside a batch, and rules evaluated with the
// outer request's auth.
//
// before() enables batch (maxRequests 50, timeout 3, maxBodySize 0 = 128 MiB)
// and after() restores the previous settings.batch. Tests that change
// settings.batch put it back in `finally`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { superuser, guest, uniq, expectError, raw, ID_RE, BASE_URL } from './helpers.mjs';

const RAND = '[a-z0-9]{10}';
const BATCH_ON = { enabled: true, maxRequests: 50, timeout: 3, maxBodySize: 0 };

let su;
let savedBatch;

before(async () => {
  su = await superuser();
  savedBatch = (await su.settings.getAll()).batch;
  const s = await su.settings.update({ batch: BATCH_ON });
  assert.deepEqual(s.batch, BATCH_ON);
});

after(async () => {
  if (savedBatch) await su.settings.update({ batch: savedBatch });
});

/** Run `fn` with settings.batch patched by `patch`, then put BATCH_ON back. */
async function withBatchSettings(patch, fn) {
  await su.settings.update({ batch: { ...BATCH_ON, ...patch } });
  try {
    return await fn();
  } finally {
    await su.settings.update({ batch: BATCH_ON });
  }
}

/** A public base collection (all rules "") with a required title and a file field. */
async function publicCollection(extra = {}) {
  const name = uniq('b_items');
  const c = await su.collections.create({
    name,
    listRule: '',
    viewRule: '',
    createRule: '',
    updateRule: '',
    deleteRule: '',
    fields: [
      { name: 'title', type: 'text', required: true },
      { name: 'n', type: 'number' },
      { name: 'doc', type: 'file', maxSelect: 1 },
      { name: 'docs', type: 'file', maxSelect: 5 },
    ],
    ...extra,
  });
  return c;
}

const titles = async (name) => (await su.collection(name).getFullList({ sort: 'title' })).map((r) => r.title);
const txt = (name, body) => new File([body], name, { type: 'text/plain' });

test('settings.batch shape and validation', async () => {
  const s = await su.settings.getAll();
  assert.deepEqual(Object.keys(s.batch).sort(), ['enabled', 'maxBodySize', 'maxRequests', 'timeout']);

  // enabled batch needs maxRequests > 0 and timeout > 0; maxBodySize >= 0 (0 = default 128 MiB)
  const bad = await expectError(() => su.settings.update({ batch: { enabled: true, maxRequests: 0, timeout: 0, maxBodySize: -1 } }));
  assert.equal(bad.status, 400);
  assert.equal(bad.response.message, 'An error occurred while saving the new settings.');
  assert.deepEqual(bad.response.data, {
    batch: {
      maxRequests: { code: 'validation_required', message: 'Cannot be blank.' },
      timeout: { code: 'validation_required', message: 'Cannot be blank.' },
      maxBodySize: {
        code: 'validation_min_greater_equal_than_required',
        message: 'Must be no less than 0.',
        params: { threshold: 0 },
      },
    },
  });
  assert.deepEqual((await su.settings.getAll()).batch, BATCH_ON, 'a failed update changes nothing');
});

test('create, update, delete and upsert in one batch: results in order, as {status, body}', async () => {
  const c = await publicCollection();
  const col = su.collection(c.name);
  const toUpdate = await col.create({ title: 'to update', n: 1 });
  const toDelete = await col.create({ title: 'to delete' });
  const toUpsert = await col.create({ title: 'to upsert', n: 5 });
  const newId = ('bn' + Date.now().toString(36) + 'zzzzzzzzzzzzz').slice(0, 15);

  const batch = guest().createBatch();
  batch.collection(c.name).create({ title: 'created' });
  batch.collection(c.name).update(toUpdate.id, { title: 'updated', 'n+': 2 });
  batch.collection(c.name).delete(toDelete.id);
  batch.collection(c.name).upsert({ id: toUpsert.id, title: 'upserted (update)' });
  batch.collection(c.name).upsert({ id: newId, title: 'upserted (create)' });
  batch.collection(c.name).create({ title: 'with fields' }, { fields: 'id,title' });
  const res = await batch.send();

  assert.ok(Array.isArray(res));
  assert.equal(res.length, 6);
  for (const item of res) assert.deepEqual(Object.keys(item).sort(), ['body', 'status']);

  assert.equal(res[0].status, 200);
  assert.match(res[0].body.id, ID_RE);
  assert.deepEqual(res[0].body, {
    collectionId: c.id, collectionName: c.name, id: res[0].body.id, title: 'created', n: 0, doc: '', docs: [],
  });
  assert.equal(res[1].status, 200);
  assert.equal(res[1].body.id, toUpdate.id);
  assert.equal(res[1].body.title, 'updated');
  assert.equal(res[1].body.n, 3);
  assert.deepEqual(res[2], { status: 204, body: null });
  assert.equal(res[3].status, 200);
  assert.equal(res[3].body.id, toUpsert.id);
  assert.equal(res[3].body.title, 'upserted (update)');
  assert.equal(res[3].body.n, 5, 'upsert of an existing id is a partial update');
  assert.equal(res[4].status, 200);
  assert.equal(res[4].body.id, newId);
  assert.equal(res[4].body.title, 'upserted (create)');
  assert.deepEqual(res[5], { status: 200, body: { id: res[5].body.id, title: 'with fields' } });

  assert.deepEqual(await titles(c.name), ['created', 'updated', 'upserted (create)', 'upserted (update)', 'with fields']);
  const gone = await expectError(() => col.getOne(toDelete.id));
  assert.equal(gone.status, 404);

  // later requests see the effects of earlier ones in the same batch
  const chain = su.createBatch();
  chain.collection(c.name).create({ id: 'chain0000000001', title: 'chain' });
  chain.collection(c.name).update('chain0000000001', { title: 'chain updated' });
  chain.collection(c.name).delete('chain0000000001');
  const chained = await chain.send();
  assert.deepEqual(chained.map((r) => r.status), [200, 200, 204]);
  assert.equal(chained[1].body.title, 'chain updated');
  assert.equal((await expectError(() => col.getOne('chain0000000001'))).status, 404);
});

test('a failing request rolls back the whole batch; error names the failing index', async () => {
  const c = await publicCollection();
  const existing = await su.collection(c.name).create({ title: 'existing', n: 1 });

  const batch = guest().createBatch();
  batch.collection(c.name).create({ title: 'first (rolled back)' });
  batch.collection(c.name).update(existing.id, { n: 99 });
  batch.collection(c.name).create({ title: '' }); // required title
  batch.collection(c.name).create({ title: 'never reached' });
  const err = await expectError(() => batch.send());
  assert.equal(err.status, 400);
  assert.deepEqual(err.response, {
    data: {
      requests: {
        2: {
          code: 'batch_request_failed',
          message: 'Batch request failed.',
          response: {
            data: { title: { code: 'validation_required', message: 'Cannot be blank.' } },
            message: 'Failed to create record.',
            status: 400,
          },
        },
      },
    },
    message: 'Batch transaction failed.',
    status: 400,
  });
  assert.deepEqual(await titles(c.name), ['existing'], 'the earlier create did not persist');
  assert.equal((await su.collection(c.name).getOne(existing.id)).n, 1, 'the earlier update did not persist');

  // failure at index 0, and a 404 inner response (delete of a missing record)
  const b0 = guest().createBatch();
  b0.collection(c.name).delete('zzzzzzzzzzzzzzz');
  b0.collection(c.name).create({ title: 'after' });
  const e0 = await expectError(() => b0.send());
  assert.deepEqual(e0.response.data, {
    requests: {
      0: {
        code: 'batch_request_failed',
        message: 'Batch request failed.',
        response: { data: {}, message: "The requested resource wasn't found.", status: 404 },
      },
    },
  });
  assert.deepEqual(await titles(c.name), ['existing']);

  // an unknown collection inside a batch: inner 404 "Missing collection context." (even for a create)
  const bc = su.createBatch();
  bc.collection(c.name).create({ title: 'ok' });
  bc.collection(uniq('nope')).create({ title: 'x' });
  const ec = await expectError(() => bc.send());
  assert.deepEqual(ec.response.data.requests, {
    1: {
      code: 'batch_request_failed',
      message: 'Batch request failed.',
      response: { data: {}, message: 'Missing collection context.', status: 404 },
    },
  });
  assert.deepEqual(await titles(c.name), ['existing']);
});

test('rules are evaluated with the outer auth; inner Authorization headers are ignored', async () => {
  const c = await publicCollection({ createRule: null });

  const g = guest().createBatch();
  g.collection(c.name).create({ title: 'guest' });
  const ge = await expectError(() => g.send());
  assert.deepEqual(ge.response, {
    data: {
      requests: {
        0: {
          code: 'batch_request_failed',
          message: 'Batch request failed.',
          response: { data: {}, message: 'Only superusers can perform this action.', status: 403 },
        },
      },
    },
    message: 'Batch transaction failed.',
    status: 400,
  });

  const h = guest().createBatch();
  h.collection(c.name).create({ title: 'header' }, { headers: { Authorization: su.authStore.token } });
  const he = await expectError(() => h.send());
  assert.equal(he.response.data.requests[0].response.status, 403);

  const s = su.createBatch();
  s.collection(c.name).create({ title: 'superuser' });
  const ok = await s.send();
  assert.equal(ok[0].status, 200);
  assert.deepEqual(await titles(c.name), ['superuser']);
});

test('files inside a batch: uploads on create and update are stored and downloadable', async () => {
  const c = await publicCollection();
  const batch = guest().createBatch();
  batch.collection(c.name).create({ title: 'with file', doc: txt('notes.txt', 'batch file body') });
  batch.collection(c.name).create({ title: 'with files', docs: [txt('one.txt', 'one'), txt('two.txt', 'two')] });
  const res = await batch.send();
  assert.deepEqual(res.map((r) => r.status), [200, 200]);

  // PocketBase re-encodes the batch files, so the stored name gets a second random suffix:
  // notes_<rand>_<rand>.txt (a plain create gives notes_<rand>.txt). Both forms are accepted here.
  const rec = res[0].body;
  assert.match(rec.doc, new RegExp(`^notes_${RAND}(_${RAND})?\\.txt$`));
  const dl = await fetch(su.files.getURL(rec, rec.doc));
  assert.equal(dl.status, 200);
  assert.equal(await dl.text(), 'batch file body');
  assert.equal(dl.headers.get('content-type'), 'text/plain; charset=utf-8');

  const multi = res[1].body;
  assert.equal(multi.docs.length, 2);
  assert.deepEqual(
    await Promise.all(multi.docs.map(async (n) => (await fetch(su.files.getURL(multi, n))).text())),
    ['one', 'two'],
  );

  // append (docs+) and replace (doc) inside a batch
  const up = guest().createBatch();
  up.collection(c.name).update(multi.id, { 'docs+': txt('three.txt', 'three'), doc: txt('single.txt', 'single') });
  const [u] = await up.send();
  assert.equal(u.status, 200);
  assert.equal(u.body.docs.length, 3);
  assert.deepEqual(u.body.docs.slice(0, 2), multi.docs);
  assert.equal(await (await fetch(su.files.getURL(u.body, u.body.docs[2]))).text(), 'three');
  assert.equal(await (await fetch(su.files.getURL(u.body, u.body.doc))).text(), 'single');

  // a failing batch stores no file
  const bad = guest().createBatch();
  bad.collection(c.name).create({ title: 'file then fail', doc: txt('lost.txt', 'lost') });
  bad.collection(c.name).create({ title: '' });
  await expectError(() => bad.send());
  assert.equal((await su.collection(c.name).getList(1, 1, { filter: "title = 'file then fail'" })).totalItems, 0);

  // the raw form: "requests[<i>].<field>" file parts are accepted too
  const fd = new FormData();
  fd.append('@jsonPayload', JSON.stringify({ requests: [{ method: 'POST', url: `/api/collections/${c.name}/records`, body: { title: 'bracket' } }] }));
  fd.append('requests[0].doc', txt('bracket.txt', 'bracket body'));
  const rawRes = await fetch(`${BASE_URL}/api/batch`, { method: 'POST', body: fd });
  assert.equal(rawRes.status, 200);
  const [b] = await rawRes.json();
  assert.equal(await (await fetch(su.files.getURL(b.body, b.body.doc))).text(), 'bracket body');
});

test('batch disabled: 403 for everyone', async () => {
  const c = await publicCollection();
  await withBatchSettings({ enabled: false }, async () => {
    for (const pb of [guest(), su]) {
      const b = pb.createBatch();
      b.collection(c.name).create({ title: 'x' });
      const err = await expectError(() => b.send());
      assert.equal(err.status, 403);
      assert.deepEqual(err.response, { data: {}, message: 'Batch requests are not allowed.', status: 403 });
    }
  });
  assert.deepEqual(await titles(c.name), []);
});

test('maxRequests exceeded, empty batch and invalid request items: 400 "Invalid batch request data."', async () => {
  const c = await publicCollection();
  await withBatchSettings({ maxRequests: 2 }, async () => {
    const b = guest().createBatch();
    for (let i = 0; i < 3; i++) b.collection(c.name).create({ title: `t${i}` });
    const err = await expectError(() => b.send());
    assert.equal(err.status, 400);
    assert.deepEqual(err.response, {
      data: {
        requests: {
          code: 'validation_length_too_long',
          message: 'The length must be no more than 2.',
          params: { max: 2, min: 0 },
        },
      },
      message: 'Invalid batch request data.',
      status: 400,
    });
    const two = guest().createBatch();
    for (let i = 0; i < 2; i++) two.collection(c.name).create({ title: `ok${i}` });
    assert.equal((await two.send()).length, 2);
  });
  assert.deepEqual(await titles(c.name), ['ok0', 'ok1']);

  const empty = await expectError(() => guest().createBatch().send());
  assert.deepEqual(empty.response, {
    data: { requests: { code: 'validation_required', message: 'Cannot be blank.' } },
    message: 'Invalid batch request data.',
    status: 400,
  });

  const url = `/api/collections/${c.name}/records`;
  const bodies = [
    [{ requests: [{ method: 'post', url, body: { title: 'x' } }] }, { method: { code: 'validation_in_invalid', message: 'Must be a valid value.' } }],
    [{ requests: [{ method: 'HEAD', url }] }, { method: { code: 'validation_in_invalid', message: 'Must be a valid value.' } }],
    [{ requests: [{ url, body: { title: 'x' } }] }, { method: { code: 'validation_required', message: 'Cannot be blank.' } }],
    [{ requests: [{ method: 'POST', body: { title: 'x' } }] }, { url: { code: 'validation_required', message: 'Cannot be blank.' } }],
    [
      { requests: [{ method: 'POST', url: `${url}?x=${'a'.repeat(2000)}`, body: { title: 'x' } }] },
      { url: { code: 'validation_length_too_long', message: 'The length must be no more than 2000.', params: { max: 2000, min: 0 } } },
    ],
  ];
  for (const [body, itemErr] of bodies) {
    const res = await raw('/api/batch', { method: 'POST', body });
    assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
    assert.deepEqual(res.json, { data: { requests: { 0: itemErr } }, message: 'Invalid batch request data.', status: 400 });
  }

  // a valid method/url that is not a record write (GET, or another route) fails inside the transaction
  for (const item of [{ method: 'GET', url }, { method: 'POST', url: '/api/health' }]) {
    const res = await raw('/api/batch', { method: 'POST', body: { requests: [item] } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json, {
      data: {
        requests: {
          0: {
            code: 'batch_request_failed',
            message: 'Batch request failed.',
            response: { data: {}, message: 'Something went wrong while processing your request.', status: 400 },
          },
        },
      },
      message: 'Batch transaction failed.',
      status: 400,
    });
  }

  // unreadable bodies
  for (const body of ['{', '{"requests":{}}']) {
    const res = await fetch(`${BASE_URL}/api/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { data: {}, message: 'Failed to read the submitted batch data.', status: 400 });
  }
});

test('maxBodySize: a larger body gives 413', async () => {
  const c = await publicCollection();
  await withBatchSettings({ maxBodySize: 1000 }, async () => {
    const b = guest().createBatch();
    b.collection(c.name).create({ title: 'y'.repeat(2000) });
    const err = await expectError(() => b.send());
    assert.equal(err.status, 413);
    assert.deepEqual(err.response, { data: {}, message: 'Request entity too large.', status: 413 });

    const small = guest().createBatch();
    small.collection(c.name).create({ title: 'small' });
    assert.equal((await small.send())[0].status, 200);
  });
  assert.deepEqual(await titles(c.name), ['small']);
});
