// A real OAuth2 / OpenID Connect provider for the tests (node:http, 127.0.0.1,
// ephemeral port).
//
//   const op = await startOAuthProvider({ kind: 'google' });
//   op.addUser({ sub: 'g-1', email: 'a@example.com', name: 'A' });
//   op.login('g-1');                       // who "signs in" at /authorize next
//   collection provider config: op.providerConfig('google')
//   ... authURL from listAuthMethods + redirect_uri → op.authorize(url) → {code, state}
//   await op.close();
//
// Endpoints:
//   GET  /authorize                     302 → redirect_uri?code&state (remembers code_challenge)
//   POST /token                         form; client auth via Basic or form; checks code,
//                                       redirect_uri, PKCE (S256/plain); grants
//                                       authorization_code and refresh_token
//   GET  /userinfo                      Bearer; shape depends on `kind`
//   GET  /user, /user/emails            GitHub style
//   GET  /.well-known/openid-configuration, /jwks
//   GET  /avatar/<anything>.png         a 1x1 PNG
//
// `kind` selects the userinfo shape:
//   google: {sub,email,email_verified,name,picture}
//   github: {id,login,name,email,avatar_url}   (/user/emails lists the email)
//   oidc:   {sub,email,email_verified,name,preferred_username,picture}
import http from 'node:http';
import { createHash, generateKeyPairSync, createSign, randomBytes } from 'node:crypto';

const PNG_1x1 = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** PKCE S256 challenge of a verifier. */
export function pkceChallenge(verifier) {
  return createHash('sha256').update(verifier).digest('base64url');
}

/** A random PKCE verifier (43+ chars). */
export function pkceVerifier() {
  return randomBytes(32).toString('base64url');
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJSON(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

/**
 * Start the provider.
 * @param {object} opts
 * @param {'google'|'github'|'oidc'} [opts.kind]
 * @param {string} [opts.clientId]
 * @param {string} [opts.clientSecret]
 * @param {number} [opts.expiresIn]   access token lifetime in seconds
 */
export async function startOAuthProvider({
  kind = 'google',
  clientId = `client-${randomBytes(4).toString('hex')}`,
  clientSecret = `secret-${randomBytes(8).toString('hex')}`,
  expiresIn = 3600,
} = {}) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `k-${randomBytes(4).toString('hex')}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

  const users = new Map(); // sub -> user
  const codes = new Map(); // code -> grant
  const accessTokens = new Map(); // token -> { sub, scope }
  const refreshTokens = new Map(); // token -> { sub, scope }
  const log = []; // {method, path, query, body, headers, status}
  let current = null;
  let baseURL = '';

  const op = {
    kind,
    clientId,
    clientSecret,
    log,
    get baseURL() { return baseURL; },
    get issuer() { return baseURL; },
    get authURL() { return `${baseURL}/authorize`; },
    get tokenURL() { return `${baseURL}/token`; },
    get userInfoURL() { return kind === 'github' ? `${baseURL}/user` : `${baseURL}/userinfo`; },
    get jwksURL() { return `${baseURL}/jwks`; },

    /** Add (or replace) a user. Returns the stored user. */
    addUser(u) {
      const sub = String(u.sub ?? u.id ?? `u${users.size + 1}-${randomBytes(3).toString('hex')}`);
      const user = {
        sub,
        email: u.email ?? '',
        emailVerified: u.emailVerified ?? true,
        name: u.name ?? '',
        username: u.username ?? '',
        avatar: u.avatar === undefined ? `${baseURL}/avatar/${encodeURIComponent(sub)}.png` : u.avatar,
        privateEmail: u.privateEmail ?? false, // github: hide email from /user
        extra: u.extra ?? {},
      };
      users.set(sub, user);
      if (!current) current = sub;
      return user;
    },
    /** The user that the next /authorize signs in (unless login_hint names one). */
    login(sub) {
      if (!users.has(String(sub))) throw new Error(`unknown provider user ${sub}`);
      current = String(sub);
    },
    user(sub) { return users.get(String(sub)); },

    /** The collection `oauth2.providers[]` entry for PocketBase-style explicit URLs. */
    providerConfig(name = kind) {
      return {
        name, clientId, clientSecret,
        authURL: op.authURL, tokenURL: op.tokenURL, userInfoURL: op.userInfoURL,
      };
    },

    /**
     * Follow an authorization URL (as built by the server under test, plus
     * redirect_uri) without following the redirect back. Resolves to
     * {code, state, location, url}.
     */
    async authorize(url, { loginHint } = {}) {
      const u = new URL(url);
      if (loginHint) u.searchParams.set('login_hint', loginHint);
      const res = await fetch(u, { redirect: 'manual' });
      const location = res.headers.get('location');
      if (res.status !== 302 || !location) {
        throw new Error(`authorize: expected 302, got ${res.status} ${await res.text()}`);
      }
      const loc = new URL(location);
      return { code: loc.searchParams.get('code'), state: loc.searchParams.get('state'), error: loc.searchParams.get('error'), location, url: loc };
    },

    /** Issue a code directly (no HTTP) for `sub`. */
    issueCode({ sub = current, redirectUri, codeChallenge = '', codeChallengeMethod = 'S256', scope = '', nonce = '' } = {}) {
      const code = `c-${randomBytes(12).toString('hex')}`;
      codes.set(code, { sub, clientId, redirectUri, codeChallenge, codeChallengeMethod, scope, nonce, used: false });
      return code;
    },

    /** Sign an RS256 JWT with the provider key. */
    signJWT(claims, header = {}) {
      const h = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid, ...header }));
      const p = b64url(JSON.stringify(claims));
      const s = createSign('RSA-SHA256').update(`${h}.${p}`).sign(privateKey);
      return `${h}.${p}.${b64url(s)}`;
    },

    idToken(user, { nonce } = {}) {
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        iss: baseURL, sub: user.sub, aud: clientId, iat: now, exp: now + 3600,
        email: user.email, email_verified: user.emailVerified, name: user.name,
        preferred_username: user.username, picture: user.avatar,
      };
      if (nonce) claims.nonce = nonce;
      return op.signJWT(claims);
    },

    userInfo(user) {
      switch (kind) {
        case 'github':
          return {
            id: /^\d+$/.test(user.sub) ? Number(user.sub) : user.sub,
            login: user.username, name: user.name,
            email: user.privateEmail ? null : user.email,
            avatar_url: user.avatar, ...user.extra,
          };
        case 'oidc':
          return {
            sub: user.sub, email: user.email, email_verified: user.emailVerified, name: user.name,
            preferred_username: user.username, picture: user.avatar, ...user.extra,
          };
        default:
          return { sub: user.sub, email: user.email, email_verified: user.emailVerified, name: user.name, picture: user.avatar, ...user.extra };
      }
    },
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, baseURL);
    const body = req.method === 'POST' ? await readBody(req) : '';
    const entry = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), body, headers: req.headers };
    log.push(entry);
    const reply = (status, json, headers) => { entry.status = status; entry.response = json; sendJSON(res, status, json, headers); };

    try {
      // --- discovery / keys -------------------------------------------------
      if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
        return reply(200, {
          issuer: baseURL,
          authorization_endpoint: `${baseURL}/authorize`,
          token_endpoint: `${baseURL}/token`,
          userinfo_endpoint: `${baseURL}/userinfo`,
          jwks_uri: `${baseURL}/jwks`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
          scopes_supported: ['openid', 'email', 'profile'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          code_challenge_methods_supported: ['S256', 'plain'],
          grant_types_supported: ['authorization_code', 'refresh_token'],
          claims_supported: ['sub', 'email', 'email_verified', 'name', 'preferred_username', 'picture'],
        });
      }
      if (req.method === 'GET' && url.pathname === '/jwks') {
        return reply(200, { keys: [jwk] });
      }
      if (req.method === 'GET' && url.pathname.startsWith('/avatar/')) {
        entry.status = 200;
        res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': PNG_1x1.length });
        return res.end(PNG_1x1);
      }

      // --- authorize -------------------------------------------------------
      if (req.method === 'GET' && url.pathname === '/authorize') {
        const q = url.searchParams;
        const redirectUri = q.get('redirect_uri');
        if (!redirectUri) return reply(400, { error: 'invalid_request', error_description: 'missing redirect_uri' });
        if (q.get('client_id') !== clientId) return reply(400, { error: 'unauthorized_client', error_description: 'unknown client_id' });
        const back = new URL(redirectUri);
        const state = q.get('state');
        if (q.get('response_type') && q.get('response_type') !== 'code') {
          back.searchParams.set('error', 'unsupported_response_type');
        } else {
          const sub = q.get('login_hint') && users.has(q.get('login_hint')) ? q.get('login_hint') : current;
          if (!sub) {
            back.searchParams.set('error', 'access_denied');
          } else {
            const code = op.issueCode({
              sub,
              redirectUri,
              codeChallenge: q.get('code_challenge') || '',
              codeChallengeMethod: q.get('code_challenge_method') || (q.get('code_challenge') ? 'plain' : ''),
              scope: q.get('scope') || '',
              nonce: q.get('nonce') || '',
            });
            back.searchParams.set('code', code);
          }
        }
        if (state !== null) back.searchParams.set('state', state);
        entry.status = 302;
        res.writeHead(302, { Location: back.toString() });
        return res.end();
      }

      // --- token -----------------------------------------------------------
      if (req.method === 'POST' && url.pathname === '/token') {
        const form = new URLSearchParams(body);
        let cid = form.get('client_id');
        let csecret = form.get('client_secret');
        const authz = req.headers.authorization || '';
        if (/^basic /i.test(authz)) {
          const dec = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
          const i = dec.indexOf(':');
          cid = decodeURIComponent(dec.slice(0, i).replace(/\+/g, ' '));
          csecret = decodeURIComponent(dec.slice(i + 1).replace(/\+/g, ' '));
          entry.clientAuth = 'basic';
        } else {
          entry.clientAuth = 'form';
        }
        if (cid !== clientId || csecret !== clientSecret) {
          return reply(401, { error: 'invalid_client', error_description: 'bad client credentials' });
        }
        const grant = form.get('grant_type');
        let sub;
        let scope;
        let nonce = '';
        if (grant === 'authorization_code') {
          const code = form.get('code');
          const c = codes.get(code);
          if (!c || c.used) return reply(400, { error: 'invalid_grant', error_description: 'unknown or used code' });
          if (c.redirectUri && form.get('redirect_uri') !== c.redirectUri) {
            return reply(400, { error: 'invalid_grant', error_description: 'redirect_uri mismatch' });
          }
          if (c.codeChallenge) {
            const verifier = form.get('code_verifier') || '';
            const expected = c.codeChallengeMethod === 'S256' ? pkceChallenge(verifier) : verifier;
            if (!verifier || expected !== c.codeChallenge) {
              return reply(400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
            }
            entry.pkceVerified = true;
          }
          c.used = true;
          ({ sub, scope, nonce } = c);
        } else if (grant === 'refresh_token') {
          const r = refreshTokens.get(form.get('refresh_token'));
          if (!r) return reply(400, { error: 'invalid_grant', error_description: 'unknown refresh token' });
          ({ sub, scope } = r);
        } else {
          return reply(400, { error: 'unsupported_grant_type' });
        }
        const user = users.get(sub);
        const accessToken = `at-${randomBytes(16).toString('hex')}`;
        const refreshToken = `rt-${randomBytes(16).toString('hex')}`;
        accessTokens.set(accessToken, { sub, scope });
        refreshTokens.set(refreshToken, { sub, scope });
        const out = { access_token: accessToken, token_type: 'Bearer', refresh_token: refreshToken, expires_in: expiresIn, scope };
        if (/(^|\s)openid(\s|$)/.test(scope || '') || kind === 'oidc') out.id_token = op.idToken(user, { nonce });
        return reply(200, out, { 'Cache-Control': 'no-store' });
      }

      // --- user info -------------------------------------------------------
      const bearer = /^bearer\s+(.+)$/i.exec(req.headers.authorization || '')?.[1];
      const who = bearer && accessTokens.get(bearer);
      if (req.method === 'GET' && ['/userinfo', '/user', '/user/emails'].includes(url.pathname)) {
        if (!who) return reply(401, { error: 'invalid_token' });
        const user = users.get(who.sub);
        if (url.pathname === '/user/emails') {
          return reply(200, user.email ? [{ email: user.email, primary: true, verified: user.emailVerified, visibility: 'private' }] : []);
        }
        return reply(200, op.userInfo(user));
      }

      return reply(404, { error: 'not_found' });
    } catch (err) {
      return reply(500, { error: 'server_error', error_description: String(err?.stack || err) });
    }
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  baseURL = `http://127.0.0.1:${server.address().port}`;

  op.close = () => new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
  return op;
}
