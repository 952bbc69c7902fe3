// Settings journeys: a saved setting reaches the API; the S3 connection test against a real
// S3-compatible server (s3s-fs, started by scripts/test-sdk.sh: S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY,
// S3_SECRET, S3_REGION) reports success, and a wrong secret shows the server's error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, BASE_URL, close, journey, signIn, uniq } from './browser.mjs';

let pb;
let saved;
before(async () => { pb = await api(); saved = await pb.settings.getAll(); });
after(async () => {
  await pb.settings.update({ meta: { appName: saved.meta.appName }, s3: { ...saved.s3, enabled: false } });
  await close();
});

describe('settings', () => {
  test('the application name is saved', async () => {
    const name = uniq('App');
    await journey('settings-application', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/settings/application`);
      await page.getByLabel('Application name').fill(name);
      await page.getByRole('button', { name: 'Save changes' }).click();
      await page.getByText('Settings saved').waitFor();
    });
    assert.equal((await pb.settings.getAll()).meta.appName, name);
  });

  const s3 = process.env.S3_ENDPOINT;
  test('S3 storage: saved, then the connection test passes; a wrong secret shows the server error', { skip: !s3 && 'no S3 server (S3_ENDPOINT) in this run' }, async () => {
    await journey('settings-s3', async (page) => {
      await signIn(page);
      await page.goto(`${BASE_URL}/_/#/settings/storage`);
      const form = page.locator('form').filter({ has: page.getByLabel('Bucket') }).first();
      await form.getByLabel('Bucket').fill(process.env.S3_BUCKET);
      await form.getByLabel('Region').fill(process.env.S3_REGION || 'us-east-1');
      await form.getByLabel('Endpoint').fill(s3);
      await form.getByLabel('Access key').fill(process.env.S3_ACCESS_KEY);
      await form.getByLabel('Secret').fill(process.env.S3_SECRET);
      await form.getByLabel('Force path-style addressing').check();
      await form.getByLabel('Use S3 storage').check();
      await form.getByRole('button', { name: 'Save changes' }).click();
      await page.getByText('Settings saved').first().waitFor();
      await page.getByRole('button', { name: 'Test storage S3 connection' }).click();
      await page.getByText('The S3 connection works.').waitFor();

      const expected = await pb.settings.update({ s3: { secret: 'not-the-secret' } })
        .then(() => pb.settings.testS3('storage'))
        .then(() => null, (e) => e.response.message);
      assert.ok(expected, 'the server refuses the wrong secret');
      await page.getByRole('button', { name: 'Test storage S3 connection' }).click();
      // The message's first sentence (the raw error after it names a request time).
      await page.getByRole('alert').filter({ hasText: expected.split('.')[0] }).waitFor();
    });
    const s = await pb.settings.getAll();
    assert.equal(s.s3.enabled, true);
    assert.equal(s.s3.endpoint, s3);
    assert.equal(s.s3.forcePathStyle, true);
  });
});
