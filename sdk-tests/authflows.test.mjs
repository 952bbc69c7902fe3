// Auth flows of the PocketBase protocol, end to end through the SDK, with a
// real SMTP server (smtp.mjs) and a real OAuth2 provider (oauth-provider.mjs):
// OAuth2 code + popup flows, external auths, OTP, MFA, verification,
// password reset, email change, impersonation and enumeration protection.
//
// Every test uses its own auth collection (uniq()) so that per-record and
// per-collection limits never leak between tests. Settings changed here
// (smtp, meta.appURL) are restored in after().
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { getTokenPayload } from 'pocketbase';
import { superuser, guest, uniq, uniqEmail, expectError, raw, BASE_URL, ID_RE } from './helpers.mjs';
import { startSmtp, configureSmtp } from './smtp.mjs';
import { startOAuthProvider } from './oauth-provider.mjs';

// The SDK's popup OAuth2 flow uses realtime; Node 20 has no global EventSource.
globalThis.EventSource = EventSource;

const PASSWORD = 'Flows-pass-1234';
const NEW_PASSWORD = 'Flows-pass-5678';
const AUTH_FAILED = { data: {}, message: 'Failed to authenticate.', status: 400 };
const JWT = '[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+';

let su;
let smtp;
let op; // OAuth2 provider ("google" userinfo shape)
let restoreSettings;

before(async () => {
  su = await superuser();
  smtp = await startSmtp();
  restoreSettings = await configureSmtp(su, smtp, BASE_URL);
  op = await startOAuthProvider({ kind: 'google' });
});

after(async () => {
  try {
    if (restoreSettings) await su.settings.update(restoreSettings);
  } finally {
    await smtp?.close();
    await op?.close();
  }
});

const nowSec = () => Math.floor(Date.now() / 1000);

/** A fresh auth collection. `opts` are merged into the collection body. */
async function authCollection(opts = {}) {
  const name = uniq('af');
  await su.collections.create({
    name,
    type: 'auth',
    fields: [
      { name: 'name', type: 'text' },
      { name: 'avatar', type: 'file', maxSelect: 1, mimeTypes: ['image/png', 'image/jpeg'] },
    ],
    listRule: 'id = @request.auth.id',
    viewRule: 'id = @request.auth.id',
    createRule: '',
    updateRule: 'id = @request.auth.id',
    ...opts,
  });
  return name;
}

/** Create a user directly as superuser (optionally verified). */
async function makeUser(coll, { email = uniqEmail('af'), verified = false, ...extra } = {}) {
  const rec = await su.collection(coll).create({ email, password: PASSWORD, passwordConfirm: PASSWORD, verified, ...extra });
  return { email, id: rec.id, record: rec };
}

/** Extract a JWT that follows `path/` in a mail (the default templates put it in a URL). */
function tokenFromMail(mail, path) {
  const m = new RegExp(`${path}/(${JWT})`).exec(mail.text) || new RegExp(`${path}/(${JWT})`).exec(mail.html);
  assert.ok(m, `no ${path} token in mail: ${mail.text}`);
  return m[1];
}

/** Extract the OTP code from the default OTP mail. */
function codeFromMail(mail) {
  const m = /one-time password is:?\s*(?:<strong>)?\s*(\d{4,})/i.exec(mail.text) || /(\d{6,})/.exec(mail.text);
  assert.ok(m, `no OTP code in mail: ${mail.text}`);
  return m[1];
}

/**
 * Run the provider part of the code flow: read the provider's authURL from
 * auth-methods, append the redirect URL, let the provider sign `sub` in and
 * return {code, codeVerifier, redirectURL}.
 */
async function oauthCode(pb, coll, sub, providerName = 'google', redirectURL = `${BASE_URL}/oauth-test-callback`) {
  const methods = await pb.collection(coll).listAuthMethods();
  const p = methods.oauth2.providers.find((x) => x.name === providerName);
  assert.ok(p, `provider ${providerName} missing in auth-methods: ${JSON.stringify(methods.oauth2)}`);
  assert.ok(p.authURL.endsWith('redirect_uri='), `authURL must end with redirect_uri=: ${p.authURL}`);
  const { code, state } = await op.authorize(p.authURL + encodeURIComponent(redirectURL), { loginHint: sub });
  assert.equal(state, p.state, 'state round-trips through the provider');
  assert.ok(code);
  return { code, codeVerifier: p.codeVerifier, redirectURL, provider: p };
}

function googleProvider(extra = {}) {
  return { ...op.providerConfig('google'), ...extra };
}

// ---------------------------------------------------------------------------
// OAuth2

test('auth-methods lists a configured OAuth2 provider with PKCE data', async () => {
  const coll = await authCollection({ oauth2: { enabled: true, providers: [googleProvider()] } });
  const methods = await guest().collection(coll).listAuthMethods();
  assert.equal(methods.oauth2.enabled, true);
  assert.equal(methods.oauth2.providers.length, 1);
  const p = methods.oauth2.providers[0];
  assert.equal(p.name, 'google');
  assert.equal(p.displayName, 'Google');
  assert.equal(p.codeChallengeMethod, 'S256');
  assert.match(p.state, /^[A-Za-z0-9]{30}$/);
  assert.match(p.codeVerifier, /^[A-Za-z0-9]{43}$/);
  const { createHash } = await import('node:crypto');
  assert.equal(p.codeChallenge, createHash('sha256').update(p.codeVerifier).digest('base64url'));
  const u = new URL(p.authURL);
  assert.equal(`${u.origin}${u.pathname}`, op.authURL);
  assert.equal(u.searchParams.get('client_id'), op.clientId);
  assert.equal(u.searchParams.get('state'), p.state);
  assert.equal(u.searchParams.get('code_challenge'), p.codeChallenge);
  assert.equal(u.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(u.searchParams.get('response_type'), 'code');
  assert.ok(p.authURL.endsWith('&redirect_uri='));
  assert.equal('clientSecret' in p, false);
  assert.ok(!JSON.stringify(methods).includes(op.clientSecret), 'the client secret never leaks');
});

test('OAuth2 code flow: sign-up, second login, external auths, unlink', async () => {
  const coll = await authCollection({
    oauth2: { enabled: true, providers: [googleProvider()], mappedFields: { name: 'name', avatarURL: 'avatar' } },
  });
  const email = uniqEmail('oa');
  const user = op.addUser({ sub: `g-${uniq()}`, email, name: 'Olga Auth' });

  // 1st login: creates the record
  const pb = guest();
  let c = await oauthCode(pb, coll, user.sub);
  const first = await pb.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(first.meta.isNew, true);
  assert.equal(first.meta.id, user.sub);
  assert.equal(first.meta.email, email);
  assert.equal(first.meta.name, 'Olga Auth');
  assert.equal(first.meta.avatarURL, user.avatar);
  assert.match(first.meta.accessToken, /^at-/);
  assert.match(first.meta.refreshToken, /^rt-/);
  assert.match(first.meta.expiry, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.deepEqual(first.meta.rawUser, op.userInfo(user));
  assert.match(first.record.id, ID_RE);
  assert.equal(first.record.email, email);
  assert.equal(first.record.verified, true, 'the provider verified the email');
  assert.equal(first.record.name, 'Olga Auth', 'mappedFields.name');
  // PocketBase only downloads the avatar from public addresses (it refuses
  // loopback/private IPs), so with a local provider the file stays empty;
  // either way a failed avatar download must not block the sign-up.
  assert.equal(typeof first.record.avatar, 'string');
  assert.equal(pb.authStore.token, first.token);
  assert.equal(pb.authStore.record.id, first.record.id);
  const claims = getTokenPayload(first.token);
  assert.equal(claims.type, 'auth');
  assert.equal(claims.id, first.record.id);
  assert.equal(claims.refreshable, true);

  // the provider saw a proper token request (PKCE verified, our redirect URL)
  const tokenReq = op.log.filter((e) => e.path === '/token').at(-1);
  assert.equal(tokenReq.status, 200);
  assert.equal(tokenReq.pkceVerified, true);
  assert.equal(new URLSearchParams(tokenReq.body).get('redirect_uri'), c.redirectURL);

  // 2nd login: same record
  const pb2 = guest();
  c = await oauthCode(pb2, coll, user.sub);
  const second = await pb2.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(second.meta.isNew, false);
  assert.equal(second.record.id, first.record.id);
  assert.equal((await su.collection(coll).getFullList()).length, 1);

  // a used code cannot be replayed
  const replay = await expectError(() => guest().collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL));
  assert.equal(replay.status, 400);

  // external auths: visible to the owner
  const ext = await pb2.collection(coll).listExternalAuths(first.record.id);
  assert.equal(ext.length, 1);
  assert.equal(ext[0].provider, 'google');
  assert.equal(ext[0].providerId, user.sub);
  assert.equal(ext[0].recordRef, first.record.id);
  assert.match(ext[0].collectionRef, /\S/);

  // ... but not to someone else
  const other = await makeUser(coll);
  const pbOther = guest();
  await pbOther.collection(coll).authWithPassword(other.email, PASSWORD);
  assert.deepEqual(await pbOther.collection(coll).listExternalAuths(first.record.id), []);

  // unlink
  assert.equal(await pb2.collection(coll).unlinkExternalAuth(first.record.id, 'google'), true);
  assert.deepEqual(await pb2.collection(coll).listExternalAuths(first.record.id), []);

  // after unlinking, the next OAuth2 login finds the record again by its (verified) email
  const pb3 = guest();
  c = await oauthCode(pb3, coll, user.sub);
  const third = await pb3.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(third.record.id, first.record.id);
  assert.equal(third.meta.isNew, false);
  assert.equal((await pb3.collection(coll).listExternalAuths(first.record.id)).length, 1);
});

test('OAuth2 links to an existing account with the same email', async () => {
  const coll = await authCollection({ oauth2: { enabled: true, providers: [googleProvider()] } });

  // verified account: linked, password kept
  const verified = await makeUser(coll, { verified: true });
  const gv = op.addUser({ sub: `g-${uniq()}`, email: verified.email, name: 'V' });
  let pb = guest();
  let c = await oauthCode(pb, coll, gv.sub);
  let res = await pb.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(res.meta.isNew, false);
  assert.equal(res.record.id, verified.id);
  const ext = await su.collection('_externalAuths').getFullList({ filter: `recordRef = "${verified.id}"` });
  assert.equal(ext.length, 1);
  assert.equal(ext[0].providerId, gv.sub);
  await guest().collection(coll).authWithPassword(verified.email, PASSWORD); // still works

  // unverified account: linked and verified, but its password is reset
  // (someone else may have registered with that email)
  const unverified = await makeUser(coll, { verified: false });
  const gu = op.addUser({ sub: `g-${uniq()}`, email: unverified.email, name: 'U' });
  pb = guest();
  c = await oauthCode(pb, coll, gu.sub);
  res = await pb.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(res.meta.isNew, false);
  assert.equal(res.record.id, unverified.id);
  assert.equal(res.record.verified, true);
  const e = await expectError(() => guest().collection(coll).authWithPassword(unverified.email, PASSWORD));
  assert.deepEqual(e.response, AUTH_FAILED);

  // an unverified provider email is not used for linking (nor as the new
  // record's email, which is required here, so the sign-up fails)
  const gx = op.addUser({ sub: `g-${uniq()}`, email: verified.email, emailVerified: false, name: 'X' });
  pb = guest();
  c = await oauthCode(pb, coll, gx.sub);
  const ex = await expectError(() => pb.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL));
  assert.equal(ex.status, 400);
  assert.equal(ex.response.data.email?.code, 'validation_required', JSON.stringify(ex.response));
  const links = await su.collection('_externalAuths').getFullList({ filter: `providerId = "${gx.sub}"` });
  assert.deepEqual(links, []);
});

test('OAuth2 links the provider to the currently authenticated record', async () => {
  const coll = await authCollection({ oauth2: { enabled: true, providers: [googleProvider()] } });
  const u = await makeUser(coll);
  const g = op.addUser({ sub: `g-${uniq()}`, email: uniqEmail('elsewhere'), name: 'Else' });
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);
  const c = await oauthCode(pb, coll, g.sub);
  const res = await pb.collection(coll).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL);
  assert.equal(res.meta.isNew, false);
  assert.equal(res.record.id, u.id);
  assert.equal(res.record.email, u.email, 'the email is not replaced');
  const ext = await pb.collection(coll).listExternalAuths(u.id);
  assert.deepEqual(ext.map((x) => [x.provider, x.providerId]), [['google', g.sub]]);
});

test('OAuth2 sign-up honours createRule and createData', async () => {
  // createRule null: only superusers may create, so OAuth2 sign-up fails
  const locked = await authCollection({ createRule: null, oauth2: { enabled: true, providers: [googleProvider()] } });
  const g1 = op.addUser({ sub: `g-${uniq()}`, email: uniqEmail('locked') });
  let pb = guest();
  let c = await oauthCode(pb, locked, g1.sub);
  let e = await expectError(() => pb.collection(locked).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL));
  assert.deepEqual(e.response, { data: {}, message: 'Only superusers can perform this action.', status: 403 });
  assert.equal(pb.authStore.isValid, false);
  assert.equal((await su.collection(locked).getFullList()).length, 0);

  // createRule evaluated against createData
  const ruled = await authCollection({
    createRule: "@request.body.name = 'allowed'",
    oauth2: { enabled: true, providers: [googleProvider()] },
  });
  const g2 = op.addUser({ sub: `g-${uniq()}`, email: uniqEmail('ruled') });
  pb = guest();
  c = await oauthCode(pb, ruled, g2.sub);
  e = await expectError(() => pb.collection(ruled).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL, { name: 'denied' }));
  assert.deepEqual(e.response, { data: {}, message: 'Failed to create record.', status: 400 });
  assert.equal((await su.collection(ruled).getFullList()).length, 0);
  pb = guest();
  c = await oauthCode(pb, ruled, g2.sub);
  const res = await pb.collection(ruled).authWithOAuth2Code('google', c.code, c.codeVerifier, c.redirectURL, { name: 'allowed' });
  assert.equal(res.meta.isNew, true);
  assert.equal(res.record.name, 'allowed');
});

test('OAuth2 errors', async () => {
  const coll = await authCollection({ oauth2: { enabled: true, providers: [googleProvider()] } });
  const pb = guest();

  let e = await expectError(() => pb.collection(coll).authWithOAuth2Code('nope', 'code', 'verifier', 'http://127.0.0.1/cb'));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.provider.code, 'validation_invalid_provider');

  e = await expectError(() => pb.collection(coll).authWithOAuth2Code('google', 'not-a-real-code', 'verifier', 'http://127.0.0.1/cb'));
  assert.deepEqual(e.response, { data: {}, message: 'Failed to fetch OAuth2 token.', status: 400 });

  // wrong PKCE verifier: the provider refuses the exchange
  const g = op.addUser({ sub: `g-${uniq()}`, email: uniqEmail('pkce') });
  const c = await oauthCode(pb, coll, g.sub);
  e = await expectError(() => pb.collection(coll).authWithOAuth2Code('google', c.code, 'x'.repeat(43), c.redirectURL));
  assert.deepEqual(e.response, { data: {}, message: 'Failed to fetch OAuth2 token.', status: 400 });

  // OAuth2 disabled on the collection
  const off = await authCollection();
  e = await expectError(() => pb.collection(off).authWithOAuth2Code('google', 'code', 'verifier', 'http://127.0.0.1/cb'));
  assert.deepEqual(e.response, { data: {}, message: 'The collection is not configured to allow OAuth2 authentication.', status: 403 });

  // the redirect endpoint with an unknown state
  const res = await fetch(`${BASE_URL}/api/oauth2-redirect?state=unknown-state&code=abc`, { redirect: 'manual' });
  assert.equal(res.status, 307);
  assert.match(res.headers.get('location'), /oauth2-redirect-failure/);
});

test('OAuth2 popup flow through the realtime @oauth2 subscription', async () => {
  const coll = await authCollection({ oauth2: { enabled: true, providers: [googleProvider()] } });
  const email = uniqEmail('popup');
  const g = op.addUser({ sub: `g-${uniq()}`, email, name: 'Pop Up' });
  op.login(g.sub);

  const pb = guest();
  let opened = null;
  const res = await pb.collection(coll).authWithOAuth2({
    provider: 'google',
    urlCallback: async (url) => {
      opened = url;
      // plays the browser: provider → /api/oauth2-redirect → (redirect page)
      const r = await fetch(url);
      await r.arrayBuffer();
    },
  });
  assert.ok(opened.startsWith(op.authURL));
  const u = new URL(opened);
  assert.equal(u.searchParams.get('redirect_uri'), `${BASE_URL}/api/oauth2-redirect`);
  assert.equal(res.meta.isNew, true);
  assert.equal(res.meta.email, email);
  assert.equal(res.record.email, email);
  assert.equal(pb.authStore.record.id, res.record.id);
  assert.equal(pb.authStore.isValid, true);

  // the provider received redirect_uri = <base>/api/oauth2-redirect at the token exchange too
  const tokenReq = op.log.filter((e) => e.path === '/token').at(-1);
  assert.equal(new URLSearchParams(tokenReq.body).get('redirect_uri'), `${BASE_URL}/api/oauth2-redirect`);
  assert.equal(tokenReq.pkceVerified, true);

  // a second popup login: same record
  const pb2 = guest();
  const again = await pb2.collection(coll).authWithOAuth2({ provider: 'google', urlCallback: async (url) => { await (await fetch(url)).arrayBuffer(); } });
  assert.equal(again.meta.isNew, false);
  assert.equal(again.record.id, res.record.id);
});

// ---------------------------------------------------------------------------
// OTP and MFA

test('OTP: requestOTP mails a code, authWithOTP signs in and verifies', async () => {
  const coll = await authCollection({ otp: { enabled: true, duration: 180, length: 8 } });
  const u = await makeUser(coll, { verified: false });
  const pb = guest();
  const since = smtp.mark();
  const { otpId } = await pb.collection(coll).requestOTP(u.email);
  assert.match(otpId, ID_RE);
  const mail = await smtp.waitForMailTo(u.email, /OTP/i, { since });
  const code = codeFromMail(mail);
  assert.match(code, /^\d{8}$/);

  // wrong code first
  const e = await expectError(() => pb.collection(coll).authWithOTP(otpId, code === '00000000' ? '11111111' : '00000000'));
  assert.deepEqual(e.response, { data: {}, message: 'Invalid or expired OTP.', status: 400 });

  const res = await pb.collection(coll).authWithOTP(otpId, code);
  assert.equal(res.record.id, u.id);
  assert.equal(res.record.verified, true, 'an OTP sent to the record email verifies it');
  assert.equal(pb.authStore.record.id, u.id);
  assert.equal(getTokenPayload(res.token).type, 'auth');

  // the OTP is single use
  const reuse = await expectError(() => guest().collection(coll).authWithOTP(otpId, code));
  assert.equal(reuse.status, 400);

  // unknown email: still an otpId, same shape
  const fake = await guest().collection(coll).requestOTP(uniqEmail('nobody'));
  assert.deepEqual(Object.keys(fake), ['otpId']);
  assert.match(fake.otpId, ID_RE);
  const e2 = await expectError(() => guest().collection(coll).authWithOTP(fake.otpId, '12345678'));
  assert.deepEqual(e2.response, { data: {}, message: 'Invalid or expired OTP.', status: 400 });
});

test('OTP: disabled collection, validation and the per-record attempt limit', async () => {
  const off = await authCollection();
  let e = await expectError(() => guest().collection(off).requestOTP(uniqEmail()));
  assert.deepEqual(e.response, { data: {}, message: 'The collection is not configured to allow OTP authentication.', status: 403 });

  const coll = await authCollection({ otp: { enabled: true } });
  e = await expectError(() => guest().collection(coll).requestOTP('not-an-email'));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.email.code, 'validation_is_email');

  const u = await makeUser(coll);
  const { otpId } = await guest().collection(coll).requestOTP(u.email);
  for (let i = 1; i <= 5; i++) {
    e = await expectError(() => guest().collection(coll).authWithOTP(otpId, '0'));
    assert.equal(e.status, 400, `attempt ${i}`);
  }
  e = await expectError(() => guest().collection(coll).authWithOTP(otpId, '0'));
  assert.deepEqual(e.response, { data: {}, message: 'Too many attempts, please try again later with a new OTP.', status: 429 });
});

test('MFA: password then OTP', async () => {
  const coll = await authCollection({ otp: { enabled: true }, mfa: { enabled: true, duration: 600 } });
  const u = await makeUser(coll);
  const pb = guest();

  const methods = await pb.collection(coll).listAuthMethods();
  assert.deepEqual(methods.mfa, { enabled: true, duration: 600 });
  assert.equal(methods.otp.enabled, true);

  // first factor: 401 with an mfaId only
  let e = await expectError(() => pb.collection(coll).authWithPassword(u.email, PASSWORD));
  assert.equal(e.status, 401);
  assert.deepEqual(Object.keys(e.response), ['mfaId']);
  const { mfaId } = e.response;
  assert.match(mfaId, ID_RE);
  assert.equal(pb.authStore.isValid, false);

  // wrong password is still a plain auth failure (no mfaId)
  e = await expectError(() => pb.collection(coll).authWithPassword(u.email, 'wrong-password'));
  assert.deepEqual(e.response, AUTH_FAILED);

  // the same method again is refused
  e = await expectError(() => pb.collection(coll).authWithPassword(u.email, PASSWORD, { mfaId }));
  assert.deepEqual(e.response, { data: {}, message: 'A different authentication method is required.', status: 400 });

  // an unknown MFA session is refused
  e = await expectError(() => pb.collection(coll).authWithPassword(u.email, PASSWORD, { mfaId: 'aaaaaaaaaaaaaaa' }));
  assert.deepEqual(e.response, { data: {}, message: 'Invalid or expired MFA session.', status: 400 });

  // second factor: OTP with the mfaId
  const since = smtp.mark();
  const { otpId } = await pb.collection(coll).requestOTP(u.email);
  const code = codeFromMail(await smtp.waitForMailTo(u.email, /OTP/i, { since }));
  const res = await pb.collection(coll).authWithOTP(otpId, code, { mfaId });
  assert.equal(res.record.id, u.id);
  assert.equal(pb.authStore.record.id, u.id);
  assert.equal(getTokenPayload(pb.authStore.token).type, 'auth');

  // the MFA session is consumed
  const since2 = smtp.mark();
  const otp2 = await guest().collection(coll).requestOTP(u.email);
  const code2 = codeFromMail(await smtp.waitForMailTo(u.email, /OTP/i, { since: since2 }));
  e = await expectError(() => guest().collection(coll).authWithOTP(otp2.otpId, code2, { mfaId }));
  assert.deepEqual(e.response, { data: {}, message: 'Invalid or expired MFA session.', status: 400 });
});

test('MFA: OTP first, then password (mfaId in the query string)', async () => {
  const coll = await authCollection({ otp: { enabled: true }, mfa: { enabled: true } });
  const u = await makeUser(coll);
  const since = smtp.mark();
  const { otpId } = await guest().collection(coll).requestOTP(u.email);
  const code = codeFromMail(await smtp.waitForMailTo(u.email, /OTP/i, { since }));
  const e = await expectError(() => guest().collection(coll).authWithOTP(otpId, code));
  assert.equal(e.status, 401);
  const { mfaId } = e.response;
  assert.match(mfaId, ID_RE);
  const pb = guest();
  const res = await pb.collection(coll).authWithPassword(u.email, PASSWORD, { query: { mfaId } });
  assert.equal(res.record.id, u.id);
});

test('OTP and MFA sessions expire', async () => {
  // 10 s is the minimum PocketBase accepts for both durations
  const coll = await authCollection({ otp: { enabled: true, duration: 10, length: 4 }, mfa: { enabled: true, duration: 10 } });
  const u = await makeUser(coll);
  const e1 = await expectError(() => guest().collection(coll).authWithPassword(u.email, PASSWORD));
  assert.equal(e1.status, 401);
  const { mfaId } = e1.response;

  let since = smtp.mark();
  const { otpId } = await guest().collection(coll).requestOTP(u.email);
  const code = codeFromMail(await smtp.waitForMailTo(u.email, /OTP/i, { since }));
  assert.match(code, /^\d{4}$/, 'otp.length is honoured');

  await new Promise((r) => setTimeout(r, 11500));
  let e = await expectError(() => guest().collection(coll).authWithOTP(otpId, code));
  assert.deepEqual(e.response, { data: {}, message: 'Invalid or expired OTP.', status: 400 });

  since = smtp.mark();
  const fresh = await guest().collection(coll).requestOTP(u.email);
  const code2 = codeFromMail(await smtp.waitForMailTo(u.email, /OTP/i, { since }));
  e = await expectError(() => guest().collection(coll).authWithOTP(fresh.otpId, code2, { mfaId }));
  assert.deepEqual(e.response, { data: {}, message: 'Invalid or expired MFA session.', status: 400 });
});

test('collection validation of OTP/MFA options', async () => {
  const e = await expectError(() => su.collections.create({
    name: uniq('af'), type: 'auth', otp: { enabled: true, duration: 1, length: 3 }, mfa: { enabled: true, duration: 1 },
  }));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.otp.duration.code, 'validation_min_greater_equal_than_required');
  assert.equal(e.response.data.otp.length.code, 'validation_min_greater_equal_than_required');
  assert.equal(e.response.data.mfa.duration.code, 'validation_min_greater_equal_than_required');
});

// ---------------------------------------------------------------------------
// Verification, password reset, email change

test('verification: requestVerification mails a token, confirmVerification verifies', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll, { verified: false });
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);
  assert.equal(pb.authStore.record.verified, false);

  const since = smtp.mark();
  assert.equal(await pb.collection(coll).requestVerification(u.email), true);
  const mail = await smtp.waitForMailTo(u.email, /verif/i, { since });
  assert.match(mail.text, new RegExp(`${BASE_URL.replace(/[.]/g, '\\.')}/_/#/auth/confirm-verification/`));
  const token = tokenFromMail(mail, 'confirm-verification');
  const claims = getTokenPayload(token);
  assert.equal(claims.type, 'verification');
  assert.equal(claims.id, u.id);
  assert.equal(claims.email, u.email);
  assert.ok(claims.exp > nowSec() + 86400 - 120 && claims.exp <= nowSec() + 86400 + 5, 'verification tokens last a day');

  let e = await expectError(() => pb.collection(coll).confirmVerification('bad-token'));
  assert.equal(e.status, 400);
  assert.ok(e.response.data.token, JSON.stringify(e.response));

  // a token of another auth collection is refused
  const other = await authCollection();
  e = await expectError(() => guest().collection(other).confirmVerification(token));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.token.code, 'validation_token_collection_mismatch');

  assert.equal(await pb.collection(coll).confirmVerification(token), true);
  assert.equal((await su.collection(coll).getOne(u.id)).verified, true);
  assert.equal(pb.authStore.record.verified, true, 'the SDK marks its stored record verified');

  // already verified: still 204 and no new mail needed
  assert.equal(await guest().collection(coll).requestVerification(u.email), true);
});

test('password reset: mailed token sets a new password and revokes old tokens', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll, { verified: false });
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);
  const oldToken = pb.authStore.token;

  const since = smtp.mark();
  assert.equal(await guest().collection(coll).requestPasswordReset(u.email), true);
  const mail = await smtp.waitForMailTo(u.email, /reset/i, { since });
  const token = tokenFromMail(mail, 'confirm-password-reset');
  const claims = getTokenPayload(token);
  assert.equal(claims.type, 'passwordReset');
  assert.equal(claims.id, u.id);
  assert.equal(claims.email, u.email);
  assert.ok(claims.exp > nowSec() + 1800 - 120 && claims.exp <= nowSec() + 1800 + 5, 'reset tokens last 30 min');

  let e = await expectError(() => guest().collection(coll).confirmPasswordReset(token, NEW_PASSWORD, NEW_PASSWORD + 'x'));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.passwordConfirm.code, 'validation_values_mismatch');
  e = await expectError(() => guest().collection(coll).confirmPasswordReset('bad-token', NEW_PASSWORD, NEW_PASSWORD));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.token.code, 'validation_invalid_token');

  assert.equal(await guest().collection(coll).confirmPasswordReset(token, NEW_PASSWORD, NEW_PASSWORD), true);

  // new password works, the old one does not
  const res = await guest().collection(coll).authWithPassword(u.email, NEW_PASSWORD);
  assert.equal(res.record.id, u.id);
  assert.equal(res.record.verified, true, 'a reset through the mailed link verifies the email');
  e = await expectError(() => guest().collection(coll).authWithPassword(u.email, PASSWORD));
  assert.deepEqual(e.response, AUTH_FAILED);

  // the old auth token is revoked
  e = await expectError(() => pb.collection(coll).authRefresh());
  assert.equal(e.status, 401);

  // the reset token is single use
  e = await expectError(() => guest().collection(coll).confirmPasswordReset(token, PASSWORD, PASSWORD));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.token.code, 'validation_invalid_token');
});

test('email change: request as the user, confirm with the mailed token and password', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll, { verified: true });
  const newEmail = uniqEmail('changed');
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);

  // guests cannot request an email change
  let e = await expectError(() => guest().collection(coll).requestEmailChange(newEmail));
  assert.equal(e.status, 401);

  const since = smtp.mark();
  assert.equal(await pb.collection(coll).requestEmailChange(newEmail), true);
  const mail = await smtp.waitForMailTo(newEmail, /email/i, { since });
  assert.deepEqual(mail.to, [newEmail]);
  const token = tokenFromMail(mail, 'confirm-email-change');
  const claims = getTokenPayload(token);
  assert.equal(claims.type, 'emailChange');
  assert.equal(claims.id, u.id);
  assert.equal(claims.email, u.email);
  assert.equal(claims.newEmail, newEmail);

  e = await expectError(() => guest().collection(coll).confirmEmailChange(token, 'wrong-password'));
  assert.equal(e.status, 400);
  assert.deepEqual(e.response.data.password, { code: 'validation_invalid_password', message: 'Missing or invalid auth record password.' });

  assert.equal(await pb.collection(coll).confirmEmailChange(token, PASSWORD), true);
  assert.equal(pb.authStore.isValid, false, 'the SDK clears the store after changing its own email');

  const res = await guest().collection(coll).authWithPassword(newEmail, PASSWORD);
  assert.equal(res.record.id, u.id);
  assert.equal(res.record.email, newEmail);
  assert.equal(res.record.verified, true);
  e = await expectError(() => guest().collection(coll).authWithPassword(u.email, PASSWORD));
  assert.deepEqual(e.response, AUTH_FAILED);
});

// ---------------------------------------------------------------------------
// Impersonation

test('impersonate: superuser gets a non-refreshable token for the user', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll);
  const imp = await su.collection(coll).impersonate(u.id, 3600);
  assert.notEqual(imp, su);
  assert.equal(imp.authStore.record.id, u.id);
  assert.equal(imp.authStore.record.email, u.email);
  const claims = getTokenPayload(imp.authStore.token);
  assert.equal(claims.type, 'auth');
  assert.equal(claims.id, u.id);
  assert.equal(claims.refreshable, false);
  assert.ok(Math.abs(claims.exp - (nowSec() + 3600)) <= 10, `exp ${claims.exp}`);
  assert.equal(imp.authStore.isSuperuser, false);

  // the impersonated client acts as the user
  const me = await imp.collection(coll).getOne(u.id);
  assert.equal(me.id, u.id);
  const list = await imp.collection(coll).getList(1, 10);
  assert.deepEqual(list.items.map((r) => r.id), [u.id]);

  // auth-refresh keeps the same (non-refreshable) token
  const before = imp.authStore.token;
  const refreshed = await imp.collection(coll).authRefresh();
  assert.equal(refreshed.token, before);

  // the superuser client is untouched
  assert.equal(su.authStore.isSuperuser, true);

  // only superusers may impersonate
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);
  const e = await expectError(() => pb.collection(coll).impersonate(u.id, 60));
  assert.equal(e.status, 403);
  const e2 = await expectError(() => guest().collection(coll).impersonate(u.id, 60));
  assert.equal(e2.status, 401);
  const e3 = await expectError(() => su.collection(coll).impersonate('nonexistent1234', 60));
  assert.equal(e3.status, 404);
});

// ---------------------------------------------------------------------------
// No enumeration

test('no enumeration: existing and unknown identities look the same', async () => {
  const coll = await authCollection({ otp: { enabled: true } });
  const u = await makeUser(coll);
  const unknown = uniqEmail('ghost');

  for (const path of ['request-verification', 'request-password-reset']) {
    const a = await raw(`/api/collections/${coll}/${path}`, { method: 'POST', body: { email: u.email } });
    const b = await raw(`/api/collections/${coll}/${path}`, { method: 'POST', body: { email: unknown } });
    assert.equal(a.status, 204, path);
    assert.equal(b.status, a.status, path);
    assert.equal(b.text, a.text, path);
  }

  const a = await raw(`/api/collections/${coll}/request-otp`, { method: 'POST', body: { email: u.email } });
  const b = await raw(`/api/collections/${coll}/request-otp`, { method: 'POST', body: { email: unknown } });
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.deepEqual(Object.keys(a.json), ['otpId']);
  assert.deepEqual(Object.keys(b.json), ['otpId']);
  assert.match(a.json.otpId, ID_RE);
  assert.match(b.json.otpId, ID_RE);

  const wrongPw = await raw(`/api/collections/${coll}/auth-with-password`, { method: 'POST', body: { identity: u.email, password: 'wrong-password' } });
  const noUser = await raw(`/api/collections/${coll}/auth-with-password`, { method: 'POST', body: { identity: unknown, password: 'wrong-password' } });
  assert.equal(wrongPw.status, 400);
  assert.deepEqual(wrongPw.json, AUTH_FAILED);
  assert.equal(noUser.status, wrongPw.status);
  assert.deepEqual(noUser.json, wrongPw.json);
});
