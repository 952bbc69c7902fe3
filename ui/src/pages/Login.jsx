// Superuser sign-in: password, then an emailed one-time code when MFA asks for it (or OTP alone
// when the superusers collection signs in by code only).
import { useEffect, useState } from 'preact/hooks';
import { errorText, pb, SUPERUSERS } from '../api.js';
import { ErrorBox, Field } from '../ui.jsx';

export function Login() {
  const [methods, setMethods] = useState(null);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [step, setStep] = useState('password'); // password | otp
  const [mfaId, setMfaId] = useState('');
  const [otpId, setOtpId] = useState('');
  const [code, setCode] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const users = pb.collection(SUPERUSERS);

  useEffect(() => {
    users.listAuthMethods().then(setMethods, () => setMethods({ password: { enabled: true } }));
  }, []);
  const passwordOn = methods ? methods.password?.enabled !== false : true;
  const otpOn = !!methods?.otp?.enabled;

  const run = async (f) => {
    setBusy(true); setError('');
    try { await f(); } catch (e) { setError(errorText(e)); } finally { setBusy(false); }
  };
  const sendCode = () => run(async () => {
    const r = await users.requestOTP(email);
    setOtpId(r.otpId); setStep('otp');
  });
  const signIn = (e) => {
    e.preventDefault();
    run(async () => {
      try {
        await users.authWithPassword(email, password);
      } catch (err) {
        const id = err?.response?.mfaId;
        if (!id) throw err;
        setMfaId(id);
        const r = await users.requestOTP(email);
        setOtpId(r.otpId); setStep('otp');
      }
    });
  };
  const withCode = (e) => {
    e.preventDefault();
    run(() => users.authWithOTP(otpId, code.trim(), mfaId ? { mfaId } : {}));
  };

  return (
    <div class="login">
      <form class="card" onSubmit={step === 'otp' ? withCode : signIn} aria-label="Superuser sign-in">
        <h1>Basalt</h1>
        <p class="muted">Sign in as a superuser</p>
        <ErrorBox error={error} />
        {step === 'password' && <>
          <Field label="Email"><input type="email" name="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} autofocus /></Field>
          {passwordOn && <Field label="Password"><input type="password" name="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></Field>}
          {passwordOn && <button class="primary" type="submit" disabled={busy}>Sign in</button>}
          {otpOn && <button type="button" class={passwordOn ? 'link' : 'primary'} disabled={busy || !email} onClick={sendCode}>Email me a sign-in code</button>}
        </>}
        {step === 'otp' && <>
          <p>{mfaId ? 'A second step is required: ' : ''}we sent a one-time code to <b>{email}</b>.</p>
          <Field label="One-time code"><input name="otp" inputmode="numeric" autocomplete="one-time-code" required value={code} onInput={(e) => setCode(e.currentTarget.value)} autofocus /></Field>
          <button class="primary" type="submit" disabled={busy}>Verify</button>
          <button type="button" class="link" onClick={() => { setStep('password'); setMfaId(''); setCode(''); }}>Back</button>
        </>}
      </form>
    </div>
  );
}
