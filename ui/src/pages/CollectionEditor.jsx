// Create or edit a collection: fields (every type and its options, pii), API rules (the server checks
// them on save; its message shows next to the rule), indexes, view query, auth options.
import { useEffect, useState } from 'preact/hooks';
import { errorText, fieldErrors, pb } from '../api.js';
import { Action, ErrorBox, Field, Modal, Tabs, toast } from '../ui.jsx';

const TYPES = ['text', 'number', 'bool', 'email', 'url', 'editor', 'date', 'autodate', 'select', 'json', 'file', 'relation', 'geoPoint'];
const PII_TYPES = new Set(['text', 'email', 'number', 'date', 'json', 'editor']);
const RULES = [
  ['listRule', 'List/Search'], ['viewRule', 'View'], ['createRule', 'Create'], ['updateRule', 'Update'], ['deleteRule', 'Delete'],
];
const AUTH_RULES = [['authRule', 'Authentication'], ['manageRule', 'Manage']];
const TEMPLATES = [
  ['verificationTemplate', 'Verification email'], ['resetPasswordTemplate', 'Password reset email'],
  ['confirmEmailChangeTemplate', 'Email change email'],
];

const clone = (x) => JSON.parse(JSON.stringify(x));
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export function CollectionEditor({ collection, collections, onClose, onSaved }) {
  const isNew = !collection;
  const [c, setC] = useState(() => (collection ? clone(collection) : null));
  const [tab, setTab] = useState('fields');
  const [errors, setErrors] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [scaffolds, setScaffolds] = useState(null);

  useEffect(() => {
    if (!isNew) return;
    pb.send('/api/collections/meta/scaffolds', {}).then((s) => {
      setScaffolds(s);
      setC({ ...clone(s.base), name: '' });
    }, setError);
  }, []);
  if (!c) return <Modal title="New collection" onClose={onClose}><ErrorBox error={error} /><p class="muted">Loading…</p></Modal>;

  const up = (patch) => setC((x) => ({ ...x, ...patch }));
  const setType = (type) => {
    const base = clone(scaffolds[type]);
    // Keep what the user typed: the name and fields they added.
    const own = c.fields.filter((f) => !f.system);
    setC({ ...base, name: c.name, fields: [...base.fields.filter((f) => f.system), ...own.filter((f) => !base.fields.some((b) => b.name === f.name))] });
  };
  const setField = (i, patch) => setC((x) => ({ ...x, fields: x.fields.map((f, j) => (j === i ? { ...f, ...patch } : f)) }));
  const addField = (type) => {
    const names = new Set(c.fields.map((f) => f.name));
    let n = 1; while (names.has(`field${n}`)) n++;
    const f = { name: `field${n}`, type, required: false, hidden: false, presentable: false, system: false };
    if (type === 'select') Object.assign(f, { values: [], maxSelect: 1 });
    if (type === 'relation') Object.assign(f, { collectionId: '', maxSelect: 1, cascadeDelete: false });
    if (type === 'file') Object.assign(f, { maxSelect: 1, maxSize: 5242880, mimeTypes: [], thumbs: [], protected: false });
    if (type === 'autodate') Object.assign(f, { onCreate: true, onUpdate: false });
    setC({ ...c, fields: [...c.fields, f] });
    setTab('fields');
  };
  const removeField = (i) => setC({ ...c, fields: c.fields.filter((_, j) => j !== i) });
  const move = (i, d) => {
    const fs = [...c.fields]; const j = i + d;
    if (j < 0 || j >= fs.length) return;
    [fs[i], fs[j]] = [fs[j], fs[i]];
    setC({ ...c, fields: fs });
  };

  const save = async (e) => {
    e?.preventDefault();
    setBusy(true); setErrors({}); setError(null);
    try {
      const body = clone(c);
      const saved = isNew ? await pb.collections.create(body) : await pb.collections.update(collection.id, body);
      toast(isNew ? `Collection ${saved.name} created` : `Collection ${saved.name} saved`);
      onSaved(saved);
    } catch (err) {
      const fe = fieldErrors(err);
      setErrors(fe); setError(err);
      // Show the tab that holds the first error.
      const k = Object.keys(fe)[0] || '';
      if (/Rule$/.test(k)) setTab('rules');
      else if (k.startsWith('indexes')) setTab('indexes');
      else if (k === 'viewQuery') setTab('query');
      else if (/^(passwordAuth|oauth2|otp|mfa|authToken|verificationTemplate|resetPasswordTemplate|confirmEmailChangeTemplate)/.test(k)) setTab('auth');
      else if (k.startsWith('fields')) setTab('fields');
    } finally { setBusy(false); }
  };
  const remove = async () => {
    await pb.collections.delete(collection.id);
    toast(`Collection ${collection.name} deleted`);
    onSaved(null, true);
  };
  const truncate = async () => {
    await pb.collections.truncate(collection.id);
    toast(`All ${collection.name} records deleted`);
    onSaved(collection);
  };

  const tabs = [['fields', `Fields (${c.fields.length})`], ['rules', 'API rules'], ['indexes', 'Indexes']];
  if (c.type === 'view') tabs.splice(0, 1, ['query', 'View query']);
  if (c.type === 'auth') tabs.push(['auth', 'Auth options']);
  const unexplained = error && !Object.keys(errors).some((k) => k !== 'name' && k !== 'type') ? null : error;

  const footer = (
    <>
      {!isNew && !c.system && <Action class="danger" run={remove} confirm={`Delete the collection "${collection.name}" and all its records?`}>Delete collection</Action>}
      {!isNew && c.type !== 'view' && <Action class="danger" run={truncate} confirm={`Delete all records of "${collection.name}"?`}>Truncate</Action>}
      <span class="grow" />
      <button type="button" onClick={onClose}>Cancel</button>
      <button type="submit" form="collection-form" class="primary" disabled={busy}>{isNew ? 'Create' : 'Save changes'}</button>
    </>
  );
  return (
    <Modal title={isNew ? 'New collection' : `Edit ${collection.name}`} onClose={onClose} footer={footer} wide>
      <form id="collection-form" onSubmit={save}>
        <ErrorBox error={unexplained ? errorText(unexplained) : (error ? `${errorText(error)} See the messages below.` : null)} />
        <div class="row">
          <Field label="Name" error={errors.name}><input name="name" required value={c.name} disabled={c.system} onInput={(e) => up({ name: e.currentTarget.value })} /></Field>
          <Field label="Type" error={errors.type}>
            <select name="type" value={c.type} disabled={!isNew} onChange={(e) => setType(e.currentTarget.value)}>
              <option value="base">Base</option><option value="auth">Auth</option><option value="view">View</option>
            </select>
          </Field>
        </div>
        <Tabs tabs={tabs} value={tab} onChange={setTab} />
        {tab === 'fields' && (
          <div>
            <div class="fields-list">
              {c.fields.map((f, i) => (
                <FieldCard key={f.id || `new${i}`} f={f} i={i} collections={collections} self={c} errors={errors}
                  onChange={(p) => setField(i, p)} onRemove={() => removeField(i)} onMove={(d) => move(i, d)} />
              ))}
            </div>
            {c.type !== 'view' && (
              <div class="row" style={{ marginTop: '10px', alignItems: 'center' }}>
                <span class="muted">Add field:</span>
                {TYPES.map((t) => <button type="button" class="small" onClick={() => addField(t)}>+ {t}</button>)}
              </div>
            )}
          </div>
        )}
        {tab === 'query' && (
          <Field label="SELECT query" error={errors.viewQuery} hint="The fields are inferred from the query's columns; each must be a column or an expression in parentheses with an alias.">
            <textarea class="code" name="viewQuery" value={c.viewQuery || ''} onInput={(e) => up({ viewQuery: e.currentTarget.value })} />
          </Field>
        )}
        {tab === 'rules' && (
          <div>
            <p class="muted">Empty: anyone. Superusers only: no rule (null). Otherwise a filter, e.g. <code>@request.auth.id != ""</code>.</p>
            {[...RULES.filter(([k]) => c.type !== 'view' || k === 'listRule' || k === 'viewRule'), ...(c.type === 'auth' ? AUTH_RULES : [])].map(([k, label]) => (
              <Rule key={k} name={k} label={label} value={c[k]} error={errors[k]} onChange={(v) => up({ [k]: v })} />
            ))}
          </div>
        )}
        {tab === 'indexes' && (
          <div>
            {(c.indexes || []).map((ix, i) => (
              <div class="row" style={{ alignItems: 'center' }}>
                <Field label={`Index ${i + 1}`} error={errors[`indexes.${i}`]}>
                  <input class="mono" value={ix} onInput={(e) => up({ indexes: c.indexes.map((x, j) => (j === i ? e.currentTarget.value : x)) })} />
                </Field>
                <button type="button" class="small danger" aria-label={`Remove index ${i + 1}`} onClick={() => up({ indexes: c.indexes.filter((_, j) => j !== i) })}>Remove</button>
              </div>
            ))}
            <button type="button" class="small" onClick={() => up({ indexes: [...(c.indexes || []), `CREATE INDEX \`idx_${c.name || 'name'}_${(c.indexes || []).length + 1}\` ON \`${c.name}\` (\`\`)`] })}>+ Add index</button>
            {errors.indexes && <p class="error">{errors.indexes}</p>}
          </div>
        )}
        {tab === 'auth' && <AuthOptions c={c} up={up} errors={errors} />}
      </form>
    </Modal>
  );
}

function Rule({ name, label, value, error, onChange }) {
  const locked = value === null || value === undefined;
  return (
    <div class="rule">
      <Field label={`${label} rule`} error={error}>
        <textarea name={name} aria-label={`${label} rule`} disabled={locked} placeholder={locked ? 'Superusers only' : 'Anyone (empty rule)'} value={locked ? '' : value} onInput={(e) => onChange(e.currentTarget.value)} />
      </Field>
      <label class="field inline" style={{ marginTop: '-6px' }}>
        <input type="checkbox" checked={locked} onChange={(e) => onChange(e.currentTarget.checked ? null : '')} />
        <span class="label">{label}: superusers only</span>
      </label>
    </div>
  );
}

function FieldCard({ f, i, collections, self, errors, onChange, onRemove, onMove }) {
  const [open, setOpen] = useState(!f.id);
  const err = (k) => errors[`fields.${i}.${k}`];
  const anyErr = Object.keys(errors).some((k) => k.startsWith(`fields.${i}.`));
  const num = (k) => (e) => onChange({ [k]: e.currentTarget.value === '' ? (k === 'min' || k === 'max' ? null : 0) : Number(e.currentTarget.value) });
  const view = self.type === 'view';
  return (
    <div class="field-card" data-field={f.name}>
      <div class="row">
        <span class="type">{f.type}</span>
        <Field label="Field name" error={err('name')}>
          <input aria-label={`Field ${i + 1} name`} value={f.name} disabled={f.system || view} onInput={(e) => onChange({ name: e.currentTarget.value })} />
        </Field>
        {!view && <label class="field inline"><input type="checkbox" checked={!!f.required} disabled={f.system && f.name === 'id'} onChange={(e) => onChange({ required: e.currentTarget.checked })} /><span class="label">Required</span></label>}
        {!view && <label class="field inline"><input type="checkbox" checked={!!f.hidden} onChange={(e) => onChange({ hidden: e.currentTarget.checked })} /><span class="label">Hidden</span></label>}
        <label class="field inline"><input type="checkbox" checked={!!f.presentable} onChange={(e) => onChange({ presentable: e.currentTarget.checked })} /><span class="label">Presentable</span></label>
        <span class="grow" />
        <button type="button" class="small" aria-expanded={open || anyErr} aria-label={`Options of ${f.name}`} onClick={() => setOpen(!open)}>Options</button>
        {!view && <button type="button" class="small" aria-label={`Move ${f.name} up`} onClick={() => onMove(-1)}>↑</button>}
        {!f.system && !view && <button type="button" class="small danger" aria-label={`Remove field ${f.name}`} onClick={onRemove}>×</button>}
      </div>
      {(open || anyErr) && !view && (
        <div class="row">
          {['text', 'editor', 'password'].includes(f.type) && <>
            <Field label={f.type === 'editor' ? 'Max size (bytes)' : 'Min length'} error={err(f.type === 'editor' ? 'maxSize' : 'min')}>
              {f.type === 'editor' ? <input type="number" value={f.maxSize ?? ''} onInput={num('maxSize')} /> : <input type="number" value={f.min ?? ''} onInput={num('min')} />}
            </Field>
            {f.type !== 'editor' && <Field label="Max length" error={err('max')}><input type="number" value={f.max ?? ''} onInput={num('max')} /></Field>}
            {f.type !== 'editor' && <Field label="Pattern (regex)" error={err('pattern')}><input class="mono" value={f.pattern || ''} onInput={(e) => onChange({ pattern: e.currentTarget.value })} /></Field>}
            {f.type === 'text' && <Field label="Autogenerate pattern" error={err('autogeneratePattern')}><input class="mono" value={f.autogeneratePattern || ''} onInput={(e) => onChange({ autogeneratePattern: e.currentTarget.value })} /></Field>}
          </>}
          {f.type === 'number' && <>
            <Field label="Min" error={err('min')}><input type="number" step="any" value={f.min ?? ''} onInput={num('min')} /></Field>
            <Field label="Max" error={err('max')}><input type="number" step="any" value={f.max ?? ''} onInput={num('max')} /></Field>
            <label class="field inline"><input type="checkbox" checked={!!f.onlyInt} onChange={(e) => onChange({ onlyInt: e.currentTarget.checked })} /><span class="label">Integers only</span></label>
          </>}
          {['email', 'url'].includes(f.type) && <>
            <Field label="Only domains (comma separated)" error={err('onlyDomains')}><input value={(f.onlyDomains || []).join(', ')} onInput={(e) => onChange({ onlyDomains: list(e.currentTarget.value) })} /></Field>
            <Field label="Except domains" error={err('exceptDomains')}><input value={(f.exceptDomains || []).join(', ')} onInput={(e) => onChange({ exceptDomains: list(e.currentTarget.value) })} /></Field>
          </>}
          {f.type === 'date' && <>
            <Field label="Min" error={err('min')}><input value={f.min || ''} placeholder="2024-01-01 00:00:00.000Z" onInput={(e) => onChange({ min: e.currentTarget.value })} /></Field>
            <Field label="Max" error={err('max')}><input value={f.max || ''} onInput={(e) => onChange({ max: e.currentTarget.value })} /></Field>
          </>}
          {f.type === 'autodate' && <>
            <label class="field inline"><input type="checkbox" checked={!!f.onCreate} onChange={(e) => onChange({ onCreate: e.currentTarget.checked })} /><span class="label">Set on create</span></label>
            <label class="field inline"><input type="checkbox" checked={!!f.onUpdate} onChange={(e) => onChange({ onUpdate: e.currentTarget.checked })} /><span class="label">Set on update</span></label>
          </>}
          {f.type === 'select' && <>
            <Field label="Values (comma separated)" error={err('values')}><input aria-label={`Values of ${f.name}`} value={(f.values || []).join(', ')} onInput={(e) => onChange({ values: list(e.currentTarget.value) })} /></Field>
            <Field label="Max select" error={err('maxSelect')}><input type="number" min="1" value={f.maxSelect || 1} onInput={num('maxSelect')} /></Field>
          </>}
          {f.type === 'json' && <Field label="Max size (bytes)" error={err('maxSize')}><input type="number" value={f.maxSize ?? ''} onInput={num('maxSize')} /></Field>}
          {f.type === 'relation' && <>
            <Field label="Related collection" error={err('collectionId')}>
              <select aria-label={`Related collection of ${f.name}`} value={f.collectionId} onChange={(e) => onChange({ collectionId: e.currentTarget.value })}>
                <option value="">Choose…</option>
                {collections.map((x) => <option value={x.id}>{x.name}</option>)}
              </select>
            </Field>
            <Field label="Min select" error={err('minSelect')}><input type="number" min="0" value={f.minSelect || 0} onInput={num('minSelect')} /></Field>
            <Field label="Max select" error={err('maxSelect')}><input type="number" min="1" value={f.maxSelect || 1} onInput={num('maxSelect')} /></Field>
            <label class="field inline"><input type="checkbox" checked={!!f.cascadeDelete} onChange={(e) => onChange({ cascadeDelete: e.currentTarget.checked })} /><span class="label">Cascade delete</span></label>
          </>}
          {f.type === 'file' && <>
            <Field label="Max files" error={err('maxSelect')}><input type="number" min="1" value={f.maxSelect || 1} onInput={num('maxSelect')} /></Field>
            <Field label="Max size (bytes)" error={err('maxSize')}><input type="number" value={f.maxSize ?? ''} onInput={num('maxSize')} /></Field>
            <Field label="MIME types (comma separated)" error={err('mimeTypes')}><input value={(f.mimeTypes || []).join(', ')} placeholder="image/png, image/jpeg" onInput={(e) => onChange({ mimeTypes: list(e.currentTarget.value) })} /></Field>
            <Field label="Thumb sizes (comma separated)" error={err('thumbs')}><input value={(f.thumbs || []).join(', ')} placeholder="100x100, 0x300" onInput={(e) => onChange({ thumbs: list(e.currentTarget.value) })} /></Field>
            <label class="field inline"><input type="checkbox" checked={!!f.protected} onChange={(e) => onChange({ protected: e.currentTarget.checked })} /><span class="label">Protected (needs a file token)</span></label>
          </>}
          {PII_TYPES.has(f.type) && !(f.system && f.name === 'id') && <PiiOptions f={f} err={err} onChange={onChange} />}
          <Field label="Help text" error={err('help')}><input value={f.help || ''} onInput={(e) => onChange({ help: e.currentTarget.value })} /></Field>
        </div>
      )}
    </div>
  );
}

function PiiOptions({ f, err, onChange }) {
  const p = f.pii;
  const set = (patch) => onChange({ pii: { ...p, ...patch } });
  return (
    <div class="panel" style={{ flexBasis: '100%', margin: 0 }}>
      <label class="field inline">
        <input type="checkbox" checked={!!p} onChange={(e) => onChange({ pii: e.currentTarget.checked ? { searchable: false, mask: 'redact', revealRule: null } : undefined })} />
        <span class="label">PII: encrypt at rest and mask for callers who fail the reveal rule</span>
      </label>
      {err('pii') && <p class="error">{err('pii')}</p>}
      {p && (
        <div class="row">
          <label class="field inline"><input type="checkbox" checked={!!p.searchable} onChange={(e) => set({ searchable: e.currentTarget.checked })} /><span class="label">Searchable (blind index, equality only)</span></label>
          <Field label="Mask" error={err('pii.mask')}>
            <select value={p.mask || 'redact'} onChange={(e) => set({ mask: e.currentTarget.value })}>
              <option value="redact">redact (null)</option><option value="partial">partial</option><option value="last4">last4</option><option value="hash">hash</option>
            </select>
          </Field>
          {/* As API rules: no rule (null) reveals to superusers only; an empty rule to every reader. */}
          <Rule name="revealRule" label="Reveal" value={p.revealRule} error={err('pii.revealRule')} onChange={(v) => set({ revealRule: v })} />
          {f.type === 'text' && (
            <label class="field inline"><input type="checkbox" checked={p.fpe === 'digits'} onChange={(e) => set({ fpe: e.currentTarget.checked ? 'digits' : undefined })} /><span class="label">Format-preserving (digits)</span></label>
          )}
        </div>
      )}
    </div>
  );
}

function AuthOptions({ c, up, errors }) {
  const sub = (k, patch) => up({ [k]: { ...(c[k] || {}), ...patch } });
  const check = (k, key, label) => (
    <label class="field inline"><input type="checkbox" checked={!!c[k]?.[key]} onChange={(e) => sub(k, { [key]: e.currentTarget.checked })} /><span class="label">{label}</span></label>
  );
  const [providers, setProviders] = useState(JSON.stringify(c.oauth2?.providers || [], null, 2));
  const [providersError, setProvidersError] = useState('');
  return (
    <div>
      <h3>Password</h3>
      <div class="row">
        {check('passwordAuth', 'enabled', 'Sign in with a password')}
        <Field label="Identity fields (comma separated)" error={errors['passwordAuth.identityFields']}>
          <input value={(c.passwordAuth?.identityFields || []).join(', ')} onInput={(e) => sub('passwordAuth', { identityFields: list(e.currentTarget.value) })} />
        </Field>
      </div>
      <h3>One-time codes and MFA</h3>
      <div class="row">
        {check('otp', 'enabled', 'Sign in with an emailed code')}
        <Field label="Code lifetime (s)" error={errors['otp.duration']}><input type="number" value={c.otp?.duration ?? 180} onInput={(e) => sub('otp', { duration: Number(e.currentTarget.value) })} /></Field>
        <Field label="Code length" error={errors['otp.length']}><input type="number" value={c.otp?.length ?? 8} onInput={(e) => sub('otp', { length: Number(e.currentTarget.value) })} /></Field>
      </div>
      <div class="row">
        {check('mfa', 'enabled', 'Require two methods (MFA)')}
        <Field label="MFA window (s)" error={errors['mfa.duration']}><input type="number" value={c.mfa?.duration ?? 1800} onInput={(e) => sub('mfa', { duration: Number(e.currentTarget.value) })} /></Field>
        <Field label="MFA rule (empty: everyone)" error={errors['mfa.rule']}><input class="mono" value={c.mfa?.rule || ''} onInput={(e) => sub('mfa', { rule: e.currentTarget.value })} /></Field>
      </div>
      <h3>OAuth2</h3>
      {check('oauth2', 'enabled', 'Sign in with OAuth2 providers')}
      <Field label="Providers (JSON: name, clientId, clientSecret, …)" error={providersError || errors['oauth2.providers']}>
        <textarea class="code" value={providers} onInput={(e) => {
          const v = e.currentTarget.value; setProviders(v);
          try { sub('oauth2', { providers: JSON.parse(v) }); setProvidersError(''); } catch (err) { setProvidersError(`Invalid JSON: ${err.message}`); }
        }} />
      </Field>
      <h3>Tokens</h3>
      <div class="row">
        {['authToken', 'verificationToken', 'passwordResetToken', 'emailChangeToken', 'fileToken'].filter((k) => c[k]).map((k) => (
          <Field label={`${k} duration (s)`} error={errors[`${k}.duration`]}>
            <input type="number" value={c[k]?.duration ?? ''} onInput={(e) => sub(k, { duration: Number(e.currentTarget.value) })} />
          </Field>
        ))}
      </div>
      <h3>Email templates</h3>
      {TEMPLATES.filter(([k]) => c[k]).map(([k, label]) => (
        <details>
          <summary>{label}</summary>
          <Field label="Subject" error={errors[`${k}.subject`]}><input value={c[k].subject} onInput={(e) => sub(k, { subject: e.currentTarget.value })} /></Field>
          <Field label="Body (HTML)" error={errors[`${k}.body`]}><textarea class="code" value={c[k].body} onInput={(e) => sub(k, { body: e.currentTarget.value })} /></Field>
        </details>
      ))}
    </div>
  );
}
