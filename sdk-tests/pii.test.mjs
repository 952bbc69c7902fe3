// PII fields through the official SDK (Basalt only: PocketBase has no pii fields). The server runs with
// BASALT_PII_KEYS (scripts/test-sdk.sh). What a PocketBase client sees:
// - sign-up and authWithPassword on an encrypted, searchable email (any letter case);
// - its own record in clear (revealRule), another user's masked, a guest's masked;
// - pb.filter equality through the blind index; sort and ~ on a pii field: 400 naming the field;
// - a unique email stays unique;
// - a superuser's reveals land in _piiAudit (readable by superusers, never written through the API).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { superuser, guest, uniq, uniqEmail, expectError } from './helpers.mjs';

const BASALT = !!process.env.BASALT_BACKEND;
const skip = !BASALT && 'Basalt only (PocketBase has no pii fields)';

let su;
let coll;

before(async () => {
  if (!BASALT) return;
  su = await superuser();
  coll = await su.collections.create({
    name: uniq('pii_members'),
    type: 'auth',
    listRule: '',
    viewRule: '',
    createRule: '',
    fields: [
      { name: 'email', type: 'email', system: true, required: true,
        pii: { searchable: true, mask: 'partial', revealRule: 'id = @request.auth.id' } },
      { name: 'iban', type: 'text', pii: { mask: 'last4', revealRule: 'id = @request.auth.id' } },
    ],
  });
});

async function member(extra = {}) {
  const email = uniqEmail('pii');
  const password = 'Secret-pass-123';
  const pb = guest();
  await pb.collection(coll.name).create({ email, password, passwordConfirm: password, emailVisibility: true, ...extra });
  await pb.collection(coll.name).authWithPassword(email.toUpperCase(), password);
  return { pb, email, record: pb.authStore.record };
}

test('sign-in on an encrypted email; own record in clear, others masked', { skip }, async () => {
  const a = await member({ iban: 'GB82 WEST 1234 5698 7654 32' });
  const b = await member();
  assert.equal(a.record.email, a.email, 'the auth answer shows her own email');
  const mine = await a.pb.collection(coll.name).getOne(a.record.id);
  assert.equal(mine.iban, 'GB82 WEST 1234 5698 7654 32');
  const seen = await b.pb.collection(coll.name).getOne(a.record.id);
  assert.equal(seen.iban, '****5432');
  assert.match(seen.email, /^p\*\*\*@e\*\*\*\.com$/);
  const asGuest = await guest().collection(coll.name).getOne(a.record.id);
  assert.equal(asGuest.iban, '****5432');
  assert.equal(coll.fields.find((f) => f.name === 'email').pii.searchable, true);
});

test('equality through the blind index; sort and ~ refused naming the field', { skip }, async () => {
  const a = await member();
  const found = await su.collection(coll.name).getList(1, 10, {
    filter: su.filter('email = {:e}', { e: a.email.toUpperCase() }),
  });
  assert.equal(found.totalItems, 1);
  assert.equal(found.items[0].id, a.record.id);
  const bySort = await expectError(() => su.collection(coll.name).getList(1, 10, { sort: 'email' }));
  assert.equal(bySort.status, 400);
  assert.equal(bySort.response.data.sort.code, 'validation_pii_filter');
  assert.match(bySort.response.message, /^email is encrypted/);
  const byLike = await expectError(() => su.collection(coll.name).getList(1, 10, { filter: "email ~ 'pii'" }));
  assert.equal(byLike.response.data.filter.code, 'validation_pii_filter');
});

test('a unique email stays unique', { skip }, async () => {
  const a = await member();
  const dup = await expectError(() =>
    guest().collection(coll.name).create({ email: a.email, password: 'Secret-pass-123', passwordConfirm: 'Secret-pass-123' }));
  assert.equal(dup.status, 400);
  assert.equal(dup.response.data.email.code, 'validation_not_unique');
});

test("a superuser's reveal is audited in _piiAudit", { skip }, async () => {
  const a = await member({ iban: 'DE89 3704 0044 0532 0130 00' });
  const r = await su.collection(coll.name).getOne(a.record.id);
  assert.equal(r.iban, 'DE89 3704 0044 0532 0130 00');
  let rows = [];
  for (let i = 0; i < 100 && rows.length === 0; i++) {
    rows = (await su.collection('_piiAudit').getList(1, 10, {
      filter: su.filter('recordRef = {:id} && actor ~ {:su}', { id: a.record.id, su: '_superusers:' }),
    })).items;
    if (rows.length === 0) await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(rows.length, 1);
  assert.match(rows[0].fields, /iban/);
  assert.ok(!JSON.stringify(rows[0]).includes('DE89'), 'never the value');
  const write = await expectError(() => su.collection('_piiAudit').create({ actor: 'forged' }));
  assert.equal(write.status, 404);
});
