// Backups (`/api/backups`): the list, create, upload, download, restore and delete. A backup is a zip
// of the database and (with local storage) the uploaded files; restore replaces the data in place and
// answers once it is done.
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorText, fieldErrors, fmtBytes, fmtDate, pb } from '../api.js';
import { href } from '../router.js';
import { Action, Empty, ErrorBox, Field, toast, useAsync } from '../ui.jsx';

// A superuser file token for download links, renewed before it expires (PocketBase: 3 minutes).
function useFileToken() {
  const [token, setToken] = useState({ value: '', at: 0 });
  const fresh = async () => {
    const value = await pb.files.getToken();
    const t = { value, at: Date.now() };
    setToken(t);
    return t;
  };
  useEffect(() => {
    fresh().catch(() => {});
    const t = setInterval(() => fresh().catch(() => {}), 100_000);
    return () => clearInterval(t);
  }, []);
  return { token, fresh };
}

export function Backups() {
  const list = useAsync(() => pb.backups.getFullList(), []);
  const settings = useAsync(() => pb.settings.getAll(), []);
  const { token, fresh } = useFileToken();
  const [restoring, setRestoring] = useState('');
  // On PostgreSQL every backups endpoint answers 400 naming the database's own tooling.
  const unavailable = list.error?.status === 400;
  const items = [...(list.data || [])].sort((a, b) => String(b.modified).localeCompare(String(a.modified)));

  const download = async (e, key) => {
    // A token older than ~2 minutes may have expired: get a new one, then follow the link.
    if (Date.now() - token.at < 120_000) return;
    e.preventDefault();
    try {
      const t = await fresh();
      const a = document.createElement('a');
      a.href = pb.backups.getDownloadURL(t.value, key);
      a.download = key;
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (err) { toast(errorText(err), 'error'); }
  };
  const restore = async (key) => {
    if (!confirm(`Restore "${key}"?\n\nEvery record, collection and setting is replaced by the backup's. This cannot be undone.`)) return;
    setRestoring(key);
    toast('Restore started');
    try {
      await pb.backups.restore(key);
      toast(`Restored "${key}"`);
    } catch (err) {
      toast(errorText(err), 'error');
    } finally {
      setRestoring('');
      list.reload();
      // The restored data may differ in what is listed (settings, the backups folder): look again.
      setTimeout(() => { list.reload(); settings.reload(); }, 3000);
    }
  };
  const remove = async (key) => {
    await pb.backups.delete(key);
    toast(`Deleted "${key}"`);
    await list.reload();
  };

  return (
    <>
      <div class="page-head">
        <h1>Backups</h1>
        <span class="grow" />
        <button type="button" onClick={() => list.reload()} disabled={list.loading}>Refresh</button>
      </div>
      {unavailable ? <div class="alert info" role="status">{errorText(list.error)}</div> : <>
        <ScheduleLine s={settings.data} />
        <div class="row">
          <CreateBackup onDone={list.reload} />
          <UploadBackup onDone={list.reload} />
        </div>
      </>}
      {restoring && <div class="alert info" role="status">Restoring "{restoring}"… the server answers once the data is replaced.</div>}
      {!unavailable && <ErrorBox error={list.error} />}
      {!unavailable && <div class="table-wrap">
        <table aria-label="Backups">
          <thead><tr><th>Name</th><th>Size</th><th>Modified</th><th>Actions</th></tr></thead>
          <tbody>
            {items.map((b) => (
              <tr>
                <td class="mono" title={b.key}>{b.key}</td>
                <td>{fmtBytes(b.size)}</td>
                <td>{fmtDate(b.modified)}</td>
                <td>
                  <div class="toolbar" style={{ flexWrap: 'nowrap', margin: 0 }}>
                    <a class="button" style={{ padding: '2px 8px', fontSize: '12.5px' }} href={token.value ? pb.backups.getDownloadURL(token.value, b.key) : '#'} download={b.key}
                      aria-label={`Download ${b.key}`} onClick={(e) => download(e, b.key)}>Download</a>
                    <button type="button" class="small" aria-label={`Restore ${b.key}`} disabled={!!restoring} onClick={() => restore(b.key)}>Restore</button>
                    <Action class="small danger" aria-label={`Delete ${b.key}`} disabled={!!restoring} confirm={`Delete the backup "${b.key}"?`} run={() => remove(b.key)}>Delete</Action>
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {!list.loading && !list.error && !items.length && <Empty>No backups yet.</Empty>}
      </div>}
    </>
  );
}

function ScheduleLine({ s }) {
  if (!s) return null;
  const b = s.backups || {};
  const where = b.s3?.enabled ? `the S3 bucket "${b.s3.bucket}"` : 'the data directory (backups/)';
  return (
    <p class="muted">
      {b.cron
        ? <>Automatic backups: <code>{b.cron}</code> (UTC), keeping the newest {b.cronMaxKeep}. </>
        : <>Automatic backups are off. </>}
      Stored in {where}. <a href={href('settings/backups')}>Backup settings</a>
    </p>
  );
}

// `POST /api/backups {name?}`: `[a-z0-9_-]+.zip`, at most 150 characters; empty: an automatic name.
function CreateBackup({ onDone }) {
  const [name, setName] = useState('');
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const create = async (e) => {
    e.preventDefault();
    let n = name.trim();
    if (n && !n.endsWith('.zip')) n += '.zip';
    setBusy(true); setErrors({});
    try {
      await pb.backups.create(n);
      toast(n ? `Backup "${n}" created` : 'Backup created');
      setName('');
      await onDone();
    } catch (err) {
      const f = fieldErrors(err);
      setErrors(Object.keys(f).length ? f : { name: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel" style={{ flex: '1 1 280px' }} onSubmit={create} aria-label="Create backup">
      <Field label="Backup name (optional)" error={errors.name} hint="Lowercase letters, digits, _ and -, ending in .zip; empty: an automatic name.">
        <input name="name" class="mono" placeholder="pb_backup_….zip" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </Field>
      <button type="submit" class="primary" disabled={busy}>{busy ? 'Creating backup…' : 'Create backup'}</button>
    </form>
  );
}

function UploadBackup({ onDone }) {
  const ref = useRef();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const upload = async (e) => {
    e.preventDefault();
    const file = ref.current?.files?.[0];
    if (!file) { setError('Choose a .zip file.'); return; }
    setBusy(true); setError('');
    try {
      await pb.backups.upload({ file });
      toast(`Uploaded "${file.name}"`);
      ref.current.value = '';
      await onDone();
    } catch (err) {
      setError(fieldErrors(err).file || errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel" style={{ flex: '1 1 280px' }} onSubmit={upload} aria-label="Upload backup">
      <Field label="Upload a backup (.zip)" error={error} hint="It is added to the list; restore it from there.">
        <input type="file" name="file" accept=".zip,application/zip" ref={ref} />
      </Field>
      <button type="submit" disabled={busy}>{busy ? 'Uploading…' : 'Upload'}</button>
    </form>
  );
}
