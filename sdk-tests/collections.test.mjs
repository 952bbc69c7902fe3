// Collections API (superuser only): create/read/update/delete, indexes,
// truncate, scaffolds, import, access control and validation errors.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { superuser, guest, uniq, expectError, signUpAndLogin, DATE_RE, ID_RE } from './helpers.mjs';

let su;
let authorsColl;

before(async () => {
  su = await superuser();
  authorsColl = await su.collections.create({
    name: uniq('c_authors'),
    type: 'base',
    fields: [{ name: 'name', type: 'text' }],
  });
});

function fieldByName(coll, name) {
  const f = coll.fields.find((x) => x.name === name);
  assert.ok(f, `field ${name} missing from collection ${coll.name}`);
  return f;
}

// The system primary key field every base collection gets.
const ID_FIELD = {
  autogeneratePattern: '[a-z0-9]{15}',
  help: '',
  hidden: false,
  id: 'text3208210256',
  max: 15,
  min: 15,
  name: 'id',
  pattern: '^[a-z0-9]+$',
  presentable: false,
  primaryKey: true,
  required: true,
  system: true,
  type: 'text',
};

function allTypesFields(authorsId) {
  return [
    { name: 'title', type: 'text', required: true, min: 3, max: 50 },
    { name: 'count', type: 'number', min: 0, max: 100, onlyInt: true },
    { name: 'active', type: 'bool' },
    { name: 'contact', type: 'email' },
    { name: 'site', type: 'url' },
    { name: 'due', type: 'date' },
    { name: 'status', type: 'select', values: ['draft', 'published'], maxSelect: 1 },
    { name: 'tags', type: 'select', values: ['a', 'b', 'c'], maxSelect: 3 },
    { name: 'meta', type: 'json' },
    { name: 'author', type: 'relation', collectionId: authorsId, maxSelect: 1 },
    { name: 'helpers', type: 'relation', collectionId: authorsId, maxSelect: 5 },
    { name: 'created', type: 'autodate', onCreate: true, onUpdate: false },
    { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
  ];
}

test('superuser creates a base collection with every basic field type', async () => {
  const name = uniq('c_all');
  const c = await su.collections.create({ name, type: 'base', fields: allTypesFields(authorsColl.id) });

  // collection JSON
  assert.equal(c.id, 'pbc_' + crc32('base' + name), 'collection id is pbc_ + crc32(type+name)');
  assert.equal(c.name, name);
  assert.equal(c.type, 'base');
  assert.equal(c.system, false);
  for (const r of ['listRule', 'viewRule', 'createRule', 'updateRule', 'deleteRule']) {
    assert.equal(c[r], null, `${r} defaults to null`);
  }
  assert.deepEqual(c.indexes, []);
  assert.match(c.created, DATE_RE);
  assert.match(c.updated, DATE_RE);

  // the id field is prepended, the rest keep their order
  assert.deepEqual(c.fields.map((f) => f.name), [
    'id', 'title', 'count', 'active', 'contact', 'site', 'due', 'status', 'tags', 'meta',
    'author', 'helpers', 'created', 'updated',
  ]);
  assert.deepEqual(c.fields[0], ID_FIELD);

  // field ids are <type><crc32(name)>
  for (const f of c.fields) {
    assert.equal(f.id, f.type + crc32(f.name), `id of field ${f.name}`);
  }

  // exact JSON of each field type (defaults filled in by the server)
  assert.deepEqual(fieldByName(c, 'title'), {
    autogeneratePattern: '', help: '', hidden: false, id: 'text' + crc32('title'), max: 50, min: 3,
    name: 'title', pattern: '', presentable: false, primaryKey: false, required: true, system: false, type: 'text',
  });
  assert.deepEqual(fieldByName(c, 'count'), {
    help: '', hidden: false, id: 'number' + crc32('count'), max: 100, min: 0, name: 'count', onlyInt: true,
    presentable: false, required: false, system: false, type: 'number',
  });
  assert.deepEqual(fieldByName(c, 'active'), {
    help: '', hidden: false, id: 'bool' + crc32('active'), name: 'active', presentable: false,
    required: false, system: false, type: 'bool',
  });
  assert.deepEqual(fieldByName(c, 'contact'), {
    exceptDomains: [], help: '', hidden: false, id: 'email' + crc32('contact'), name: 'contact',
    onlyDomains: [], presentable: false, required: false, system: false, type: 'email',
  });
  assert.deepEqual(fieldByName(c, 'site'), {
    exceptDomains: [], help: '', hidden: false, id: 'url' + crc32('site'), name: 'site',
    onlyDomains: [], presentable: false, required: false, system: false, type: 'url',
  });
  assert.deepEqual(fieldByName(c, 'due'), {
    help: '', hidden: false, id: 'date' + crc32('due'), max: '', min: '', name: 'due',
    presentable: false, required: false, system: false, type: 'date',
  });
  assert.deepEqual(fieldByName(c, 'status'), {
    help: '', hidden: false, id: 'select' + crc32('status'), maxSelect: 1, name: 'status',
    presentable: false, required: false, system: false, type: 'select', values: ['draft', 'published'],
  });
  assert.deepEqual(fieldByName(c, 'tags').maxSelect, 3);
  assert.deepEqual(fieldByName(c, 'meta'), {
    help: '', hidden: false, id: 'json' + crc32('meta'), maxSize: 0, name: 'meta',
    presentable: false, required: false, system: false, type: 'json',
  });
  assert.deepEqual(fieldByName(c, 'author'), {
    cascadeDelete: false, collectionId: authorsColl.id, help: '', hidden: false,
    id: 'relation' + crc32('author'), maxSelect: 1, minSelect: 0, name: 'author',
    presentable: false, required: false, system: false, type: 'relation',
  });
  assert.equal(fieldByName(c, 'helpers').maxSelect, 5);
  // autodate fields have neither help nor required
  assert.deepEqual(fieldByName(c, 'created'), {
    hidden: false, id: 'autodate' + crc32('created'), name: 'created', onCreate: true, onUpdate: false,
    presentable: false, system: false, type: 'autodate',
  });
  assert.deepEqual(fieldByName(c, 'updated'), {
    hidden: false, id: 'autodate' + crc32('updated'), name: 'updated', onCreate: true, onUpdate: true,
    presentable: false, system: false, type: 'autodate',
  });

  // the new collection is usable right away; values come back typed
  const author = await su.collection(authorsColl.name).create({ name: 'Ann' });
  const rec = await su.collection(name).create({
    title: 'Hello world',
    count: 7,
    active: true,
    contact: 'ann@example.com',
    site: 'https://example.com/a',
    due: '2024-01-31 12:34:56',
    status: 'draft',
    tags: ['a', 'c'],
    meta: { nested: [1, 2, { x: true }] },
    author: author.id,
    helpers: [author.id],
  });
  assert.match(rec.id, ID_RE);
  assert.equal(rec.title, 'Hello world');
  assert.equal(rec.count, 7);
  assert.equal(rec.active, true);
  assert.equal(rec.contact, 'ann@example.com');
  assert.equal(rec.site, 'https://example.com/a');
  assert.equal(rec.due, '2024-01-31 12:34:56.000Z');
  assert.equal(rec.status, 'draft');
  assert.deepEqual(rec.tags, ['a', 'c']);
  assert.deepEqual(rec.meta, { nested: [1, 2, { x: true }] });
  assert.equal(rec.author, author.id);
  assert.deepEqual(rec.helpers, [author.id]);
  assert.match(rec.created, DATE_RE);
  assert.match(rec.updated, DATE_RE);

  // zero values of an empty record
  const empty = await su.collection(name).create({ title: 'abc' });
  assert.deepEqual(
    { ...empty, id: undefined, created: undefined, updated: undefined },
    {
      id: undefined, created: undefined, updated: undefined,
      collectionId: c.id, collectionName: name,
      title: 'abc', count: 0, active: false, contact: '', site: '', due: '', status: '', tags: [],
      meta: null, author: '', helpers: [],
    },
  );
});

test('fields left unset get server defaults (number min/max null, maxSelect 0 = single)', async () => {
  const name = uniq('c_defaults');
  const c = await su.collections.create({
    name,
    fields: [
      { name: 'n', type: 'number' },
      { name: 't', type: 'text' },
      { name: 's', type: 'select', values: ['x'] },
      { name: 'r', type: 'relation', collectionId: authorsColl.id },
    ],
  });
  assert.equal(c.type, 'base', 'type defaults to base');
  assert.deepEqual(fieldByName(c, 'n'), {
    help: '', hidden: false, id: 'number' + crc32('n'), max: null, min: null, name: 'n', onlyInt: false,
    presentable: false, required: false, system: false, type: 'number',
  });
  assert.deepEqual(fieldByName(c, 't'), {
    autogeneratePattern: '', help: '', hidden: false, id: 'text' + crc32('t'), max: 0, min: 0,
    name: 't', pattern: '', presentable: false, primaryKey: false, required: false, system: false, type: 'text',
  });
  assert.equal(fieldByName(c, 's').maxSelect, 0);
  assert.equal(fieldByName(c, 'r').maxSelect, 0);
  assert.equal(fieldByName(c, 'r').minSelect, 0);
  // no created/updated unless asked for
  assert.deepEqual(c.fields.map((f) => f.name), ['id', 'n', 't', 's', 'r']);

  const rec = await su.collection(name).create({});
  assert.equal(rec.n, 0);
  assert.equal(rec.t, '');
  assert.equal(rec.s, '', 'maxSelect 0 select is a single (string) value');
  assert.equal(rec.r, '', 'maxSelect 0 relation is a single (string) value');
  assert.equal(rec.created, undefined);
  assert.equal(rec.updated, undefined);
});

test('getOne / getList / getFullList of collections', async () => {
  const name = uniq('c_read');
  const c = await su.collections.create({ name, fields: [{ name: 'title', type: 'text' }] });

  const byName = await su.collections.getOne(name);
  const byId = await su.collections.getOne(c.id);
  assert.deepEqual(byName, c);
  assert.deepEqual(byId, c);

  const list = await su.collections.getList(1, 2);
  assert.deepEqual(Object.keys(list).sort(), ['items', 'page', 'perPage', 'totalItems', 'totalPages']);
  assert.equal(list.page, 1);
  assert.equal(list.perPage, 2);
  assert.equal(list.items.length, 2);
  assert.ok(list.totalItems >= 3);
  assert.equal(list.totalPages, Math.ceil(list.totalItems / 2));

  const filtered = await su.collections.getList(1, 30, { filter: `name = '${name}'` });
  assert.equal(filtered.totalItems, 1);
  assert.equal(filtered.items[0].id, c.id);

  const full = await su.collections.getFullList();
  const names = full.map((x) => x.name);
  assert.ok(names.includes(name));
  assert.ok(names.includes('users'), 'default users collection exists');
  assert.ok(names.includes('_superusers'), 'system _superusers collection is listed');
  const sus = full.find((x) => x.name === '_superusers');
  assert.equal(sus.id, 'pbc_3142635823');
  assert.equal(sus.type, 'auth');
  assert.equal(sus.system, true);

  const first = await su.collections.getFirstListItem(`name = '${name}'`);
  assert.equal(first.id, c.id);

  const sorted = await su.collections.getList(1, 200, { sort: '-created', fields: 'name' });
  assert.deepEqual(Object.keys(sorted.items[0]), ['name']);

  const err = await expectError(() => su.collections.getOne(uniq('missing')));
  assert.equal(err.status, 404);
  assert.deepEqual(err.response, { data: {}, message: "The requested resource wasn't found.", status: 404 });

  const bad = await expectError(() => su.collections.getList(1, 30, { filter: "nope = 'x'" }));
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.response.data, {});
});

test('update: add, rename and remove fields; untouched data survives', async () => {
  const name = uniq('c_upd');
  const c = await su.collections.create({
    name,
    fields: [
      { name: 'keep', type: 'text' },
      { name: 'oldname', type: 'number' },
      { name: 'drop', type: 'bool' },
    ],
  });
  const rec = await su.collection(name).create({ keep: 'kept value', oldname: 42, drop: true });

  // rename keeps the field id; remove by omission; add a new one
  const fields = c.fields
    .filter((f) => f.name !== 'drop')
    .map((f) => (f.name === 'oldname' ? { ...f, name: 'newname' } : f))
    .concat([{ name: 'added', type: 'text' }]);
  const updated = await su.collections.update(name, { fields });
  assert.deepEqual(updated.fields.map((f) => f.name), ['id', 'keep', 'newname', 'added']);
  assert.equal(fieldByName(updated, 'newname').id, fieldByName(c, 'oldname').id, 'rename keeps the field id');
  assert.equal(updated.id, c.id);
  assert.equal(updated.created, c.created);

  const after = await su.collection(name).getOne(rec.id);
  assert.equal(after.keep, 'kept value');
  assert.equal(after.newname, 42, 'renamed field keeps its data');
  assert.equal(after.added, '');
  assert.equal('oldname' in after, false);
  assert.equal('drop' in after, false);

  // the new field is writable; the removed one is ignored on write
  const w = await su.collection(name).update(rec.id, { added: 'new', drop: false });
  assert.equal(w.added, 'new');
  assert.equal('drop' in w, false);

  // change rules, rename the collection
  const renamed = await su.collections.update(c.id, { name: name + '_r', listRule: '', viewRule: 'id != ""' });
  assert.equal(renamed.name, name + '_r');
  assert.equal(renamed.listRule, '');
  assert.equal(renamed.viewRule, 'id != ""');
  assert.equal(renamed.id, c.id, 'renaming keeps the collection id');
  const list = await guest().collection(name + '_r').getList();
  assert.equal(list.totalItems, 1);
  const gone = await expectError(() => su.collection(name).getList());
  assert.equal(gone.status, 404);
});

test('add a unique index: it is listed and enforced', async () => {
  const name = uniq('c_idx');
  await su.collections.create({ name, fields: [{ name: 'code', type: 'text' }] });
  await su.collection(name).create({ code: 'A1' });

  const idx = `CREATE UNIQUE INDEX idx_${name}_code ON ${name} (code)`;
  const c = await su.collections.update(name, { indexes: [idx] });
  assert.deepEqual(c.indexes, [idx]);

  const err = await expectError(() => su.collection(name).create({ code: 'A1' }));
  assert.equal(err.status, 400);
  assert.equal(err.response.message, 'Failed to create record.');
  assert.equal(err.response.data.code.code, 'validation_not_unique');
  await su.collection(name).create({ code: 'A2' });

  const bad = await expectError(() => su.collections.update(name, { indexes: ['not an index'] }));
  assert.equal(bad.status, 400);
  assert.equal(bad.response.message, 'Failed to update collection.');
  assert.equal(bad.response.data.indexes['0'].code, 'validation_invalid_index_expression');
});

test('truncate removes every record but keeps the collection', async () => {
  const name = uniq('c_trunc');
  await su.collections.create({ name, fields: [{ name: 't', type: 'text' }] });
  for (let i = 0; i < 3; i++) await su.collection(name).create({ t: 'x' + i });
  assert.equal((await su.collection(name).getList()).totalItems, 3);

  assert.equal(await su.collections.truncate(name), true);
  const list = await su.collection(name).getList();
  assert.deepEqual(list, { items: [], page: 1, perPage: 30, totalItems: 0, totalPages: 0 });
  assert.equal((await su.collections.getOne(name)).name, name);
});

test('delete a collection: then 404 for it and its records', async () => {
  const name = uniq('c_del');
  const c = await su.collections.create({ name, fields: [{ name: 't', type: 'text' }] });
  await su.collection(name).create({ t: 'x' });

  assert.equal(await su.collections.delete(c.id), true);

  const e1 = await expectError(() => su.collections.getOne(name));
  assert.equal(e1.status, 404);
  const e2 = await expectError(() => su.collection(name).getList());
  assert.equal(e2.status, 404);
  assert.deepEqual(e2.response, { data: {}, message: 'Missing collection context.', status: 404 });
  const e3 = await expectError(() => su.collections.delete(c.id));
  assert.equal(e3.status, 404);
});

test('a collection referenced by a relation cannot be deleted', async () => {
  const target = await su.collections.create({ name: uniq('c_target') });
  const src = await su.collections.create({
    name: uniq('c_src'),
    fields: [{ name: 'r', type: 'relation', collectionId: target.id }],
  });
  const err = await expectError(() => su.collections.delete(target.name));
  assert.equal(err.status, 400);
  assert.equal(err.response.message, `Failed to delete collection probably due to existing reference in ${src.name}.`);
  assert.deepEqual(err.response.data, {});
  // after dropping the referencing collection it works
  await su.collections.delete(src.name);
  assert.equal(await su.collections.delete(target.name), true);
});

test('system collections cannot be deleted', async () => {
  const err = await expectError(() => su.collections.delete('_superusers'));
  assert.equal(err.status, 400);
  assert.equal(err.response.message, 'Failed to delete collection.');
  await su.collections.getOne('_superusers');
});

test('getScaffolds returns base/auth/view templates', async () => {
  const s = await su.collections.getScaffolds();
  assert.deepEqual(Object.keys(s).sort(), ['auth', 'base', 'view']);

  assert.deepEqual(s.base, {
    id: '',
    listRule: null,
    viewRule: null,
    createRule: null,
    updateRule: null,
    deleteRule: null,
    name: '',
    type: 'base',
    fields: [ID_FIELD],
    indexes: [],
    created: '',
    updated: '',
    system: false,
  });

  assert.deepEqual(s.view, {
    id: '',
    listRule: null,
    viewRule: null,
    createRule: null,
    updateRule: null,
    deleteRule: null,
    name: '',
    type: 'view',
    fields: [],
    indexes: [],
    created: '',
    updated: '',
    system: false,
    viewQuery: '',
  });

  const a = s.auth;
  assert.equal(a.id, '');
  assert.equal(a.name, '');
  assert.equal(a.type, 'auth');
  assert.equal(a.system, false);
  assert.equal(a.created, '');
  assert.equal(a.updated, '');
  assert.equal(a.listRule, null);
  assert.equal(a.authRule, '');
  assert.equal(a.manageRule, null);
  assert.deepEqual(a.fields.map((f) => [f.name, f.type, f.system, f.hidden, f.required]), [
    ['id', 'text', true, false, true],
    ['password', 'password', true, true, true],
    ['tokenKey', 'text', true, true, true],
    ['email', 'email', true, false, true],
    ['emailVisibility', 'bool', true, false, false],
    ['verified', 'bool', true, false, false],
  ]);
  assert.deepEqual(a.fields[1], {
    cost: 0, help: '', hidden: true, id: 'password901924565', max: 0, min: 8, name: 'password',
    pattern: '', presentable: false, required: true, system: true, type: 'password',
  });
  assert.deepEqual(a.fields[2], {
    autogeneratePattern: '[a-zA-Z0-9]{50}', help: '', hidden: true, id: 'text2504183744', max: 60, min: 30,
    name: 'tokenKey', pattern: '', presentable: false, primaryKey: false, required: true, system: true, type: 'text',
  });
  assert.equal(a.indexes.length, 2);
  assert.match(a.indexes[0], /^CREATE UNIQUE INDEX `idx_tokenKey_\w+` ON `` \(`tokenKey`\)$/);
  assert.match(a.indexes[1], /^CREATE UNIQUE INDEX `idx_email_\w+` ON `` \(`email`\) WHERE `email` != ''$/);
  assert.deepEqual(a.passwordAuth, { enabled: true, identityFields: ['email'] });
  assert.deepEqual(a.mfa, { enabled: false, duration: 600, rule: '' });
  assert.equal(a.otp.enabled, false);
  assert.equal(a.otp.duration, 180);
  assert.equal(a.otp.length, 8);
  assert.deepEqual(a.oauth2, {
    providers: [], mappedFields: { id: '', name: '', username: '', avatarURL: '' }, enabled: false,
  });
  assert.equal(a.authAlert.enabled, true);
  assert.deepEqual(a.authToken, { duration: 432000 });
  assert.deepEqual(a.passwordResetToken, { duration: 1800 });
  assert.deepEqual(a.emailChangeToken, { duration: 1800 });
  assert.deepEqual(a.verificationToken, { duration: 86400 });
  assert.deepEqual(a.fileToken, { duration: 180 });
  for (const k of ['verificationTemplate', 'resetPasswordTemplate', 'confirmEmailChangeTemplate']) {
    assert.equal(typeof a[k].subject, 'string', k);
    assert.equal(typeof a[k].body, 'string', k);
  }
});

test('an auth collection gets the auth system fields and options', async () => {
  const name = uniq('c_auth');
  const c = await su.collections.create({ name, type: 'auth', fields: [{ name: 'nick', type: 'text' }] });
  assert.equal(c.type, 'auth');
  assert.equal(c.id, 'pbc_' + crc32('auth' + name));
  // the id field first, then the submitted fields, then the missing auth system fields
  assert.deepEqual(c.fields.map((f) => f.name), ['id', 'nick', 'password', 'tokenKey', 'email', 'emailVisibility', 'verified']);
  assert.deepEqual(c.indexes, [
    `CREATE UNIQUE INDEX \`idx_tokenKey_${c.id}\` ON \`${name}\` (\`tokenKey\`)`,
    `CREATE UNIQUE INDEX \`idx_email_${c.id}\` ON \`${name}\` (\`email\`) WHERE \`email\` != ''`,
  ]);
  assert.deepEqual(c.passwordAuth, { enabled: true, identityFields: ['email'] });
  assert.equal(c.authRule, '');
  assert.equal(c.manageRule, null);
});

test('import creates collections (deleteMissing=false)', async () => {
  const n1 = uniq('c_imp');
  const n2 = uniq('c_imp');
  const ok = await su.collections.import([
    { name: n1, type: 'base', fields: [{ name: 'title', type: 'text' }] },
    { name: n2, type: 'base', listRule: '', fields: [{ name: 'n', type: 'number' }] },
  ], false);
  assert.equal(ok, true);

  const c1 = await su.collections.getOne(n1);
  assert.deepEqual(c1.fields.map((f) => f.name), ['id', 'title']);
  const c2 = await su.collections.getOne(n2);
  assert.equal(c2.listRule, '');
  const rec = await su.collection(n2).create({ n: 3 });
  assert.equal(rec.n, 3);

  // importing again with a changed definition updates it, others are untouched
  await su.collections.import([{ ...c1, fields: [...c1.fields, { name: 'extra', type: 'bool' }] }], false);
  const c1b = await su.collections.getOne(n1);
  assert.deepEqual(c1b.fields.map((f) => f.name), ['id', 'title', 'extra']);
  await su.collections.getOne(n2);

  const bad = await expectError(() => su.collections.import([{ name: 'bad name', type: 'base' }], false));
  assert.equal(bad.status, 400);
  assert.equal(bad.response.message, 'Failed to import collections.');
  assert.equal(bad.response.data.collections.code, 'validation_collections_import_failure');

  const empty = await expectError(() => su.collections.import([], false));
  assert.equal(empty.status, 400);
  assert.equal(empty.response.data.collections.code, 'validation_required');
});

test('guests get 401 and regular users 403 on every collection endpoint', async () => {
  const name = uniq('c_acl');
  await su.collections.create({ name });
  const g = guest();
  const { pb: user } = await signUpAndLogin('users');

  const calls = {
    getList: (pb) => pb.collections.getList(),
    getFullList: (pb) => pb.collections.getFullList(),
    getOne: (pb) => pb.collections.getOne(name),
    create: (pb) => pb.collections.create({ name: uniq('c_nope') }),
    update: (pb) => pb.collections.update(name, { listRule: '' }),
    delete: (pb) => pb.collections.delete(name),
    truncate: (pb) => pb.collections.truncate(name),
    getScaffolds: (pb) => pb.collections.getScaffolds(),
    import: (pb) => pb.collections.import([{ name: uniq('c_nope') }], false),
  };
  for (const [label, call] of Object.entries(calls)) {
    const eg = await expectError(() => call(g));
    assert.equal(eg.status, 401, `guest ${label}`);
    assert.deepEqual(eg.response, {
      data: {}, message: 'The request requires valid record authorization token.', status: 401,
    }, `guest ${label}`);

    const eu = await expectError(() => call(user));
    assert.equal(eu.status, 403, `user ${label}`);
    assert.deepEqual(eu.response, {
      data: {}, message: 'The authorized record is not allowed to perform this action.', status: 403,
    }, `user ${label}`);
  }
  // nothing changed
  const c = await su.collections.getOne(name);
  assert.equal(c.listRule, null);
});

test('invalid collection definitions give 400 with field errors', async () => {
  const fail = async (body) => {
    const err = await expectError(() => su.collections.create(body));
    assert.equal(err.status, 400);
    assert.equal(err.response.status, 400);
    assert.equal(err.response.message, 'Failed to create collection.');
    return err.response.data;
  };

  let d = await fail({ name: 'bad name!', type: 'base' });
  assert.deepEqual(d, { name: { code: 'validation_match_invalid', message: 'Must be in a valid format.' } });

  d = await fail({ name: '', type: 'base' });
  assert.deepEqual(d, { name: { code: 'validation_required', message: 'Cannot be blank.' } });

  d = await fail({ name: 'x'.repeat(300), type: 'base' });
  assert.equal(d.name.code, 'validation_length_out_of_range');

  d = await fail({ name: authorsColl.name, type: 'base' });
  assert.equal(d.name.code, 'validation_collection_name_exists');
  d = await fail({ name: authorsColl.name.toUpperCase(), type: 'base' });
  assert.equal(d.name.code, 'validation_collection_name_exists', 'names are unique case-insensitively');

  d = await fail({ name: uniq('c_bad'), type: 'weird' });
  assert.equal(d.type.code, 'validation_in_invalid');

  // field errors are keyed by the index in the final field list (id is index 0)
  d = await fail({ name: uniq('c_bad'), fields: [{ name: 'bad name', type: 'text' }] });
  assert.deepEqual(d, { fields: { 1: { name: { code: 'validation_match_invalid', message: 'Must be in a valid format.' } } } });

  d = await fail({ name: uniq('c_bad'), fields: [{ name: 'ok', type: 'text' }, { name: 'expand', type: 'text' }] });
  assert.equal(d.fields['2'].name.code, 'validation_not_in_invalid');

  d = await fail({ name: uniq('c_bad'), fields: [{ name: 's', type: 'select' }] });
  assert.equal(d.fields['1'].values.code, 'validation_required');

  d = await fail({ name: uniq('c_bad'), fields: [{ name: 'r', type: 'relation', collectionId: 'missing' }] });
  assert.equal(d.fields['1'].collectionId.code, 'validation_field_relation_missing_collection');

  d = await fail({ name: uniq('c_bad'), fields: [{ name: 'a', type: 'autodate' }] });
  assert.equal(d.fields['1'].onCreate.code, 'validation_required');

  d = await fail({ name: uniq('c_bad'), listRule: 'title ~~ 1', fields: [{ name: 'title', type: 'text' }] });
  assert.equal(d.listRule.code, 'validation_invalid_rule');

  d = await fail({ name: uniq('c_bad'), viewRule: "nope = 'x'" });
  assert.equal(d.viewRule.code, 'validation_invalid_rule');

  // an unknown field type cannot even be decoded
  const err = await expectError(() => su.collections.create({ name: uniq('c_bad'), fields: [{ name: 'a', type: 'nope' }] }));
  assert.equal(err.status, 400);
  assert.deepEqual(err.response, {
    data: {}, message: 'Failed to load the submitted data due to invalid formatting.', status: 400,
  });

  // none of the above were created
  const list = await su.collections.getList(1, 1, { filter: "name ~ 'c_bad_'" });
  assert.equal(list.totalItems, 0);
});
