// Request logs (`/api/logs`): requests per hour as a bar chart, the filtered list newest first, one
// entry as JSON. The filter and page live in the route (`#/logs?filter=…&page=2`), so a view can be linked.
import { useEffect, useRef, useState } from 'preact/hooks';
import { fmtDate, pb } from '../api.js';
import { go } from '../router.js';
import { Empty, ErrorBox, Modal, useAsync } from '../ui.jsx';

const PER_PAGE = 50;
const LEVELS = { '-4': 'DEBUG', 0: 'INFO', 4: 'WARN', 8: 'ERROR' };
const PRESETS = [
  ['Errors', 'data.status >= 400'],
  ['Slow (> 500 ms)', 'data.execTime > 500'],
  ['Superusers', 'data.auth = "_superusers"'],
];

export function Logs({ route }) {
  const filter = route?.query?.get('filter') || '';
  const page = Math.max(1, Number(route?.query?.get('page')) || 1);
  const [text, setText] = useState(filter);
  const [open, setOpen] = useState(null);
  useEffect(() => setText(filter), [filter]);

  const list = useAsync(() => pb.logs.getList(page, PER_PAGE, { filter, sort: '-created' }), [filter, page]);
  const stats = useAsync(() => pb.logs.getStats({ filter }), [filter]);

  const show = (f, p = 1) => {
    const q = new URLSearchParams();
    if (f) q.set('filter', f);
    if (p > 1) q.set('page', String(p));
    const next = `logs${q.toString() ? `?${q}` : ''}`;
    if (`#/${next}` === location.hash) { list.reload(); stats.reload(); } else go(next);
  };
  const data = list.data;
  const items = data?.items || [];

  return (
    <>
      <div class="page-head">
        <h1>Logs</h1>
        <span class="muted">{data ? `${data.totalItems} requests` : ''}</span>
        <span class="grow" />
        <button type="button" onClick={() => { list.reload(); stats.reload(); }} disabled={list.loading}>Refresh</button>
      </div>
      <form class="toolbar" role="search" onSubmit={(e) => { e.preventDefault(); show(text.trim()); }}>
        <input type="search" name="filter" aria-label="Filter logs" placeholder='Filter, e.g. data.status >= 400 && data.url ~ "/api/collections"'
          value={text} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit">Apply</button>
        {PRESETS.map(([label, f]) => <button type="button" class="small" aria-pressed={filter === f} onClick={() => show(f)}>{label}</button>)}
        {filter && <button type="button" class="link" onClick={() => show('')}>Clear</button>}
      </form>
      {/* The stats answer names a bad filter ("Invalid filter format."); the list's message is generic. */}
      <ErrorBox error={stats.error || list.error} />
      <section class="panel" aria-label="Requests per hour">
        {stats.data && stats.data.length > 0 && <Chart stats={stats.data} />}
        {stats.data && !stats.data.length && <p class="muted">No requests logged{filter ? ' for this filter' : ''}.</p>}
      </section>
      <div class="table-wrap">
        <table aria-label="Request logs">
          <thead>
            <tr><th>Time</th><th>Level</th><th>Method</th><th>URL</th><th>Status</th><th>Duration</th><th>Auth</th><th>IP</th></tr>
          </thead>
          <tbody>
            {items.map((l) => {
              const d = l.data || {};
              return (
                <tr class="clickable" tabIndex={0} aria-label={`Log ${l.id}`} onClick={() => setOpen(l.id)}
                  onKeyDown={(e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); setOpen(l.id); } }}>
                  <td class="mono">{fmtDate(l.created)}</td>
                  <td><Level level={l.level} /></td>
                  <td class="mono">{d.method}</td>
                  <td class="mono" title={d.error ? `${d.url}\n${d.error}` : d.url}>{d.url ?? l.message}</td>
                  <td><Status status={d.status} /></td>
                  <td>{d.execTime != null ? `${fmtMs(d.execTime)} ms` : ''}</td>
                  <td title={d.authId || ''}>{d.auth || <span class="muted">guest</span>}</td>
                  <td class="mono">{d.userIP || d.remoteIP || ''}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {!list.loading && !list.error && !items.length && <Empty>No logs{filter ? ' match this filter' : ' yet'}.</Empty>}
      </div>
      {data && data.totalPages > 1 && (
        <nav class="pager" aria-label="Pages">
          <button type="button" disabled={page <= 1} onClick={() => show(filter, page - 1)}>Previous</button>
          <span>Page {data.page} of {data.totalPages}</span>
          <button type="button" disabled={page >= data.totalPages} onClick={() => show(filter, page + 1)}>Next</button>
        </nav>
      )}
      {open && <LogEntry id={open} onClose={() => setOpen(null)} />}
    </>
  );
}

const fmtMs = (n) => (n >= 100 ? Math.round(n) : Number(n).toFixed(n >= 10 ? 1 : 2));

function Level({ level }) {
  const name = LEVELS[level] ?? String(level);
  return <span class={`badge ${level >= 8 ? 'bad' : level >= 4 ? 'warn' : ''}`}>{name}</span>;
}
function Status({ status }) {
  if (status == null) return null;
  return <span class={`badge ${status >= 500 ? 'bad' : status >= 400 ? 'warn' : 'ok'}`}>{status}</span>;
}

function LogEntry({ id, onClose }) {
  const entry = useAsync(() => pb.logs.getOne(id), [id]);
  return (
    <Modal title="Log entry" wide onClose={onClose} footer={<button type="button" onClick={onClose}>Close</button>}>
      <ErrorBox error={entry.error} />
      {entry.data && <pre tabIndex={0} aria-label="Log entry JSON">{JSON.stringify(entry.data, null, 2)}</pre>}
      {entry.loading && <p class="muted">Loading…</p>}
    </Modal>
  );
}

// ---- requests per hour: [{date: "2025-01-02 13:00:00.000Z", total}] (hours with entries only)
const HOUR = 3600_000;
const parseDate = (s) => Date.parse(String(s).replace(' ', 'T'));
const label = (t, withDay) => {
  const iso = new Date(t).toISOString();
  return withDay ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
};

function Chart({ stats }) {
  const ref = useRef();
  const [w, setW] = useState(800);
  useEffect(() => {
    const el = ref.current;
    if (!el || typeof ResizeObserver === 'undefined') return undefined;
    const ro = new ResizeObserver(() => setW(Math.max(200, el.clientWidth || 800)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const byHour = new Map(stats.map((s) => [parseDate(s.date), s.total]));
  const hours = [...byHour.keys()].filter(Number.isFinite);
  // At least the last 24 hours, up to now.
  const now = Math.floor(Date.now() / HOUR) * HOUR;
  const from = Math.min(...hours, now - 23 * HOUR);
  const to = Math.max(...hours, now);
  const n = Math.max(1, Math.round((to - from) / HOUR) + 1);
  const max = Math.max(1, ...byHour.values());
  const H = 120, left = 36, right = 8, top = 8, bottom = 18;
  const pw = w - left - right, ph = H - top - bottom;
  const step = pw / n;
  const bw = Math.max(1, step - (step > 4 ? 2 : 0));
  const y = (v) => top + ph - (v / max) * ph;
  const multiDay = to - from >= 24 * HOUR;
  const ticks = n > 1 ? [0, Math.floor((n - 1) / 2), n - 1] : [0];
  const total = [...byHour.values()].reduce((a, b) => a + b, 0);

  return (
    <svg class="chart" ref={ref} viewBox={`0 0 ${w} ${H}`} role="img" aria-label={`Requests per hour: ${total} in ${n} hours, at most ${max} in one hour`}>
      <line x1={left} y1={top + ph} x2={w - right} y2={top + ph} stroke="#dfe3e8" />
      <line x1={left} y1={top} x2={w - right} y2={top} stroke="#eef0f3" />
      <text x={left - 4} y={top + 4} text-anchor="end">{max}</text>
      <text x={left - 4} y={top + ph} text-anchor="end">0</text>
      {Array.from({ length: n }, (_, i) => {
        const t = from + i * HOUR;
        const v = byHour.get(t) || 0;
        if (!v) return null;
        return (
          <rect x={left + i * step} y={y(v)} width={bw} height={Math.max(1, top + ph - y(v))}>
            <title>{`${label(t, true)} UTC: ${v} requests`}</title>
          </rect>
        );
      })}
      {ticks.map((i, k) => (
        <text x={left + i * step + bw / 2} y={H - 4} text-anchor={k === 0 && ticks.length > 1 ? 'start' : k === ticks.length - 1 && ticks.length > 1 ? 'end' : 'middle'}>
          {label(from + i * HOUR, multiDay || k === 0)}
        </text>
      ))}
    </svg>
  );
}
