// Basalt-only auth extensions (these CANNOT pass against PocketBase):
//   - TOTP second factor with recovery codes
//   - progressive lockout of password logins (429 + Retry-After)
//   - rate limits from settings answered with Retry-After
//   - generic OIDC provider configured by discovery (extra.issuer)
//
// TOTP endpoints (under /api/collections/{c}/):
//   POST totp/enroll            (user auth) → 200 {secret (base32), otpauthURI}
//   POST totp/confirm {code}    (user auth) → 200 {recoveryCodes: [10 strings]}; wrong code → 400
//   POST auth-with-totp {mfaId, code}       → 200 {token, record}; code may be a recovery code (single use)
//   POST totp/disable {code}    (user auth) → 204
// Once TOTP is confirmed, a successful password login answers 401 {mfaId}
// even when the collection's MFA is off.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { getTokenPayload } from 'pocketbase';
import { superuser, guest, uniq, uniqEmail, expectError, raw, BASE_URL, ID_RE } from './helpers.mjs';
import { startOAuthProvider } from './oauth-provider.mjs';

const PASSWORD = 'Plus-pass-12345';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let su;

before(async () => {
  su = await superuser();
});

/** A fresh auth collection (MFA and OTP off). */
async function authCollection(opts = {}) {
  const name = uniq('ap');
  await su.collections.create({
    name,
    type: 'auth',
    fields: [{ name: 'name', type: 'text' }],
    listRule: 'id = @request.auth.id',
    viewRule: 'id = @request.auth.id',
    createRule: '',
    ...opts,
  });
  return name;
}

async function makeUser(coll, email = uniqEmail('ap')) {
  const rec = await su.collection(coll).create({ email, password: PASSWORD, passwordConfirm: PASSWORD, verified: true });
  return { email, id: rec.id };
}

// ---------------------------------------------------------------------------
// RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits)

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(s) {
  const clean = s.toUpperCase().replace(/=+$/, '').replace(/\s+/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = B32.indexOf(ch);
    if (idx < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function hotp(key, counter, digits = 6) {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(buf).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 10 ** digits).padStart(digits, '0');
}

const step = (ms = Date.now()) => Math.floor(ms / 1000 / 30);

function totp(secretB32, ms = Date.now()) {
  return hotp(base32Decode(secretB32), step(ms));
}

/**
 * Hands out TOTP codes for one secret, never the same time step twice (so a
 * server that rejects replayed codes is fine): waits for the next 30 s step
 * when the current one was already used.
 */
class TotpDevice {
  constructor(secret) {
    this.secret = secret;
    this.lastStep = -1;
  }

  async code() {
    while (step() <= this.lastStep) {
      await sleep(((this.lastStep + 1) * 30 * 1000) - Date.now() + 50);
    }
    // avoid handing out a code in the last second of its step
    const msLeft = (step() + 1) * 30000 - Date.now();
    if (msLeft < 1500) await sleep(msLeft + 50);
    this.lastStep = step();
    return totp(this.secret);
  }

  /** A 6-digit code that is wrong for the current, previous and next steps. */
  wrongCode() {
    const now = Date.now();
    const near = new Set([-1, 0, 1].map((d) => totp(this.secret, now + d * 30000)));
    for (let i = 0; ; i++) {
      const c = String((123456 + i * 111111) % 1000000).padStart(6, '0');
      if (!near.has(c)) return c;
    }
  }
}

test('TOTP helper matches the RFC 6238 test vector', () => {
  // secret "12345678901234567890" (ASCII), T = 59 s → 94287082 (8 digits) → 287082 (6 digits)
  const key = Buffer.from('12345678901234567890');
  assert.equal(hotp(key, Math.floor(59 / 30), 8), '94287082');
  assert.equal(hotp(key, Math.floor(59 / 30), 6), '287082');
  assert.equal(base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ').toString(), '12345678901234567890');
});

// ---------------------------------------------------------------------------
// TOTP

test('TOTP: enroll, confirm, second factor, recovery codes, disable', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll);
  const pb = guest();
  await pb.collection(coll).authWithPassword(u.email, PASSWORD);
  const base = `/api/collections/${coll}`;

  // enroll needs the user's auth
  const anon = await expectError(() => guest().send(`${base}/totp/enroll`, { method: 'POST', body: {} }));
  assert.equal(anon.status, 401);

  const enroll = await pb.send(`${base}/totp/enroll`, { method: 'POST', body: {} });
  assert.match(enroll.secret, /^[A-Z2-7]+=*$/);
  assert.ok(base32Decode(enroll.secret).length >= 10, 'secret has at least 80 bits');
  assert.ok(enroll.otpauthURI.startsWith('otpauth://totp/'), enroll.otpauthURI);
  assert.ok(enroll.otpauthURI.includes(`secret=${enroll.secret}`), enroll.otpauthURI);
  const device = new TotpDevice(enroll.secret);

  // until confirmed, password login still gives a token directly
  const pre = await guest().collection(coll).authWithPassword(u.email, PASSWORD);
  assert.equal(pre.record.id, u.id);

  // confirm: wrong code refused, right code gives 10 recovery codes
  const bad = await expectError(() => pb.send(`${base}/totp/confirm`, { method: 'POST', body: { code: device.wrongCode() } }));
  assert.equal(bad.status, 400);
  const confirmed = await pb.send(`${base}/totp/confirm`, { method: 'POST', body: { code: await device.code() } });
  assert.ok(Array.isArray(confirmed.recoveryCodes));
  assert.equal(confirmed.recoveryCodes.length, 10);
  for (const rc of confirmed.recoveryCodes) assert.ok(typeof rc === 'string' && rc.length >= 8, `recovery code ${rc}`);
  assert.equal(new Set(confirmed.recoveryCodes).size, 10, 'recovery codes are distinct');

  // password alone now needs a second factor (collection MFA is off)
  const passwordStep = async () => {
    const e = await expectError(() => guest().collection(coll).authWithPassword(u.email, PASSWORD));
    assert.equal(e.status, 401);
    assert.match(e.response.mfaId, ID_RE);
    return e.response.mfaId;
  };
  let mfaId = await passwordStep();

  // a wrong TOTP code is refused
  const wrong = await expectError(() => guest().send(`${base}/auth-with-totp`, { method: 'POST', body: { mfaId, code: device.wrongCode() } }));
  assert.equal(wrong.status, 400);

  // the right code completes the login (fresh MFA session, in case a failed
  // attempt ends the previous one)
  mfaId = await passwordStep();
  const ok = await guest().send(`${base}/auth-with-totp`, { method: 'POST', body: { mfaId, code: await device.code() } });
  assert.equal(typeof ok.token, 'string');
  assert.equal(ok.record.id, u.id);
  assert.equal(ok.record.email, u.email);
  const claims = getTokenPayload(ok.token);
  assert.equal(claims.type, 'auth');
  assert.equal(claims.id, u.id);
  const authed = guest();
  authed.authStore.save(ok.token, ok.record);
  assert.equal((await authed.collection(coll).getOne(u.id)).id, u.id, 'the TOTP token is a working auth token');

  // a recovery code works once in place of the TOTP code
  const rc = confirmed.recoveryCodes[0];
  mfaId = await passwordStep();
  const viaRecovery = await guest().send(`${base}/auth-with-totp`, { method: 'POST', body: { mfaId, code: rc } });
  assert.equal(viaRecovery.record.id, u.id);
  mfaId = await passwordStep();
  const reused = await expectError(() => guest().send(`${base}/auth-with-totp`, { method: 'POST', body: { mfaId, code: rc } }));
  assert.equal(reused.status, 400);
  // ... while another recovery code still works
  mfaId = await passwordStep();
  const viaRecovery2 = await guest().send(`${base}/auth-with-totp`, { method: 'POST', body: { mfaId, code: confirmed.recoveryCodes[1] } });
  assert.equal(viaRecovery2.record.id, u.id);

  // disable (as the user, with a current code)
  const badDisable = await expectError(() => authed.send(`${base}/totp/disable`, { method: 'POST', body: { code: device.wrongCode() } }));
  assert.equal(badDisable.status, 400);
  const res = await fetch(`${BASE_URL}${base}/totp/disable`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: ok.token },
    body: JSON.stringify({ code: await device.code() }),
  });
  assert.equal(res.status, 204, await res.text());

  // password login gives a token directly again
  const after = await guest().collection(coll).authWithPassword(u.email, PASSWORD);
  assert.equal(after.record.id, u.id);
});

// ---------------------------------------------------------------------------
// Progressive lockout

/** One password attempt through raw fetch; returns {status, json, retryAfter}. */
async function attempt(coll, identity, password) {
  const r = await raw(`/api/collections/${coll}/auth-with-password`, { method: 'POST', body: { identity, password } });
  const ra = r.headers.get('retry-after');
  return { status: r.status, json: r.json, retryAfter: ra === null ? null : ra };
}

function assertLocked(a, label) {
  assert.equal(a.status, 429, `${label}: expected 429, got ${a.status} ${JSON.stringify(a.json)}`);
  assert.match(String(a.retryAfter), /^\d+$/, `${label}: Retry-After must be integer seconds, got ${a.retryAfter}`);
  const secs = Number(a.retryAfter);
  assert.ok(secs >= 1, `${label}: Retry-After ${secs} >= 1`);
  assert.equal(a.json.status, 429);
  assert.equal(typeof a.json.message, 'string');
  assert.ok(a.json.message.length > 0);
  assert.deepEqual(a.json.data, {});
  return secs;
}

/**
 * The lockout sequence for one identity: 5 wrong → 400; the 6th (with
 * `rightPassword`, or wrong for unknown identities) → 429; after waiting
 * Retry-After, one wrong → 400 and the next → 429 with a longer Retry-After.
 */
async function lockoutSequence(coll, identity, rightPassword) {
  for (let i = 1; i <= 5; i++) {
    const a = await attempt(coll, identity, `wrong-password-${i}`);
    assert.equal(a.status, 400, `${identity} attempt ${i}: ${JSON.stringify(a.json)}`);
    assert.deepEqual(a.json, { data: {}, message: 'Failed to authenticate.', status: 400 });
  }
  const sixth = await attempt(coll, identity, rightPassword);
  const first = assertLocked(sixth, `${identity} 6th attempt`);
  assert.ok(first <= 120, `first lockout should be short, got ${first}s`);

  await sleep(first * 1000 + 300);
  const afterWait = await attempt(coll, identity, 'wrong-password-again');
  assert.equal(afterWait.status, 400, `${identity} after waiting: ${JSON.stringify(afterWait.json)}`);
  const next = await attempt(coll, identity, rightPassword);
  const second = assertLocked(next, `${identity} attempt after the lockout expired`);
  assert.ok(second > first, `Retry-After grows: ${first} → ${second}`);
  return { first, second };
}

test('progressive lockout of password logins (known and unknown identities)', async () => {
  const coll = await authCollection();
  const u = await makeUser(coll);
  const bystander = await makeUser(coll);

  const known = await lockoutSequence(coll, u.email, PASSWORD);

  // still locked even with the right password
  const locked = await attempt(coll, u.email, PASSWORD);
  assert.equal(locked.status, 429);

  // another identity is unaffected
  const other = await guest().collection(coll).authWithPassword(bystander.email, PASSWORD);
  assert.equal(other.record.id, bystander.id);

  // an unknown email goes through the same sequence (no enumeration)
  const unknown = await lockoutSequence(coll, uniqEmail('ghost'), PASSWORD);
  assert.equal(unknown.first, known.first, 'same first delay for unknown identities');
});

// ---------------------------------------------------------------------------
// Rate limits from settings

test('rate limits from settings: 429 with Retry-After, other routes unaffected', async () => {
  const coll = uniq('rl');
  await su.collections.create({ name: coll, type: 'base', fields: [{ name: 'title', type: 'text' }], listRule: '', viewRule: '' });
  const previous = (await su.settings.getAll()).rateLimits;
  try {
    await su.settings.update({
      rateLimits: { enabled: true, rules: [{ label: `${coll}:list`, maxRequests: 3, duration: 10, audience: '' }] },
    });
    const results = [];
    for (let i = 0; i < 10; i++) {
      results.push(await raw(`/api/collections/${coll}/records`));
    }
    assert.deepEqual(results.slice(0, 3).map((r) => r.status), [200, 200, 200]);
    for (const [i, r] of results.slice(3).entries()) {
      assert.equal(r.status, 429, `request ${i + 4}`);
      const ra = r.headers.get('retry-after');
      assert.match(String(ra), /^\d+$/, `Retry-After integer seconds, got ${ra}`);
      assert.ok(Number(ra) >= 1 && Number(ra) <= 10, `Retry-After within the window, got ${ra}`);
      assert.equal(r.json.status, 429);
      assert.deepEqual(r.json.data, {});
    }
    // other routes are not limited by this rule
    const health = await raw('/api/health');
    assert.equal(health.status, 200);
    // superusers are never rate limited
    const asSu = await su.collection(coll).getList(1, 1);
    assert.equal(asSu.page, 1);
  } finally {
    await su.settings.update({ rateLimits: { ...previous, enabled: false } });
  }
  // with the rule disabled, listing works again
  assert.equal((await raw(`/api/collections/${coll}/records`)).status, 200);
});

// ---------------------------------------------------------------------------
// OIDC by discovery

test('OIDC provider configured by discovery (extra.issuer) signs in with the id_token', async () => {
  const op = await startOAuthProvider({ kind: 'oidc' });
  try {
    const email = uniqEmail('oidc');
    const user = op.addUser({ sub: `oidc-${uniq()}`, email, name: 'Id Token', username: 'idtoken' });
    const coll = await authCollection({
      oauth2: {
        enabled: true,
        providers: [{ name: 'oidc', clientId: op.clientId, clientSecret: op.clientSecret, extra: { issuer: op.issuer } }],
      },
    });
    const pb = guest();
    const methods = await pb.collection(coll).listAuthMethods();
    const p = methods.oauth2.providers.find((x) => x.name === 'oidc');
    assert.ok(p, JSON.stringify(methods.oauth2));
    assert.ok(p.authURL.startsWith(`${op.baseURL}/authorize`), p.authURL);
    assert.ok(p.authURL.endsWith('redirect_uri='), p.authURL);
    const scope = new URL(p.authURL).searchParams.get('scope') || '';
    assert.ok(scope.split(/[ +]/).includes('openid'), `scope includes openid: ${scope}`);
    assert.ok(op.log.some((e) => e.path === '/.well-known/openid-configuration'), 'discovery document fetched');

    const redirectURL = `${BASE_URL}/oidc-test-callback`;
    const { code, state } = await op.authorize(p.authURL + encodeURIComponent(redirectURL), { loginHint: user.sub });
    assert.equal(state, p.state);
    const res = await pb.collection(coll).authWithOAuth2Code('oidc', code, p.codeVerifier, redirectURL);
    assert.equal(res.meta.isNew, true);
    assert.equal(res.meta.id, user.sub);
    assert.equal(res.meta.email, email);
    assert.equal(res.record.email, email);
    assert.equal(res.record.verified, true);
    assert.equal(pb.authStore.record.id, res.record.id);

    const tokenReq = op.log.filter((e) => e.path === '/token').at(-1);
    assert.equal(tokenReq.status, 200);
    assert.ok(tokenReq.response.id_token, 'the provider issued an id_token');
    assert.equal(tokenReq.pkceVerified, true);

    // second login: same record
    const pb2 = guest();
    const m2 = await pb2.collection(coll).listAuthMethods();
    const p2 = m2.oauth2.providers.find((x) => x.name === 'oidc');
    const c2 = await op.authorize(p2.authURL + encodeURIComponent(redirectURL), { loginHint: user.sub });
    const again = await pb2.collection(coll).authWithOAuth2Code('oidc', c2.code, p2.codeVerifier, redirectURL);
    assert.equal(again.meta.isNew, false);
    assert.equal(again.record.id, res.record.id);
  } finally {
    await op.close();
  }
});
