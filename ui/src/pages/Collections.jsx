// Collections: the list on the side, the selected collection's records grid, the collection editor.
import { useEffect, useState } from 'preact/hooks';
import { pb } from '../api.js';
import { go, href } from '../router.js';
import { Empty, ErrorBox, useAsync } from '../ui.jsx';
import { CollectionEditor } from './CollectionEditor.jsx';
import { Records } from './Records.jsx';

export function Collections({ name }) {
  const list = useAsync(() => pb.collections.getFullList({ sort: 'name' }), []);
  const [search, setSearch] = useState('');
  const [editing, setEditing] = useState(null); // null | 'new' | collection
  const all = list.data || [];
  const current = all.find((c) => c.name === name || c.id === name);

  // Open the first collection when none is chosen.
  useEffect(() => {
    if (!name && all.length && !/^#\/?collections\/./.test(location.hash)) {
      const first = all.find((c) => !c.system) || all[0];
      go(`collections/${first.name}`);
    }
  }, [name, all.length]);

  const shown = all.filter((c) => c.name.toLowerCase().includes(search.toLowerCase()));
  const user = shown.filter((c) => !c.system);
  const system = shown.filter((c) => c.system);
  const item = (c) => (
    <a href={href(`collections/${c.name}`)} class={current?.id === c.id ? 'active' : ''} aria-current={current?.id === c.id ? 'page' : undefined}>
      <span>{c.name}</span>{c.type !== 'base' && <span class="badge">{c.type}</span>}
    </a>
  );
  const saved = async (c, removed) => {
    setEditing(null);
    await list.reload();
    if (removed) go('collections');
    else if (c) go(`collections/${c.name}`);
  };

  return (
    <div class="split">
      <aside class="side" aria-label="Collections">
        <input type="search" placeholder="Search collections" aria-label="Search collections" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        <button type="button" class="primary" style={{ width: '100%', justifyContent: 'center', marginBottom: '6px' }} onClick={() => setEditing('new')}>+ New collection</button>
        {user.map(item)}
        {system.length > 0 && <div class="group">System</div>}
        {system.map(item)}
      </aside>
      <section>
        <ErrorBox error={list.error} />
        {current ? (
          <Records key={current.id} collection={current} collections={all} onEdit={() => setEditing(current)} />
        ) : (
          !list.loading && <Empty>{all.length ? 'Choose a collection.' : 'No collections yet. Create one to start.'}</Empty>
        )}
      </section>
      {editing && (
        <CollectionEditor
          collection={editing === 'new' ? null : editing}
          collections={all}
          onClose={() => setEditing(null)}
          onSaved={saved}
        />
      )}
    </div>
  );
}
