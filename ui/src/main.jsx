import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { keepFresh, pb, signedIn } from './api.js';
import { href, useRoute } from './router.js';
import { Toasts } from './ui.jsx';
import { Login } from './pages/Login.jsx';
import { AuthPages } from './pages/AuthPages.jsx';
import { Collections } from './pages/Collections.jsx';
import { Logs } from './pages/Logs.jsx';
import { Backups } from './pages/Backups.jsx';
import { Settings } from './pages/Settings.jsx';
import { Operations } from './pages/Operations.jsx';
import './style.css';

const NAV = [
  ['collections', 'Collections'],
  ['logs', 'Logs'],
  ['operations', 'Events & cluster'],
  ['backups', 'Backups'],
  ['settings', 'Settings'],
];

function App() {
  const route = useRoute();
  const [, setAuth] = useState(0);
  useEffect(() => pb.authStore.onChange(() => setAuth((n) => n + 1)), []);
  useEffect(() => { const t = keepFresh(); return () => clearInterval(t); }, []);
  const [section = 'collections', ...rest] = route.parts;

  if (section === 'auth') return <AuthPages parts={rest} />;
  if (!signedIn()) return <Login />;

  const page = {
    collections: <Collections name={rest[0]} route={route} />,
    logs: <Logs route={route} />,
    operations: <Operations tab={rest[0]} />,
    backups: <Backups />,
    settings: <Settings tab={rest[0]} />,
  }[section] || <Collections name={undefined} route={route} />;

  return (
    <div class="shell">
      <nav class="main-nav" aria-label="Sections">
        <a class="brand" href={href('collections')}>Basalt</a>
        {NAV.map(([k, label]) => (
          <a href={href(k)} class={section === k ? 'active' : ''} aria-current={section === k ? 'page' : undefined}>{label}</a>
        ))}
        <span class="grow" />
        <span class="who" title="Signed in as">{pb.authStore.record?.email}</span>
        <button type="button" class="link" onClick={() => { pb.authStore.clear(); location.hash = '#/'; }}>Sign out</button>
      </nav>
      <main class="content">{page}</main>
    </div>
  );
}

function Root() {
  return <><App /><Toasts /></>;
}

render(<Root />, document.getElementById('app'));
