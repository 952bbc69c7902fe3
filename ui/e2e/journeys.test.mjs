// The dashboard's journeys in a real browser (Debian Chromium via playwright-core), each asserting
// on what the page shows and on the API state afterwards. Run by scripts/test-sdk.sh on SQLite and
// PostgreSQL; screenshots go to test-artifacts/ui/<backend>/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import PocketBase from 'pocketbase';
import { configureSmtp, startSmtp } from '../../sdk-tests/smtp.mjs';
import { api, BASE_URL, close, eventually, journey, png, report, shot, signIn, SU_EMAIL, uniq } from './browser.mjs';

let pb;
before(async () => { pb = await api(); });
after(close);

describe('dashboard', () => {
  test('first load is measured and reported; the sign-in form works from the keyboard; the session survives a reload; sign-out', () =>
    journey('sign-in', async (page) => {
      await page.goto(`${BASE_URL}/_/`);
      await page.getByLabel('Email').waitFor();
      const timing = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        return { domContentLoadedMs: Math.round(n.domContentLoadedEventEnd), loadMs: Math.round(n.loadEventEnd), transferBytes: performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, n.transferSize) };
      });
      report('first-load', timing);
      console.log(`dashboard first load: ${JSON.stringify(timing)}`);

      // Keyboard only: type, Tab, type, Enter.
      await page.getByLabel('Email').focus();
      await page.keyboard.type(SU_EMAIL);
      await page.keyboard.press('Tab');
      await page.keyboard.type('wrong-password');
      await page.keyboard.press('Enter');
      await page.getByRole('alert').filter({ hasText: 'Failed to authenticate' }).waitFor();
      await page.getByLabel('Password').fill(process.env.SU_PASSWORD || 'adminpass123');
      await page.keyboard.press('Enter');
      await page.getByRole('navigation', { name: 'Sections' }).waitFor();
      assert.equal(await page.locator('.main-nav .who').textContent(), SU_EMAIL);

      await page.reload();
      await page.getByRole('navigation', { name: 'Sections' }).waitFor();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      assert.equal(await page.evaluate(() => localStorage.getItem('basalt_dashboard_auth')), null);
    }));

  test('with MFA on, sign-in asks for the emailed one-time code after the password', async () => {
    const smtp = await startSmtp();
    const restoreSmtp = await configureSmtp(pb, smtp, BASE_URL);
    const before = await pb.collections.getOne('_superusers');
    await pb.collections.update('_superusers', { mfa: { ...before.mfa, enabled: true }, otp: { ...before.otp, enabled: true } });
    try {
      await journey('sign-in-mfa', async (page) => {
        const since = smtp.mark();
        await page.goto(`${BASE_URL}/_/`);
        await page.getByLabel('Email').fill(SU_EMAIL);
        await page.getByLabel('Password').fill(process.env.SU_PASSWORD || 'adminpass123');
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByText('A second step is required').waitFor();
        const mail = await smtp.waitForMailTo(SU_EMAIL, /OTP/i, { since });
        const code = (/one-time password is:?\s*(?:<strong>)?\s*(\d{4,})/i.exec(mail.text) || /(\d{6,})/.exec(mail.text))[1];
        await page.getByLabel('One-time code').fill(code);
        await page.getByRole('button', { name: 'Verify' }).click();
        await page.getByRole('navigation', { name: 'Sections' }).waitFor();
      });
    } finally {
      await pb.collections.update('_superusers', { mfa: before.mfa, otp: before.otp });
      await pb.settings.update(restoreSmtp);
      await smtp.close();
    }
  });

  test('create a collection with a relation, a file field and rules, then add a record with a file', async () => {
    const name = uniq('posts');
    const user = await pb.collection('users').create({ email: `${uniq('author')}@example.com`, password: 'password123', passwordConfirm: 'password123', name: 'Ada Author' });
    await journey('create-collection', async (page) => {
      await signIn(page);
      await page.getByRole('button', { name: '+ New collection' }).click();
      const dialog = page.getByRole('dialog', { name: 'New collection' });
      await dialog.getByLabel('Name', { exact: true }).fill(name);
      const addField = async (type, fieldName) => {
        await dialog.getByRole('button', { name: `+ ${type}`, exact: true }).click();
        await dialog.locator('.field-card').last().getByLabel(/^Field \d+ name$/).fill(fieldName);
      };
      await addField('text', 'title');
      await addField('file', 'cover');
      await dialog.locator('.field-card').last().getByLabel('MIME types (comma separated)').fill('image/png');
      await dialog.locator('.field-card').last().getByLabel('Thumb sizes (comma separated)').fill('100x100');
      await addField('relation', 'author');
      await dialog.getByLabel('Related collection of author').selectOption({ label: 'users' });
      await dialog.getByRole('tab', { name: 'API rules' }).click();
      await dialog.getByText('List/Search: superusers only').click();
      await dialog.getByLabel('List/Search rule').fill('@request.auth.id != ""');
      await dialog.getByText('View: superusers only').click();
      await dialog.getByLabel('View rule').fill('author = @request.auth.id');
      await dialog.getByRole('button', { name: 'Create' }).click();
      await page.getByRole('heading', { name }).waitFor();

      // A record with an uploaded file and a related user picked by search.
      await page.getByRole('button', { name: '+ New record' }).click();
      const rec = page.getByRole('dialog', { name: `New ${name} record` });
      await rec.getByLabel('title').fill('Hello world');
      await rec.locator('input[type=file][name=cover]').setInputFiles({ name: 'cover.png', mimeType: 'image/png', buffer: png(40, 30) });
      await rec.getByRole('img', { name: 'cover.png' }).waitFor();
      await rec.getByRole('button', { name: 'Choose from users' }).click();
      await rec.getByLabel('Search users').fill(user.email);
      await rec.getByRole('option').filter({ hasText: user.id }).getByRole('button').click();
      await rec.getByRole('button', { name: 'Create' }).click();
      await rec.waitFor({ state: 'detached' });
      const row = page.getByRole('row').filter({ hasText: 'Hello world' });
      await row.waitFor();
      await row.getByText('Ada Author').waitFor(); // the relation shows the user's name
      const thumb = row.getByRole('img');
      await thumb.waitFor();
      await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await thumb.elementHandle());
      assert.equal(await thumb.evaluate((img) => img.naturalWidth), 100, 'the grid shows the 100x100 thumbnail');
    });
    const c = await pb.collections.getOne(name);
    const byName = Object.fromEntries(c.fields.map((f) => [f.name, f]));
    assert.equal(byName.title.type, 'text');
    assert.equal(byName.cover.type, 'file');
    assert.deepEqual(byName.cover.mimeTypes, ['image/png']);
    assert.equal(byName.author.type, 'relation');
    assert.equal(byName.author.collectionId, (await pb.collections.getOne('users')).id);
    assert.equal(c.listRule, '@request.auth.id != ""');
    assert.equal(c.viewRule, 'author = @request.auth.id');
    assert.equal(c.createRule, null);
    const [r] = (await pb.collection(name).getList(1, 10)).items;
    assert.equal(r.title, 'Hello world');
    assert.equal(r.author, user.id);
    assert.match(r.cover, /^cover_\w+\.png$/);
    const file = await fetch(pb.files.getURL(r, r.cover));
    assert.equal(file.status, 200);
    assert.equal(Buffer.from(await file.arrayBuffer()).length, png(40, 30).length);
  });

  test('filter and sort the grid; a bad filter shows the server message', async () => {
    const name = uniq('notes');
    await pb.collections.create({ name, type: 'base', fields: [{ name: 'title', type: 'text' }, { name: 'rank', type: 'number' }] });
    for (const [title, rank] of [['beta', 2], ['alpha', 3], ['gamma', 1]]) await pb.collection(name).create({ title, rank });
    await journey('filter-sort', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      const table = page.getByRole('table', { name: `${name} records` });
      const titles = async () => table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.querySelectorAll('td')[2]?.textContent));
      await table.getByRole('row').filter({ hasText: 'gamma' }).waitFor();
      await eventually(async () => assert.deepEqual((await titles()).sort(), ['alpha', 'beta', 'gamma']));

      await page.getByLabel('Filter').fill('rank >= 2');
      await page.getByLabel('Filter').press('Enter');
      await page.getByText('2 records').waitFor();
      await eventually(async () => assert.deepEqual((await titles()).sort(), ['alpha', 'beta']));

      await page.getByRole('button', { name: 'Clear' }).click();
      await page.getByText('3 records').waitFor();
      await table.getByRole('button', { name: /^title/ }).click();
      await table.locator('th[aria-sort=ascending]').waitFor();
      await eventually(async () => assert.deepEqual((await titles()), ['alpha', 'beta', 'gamma']));
      await table.getByRole('button', { name: /^title/ }).click();
      await table.locator('th[aria-sort=descending]').waitFor();
      await eventually(async () => assert.deepEqual((await titles()), ['gamma', 'beta', 'alpha']));
      await table.getByRole('button', { name: /^rank/ }).click();
      await table.locator('th[aria-sort=ascending]').filter({ hasText: 'rank' }).waitFor();
      await eventually(async () => assert.deepEqual((await titles()), ['gamma', 'beta', 'alpha']));

      // The column picker hides a column and remembers it.
      await page.getByText('Columns').click();
      await page.getByRole('group', { name: 'Columns' }).getByLabel('rank').uncheck();
      await table.getByRole('button', { name: /^rank/ }).waitFor({ state: 'detached' });

      const bad = 'title ~~ "x"';
      const expected = await pb.collection(name).getList(1, 1, { filter: bad }).then(() => null, (e) => e.response.message);
      assert.ok(expected, 'the server refuses the filter');
      await page.getByLabel('Filter').fill(bad);
      await page.getByLabel('Filter').press('Enter');
      await page.getByRole('alert').filter({ hasText: expected }).waitFor();
    });
  });

  test('a rule with an error shows the server message next to it; the fixed rule is saved', async () => {
    const name = uniq('ruled');
    await pb.collections.create({ name, type: 'base', fields: [{ name: 'title', type: 'text' }] });
    const badRule = 'nosuchfield = 1';
    const expected = await pb.collections.update(name, { listRule: badRule }).then(() => null, (e) => e.response.data.listRule.message);
    assert.ok(expected, 'the server refuses the rule');
    await journey('rule-error', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      await page.getByRole('button', { name: 'Edit collection' }).click();
      const dialog = page.getByRole('dialog', { name: `Edit ${name}` });
      await dialog.getByRole('tab', { name: 'API rules' }).click();
      await dialog.getByText('List/Search: superusers only').click();
      await dialog.getByLabel('List/Search rule').fill(badRule);
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      const field = dialog.locator('div.field').filter({ has: page.getByLabel('List/Search rule') });
      await field.getByRole('alert').filter({ hasText: expected }).waitFor();
      await shot(page, 'rule-error-shown');
      await dialog.getByLabel('List/Search rule').fill('title != ""');
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      await dialog.waitFor({ state: 'detached' });
    });
    assert.equal((await pb.collections.getOne(name)).listRule, 'title != ""');
  });

  test('create a user, then impersonate it: the token acts as that user', async () => {
    const email = `${uniq('imp')}@example.com`;
    let token = '';
    await journey('impersonate', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/users`);
      await page.getByRole('button', { name: '+ New record' }).click();
      const rec = page.getByRole('dialog', { name: 'New users record' });
      await rec.getByLabel('email *').fill(email);
      await rec.getByLabel('Password', { exact: true }).fill('password123');
      await rec.getByLabel('Password again').fill('password123');
      await rec.getByRole('button', { name: 'Create' }).click();
      await rec.waitFor({ state: 'detached' });
      await page.getByRole('row').filter({ hasText: email }).click();
      const edit = page.getByRole('dialog', { name: 'Edit users record' });
      await edit.getByRole('button', { name: 'Impersonate' }).click();
      token = await edit.getByLabel('Impersonation token').inputValue();
      assert.ok(token.split('.').length === 3, 'a JWT is shown');
    });
    const user = await pb.collection('users').getFirstListItem(`email = "${email}"`);
    const as = new PocketBase(BASE_URL);
    as.authStore.save(token, null);
    const seen = await as.collection('users').getOne(user.id);
    assert.equal(seen.email, email);
  });

  test('a dead letter is replayed from the webhooks page and reaches the receiver', async () => {
    // A receiver that fails until it is told to accept.
    let accept = false;
    const got = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        if (accept) got.push(JSON.parse(body));
        res.writeHead(accept ? 200 : 500).end();
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const name = uniq('hooked');
    await pb.collections.create({ name, type: 'base', fields: [{ name: 'title', type: 'text' }] });
    const hook = await pb.send('/api/webhooks', {
      method: 'POST',
      body: { name: `e2e ${name}`, url: `http://127.0.0.1:${server.address().port}/hook`, secret: 'a-secret-of-24-characters', collection: name, events: ['create'], maxAttempts: 1, timeoutMs: 2000 },
    });
    try {
      const rec = await pb.collection(name).create({ title: 'to be replayed' });
      const dead = async () => (await pb.send(`/api/webhooks/deliveries?status=dead&webhook=${hook.id}`, {})).items;
      await eventually(async () => assert.equal((await dead()).length, 1));
      const [letter] = await dead();
      accept = true;
      await journey('dead-letter-replay', async (page) => {
        await signIn(page);
        await page.goto(`${BASE_URL}/_/#/operations/webhooks`);
        const table = page.getByRole('table', { name: 'Dead letters' });
        await table.getByRole('button', { name: `Replay delivery ${letter.id}` }).waitFor();
        await shot(page, 'dead-letter-listed');
        await table.getByRole('button', { name: `Replay delivery ${letter.id}` }).click();
        await table.getByRole('button', { name: `Replay delivery ${letter.id}` }).waitFor({ state: 'detached' });
      });
      await eventually(async () => assert.equal(got.length, 1, 'the receiver got the replayed event'));
      assert.equal(got[0].data.record.id, rec.id, 'the CloudEvent carries the record');
      assert.ok(letter.record.endsWith(`/${rec.id}`), letter.record);
      assert.deepEqual(await dead(), []);
    } finally {
      await pb.send(`/api/webhooks/${hook.id}`, { method: 'DELETE' });
      server.close();
    }
  });

  test('the records page fits a phone screen', () =>
    journey('phone', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/users`);
      await page.getByRole('table', { name: 'users records' }).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    }, { viewport: { width: 390, height: 844 } }));

  test('on PostgreSQL the backups page says to use the database\'s own tooling', { skip: process.env.BASALT_BACKEND !== 'postgres' }, async () => {
    const expected = await pb.backups.getFullList().then(() => null, (e) => e.response.message);
    assert.match(expected, /PostgreSQL/);
    await journey('backups-postgres', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/backups`);
      await page.getByRole('status').filter({ hasText: expected }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'Create backup' }).count(), 0);
    });
  });

  test('create a backup, change the data, restore the backup: the change is gone (last: it resets the data)', { skip: process.env.BASALT_BACKEND === 'postgres' && 'PostgreSQL is backed up with its own tooling' }, async () => {
    const kept = uniq('kept');
    await pb.collections.create({ name: kept, type: 'base', fields: [{ name: 'title', type: 'text' }] });
    const key = `${uniq('e2e')}.zip`;
    let later = '';
    await journey('backup-restore', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/backups`);
      await page.getByLabel('Backup name (optional)').fill(key);
      await page.getByRole('button', { name: 'Create backup' }).click();
      const row = page.getByRole('table', { name: 'Backups' }).getByRole('row').filter({ hasText: key });
      await row.waitFor();
      assert.ok((await pb.backups.getFullList()).some((b) => b.key === key), 'the API lists the backup');

      later = uniq('later');
      await pb.collections.create({ name: later, type: 'base', fields: [{ name: 'title', type: 'text' }] });
      page.once('dialog', (d) => d.accept());
      await row.getByRole('button', { name: `Restore ${key}` }).click();
      await page.getByText(`Restored "${key}"`).waitFor({ timeout: 60_000 });
    });
    const after = await api();
    const names = (await after.collections.getFullList()).map((c) => c.name);
    assert.ok(names.includes(kept), 'what the backup held is there');
    assert.ok(!names.includes(later), 'what was made after the backup is gone');
  });
});
