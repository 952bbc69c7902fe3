// Files: upload through the SDK (single and multi file fields), stored-name
// format, GET /api/files/{collection}/{record}/{name} (bytes, headers,
// download, Range, conditional GET, HEAD), update modifiers (field+, +field,
// field-, replace, keep existing names), deletion of replaced/removed files,
// validation errors (maxSize, mimeTypes, maxSelect, required, unknown names),
// thumbnails (real PNG, IHDR checked), protected files with file tokens, 404s.
//
// Works the same when the server keeps its files in S3: with env S3_ENDPOINT
// (+ S3_BUCKET, S3_ACCESS_KEY, S3_SECRET, S3_REGION default "us-east-1")
// before() turns settings.s3 on (forcePathStyle) and after() turns it off again.
//
// Notes (reference PocketBase 0.40.6):
// - Files are served with Last-Modified but **no ETag**; If-Modified-Since gives 304.
//   If a server does send an ETag, the test also checks If-None-Match → 304.
// - Non-protected files are served to anyone, even when the record's viewRule denies them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { getTokenPayload } from 'pocketbase';
import { superuser, guest, uniq, expectError, raw, signUpAndLogin, BASE_URL } from './helpers.mjs';

const NOT_FOUND = { data: {}, message: "The requested resource wasn't found.", status: 404 };
const RAND = '[a-z0-9]{10}';

let su;
let s3Enabled = false;

before(async () => {
  su = await superuser();
  if (process.env.S3_ENDPOINT) {
    await su.settings.update({
      s3: {
        enabled: true,
        bucket: process.env.S3_BUCKET,
        region: process.env.S3_REGION || 'us-east-1',
        endpoint: process.env.S3_ENDPOINT,
        accessKey: process.env.S3_ACCESS_KEY,
        secret: process.env.S3_SECRET,
        forcePathStyle: true,
      },
    });
    s3Enabled = true;
  }
});

after(async () => {
  if (s3Enabled) await su.settings.update({ s3: { enabled: false } });
});

// ---------------------------------------------------------------------------
// helpers

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A minimal truecolor (RGB, 8 bit) PNG of w×h pixels with a gradient. */
function makePng(w, h) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // color type RGB
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1); // filter byte 0 (None)
    for (let x = 0; x < w; x++) {
      rows[row + 1 + x * 3] = (x * 4) & 255;
      rows[row + 2 + x * 3] = (y * 5) & 255;
      rows[row + 3 + x * 3] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Width/height from a PNG's IHDR chunk (asserts the PNG signature). */
function pngSize(buf) {
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
  assert.equal(buf.subarray(12, 16).toString('ascii'), 'IHDR');
  return { w: buf.readUInt32BE(16), h: buf.readUInt32BE(20) };
}

const PNG = makePng(64, 48);
const TEXT = 'hello world\n';

/** GET (or other method) a URL and return status, headers and the body as a Buffer. */
async function get(url, { method = 'GET', headers = {} } = {}) {
  const res = await fetch(url, { method, headers });
  const buf = Buffer.from(await res.arrayBuffer());
  let json = null;
  try { json = JSON.parse(buf.toString('utf8')); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, buf, json };
}

/** A base collection with the file fields used by most tests. */
async function filesCollection(extraFields = [], rules = {}) {
  const name = uniq('f_docs');
  const c = await su.collections.create({
    name,
    listRule: '',
    viewRule: '',
    createRule: '',
    updateRule: '',
    deleteRule: '',
    ...rules,
    fields: [
      { name: 'title', type: 'text' },
      { name: 'doc', type: 'file', maxSelect: 1, maxSize: 1000 },
      {
        name: 'docs',
        type: 'file',
        maxSelect: 3,
        maxSize: 100000,
        mimeTypes: ['image/png', 'text/plain'],
        thumbs: ['50x50', '20x0'],
      },
      { name: 'many', type: 'file', maxSelect: 30 },
      ...extraFields,
    ],
  });
  return c;
}

const txt = (name, body = TEXT) => new File([body], name, { type: 'text/plain' });
const pngFile = (name, buf = PNG) => new File([buf], name, { type: 'image/png' });

// ---------------------------------------------------------------------------

test('file field JSON defaults and options round-trip', async () => {
  const c = await filesCollection();
  const doc = c.fields.find((f) => f.name === 'doc');
  assert.deepEqual(
    { ...doc, id: undefined },
    {
      id: undefined, name: 'doc', type: 'file', system: false, hidden: false, presentable: false, help: '',
      maxSelect: 1, maxSize: 1000, mimeTypes: [], protected: false, required: false, thumbs: [],
    },
  );
  assert.match(doc.id, /^file\d+$/);
  const docs = c.fields.find((f) => f.name === 'docs');
  assert.deepEqual(docs.mimeTypes, ['image/png', 'text/plain']);
  assert.deepEqual(docs.thumbs, ['50x50', '20x0']);
  assert.equal(docs.maxSelect, 3);

  // a record without files: single file field is "", multi is []
  const r = await su.collection(c.name).create({ title: 'empty' });
  assert.equal(r.doc, '');
  assert.deepEqual(r.docs, []);
});

test('create with single and multiple files: stored names, exact bytes, content-type, disposition', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({
    title: 'with files',
    doc: txt('Hello World.TXT'),
    docs: [pngFile('My Photo (1).png'), txt('notes.txt', 'second file')],
  });

  // <snake_case original name>_<10 random [a-z0-9]>.<original extension, case kept>
  assert.match(r.doc, new RegExp(`^hello_world_${RAND}\\.TXT$`));
  assert.equal(r.docs.length, 2);
  assert.match(r.docs[0], new RegExp(`^my_photo_1_${RAND}\\.png$`));
  assert.match(r.docs[1], new RegExp(`^notes_${RAND}\\.txt$`));
  assert.deepEqual(await su.collection(c.name).getOne(r.id), r);

  // text file: exact bytes, sniffed content-type, served as attachment (not an inline type)
  const t = await get(su.files.getURL(r, r.doc));
  assert.equal(t.status, 200);
  assert.equal(t.buf.toString('utf8'), TEXT);
  assert.equal(t.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(t.headers.get('content-disposition'), `attachment; filename="${r.doc}"`);
  assert.equal(t.headers.get('content-length'), String(Buffer.byteLength(TEXT)));
  assert.equal(t.headers.get('accept-ranges'), 'bytes');
  assert.equal(t.headers.get('cache-control'), 'max-age=2592000, stale-while-revalidate=86400');
  assert.equal(
    t.headers.get('content-security-policy'),
    "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox",
  );
  assert.ok(!Number.isNaN(Date.parse(t.headers.get('last-modified'))), 'Last-Modified is an HTTP date');

  // png: inline by default, attachment with download=1 / download=true
  const p = await get(su.files.getURL(r, r.docs[0]));
  assert.equal(p.status, 200);
  assert.ok(p.buf.equals(PNG), 'png bytes unchanged');
  assert.equal(p.headers.get('content-type'), 'image/png');
  assert.equal(p.headers.get('content-disposition'), `inline; filename="${r.docs[0]}"`);
  for (const download of ['1', 'true']) {
    const d = await get(`${su.files.getURL(r, r.docs[0])}?download=${download}`);
    assert.equal(d.status, 200);
    assert.equal(d.headers.get('content-disposition'), `attachment; filename="${r.docs[0]}"`);
    assert.ok(d.buf.equals(PNG));
  }
  const sdkDownload = await get(su.files.getURL(r, r.docs[0], { download: true }));
  assert.equal(sdkDownload.headers.get('content-disposition'), `attachment; filename="${r.docs[0]}"`);

  // the file URL works for guests (viewRule ""), by collection id or name
  const byId = await get(`${BASE_URL}/api/files/${c.id}/${r.id}/${r.docs[1]}`);
  assert.equal(byId.status, 200);
  assert.equal(byId.buf.toString('utf8'), 'second file');

  // HEAD: same headers, no body
  const h = await get(su.files.getURL(r, r.doc), { method: 'HEAD' });
  assert.equal(h.status, 200);
  assert.equal(h.headers.get('content-length'), String(Buffer.byteLength(TEXT)));
  assert.equal(h.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(h.buf.length, 0);
});

test('stored file names: sanitizing, short names, double extensions, long names, no extension', async () => {
  const c = await filesCollection();
  const cases = [
    ['a.txt', `^a${RAND}_${RAND}\\.txt$`], // name shorter than 3 → 10 more random chars
    ['ab.txt', `^ab${RAND}_${RAND}\\.txt$`],
    ['abc.txt', `^abc_${RAND}\\.txt$`],
    ['archive.tar.gz', `^archive_${RAND}\\.tar\\.gz$`], // the last two dot-parts are the extension
    ['my.file.name.txt', `^my_file_${RAND}\\.name\\.txt$`],
    ['CamelCaseName.Md', `^camel_case_name_${RAND}\\.Md$`], // extension case is kept
    ['UPPER.JSON', `^upper_${RAND}\\.JSON$`],
    ['a__b  c-d.txt', `^a_b_c_d_${RAND}\\.txt$`],
    ['fooBarBaz.txt', `^foo_bar_baz_${RAND}\\.txt$`],
    ['sp ace.t x t', `^sp_ace_${RAND}\\.txt$`], // invalid chars are dropped from the extension
    ['noext', `^noext_${RAND}\\.txt$`], // extension detected from the content (text/plain)
    ['ÄÖÜ.txt', `^${RAND}_${RAND}\\.txt$`], // non-ASCII letters are separators
    [`${'x'.repeat(150)}.txt`, `^${'x'.repeat(100)}_${RAND}\\.txt$`], // name cut to 100 chars
    ['x.abcdefghijklmnopqrstuvwxyz0123', `^x${RAND}_${RAND}\\.klmnopqrstuvwxyz0123$`], // ext: last 20 chars
  ];
  const r = await su.collection(c.name).create({ many: cases.map(([n]) => txt(n)) });
  assert.equal(r.many.length, cases.length);
  cases.forEach(([orig, re], i) => assert.match(r.many[i], new RegExp(re), `${orig} -> ${r.many[i]}`));
  assert.equal(new Set(r.many).size, cases.length, 'all names unique');

  // the same original name twice gives two different stored names
  const twice = await su.collection(c.name).create({ many: [txt('same.txt'), txt('same.txt')] });
  assert.notEqual(twice.many[0], twice.many[1]);

  // every stored name is served
  for (const n of r.many) {
    const res = await get(su.files.getURL(r, n));
    assert.equal(res.status, 200, n);
    assert.equal(res.buf.toString('utf8'), TEXT);
  }
});

test('Range requests: single range 206, suffix range, unsatisfiable 416', async () => {
  const c = await filesCollection();
  const body = '0123456789abcdefghij';
  const r = await su.collection(c.name).create({ doc: txt('range.txt', body) });
  const url = su.files.getURL(r, r.doc);

  const part = await get(url, { headers: { Range: 'bytes=2-6' } });
  assert.equal(part.status, 206);
  assert.equal(part.buf.toString('utf8'), '23456');
  assert.equal(part.headers.get('content-range'), `bytes 2-6/${body.length}`);
  assert.equal(part.headers.get('content-length'), '5');
  assert.equal(part.headers.get('content-type'), 'text/plain; charset=utf-8');

  const open = await get(url, { headers: { Range: 'bytes=15-' } });
  assert.equal(open.status, 206);
  assert.equal(open.buf.toString('utf8'), 'fghij');
  assert.equal(open.headers.get('content-range'), `bytes 15-19/${body.length}`);

  const suffix = await get(url, { headers: { Range: 'bytes=-3' } });
  assert.equal(suffix.status, 206);
  assert.equal(suffix.buf.toString('utf8'), 'hij');
  assert.equal(suffix.headers.get('content-range'), `bytes 17-19/${body.length}`);

  const bad = await get(url, { headers: { Range: 'bytes=100-200' } });
  assert.equal(bad.status, 416);
  assert.equal(bad.headers.get('content-range'), `bytes */${body.length}`);
});

test('conditional GET: Last-Modified + If-Modified-Since gives 304 (and ETag + If-None-Match if an ETag is sent)', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({ doc: txt('cond.txt') });
  const url = su.files.getURL(r, r.doc);

  const first = await get(url);
  assert.equal(first.status, 200);
  const lastModified = first.headers.get('last-modified');
  assert.ok(lastModified, 'Last-Modified is sent');
  assert.ok(Math.abs(Date.parse(lastModified) - Date.now()) < 120_000, 'Last-Modified is about now');

  const notModified = await get(url, { headers: { 'If-Modified-Since': lastModified } });
  assert.equal(notModified.status, 304);
  assert.equal(notModified.buf.length, 0);

  const older = new Date(Date.parse(lastModified) - 3600_000).toUTCString();
  const modified = await get(url, { headers: { 'If-Modified-Since': older } });
  assert.equal(modified.status, 200);
  assert.equal(modified.buf.toString('utf8'), TEXT);

  // PocketBase sends no ETag. A server that does must honour If-None-Match.
  const etag = first.headers.get('etag');
  if (etag) {
    const byTag = await get(url, { headers: { 'If-None-Match': etag } });
    assert.equal(byTag.status, 304);
  }
  const otherTag = await get(url, { headers: { 'If-None-Match': '"some-other-tag"' } });
  assert.equal(otherTag.status, 200);
});

test('update: field+ appends, +field prepends, field- removes, replace a single file, keep existing names', async () => {
  const c = await filesCollection();
  const col = su.collection(c.name);
  const r = await col.create({ doc: txt('first.txt'), docs: [txt('d1.txt', 'one'), txt('d2.txt', 'two')] });
  const [d1, d2] = r.docs;
  const oldDoc = r.doc;

  // append
  const a = await col.update(r.id, { 'docs+': txt('d3.txt', 'three') });
  assert.equal(a.docs.length, 3);
  assert.deepEqual(a.docs.slice(0, 2), [d1, d2]);
  assert.match(a.docs[2], new RegExp(`^d3${RAND}_${RAND}\\.txt$`));
  const d3 = a.docs[2];

  // appending past maxSelect fails and changes nothing
  const tooMany = await expectError(() => col.update(r.id, { 'docs+': txt('d4.txt') }));
  assert.equal(tooMany.status, 400);
  assert.deepEqual(tooMany.response, {
    data: { docs: { code: 'validation_too_many_files', message: 'The maximum allowed files is 3.', params: { maxSelect: 3 } } },
    message: 'Failed to update record.',
    status: 400,
  });
  assert.deepEqual((await col.getOne(r.id)).docs, [d1, d2, d3]);

  // removing a name that is not there is a silent no-op
  const noop = await col.update(r.id, { 'docs-': ['does_not_exist.txt'] });
  assert.deepEqual(noop.docs, [d1, d2, d3]);

  // remove one (JSON body); the removed file is deleted right after the save
  const removed = await col.update(r.id, { 'docs-': [d1] });
  assert.deepEqual(removed.docs, [d2, d3]);
  assert.deepEqual((await get(su.files.getURL(r, d1))).json, NOT_FOUND);
  assert.equal((await get(su.files.getURL(r, d2))).buf.toString('utf8'), 'two');

  // prepend
  const pre = await col.update(r.id, { '+docs': txt('zero.txt', 'zero') });
  assert.equal(pre.docs.length, 3);
  assert.match(pre.docs[0], new RegExp(`^zero_${RAND}\\.txt$`));
  assert.deepEqual(pre.docs.slice(1), [d2, d3]);
  const zero = pre.docs[0];

  // replace the single file: the old one is deleted
  const replaced = await col.update(r.id, { doc: txt('second.txt', 'replacement') });
  assert.match(replaced.doc, new RegExp(`^second_${RAND}\\.txt$`));
  assert.deepEqual((await get(su.files.getURL(r, oldDoc))).json, NOT_FOUND);
  assert.equal((await get(su.files.getURL(r, replaced.doc))).buf.toString('utf8'), 'replacement');

  // multipart: the existing names listed in the field are kept (in that order), the upload is added,
  // every name not listed is dropped and its file deleted
  const kept = await col.update(r.id, { docs: [d3, txt('new.txt', 'new')] });
  assert.equal(kept.docs.length, 2);
  assert.equal(kept.docs[0], d3);
  assert.match(kept.docs[1], new RegExp(`^new_${RAND}\\.txt$`));
  for (const gone of [zero, d2]) {
    assert.equal((await get(su.files.getURL(r, gone))).status, 404, gone);
  }
  assert.equal((await get(su.files.getURL(r, d3))).buf.toString('utf8'), 'three');
  assert.equal((await get(su.files.getURL(r, kept.docs[1]))).buf.toString('utf8'), 'new');

  // reorder with a JSON list of the existing names
  const reordered = await col.update(r.id, { docs: [kept.docs[1], d3] });
  assert.deepEqual(reordered.docs, [kept.docs[1], d3]);

  // field- with a multipart (string) value
  const fd = new FormData();
  fd.append('docs-', d3);
  const viaForm = await col.update(r.id, fd);
  assert.deepEqual(viaForm.docs, [kept.docs[1]]);

  // clearing: "" for a single file field, [] for a multi file field
  const cleared = await col.update(r.id, { doc: '', docs: [] });
  assert.equal(cleared.doc, '');
  assert.deepEqual(cleared.docs, []);
  assert.equal((await get(su.files.getURL(r, replaced.doc))).status, 404);
  assert.equal((await get(su.files.getURL(r, kept.docs[1]))).status, 404);
});

test('a single file field given two uploads keeps the last one', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({ doc: [txt('one.txt', 'one'), txt('two.txt', 'two')] });
  assert.match(r.doc, new RegExp(`^two_${RAND}\\.txt$`));
  assert.equal((await get(su.files.getURL(r, r.doc))).buf.toString('utf8'), 'two');
});

test('deleting the record deletes its files', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({ doc: txt('gone.txt'), docs: [pngFile('pic.png')] });
  const urls = [su.files.getURL(r, r.doc), su.files.getURL(r, r.docs[0]), su.files.getURL(r, r.docs[0], { thumb: '50x50' })];
  for (const u of urls) assert.equal((await get(u)).status, 200);
  await su.collection(c.name).delete(r.id);
  for (const u of urls) assert.deepEqual((await get(u)).json, NOT_FOUND, u);
});

test('validation: maxSize, mimeTypes, maxSelect, required and unknown file names', async () => {
  const c = await filesCollection([
    { name: 'req', type: 'file', required: true },
    { name: 'dflt', type: 'file' },
  ]);
  const col = su.collection(c.name);

  // maxSize: the message names the *original* file name
  const big = await expectError(() => col.create({ req: txt('r.txt'), doc: txt('big.txt', 'x'.repeat(1001)) }));
  assert.equal(big.status, 400);
  assert.deepEqual(big.response, {
    data: {
      doc: {
        code: 'validation_file_size_limit',
        message: 'Failed to upload big.txt - the maximum allowed file size is 1000 bytes.',
        params: { file: 'big.txt', maxSize: 1000 },
      },
    },
    message: 'Failed to create record.',
    status: 400,
  });
  // exactly maxSize is fine
  const exact = await col.create({ req: txt('r.txt'), doc: txt('exact.txt', 'y'.repeat(1000)) });
  assert.match(exact.doc, new RegExp(`^exact_${RAND}\\.txt$`));

  // mimeTypes: the type is sniffed from the content (a text file named .png with type image/png fails);
  // the message names the *stored* (normalized) file name
  const wrong = await expectError(() =>
    col.create({ req: txt('r.txt'), docs: [new File(['%PDF-1.4 not really'], 'doc.pdf', { type: 'application/pdf' })] }));
  assert.equal(wrong.status, 400);
  assert.equal(wrong.response.message, 'Failed to create record.');
  assert.deepEqual(Object.keys(wrong.response.data), ['docs']);
  assert.equal(wrong.response.data.docs.code, 'validation_invalid_mime_type');
  assert.match(
    wrong.response.data.docs.message,
    new RegExp(`^"doc_${RAND}\\.pdf" mime type must be one of: image/png, text/plain\\.$`),
  );
  assert.equal('params' in wrong.response.data.docs, false);
  const liar = await expectError(() =>
    col.create({ req: txt('r.txt'), docs: [new File([Buffer.from([0, 1, 2, 3, 0xff, 0xfe])], 'x.png', { type: 'image/png' })] }));
  assert.equal(liar.response.data.docs.code, 'validation_invalid_mime_type');

  // maxSelect
  const many = await expectError(() =>
    col.create({ req: txt('r.txt'), docs: [pngFile('1.png'), pngFile('2.png'), pngFile('3.png'), pngFile('4.png')] }));
  assert.deepEqual(many.response, {
    data: { docs: { code: 'validation_too_many_files', message: 'The maximum allowed files is 3.', params: { maxSelect: 3 } } },
    message: 'Failed to create record.',
    status: 400,
  });

  // required (JSON body and multipart)
  const missing = await expectError(() => col.create({ title: 'no file' }));
  assert.deepEqual(missing.response, {
    data: { req: { code: 'validation_required', message: 'Cannot be blank.' } },
    message: 'Failed to create record.',
    status: 400,
  });
  const missingMp = await expectError(() => col.create({ doc: txt('d.txt') }));
  assert.deepEqual(missingMp.response.data, { req: { code: 'validation_required', message: 'Cannot be blank.' } });

  // several field errors at once
  const all = await expectError(() => col.create({ doc: txt('big.txt', 'x'.repeat(2000)), docs: [pngFile('1.png'), pngFile('2.png'), pngFile('3.png'), pngFile('4.png')] }));
  assert.deepEqual(Object.keys(all.response.data).sort(), ['doc', 'docs', 'req']);

  // names that are neither existing files nor uploads are rejected (not dropped)
  const unknown = await expectError(() => col.create({ req: 'nope.txt', docs: ['a.png', 'b.png'] }));
  assert.deepEqual(unknown.response, {
    data: {
      docs: { code: 'validation_invalid_file', message: 'Invalid new files: [a.png b.png].', params: { invalidFiles: ['a.png', 'b.png'] } },
      req: { code: 'validation_invalid_file', message: 'Invalid new files: [nope.txt].', params: { invalidFiles: ['nope.txt'] } },
    },
    message: 'Failed to create record.',
    status: 400,
  });
  const ok = await col.create({ req: txt('r.txt') });
  const unknownUpd = await expectError(() => col.update(ok.id, { req: 'other_name.txt' }));
  assert.deepEqual(unknownUpd.response.data, {
    req: { code: 'validation_invalid_file', message: 'Invalid new files: [other_name.txt].', params: { invalidFiles: ['other_name.txt'] } },
  });
  assert.equal(unknownUpd.response.message, 'Failed to update record.');

  // an empty file is accepted
  const empty = await col.create({ req: txt('empty.txt', '') });
  const e = await get(su.files.getURL(empty, empty.req));
  assert.equal(e.status, 200);
  assert.equal(e.buf.length, 0);

  // maxSize 0 means the default limit of 5 MiB (5242880 bytes)
  const tooBig = await expectError(() =>
    col.create({ req: txt('r.txt'), dflt: new File([Buffer.alloc(5 * 1024 * 1024 + 1)], 'huge.bin') }));
  assert.deepEqual(tooBig.response.data, {
    dflt: {
      code: 'validation_file_size_limit',
      message: 'Failed to upload huge.bin - the maximum allowed file size is 5242880 bytes.',
      params: { file: 'huge.bin', maxSize: 5242880 },
    },
  });
  const fits = await col.create({ req: txt('r.txt'), dflt: new File([Buffer.alloc(5 * 1024 * 1024)], 'huge.bin') });
  assert.match(fits.dflt, new RegExp(`^huge_${RAND}\\.bin$`));
});

test('thumbnails: listed sizes and 100x100 are generated from a PNG; anything else returns the original', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({ docs: [pngFile('pic.png'), txt('plain.txt')] });
  const [pic, plain] = r.docs;

  const expectThumb = async (thumb, w, h) => {
    const res = await get(su.files.getURL(r, pic, { thumb }));
    assert.equal(res.status, 200, thumb);
    assert.equal(res.headers.get('content-type'), 'image/png', thumb);
    assert.equal(res.headers.get('content-disposition'), `inline; filename="${thumb}_${pic}"`, thumb);
    assert.deepEqual(pngSize(res.buf), { w, h }, thumb);
    return res.buf;
  };
  const t50 = await expectThumb('50x50', 50, 50); // center crop
  await expectThumb('20x0', 20, 15); // width 20, height keeps the 4:3 ratio
  await expectThumb('100x100', 100, 100); // always allowed, even if not listed in thumbs
  // a second request serves the stored thumb (same bytes)
  assert.ok((await get(su.files.getURL(r, pic, { thumb: '50x50' }))).buf.equals(t50));

  // sizes that are not in the field's thumbs return the original file, unchanged
  for (const thumb of ['10x10', '0x20', '50x50t', '0x0', 'abc', '']) {
    const res = await get(`${su.files.getURL(r, pic)}?thumb=${encodeURIComponent(thumb)}`);
    assert.equal(res.status, 200, thumb);
    assert.ok(res.buf.equals(PNG), `original for thumb=${thumb}`);
    assert.equal(res.headers.get('content-disposition'), `inline; filename="${pic}"`);
  }

  // a thumb of a non-image is the original
  const t = await get(su.files.getURL(r, plain, { thumb: '50x50' }));
  assert.equal(t.status, 200);
  assert.equal(t.buf.toString('utf8'), TEXT);
  assert.equal(t.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(t.headers.get('content-disposition'), `attachment; filename="${plain}"`);

  // thumb + download
  const d = await get(su.files.getURL(r, pic, { thumb: '20x0', download: 1 }));
  assert.equal(d.headers.get('content-disposition'), `attachment; filename="20x0_${pic}"`);
  assert.deepEqual(pngSize(d.buf), { w: 20, h: 15 });
});

test('protected files: file token + viewRule; getToken needs auth', async () => {
  const usersName = uniq('f_users');
  await su.collections.create({ name: usersName, type: 'auth', createRule: '', listRule: '', viewRule: '' });
  const owner = await signUpAndLogin(usersName);
  const other = await signUpAndLogin(usersName);

  const c = await su.collections.create({
    name: uniq('f_prot'),
    listRule: 'owner = @request.auth.id',
    viewRule: 'owner = @request.auth.id',
    createRule: null,
    fields: [
      { name: 'owner', type: 'relation', collectionId: (await su.collections.getOne(usersName)).id, maxSelect: 1 },
      { name: 'secret', type: 'file', protected: true, maxSelect: 1 },
      { name: 'open', type: 'file', maxSelect: 1 },
    ],
  });
  assert.equal(c.fields.find((f) => f.name === 'secret').protected, true);
  const r = await su.collection(c.name).create({ owner: owner.record.id, secret: txt('secret.txt', 'top secret'), open: txt('open.txt', 'not secret') });
  assert.match(r.secret, new RegExp(`^secret_${RAND}\\.txt$`));

  // no token (guest, or even the owner's auth header): 404
  assert.deepEqual((await get(su.files.getURL(r, r.secret))).json, NOT_FOUND);
  const withHeader = await get(su.files.getURL(r, r.secret), { headers: { Authorization: owner.pb.authStore.token } });
  assert.deepEqual(withHeader.json, NOT_FOUND);
  assert.deepEqual((await get(su.files.getURL(r, r.secret, { token: 'garbage' }))).json, NOT_FOUND);
  // an auth token is not a file token
  assert.deepEqual((await get(su.files.getURL(r, r.secret, { token: owner.pb.authStore.token }))).json, NOT_FOUND);

  // the owner's file token passes the viewRule
  const ownerToken = await owner.pb.files.getToken();
  const claims = getTokenPayload(ownerToken);
  assert.deepEqual(Object.keys(claims).sort(), ['collectionId', 'exp', 'id', 'type']);
  assert.equal(claims.type, 'file');
  assert.equal(claims.id, owner.record.id);
  assert.equal(claims.collectionId, owner.record.collectionId);
  const ttl = claims.exp - Math.floor(Date.now() / 1000);
  assert.ok(ttl > 170 && ttl <= 181, `file token lives 180 s (got ${ttl})`);
  const ok = await get(owner.pb.files.getURL(r, r.secret, { token: ownerToken }));
  assert.equal(ok.status, 200);
  assert.equal(ok.buf.toString('utf8'), 'top secret');
  assert.equal(ok.headers.get('content-disposition'), `attachment; filename="${r.secret}"`);

  // another user's token does not match the viewRule: 404, also with the owner's auth header
  const otherToken = await other.pb.files.getToken();
  assert.deepEqual((await get(other.pb.files.getURL(r, r.secret, { token: otherToken }))).json, NOT_FOUND);
  // only the token decides, not the Authorization header
  const mixed = await get(su.files.getURL(r, r.secret, { token: ownerToken }), { headers: { Authorization: other.pb.authStore.token } });
  assert.equal(mixed.status, 200);

  // a superuser file token sees everything
  const suToken = await su.files.getToken();
  assert.equal(getTokenPayload(suToken).type, 'file');
  assert.equal(getTokenPayload(suToken).collectionId, 'pbc_3142635823');
  assert.equal((await get(su.files.getURL(r, r.secret, { token: suToken }))).status, 200);

  // non-protected files are served to anyone, whatever the viewRule
  const open = await get(guest().files.getURL(r, r.open));
  assert.equal(open.status, 200);
  assert.equal(open.buf.toString('utf8'), 'not secret');

  // getToken without auth: 401
  const noAuth = await expectError(() => guest().files.getToken());
  assert.equal(noAuth.status, 401);
  assert.deepEqual(noAuth.response, { data: {}, message: 'The request requires valid record authorization token.', status: 401 });
  const rawToken = await raw('/api/files/token', { method: 'POST' });
  assert.equal(rawToken.status, 401);
  const okRaw = await raw('/api/files/token', { method: 'POST', token: owner.pb.authStore.token });
  assert.equal(okRaw.status, 200);
  assert.deepEqual(Object.keys(okRaw.json), ['token']);
});

test('unknown collection, record or file name: 404', async () => {
  const c = await filesCollection();
  const r = await su.collection(c.name).create({ doc: txt('known.txt'), docs: [pngFile('p.png')] });
  const r2 = await su.collection(c.name).create({ doc: txt('other.txt') });

  const unknownFile = await get(`${BASE_URL}/api/files/${c.name}/${r.id}/nope_0123456789.txt`);
  assert.equal(unknownFile.status, 404);
  assert.equal(unknownFile.headers.get('content-type'), 'application/json');
  assert.deepEqual(unknownFile.json, NOT_FOUND);

  const unknownRecord = await get(`${BASE_URL}/api/files/${c.name}/zzzzzzzzzzzzzzz/${r.doc}`);
  assert.deepEqual(unknownRecord.json, NOT_FOUND);

  const unknownCollection = await get(`${BASE_URL}/api/files/${uniq('nope')}/${r.id}/${r.doc}`);
  assert.equal(unknownCollection.status, 404);
  assert.deepEqual(unknownCollection.json, { data: {}, message: 'Missing or invalid collection context.', status: 404 });

  // a file of another record of the same collection
  assert.deepEqual((await get(`${BASE_URL}/api/files/${c.name}/${r.id}/${r2.doc}`)).json, NOT_FOUND);
  // a thumb name or the storage's side files are not addressable
  assert.deepEqual((await get(`${BASE_URL}/api/files/${c.name}/${r.id}/50x50_${r.docs[0]}`)).json, NOT_FOUND);
  assert.deepEqual((await get(`${BASE_URL}/api/files/${c.name}/${r.id}/${r.doc}.attrs`)).json, NOT_FOUND);
  // the SDK gives "" for incomplete input
  assert.equal(su.files.getURL({}, 'x.txt'), '');
  assert.equal(su.files.getURL(r, ''), '');
});
