// A collection's records: filter (the PocketBase filter language, checked by the server), sort by
// column, paging, a column picker, bulk delete, and the record editor.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { fmtDate, IMAGE, pb } from '../api.js';
import { Action, ErrorBox, toast, useAsync } from '../ui.jsx';
import { RecordEditor } from './RecordEditor.jsx';


function columnsKey(c) { return `basalt.columns.${c.id}`; }
function defaultColumns(c) {
  const names = c.fields.filter((f) => !f.hidden && f.type !== 'password').map((f) => f.name);
  return names.slice(0, 7);
}

export function Records({ collection: c, collections, onEdit }) {
  const hasCreated = c.fields.some((f) => f.name === 'created');
  const [draft, setDraft] = useState('');
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState(hasCreated ? '-created' : '');
  const [page, setPage] = useState(1);
  const [perPage, setPerPage] = useState(30);
  const [selected, setSelected] = useState(new Set());
  const [editing, setEditing] = useState(null); // null | 'new' | record
  const [cols, setCols] = useState(() => {
    try { const v = JSON.parse(localStorage.getItem(columnsKey(c))); if (Array.isArray(v)) return v; } catch { /* default */ }
    return defaultColumns(c);
  });
  const fields = c.fields.filter((f) => cols.includes(f.name));
  const needsToken = c.fields.some((f) => f.type === 'file' && f.protected);

  const data = useAsync(async () => {
    // Relations show their records' presentable fields (one expand per visible relation column).
    const expand = fields.filter((f) => f.type === 'relation').map((f) => f.name).join(',');
    const list = await pb.collection(c.name).getList(page, perPage, { filter, sort, ...(expand ? { expand } : {}) });
    const token = needsToken ? await pb.files.getToken() : '';
    return { ...list, token };
  }, [c.id, filter, sort, page, perPage, cols.join()]);
  useEffect(() => setSelected(new Set()), [data.data]);

  const saveCols = (next) => { setCols(next); localStorage.setItem(columnsKey(c), JSON.stringify(next)); };
  const sortBy = (name) => { setSort(sort === name ? `-${name}` : name); setPage(1); };
  const apply = (e) => { e.preventDefault(); setFilter(draft.trim()); setPage(1); };
  const items = data.data?.items || [];
  const allChecked = items.length > 0 && items.every((r) => selected.has(r.id));
  const toggle = (id) => { const s = new Set(selected); s.has(id) ? s.delete(id) : s.add(id); setSelected(s); };
  const bulkDelete = async () => {
    for (const id of selected) await pb.collection(c.name).delete(id);
    toast(`Deleted ${selected.size} record${selected.size === 1 ? '' : 's'}`);
    data.reload();
  };
  const readOnly = c.type === 'view';

  return (
    <div>
      <div class="page-head">
        <h1>{c.name}</h1>
        <span class="badge">{c.type}</span>
        <span class="grow" />
        <button type="button" onClick={onEdit}>Edit collection</button>
        {!readOnly && <button type="button" class="primary" onClick={() => setEditing('new')}>+ New record</button>}
      </div>
      <form class="toolbar" onSubmit={apply} role="search">
        <input type="search" aria-label="Filter" placeholder={'Filter, e.g. title ~ "hello" && created > "2024-01-01"'} value={draft} onInput={(e) => setDraft(e.currentTarget.value)} />
        <button type="submit">Apply</button>
        {filter && <button type="button" class="link" onClick={() => { setDraft(''); setFilter(''); }}>Clear</button>}
        <ColumnPicker collection={c} cols={cols} onChange={saveCols} />
        {selected.size > 0 && !readOnly && (
          <Action class="danger" run={bulkDelete} confirm={`Delete ${selected.size} selected record(s)?`}>Delete selected ({selected.size})</Action>
        )}
      </form>
      <ErrorBox error={data.error} />
      <div class="table-wrap">
        <table aria-label={`${c.name} records`}>
          <thead>
            <tr>
              {!readOnly && <th class="check"><input type="checkbox" aria-label="Select all" checked={allChecked} onChange={() => setSelected(allChecked ? new Set() : new Set(items.map((r) => r.id)))} /></th>}
              {fields.map((f) => {
                const dir = sort === f.name ? 'ascending' : sort === `-${f.name}` ? 'descending' : undefined;
                return (
                  <th aria-sort={dir}>
                    <button type="button" class="sort" onClick={() => sortBy(f.name)}>{f.name} {dir === 'ascending' ? '▲' : dir === 'descending' ? '▼' : ''}</button>
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <tr class="clickable" data-id={r.id} onClick={() => setEditing(r)} tabIndex={0} onKeyDown={(e) => { if (e.key === 'Enter') setEditing(r); }}>
                {!readOnly && <td class="check" onClick={(e) => e.stopPropagation()}><input type="checkbox" aria-label={`Select ${r.id}`} checked={selected.has(r.id)} onChange={() => toggle(r.id)} /></td>}
                {fields.map((f) => <td>{cell(f, r, data.data?.token, collections)}</td>)}
              </tr>
            ))}
          </tbody>
        </table>
        {!data.loading && items.length === 0 && <div class="empty">No records{filter ? ' match the filter' : ''}.</div>}
      </div>
      {data.data && (
        <div class="pager">
          <span class="muted">{data.data.totalItems} record{data.data.totalItems === 1 ? '' : 's'}</span>
          <span class="grow" />
          <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>‹ Prev</button>
          <span>Page {data.data.page} of {Math.max(1, data.data.totalPages)}</span>
          <button type="button" disabled={page >= data.data.totalPages} onClick={() => setPage(page + 1)}>Next ›</button>
          <select aria-label="Per page" value={perPage} onChange={(e) => { setPerPage(+e.currentTarget.value); setPage(1); }} style={{ width: 'auto' }}>
            {[10, 30, 50, 100].map((n) => <option value={n}>{n} / page</option>)}
          </select>
        </div>
      )}
      {editing && (
        <RecordEditor
          collection={c}
          collections={collections}
          record={editing === 'new' ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => { setEditing(null); data.reload(); }}
        />
      )}
    </div>
  );
}

function ColumnPicker({ collection: c, cols, onChange }) {
  return (
    <details class="column-picker">
      <summary class="button">Columns</summary>
      <div class="menu" role="group" aria-label="Columns">
        {c.fields.filter((f) => f.type !== 'password').map((f) => (
          <label class="field inline">
            <input type="checkbox" checked={cols.includes(f.name)} onChange={() => onChange(cols.includes(f.name) ? cols.filter((n) => n !== f.name) : c.fields.map((x) => x.name).filter((n) => n === f.name || cols.includes(n)))} />
            <span class="label">{f.name}</span>
          </label>
        ))}
      </div>
    </details>
  );
}

export function cell(f, r, token, collections) {
  const v = r[f.name];
  if (v == null || v === '' || (Array.isArray(v) && v.length === 0)) return <span class="muted">–</span>;
  switch (f.type) {
    case 'bool': return v ? '✓' : <span class="muted">✗</span>;
    case 'file': {
      const names = Array.isArray(v) ? v : [v];
      return (
        <span class="chips">
          {names.slice(0, 3).map((n) => IMAGE.test(n)
            ? <img class="thumb" alt={n} loading="lazy" src={pb.files.getURL(r, n, { thumb: '100x100', token })} />
            : <span class="chip">{n}</span>)}
          {names.length > 3 && <span class="muted">+{names.length - 3}</span>}
        </span>
      );
    }
    case 'relation': {
      const list = Array.isArray(v) ? v : [v];
      const exp = r.expand?.[f.name];
      const byId = Object.fromEntries((Array.isArray(exp) ? exp : exp ? [exp] : []).map((x) => [x.id, x]));
      const target = collections?.find((x) => x.id === f.collectionId);
      const label = (id) => {
        const x = byId[id];
        if (!x || !target) return id;
        return presentable(target).map((n) => x[n]).filter((y) => y !== '' && y != null).join(' · ') || id;
      };
      return <span class="chips">{list.map((id) => <span class="chip" title={id}>{label(id)}</span>)}</span>;
    }
    case 'select': {
      const list = Array.isArray(v) ? v : [v];
      return <span class="chips">{list.map((x) => <span class="chip">{x}</span>)}</span>;
    }
    case 'date':
    case 'autodate': return <span class="mono">{fmtDate(v)}</span>;
    case 'json': return <span class="mono">{JSON.stringify(v).slice(0, 80)}</span>;
    case 'editor': return String(v).replace(/<[^>]*>/g, ' ').slice(0, 80);
    case 'geoPoint': return <span class="mono">{v.lat}, {v.lon}</span>;
    default: return String(v);
  }
}

// The fields that name a record: those marked presentable, else a name-like text field, else the
// email, else the first visible text field.
export const presentable = (c) => {
  const p = c.fields.filter((f) => f.presentable).map((f) => f.name);
  if (p.length) return p;
  const visible = c.fields.filter((f) => !f.hidden && f.name !== 'id');
  const t = visible.find((f) => f.type === 'text' && /^(name|title|username|label)$/.test(f.name))
    || visible.find((f) => f.type === 'email') || visible.find((f) => f.type === 'text');
  return t ? [t.name] : [];
};
