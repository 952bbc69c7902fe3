// Hash routing (`#/collections/posts`), as PocketBase's dashboard: the server serves one page at /_/,
// and mail templates link to `/_/#/auth/...`.
import { useEffect, useState } from 'preact/hooks';

export function parse() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = h.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

export function useRoute() {
  const [r, setR] = useState(parse);
  useEffect(() => {
    const on = () => setR(parse());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}

export const go = (path) => { location.hash = '#/' + path.replace(/^\/+/, ''); };
export const href = (path) => '#/' + path.replace(/^\/+/, '');
