// Basic auth: sign-up, password login, refresh, auth methods, bad tokens,
// password change, superuser login.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { getTokenPayload } from 'pocketbase';
import {
  superuser, guest, uniq, uniqEmail, expectError, raw, signUpAndLogin,
  SU_EMAIL, SU_PASSWORD, DATE_RE, ID_RE,
} from './helpers.mjs';

let su;
const PASSWORD = 'Auth-test-pass-1';
const NOT_FOUND = { data: {}, message: "The requested resource wasn't found.", status: 404 };
const AUTH_FAILED = { data: {}, message: 'Failed to authenticate.', status: 400 };
const NEED_AUTH = { data: {}, message: 'The request requires valid record authorization token.', status: 401 };

before(async () => {
  su = await superuser();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowSec = () => Math.floor(Date.now() / 1000);

test('sign-up via create returns the new user record', async () => {
  const email = uniqEmail('signup');
  const pb = guest();
  const r = await pb.collection('users').create({ email, password: PASSWORD, passwordConfirm: PASSWORD, name: 'Sign Up' });
  assert.match(r.id, ID_RE);
  assert.equal(r.collectionId, '_pb_users_auth_');
  assert.equal(r.collectionName, 'users');
  assert.equal(r.name, 'Sign Up');
  assert.equal(r.avatar, '');
  assert.equal(r.emailVisibility, false);
  assert.equal(r.verified, false);
  assert.match(r.created, DATE_RE);
  assert.match(r.updated, DATE_RE);
  // the creator is a guest and emailVisibility is false, so no email
  assert.deepEqual(Object.keys(r).sort(), [
    'avatar', 'collectionId', 'collectionName', 'created', 'emailVisibility', 'id', 'name', 'updated', 'verified',
  ]);
  assert.equal(pb.authStore.isValid, false, 'sign-up does not log in');

  const seen = await su.collection('users').getOne(r.id);
  assert.equal(seen.email, email);
  assert.equal('password' in seen, false);
  assert.equal('tokenKey' in seen, false);

  // with emailVisibility the response shows the email
  const email2 = uniqEmail('signup');
  const r2 = await guest().collection('users').create({ email: email2, password: PASSWORD, passwordConfirm: PASSWORD, emailVisibility: true });
  assert.equal(r2.email, email2);
});

test('sign-up validation errors', async () => {
  const users = guest().collection('users');
  const fail = async (body) => {
    const e = await expectError(() => users.create(body));
    assert.equal(e.status, 400);
    assert.equal(e.response.message, 'Failed to create record.');
    return e.response.data;
  };
  let d = await fail({ email: uniqEmail(), password: 'short', passwordConfirm: 'short' });
  assert.equal(d.password.code, 'validation_min_text_constraint');
  d = await fail({ email: uniqEmail(), password: PASSWORD, passwordConfirm: PASSWORD + 'x' });
  assert.deepEqual(d, { passwordConfirm: { code: 'validation_values_mismatch', message: "Values don't match." } });
  d = await fail({ email: 'not-an-email', password: PASSWORD, passwordConfirm: PASSWORD });
  assert.deepEqual(d, { email: { code: 'validation_is_email', message: 'Must be a valid email address.' } });
  d = await fail({ password: PASSWORD, passwordConfirm: PASSWORD });
  assert.deepEqual(d, { email: { code: 'validation_required', message: 'Cannot be blank.' } });
  d = await fail({ email: uniqEmail() });
  assert.equal(d.password.code, 'validation_required');

  const email = uniqEmail('dup');
  await users.create({ email, password: PASSWORD, passwordConfirm: PASSWORD });
  d = await fail({ email, password: PASSWORD, passwordConfirm: PASSWORD });
  assert.deepEqual(d, { email: { code: 'validation_not_unique', message: 'Value must be unique.' } });

  // only superusers/managers may set verified
  d = await fail({ email: uniqEmail(), password: PASSWORD, passwordConfirm: PASSWORD, verified: true });
  assert.equal(d.verified.code, 'validation_values_mismatch');
});

test('authWithPassword returns token + record and fills the auth store', async () => {
  const email = uniqEmail('login');
  await guest().collection('users').create({ email, password: PASSWORD, passwordConfirm: PASSWORD });
  const pb = guest();
  const res = await pb.collection('users').authWithPassword(email, PASSWORD);

  assert.deepEqual(Object.keys(res).sort(), ['record', 'token']);
  assert.equal(typeof res.token, 'string');
  assert.equal(res.token.split('.').length, 3);
  assert.equal(res.record.email, email, 'own email is always in the auth response');
  assert.equal(res.record.collectionName, 'users');
  assert.equal('password' in res.record, false);
  assert.equal('tokenKey' in res.record, false);

  const claims = getTokenPayload(res.token);
  assert.deepEqual(Object.keys(claims).sort(), ['collectionId', 'exp', 'id', 'refreshable', 'type']);
  assert.equal(claims.id, res.record.id);
  assert.equal(claims.collectionId, '_pb_users_auth_');
  assert.equal(claims.type, 'auth');
  assert.equal(claims.refreshable, true);
  assert.ok(Math.abs(claims.exp - (nowSec() + 432000)) < 120, 'default auth token lasts 5 days');

  assert.equal(pb.authStore.token, res.token);
  assert.equal(pb.authStore.record.id, res.record.id);
  assert.equal(pb.authStore.isValid, true);
  assert.equal(pb.authStore.isSuperuser, false);

  // the token works: the user can see itself
  const me = await pb.collection('users').getOne(res.record.id);
  assert.equal(me.email, email);

  // explicit identityField in the body
  const again = await raw('/api/collections/users/auth-with-password', {
    method: 'POST', body: { identity: email, password: PASSWORD, identityField: 'email' },
  });
  assert.equal(again.status, 200);
  assert.equal(again.json.record.id, res.record.id);
});

test('wrong password / unknown identity → 400 "Failed to authenticate."', async () => {
  const { email } = await signUpAndLogin('users');
  const pb = guest();
  const e1 = await expectError(() => pb.collection('users').authWithPassword(email, 'wrong-password'));
  assert.equal(e1.status, 400);
  assert.deepEqual(e1.response, AUTH_FAILED);
  assert.equal(pb.authStore.isValid, false);
  assert.equal(pb.authStore.token, '');

  const e2 = await expectError(() => pb.collection('users').authWithPassword(uniqEmail('nobody'), PASSWORD));
  assert.deepEqual(e2.response, AUTH_FAILED);

  const e3 = await expectError(() => pb.collection('users').authWithPassword('', ''));
  assert.equal(e3.status, 400);
  assert.equal(e3.response.message, 'An error occurred while validating the submitted data.');
  assert.equal(e3.response.data.identity.code, 'validation_required');
  assert.equal(e3.response.data.password.code, 'validation_required');

  const e4 = await raw('/api/collections/users/auth-with-password', {
    method: 'POST', body: { identity: email, password: PASSWORD, identityField: 'name' },
  });
  assert.equal(e4.status, 400);
  assert.equal(e4.json.data.identityField.code, 'validation_in_invalid');

  // a user of one auth collection can't log into another
  const e5 = await expectError(() => pb.collection('_superusers').authWithPassword(email, PASSWORD));
  assert.deepEqual(e5.response, AUTH_FAILED);
});

test('auth endpoints on a non-auth or unknown collection → 404', async () => {
  const base = await su.collections.create({ name: uniq('a_base') });
  const cases = [
    [base.name, 'Missing or invalid auth collection context.'],
    [uniq('a_missing'), 'Missing or invalid collection context.'],
  ];
  for (const [name, message] of cases) {
    const e = await expectError(() => guest().collection(name).authWithPassword('a@b.c', PASSWORD));
    assert.equal(e.status, 404, name);
    assert.deepEqual(e.response, { data: {}, message, status: 404 }, name);
    const m = await expectError(() => guest().collection(name).listAuthMethods());
    assert.equal(m.status, 404, name);
    assert.deepEqual(m.response, { data: {}, message, status: 404 }, name);
  }
  // auth-refresh checks the token's collection first
  const r1 = await expectError(() => su.collection(cases[1][0]).authRefresh());
  assert.deepEqual(r1.response, { data: {}, message: 'Missing or invalid collection context.', status: 404 });
  const r2 = await expectError(() => su.collection(base.name).authRefresh());
  assert.equal(r2.status, 403);
});

test('authRefresh issues a new valid token and record', async () => {
  const { pb, email, record } = await signUpAndLogin('users');
  const oldToken = pb.authStore.token;
  await sleep(1100); // exp has 1 s resolution
  const res = await pb.collection('users').authRefresh();
  assert.notEqual(res.token, oldToken);
  assert.equal(res.record.id, record.id);
  assert.equal(res.record.email, email);
  assert.equal(pb.authStore.token, res.token);
  assert.equal(pb.authStore.isValid, true);
  assert.ok(getTokenPayload(res.token).exp > getTokenPayload(oldToken).exp);

  // both tokens still authenticate
  const viaNew = await pb.collection('users').getOne(record.id);
  assert.equal(viaNew.id, record.id);
  const old = guest();
  old.authStore.save(oldToken, null);
  assert.equal((await old.collection('users').getOne(record.id)).id, record.id);
});

test('authRefresh without auth → 401; with another collection’s token → 403', async () => {
  const e1 = await expectError(() => guest().collection('users').authRefresh());
  assert.equal(e1.status, 401);
  assert.deepEqual(e1.response, NEED_AUTH);

  const e2 = await expectError(() => su.collection('users').authRefresh());
  assert.equal(e2.status, 403);
  assert.deepEqual(e2.response, {
    data: {}, message: 'The request requires auth record from _superusers collection.', status: 403,
  });
});

test('listAuthMethods: password auth with email identity', async () => {
  const m = await guest().collection('users').listAuthMethods();
  assert.deepEqual(m, {
    password: { enabled: true, identityFields: ['email'] },
    oauth2: { enabled: false, providers: [] },
    mfa: { enabled: false, duration: 0 },
    otp: { enabled: false, duration: 0 },
  });
  const s = await guest().collection('_superusers').listAuthMethods();
  assert.deepEqual(s.password, { enabled: true, identityFields: ['email'] });

  // without the SDK's fields= the legacy keys are present too
  const rawRes = await raw('/api/collections/users/auth-methods');
  assert.equal(rawRes.status, 200);
  assert.deepEqual(rawRes.json.authProviders, []);
  assert.equal(rawRes.json.usernamePassword, false);
  assert.equal(rawRes.json.emailPassword, true);
});

test('a bad Authorization token makes the caller a guest', async () => {
  const owned = await su.collections.create({
    name: uniq('a_owned'),
    listRule: 'owner = @request.auth.id',
    viewRule: 'owner = @request.auth.id',
    fields: [
      { name: 'title', type: 'text' },
      { name: 'owner', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
    ],
  });
  const pub = await su.collections.create({ name: uniq('a_pub'), listRule: '', viewRule: '', fields: [{ name: 'title', type: 'text' }] });
  const locked = await su.collections.create({ name: uniq('a_locked') });

  const { pb: user, record } = await signUpAndLogin('users');
  const mine = await su.collection(owned.name).create({ title: 'mine', owner: record.id });
  await su.collection(pub.name).create({ title: 'public' });

  // the real token works
  assert.equal((await user.collection(owned.name).getOne(mine.id)).title, 'mine');

  const [h, p] = user.authStore.token.split('.');
  const tampered = `${h}.${p}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`;
  for (const token of ['garbage', 'a.b.c', tampered]) {
    const pb = guest();
    pb.authStore.save(token, null);
    const list = await pb.collection(pub.name).getList();
    assert.equal(list.totalItems, 1, `${token}: public list still works`);
    const ownedList = await pb.collection(owned.name).getList();
    assert.equal(ownedList.totalItems, 0, `${token}: rule-filtered list is empty`);
    const e1 = await expectError(() => pb.collection(owned.name).getOne(mine.id));
    assert.equal(e1.status, 404, `${token}: rule-protected view`);
    assert.deepEqual(e1.response, NOT_FOUND);
    const e2 = await expectError(() => pb.collection(locked.name).getList());
    assert.equal(e2.status, 403, `${token}: superuser-only list`);
    const e3 = await expectError(() => pb.collections.getList());
    assert.equal(e3.status, 401, `${token}: collections API needs auth`);
    const e4 = await expectError(() => pb.collection('users').authRefresh());
    assert.equal(e4.status, 401, `${token}: refresh`);
    assert.deepEqual(e4.response, NEED_AUTH);
  }

  // the server also accepts "Bearer <token>"
  const bearer = await raw(`/api/collections/${owned.name}/records/${mine.id}`, { token: 'Bearer ' + user.authStore.token });
  assert.equal(bearer.status, 200);
  assert.equal(bearer.json.title, 'mine');
});

test('changing the password requires oldPassword and revokes old tokens', async () => {
  const { pb, email, password, record } = await signUpAndLogin('users');
  const users = pb.collection('users');
  const oldToken = pb.authStore.token;
  const newPassword = 'Changed-pass-2';

  const e1 = await expectError(() => users.update(record.id, { password: newPassword, passwordConfirm: newPassword }));
  assert.equal(e1.status, 400);
  assert.deepEqual(e1.response, {
    data: { oldPassword: { code: 'validation_required', message: 'Cannot be blank.' } },
    message: 'Failed to update record.',
    status: 400,
  });

  const e2 = await expectError(() => users.update(record.id, { password: newPassword, passwordConfirm: newPassword, oldPassword: 'wrong-old-pass' }));
  assert.equal(e2.status, 400);
  assert.deepEqual(e2.response, {
    data: { oldPassword: { code: 'validation_invalid_old_password', message: 'Missing or invalid old password.' } },
    message: 'Failed to update record.',
    status: 400,
  });

  const e3 = await expectError(() => users.update(record.id, { password: newPassword, passwordConfirm: newPassword + 'x', oldPassword: password }));
  assert.equal(e3.status, 400);
  assert.equal(e3.response.data.passwordConfirm.code, 'validation_values_mismatch');

  // the old password still works after the failed attempts
  await guest().collection('users').authWithPassword(email, password);

  const ok = await users.update(record.id, { password: newPassword, passwordConfirm: newPassword, oldPassword: password });
  assert.equal(ok.id, record.id);
  assert.equal(ok.email, email);
  assert.equal('password' in ok, false);

  // the old token no longer authenticates
  const stale = guest();
  stale.authStore.save(oldToken, record);
  const e4 = await expectError(() => stale.collection('users').authRefresh());
  assert.equal(e4.status, 401);
  assert.deepEqual(e4.response, NEED_AUTH);
  const e5 = await expectError(() => stale.collection('users').getOne(record.id));
  assert.equal(e5.status, 404, 'old token = guest, so the owner-only view is 404');

  // old password rejected, new one accepted
  const e6 = await expectError(() => guest().collection('users').authWithPassword(email, password));
  assert.deepEqual(e6.response, AUTH_FAILED);
  const fresh = guest();
  await fresh.collection('users').authWithPassword(email, newPassword);
  assert.equal((await fresh.collection('users').getOne(record.id)).id, record.id);

  // a superuser can set a password without oldPassword
  const third = 'Changed-pass-3';
  await su.collection('users').update(record.id, { password: third, passwordConfirm: third });
  await guest().collection('users').authWithPassword(email, third);
});

test('users cannot change their own email or verified flag directly', async () => {
  const { pb, email, record } = await signUpAndLogin('users');
  const e1 = await expectError(() => pb.collection('users').update(record.id, { email: uniqEmail('new') }));
  assert.equal(e1.status, 400);
  assert.equal(e1.response.message, 'Failed to update record.');
  assert.equal(e1.response.data.email.code, 'validation_values_mismatch');
  const e2 = await expectError(() => pb.collection('users').update(record.id, { verified: true }));
  assert.equal(e2.status, 400);
  assert.equal(e2.response.data.verified.code, 'validation_values_mismatch');

  // other fields are fine, and the SDK merges the result into its auth store
  const u = await pb.collection('users').update(record.id, { name: 'Renamed' });
  assert.equal(u.name, 'Renamed');
  assert.equal(pb.authStore.record.name, 'Renamed');
  assert.equal(pb.authStore.record.email, email);

  // a superuser may change both
  const newEmail = uniqEmail('su-set');
  const s = await su.collection('users').update(record.id, { email: newEmail, verified: true });
  assert.equal(s.email, newEmail);
  assert.equal(s.verified, true);
});

test('deleting your own account clears the SDK auth store', async () => {
  const { pb, email, password, record } = await signUpAndLogin('users');
  assert.equal(await pb.collection('users').delete(record.id), true);
  assert.equal(pb.authStore.isValid, false);
  assert.equal(pb.authStore.record, null);
  const e = await expectError(() => guest().collection('users').authWithPassword(email, password));
  assert.deepEqual(e.response, AUTH_FAILED);
});

test('superuser authWithPassword', async () => {
  const pb = guest();
  const res = await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  assert.equal(pb.authStore.isSuperuser, true);
  assert.equal(pb.authStore.isValid, true);
  assert.equal(res.record.email.toLowerCase(), SU_EMAIL.toLowerCase());
  assert.equal(res.record.collectionName, '_superusers');
  assert.equal(res.record.collectionId, 'pbc_3142635823');
  assert.equal('password' in res.record, false);
  assert.equal('tokenKey' in res.record, false);
  const claims = getTokenPayload(res.token);
  assert.equal(claims.type, 'auth');
  assert.equal(claims.collectionId, 'pbc_3142635823');
  assert.equal(claims.refreshable, true);
  assert.ok(Math.abs(claims.exp - (nowSec() + 86400)) < 120, 'superuser tokens last 1 day');

  // the token grants superuser access
  const list = await pb.collections.getList(1, 1);
  assert.ok(list.totalItems > 0);

  const e = await expectError(() => guest().collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD + 'x'));
  assert.equal(e.status, 400);
  assert.deepEqual(e.response, AUTH_FAILED);

  // a regular user is not a superuser
  const { pb: user } = await signUpAndLogin('users');
  assert.equal(user.authStore.isSuperuser, false);
});
