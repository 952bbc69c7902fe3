// TypeScript types for the official SDK (Basalt only): `GET /api/typegen/ts` after collections are
// made through the SDK, then the TypeScript compiler (`tsc --strict`) checks a program written
// against them: typed records, expand, create bodies, and `@ts-expect-error` lines that must fail
// (a misspelled field, a wrong select value, a missing required field). The same program then runs
// against the server, so the types describe what the server really answers.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE_URL, superuser, guest, uniq, raw } from './helpers.mjs';

const BASALT = !!process.env.BASALT_BACKEND;
const skip = !BASALT && 'Basalt only (PocketBase has no type generator)';
const here = dirname(fileURLToPath(import.meta.url));

let su;
let authors;
let posts;

before(async () => {
  if (!BASALT) return;
  su = await superuser();
  authors = uniq('authors');
  posts = uniq('posts');
  const a = await su.collections.create({
    name: authors, type: 'base', listRule: '', viewRule: '', createRule: '',
    fields: [{ name: 'name', type: 'text', required: true }],
  });
  await su.collections.create({
    name: posts, type: 'base', listRule: '', viewRule: '', createRule: '',
    fields: [
      { name: 'title', type: 'text', required: true, max: 50 },
      { name: 'views', type: 'number', onlyInt: true },
      { name: 'tags', type: 'select', values: ['news', 'tech'], maxSelect: 2 },
      { name: 'author', type: 'relation', collectionId: a.id, maxSelect: 1 },
      { name: 'meta', type: 'json' },
    ],
  });
});

test('typegen: the types compile with the SDK, reject wrong programs, and match the answers', { skip }, async () => {
  const res = await raw('/api/typegen/ts', { token: su.authStore.token });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /typescript/);
  const types = res.text;
  const A = types.match(new RegExp(`  (\\w+) = "${authors}",`))[1];
  const P = types.match(new RegExp(`  (\\w+) = "${posts}",`))[1];

  // Guests may not read the schema.
  assert.equal((await raw('/api/typegen/ts')).status, 401);

  const dir = mkdtempSync(join(here, '.typegen-'));
  try {
    writeFileSync(join(dir, 'pb-types.ts'), types);
    writeFileSync(join(dir, 'app.ts'), `
import PocketBase from 'pocketbase'
import { Collections, type TypedPocketBase, type ${P}Create } from './pb-types.js'

export async function main(url: string): Promise<string> {
  const pb = new PocketBase(url) as TypedPocketBase
  pb.autoCancellation(false)
  const author = await pb.collection('${authors}').create({ name: 'Ada' })
  const body: ${P}Create = { title: 'Hello', views: 3, tags: ['tech'], author: author.id, meta: { a: 1 } }
  const post = await pb.collection(Collections.${P}).create(body)
  const got = await pb.collection('${posts}').getOne(post.id, { expand: 'author' })
  const title: string = got.title
  const views: number = got.views
  const tags: ('news' | 'tech')[] = got.tags
  const name: string | undefined = got.expand?.author?.name
  // @ts-expect-error: no such field
  got.titel
  // @ts-expect-error: not one of the select's values
  const bad: ${P}Create = { title: 'x', tags: ['sports'] }
  // @ts-expect-error: title is required
  const missing: ${P}Create = { views: 1 }
  // @ts-expect-error: views is a number
  const wrong: ${P}Create = { title: 'x', views: 'many' }
  void bad; void missing; void wrong
  return JSON.stringify({ title, views, tags, name })
}
`);
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext',
        noEmit: false, outDir: 'out', skipLibCheck: false, noUnusedLocals: false,
      },
      files: ['app.ts'],
    }));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    const tsc = join(here, 'node_modules', '.bin', 'tsc');
    try {
      execFileSync(tsc, ['-p', dir], { encoding: 'utf8' });
    } catch (e) {
      assert.fail(`tsc failed:\n${e.stdout}\n${e.stderr}\n--- pb-types.ts ---\n${types}`);
    }
    const { main } = await import(join(dir, 'out', 'app.js'));
    const out = JSON.parse(await main(BASE_URL));
    assert.deepEqual(out, { title: 'Hello', views: 3, tags: ['tech'], name: 'Ada' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('openapi: the document describes the collections and is superusers-only', { skip }, async () => {
  assert.equal((await raw('/api/openapi.json')).status, 401);
  const doc = (await raw('/api/openapi.json', { token: su.authStore.token })).json;
  assert.equal(doc.openapi, '3.1.0');
  const list = doc.paths[`/api/collections/${posts}/records`].get;
  assert.deepEqual(list.parameters.map((p) => p.name),
    ['page', 'perPage', 'sort', 'filter', 'skipTotal', 'expand', 'fields']);
  const stem = Object.keys(doc.components.schemas).find((k) =>
    doc.components.schemas[k].properties?.collectionName?.const === posts);
  const rec = doc.components.schemas[stem];
  assert.equal(rec.properties.views.type, 'number');
  assert.deepEqual(rec.properties.tags, { type: 'array', items: { type: 'string' } });
  const create = doc.components.schemas[stem.replace(/Record$/, 'Create')];
  assert.deepEqual(create.required, ['title']);
  assert.deepEqual(create.properties.tags.items.enum, ['news', 'tech']);
  // A guest's record as listed matches the record schema's property names.
  const page = await guest().collection(posts).getList(1, 1);
  for (const item of page.items) {
    for (const k of Object.keys(item)) assert.ok(k in rec.properties, `${k} not described`);
  }
});
