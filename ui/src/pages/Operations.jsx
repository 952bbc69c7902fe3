// Events & cluster: the event outbox and its sinks, webhooks and their dead letters, the nodes of the
// cluster, and the cron jobs. The live parts come from `/api/health`, whose superuser answer carries
// `events` (outbox marks, sinks, webhooks), `realtime` and `cluster`.
import { useEffect, useState } from 'preact/hooks';
import { fieldErrors, fmtDate, pb } from '../api.js';
import { go } from '../router.js';
import { Action, Empty, ErrorBox, Field, Modal, Tabs, toast, useAsync } from '../ui.jsx';

const TABS = [
  ['events', 'Events & sinks'],
  ['webhooks', 'Webhooks'],
  ['cluster', 'Cluster'],
  ['crons', 'Crons'],
];

export function Operations({ tab = 'events' }) {
  const current = TABS.some(([k]) => k === tab) ? tab : 'events';
  useEffect(() => { document.querySelector('.tabs [aria-selected="true"]')?.scrollIntoView({ block: 'nearest', inline: 'nearest' }); }, [current]);
  return (
    <>
      <div class="page-head"><h1>Events & cluster</h1></div>
      <Tabs tabs={TABS} value={current} onChange={(k) => go(`operations/${k}`)} />
      {current === 'events' && <Events />}
      {current === 'webhooks' && <Webhooks />}
      {current === 'cluster' && <Cluster />}
      {current === 'crons' && <Crons />}
    </>
  );
}

// `/api/health` every 5 s while the tab is shown.
function useHealth() {
  const h = useAsync(() => pb.health.check(), []);
  useEffect(() => {
    const t = setInterval(() => h.reload(), 5000);
    return () => clearInterval(t);
  }, [h.reload]);
  return h;
}

const num = (n) => (n == null ? '' : Number(n).toLocaleString('en-US'));
function ago(ms) {
  if (ms == null) return '';
  if (ms < 1000) return `${ms} ms ago`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
const Stat = ({ label, children }) => (
  <div class="field"><span class="label">{label}</span><span>{children}</span></div>
);
const Refreshed = ({ h }) => <span class="muted">{h.loading ? 'Refreshing…' : 'Refreshes every 5 s'}</span>;

// ---- events
function Events() {
  const h = useHealth();
  const d = h.data?.data || {};
  const ev = d.events;
  const sinks = ev?.sinks || [];
  const wh = ev?.webhooks;
  return (
    <>
      <ErrorBox error={h.error} />
      <section class="panel" aria-label="Event outbox">
        <div class="page-head"><h2>Outbox</h2><span class="grow" /><Refreshed h={h} /></div>
        {h.data && !ev && <p class="muted">The event bus is not running on this node.</p>}
        {ev && (
          <div class="row">
            <Stat label="Last event (high-water mark)">{num(ev.highWater)}</Stat>
            <Stat label="Dispatched to listeners up to">{num(ev.tail)}</Stat>
            <Stat label="Waiting for the slowest sink">{num(Math.max(0, ...sinks.map((s) => s.lag || 0)))}</Stat>
            <Stat label="Realtime clients">{num(d.realtime?.clients)}</Stat>
          </div>
        )}
        {wh && (
          <div class="row">
            <Stat label="Webhooks">{num(wh.webhooks)}</Stat>
            <Stat label="Delivered (since start)">{num(wh.delivered)}</Stat>
            <Stat label="Failed attempts (since start)">{num(wh.failedAttempts)}</Stat>
            <Stat label="Dead-lettered (since start)">
              {wh.dead ? <a href="#/operations/webhooks" class="badge bad">{num(wh.dead)}</a> : num(wh.dead)}
            </Stat>
          </div>
        )}
      </section>
      <h3>Sinks</h3>
      <div class="table-wrap">
        <table aria-label="Sinks">
          <thead><tr><th>Name</th><th>Kind</th><th>State</th><th>Lag</th><th>Cursor</th><th>Delivered</th><th>Failures</th><th>Last error</th></tr></thead>
          <tbody>
            {sinks.map((s) => (
              <tr>
                <td class="mono">{s.name}</td>
                <td>{String(s.name).split(':')[0]}</td>
                <td>
                  <span class={`badge ${s.healthy ? 'ok' : 'bad'}`}>{s.healthy ? 'healthy' : 'failing'}</span>{' '}
                  <span class="badge" title={s.leader ? 'This node holds the lease and delivers' : 'Another node delivers'}>{s.leader ? 'leader' : 'standby'}</span>
                </td>
                <td><span class={s.lag > 1000 ? 'badge warn' : ''}>{num(s.lag)}</span></td>
                <td>{num(s.cursor)}</td>
                <td>{num(s.delivered)}</td>
                <td>{num(s.failures)}</td>
                <td title={s.lastError || ''}>{s.lastError ? <>{s.lastError} <span class="muted">{fmtDate(s.lastErrorAt)}</span></> : <span class="muted">none</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {h.data && !sinks.length && <Empty>No durable sinks.</Empty>}
      </div>
    </>
  );
}

// ---- cluster
function Cluster() {
  const h = useHealth();
  const c = h.data?.data?.cluster;
  const nodes = c?.nodes || [];
  return (
    <>
      <ErrorBox error={h.error} />
      {c && (
        <section class="panel" aria-label="Cluster">
          <div class="page-head"><h2>This node</h2><span class="grow" /><Refreshed h={h} /></div>
          <div class="row">
            <Stat label="Node id"><code>{c.node || 'unregistered'}</code></Stat>
            <Stat label="Transport">{c.transport}</Stat>
            <Stat label="Redis">
              {c.redis ? <span class={`badge ${c.redis.up ? 'ok' : 'bad'}`} title={c.redis.lastError || ''}>{c.redis.up ? 'up' : 'down'}</span> : <span class="muted">not configured</span>}
            </Stat>
            <Stat label="Cache">
              {c.cache ? (c.cache.enabled ? `${num(c.cache.entries)} entries, ${num(c.cache.hits)} hits, ${num(c.cache.misses)} misses` : 'off') : ''}
            </Stat>
          </div>
          {nodes.length <= 1 && <p class="muted">Single node: no other node shares this database{c.transport === 'none' ? ' (no cluster transport configured)' : ''}.</p>}
        </section>
      )}
      <div class="table-wrap">
        <table aria-label="Nodes">
          <thead><tr><th>Id</th><th>Address</th><th>Role</th><th>State</th><th>Version</th><th>Started</th><th>Last seen</th><th>Tail</th></tr></thead>
          <tbody>
            {nodes.map((n) => (
              <tr>
                <td class="mono">{n.id}{n.id === c.node && <> <span class="badge">this node</span></>}</td>
                <td class="mono">{n.address}</td>
                <td>{n.role}</td>
                <td>
                  <span class={`badge ${n.state === 'ready' ? 'ok' : n.state === 'draining' ? 'warn' : ''}`}>{n.state}</span>
                  {!n.live && <> <span class="badge bad">not live</span></>}
                </td>
                <td>{n.version}</td>
                <td>{fmtDate(n.started)}</td>
                <td>{ago(n.heartbeatAgeMs)}</td>
                <td>{num(n.tail)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {h.data && !nodes.length && <Empty>No node registry on this server.</Empty>}
      </div>
    </>
  );
}

// ---- crons
function Crons() {
  const list = useAsync(() => pb.crons.getFullList(), []);
  return (
    <>
      <ErrorBox error={list.error} />
      <div class="table-wrap">
        <table aria-label="Cron jobs">
          <thead><tr><th>Job</th><th>Schedule (UTC)</th><th>Run</th></tr></thead>
          <tbody>
            {(list.data || []).map((j) => (
              <tr>
                <td class="mono">{j.id}</td>
                <td class="mono">{j.expression}</td>
                <td>
                  <Action class="small" aria-label={`Run ${j.id} now`} run={async () => {
                    await pb.crons.run(j.id);
                    toast(`Ran ${j.id}`);
                  }}>Run now</Action>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && !list.data.length && <Empty>No cron jobs.</Empty>}
      </div>
    </>
  );
}

// ---- webhooks and their deliveries
function Webhooks() {
  const hooks = useAsync(() => pb.send('/api/webhooks', {}), []);
  const [editing, setEditing] = useState(null); // null | 'new' | webhook
  const items = hooks.data?.items || [];
  const remove = async (w) => {
    await pb.send(`/api/webhooks/${encodeURIComponent(w.id)}`, { method: 'DELETE' });
    toast(`Deleted webhook ${w.name || w.url}`);
    await hooks.reload();
  };
  return (
    <>
      <div class="toolbar">
        <h2>Webhooks</h2>
        <span class="grow" />
        <button type="button" class="primary" onClick={() => setEditing('new')}>+ New webhook</button>
      </div>
      <ErrorBox error={hooks.error} />
      <div class="table-wrap">
        <table aria-label="Webhooks">
          <thead><tr><th>Name</th><th>URL</th><th>Collection</th><th>Events</th><th>State</th><th>Actions</th></tr></thead>
          <tbody>
            {items.map((w) => (
              <tr>
                <td>{w.name}</td>
                <td class="mono" title={w.url}>{w.url}</td>
                <td class="mono">{w.collection}</td>
                <td>{(w.events || []).join(', ')}</td>
                <td><span class={`badge ${w.active ? 'ok' : ''}`}>{w.active ? 'active' : 'paused'}</span></td>
                <td>
                  <div class="toolbar" style={{ flexWrap: 'nowrap', margin: 0 }}>
                    <button type="button" class="small" aria-label={`Edit webhook ${w.name || w.url}`} onClick={() => setEditing(w)}>Edit</button>
                    <Action class="small danger" aria-label={`Delete webhook ${w.name || w.url}`} confirm={`Delete the webhook "${w.name || w.url}" and its queued deliveries?`} run={() => remove(w)}>Delete</Action>
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {hooks.data && !items.length && <Empty>No webhooks. A webhook POSTs each record change (a CloudEvent) to a URL, signed with its secret.</Empty>}
      </div>
      <Deliveries hooks={items} />
      {editing && (
        <WebhookForm hook={editing === 'new' ? null : editing} onClose={() => setEditing(null)}
          onSaved={() => { setEditing(null); hooks.reload(); }} />
      )}
    </>
  );
}

const EVENTS = ['create', 'update', 'delete'];
const randomSecret = () => Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, '0')).join('');

function WebhookForm({ hook, onClose, onSaved }) {
  const colls = useAsync(() => pb.collections.getFullList({ fields: 'id,name', sort: 'name' }), []);
  const [v, setV] = useState(() => ({
    name: hook?.name || '',
    url: hook?.url || '',
    secret: '',
    collection: hook?.collection || '*',
    events: hook?.events || [...EVENTS],
    active: hook ? !!hook.active : true,
    timeoutMs: hook?.timeoutMs ?? '',
    maxAttempts: hook?.maxAttempts ?? '',
    concurrency: hook?.concurrency ?? '',
  }));
  const [errors, setErrors] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setV({ ...v, [k]: e.currentTarget.value });
  const toggle = (ev) => setV({ ...v, events: v.events.includes(ev) ? v.events.filter((x) => x !== ev) : EVENTS.filter((x) => x === ev || v.events.includes(x)) });

  const save = async (e) => {
    e.preventDefault();
    setBusy(true); setErrors({}); setError(null);
    const body = { name: v.name, url: v.url, collection: v.collection, events: v.events, active: v.active };
    if (v.secret || !hook) body.secret = v.secret;
    for (const k of ['timeoutMs', 'maxAttempts', 'concurrency']) {
      if (v[k] !== '') body[k] = Number(v[k]);
      else if (hook && hook[k] != null) body[k] = null; // back to the default
    }
    try {
      if (hook) await pb.send(`/api/webhooks/${encodeURIComponent(hook.id)}`, { method: 'PATCH', body });
      else await pb.send('/api/webhooks', { method: 'POST', body });
      toast(hook ? 'Webhook saved' : 'Webhook created');
      onSaved();
    } catch (err) {
      setErrors(fieldErrors(err));
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const names = (colls.data || []).map((c) => c.name);
  const collOptions = ['*', ...names, ...(v.collection !== '*' && !names.includes(v.collection) ? [v.collection] : [])];
  const footer = (
    <>
      <button type="button" onClick={onClose}>Cancel</button>
      <button type="submit" form="webhook-form" class="primary" disabled={busy}>{busy ? 'Saving…' : hook ? 'Save webhook' : 'Create webhook'}</button>
    </>
  );
  return (
    <Modal title={hook ? `Edit webhook ${hook.name || hook.url}` : 'New webhook'} onClose={onClose} footer={footer}>
      <form id="webhook-form" onSubmit={save} novalidate>
        {error && !Object.keys(errors).length && <ErrorBox error={error} />}
        <Field label="URL" error={errors.url} hint="http or https; internal addresses need the server's [egress] allow list.">
          <input type="url" name="url" required value={v.url} onInput={set('url')} placeholder="https://example.com/hooks/basalt" />
        </Field>
        <Field label="Name" error={errors.name} hint="Defaults to the address.">
          <input name="name" value={v.name} onInput={set('name')} />
        </Field>
        <Field label={hook ? 'New secret' : 'Secret'} error={errors.secret}
          hint={hook ? 'Write-only: leave empty to keep the current secret.' : 'At least 16 characters; signs each delivery (X-Basalt-Signature: t=…,v1=HMAC-SHA256).'}>
          <div class="row">
            <input name="secret" class="mono grow" autocomplete="off" minLength={16} value={v.secret} onInput={set('secret')} />
            <button type="button" onClick={() => setV({ ...v, secret: randomSecret() })}>Generate</button>
          </div>
        </Field>
        <div class="row">
          <Field label="Collection" error={errors.collection}>
            <select name="collection" value={v.collection} onChange={set('collection')}>
              {collOptions.map((c) => <option value={c}>{c === '*' ? '* (every collection)' : c}</option>)}
            </select>
          </Field>
          <div class="field" role="group" aria-label="Events">
            <span class="label">Events</span>
            <div class="chips">
              {EVENTS.map((ev) => (
                <label class="field inline"><input type="checkbox" name={`event-${ev}`} checked={v.events.includes(ev)} onChange={() => toggle(ev)} /><span class="label">{ev}</span></label>
              ))}
            </div>
            {errors.events && <span class="error" role="alert">{errors.events}</span>}
          </div>
        </div>
        <Field label="Active" inline error={errors.active}>
          <input type="checkbox" name="active" checked={v.active} onChange={(e) => setV({ ...v, active: e.currentTarget.checked })} />
        </Field>
        <div class="row">
          <Field label="Timeout (ms)" error={errors.timeoutMs} hint="100–120000; empty: default">
            <input type="number" name="timeoutMs" min="100" max="120000" value={v.timeoutMs} onInput={set('timeoutMs')} />
          </Field>
          <Field label="Max attempts" error={errors.maxAttempts} hint="1–100; empty: default">
            <input type="number" name="maxAttempts" min="1" max="100" value={v.maxAttempts} onInput={set('maxAttempts')} />
          </Field>
          <Field label="Concurrency" error={errors.concurrency} hint="1–64; empty: default">
            <input type="number" name="concurrency" min="1" max="64" value={v.concurrency} onInput={set('concurrency')} />
          </Field>
        </div>
      </form>
    </Modal>
  );
}

function Deliveries({ hooks }) {
  const [status, setStatus] = useState('dead');
  const list = useAsync(() => pb.send('/api/webhooks/deliveries', { query: { status } }), [status]);
  const [open, setOpen] = useState(null);
  const items = list.data?.items || [];
  const hookName = (id) => {
    const w = hooks.find((x) => x.id === id);
    return w ? (w.name || w.url) : id;
  };
  const replay = async (d) => {
    await pb.send(`/api/webhooks/deliveries/${encodeURIComponent(d.id)}/replay`, { method: 'POST' });
    toast('Delivery queued again');
    await list.reload();
  };
  return (
    <>
      <div class="toolbar" style={{ marginTop: '20px' }}>
        <h2>{status === 'dead' ? 'Dead letters' : 'Pending deliveries'}</h2>
        <span class="grow" />
        <div class="tabs" role="tablist" aria-label="Delivery status" style={{ margin: 0 }}>
          {[['dead', 'Dead'], ['pending', 'Pending']].map(([k, l]) => (
            <button type="button" role="tab" aria-selected={status === k} class={status === k ? 'active' : ''} onClick={() => setStatus(k)}>{l}</button>
          ))}
        </div>
        <button type="button" onClick={() => list.reload()} disabled={list.loading}>Refresh</button>
      </div>
      <ErrorBox error={list.error} />
      <div class="table-wrap">
        <table aria-label={status === 'dead' ? 'Dead letters' : 'Pending deliveries'}>
          <thead><tr><th>Event</th><th>Webhook</th><th>Attempts</th><th>Last error</th><th>Time</th><th>{status === 'dead' ? 'Replay' : 'Next attempt'}</th></tr></thead>
          <tbody>
            {items.map((d) => (
              <tr>
                <td>
                  <button type="button" class="link" style={{ padding: 0 }} aria-label={`Show delivery ${d.id}`} onClick={() => setOpen(d)}>{d.event?.type || d.eventId}</button>
                  <div class="mono muted" title="collection id / record id">{d.record}</div>
                </td>
                <td title={d.webhook} style={{ maxWidth: '200px' }}>{hookName(d.webhook)}</td>
                <td>{d.attempts}</td>
                <td title={d.lastError} style={{ maxWidth: '260px' }}>{d.lastError || <span class="muted">none</span>}</td>
                <td>{fmtDate(d.updated || d.created)}</td>
                <td>
                  {status === 'dead'
                    ? <Action class="small" aria-label={`Replay delivery ${d.id}`} run={() => replay(d)}>Replay</Action>
                    : (d.nextAttemptAt ? new Date(d.nextAttemptAt).toISOString().replace('T', ' ').slice(0, 19) : '')}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && !items.length && <Empty>{status === 'dead' ? 'No dead letters.' : 'Nothing queued.'}</Empty>}
      </div>
      {list.data && list.data.totalItems >= 500 && <p class="muted">Showing the oldest 500.</p>}
      {open && (
        <Modal title={`Delivery ${open.id}`} wide onClose={() => setOpen(null)} footer={<button type="button" onClick={() => setOpen(null)}>Close</button>}>
          <pre tabIndex={0}>{JSON.stringify(open, null, 2)}</pre>
        </Modal>
      )}
    </>
  );
}

