// Create or edit one record: an input per field type, files with previews, a relation picker, the
// JSON editor; for auth collections also verify, password reset and impersonation.
import { useEffect, useState } from 'preact/hooks';
import { fieldErrors, IMAGE, pb } from '../api.js';
import { Action, ErrorBox, Field, Modal, toast } from '../ui.jsx';
import { presentable } from './Records.jsx';

const SKIP = new Set(['autodate', 'password']);

// "2024-01-02 03:04:05.000Z" <-> the value of an <input type=datetime-local> read as UTC.
const toLocalInput = (s) => (s ? String(s).slice(0, 19).replace(' ', 'T') : '');
const fromLocalInput = (v) => (v ? `${v.replace('T', ' ')}${v.length === 16 ? ':00' : ''}.000Z` : '');

export function RecordEditor({ collection: c, collections, record, onClose, onSaved }) {
  const isNew = !record;
  const auth = c.type === 'auth';
  const editable = c.fields.filter((f) => !SKIP.has(f.type) && !(f.name === 'id' && !isNew) && !(f.system && f.name === 'tokenKey'));
  const [values, setValues] = useState(() => {
    const v = {};
    for (const f of editable) v[f.name] = record ? record[f.name] : initial(f);
    if (auth) { v.password = ''; v.passwordConfirm = ''; }
    for (const f of c.fields) if (f.type === 'json') v[f.name] = record?.[f.name] === undefined || record?.[f.name] === null ? '' : JSON.stringify(record[f.name], null, 2);
    return v;
  });
  const [uploads, setUploads] = useState({}); // field -> File[]
  const [removed, setRemoved] = useState({}); // field -> names
  const [errors, setErrors] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [impersonated, setImpersonated] = useState(null);
  const set = (k, v) => setValues((s) => ({ ...s, [k]: v }));

  const save = async (e) => {
    e?.preventDefault();
    setBusy(true); setErrors({}); setError(null);
    try {
      const body = {};
      for (const f of editable) {
        if (f.type === 'file') continue;
        let v = values[f.name];
        if (f.type === 'json') {
          if (v === '') v = null;
          else {
            try { v = JSON.parse(v); } catch (err) { setErrors({ [f.name]: `Invalid JSON: ${err.message}` }); setBusy(false); return; }
          }
        }
        if (f.type === 'date') v = fromLocalInput(v);
        if (f.name === 'id' && !v) continue;
        body[f.name] = v;
      }
      if (auth && (values.password || isNew)) { body.password = values.password; body.passwordConfirm = values.passwordConfirm; }
      let hasFiles = false;
      for (const [k, files] of Object.entries(uploads)) if (files.length) { body[k + (isMulti(c, k) ? '+' : '')] = isMulti(c, k) ? files : files[0]; hasFiles = true; }
      for (const [k, names] of Object.entries(removed)) {
        if (!names.length) continue;
        if (isMulti(c, k)) body[`${k}-`] = names;
        else if (!uploads[k]?.length) body[k] = null;
      }
      const coll = pb.collection(c.name);
      const saved = isNew ? await coll.create(body) : await coll.update(record.id, body);
      toast(isNew ? 'Record created' : 'Record saved');
      onSaved(saved, hasFiles);
    } catch (err) {
      setErrors(fieldErrors(err)); setError(err);
    } finally { setBusy(false); }
  };
  const remove = async () => {
    await pb.collection(c.name).delete(record.id);
    toast('Record deleted');
    onSaved(null);
  };

  const footer = (
    <>
      {!isNew && <Action class="danger" run={remove} confirm="Delete this record?">Delete</Action>}
      <span class="grow" />
      <button type="button" onClick={onClose}>Cancel</button>
      <button type="submit" form="record-form" class="primary" disabled={busy}>{isNew ? 'Create' : 'Save changes'}</button>
    </>
  );
  return (
    <Modal title={isNew ? `New ${c.name} record` : `Edit ${c.name} record`} onClose={onClose} footer={footer} wide>
      <ErrorBox error={error && Object.keys(errors).length === 0 ? error : null} />
      {!isNew && <p class="muted mono">id: {record.id}{record.created ? ` · created ${record.created}` : ''}{record.updated ? ` · updated ${record.updated}` : ''}</p>}
      <form id="record-form" onSubmit={save}>
        {editable.map((f) => (
          <FieldInput key={f.id} f={f} c={c} collections={collections} record={record} value={values[f.name]} onValue={(v) => set(f.name, v)}
            error={errors[f.name]} uploads={uploads[f.name] || []} onUploads={(u) => setUploads({ ...uploads, [f.name]: u })}
            removed={removed[f.name] || []} onRemoved={(r) => setRemoved({ ...removed, [f.name]: r })} />
        ))}
        {auth && (
          <div class="row">
            <Field label={isNew ? 'Password' : 'New password (leave empty to keep)'} error={errors.password}>
              <input type="password" name="password" autocomplete="new-password" value={values.password} onInput={(e) => set('password', e.currentTarget.value)} />
            </Field>
            <Field label="Password again" error={errors.passwordConfirm}>
              <input type="password" name="passwordConfirm" autocomplete="new-password" value={values.passwordConfirm} onInput={(e) => set('passwordConfirm', e.currentTarget.value)} />
            </Field>
          </div>
        )}
      </form>
      {auth && !isNew && c.name !== '_superusers' && (
        <div class="panel">
          <h3 style={{ marginTop: 0 }}>Account</h3>
          <div class="row">
            {!record.verified && <Action run={async () => { await pb.collection(c.name).update(record.id, { verified: true }); toast('Marked as verified'); onSaved(null); }}>Mark verified</Action>}
            {!record.verified && <Action run={async () => { await pb.collection(c.name).requestVerification(record.email); toast(`Verification email sent to ${record.email}`); }}>Send verification email</Action>}
            <Action run={async () => { await pb.collection(c.name).requestPasswordReset(record.email); toast(`Password reset email sent to ${record.email}`); }}>Send password reset</Action>
            <Action run={async () => { const client = await pb.collection(c.name).impersonate(record.id, 3600); setImpersonated(client.authStore.token); }}>Impersonate</Action>
          </div>
          {impersonated && (
            <Field label={`A token for ${record.email || record.id}, valid for one hour (not refreshable)`}>
              <textarea class="code" readOnly aria-label="Impersonation token" style={{ minHeight: '60px' }} value={impersonated} onFocus={(e) => e.currentTarget.select()} />
            </Field>
          )}
        </div>
      )}
    </Modal>
  );
}

const isMulti = (c, name) => (c.fields.find((f) => f.name === name)?.maxSelect || 1) > 1;

function initial(f) {
  switch (f.type) {
    case 'bool': return false;
    case 'number': return '';
    case 'select': case 'relation': case 'file': return f.maxSelect > 1 ? [] : '';
    case 'geoPoint': return { lon: 0, lat: 0 };
    default: return '';
  }
}

function FieldInput({ f, c, collections, record, value, onValue, error, uploads, onUploads, removed, onRemoved }) {
  const generated = f.name === 'id' || f.autogeneratePattern;
  const label = `${f.name}${f.required && !generated ? ' *' : ''}`;
  const hint = f.pii ? `PII (${f.pii.mask || 'redact'}${f.pii.searchable ? ', searchable' : ''})` : f.help || '';
  const text = (type = 'text') => <input type={type} name={f.name} value={value ?? ''} onInput={(e) => onValue(e.currentTarget.value)} />;
  switch (f.type) {
    case 'bool':
      return <Field label={label} error={error} inline><input type="checkbox" name={f.name} checked={!!value} onChange={(e) => onValue(e.currentTarget.checked)} /></Field>;
    case 'number':
      return <Field label={label} error={error} hint={hint}><input type="number" step="any" name={f.name} value={value ?? ''} onInput={(e) => onValue(e.currentTarget.value === '' ? null : Number(e.currentTarget.value))} /></Field>;
    case 'email': return <Field label={label} error={error} hint={hint}>{text('email')}</Field>;
    case 'url': return <Field label={label} error={error} hint={hint}>{text('url')}</Field>;
    case 'editor':
      return <Field label={label} error={error} hint={hint || 'HTML'}><textarea name={f.name} value={value ?? ''} onInput={(e) => onValue(e.currentTarget.value)} /></Field>;
    case 'date':
      return <Field label={`${label} (UTC)`} error={error} hint={hint}><input type="datetime-local" step="1" name={f.name} value={toLocalInput(value)} onInput={(e) => onValue(fromLocalInput(e.currentTarget.value))} /></Field>;
    case 'json':
      return <Field label={label} error={error} hint={hint || 'JSON'}><textarea class="code" name={f.name} value={value} onInput={(e) => onValue(e.currentTarget.value)} /></Field>;
    case 'geoPoint':
      return (
        <div class="row">
          <Field label={`${label} longitude`} error={error}><input type="number" step="any" value={value?.lon ?? 0} onInput={(e) => onValue({ ...value, lon: Number(e.currentTarget.value) })} /></Field>
          <Field label={`${f.name} latitude`}><input type="number" step="any" value={value?.lat ?? 0} onInput={(e) => onValue({ ...value, lat: Number(e.currentTarget.value) })} /></Field>
        </div>
      );
    case 'select': {
      if (f.maxSelect > 1) {
        const list = Array.isArray(value) ? value : [];
        return (
          <Field label={label} error={error} group>
            <span class="chips">
              {f.values.map((o) => (
                <label class="chip"><input type="checkbox" checked={list.includes(o)} onChange={() => onValue(list.includes(o) ? list.filter((x) => x !== o) : [...list, o])} />{o}</label>
              ))}
            </span>
          </Field>
        );
      }
      return (
        <Field label={label} error={error}>
          <select name={f.name} value={value || ''} onChange={(e) => onValue(e.currentTarget.value)}>
            <option value="">–</option>
            {f.values.map((o) => <option value={o}>{o}</option>)}
          </select>
        </Field>
      );
    }
    case 'relation':
      return <Field label={label} error={error} group><RelationPicker f={f} collections={collections} value={value} onValue={onValue} /></Field>;
    case 'file':
      return <Field label={label} error={error} hint={fileHint(f)} group><FileInput f={f} record={record} current={value} uploads={uploads} onUploads={onUploads} removed={removed} onRemoved={onRemoved} /></Field>;
    default:
      return <Field label={label} error={error} hint={hint || (generated ? 'Leave empty to generate' : '')}>{text()}</Field>;
  }
}

function fileHint(f) {
  const parts = [];
  if (f.maxSelect > 1) parts.push(`up to ${f.maxSelect} files`);
  if (f.maxSize) parts.push(`≤ ${Math.round(f.maxSize / 1024)} KB each`);
  if (f.mimeTypes?.length) parts.push(f.mimeTypes.join(', '));
  return parts.join(' · ');
}

function FileInput({ f, record, current, uploads, onUploads, removed, onRemoved }) {
  const names = (Array.isArray(current) ? current : current ? [current] : []);
  const [token, setToken] = useState('');
  const [previews, setPreviews] = useState([]);
  useEffect(() => { if (f.protected && names.length) pb.files.getToken().then(setToken, () => {}); }, []);
  useEffect(() => {
    const urls = uploads.map((u) => (u.type.startsWith('image/') ? URL.createObjectURL(u) : ''));
    setPreviews(urls);
    return () => urls.forEach((u) => u && URL.revokeObjectURL(u));
  }, [uploads]);
  const multi = f.maxSelect > 1;
  return (
    <div>
      <div class="chips">
        {names.map((n) => (
          <span class={`chip ${removed.includes(n) ? 'removed' : ''}`}>
            {IMAGE.test(n) && (!f.protected || token) && <img class="thumb" alt={n} src={pb.files.getURL(record, n, { thumb: '100x100', token })} />}
            <a href={pb.files.getURL(record, n, { token })} target="_blank" rel="noopener">{n}</a>
            <button type="button" aria-label={removed.includes(n) ? `Keep ${n}` : `Remove ${n}`} onClick={() => onRemoved(removed.includes(n) ? removed.filter((x) => x !== n) : [...removed, n])}>{removed.includes(n) ? '↺' : '×'}</button>
          </span>
        ))}
        {uploads.map((u, i) => (
          <span class="chip new">
            {previews[i] && <img class="thumb" alt={u.name} src={previews[i]} />}
            {u.name}
            <button type="button" aria-label={`Drop ${u.name}`} onClick={() => onUploads(uploads.filter((_, j) => j !== i))}>×</button>
          </span>
        ))}
      </div>
      <input type="file" name={f.name} multiple={multi} accept={(f.mimeTypes || []).join(',') || undefined}
        onChange={(e) => { const picked = [...e.currentTarget.files]; onUploads(multi ? [...uploads, ...picked] : picked.slice(0, 1)); e.currentTarget.value = ''; }} />
    </div>
  );
}

function RelationPicker({ f, collections, value, onValue }) {
  const target = collections.find((x) => x.id === f.collectionId);
  const multi = f.maxSelect > 1;
  const chosen = (Array.isArray(value) ? value : value ? [value] : []);
  const [q, setQ] = useState('');
  const [options, setOptions] = useState([]);
  const [open, setOpen] = useState(false);
  const shown = target ? presentable(target) : [];
  const labelOf = (r) => shown.map((n) => r[n]).filter(Boolean).join(' · ') || r.id;
  useEffect(() => {
    if (!open || !target) return undefined;
    const t = setTimeout(() => {
      const s = q.replace(/["\\]/g, '');
      const searched = target.fields.filter((x) => ['text', 'email', 'url'].includes(x.type) && !x.hidden && !x.pii).map((x) => x.name).slice(0, 6);
      const filter = s ? searched.map((n) => `${n} ~ "${s}"`).join(' || ') : '';
      pb.collection(target.name).getList(1, 10, { filter }).then((r) => setOptions(r.items), () => setOptions([]));
    }, 150);
    return () => clearTimeout(t);
  }, [q, open]);
  if (!target) return <span class="muted">The related collection no longer exists.</span>;
  const pick = (id) => {
    if (multi) onValue(chosen.includes(id) ? chosen.filter((x) => x !== id) : [...chosen, id]);
    else { onValue(id); setOpen(false); }
  };
  return (
    <div class="relation-picker">
      <div class="chips">
        {chosen.map((id) => <span class="chip">{id}<button type="button" aria-label={`Unlink ${id}`} onClick={() => onValue(multi ? chosen.filter((x) => x !== id) : '')}>×</button></span>)}
        <button type="button" class="small" onClick={() => setOpen(!open)}>{open ? 'Close' : `Choose from ${target.name}`}</button>
      </div>
      {open && (
        <div class="picker">
          <input type="search" aria-label={`Search ${target.name}`} placeholder={`Search ${target.name}`} value={q} onInput={(e) => setQ(e.currentTarget.value)} autofocus />
          <ul role="listbox" aria-label={`${target.name} records`}>
            {options.map((r) => (
              <li role="option" aria-selected={chosen.includes(r.id)}>
                <button type="button" class="link" onClick={() => pick(r.id)}>{chosen.includes(r.id) ? '✓ ' : ''}{labelOf(r)} <span class="muted mono">{r.id}</span></button>
              </li>
            ))}
            {options.length === 0 && <li class="muted">No records found.</li>}
          </ul>
        </div>
      )}
    </div>
  );
}
