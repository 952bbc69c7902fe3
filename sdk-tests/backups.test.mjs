// Backups: pb.backups.create/getFullList/getDownloadURL/upload/delete/restore,
// superuser-only guards, name validation, concurrent backups and a full
// restore round trip (PocketBase restarts its own process after a restore;
// the test polls until the restored data is served).
//
// Backend switch (env BASALT_BACKEND):
// - SQLite (default, and the reference PocketBase): every test below except the
//   PostgreSQL one runs.
// - BASALT_BACKEND=postgres: a Basalt server on PostgreSQL does not do backups;
//   they belong to the database's own tooling (pg_dump, base backups with WAL
//   archiving). Every backups endpoint (list, create, upload, download, delete,
//   restore) answers 400 with a message that says so, e.g.
//   "Backups are not supported on PostgreSQL - use the database's own tooling (pg_dump, base backups)."
//   The health check tells superusers `canBackup: false`. Only that test runs
//   then; the others are skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { superuser, guest, uniq, expectError, raw, signUpAndLogin, DATE_RE, BASE_URL } from './helpers.mjs';

const PG = process.env.BASALT_BACKEND === 'postgres';
const SQLITE_ONLY = PG ? 'BASALT_BACKEND=postgres: backups belong to the database tooling' : false;

const NEED_AUTH = { data: {}, message: 'The request requires valid record authorization token.', status: 401 };
const NOT_SUPERUSER = { data: {}, message: 'The authorized record is not allowed to perform this action.', status: 403 };
const NO_DOWNLOAD = { data: {}, message: 'Insufficient permissions to access the resource.', status: 403 };
const NOT_FOUND = { data: {}, message: "The requested resource wasn't found.", status: 404 };
const BUSY = 'Try again later - another backup/restore process has already been started.';

let su;
const created = new Set(); // backup keys to delete in after()

before(async () => {
  su = await superuser();
});

after(async () => {
  if (PG) return;
  for (const key of created) {
    try { await su.backups.delete(key); } catch { /* already gone */ }
  }
});

/** A unique valid backup name ([a-z0-9_-]+.zip). */
function backupName(prefix = 'bk') {
  const name = `${uniq(prefix)}.zip`;
  created.add(name);
  return name;
}

/** Names of the entries of a zip file (reads the central directory). */
function zipEntries(buf) {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  assert.ok(eocd >= 0, 'zip end of central directory found');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const names = [];
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(p), 0x02014b50, 'central directory entry');
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    names.push(buf.subarray(p + 46, p + 46 + nameLen).toString('utf8'));
    p += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}

async function download(key) {
  const token = await su.files.getToken();
  const res = await fetch(su.backups.getDownloadURL(token, key));
  return { status: res.status, headers: res.headers, buf: Buffer.from(await res.arrayBuffer()) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wait until no backup/restore is running (health reports canBackup to superusers). */
async function waitIdle() {
  for (let i = 0; i < 100; i++) {
    const h = await raw('/api/health', { token: su.authStore.token }).catch(() => null);
    if (h?.status === 200 && h.json?.data?.canBackup === true) return;
    await sleep(100);
  }
  assert.fail('backups stayed busy');
}

// ---------------------------------------------------------------------------

test('PostgreSQL backend: every backups endpoint answers 400 pointing at the database tooling', { skip: !PG && 'only with BASALT_BACKEND=postgres' }, async () => {
  const checks = [
    () => su.backups.getFullList(),
    () => su.backups.create('pg_test.zip'),
    () => su.backups.upload({ file: new File([Buffer.from('PK\x05\x06' + '\0'.repeat(18), 'binary')], 'pg_up.zip', { type: 'application/zip' }) }),
    () => su.backups.delete('pg_test.zip'),
    () => su.backups.restore('pg_test.zip'),
  ];
  for (const fn of checks) {
    const err = await expectError(fn);
    assert.equal(err.status, 400);
    assert.deepEqual(err.response.data, {});
    assert.match(err.response.message, /PostgreSQL/);
    assert.match(err.response.message, /tool/i);
  }
  const dl = await download('pg_test.zip');
  assert.equal(dl.status, 400);
  assert.match(JSON.parse(dl.buf.toString('utf8')).message, /PostgreSQL/);

  const health = await raw('/api/health', { token: su.authStore.token });
  assert.equal(health.json.data.canBackup, false);
});

test('settings.backups shape and cron validation', { skip: SQLITE_ONLY }, async () => {
  const s = await su.settings.getAll();
  assert.deepEqual(Object.keys(s.backups).sort(), ['cron', 'cronMaxKeep', 's3']);
  assert.deepEqual(Object.keys(s.backups.s3).sort(), ['accessKey', 'bucket', 'enabled', 'endpoint', 'forcePathStyle', 'region']);
  assert.equal('secret' in s.backups.s3, false, 'the S3 secret is never output');

  const bad = await expectError(() => su.settings.update({ backups: { cron: 'not a cron' } }));
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.response, {
    data: {
      backups: {
        cron: {
          code: 'validation_invalid_cron',
          message: 'Invalid cron expression - must be a valid macro or to have exactly 5 space separated segments.',
        },
      },
    },
    message: 'An error occurred while saving the new settings.',
    status: 400,
  });
  const keep = await expectError(() => su.settings.update({ backups: { cron: '0 0 * * *', cronMaxKeep: 0 } }));
  assert.deepEqual(keep.response.data, { backups: { cronMaxKeep: { code: 'validation_required', message: 'Cannot be blank.' } } });
  assert.deepEqual((await su.settings.getAll()).backups, s.backups, 'failed updates change nothing');
});

test('create (named and auto-named), list shape, download with a superuser file token', { skip: SQLITE_ONLY }, async () => {
  await waitIdle();
  const health = await raw('/api/health', { token: su.authStore.token });
  assert.equal(health.json.data.canBackup, true);

  const name = backupName();
  assert.equal(await su.backups.create(name), true);
  const list = await su.backups.getFullList();
  assert.ok(Array.isArray(list));
  const item = list.find((b) => b.key === name);
  assert.ok(item, 'the new backup is listed');
  assert.deepEqual(Object.keys(item).sort(), ['key', 'modified', 'size']);
  assert.equal(typeof item.size, 'number');
  assert.ok(item.size > 0);
  assert.match(item.modified, DATE_RE);
  assert.ok(Math.abs(Date.parse(item.modified.replace(' ', 'T')) - Date.now()) < 120_000, 'modified is about now');
  // listed in key order
  const keys = list.map((b) => b.key);
  assert.deepEqual(keys, [...keys].sort());

  // auto-named: pb_backup_<snake_case appName>_<UTC YYYYMMDDHHMMSS>.zip
  const before = new Set(keys);
  await waitIdle();
  await su.backups.create('');
  const auto = (await su.backups.getFullList()).filter((b) => !before.has(b.key));
  assert.equal(auto.length, 1);
  created.add(auto[0].key);
  const m = /^pb_backup_([a-z0-9_]*)_(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.zip$/.exec(auto[0].key);
  assert.ok(m, auto[0].key);
  const appName = (await su.settings.getAll()).meta.appName;
  assert.equal(m[1], appName.replace(/([a-z0-9])([A-Z])/g, '$1_$2').split(/[^A-Za-z0-9]+/).filter(Boolean).join('_').toLowerCase().slice(0, 50));
  const stamp = Date.UTC(+m[2], +m[3] - 1, +m[4], +m[5], +m[6], +m[7]);
  assert.ok(Math.abs(stamp - Date.now()) < 120_000, 'the timestamp is now, in UTC');

  // download: a zip, served as attachment
  const dl = await download(name);
  assert.equal(dl.status, 200);
  assert.equal(dl.headers.get('content-type'), 'application/zip');
  assert.equal(dl.headers.get('content-disposition'), `attachment; filename="${name}"`);
  assert.equal(dl.buf.length, item.size);
  assert.equal(dl.buf.subarray(0, 4).toString('binary'), 'PK\x03\x04');
  const entries = zipEntries(dl.buf);
  assert.ok(entries.length > 0);
  assert.ok(!entries.some((e) => e.startsWith('backups/')), 'the backups dir is not in the backup');

  // download needs a *file* token of a superuser, in the query
  const plain = await fetch(`${BASE_URL}/api/backups/${name}`, { headers: { Authorization: su.authStore.token } });
  assert.equal(plain.status, 403);
  assert.deepEqual(await plain.json(), NO_DOWNLOAD);
  const authAsFile = await fetch(su.backups.getDownloadURL(su.authStore.token, name));
  assert.deepEqual(await authAsFile.json(), NO_DOWNLOAD);
  const user = await signUpAndLogin('users');
  const userFileToken = await user.pb.files.getToken();
  const asUser = await fetch(su.backups.getDownloadURL(userFileToken, name));
  assert.equal(asUser.status, 403);
  assert.deepEqual(await asUser.json(), NO_DOWNLOAD);
  const missing = await download('no_such_backup.zip');
  assert.equal(missing.status, 404);
  assert.deepEqual(JSON.parse(missing.buf.toString('utf8')), NOT_FOUND);
});

test('non-superusers: 401 without auth, 403 for a regular user', { skip: SQLITE_ONLY }, async () => {
  const user = await signUpAndLogin('users');
  const file = () => new File([Buffer.from('PK\x05\x06' + '\0'.repeat(18), 'binary')], 'x.zip', { type: 'application/zip' });
  const calls = [
    (pb) => pb.backups.getFullList(),
    (pb) => pb.backups.create('nope_by_user.zip'),
    (pb) => pb.backups.upload({ file: file() }),
    (pb) => pb.backups.delete('nope_by_user.zip'),
    (pb) => pb.backups.restore('nope_by_user.zip'),
  ];
  for (const call of calls) {
    const g = await expectError(() => call(guest()));
    assert.deepEqual(g.response, NEED_AUTH);
    const u = await expectError(() => call(user.pb));
    assert.deepEqual(u.response, NOT_SUPERUSER);
  }
  assert.equal((await su.backups.getFullList()).some((b) => b.key === 'nope_by_user.zip'), false);
});

test('create: name validation', { skip: SQLITE_ONLY }, async () => {
  await waitIdle();
  const invalidFormat = ['Bad Name.zip', 'noext', 'UPPER.zip', 'a.ZIP', 'x.tar.gz', '../evil.zip', 'a.b.zip', '.zip', 'ä.zip'];
  for (const name of invalidFormat) {
    const err = await expectError(() => su.backups.create(name));
    assert.equal(err.status, 400, name);
    assert.deepEqual(err.response, {
      data: { name: { code: 'validation_match_invalid', message: 'Must be in a valid format.' } },
      message: 'An error occurred while validating the submitted data.',
      status: 400,
    }, name);
  }
  const tooLong = await expectError(() => su.backups.create(`${'a'.repeat(147)}.zip`));
  assert.deepEqual(tooLong.response.data, {
    name: { code: 'validation_length_out_of_range', message: 'The length must be between 1 and 150.', params: { max: 150, min: 1 } },
  });

  // 150 characters, digits, "-" and "_" are fine
  const longest = `${uniq('l').replace(/_/g, '-')}`.padEnd(146, 'z') + '.zip';
  created.add(longest);
  assert.equal(longest.length, 150);
  assert.equal(await su.backups.create(longest), true);

  // an existing name
  await waitIdle();
  const dup = await expectError(() => su.backups.create(longest));
  assert.deepEqual(dup.response, {
    data: { name: { code: 'validation_backup_name_exists', message: 'The backup file name is invalid or already exists.' } },
    message: 'An error occurred while validating the submitted data.',
    status: 400,
  });
});

test('upload and delete', { skip: SQLITE_ONLY }, async () => {
  await waitIdle();
  const source = backupName('src');
  await su.backups.create(source);
  const bytes = (await download(source)).buf;

  // upload keeps the client's file name as the key (no name rules besides uniqueness)
  const upName = backupName('up');
  assert.equal(await su.backups.upload({ file: new File([bytes], upName, { type: 'application/zip' }) }), true);
  const item = (await su.backups.getFullList()).find((b) => b.key === upName);
  assert.ok(item);
  assert.equal(item.size, bytes.length);
  assert.ok((await download(upName)).buf.equals(bytes), 'the uploaded bytes come back');

  // same name again
  const dup = await expectError(() => su.backups.upload({ file: new File([bytes], upName, { type: 'application/zip' }) }));
  assert.deepEqual(dup.response, {
    data: { file: { code: 'validation_backup_name_exists', message: 'Backup file with the specified name already exists.' } },
    message: 'An error occurred while validating the submitted data.',
    status: 400,
  });

  // not a zip (content is sniffed; the name and the client's type do not count)
  const fake = await expectError(() => su.backups.upload({ file: new File(['just text'], 'fake.zip', { type: 'application/zip' }) }));
  assert.equal(fake.status, 400);
  assert.equal(fake.response.message, 'An error occurred while validating the submitted data.');
  assert.equal(fake.response.data.file.code, 'validation_invalid_mime_type');
  assert.match(fake.response.data.file.message, /^"fake_[a-z0-9]{10}\.zip" mime type must be one of: application\/zip\.$/);
  assert.equal((await su.backups.getFullList()).some((b) => b.key === 'fake.zip'), false);

  // no file
  for (const body of [{}, (() => { const f = new FormData(); f.append('other', '1'); return f; })()]) {
    const none = await expectError(() => su.backups.upload(body));
    assert.deepEqual(none.response, {
      data: { file: { code: 'validation_required', message: 'Cannot be blank.' } },
      message: 'An error occurred while validating the submitted data.',
      status: 400,
    });
  }

  // delete
  assert.equal(await su.backups.delete(upName), true);
  assert.equal((await su.backups.getFullList()).some((b) => b.key === upName), false);
  const gone = await download(upName);
  assert.equal(gone.status, 404);
  const again = await expectError(() => su.backups.delete(upName));
  assert.equal(again.status, 400);
  assert.deepEqual(again.response.data, {});
  assert.ok(again.response.message.startsWith('Invalid or already deleted backup file.'), again.response.message);

  // restore of a missing key
  const noRestore = await expectError(() => su.backups.restore('no_such_backup.zip'));
  assert.deepEqual(noRestore.response, { data: {}, message: 'Missing or invalid backup file.', status: 400 });
});

test('concurrent backups: the ones that overlap a running backup get 400', { skip: SQLITE_ONLY }, async () => {
  await waitIdle();
  const names = [backupName('c'), backupName('c'), backupName('c'), backupName('c')];
  const results = await Promise.allSettled(names.map((n) => su.backups.create(n)));
  const ok = results.filter((r) => r.status === 'fulfilled');
  assert.ok(ok.length >= 1, 'at least one backup is created');
  for (const r of results.filter((x) => x.status === 'rejected')) {
    assert.equal(r.reason.status, 400);
    assert.deepEqual(r.reason.response, { data: {}, message: BUSY, status: 400 });
  }
  const listed = new Set((await su.backups.getFullList()).map((b) => b.key));
  results.forEach((r, i) => assert.equal(listed.has(names[i]), r.status === 'fulfilled', names[i]));
});

test('restore: the data (records and files) goes back to the backup; the server restarts', { skip: SQLITE_ONLY, timeout: 90_000 }, async () => {
  await waitIdle();
  const cname = uniq('bk_restore');
  await su.collections.create({
    name: cname,
    listRule: '',
    viewRule: '',
    fields: [{ name: 'title', type: 'text' }, { name: 'doc', type: 'file', maxSelect: 1 }],
  });
  const col = su.collection(cname);
  const keep = await col.create({ title: 'kept', doc: new File(['original body'], 'orig.txt', { type: 'text/plain' }) });
  const willDelete = await col.create({ title: 'deleted after backup' });
  const willChange = await col.create({ title: 'changed after backup' });

  const key = backupName('restore');
  await su.backups.create(key);
  await waitIdle();

  // changes after the backup
  await col.create({ title: 'created after backup' });
  await col.delete(willDelete.id);
  await col.update(willChange.id, { title: 'changed!' });
  const replaced = await col.update(keep.id, { doc: new File(['new body'], 'new.txt', { type: 'text/plain' }) });
  const laterName = uniq('bk_later');
  await su.collections.create({ name: laterName });
  const expected = ['changed after backup', 'deleted after backup', 'kept'];
  assert.notDeepEqual((await col.getFullList({ sort: 'title' })).map((r) => r.title), expected);

  // 204; PocketBase restores in the background about 1 s later and re-executes itself
  assert.equal(await su.backups.restore(key), true);

  // poll until the restored data is served (the server is down for a moment while it restarts)
  let titles = null;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    await sleep(250);
    try {
      const h = await fetch(`${BASE_URL}/api/health`);
      if (h.status !== 200) continue;
      titles = (await guest().collection(cname).getFullList({ sort: 'title' })).map((r) => r.title);
      if (JSON.stringify(titles) === JSON.stringify(expected)) break;
    } catch { /* restarting */ }
  }
  assert.deepEqual(titles, expected);

  // the superuser's token still works (it is in the restored database too)
  const back = await su.collection(cname).getOne(keep.id);
  assert.equal(back.doc, keep.doc, 'the file field value is the backed-up one');
  const orig = await fetch(su.files.getURL(back, keep.doc));
  assert.equal(orig.status, 200);
  assert.equal(await orig.text(), 'original body', 'the backed-up file is served again');
  assert.equal((await fetch(su.files.getURL(back, replaced.doc))).status, 404, 'the file uploaded after the backup is gone');

  // the collection created after the backup is gone; the backups themselves survive a restore
  const lost = await expectError(() => su.collections.getOne(laterName));
  assert.equal(lost.status, 404);
  await waitIdle();
  assert.ok((await su.backups.getFullList()).some((b) => b.key === key));
});
