// Records CRUD: create/read/list (paging, sort, filter, skipTotal), expand,
// fields, getFullList/getFirstListItem, update modifiers, delete, errors.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { superuser, guest, uniq, expectError, raw, DATE_RE, ID_RE } from './helpers.mjs';

let su;
let A; // authors collection
let P; // posts collection
let C; // comments collection
let W; // same schema as posts, used by the tests that write (keeps P's data fixed)
const authors = {};
const posts = {};

before(async () => {
  su = await superuser();
  A = await su.collections.create({
    name: uniq('r_authors'),
    listRule: '',
    viewRule: '',
    fields: [
      { name: 'name', type: 'text' },
      { name: 'created', type: 'autodate', onCreate: true },
      { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
    ],
  });
  const postFields = [
      { name: 'title', type: 'text', required: true, min: 2, max: 40 },
      { name: 'body', type: 'text' },
      { name: 'views', type: 'number', min: -1000, max: 1000, onlyInt: true },
      { name: 'score', type: 'number' },
      { name: 'published', type: 'bool' },
      { name: 'contact', type: 'email' },
      { name: 'site', type: 'url' },
      { name: 'tags', type: 'select', values: ['a', 'b', 'c', 'd'], maxSelect: 4 },
      { name: 'kind', type: 'select', values: ['news', 'blog'], maxSelect: 1 },
      { name: 'author', type: 'relation', collectionId: A.id, maxSelect: 1 },
      { name: 'coauthors', type: 'relation', collectionId: A.id, maxSelect: 5 },
      { name: 'created', type: 'autodate', onCreate: true },
      { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
  ];
  P = await su.collections.create({ name: uniq('r_posts'), listRule: '', viewRule: '', fields: postFields });
  W = await su.collections.create({ name: uniq('r_posts_w'), listRule: '', viewRule: '', fields: postFields });
  C = await su.collections.create({
    name: uniq('r_comments'),
    listRule: '',
    viewRule: '',
    fields: [
      { name: 'text', type: 'text' },
      { name: 'post', type: 'relation', collectionId: P.id, maxSelect: 1 },
    ],
  });

  authors.alice = await su.collection(A.name).create({ name: 'Alice' });
  authors.bob = await su.collection(A.name).create({ name: 'Bob' });
  authors.carol = await su.collection(A.name).create({ name: 'Carol' });

  const mk = (data) => su.collection(P.name).create(data);
  posts.first = await mk({ title: 'First post', views: 10, score: 1.5, published: true, tags: ['a', 'b'], kind: 'news', author: authors.alice.id, coauthors: [authors.alice.id, authors.bob.id] });
  posts.second = await mk({ title: 'Second post', views: 20, score: 2.5, published: false, tags: ['c'], kind: 'blog', author: authors.bob.id, coauthors: [authors.bob.id] });
  posts.third = await mk({ title: 'Third', views: 30, score: -1, published: true, tags: [], author: authors.alice.id });
  posts.fourth = await mk({ title: 'fourth entry', views: 40, published: false, tags: ['a', 'b', 'c', 'd'], kind: 'blog', coauthors: [authors.carol.id] });

  await su.collection(C.name).create({ text: 'c1', post: posts.first.id });
  await su.collection(C.name).create({ text: 'c2', post: posts.first.id });
  await su.collection(C.name).create({ text: 'c3', post: posts.second.id });
});

const titles = (list) => list.items.map((r) => r.title);
const filterTitles = async (filter, extra = {}) =>
  titles(await su.collection(P.name).getList(1, 100, { filter, sort: 'views', ...extra }));

test('create returns 200 and the full record', async () => {
  const res = await raw(`/api/collections/${W.name}/records`, {
    method: 'POST',
    token: su.authStore.token,
    body: { title: 'Raw create', views: 3, tags: ['b', 'a'], kind: 'news', author: authors.carol.id },
  });
  assert.equal(res.status, 200);
  const r = res.json;
  assert.match(r.id, ID_RE);
  assert.equal(r.collectionId, W.id);
  assert.equal(r.collectionName, W.name);
  assert.match(r.created, DATE_RE);
  assert.match(r.updated, DATE_RE);
  assert.equal(r.created, r.updated);
  assert.ok(Math.abs(Date.parse(r.created.replace(' ', 'T')) - Date.now()) < 60_000, 'created is about now (UTC)');
  assert.deepEqual(Object.keys(r).sort(), [
    'author', 'body', 'coauthors', 'collectionId', 'collectionName', 'contact', 'created', 'id', 'kind',
    'published', 'score', 'site', 'tags', 'title', 'updated', 'views',
  ]);
  assert.equal(r.title, 'Raw create');
  assert.equal(r.body, '');
  assert.equal(r.views, 3);
  assert.equal(r.score, 0);
  assert.equal(r.published, false);
  assert.equal(r.contact, '');
  assert.equal(r.site, '');
  assert.deepEqual(r.tags, ['b', 'a'], 'select keeps the submitted order');
  assert.equal(r.kind, 'news');
  assert.equal(r.author, authors.carol.id);
  assert.deepEqual(r.coauthors, []);
  assert.equal('expand' in r, false, 'no expand key unless expanded');

  // SDK view of the same record
  const one = await su.collection(W.name).getOne(r.id);
  assert.deepEqual(one, r);
  const byCollId = await su.collection(W.id).getOne(r.id);
  assert.deepEqual(byCollId, r, 'collection can be addressed by id');
});

test('create with a client-chosen id; invalid and duplicate ids are rejected', async () => {
  const id = ('myid' + Date.now().toString(36) + 'zzzzzzzzzzzz').slice(0, 15);
  const r = await su.collection(W.name).create({ id, title: 'custom id' });
  assert.equal(r.id, id);
  assert.equal((await su.collection(W.name).getOne(id)).title, 'custom id');

  const dup = await expectError(() => su.collection(W.name).create({ id, title: 'again' }));
  assert.equal(dup.status, 400);
  assert.deepEqual(dup.response.data, { id: { code: 'validation_not_unique', message: 'Value must be unique.' } });

  const short = await expectError(() => su.collection(W.name).create({ id: 'abc', title: 'short id' }));
  assert.equal(short.status, 400);
  assert.equal(short.response.data.id.code, 'validation_min_text_constraint');
});

test('updated autodate changes on update, created does not', async () => {
  const r = await su.collection(W.name).create({ title: 'dates' });
  await new Promise((res) => setTimeout(res, 20));
  const u = await su.collection(W.name).update(r.id, { body: 'changed' });
  assert.equal(u.created, r.created);
  assert.match(u.updated, DATE_RE);
  assert.ok(u.updated > r.updated, `${u.updated} > ${r.updated}`);
});

test('date and json values: accepted inputs and output format', async () => {
  const name = uniq('r_values');
  await su.collections.create({
    name,
    fields: [
      { name: 'label', type: 'text' },
      { name: 'd', type: 'date' },
      { name: 'j', type: 'json' },
    ],
  });
  const col = su.collection(name);

  const inputs = [
    ['space', '2024-01-31 12:34:56', '2024-01-31 12:34:56.000Z'],
    ['iso', '2024-02-01T08:00:00.250Z', '2024-02-01 08:00:00.250Z'],
    ['jsdate', new Date(Date.UTC(2024, 2, 3, 4, 5, 6, 7)), '2024-03-03 04:05:06.007Z'],
    ['day', '2024-04-05', '2024-04-05 00:00:00.000Z'],
  ];
  for (const [label, d, expected] of inputs) {
    const r = await col.create({ label, d });
    assert.equal(r.d, expected, label);
  }
  const none = await col.create({ label: 'none' });
  assert.equal(none.d, '');
  assert.equal(none.j, null);

  // date comparisons in filters, also with SDK Date binding
  const after = await col.getFullList({ filter: su.filter('d >= {:t}', { t: new Date(Date.UTC(2024, 1, 1)) }), sort: 'd' });
  assert.deepEqual(after.map((r) => r.label), ['iso', 'jsdate', 'day']);
  const sorted = await col.getFullList({ filter: "d != ''", sort: '-d' });
  assert.deepEqual(sorted.map((r) => r.label), ['day', 'jsdate', 'iso', 'space']);

  // json keeps any JSON value; a string holding JSON is parsed
  const values = [{ a: [1, { b: null }] }, [1, 'two', false], 42, 'plain text', true];
  for (const j of values) {
    assert.deepEqual((await col.create({ label: 'json', j })).j, j);
  }
  assert.deepEqual((await col.create({ label: 'json', j: '{"parsed":1}' })).j, { parsed: 1 });
  const jf = await col.getFullList({ filter: 'j.a ~ 1' });
  assert.equal(jf.length, 1);
});

test('getList paging: page/perPage/totals, page past the end, skipTotal, perPage clamp', async () => {
  const name = uniq('r_paging');
  await su.collections.create({ name, listRule: '', fields: [{ name: 'n', type: 'number' }] });
  for (let i = 1; i <= 25; i++) await su.collection(name).create({ n: i });
  const col = su.collection(name);

  const p2 = await col.getList(2, 10, { sort: 'n' });
  assert.equal(p2.page, 2);
  assert.equal(p2.perPage, 10);
  assert.equal(p2.totalItems, 25);
  assert.equal(p2.totalPages, 3);
  assert.deepEqual(p2.items.map((r) => r.n), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);

  const p3 = await col.getList(3, 10, { sort: 'n' });
  assert.deepEqual(p3.items.map((r) => r.n), [21, 22, 23, 24, 25]);

  const desc = await col.getList(1, 3, { sort: '-n' });
  assert.deepEqual(desc.items.map((r) => r.n), [25, 24, 23]);
  const asc = await col.getList(1, 3, { sort: '+n' });
  assert.deepEqual(asc.items.map((r) => r.n), [1, 2, 3]);

  const past = await col.getList(99, 10);
  assert.deepEqual(past, { items: [], page: 99, perPage: 10, totalItems: 25, totalPages: 3 });

  const skip = await col.getList(1, 5, { sort: 'n', skipTotal: true });
  assert.equal(skip.totalItems, -1);
  assert.equal(skip.totalPages, -1);
  assert.equal(skip.items.length, 5);
  assert.equal(skip.page, 1);
  assert.equal(skip.perPage, 5);

  const big = await col.getList(1, 5000);
  assert.equal(big.perPage, 1000, 'perPage is clamped to 1000 and echoed');
  assert.equal(big.items.length, 25);

  // defaults: page 1, perPage 30
  const def = await raw(`/api/collections/${name}/records`);
  assert.equal(def.status, 200);
  assert.equal(def.json.page, 1);
  assert.equal(def.json.perPage, 30);
  assert.equal(def.json.totalItems, 25);
  assert.equal(def.json.totalPages, 1);
  assert.equal(def.json.items.length, 25);

  // perPage=0 / page=0 fall back to the defaults
  const zero = await raw(`/api/collections/${name}/records?page=0&perPage=0`);
  assert.equal(zero.json.page, 1);
  assert.equal(zero.json.perPage, 30);

  // sort on several fields
  const multi = await su.collection(P.name).getList(1, 100, { sort: 'kind,-views', filter: `author != ''` });
  assert.deepEqual(titles(multi), ['Third', 'Second post', 'First post']);
});

test('filter operators: = != > >= < <= ~ !~ && || ( )', async () => {
  assert.deepEqual(await filterTitles("title = 'Third'"), ['Third']);
  assert.deepEqual(await filterTitles('title = "Third"'), ['Third'], 'double quotes');
  assert.deepEqual(await filterTitles("title != 'Third' && views < 100"), ['First post', 'Second post', 'fourth entry']);
  assert.deepEqual(await filterTitles('views > 20'), ['Third', 'fourth entry']);
  assert.deepEqual(await filterTitles('views >= 20 && views < 100'), ['Second post', 'Third', 'fourth entry']);
  assert.deepEqual(await filterTitles('views < 20'), ['First post']);
  assert.deepEqual(await filterTitles('views <= 20'), ['First post', 'Second post']);
  assert.deepEqual(await filterTitles('score < 0'), ['Third']);
  assert.deepEqual(await filterTitles('score > 2'), ['Second post']);
  assert.deepEqual(await filterTitles("title ~ 'post'"), ['First post', 'Second post']);
  assert.deepEqual(await filterTitles("title ~ 'POST'"), ['First post', 'Second post'], '~ is case-insensitive');
  assert.deepEqual(await filterTitles("title !~ 'post' && views < 100"), ['Third', 'fourth entry']);
  assert.deepEqual(await filterTitles("title ~ 'f%'"), ['First post', 'fourth entry'], 'explicit % wildcard');
  assert.deepEqual(await filterTitles('published = true'), ['First post', 'Third']);
  assert.deepEqual(await filterTitles('published = false && views < 100'), ['Second post', 'fourth entry']);
  assert.deepEqual(await filterTitles("views = 10 || views = 40"), ['First post', 'fourth entry']);
  assert.deepEqual(await filterTitles("(views = 10 || views = 40) && published = true"), ['First post']);
  assert.deepEqual(await filterTitles("views = 10 || (views = 40 && published = true)"), ['First post']);
  assert.deepEqual(await filterTitles("kind = 'blog'"), ['Second post', 'fourth entry']);
  assert.deepEqual(await filterTitles("kind = '' && views < 100"), ['Third']);
  assert.deepEqual(await filterTitles("kind = null && views < 100"), ['Third'], "null equals ''");
  assert.deepEqual(await filterTitles("views = 10 // trailing comment"), ['First post']);
  assert.deepEqual(await filterTitles(`id = '${posts.second.id}'`), ['Second post']);

  // SDK parameter binding
  const bound = su.filter('title = {:t} && views > {:v}', { t: "First post", v: 5 });
  assert.deepEqual(await filterTitles(bound), ['First post']);
});

test('filter through relations, multi-value operators and modifiers', async () => {
  // single relation path
  assert.deepEqual(await filterTitles("author.name = 'Alice'"), ['First post', 'Third']);
  assert.deepEqual(await filterTitles(`author = '${authors.bob.id}'`), ['Second post']);
  assert.deepEqual(await filterTitles("author = '' && views < 100"), ['fourth entry']);
  // multi relation: plain operators need every item, ?-operators any item
  assert.deepEqual(await filterTitles("coauthors.name ?= 'Bob'"), ['First post', 'Second post']);
  assert.deepEqual(await filterTitles("coauthors.name = 'Bob'"), ['Second post']);
  assert.deepEqual(await filterTitles(`coauthors.id ?= '${authors.carol.id}'`), ['fourth entry']);
  assert.deepEqual(await filterTitles("coauthors.name ?~ 'aro'"), ['fourth entry']);
  // :length
  assert.deepEqual(await filterTitles('coauthors:length = 2'), ['First post']);
  assert.deepEqual(await filterTitles('coauthors:length > 0'), ['First post', 'Second post', 'fourth entry']);
  assert.deepEqual(await filterTitles('tags:length = 0 && views < 100'), ['Third']);
  assert.deepEqual(await filterTitles('tags:length >= 2'), ['First post', 'fourth entry']);
  // :each on a multi select
  assert.deepEqual(await filterTitles("tags:each ?= 'c'"), ['Second post', 'fourth entry']);
  assert.deepEqual(await filterTitles("tags:each = 'c'"), ['Second post']);
  // a bare multi-value field compares its serialized JSON array, so ~ works as "contains"
  assert.deepEqual(await filterTitles("tags ~ 'd'"), ['fourth entry']);
  assert.deepEqual(await filterTitles(`coauthors ~ '${authors.bob.id}'`), ['First post', 'Second post']);
  // ... while ?= on the bare field does not match single items (reference behaviour)
  assert.deepEqual(await filterTitles("tags ?= 'c'"), []);
  // :lower
  assert.deepEqual(await filterTitles("title:lower = 'third'"), ['Third']);
  assert.deepEqual(await filterTitles("author.name:lower = 'bob'"), ['Second post']);
});

test('bad filter / sort gives 400, not 500', async () => {
  const generic = { data: {}, message: 'Something went wrong while processing your request.', status: 400 };
  for (const filter of ["title ==== 'x'", "unknownfield = 'x'", "title = 'unterminated", '(((', "author.nope = 'x'"]) {
    const err = await expectError(() => su.collection(P.name).getList(1, 10, { filter }));
    assert.equal(err.status, 400, filter);
    assert.deepEqual(err.response, generic, filter);
  }
  const s = await expectError(() => su.collection(P.name).getList(1, 10, { sort: 'unknownfield' }));
  assert.equal(s.status, 400);
  assert.deepEqual(s.response, generic);

  const bp = await raw(`/api/collections/${P.name}/records?page=abc`);
  assert.equal(bp.status, 400);
});

test('guests may not filter by @request / @collection', async () => {
  const g = guest();
  const e1 = await expectError(() => g.collection(P.name).getList(1, 10, { filter: "@request.auth.id = ''" }));
  assert.equal(e1.status, 403);
  assert.deepEqual(e1.response, { data: {}, message: 'Only superusers can filter by @request.', status: 403 });
  const e2 = await expectError(() => g.collection(P.name).getList(1, 10, { filter: `@collection.${A.name}.name = 'x'` }));
  assert.equal(e2.status, 403);
  assert.deepEqual(e2.response, { data: {}, message: 'Only superusers can filter by @collection.', status: 403 });
});

test('expand: single, multiple, nested and back-relation', async () => {
  const p = await su.collection(P.name).getOne(posts.first.id, { expand: 'author,coauthors' });
  assert.equal(p.author, authors.alice.id, 'the raw id stays');
  assert.deepEqual(Object.keys(p.expand).sort(), ['author', 'coauthors']);
  assert.equal(p.expand.author.id, authors.alice.id);
  assert.equal(p.expand.author.name, 'Alice');
  assert.equal(p.expand.author.collectionName, A.name);
  assert.equal(p.expand.author.collectionId, A.id);
  assert.ok(Array.isArray(p.expand.coauthors));
  assert.deepEqual(p.expand.coauthors.map((a) => a.name), ['Alice', 'Bob']);

  // nested (dot path) from comments
  const comments = await su.collection(C.name).getList(1, 10, { sort: 'text', expand: 'post.author' });
  assert.equal(comments.items.length, 3);
  const c1 = comments.items[0];
  assert.equal(c1.expand.post.id, posts.first.id);
  assert.equal(c1.expand.post.expand.author.name, 'Alice');
  assert.equal(comments.items[2].expand.post.expand.author.name, 'Bob');

  // back-relation <collection>_via_<field>, nested further
  const via = `${P.name}_via_author`;
  const alice = await su.collection(A.name).getOne(authors.alice.id, { expand: `${via},${via}.coauthors` });
  assert.ok(Array.isArray(alice.expand[via]));
  assert.deepEqual(alice.expand[via].map((x) => x.title).sort(), ['First post', 'Third']);
  const fp = alice.expand[via].find((x) => x.title === 'First post');
  assert.deepEqual(fp.expand.coauthors.map((x) => x.name), ['Alice', 'Bob']);

  const cvia = `${C.name}_via_post`;
  const withComments = await su.collection(P.name).getOne(posts.first.id, { expand: cvia });
  assert.deepEqual(withComments.expand[cvia].map((x) => x.text).sort(), ['c1', 'c2']);

  // expand on list items + on create/update responses
  const list = await su.collection(P.name).getList(1, 10, { filter: 'views <= 20', sort: 'views', expand: 'author' });
  assert.deepEqual(list.items.map((x) => x.expand.author.name), ['Alice', 'Bob']);
  const created = await su.collection(W.name).create({ title: 'with expand', author: authors.bob.id }, { expand: 'author' });
  assert.equal(created.expand.author.name, 'Bob');
  const updated = await su.collection(W.name).update(created.id, { author: authors.carol.id }, { expand: 'author' });
  assert.equal(updated.expand.author.name, 'Carol');
});

test('expand of an empty relation gives {} and an unknown path is silently ignored', async () => {
  const third = await su.collection(P.name).getOne(posts.third.id, { expand: 'coauthors' });
  assert.deepEqual(third.expand, {});
  const fourth = await su.collection(P.name).getOne(posts.fourth.id, { expand: 'author' });
  assert.deepEqual(fourth.expand, {});
  const unknown = await su.collection(P.name).getOne(posts.first.id, { expand: 'doesnotexist' });
  assert.equal('expand' in unknown, false);
  assert.equal(unknown.title, 'First post');
});

test('expand honours the related collection viewRule', async () => {
  const hidden = await su.collections.create({ name: uniq('r_private'), fields: [{ name: 'v', type: 'text' }] });
  const pub = await su.collections.create({
    name: uniq('r_public'),
    listRule: '',
    viewRule: '',
    fields: [{ name: 'ref', type: 'relation', collectionId: hidden.id, maxSelect: 1 }],
  });
  const h = await su.collection(hidden.name).create({ v: 'secret' });
  const r = await su.collection(pub.name).create({ ref: h.id });

  const asGuest = await guest().collection(pub.name).getOne(r.id, { expand: 'ref' });
  assert.equal(asGuest.ref, h.id);
  assert.equal(asGuest.expand, undefined, 'viewRule null: nothing expanded for guests');
  const asSu = await su.collection(pub.name).getOne(r.id, { expand: 'ref' });
  assert.equal(asSu.expand.ref.v, 'secret');
});

test('fields: pick, nested expand pick, wildcard and excerpt', async () => {
  const one = await su.collection(P.name).getOne(posts.first.id, { fields: 'id,title' });
  assert.deepEqual(one, { id: posts.first.id, title: 'First post' });

  const list = await su.collection(P.name).getList(1, 2, { sort: 'views', fields: 'id,title' });
  assert.deepEqual(list.items, [
    { id: posts.first.id, title: 'First post' },
    { id: posts.second.id, title: 'Second post' },
  ]);
  assert.equal(list.totalItems >= 4, true, 'fields applies per item, the list envelope stays');

  const nested = await su.collection(P.name).getOne(posts.first.id, { expand: 'author', fields: 'title,expand.author.name' });
  assert.deepEqual(nested, { title: 'First post', expand: { author: { name: 'Alice' } } });

  const star = await su.collection(P.name).getOne(posts.first.id, { expand: 'author', fields: '*,expand.author.name' });
  assert.equal(star.title, 'First post');
  assert.equal(star.views, 10);
  assert.equal(star.collectionName, P.name);
  assert.deepEqual(star.expand, { author: { name: 'Alice' } });

  const excerpt = await su.collection(P.name).getOne(posts.first.id, { fields: 'title:excerpt(5,true)' });
  assert.deepEqual(excerpt, { title: 'First...' });

  const none = await su.collection(P.name).getOne(posts.first.id, { fields: 'nosuchfield' });
  assert.deepEqual(none, {});
});

test('getFullList walks all pages (1200 records) and getFirstListItem', async () => {
  const name = uniq('r_bulk');
  await su.collections.create({ name, fields: [{ name: 'n', type: 'number' }] });
  const col = su.collection(name);
  const total = 1200;
  let next = 1;
  const worker = async () => {
    while (next <= total) {
      const n = next++;
      await col.create({ n });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));

  const all = await col.getFullList({ sort: 'n' });
  assert.equal(all.length, total);
  assert.deepEqual(all.slice(0, 3).map((r) => r.n), [1, 2, 3]);
  assert.equal(all[total - 1].n, total);
  assert.equal(new Set(all.map((r) => r.id)).size, total);

  const batched = await col.getFullList({ batch: 500, filter: 'n > 100' });
  assert.equal(batched.length, total - 100);

  const first = await col.getFirstListItem('n = 777');
  assert.equal(first.n, 777);

  const err = await expectError(() => col.getFirstListItem('n = 999999'));
  assert.equal(err.status, 404);
  assert.equal(err.response.message, "The requested resource wasn't found.");
});

test('update with + / - modifiers on number, multi select and multi relation', async () => {
  const col = su.collection(W.name);
  const r = await col.create({ title: 'modifiers', views: 10, tags: ['a'], coauthors: [authors.alice.id] });

  let u = await col.update(r.id, { 'views+': 5 });
  assert.equal(u.views, 15);
  u = await col.update(r.id, { 'views-': 20 });
  assert.equal(u.views, -5);

  u = await col.update(r.id, { 'tags+': 'c' });
  assert.deepEqual(u.tags, ['a', 'c']);
  u = await col.update(r.id, { '+tags': 'b' });
  assert.deepEqual(u.tags, ['b', 'a', 'c']);
  u = await col.update(r.id, { 'tags+': ['d'] });
  assert.deepEqual(u.tags, ['b', 'a', 'c', 'd']);
  u = await col.update(r.id, { 'tags-': ['a', 'c'] });
  assert.deepEqual(u.tags, ['b', 'd']);

  u = await col.update(r.id, { 'coauthors+': [authors.bob.id, authors.carol.id] });
  assert.deepEqual(u.coauthors, [authors.alice.id, authors.bob.id, authors.carol.id]);
  u = await col.update(r.id, { 'coauthors-': authors.bob.id });
  assert.deepEqual(u.coauthors, [authors.alice.id, authors.carol.id]);

  // several modifiers in one request, plain fields untouched
  u = await col.update(r.id, { 'views+': 100, 'tags-': 'b', title: 'modified' });
  assert.equal(u.views, 95);
  assert.deepEqual(u.tags, ['d']);
  assert.equal(u.title, 'modified');
  assert.deepEqual(u.coauthors, [authors.alice.id, authors.carol.id]);

  const again = await col.getOne(r.id);
  assert.deepEqual(again, u);
});

test('delete: returns true, then 404 on getOne/update/delete', async () => {
  const col = su.collection(W.name);
  const r = await col.create({ title: 'to delete' });
  assert.equal(await col.delete(r.id), true);

  const res = await raw(`/api/collections/${W.name}/records/${r.id}`, { method: 'DELETE', token: su.authStore.token });
  assert.equal(res.status, 404);

  const notFound = { data: {}, message: "The requested resource wasn't found.", status: 404 };
  const e1 = await expectError(() => col.getOne(r.id));
  assert.equal(e1.status, 404);
  assert.deepEqual(e1.response, notFound);
  const e2 = await expectError(() => col.update(r.id, { title: 'zz' }));
  assert.equal(e2.status, 404);
  assert.deepEqual(e2.response, notFound);
  const e3 = await expectError(() => col.delete(r.id));
  assert.equal(e3.status, 404);
  assert.deepEqual(e3.response, notFound);
  const e4 = await expectError(() => guest().collection(W.name).getOne('doesnotexist123'));
  assert.equal(e4.status, 404);
});

test('deleting a referenced record clears non-required relations pointing at it', async () => {
  const a = await su.collection(A.name).create({ name: 'Temp' });
  const p = await su.collection(W.name).create({ title: 'refs', author: a.id, coauthors: [a.id, authors.bob.id] });
  await su.collection(A.name).delete(a.id);
  const after = await su.collection(W.name).getOne(p.id);
  assert.equal(after.author, '');
  assert.deepEqual(after.coauthors, [authors.bob.id]);
});

test('validation errors: 400 with data.<field>.code', async () => {
  const col = su.collection(W.name);
  const target = await col.create({ title: 'First post' });

  const e1 = await expectError(() => col.create({}));
  assert.equal(e1.status, 400);
  assert.deepEqual(e1.response, {
    data: { title: { code: 'validation_required', message: 'Cannot be blank.' } },
    message: 'Failed to create record.',
    status: 400,
  });

  const e2 = await expectError(() => col.create({
    title: 'x', views: 1.5, contact: 'not-an-email', site: 'not a url', tags: ['zzz'], author: 'missingmissing1',
  }));
  assert.equal(e2.status, 400);
  const d = e2.response.data;
  assert.deepEqual(d.title, { code: 'validation_min_text_constraint', message: 'Must be at least 2 character(s).', params: { min: 2 } });
  assert.deepEqual(d.views, { code: 'validation_only_int_constraint', message: 'Decimal numbers are not allowed.' });
  assert.deepEqual(d.contact, { code: 'validation_is_email', message: 'Must be a valid email address.' });
  assert.deepEqual(d.site, { code: 'validation_invalid_url', message: 'Must be a valid url.' });
  assert.deepEqual(d.tags, { code: 'validation_invalid_value', message: 'Invalid value zzz.', params: { value: 'zzz' } });
  assert.deepEqual(d.author, { code: 'validation_missing_rel_records', message: 'Failed to find all relation records with the provided ids.' });
  assert.deepEqual(Object.keys(d).sort(), ['author', 'contact', 'site', 'tags', 'title', 'views']);

  const e3 = await expectError(() => col.create({ title: 'y'.repeat(41), views: 5000 }));
  assert.deepEqual(e3.response.data.title, { code: 'validation_max_text_constraint', message: 'Must be no more than 40 character(s).', params: { max: 40 } });
  assert.deepEqual(e3.response.data.views, { code: 'validation_max_number_constraint', message: 'Must be less or equal than 1000.', params: { max: 1000 } });

  const e4 = await expectError(() => col.create({ title: 'ok', views: -5000 }));
  assert.deepEqual(e4.response.data.views, { code: 'validation_min_number_constraint', message: 'Must be greater or equal than -1000.', params: { min: -1000 } });

  // update uses its own message
  const e5 = await expectError(() => col.update(target.id, { title: '' }));
  assert.equal(e5.status, 400);
  assert.deepEqual(e5.response, {
    data: { title: { code: 'validation_required', message: 'Cannot be blank.' } },
    message: 'Failed to update record.',
    status: 400,
  });
  assert.equal((await col.getOne(target.id)).title, 'First post', 'failed update changed nothing');

  // unknown body keys are ignored
  const r = await col.create({ title: 'extra keys', nosuchfield: 1 });
  assert.equal('nosuchfield' in r, false);
});

// Observed on PocketBase 0.40.6: `pattern` is a Go (RE2) regexp, unanchored unless it anchors itself,
// with ASCII-only \d and \w; empty text is not matched; a pattern that does not parse cannot be saved.
test('text pattern: any RE2 regexp is enforced; an invalid one cannot be saved', async () => {
  const bad = await expectError(() => su.collections.create({
    name: uniq('r_badpat'), fields: [{ name: 'code', type: 'text', pattern: '[' }],
  }));
  assert.equal(bad.status, 400);
  assert.equal(bad.response.data.fields['1'].pattern.code, 'validation_invalid_regex');
  assert.match(bad.response.data.fields['1'].pattern.message, /^Error parsing regexp: /);

  const c = await su.collections.create({
    name: uniq('r_pat'), createRule: '',
    fields: [
      { name: 'zip', type: 'text', pattern: '^\\d{3}-\\d{2}$' },
      { name: 'words', type: 'text', pattern: '\\w+ \\w+' },
    ],
  });
  const col = guest().collection(c.name);
  assert.equal((await col.create({ zip: '123-45' })).zip, '123-45');
  assert.equal((await col.create({ zip: '' })).zip, '');
  for (const zip of ['12-345', '123-456', '\u0661\u0662\u0663-\u0664\u0665']) {
    const e = await expectError(() => col.create({ zip }));
    assert.deepEqual(e.response.data, { zip: { code: 'validation_invalid_format', message: 'Invalid value format.' } }, zip);
  }
  assert.equal((await col.create({ words: 'xx hello world yy' })).words, 'xx hello world yy');
  assert.equal((await col.create({ words: 'h\u00e9llo w\u00f6rld' })).words, 'h\u00e9llo w\u00f6rld');
  const e = await expectError(() => col.create({ words: 'hello' }));
  assert.equal(e.response.data.words.code, 'validation_invalid_format');
});

// Observed on PocketBase 0.40.6: a text field's autogeneratePattern fills it on create when it is
// empty, `field:autogenerate` appends a generated value to the one sent (create and update), an update
// keeps "", and the id field's own pattern is used for new ids.
test('text autogeneratePattern: create, the :autogenerate modifier, the id field, validation', async () => {
  const bad = await expectError(() => su.collections.create({
    name: uniq('r_badgen'), fields: [{ name: 'code', type: 'text', autogeneratePattern: '[' }],
  }));
  assert.equal(bad.response.data.fields['1'].autogeneratePattern.code, 'validation_invalid_regex');
  const bad2 = await expectError(() => su.collections.create({
    name: uniq('r_badgen'), fields: [{ name: 'code', type: 'text', autogeneratePattern: '[a-z]{3}', pattern: '^[0-9]+$' }],
  }));
  assert.equal(bad2.response.data.fields['1'].autogeneratePattern.code, 'validation_invalid_autogenerate_pattern_value');
  assert.match(bad2.response.data.fields['1'].autogeneratePattern.message, /^The provided autogenerate pattern could produce invalid field values, ex\.: "[a-z]{3}"\.$/);

  const c = await su.collections.create({
    name: uniq('r_gen'), createRule: '', updateRule: '', viewRule: '',
    fields: [{ name: 'code', type: 'text', autogeneratePattern: '[A-Z]{6}' }, { name: 'n', type: 'text' }],
  });
  const col = guest().collection(c.name);
  const code = /^[A-Z]{6}$/;
  const a = await col.create({});
  assert.match(a.code, code);
  const b = await col.create({ code: '' });
  assert.match(b.code, code);
  assert.notEqual(a.code, b.code);
  assert.equal((await col.create({ code: 'mine' })).code, 'mine');
  const d = await col.create({ code: 'mine', 'code:autogenerate': '' });
  assert.match(d.code, code);
  assert.equal((await col.update(d.id, { n: 'x' })).code, d.code);
  assert.match((await col.update(d.id, { 'code:autogenerate': 'zzz' })).code, /^zzz[A-Z]{6}$/);
  assert.equal((await col.update(d.id, { code: '' })).code, '');

  const fields = c.fields.map((f) => (f.name === 'id' ? { ...f, autogeneratePattern: '[a-z]{20}', min: 20, max: 20 } : f));
  await su.collections.update(c.id, { fields });
  assert.match((await col.create({})).id, /^[a-z]{20}$/);
  // an id sent by the client is held to the id field's own limits
  assert.equal((await col.create({ id: 'abcdefghijklmnopqrst' })).id, 'abcdefghijklmnopqrst');
  const short = await expectError(() => col.create({ id: 'abcdefghijklmno' }));
  assert.equal(short.response.data.id.code, 'validation_min_text_constraint');
});

// A rule reading a field given `field:autogenerate` sees the value that is then stored (one value is
// generated per write): with "a" or "b" drawn at random and a rule asking for "a", every record that
// passes holds "a".
test('text autogeneratePattern: rules see the generated value that is stored', async () => {
  const c = await su.collections.create({
    name: uniq('r_genrule'), createRule: '@request.body.code = "a"', updateRule: '@request.body.code = "a"', viewRule: '',
    fields: [{ name: 'code', type: 'text', autogeneratePattern: '[ab]' }],
  });
  const col = guest().collection(c.name);
  const stored = [];
  let refused = 0;
  for (let i = 0; i < 24; i++) {
    try {
      stored.push((await col.create({ 'code:autogenerate': '' })).code);
    } catch (e) {
      assert.equal(e.status, 400);
      refused++;
    }
  }
  assert.ok(stored.length > 0 && refused > 0, `${stored.length} stored, ${refused} refused`);
  assert.deepEqual([...new Set(stored)], ['a']);
  const rec = (await su.collection(c.name).getFullList())[0];
  for (let i = 0; i < 8; i++) {
    try {
      assert.equal((await col.update(rec.id, { 'code:autogenerate': '' })).code, 'a');
    } catch (e) {
      assert.equal(e.status, 404);
    }
  }
});

test('malformed JSON body gives 400', async () => {
  const res = await fetch(`${su.baseURL}/api/collections/${W.name}/records`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: su.authStore.token },
    body: '{"title": ',
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.status, 400);
  assert.deepEqual(body.data, {});
});

test('unknown collection gives 404', async () => {
  const name = uniq('r_missing');
  const col = su.collection(name);
  const missing = { data: {}, message: 'Missing collection context.', status: 404 };

  const e1 = await expectError(() => col.getList());
  assert.equal(e1.status, 404);
  assert.deepEqual(e1.response, missing);
  const e2 = await expectError(() => col.getOne('abcdefghijklmno'));
  assert.equal(e2.status, 404);
  assert.deepEqual(e2.response, missing);
  const e3 = await expectError(() => col.create({ a: 1 }));
  assert.equal(e3.status, 404);
  assert.deepEqual(e3.response, { data: {}, message: 'Missing or invalid collection context.', status: 404 });
  const e4 = await expectError(() => col.update('abcdefghijklmno', { a: 1 }));
  assert.equal(e4.status, 404);
  const e5 = await expectError(() => col.delete('abcdefghijklmno'));
  assert.equal(e5.status, 404);
  const e6 = await expectError(() => guest().collection(name).getList());
  assert.equal(e6.status, 404);
});
