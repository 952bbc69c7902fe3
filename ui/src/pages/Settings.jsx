// Settings: one tab per section of the settings document (`GET/PATCH /api/settings`), the whole
// document as JSON, and the import/export of collections. Each form edits a copy of its sections and
// saves only them; the server's field errors (dotted paths such as `smtp.host`) go under their field.
import { useEffect, useState } from 'preact/hooks';
import { errorText, pb, SUPERUSERS, fieldErrors } from '../api.js';
import { go, href } from '../router.js';
import { Action, ErrorBox, Field, Tabs, toast, useAsync } from '../ui.jsx';

const TABS = [
  ['application', 'Application'],
  ['mail', 'Mail'],
  ['storage', 'Files storage'],
  ['backups', 'Backups'],
  ['rate-limits', 'Rate limits'],
  ['proxy', 'Trusted proxy'],
  ['batch', 'Batch'],
  ['logs', 'Logs'],
  ['superusers', 'Superuser IPs'],
  ['collections', 'Import/export collections'],
  ['json', 'JSON'],
];

// ---- paths in the settings document
const getPath = (o, p) => p.split('.').reduce((x, k) => (x == null ? undefined : x[k]), o);
function setPath(o, p, v) {
  const keys = p.split('.');
  const out = Array.isArray(o) ? [...o] : { ...o };
  let cur = out;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    cur[k] = Array.isArray(next) ? [...next] : { ...(next || {}) };
    cur = cur[k];
  }
  cur[keys[keys.length - 1]] = v;
  return out;
}
function delPath(o, p) {
  const keys = p.split('.');
  const parent = getPath(o, keys.slice(0, -1).join('.'));
  if (parent && typeof parent === 'object') delete parent[keys[keys.length - 1]];
}
// The error body's `data` as dotted paths: {"rateLimits":{"rules":{"0":{"label":{message}}}}} → "rateLimits.rules.0.label".
const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

export function Settings({ tab = 'application' }) {
  const loaded = useAsync(() => pb.settings.getAll(), []);
  const [settings, setSettings] = useState(null);
  useEffect(() => { if (loaded.data) setSettings(loaded.data); }, [loaded.data]);
  const current = TABS.some(([k]) => k === tab) ? tab : 'application';
  const section = SECTIONS[current];
  // On a narrow screen the tab strip scrolls: keep the current tab in sight.
  useEffect(() => { document.querySelector('.tabs [aria-selected="true"]')?.scrollIntoView({ block: 'nearest', inline: 'nearest' }); }, [current]);

  return (
    <>
      <div class="page-head"><h1>Settings</h1></div>
      <Tabs tabs={TABS} value={current} onChange={(k) => go(`settings/${k}`)} />
      <ErrorBox error={loaded.error} />
      {current === 'collections' && <ImportExport />}
      {current === 'json' && settings && <JsonSettings key={JSON.stringify(settings)} settings={settings} onSaved={setSettings} />}
      {section && settings && (
        <SectionForm key={current} title={section.title} intro={section.intro} settings={settings} keys={section.keys}
          fields={section.fields} secrets={section.secrets || []} onSaved={setSettings} extra={section.extra} />
      )}
      {!settings && !loaded.error && current !== 'collections' && <p class="muted">Loading…</p>}
    </>
  );
}

// ---- field specs per section: {path, label, type, hint, options}; an array is one row of fields
const s3Fields = (p) => [
  { path: `${p}.enabled`, label: 'Use S3 storage', type: 'check' },
  [
    { path: `${p}.bucket`, label: 'Bucket' },
    { path: `${p}.region`, label: 'Region' },
  ],
  { path: `${p}.endpoint`, label: 'Endpoint', type: 'url', hint: 'e.g. https://s3.eu-central-1.amazonaws.com' },
  [
    { path: `${p}.accessKey`, label: 'Access key', autocomplete: 'off' },
    { path: `${p}.secret`, label: 'Secret', type: 'secret' },
  ],
  { path: `${p}.forcePathStyle`, label: 'Force path-style addressing', type: 'check', hint: 'Needed by most self-hosted S3 servers (MinIO, Garage, SeaweedFS).' },
];

const LEVELS = [[-4, 'DEBUG (-4)'], [0, 'INFO (0)'], [4, 'WARN (4)'], [8, 'ERROR (8)']];

const SECTIONS = {
  application: {
    title: 'Application',
    keys: ['meta'],
    fields: [
      [
        { path: 'meta.appName', label: 'Application name' },
        { path: 'meta.appURL', label: 'Application URL', type: 'url', hint: 'Used in links of emails.' },
      ],
      [
        { path: 'meta.senderName', label: 'Sender name' },
        { path: 'meta.senderAddress', label: 'Sender address', type: 'email' },
      ],
      { path: 'meta.hideControls', label: 'Hide collection create and edit controls', type: 'check', optional: true },
    ],
  },
  mail: {
    title: 'Mail (SMTP)',
    intro: 'Without SMTP, mail goes to the server log instead of being sent.',
    keys: ['smtp'],
    secrets: ['smtp.password'],
    fields: [
      { path: 'smtp.enabled', label: 'Send mail through an SMTP server', type: 'check' },
      [
        { path: 'smtp.host', label: 'SMTP host' },
        { path: 'smtp.port', label: 'Port', type: 'number' },
      ],
      [
        { path: 'smtp.username', label: 'SMTP username', autocomplete: 'off' },
        { path: 'smtp.password', label: 'SMTP password', type: 'secret' },
      ],
      [
        {
          path: 'smtp.authMethod', label: 'Auth method', type: 'select',
          options: [['', 'Default (PLAIN)'], ['PLAIN', 'PLAIN'], ['LOGIN', 'LOGIN']],
        },
        { path: 'smtp.localName', label: 'Local name (HELO)', hint: 'Default: localhost' },
      ],
      { path: 'smtp.tls', label: 'Use implicit TLS (usually port 465); otherwise STARTTLS when offered', type: 'check' },
    ],
    extra: () => <TestEmail />,
  },
  storage: {
    title: 'Files storage',
    intro: 'Uploaded files are kept in the data directory, or in an S3 bucket.',
    keys: ['s3'],
    secrets: ['s3.secret'],
    fields: s3Fields('s3'),
    extra: () => <TestS3 filesystem="storage" />,
  },
  backups: {
    title: 'Backups',
    keys: ['backups'],
    secrets: ['backups.s3.secret'],
    fields: [
      [
        {
          path: 'backups.cron', label: 'Automatic backups (cron, UTC)', type: 'cron',
          hint: 'Five fields or a macro such as @daily; empty turns automatic backups off.',
        },
        { path: 'backups.cronMaxKeep', label: 'Automatic backups to keep', type: 'number' },
      ],
      { heading: 'Store backups in S3' },
      ...s3Fields('backups.s3'),
    ],
    extra: () => <TestS3 filesystem="backups" />,
  },
  'rate-limits': {
    title: 'Rate limits',
    keys: ['rateLimits'],
    fields: [
      { path: 'rateLimits.enabled', label: 'Enable rate limits', type: 'check' },
      { custom: 'rateLimits.rules', render: (f) => <RulesTable f={f} /> },
      {
        path: 'rateLimits.excludedIPs', label: 'Excluded IPs or networks (one per line)', type: 'list',
        hint: 'Clients never rate limited, e.g. 10.0.0.0/8.',
      },
    ],
  },
  proxy: {
    title: 'Trusted proxy',
    intro: 'Behind a reverse proxy, the client IP is read from the headers it sets. Leave empty when clients connect directly.',
    keys: ['trustedProxy'],
    fields: [
      {
        path: 'trustedProxy.headers', label: 'Client IP headers (one per line)', type: 'list',
        hint: 'e.g. X-Forwarded-For, X-Real-IP, CF-Connecting-IP, Fly-Client-IP',
      },
      {
        path: 'trustedProxy.useLeftmostIP', label: 'Use the leftmost IP of X-Forwarded-For (instead of the rightmost)', type: 'check',
        hint: 'Only when every proxy in front of the server overwrites the header; the leftmost value can be forged.',
      },
    ],
  },
  batch: {
    title: 'Batch API',
    intro: 'POST /api/batch runs several record requests in one transaction.',
    keys: ['batch'],
    fields: [
      { path: 'batch.enabled', label: 'Enable the batch API', type: 'check' },
      [
        { path: 'batch.maxRequests', label: 'Max requests per batch', type: 'number' },
        { path: 'batch.timeout', label: 'Timeout (seconds)', type: 'number' },
        { path: 'batch.maxBodySize', label: 'Max body size (bytes, 0: default)', type: 'number' },
      ],
    ],
  },
  logs: {
    title: 'Request logs',
    keys: ['logs'],
    fields: [
      [
        { path: 'logs.maxDays', label: 'Days to keep logs', type: 'number', hint: '0 turns request logging off.' },
        { path: 'logs.minLevel', label: 'Minimum level', type: 'select', numeric: true, options: LEVELS },
      ],
      { path: 'logs.maxDataSize', label: 'Max data size (0: no limit)', type: 'number', optional: true },
      { path: 'logs.logIP', label: 'Log the client IP', type: 'check' },
      { path: 'logs.logAuthId', label: 'Log the id of the authenticated record', type: 'check' },
    ],
  },
  superusers: {
    title: 'Superuser IPs',
    intro: 'When set, superusers can only act from these addresses. Include your own, or you lock yourself out.',
    keys: ['superuserIPs'],
    fields: [
      { path: 'superuserIPs', label: 'Allowed IPs or networks (one per line)', type: 'list', hint: 'e.g. 203.0.113.7 or 10.0.0.0/8; empty allows any.' },
    ],
  },
};

// ---- one section's form
function SectionForm({ title, intro, settings, keys, fields, secrets, onSaved, extra }) {
  const pick = (s) => clone(Object.fromEntries(keys.map((k) => [k, s[k]])));
  const [draft, setDraft] = useState(() => pick(settings));
  const [errors, setErrors] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const base = pick(settings);
  const dirty = JSON.stringify(draft) !== JSON.stringify(base);

  const f = {
    draft,
    get: (p) => getPath(draft, p),
    set: (p, v) => setDraft((d) => setPath(d, p, v)),
    err: (p) => errors[p],
    errsUnder: (p) => Object.entries(errors).filter(([k]) => k.startsWith(`${p}.`)),
  };
  const save = async (e) => {
    e.preventDefault();
    setBusy(true); setError(null); setErrors({});
    try {
      const body = clone(draft);
      // Write-only secrets: sent only when a new value was typed.
      for (const p of secrets) if (!getPath(body, p)) delPath(body, p);
      const saved = await pb.settings.update(body);
      onSaved(saved);
      setDraft(pick(saved));
      toast('Settings saved');
    } catch (err) {
      setError(err);
      setErrors(fieldErrors(err));
    } finally {
      setBusy(false);
    }
  };

  // Errors no field of this form shows (so none is lost).
  const shown = new Set();
  const collect = (list) => list.forEach((x) => (Array.isArray(x) ? collect(x) : (x.path || x.custom) && shown.add(x.path || x.custom)));
  collect(fields);
  const stray = Object.entries(errors).filter(([k]) => ![...shown].some((p) => k === p || k.startsWith(`${p}.`)));

  return (
    <>
    <form class="panel" onSubmit={save} aria-label={`${title} settings`} novalidate>
      <h2>{title}</h2>
      {intro && <p class="muted">{intro}</p>}
      {fields.map((x) => <SpecRow spec={x} f={f} />)}
      {error && (
        <div class="alert error" role="alert">
          {errorText(error)}
          {stray.length > 0 && <ul>{stray.map(([k, m]) => <li><code>{k}</code>: {m}</li>)}</ul>}
        </div>
      )}
      <div class="toolbar">
        <button type="submit" class="primary" disabled={busy || !dirty}>{busy ? 'Saving…' : 'Save changes'}</button>
        {dirty && <button type="button" class="link" onClick={() => { setDraft(base); setErrors({}); setError(null); }}>Reset</button>}
      </div>
    </form>
    {extra && extra()}
    </>
  );
}

function SpecRow({ spec, f }) {
  if (Array.isArray(spec)) return <div class="row">{spec.map((s) => <SpecRow spec={s} f={f} />)}</div>;
  if (spec.heading) return <h3>{spec.heading}</h3>;
  if (spec.custom) return spec.render(f);
  if (spec.optional && f.get(spec.path) === undefined) return null;
  return <SpecField spec={spec} f={f} />;
}

function SpecField({ spec, f }) {
  const { path, label, type = 'text', hint, options } = spec;
  const v = f.get(path);
  let error = f.err(path);
  const set = (x) => f.set(path, x);
  if (type === 'check') {
    // An inline field puts its hint before the label: the hint goes under it instead.
    return (
      <>
        <Field label={label} error={error} inline>
          <input type="checkbox" name={path} checked={!!v} onChange={(e) => set(e.currentTarget.checked)} />
        </Field>
        {hint && <p class="muted" style={{ margin: '-8px 0 10px 24px', fontSize: '12px' }}>{hint}</p>}
      </>
    );
  }
  let input;
  if (type === 'number') {
    input = <input type="number" name={path} min="0" value={v ?? ''} onInput={(e) => set(numOrNull(e.currentTarget.value))} />;
  } else if (type === 'select') {
    const opts = options.some(([k]) => k === v) || v === undefined ? options : [...options, [v, String(v)]];
    input = (
      <select name={path} value={String(v ?? '')} onChange={(e) => set(spec.numeric ? Number(e.currentTarget.value) : e.currentTarget.value)}>
        {opts.map(([k, l]) => <option value={String(k)}>{l}</option>)}
      </select>
    );
  } else if (type === 'secret') {
    input = (
      <input type="password" name={path} autocomplete="new-password" placeholder="•••••• unchanged" value={v || ''}
        onInput={(e) => set(e.currentTarget.value)} />
    );
  } else if (type === 'list') {
    const under = f.errsUnder(path);
    if (!error && under.length) error = under.map(([k, m]) => `line ${Number(k.slice(path.length + 1)) + 1}: ${m}`).join(' ');
    input = <ListInput name={path} value={v || []} onChange={set} />;
  } else if (type === 'cron') {
    input = <CronInput name={path} value={v || ''} onChange={set} />;
  } else {
    input = <input type={type === 'email' ? 'email' : type === 'url' ? 'url' : 'text'} name={path} autocomplete={spec.autocomplete} value={v ?? ''} onInput={(e) => set(e.currentTarget.value)} />;
  }
  return <Field label={label} error={error} hint={hint || (type === 'secret' ? 'Write-only: leave empty to keep the stored value.' : undefined)}>{input}</Field>;
}

const numOrNull = (t) => (t === '' ? null : Number(t));

// A list of strings edited as lines; the text is kept as typed, the value has no blank lines.
function ListInput({ name, value, onChange }) {
  const [text, setText] = useState(value.join('\n'));
  useEffect(() => {
    const lines = text.split('\n').map((s) => s.trim()).filter(Boolean);
    if (JSON.stringify(lines) !== JSON.stringify(value)) setText(value.join('\n'));
  }, [JSON.stringify(value)]);
  return (
    <textarea name={name} rows={3} class="mono" value={text} onInput={(e) => {
      const t = e.currentTarget.value;
      setText(t);
      onChange(t.split('\n').map((s) => s.trim()).filter(Boolean));
    }} />
  );
}

const CRON_PRESETS = [['', 'Off'], ['0 0 * * *', 'Every day at 00:00'], ['0 */6 * * *', 'Every 6 hours'], ['0 0 * * 0', 'Every Sunday'], ['0 0 1 * *', 'Every month']];
function CronInput({ name, value, onChange }) {
  return (
    <div class="row" style={{ flexWrap: 'nowrap' }}>
      <input name={name} class="mono" placeholder="0 0 * * *" value={value} onInput={(e) => onChange(e.currentTarget.value)} />
      <select aria-label="Cron presets" style={{ width: 'auto' }} value={CRON_PRESETS.some(([k]) => k === value) ? value : 'custom'} onChange={(e) => e.currentTarget.value !== 'custom' && onChange(e.currentTarget.value)}>
        {CRON_PRESETS.map(([k, l]) => <option value={k}>{l}</option>)}
        <option value="custom" disabled>Custom</option>
      </select>
    </div>
  );
}

// ---- rate limit rules: label, audience, duration, max requests
const AUDIENCES = [['', 'Everyone'], ['@guest', 'Guests only'], ['@auth', 'Signed-in only']];
function RulesTable({ f }) {
  const rules = f.get('rateLimits.rules') || [];
  const setRule = (i, k, v) => f.set('rateLimits.rules', rules.map((r, j) => (j === i ? { ...r, [k]: v } : r)));
  const err = (i, k) => f.err(`rateLimits.rules.${i}.${k}`);
  const cell = (i, k, input) => (
    <td>
      <div class={`field ${err(i, k) ? 'invalid' : ''}`} style={{ margin: 0, minWidth: { label: '160px', audience: '130px' }[k] || '90px' }}>
        {input}
        {err(i, k) && <span class="error" role="alert">{err(i, k)}</span>}
      </div>
    </td>
  );
  return (
    <div class="field">
      <span class="label">Rules</span>
      <span class="hint">Label: a path (<code>/api/</code>), a method and path (<code>POST /api/batch</code>) or a tag (<code>posts:create</code>, <code>*:auth</code>). The most specific rule applies.</span>
      <div class="table-wrap">
        <table aria-label="Rate limit rules">
          <thead><tr><th>Label</th><th>Audience</th><th>Duration (s)</th><th>Max requests</th><th><span class="muted">Remove</span></th></tr></thead>
          <tbody>
            {rules.map((r, i) => (
              <tr>
                {cell(i, 'label', <input aria-label={`Rule ${i + 1} label`} class="mono" value={r.label ?? ''} onInput={(e) => setRule(i, 'label', e.currentTarget.value)} />)}
                {cell(i, 'audience', (
                  <select aria-label={`Rule ${i + 1} audience`} value={r.audience ?? ''} onChange={(e) => setRule(i, 'audience', e.currentTarget.value)}>
                    {AUDIENCES.map(([k, l]) => <option value={k}>{l}</option>)}
                  </select>
                ))}
                {cell(i, 'duration', <input type="number" min="1" aria-label={`Rule ${i + 1} duration`} value={r.duration ?? ''} onInput={(e) => setRule(i, 'duration', numOrNull(e.currentTarget.value))} />)}
                {cell(i, 'maxRequests', <input type="number" min="1" aria-label={`Rule ${i + 1} max requests`} value={r.maxRequests ?? ''} onInput={(e) => setRule(i, 'maxRequests', numOrNull(e.currentTarget.value))} />)}
                <td><button type="button" class="small danger" aria-label={`Remove rule ${i + 1}`} onClick={() => f.set('rateLimits.rules', rules.filter((_, j) => j !== i))}>Remove</button></td>
              </tr>
            ))}
            {!rules.length && <tr><td colSpan={5} class="muted">No rules.</td></tr>}
          </tbody>
        </table>
      </div>
      <div>
        <button type="button" class="small" onClick={() => f.set('rateLimits.rules', [...rules, { label: '', audience: '', duration: 10, maxRequests: 100 }])}>+ Add rule</button>
      </div>
    </div>
  );
}

// ---- tests of the saved settings
const TEMPLATES = [['verification', 'Verification'], ['password-reset', 'Password reset'], ['email-change', 'Email change'], ['otp', 'One-time password'], ['login-alert', 'Login alert']];
function TestEmail() {
  const [email, setEmail] = useState(pb.authStore.record?.email || '');
  const [template, setTemplate] = useState('verification');
  const [error, setError] = useState(null);
  const errs = fieldErrors(error);
  const send = async () => {
    setError(null);
    try {
      await pb.settings.testEmail(SUPERUSERS, email, template);
      toast(`Test email sent to ${email}`);
    } catch (e) { setError(e); }
  };
  return (
    <section class="panel" aria-label="Send test email">
      <h2>Send test email</h2>
      <p class="muted">Sends with the saved settings: save your changes first.</p>
      <div class="row">
        <Field label="Test recipient" error={errs.email}>
          <input type="email" name="testEmail" value={email} onInput={(e) => setEmail(e.currentTarget.value)}
            onKeyDown={(e) => { if (e.key === 'Enter') { e.preventDefault(); send(); } }} />
        </Field>
        <Field label="Template" error={errs.template}>
          <select name="testTemplate" value={template} onChange={(e) => setTemplate(e.currentTarget.value)}>
            {TEMPLATES.map(([k, l]) => <option value={k}>{l}</option>)}
          </select>
        </Field>
      </div>
      {error && !errs.email && !errs.template && <ErrorBox error={error} />}
      <Action class="primary" run={send}>Send test email</Action>
    </section>
  );
}

function TestS3({ filesystem }) {
  const [result, setResult] = useState(null); // null | 'ok' | error
  return (
    <section class="panel" aria-label={`Test the ${filesystem} S3 connection`}>
      <h2>Test the S3 connection</h2>
      <p class="muted">Writes and deletes a small file in the saved bucket: save your changes first.</p>
      {result === 'ok' && <div class="alert ok" role="status">The S3 connection works.</div>}
      {result && result !== 'ok' && <ErrorBox error={result} />}
      <Action aria-label={`Test ${filesystem} S3 connection`} run={async () => {
        setResult(null);
        try {
          await pb.settings.testS3(filesystem);
          setResult('ok');
        } catch (e) {
          setResult(e);
        }
      }}>Test connection</Action>
    </section>
  );
}

// ---- the whole document as JSON
function JsonSettings({ settings, onSaved }) {
  const [text, setText] = useState(() => JSON.stringify(settings, null, 2));
  const [error, setError] = useState(null);
  const [errs, setErrs] = useState({});
  const save = async (e) => {
    e.preventDefault();
    setError(null); setErrs({});
    let body;
    try { body = JSON.parse(text); } catch (err) { setError(`Invalid JSON: ${err.message}`); return; }
    if (!body || typeof body !== 'object' || Array.isArray(body)) { setError('The settings must be a JSON object.'); return; }
    try {
      const saved = await pb.settings.update(body);
      toast('Settings saved');
      onSaved(saved);
    } catch (err) {
      setError(err);
      setErrs(fieldErrors(err));
    }
  };
  return (
    <form class="panel" onSubmit={save} aria-label="Settings document">
      <h2>Settings as JSON</h2>
      <p class="muted">Every key of the settings document. Secrets (<code>smtp.password</code>, <code>s3.secret</code>, <code>backups.s3.secret</code>) are never shown; add them to set a new value. Keys left out are unchanged.</p>
      <Field label="Settings JSON">
        <textarea class="code" name="settingsJson" rows={24} spellcheck={false} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      </Field>
      {error && (
        <div class="alert error" role="alert">
          {typeof error === 'string' ? error : errorText(error)}
          {Object.keys(errs).length > 0 && <ul>{Object.entries(errs).map(([k, m]) => <li><code>{k}</code>: {m}</li>)}</ul>}
        </div>
      )}
      <div class="toolbar">
        <button type="submit" class="primary">Save JSON</button>
        <button type="button" class="link" onClick={() => setText(JSON.stringify(settings, null, 2))}>Reset</button>
      </div>
    </form>
  );
}

// ---- collections import/export
function exportable(list) {
  return list.map((c) => {
    const x = { ...c };
    delete x.created;
    delete x.updated;
    return x;
  });
}

function ImportExport() {
  const list = useAsync(() => pb.collections.getFullList({ sort: 'created' }), []);
  const json = list.data ? JSON.stringify(exportable(list.data), null, 2) : '';
  const download = () => {
    const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `pb_schema_${new Date().toISOString().slice(0, 10)}.json`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  return (
    <>
      <section class="panel" aria-label="Export collections">
        <h2>Export collections</h2>
        <p class="muted">The schema of every collection (fields, rules, indexes, options), for import into another Basalt or PocketBase.</p>
        <ErrorBox error={list.error} />
        <div class="toolbar">
          <button type="button" class="primary" disabled={!list.data} onClick={download}>Download JSON</button>
          <button type="button" disabled={!list.data} onClick={() => navigator.clipboard?.writeText(json).then(() => toast('Copied'), () => toast('Copy failed', 'error'))}>Copy</button>
          <span class="muted">{list.data ? `${list.data.length} collections` : ''}</span>
        </div>
        <Field label="Exported collections JSON">
          <textarea class="code" name="exportJson" readOnly rows={10} value={json} spellcheck={false} />
        </Field>
      </section>
      <ImportPanel current={list.data || []} onDone={list.reload} />
    </>
  );
}

function ImportPanel({ current, onDone }) {
  const [text, setText] = useState('');
  const [deleteMissing, setDeleteMissing] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  let parsed = null;
  let parseError = '';
  if (text.trim()) {
    try {
      parsed = JSON.parse(text);
      if (!Array.isArray(parsed)) { parsed = null; parseError = 'Expected a JSON array of collections.'; }
    } catch (e) { parseError = `Invalid JSON: ${e.message}`; }
  }
  const names = new Set((parsed || []).map((c) => c?.name));
  const ids = new Set((parsed || []).map((c) => c?.id));
  const known = new Set(current.flatMap((c) => [c.id, c.name]));
  const added = (parsed || []).filter((c) => !known.has(c?.id) && !known.has(c?.name));
  // System collections are never deleted by an import.
  const missing = current.filter((c) => !c.system && !ids.has(c.id) && !names.has(c.name));

  const readFile = async (e) => {
    const file = e.currentTarget.files?.[0];
    if (file) setText(await file.text());
    e.currentTarget.value = '';
  };
  const run = async (e) => {
    e.preventDefault();
    if (!parsed) return;
    if (deleteMissing && missing.length && !confirm(`Delete ${missing.length} collection(s) missing from the import (${missing.map((c) => c.name).join(', ')}) and their records?`)) return;
    setBusy(true); setError(null);
    try {
      await pb.collections.import(parsed, deleteMissing);
      toast('Collections imported');
      setText('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const errs = fieldErrors(error);
  return (
    <form class="panel" onSubmit={run} aria-label="Import collections">
      <h2>Import collections</h2>
      <Field label="Collections JSON to import" error={parseError} hint="Paste an export, or load it from a file.">
        <textarea class="code" name="importJson" rows={10} spellcheck={false} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      </Field>
      <Field label="Load from a file"><input type="file" name="importFile" accept=".json,application/json" onChange={readFile} /></Field>
      <Field label="Delete collections and fields missing from the import" inline>
        <input type="checkbox" name="deleteMissing" checked={deleteMissing} onChange={(e) => setDeleteMissing(e.currentTarget.checked)} />
      </Field>
      {parsed && (
        <p class="muted">
          {parsed.length} collections: {added.length} new, {parsed.length - added.length} to update
          {deleteMissing && missing.length > 0 && <>, <b class="badge bad">{missing.length} to delete: {missing.map((c) => c.name).join(', ')}</b></>}.
        </p>
      )}
      {error && (
        <div class="alert error" role="alert">
          {errorText(error)}
          {Object.keys(errs).length > 0 && <ul>{Object.entries(errs).map(([k, m]) => <li><code>{k}</code>: {m}</li>)}</ul>}
        </div>
      )}
      <div class="toolbar">
        <button type="submit" class="primary" disabled={!parsed || busy}>{busy ? 'Importing…' : 'Import collections'}</button>
        <a href={href('collections')}>Back to collections</a>
      </div>
    </form>
  );
}
