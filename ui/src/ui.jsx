// Small shared pieces: dialogs, form rows, toasts, data loading.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { errorText } from './api.js';

// ---- toasts: one list, shown bottom-right
let toasts = [];
const listeners = new Set();
let seq = 0;
export function toast(text, kind = 'ok') {
  const id = ++seq;
  toasts = [...toasts, { id, text, kind }];
  listeners.forEach((f) => f(toasts));
  setTimeout(() => { toasts = toasts.filter((t) => t.id !== id); listeners.forEach((f) => f(toasts)); }, kind === 'error' ? 8000 : 4000);
}
export const toastError = (e) => toast(errorText(e), 'error');
export function Toasts() {
  const [list, setList] = useState(toasts);
  useEffect(() => { listeners.add(setList); return () => listeners.delete(setList); }, []);
  return (
    <div class="toasts" role="status" aria-live="polite">
      {list.map((t) => <div key={t.id} class={`toast ${t.kind}`}>{t.text}</div>)}
    </div>
  );
}

// ---- a modal dialog: Escape closes, focus goes to the first field
export function Modal({ title, onClose, children, footer, wide }) {
  const ref = useRef();
  useEffect(() => {
    const onKey = (e) => { if (e.key === 'Escape') { e.stopPropagation(); onClose(); } };
    addEventListener('keydown', onKey);
    const first = ref.current?.querySelector('input:not([type=hidden]),select,textarea');
    (first || ref.current)?.focus();
    return () => removeEventListener('keydown', onKey);
  }, []);
  return (
    <div class="overlay" onMouseDown={(e) => { if (e.target === e.currentTarget) onClose(); }}>
      <div class={`modal ${wide ? 'wide' : ''}`} role="dialog" aria-modal="true" aria-label={title} ref={ref} tabIndex={-1}>
        <header><h2>{title}</h2><button type="button" class="icon" aria-label="Close" onClick={onClose}>×</button></header>
        <div class="modal-body">{children}</div>
        {footer && <footer>{footer}</footer>}
      </div>
    </div>
  );
}

// ---- a labelled form row with the server's message under it
// The <label> holds only the caption and the control, so the control's accessible name is the
// caption; the server's message and the hint follow it. `group`: a composite widget (several
// controls) is a <div role=group> named by the caption.
export function Field({ label, error, hint, children, inline, group }) {
  const cls = `field ${inline ? 'inline' : ''} ${error ? 'invalid' : ''}`;
  const notes = <>
    {error && <span class="error" role="alert">{error}</span>}
    {hint && !error && <span class="hint">{hint}</span>}
  </>;
  if (group) return <div class={cls} role="group" aria-label={label}><span class="label">{label}</span>{children}{notes}</div>;
  return <div class={cls}><label class="field-label"><span class="label">{label}</span>{children}</label>{notes}</div>;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return <div class="alert error" role="alert">{typeof error === 'string' ? error : errorText(error)}</div>;
}

// ---- loading data: { data, error, loading, reload }
export function useAsync(fn, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const gen = useRef(0);
  const reload = useCallback(() => {
    const g = ++gen.current;
    setState((s) => ({ ...s, loading: true }));
    return Promise.resolve().then(fn).then(
      (data) => { if (g === gen.current) setState({ data, error: null, loading: false }); },
      (error) => { if (g === gen.current) setState({ data: null, error, loading: false }); },
    );
  }, deps);
  useEffect(() => { reload(); }, [reload]);
  return { ...state, reload };
}

// ---- a button that runs an async action, disabled while it runs, errors to a toast
export function Action({ run, children, class: cls = '', confirm: ask, ...rest }) {
  const [busy, setBusy] = useState(false);
  const click = async (e) => {
    e.preventDefault();
    if (ask && !confirm(ask)) return;
    setBusy(true);
    try { await run(); } catch (err) { toastError(err); } finally { setBusy(false); }
  };
  return <button type="button" class={cls} disabled={busy || rest.disabled} onClick={click} {...rest}>{children}</button>;
}

export function Tabs({ tabs, value, onChange }) {
  return (
    <div class="tabs" role="tablist">
      {tabs.map(([k, label]) => (
        <button type="button" role="tab" aria-selected={value === k} class={value === k ? 'active' : ''} onClick={() => onChange(k)}>{label}</button>
      ))}
    </div>
  );
}

export const Empty = ({ children }) => <div class="empty">{children}</div>;
