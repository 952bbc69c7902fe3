// A tiny real SMTP server (node:net) that collects every message it receives.
//
//   const smtp = await startSmtp();            // ephemeral port on 127.0.0.1
//   await configureSmtp(su, smtp);             // point the server under test at it
//   const mail = await smtp.waitForMail((m) => m.to.includes(email));
//   mail.subject / mail.text / mail.html / mail.raw
//   await smtp.close();
//
// Supports EHLO/HELO, AUTH PLAIN/LOGIN (accepts anything), MAIL FROM, RCPT TO,
// DATA (with dot-unstuffing), RSET, NOOP, QUIT. No STARTTLS is offered.
import net from 'node:net';

/** Decode RFC 2047 encoded-words in a header value (=?utf-8?q?...?= / =?utf-8?b?...?=). */
export function decodeHeaderValue(v) {
  return v.replace(/=\?([^?]+)\?([qQbB])\?([^?]*)\?=\s*(?==\?)?/g, (_m, _cs, enc, data) => {
    if (enc.toLowerCase() === 'b') return Buffer.from(data, 'base64').toString('utf8');
    const s = data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_x, h) => String.fromCharCode(parseInt(h, 16)));
    return Buffer.from(s, 'latin1').toString('utf8');
  });
}

/** Decode a quoted-printable body into a UTF-8 string. */
export function decodeQuotedPrintable(s) {
  const bin = s.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_x, h) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(bin, 'latin1').toString('utf8');
}

/** Split a raw MIME entity into {headers (lower-case keys), body}. */
function splitEntity(rawText) {
  const text = rawText.replace(/\r\n/g, '\n');
  const i = text.indexOf('\n\n');
  const head = i < 0 ? text : text.slice(0, i);
  const body = i < 0 ? '' : text.slice(i + 2);
  const headers = {};
  let last = null;
  for (const line of head.split('\n')) {
    if (/^[ \t]/.test(line) && last) {
      headers[last] += ' ' + line.trim();
      continue;
    }
    const c = line.indexOf(':');
    if (c < 0) continue;
    last = line.slice(0, c).trim().toLowerCase();
    const val = line.slice(c + 1).trim();
    headers[last] = headers[last] === undefined ? val : `${headers[last]}, ${val}`;
  }
  return { headers, body };
}

function decodeBody(headers, body) {
  const cte = (headers['content-transfer-encoding'] || '').toLowerCase();
  if (cte === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (cte === 'quoted-printable') return decodeQuotedPrintable(body);
  return body;
}

/** Walk a MIME tree and collect the text/plain and text/html parts. */
function collectParts(headers, body, out) {
  const ct = headers['content-type'] || 'text/plain';
  const m = /boundary="?([^";]+)"?/i.exec(ct);
  if (/^multipart\//i.test(ct) && m) {
    const boundary = `--${m[1]}`;
    const chunks = body.split(boundary).slice(1);
    for (const chunk of chunks) {
      if (chunk.startsWith('--')) break;
      const part = splitEntity(chunk.replace(/^\n/, ''));
      collectParts(part.headers, part.body, out);
    }
    return;
  }
  const decoded = decodeBody(headers, body);
  if (/^text\/html/i.test(ct)) out.html.push(decoded);
  else if (/^text\//i.test(ct)) out.text.push(decoded);
}

/** Parse a raw message into {headers, subject, text, html}. `text` falls back to the html. */
export function parseMessage(rawMsg) {
  const { headers, body } = splitEntity(rawMsg);
  const out = { text: [], html: [] };
  collectParts(headers, body, out);
  const html = out.html.join('\n');
  const text = out.text.length ? out.text.join('\n') : html;
  return {
    headers,
    subject: decodeHeaderValue(headers.subject || ''),
    text,
    html,
  };
}

/** Extract the bare address from "Name <a@b>" or "<a@b>" or "a@b". */
function addr(s) {
  const m = /<([^>]*)>/.exec(s);
  return (m ? m[1] : s).trim().split(/\s+/)[0].toLowerCase();
}

/** Start the server. Resolves to {port, host, messages, waitForMail, clear, close}. */
export async function startSmtp({ host = '127.0.0.1', port = 0 } = {}) {
  const messages = [];
  const waiters = new Set();
  const sockets = new Set();

  const deliver = (msg) => {
    messages.push(msg);
    for (const w of [...waiters]) w();
  };

  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.setEncoding('latin1');
    const send = (line) => { if (!sock.destroyed) sock.write(`${line}\r\n`); };

    let buf = '';
    let mode = 'cmd'; // cmd | data | auth-login-user | auth-login-pass | auth-plain
    let from = null;
    let to = [];
    let dataLines = [];

    const reset = () => { from = null; to = []; dataLines = []; };

    const onLine = (line) => {
      if (mode === 'data') {
        if (line === '.') {
          mode = 'cmd';
          const rawMsg = Buffer.from(dataLines.join('\r\n') + '\r\n', 'latin1').toString('utf8');
          deliver({ from, to: [...to], raw: rawMsg, receivedAt: Date.now(), ...parseMessage(rawMsg) });
          reset();
          send('250 2.0.0 OK queued');
          return;
        }
        dataLines.push(line.startsWith('.') ? line.slice(1) : line);
        return;
      }
      if (mode === 'auth-login-user') { mode = 'auth-login-pass'; send('334 UGFzc3dvcmQ6'); return; }
      if (mode === 'auth-login-pass' || mode === 'auth-plain') { mode = 'cmd'; send('235 2.7.0 Authentication successful'); return; }

      const [verbRaw, ...rest] = line.split(' ');
      const verb = verbRaw.toUpperCase();
      const arg = rest.join(' ');
      switch (verb) {
        case 'EHLO':
          sock.write(`250-${host} hello ${arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 52428800\r\n`);
          break;
        case 'HELO':
          send(`250 ${host}`);
          break;
        case 'AUTH': {
          const [mech, initial] = arg.split(' ');
          const m = (mech || '').toUpperCase();
          if (m === 'PLAIN') {
            if (initial) send('235 2.7.0 Authentication successful');
            else { mode = 'auth-plain'; send('334 '); }
          } else if (m === 'LOGIN') {
            if (initial) { mode = 'auth-login-pass'; send('334 UGFzc3dvcmQ6'); } else { mode = 'auth-login-user'; send('334 VXNlcm5hbWU6'); }
          } else {
            send('504 5.5.4 Unrecognized authentication type');
          }
          break;
        }
        case 'MAIL':
          reset();
          from = addr(arg.replace(/^FROM:/i, '').replace(/\s+(SIZE|BODY|SMTPUTF8)\b.*$/i, ''));
          send('250 2.1.0 OK');
          break;
        case 'RCPT':
          to.push(addr(arg.replace(/^TO:/i, '')));
          send('250 2.1.5 OK');
          break;
        case 'DATA':
          if (!to.length) { send('503 5.5.1 RCPT first'); break; }
          mode = 'data';
          dataLines = [];
          send('354 End data with <CR><LF>.<CR><LF>');
          break;
        case 'RSET':
          reset();
          send('250 2.0.0 OK');
          break;
        case 'NOOP':
          send('250 2.0.0 OK');
          break;
        case 'VRFY':
          send('252 2.0.0 Cannot VRFY user');
          break;
        case 'QUIT':
          send('221 2.0.0 Bye');
          sock.end();
          break;
        case '':
          break;
        default:
          send('502 5.5.2 Command not recognized');
      }
    };

    sock.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        onLine(line);
      }
    });
    send(`220 ${host} ESMTP basalt-test-smtp`);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;

  /**
   * Resolves with the first message matching `predicate`, looking at
   * messages received from index `since` on (already received or future).
   */
  function waitForMail(predicate = () => true, timeoutMs = 5000, since = 0) {
    const find = () => messages.slice(since).find(predicate);
    const found = find();
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = find();
        if (!m) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(m);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching mail within ${timeoutMs} ms (got ${messages.length}: ${JSON.stringify(messages.map((m) => ({ to: m.to, subject: m.subject })))})`));
      }, timeoutMs);
      waiters.add(check);
    });
  }

  /** All messages sent to `email` (lower-cased compare). */
  function mailsTo(email) {
    const e = email.toLowerCase();
    return messages.filter((m) => m.to.includes(e));
  }

  return {
    host,
    port: actualPort,
    messages,
    waitForMail,
    /**
     * Wait for a mail to `email` whose subject matches `subjectRe` (optional),
     * received at message index `since` or later (see `mark()`).
     */
    waitForMailTo(email, subjectRe, { timeoutMs = 5000, since = 0 } = {}) {
      const e = email.toLowerCase();
      return waitForMail((m) => m.to.includes(e) && (!subjectRe || subjectRe.test(m.subject)), timeoutMs, since);
    },
    /** The current message count, to pass as `since` later. */
    mark() { return messages.length; },
    mailsTo,
    clear() { messages.length = 0; },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Point the server under test at `smtp` (superuser client `su`). Also sets
 * meta.appURL to `appURL` (default: the server's own base URL). Returns the
 * previous {smtp, meta} settings so they can be restored.
 */
export async function configureSmtp(su, smtp, appURL = su.baseURL) {
  const prev = await su.settings.getAll();
  await su.settings.update({
    smtp: { enabled: true, host: '127.0.0.1', port: smtp.port, tls: false, username: '', password: '' },
    meta: { appURL },
  });
  return { smtp: prev.smtp, meta: { appURL: prev.meta?.appURL } };
}
