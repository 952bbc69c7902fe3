// Shared helpers for the Basalt SDK acceptance suite.
//
// Env:
//   BASALT_URL   base URL of the server under test (e.g. http://127.0.0.1:8090)
//   SU_EMAIL     superuser email
//   SU_PASSWORD  superuser password
import PocketBase from 'pocketbase';
import { randomBytes } from 'node:crypto';

export const BASE_URL = (process.env.BASALT_URL || 'http://127.0.0.1:8090').replace(/\/+$/, '');
export const SU_EMAIL = process.env.SU_EMAIL || 'admin@example.com';
export const SU_PASSWORD = process.env.SU_PASSWORD || 'adminpass123';

/** A fresh, unauthenticated client (auto-cancellation disabled). */
export function guest() {
  const pb = new PocketBase(BASE_URL);
  pb.autoCancellation(false);
  return pb;
}

/** A fresh client authenticated as the superuser. */
export async function superuser() {
  const pb = guest();
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  return pb;
}

let counter = 0;
/** Unique name made of [a-z0-9_], safe as a collection or field name. */
export function uniq(prefix = 't') {
  counter += 1;
  const rnd = randomBytes(4).toString('hex');
  return `${prefix}_${Date.now().toString(36)}${rnd}${counter}`.toLowerCase();
}

/** A unique email address. */
export function uniqEmail(prefix = 'user') {
  return `${uniq(prefix)}@example.com`;
}

/**
 * Run `fn` and return the ClientResponseError it throws.
 * Fails the test if `fn` resolves.
 */
export async function expectError(fn) {
  try {
    await fn();
  } catch (err) {
    if (err && typeof err.status === 'number') return err;
    throw err;
  }
  throw new Error('expected the request to fail, but it succeeded');
}

/** Raw fetch against the server (for checks the SDK hides). */
export async function raw(path, { method = 'GET', token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = token;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(BASE_URL + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

/** Create a new user in an auth collection (as guest) and log it in on a fresh client. */
export async function signUpAndLogin(collection, extra = {}) {
  const email = uniqEmail();
  const password = 'Secret-pass-123';
  const pb = guest();
  await pb.collection(collection).create({ email, password, passwordConfirm: password, ...extra });
  await pb.collection(collection).authWithPassword(email, password);
  return { pb, email, password, record: pb.authStore.record };
}

export const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;
export const ID_RE = /^[a-z0-9]{15}$/;
