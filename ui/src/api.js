// The dashboard talks to Basalt only through the official PocketBase SDK, as any app does.
import PocketBase, { LocalAuthStore } from 'pocketbase';

// Its own storage key, so a site served from the same origin (pb_public) keeps its own session.
export const pb = new PocketBase(location.origin, new LocalAuthStore('basalt_dashboard_auth'));
pb.autoCancellation(false);

export const SUPERUSERS = '_superusers';

export const signedIn = () => pb.authStore.isValid && pb.authStore.record?.collectionName === SUPERUSERS;

// The server's message for an error, and per-field messages (`data.<field>.message`).
export function errorText(e) {
  if (!e) return '';
  const r = e.response || {};
  return r.message || e.message || String(e);
}
// Every `{code, message}` under `data`, keyed by its dotted path (`fields.0.name`, `rateLimits.rules.0.label`).
export function fieldErrors(e) {
  const out = {};
  const walk = (v, path) => {
    if (!v || typeof v !== 'object') return;
    if (typeof v.message === 'string' && path) { out[path] = v.message; return; }
    for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
  };
  walk(e?.response?.data, '');
  return out;
}

// Keeps the session fresh: refreshes the token when less than half of its life is left.
let refreshing = null;
export function keepFresh() {
  const tick = async () => {
    if (!signedIn() || refreshing) return;
    const left = tokenExpiry(pb.authStore.token) - Date.now() / 1000;
    const life = tokenLife(pb.authStore.token);
    if (left < life / 2) {
      refreshing = pb.collection(SUPERUSERS).authRefresh().catch((e) => {
        if (e.status === 401 || e.status === 403 || e.status === 404) pb.authStore.clear();
      }).finally(() => { refreshing = null; });
    }
  };
  tick();
  return setInterval(tick, 30_000);
}
/** The payload of a JWT (no check: the server checks tokens). */
export function claims(token) {
  try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch { return {}; }
}
const tokenExpiry = (t) => claims(t).exp || 0;
const tokenLife = (t) => { const c = claims(t); return c.exp && c.iat ? c.exp - c.iat : (c.exp ? 3600 : 0); };

/** File names the grid and editor show as thumbnails. */
export const IMAGE = /\.(png|jpe?g|gif|webp|svg|avif)$/i;

export const fmtDate = (s) => (s ? String(s).replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
export function fmtBytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
