// The rest of the dashboard, a journey each: PII options in the field editor, bulk delete, request
// logs with a filter preset and the chart, a cron job run now, schema export and import.
// Needs a server with a PII key ring (scripts/test-sdk.sh sets BASALT_PII_KEYS).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
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
});
