// Pages the server's emails and OAuth2 redirect link to: `#/auth/oauth2-redirect-success|failure`,
// `#/auth/confirm-verification/TOKEN`, `#/auth/confirm-password-reset/TOKEN`,
// `#/auth/confirm-email-change/TOKEN`. They need no sign-in.
import { useEffect, useState } from 'preact/hooks';
import { claims, errorText, pb } from '../api.js';
import { ErrorBox, Field } from '../ui.jsx';

export function AuthPages({ parts }) {
  const [what, token = ''] = parts;
  const c = claims(token);
  const coll = pb.collection(c.collectionId || '_superusers');
  const [state, setState] = useState({ done: false, error: '' });
  const [pw, setPw] = useState(''), [pw2, setPw2] = useState(''), [cur, setCur] = useState('');

  useEffect(() => {
    if (what === 'oauth2-redirect-success') setTimeout(() => window.close(), 50);
    if (what === 'confirm-verification') {
      coll.confirmVerification(token).then(() => setState({ done: true }), (e) => setState({ error: errorText(e) }));
    }
  }, [what, token]);

  const submit = async (e, f) => {
    e.preventDefault();
    try { await f(); setState({ done: true }); } catch (err) { setState({ error: errorText(err) }); }
  };
  let body;
  if (what === 'oauth2-redirect-success') body = <p>Signed in. You can close this window and go back to the app.</p>;
  else if (what === 'oauth2-redirect-failure') body = <p>Authentication failed. Close this window and try again from the app.</p>;
  else if (what === 'confirm-verification') body = state.done ? <p>Your email address is verified.</p> : !state.error && <p>Verifying…</p>;
  else if (what === 'confirm-password-reset') body = state.done ? <p>Your password was changed. You can sign in with it now.</p> : (
    <form onSubmit={(e) => submit(e, () => coll.confirmPasswordReset(token, pw, pw2))}>
      <Field label="New password"><input type="password" autocomplete="new-password" required value={pw} onInput={(e) => setPw(e.currentTarget.value)} /></Field>
      <Field label="Repeat the new password"><input type="password" autocomplete="new-password" required value={pw2} onInput={(e) => setPw2(e.currentTarget.value)} /></Field>
      <button class="primary" type="submit">Set password</button>
    </form>
  );
  else if (what === 'confirm-email-change') body = state.done ? <p>Your email address was changed.</p> : (
    <form onSubmit={(e) => submit(e, () => coll.confirmEmailChange(token, cur))}>
      <Field label="Your password"><input type="password" autocomplete="current-password" required value={cur} onInput={(e) => setCur(e.currentTarget.value)} /></Field>
      <button class="primary" type="submit">Confirm the new email</button>
    </form>
  );
  else body = <p>Unknown link.</p>;
  return <div class="login"><div class="card"><h1>Basalt</h1><ErrorBox error={state.error} />{body}</div></div>;
}
