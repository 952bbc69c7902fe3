// API rules: owner-only rules, null (superuser only), "" (public),
// hidden fields and email visibility of auth records.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { superuser, guest, uniq, uniqEmail, expectError, signUpAndLogin } from './helpers.mjs';

let su;
let u1; // { pb, email, password, record }
let u2;

const SU_ONLY = { data: {}, message: 'Only superusers can perform this action.', status: 403 };
const NOT_FOUND = { data: {}, message: "The requested resource wasn't found.", status: 404 };
const CREATE_FAILED = { data: {}, message: 'Failed to create record.', status: 400 };

before(async () => {
  su = await superuser();
  u1 = await signUpAndLogin('users');
  u2 = await signUpAndLogin('users');
});

async function ownerCollection() {
  return su.collections.create({
    name: uniq('ru_notes'),
    listRule: 'author = @request.auth.id',
    viewRule: 'author = @request.auth.id',
    createRule: "@request.auth.id != ''",
    updateRule: 'author = @request.auth.id',
    deleteRule: 'author = @request.auth.id',
    fields: [
      { name: 'title', type: 'text' },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
    ],
  });
}

test('owner rules: list filters, view/update/delete of others is 404', async () => {
  const c = await ownerCollection();
  const n1 = await u1.pb.collection(c.name).create({ title: 'u1 note', author: u1.record.id });
  const n2 = await u2.pb.collection(c.name).create({ title: 'u2 note', author: u2.record.id });
  await u1.pb.collection(c.name).create({ title: 'u1 second', author: u1.record.id });

  // list: non-matching records are silently filtered out
  const l1 = await u1.pb.collection(c.name).getList(1, 30, { sort: 'title' });
  assert.deepEqual(l1.items.map((r) => r.title), ['u1 note', 'u1 second']);
  assert.equal(l1.totalItems, 2);
  const l2 = await u2.pb.collection(c.name).getFullList();
  assert.deepEqual(l2.map((r) => r.title), ['u2 note']);
  const lg = await guest().collection(c.name).getList();
  assert.deepEqual(lg, { items: [], page: 1, perPage: 30, totalItems: 0, totalPages: 0 });
  const ls = await su.collection(c.name).getList();
  assert.equal(ls.totalItems, 3, 'superuser bypasses rules');

  // a client filter is ANDed with the rule
  const lf = await u1.pb.collection(c.name).getList(1, 30, { filter: "title ~ 'note'" });
  assert.deepEqual(lf.items.map((r) => r.title), ['u1 note']);
  const lf2 = await u1.pb.collection(c.name).getList(1, 30, { filter: `id = '${n2.id}'` });
  assert.equal(lf2.totalItems, 0);

  // view
  assert.equal((await u1.pb.collection(c.name).getOne(n1.id)).title, 'u1 note');
  for (const [who, pb] of [['other user', u2.pb], ['guest', guest()]]) {
    const e = await expectError(() => pb.collection(c.name).getOne(n1.id));
    assert.equal(e.status, 404, who);
    assert.deepEqual(e.response, NOT_FOUND, who);
  }
  assert.equal((await su.collection(c.name).getOne(n1.id)).title, 'u1 note');

  // update / delete by someone else: 404 and nothing changes
  const eu = await expectError(() => u2.pb.collection(c.name).update(n1.id, { title: 'hacked' }));
  assert.equal(eu.status, 404);
  assert.deepEqual(eu.response, NOT_FOUND);
  const ed = await expectError(() => u2.pb.collection(c.name).delete(n1.id));
  assert.equal(ed.status, 404);
  assert.deepEqual(ed.response, NOT_FOUND);
  const eg = await expectError(() => guest().collection(c.name).delete(n1.id));
  assert.equal(eg.status, 404);
  assert.equal((await su.collection(c.name).getOne(n1.id)).title, 'u1 note');

  // owner can update and delete
  const upd = await u1.pb.collection(c.name).update(n1.id, { title: 'u1 edited' });
  assert.equal(upd.title, 'u1 edited');
  assert.equal(await u1.pb.collection(c.name).delete(n1.id), true);
  const gone = await expectError(() => su.collection(c.name).getOne(n1.id));
  assert.equal(gone.status, 404);
});

test('create rule failing gives 400 "Failed to create record."', async () => {
  const c = await ownerCollection();
  const e = await expectError(() => guest().collection(c.name).create({ title: 'anon' }));
  assert.equal(e.status, 400);
  assert.deepEqual(e.response, CREATE_FAILED);
  assert.equal((await su.collection(c.name).getList()).totalItems, 0, 'nothing was created');

  // a rule that inspects the would-be record and the request body
  const strict = await su.collections.create({
    name: uniq('ru_strict'),
    listRule: '',
    createRule: "author = @request.auth.id && @request.body.title != 'forbidden'",
    fields: [
      { name: 'title', type: 'text' },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
    ],
  });
  const e1 = await expectError(() => u1.pb.collection(strict.name).create({ title: 'x', author: u2.record.id }));
  assert.equal(e1.status, 400);
  assert.deepEqual(e1.response, CREATE_FAILED);
  const e2 = await expectError(() => u1.pb.collection(strict.name).create({ title: 'forbidden', author: u1.record.id }));
  assert.equal(e2.status, 400);
  const ok = await u1.pb.collection(strict.name).create({ title: 'fine', author: u1.record.id });
  assert.equal(ok.title, 'fine');
  assert.equal((await guest().collection(strict.name).getList()).totalItems, 1);
});

test('update rule sees stored values and @request.body', async () => {
  const c = await su.collections.create({
    name: uniq('ru_upd'),
    listRule: '',
    viewRule: '',
    updateRule: "locked = false && @request.body.title != 'nope'",
    fields: [
      { name: 'title', type: 'text' },
      { name: 'locked', type: 'bool' },
    ],
  });
  const open = await su.collection(c.name).create({ title: 'open', locked: false });
  const locked = await su.collection(c.name).create({ title: 'locked', locked: true });
  const g = guest();

  assert.equal((await g.collection(c.name).update(open.id, { title: 'changed' })).title, 'changed');
  const e1 = await expectError(() => g.collection(c.name).update(open.id, { title: 'nope' }));
  assert.equal(e1.status, 404);
  const e2 = await expectError(() => g.collection(c.name).update(locked.id, { title: 'x' }));
  assert.equal(e2.status, 404);
  assert.deepEqual(e2.response, NOT_FOUND);
  assert.equal((await g.collection(c.name).getOne(locked.id)).title, 'locked');
});

test('null rules: 403 for guests and users, superuser allowed', async () => {
  const c = await su.collections.create({ name: uniq('ru_locked'), fields: [{ name: 'title', type: 'text' }] });
  const rec = await su.collection(c.name).create({ title: 'only su' });

  for (const [who, pb] of [['guest', guest()], ['user', u1.pb]]) {
    const col = pb.collection(c.name);
    const calls = {
      getList: () => col.getList(),
      getOne: () => col.getOne(rec.id),
      getOneMissing: () => col.getOne('missingmissing1'),
      create: () => col.create({ title: 'x' }),
      update: () => col.update(rec.id, { title: 'x' }),
      delete: () => col.delete(rec.id),
    };
    for (const [label, call] of Object.entries(calls)) {
      const e = await expectError(call);
      assert.equal(e.status, 403, `${who} ${label}`);
      assert.deepEqual(e.response, SU_ONLY, `${who} ${label}`);
    }
  }

  const col = su.collection(c.name);
  assert.equal((await col.getList()).totalItems, 1);
  assert.equal((await col.getOne(rec.id)).title, 'only su');
  const made = await col.create({ title: 'su made' });
  assert.equal((await col.update(made.id, { title: 'su edit' })).title, 'su edit');
  assert.equal(await col.delete(made.id), true);
});

test('empty-string rules make every action public', async () => {
  const c = await su.collections.create({
    name: uniq('ru_public'),
    listRule: '',
    viewRule: '',
    createRule: '',
    updateRule: '',
    deleteRule: '',
    fields: [{ name: 'title', type: 'text' }],
  });
  const g = guest().collection(c.name);
  const r = await g.create({ title: 'anon' });
  assert.equal(r.title, 'anon');
  assert.equal((await g.getList()).totalItems, 1);
  assert.equal((await g.getOne(r.id)).title, 'anon');
  assert.equal((await g.update(r.id, { title: 'anon2' })).title, 'anon2');
  assert.equal((await u1.pb.collection(c.name).getOne(r.id)).title, 'anon2');
  assert.equal(await g.delete(r.id), true);
  assert.equal((await g.getList()).totalItems, 0);
});

test('mixed rules: listing allowed, viewing needs auth', async () => {
  const c = await su.collections.create({
    name: uniq('ru_mixed'),
    listRule: '',
    viewRule: "@request.auth.id != ''",
    fields: [{ name: 'title', type: 'text' }],
  });
  const r = await su.collection(c.name).create({ title: 'x' });
  assert.equal((await guest().collection(c.name).getList()).totalItems, 1);
  const e = await expectError(() => guest().collection(c.name).getOne(r.id));
  assert.equal(e.status, 404);
  assert.equal((await u1.pb.collection(c.name).getOne(r.id)).title, 'x');
  // create is still superuser-only (null)
  const ec = await expectError(() => u1.pb.collection(c.name).create({ title: 'y' }));
  assert.equal(ec.status, 403);
});

test('hidden fields: invisible and unwritable for non-superusers, visible to superuser', async () => {
  const c = await su.collections.create({
    name: uniq('ru_hidden'),
    listRule: '',
    viewRule: '',
    createRule: '',
    updateRule: '',
    fields: [
      { name: 'title', type: 'text' },
      { name: 'secret', type: 'text', hidden: true },
    ],
  });
  assert.equal(c.fields.find((f) => f.name === 'secret').hidden, true);

  const bySu = await su.collection(c.name).create({ title: 'su', secret: 's3cr3t' });
  assert.equal(bySu.secret, 's3cr3t', 'superuser sees hidden fields');

  const g = guest().collection(c.name);
  const view = await g.getOne(bySu.id);
  assert.equal('secret' in view, false);
  assert.equal(view.title, 'su');
  const list = await g.getList();
  assert.equal(list.items.every((r) => !('secret' in r)), true);
  const asUser = await u1.pb.collection(c.name).getOne(bySu.id);
  assert.equal('secret' in asUser, false);

  // values for hidden fields sent by non-superusers are dropped
  const byGuest = await g.create({ title: 'guest', secret: 'guest-secret' });
  assert.equal('secret' in byGuest, false);
  assert.equal((await su.collection(c.name).getOne(byGuest.id)).secret, '');
  await g.update(bySu.id, { secret: 'overwritten?' });
  assert.equal((await su.collection(c.name).getOne(bySu.id)).secret, 's3cr3t');

  // non-superusers can't filter or sort by a hidden field
  const ef = await expectError(() => g.getList(1, 30, { filter: "secret = 's3cr3t'" }));
  assert.equal(ef.status, 400);
  const es = await expectError(() => g.getList(1, 30, { sort: 'secret' }));
  assert.equal(es.status, 400);
  const sf = await su.collection(c.name).getList(1, 30, { filter: "secret = 's3cr3t'" });
  assert.equal(sf.totalItems, 1);

  const full = await su.collection(c.name).getFullList({ sort: 'title' });
  assert.deepEqual(full.map((r) => r.secret), ['', 's3cr3t']);
});

test('emailVisibility: email hidden from others unless visible; always visible to self and superuser', async () => {
  const c = await su.collections.create({
    name: uniq('ru_members'),
    type: 'auth',
    listRule: '',
    viewRule: '',
    createRule: '',
    updateRule: 'id = @request.auth.id',
    fields: [{ name: 'nick', type: 'text' }],
  });
  const password = 'Members-pass-1';
  const mk = async (nick, emailVisibility) => {
    const email = uniqEmail(nick);
    const r = await guest().collection(c.name).create({ email, password, passwordConfirm: password, nick, emailVisibility });
    return { email, r };
  };
  const shy = await mk('shy', false);
  const open = await mk('open', true);

  // the sign-up response follows the same rule (the creator is a guest)
  assert.equal('email' in shy.r, false);
  assert.equal(shy.r.emailVisibility, false);
  assert.equal(shy.r.verified, false);
  assert.equal(open.r.email, open.email);
  for (const r of [shy.r, open.r]) {
    assert.equal('password' in r, false);
    assert.equal('tokenKey' in r, false);
    assert.equal('passwordConfirm' in r, false);
  }

  // guest
  const byNick = (list) => Object.fromEntries(list.map((r) => [r.nick, r]));
  const gl = byNick(await guest().collection(c.name).getFullList());
  assert.equal('email' in gl.shy, false);
  assert.equal(gl.open.email, open.email);
  assert.equal('email' in (await guest().collection(c.name).getOne(shy.r.id)), false);

  // logged in as shy: sees own email and the visible one
  const me = guest();
  const auth = await me.collection(c.name).authWithPassword(shy.email, password);
  assert.equal(auth.record.email, shy.email, 'auth response always carries the own email');
  const ml = byNick(await me.collection(c.name).getFullList());
  assert.equal(ml.shy.email, shy.email);
  assert.equal(ml.open.email, open.email);

  // logged in as open: does not see shy's email
  const other = guest();
  await other.collection(c.name).authWithPassword(open.email, password);
  const ol = byNick(await other.collection(c.name).getFullList());
  assert.equal('email' in ol.shy, false);
  assert.equal('email' in (await other.collection(c.name).getOne(shy.r.id)), false);

  // a user of another collection doesn't either
  assert.equal('email' in (await u1.pb.collection(c.name).getOne(shy.r.id)), false);

  // superuser sees all
  const sl = byNick(await su.collection(c.name).getFullList());
  assert.equal(sl.shy.email, shy.email);
  assert.equal(sl.open.email, open.email);
  assert.equal('password' in sl.shy, false);
  assert.equal('tokenKey' in sl.shy, false);

  // turning visibility on makes it public
  await me.collection(c.name).update(shy.r.id, { emailVisibility: true });
  assert.equal((await guest().collection(c.name).getOne(shy.r.id)).email, shy.email);
});

test('default users collection: users only see themselves', async () => {
  const c = await su.collections.getOne('users');
  assert.equal(c.listRule, 'id = @request.auth.id');
  assert.equal(c.viewRule, 'id = @request.auth.id');
  assert.equal(c.createRule, '');
  assert.equal(c.updateRule, 'id = @request.auth.id');
  assert.equal(c.deleteRule, 'id = @request.auth.id');

  const l = await u1.pb.collection('users').getFullList();
  assert.deepEqual(l.map((r) => r.id), [u1.record.id]);
  assert.equal(l[0].email, u1.email, 'own email visible');
  const e = await expectError(() => u1.pb.collection('users').getOne(u2.record.id));
  assert.equal(e.status, 404);
  assert.deepEqual((await guest().collection('users').getList()).items, []);
  const eu = await expectError(() => u1.pb.collection('users').update(u2.record.id, { name: 'x' }));
  assert.equal(eu.status, 404);
});
