// The rest of the dashboard, a journey each: PII options in the field editor, bulk delete, request
// logs with a filter preset and the chart, a cron job run now, schema export and import, the index
// editor, auth options, the SMTP test email.
// Needs a server with a PII key ring (scripts/test-sdk.sh sets BASALT_PII_KEYS).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configureSmtp, startSmtp } from '../../sdk-tests/smtp.mjs';
import { api, BASE_URL, close, eventually, journey, signIn, uniq } from './browser.mjs';

let pb;
before(async () => { pb = await api(); });
after(close);

describe('dashboard pages', () => {
  test('a field marked PII in the editor is encrypted with a blind index and a partial mask', async () => {
    const name = uniq('people');
    await journey('pii-field', async (page) => {
      await signIn(page);
      await page.getByRole('button', { name: '+ New collection' }).click();
      const dialog = page.getByRole('dialog', { name: 'New collection' });
      await dialog.getByLabel('Name', { exact: true }).fill(name);
      await dialog.getByRole('button', { name: '+ email', exact: true }).click();
      const card = dialog.locator('.field-card').last();
      await card.getByLabel(/^Field \d+ name$/).fill('contact');
      await card.getByText('PII: encrypt at rest').click();
      await card.getByText('Searchable (blind index, equality only)').click();
      await card.getByRole('combobox', { name: /^Mask/ }).selectOption('partial');
      await dialog.getByRole('button', { name: 'Create' }).click();
      await page.getByRole('heading', { name }).waitFor();
    });
    const f = (await pb.collections.getOne(name)).fields.find((x) => x.name === 'contact');
    assert.equal(f.pii?.searchable, true);
    assert.equal(f.pii?.mask, 'partial');
    assert.equal(f.pii?.revealRule, null, 'by default only superusers see the value');
    // Superusers reveal by default; a guest allowed to list sees the mask.
    await pb.collection(name).create({ contact: 'jane@example.com' });
    await pb.collections.update(name, { listRule: '' });
    const guest = await fetch(`${BASE_URL}/api/collections/${name}/records`).then((r) => r.json());
    assert.equal(guest.items[0].contact, 'j***@e***.com');
    await journey('pii-field-revealed', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      await page.getByRole('cell', { name: 'jane@example.com' }).waitFor();
    });
  });

  test('bulk delete removes the selected records', async () => {
    const name = uniq('bulk');
    await pb.collections.create({ name, type: 'base', fields: [{ name: 'title', type: 'text' }] });
    const recs = [];
    for (const t of ['one', 'two', 'three']) recs.push(await pb.collection(name).create({ title: t }));
    await journey('bulk-delete', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      await page.getByLabel(`Select ${recs[0].id}`).check();
      await page.getByLabel(`Select ${recs[2].id}`).check();
      page.once('dialog', (d) => d.accept());
      await page.getByRole('button', { name: 'Delete selected (2)' }).click();
      await page.getByText('1 record', { exact: true }).waitFor();
    });
    const left = await pb.collection(name).getFullList();
    assert.deepEqual(left.map((r) => r.title), ['two']);
  });

  test('request logs: the errors preset lists only failed requests, over a chart', async () => {
    await pb.collection('users').getOne('nosuchrecord1234').catch(() => {});
    await eventually(async () => assert.ok((await pb.logs.getList(1, 1, { filter: 'data.status >= 400' })).totalItems > 0));
    await journey('logs', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/logs`);
      await page.locator('svg.chart').waitFor();
      await page.getByRole('button', { name: 'Errors' }).click();
      const table = page.getByRole('table', { name: 'Request logs' });
      await table.getByRole('row', { name: /^Log / }).first().waitFor();
      await eventually(async () => {
        const statuses = await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.querySelectorAll('td')[4].textContent)));
        assert.ok(statuses.length > 0 && statuses.every((s) => s >= 400), `statuses ${statuses}`);
      });
    });
  });

  test('a cron job runs now from the crons tab', () =>
    journey('crons', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/operations/crons`);
      await page.getByRole('button', { name: 'Run __pbLogsCleanup__ now' }).click();
      await page.getByText('Ran __pbLogsCleanup__').waitFor();
    }));

  test('the schema is exported as JSON and a collection imported from JSON', async () => {
    const name = uniq('imported');
    await journey('schema-import', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/settings/collections`);
      const exported = page.getByLabel('Exported collections JSON');
      await eventually(async () => assert.ok(JSON.parse(await exported.inputValue()).some((c) => c.name === 'users')));
      await page.getByLabel('Collections JSON to import').fill(JSON.stringify([{ name, type: 'base', fields: [{ name: 'title', type: 'text' }] }]));
      await page.getByRole('button', { name: 'Import collections' }).click();
      await page.getByText('Collections imported').waitFor();
    });
    const c = await pb.collections.getOne(name);
    assert.deepEqual(c.fields.map((f) => f.name), ['id', 'title']);
  });

  test('an index added in the editor is created; a wrong one shows the server message', async () => {
    const name = uniq('indexed');
    await pb.collections.create({ name, type: 'base', fields: [{ name: 'title', type: 'text' }] });
    const bad = `CREATE INDEX idx_${name}_bad ON ${name} (nosuchcolumn)`;
    const expected = await pb.collections.update(name, { indexes: [bad] }).then(() => null, (e) => e.response.data.indexes?.['0']?.message || e.response.data.indexes?.message);
    assert.ok(expected, 'the server refuses the index');
    await journey('indexes', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      await page.getByRole('button', { name: 'Edit collection' }).click();
      const dialog = page.getByRole('dialog', { name: `Edit ${name}` });
      await dialog.getByRole('tab', { name: 'Indexes' }).click();
      await dialog.getByRole('button', { name: '+ Add index' }).click();
      await dialog.getByRole('textbox', { name: 'Index 1' }).fill(bad);
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      await dialog.getByRole('alert').filter({ hasText: expected }).waitFor();
      await dialog.getByRole('textbox', { name: 'Index 1' }).fill(`CREATE UNIQUE INDEX idx_${name}_title ON ${name} (title)`);
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      await dialog.waitFor({ state: 'detached' });
    });
    assert.deepEqual((await pb.collections.getOne(name)).indexes, [`CREATE UNIQUE INDEX idx_${name}_title ON ${name} (title)`]);
    await pb.collection(name).create({ title: 'x' });
    await assert.rejects(pb.collection(name).create({ title: 'x' }), 'the unique index holds');
  });

  test('auth options: one-time codes turned on for a collection in the editor', async () => {
    const name = uniq('members');
    await pb.collections.create({ name, type: 'auth', fields: [] });
    await journey('auth-options', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/collections/${name}`);
      await page.getByRole('button', { name: 'Edit collection' }).click();
      const dialog = page.getByRole('dialog', { name: `Edit ${name}` });
      await dialog.getByRole('tab', { name: 'Auth options' }).click();
      await dialog.getByLabel('Sign in with an emailed code').check();
      await dialog.getByLabel('Code length').fill('6');
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      await dialog.waitFor({ state: 'detached' });
    });
    const c = await pb.collections.getOne(name);
    assert.equal(c.otp.enabled, true);
    assert.equal(c.otp.length, 6);
    assert.equal((await pb.collection(name).listAuthMethods()).otp.enabled, true);
  });

  test('the SMTP test email reaches the mail server', async () => {
    const smtp = await startSmtp();
    const restore = await configureSmtp(pb, smtp, BASE_URL);
    const to = `${uniq('test')}@example.com`;
    try {
      const since = smtp.mark();
      await journey('test-email', async (page) => {
        await signIn(page);
        await page.goto(`${BASE_URL}/_/#/settings/mail`);
        await page.getByLabel('Test recipient').fill(to);
        await page.getByRole('combobox', { name: /^Template/ }).selectOption('password-reset');
        await page.getByRole('button', { name: 'Send test email' }).click();
        await page.getByText(`Test email sent to ${to}`).waitFor();
      });
      const mail = await smtp.waitForMailTo(to, /password/i, { since });
      assert.match(mail.subject, /password/i);
    } finally {
      await pb.settings.update(restore);
      await smtp.close();
    }
  });

  test('events & cluster: the webhooks sink with its lag, and this node', async () => {
    const health = (await pb.health.check()).data;
    const sink = health.events.sinks.find((x) => x.name === 'webhooks');
    assert.ok(sink, 'the server runs the webhooks sink');
    await journey('events-cluster', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/operations/events`);
      await page.getByRole('table', { name: 'Sinks' }).getByRole('row').filter({ hasText: 'webhooks' }).waitFor();
      await page.getByRole('tab', { name: 'Cluster' }).click();
      const panel = page.getByRole('region', { name: 'Cluster' });
      await panel.waitFor();
      if (health.cluster.node) await panel.getByText(health.cluster.node).waitFor();
    });
  });
});
