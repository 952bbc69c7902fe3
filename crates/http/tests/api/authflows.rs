//! The auth flows against real peers: mail through an SMTP server, OAuth2 against a provider server,
//! OTP, MFA, TOTP, impersonation, lockout, rate limits, superuser IPs, and no account enumeration.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_error, Backend, TestApp};
use crate::servers::{token_after, use_smtp, Provider, ProviderUser, Smtp};

fn tok(r: &(u16, Value)) -> String {
    r.1["token"].as_str().unwrap_or_default().to_string()
}

async fn login(app: &TestApp, email: &str, pw: &str) -> (u16, Value) {
    app.post(
        "/api/collections/users/auth-with-password",
        None,
        json!({"identity": email, "password": pw}),
    )
    .await
}

/// Verification, password reset and email change, each delivered over SMTP and confirmed with the
/// mailed token; old tokens stop working after the password and the email change.
async fn email_flows_through_smtp(app: TestApp) {
    let smtp = Smtp::start().await;
    use_smtp(&app, &smtp).await;
    let (id, old_token) = app.user("flow@example.com").await;

    // verification
    let r = app
        .post(
            "/api/collections/users/request-verification",
            None,
            json!({"email": "flow@example.com"}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let mail = smtp.wait("flow@example.com", "confirm-verification/").await;
    assert!(mail.contains("Subject: Verify your Acme email"), "{mail}");
    assert!(mail.contains("http://app.test/_/#/auth/confirm-verification/"));
    let vt = token_after(&mail, "confirm-verification/");
    let bad = app
        .post(
            "/api/collections/users/confirm-verification",
            None,
            json!({"token": "nope"}),
        )
        .await;
    assert!(assert_error(&bad, 400)["token"]["code"].is_string());
    let r = app
        .post(
            "/api/collections/users/confirm-verification",
            None,
            json!({"token": vt}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let me = app
        .get(&format!("/api/collections/users/records/{id}"), app.su())
        .await;
    assert_eq!(me.1["verified"], json!(true));

    // password reset: the old token dies, the new password works
    let r = app
        .post(
            "/api/collections/users/request-password-reset",
            None,
            json!({"email": "flow@example.com"}),
        )
        .await;
    assert_eq!(r.0, 204);
    let mail = smtp
        .wait("flow@example.com", "confirm-password-reset/")
        .await;
    let rt = token_after(&mail, "confirm-password-reset/");
    let mismatch = app
        .post(
            "/api/collections/users/confirm-password-reset",
            None,
            json!({"token": rt, "password": "newpass1234", "passwordConfirm": "other1234"}),
        )
        .await;
    assert_eq!(
        assert_error(&mismatch, 400)["passwordConfirm"]["code"],
        "validation_values_mismatch"
    );
    let r = app
        .post(
            "/api/collections/users/confirm-password-reset",
            None,
            json!({"token": rt, "password": "newpass1234", "passwordConfirm": "newpass1234"}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let again = app
        .post(
            "/api/collections/users/confirm-password-reset",
            None,
            json!({"token": rt, "password": "newpass5678", "passwordConfirm": "newpass5678"}),
        )
        .await;
    assert_error(&again, 400);
    let refresh = app
        .post(
            "/api/collections/users/auth-refresh",
            Some(&old_token),
            json!({}),
        )
        .await;
    assert_eq!(refresh.0, 401, "old token after reset: {}", refresh.1);
    assert_eq!(login(&app, "flow@example.com", "password123").await.0, 400);
    let l = login(&app, "flow@example.com", "newpass1234").await;
    assert_eq!(l.0, 200, "{}", l.1);
    let t = tok(&l);

    // email change: mailed to the new address, needs the password
    let same = app
        .post(
            "/api/collections/users/request-email-change",
            Some(&t),
            json!({"newEmail": "flow@example.com"}),
        )
        .await;
    assert_error(&same, 400);
    let guest = app
        .post(
            "/api/collections/users/request-email-change",
            None,
            json!({"newEmail": "moved@example.com"}),
        )
        .await;
    assert_error(&guest, 401);
    let r = app
        .post(
            "/api/collections/users/request-email-change",
            Some(&t),
            json!({"newEmail": "moved@example.com"}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let mail = smtp
        .wait("moved@example.com", "confirm-email-change/")
        .await;
    let et = token_after(&mail, "confirm-email-change/");
    let wrong = app
        .post(
            "/api/collections/users/confirm-email-change",
            None,
            json!({"token": et, "password": "not-it-1234"}),
        )
        .await;
    assert_eq!(
        assert_error(&wrong, 400)["password"]["code"],
        "validation_invalid_password"
    );
    let r = app
        .post(
            "/api/collections/users/confirm-email-change",
            None,
            json!({"token": et, "password": "newpass1234"}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert_eq!(
        app.post("/api/collections/users/auth-refresh", Some(&t), json!({}))
            .await
            .0,
        401,
        "the token before the email change is revoked"
    );
    let l = login(&app, "moved@example.com", "newpass1234").await;
    assert_eq!(l.0, 200, "{}", l.1);
    assert_eq!(l.1["record"]["email"], "moved@example.com");
    assert_eq!(l.1["record"]["verified"], json!(true));
}

/// Known and unknown emails get the same answers; the unknown one gets no mail.
async fn no_account_enumeration(app: TestApp) {
    let smtp = Smtp::start().await;
    use_smtp(&app, &smtp).await;
    app.user("known@example.com").await;
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"otp": {"enabled": true}}),
    )
    .await;
    for path in ["request-verification", "request-password-reset"] {
        let a = app
            .post(
                &format!("/api/collections/users/{path}"),
                None,
                json!({"email": "known@example.com"}),
            )
            .await;
        let b = app
            .post(
                &format!("/api/collections/users/{path}"),
                None,
                json!({"email": "unknown@example.com"}),
            )
            .await;
        assert_eq!((a.0, &a.1), (204, &Value::Null), "{path}");
        assert_eq!((b.0, &b.1), (204, &Value::Null), "{path}");
    }
    let a = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "known@example.com"}),
        )
        .await;
    let b = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "unknown@example.com"}),
        )
        .await;
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(
        a.1["otpId"].as_str().map(str::len),
        b.1["otpId"].as_str().map(str::len)
    );
    let wrong = login(&app, "known@example.com", "wrong-pass-1").await;
    let unknown = login(&app, "unknown@example.com", "wrong-pass-1").await;
    assert_eq!(wrong, unknown);
    // Three mails for the known address (verification, reset, OTP); none for the unknown one.
    smtp.wait("known@example.com", "one-time password").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp
        .all()
        .iter()
        .all(|m| !m.contains("unknown@example.com")));
}

/// OTP alone, then MFA (password + OTP) with the protocol's errors, then the tries limit.
async fn otp_and_mfa(app: TestApp) {
    let smtp = Smtp::start().await;
    use_smtp(&app, &smtp).await;
    let (id, _) = app.user("otp@example.com").await;
    let off = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp@example.com"}),
        )
        .await;
    assert_error(&off, 403);
    let r = app
        .patch(
            "/api/collections/users",
            app.su(),
            json!({"otp": {"enabled": true, "length": 6}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let otp_id = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp@example.com"}),
        )
        .await
        .1["otpId"]
        .as_str()
        .expect("otpId")
        .to_string();
    let mail = smtp.wait("otp@example.com", "one-time password").await;
    let code = otp_code(&mail, 6);
    let bad = app
        .post(
            "/api/collections/users/auth-with-otp",
            None,
            json!({"otpId": otp_id, "password": "000000x"}),
        )
        .await;
    assert_eq!(assert_error(&bad, 400), json!({}));
    let ok = app
        .post(
            "/api/collections/users/auth-with-otp",
            None,
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(ok.1["record"]["id"], json!(id));
    assert_eq!(
        ok.1["record"]["verified"],
        json!(true),
        "OTP to the email verifies it"
    );
    let reuse = app
        .post(
            "/api/collections/users/auth-with-otp",
            None,
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_error(&reuse, 400);

    // MFA: password first → 401 {mfaId}; the same method again → 400; OTP second → token.
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"mfa": {"enabled": true}}),
    )
    .await;
    let first = login(&app, "otp@example.com", "password123").await;
    assert_eq!(first.0, 401, "{}", first.1);
    let mfa_id = first.1["mfaId"].as_str().expect("mfaId").to_string();
    assert_eq!(first.1.as_object().map(|o| o.len()), Some(1));
    let same = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "otp@example.com", "password": "password123", "mfaId": mfa_id}),
        )
        .await;
    assert_eq!(
        assert_error(&same, 400),
        json!({}),
        "same method: {}",
        same.1
    );
    let bogus = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "otp@example.com", "password": "password123", "mfaId": "nope"}),
        )
        .await;
    assert_eq!(bogus.1["message"], "Invalid or expired MFA session.");
    let otp_id = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp@example.com"}),
        )
        .await
        .1["otpId"]
        .as_str()
        .expect("otpId")
        .to_string();
    let mail = smtp
        .wait_nth("otp@example.com", "one-time password", 2)
        .await;
    let code = otp_code(&mail, 6);
    let done = app
        .post(
            &format!("/api/collections/users/auth-with-otp?mfaId={mfa_id}"),
            None,
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_eq!(done.0, 200, "{}", done.1);
    assert!(done.1["token"].is_string());

    // Tries: five per record in 180 s, then 429 even with the right code.
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"mfa": {"enabled": false}}),
    )
    .await;
    let otp_id = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp@example.com"}),
        )
        .await
        .1["otpId"]
        .as_str()
        .expect("otpId")
        .to_string();
    let mail = smtp
        .wait_nth("otp@example.com", "one-time password", 3)
        .await;
    let code = otp_code(&mail, 6);
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(
            app.post(
                "/api/collections/users/auth-with-otp",
                None,
                json!({"otpId": otp_id, "password": "999999x"}),
            )
            .await
            .0,
        );
    }
    let limited = app
        .post(
            "/api/collections/users/auth-with-otp",
            None,
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    // Tries so far on this record: one wrong, two right; two more wrong use up the five.
    assert_eq!(statuses, vec![400, 400, 429, 429]);
    assert_eq!(limited.0, 429, "{}", limited.1);
}

pub fn otp_code(mail: &str, len: usize) -> String {
    let i = mail.find("<strong>").expect("code in mail") + 8;
    let code: String = mail[i..].chars().take(len).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{code}");
    code
}

impl Smtp {
    /// The n-th (1-based) message for `to` containing `needle`.
    pub async fn wait_nth(&self, to: &str, needle: &str, n: usize) -> String {
        for _ in 0..200 {
            let found: Vec<String> = self
                .all()
                .into_iter()
                .map(|m| m.replace("=\r\n", "").replace("=3D", "="))
                .filter(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} mails to {to}");
    }
}

fn totp_now(secret: &str) -> String {
    let t = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).expect("b32"))
        .with_account_name("x")
        .build()
        .expect("totp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    t.generate(now).to_string()
}

/// TOTP: enrol, confirm, sign in with password + TOTP, a code is accepted once, a recovery code
/// works once, disable.
async fn totp_second_factor(app: TestApp) {
    let (_, t) = app.user("totp@example.com").await;
    let e = app
        .post("/api/collections/users/totp/enroll", Some(&t), json!({}))
        .await;
    assert_eq!(e.0, 200, "{}", e.1);
    let secret = e.1["secret"].as_str().expect("secret").to_string();
    let uri = e.1["otpauthURI"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")));
    let wrong = app
        .post(
            "/api/collections/users/totp/confirm",
            Some(&t),
            json!({"code": "000000"}),
        )
        .await;
    assert_error(&wrong, 400);
    // Confirm early in a 30 s step, so the replay below falls in the same step.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        % 30
        > 20
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let confirm_code = totp_now(&secret);
    let c = app
        .post(
            "/api/collections/users/totp/confirm",
            Some(&t),
            json!({"code": confirm_code}),
        )
        .await;
    assert_eq!(c.0, 200, "{}", c.1);
    let codes: Vec<String> = c.1["recoveryCodes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    // The secret and codes are not readable through the records API, not even by superusers.
    let rows = app.get("/api/collections/_totps/records", app.su()).await;
    assert_error(&rows, 404);

    // Password now answers a challenge; TOTP completes it.
    let first = login(&app, "totp@example.com", "password123").await;
    assert_eq!(first.0, 401, "{}", first.1);
    let mfa = first.1["mfaId"].as_str().expect("mfaId").to_string();
    // The code used to confirm was consumed: replaying it in the same step is refused.
    let replay = app
        .post(
            "/api/collections/users/auth-with-totp",
            None,
            json!({"mfaId": mfa, "code": confirm_code}),
        )
        .await;
    assert_eq!(
        assert_error(&replay, 400)["code"]["code"],
        "validation_invalid_totp_code"
    );
    // A replay does not burn the MFA session; a recovery code completes it.
    let r = app
        .post(
            "/api/collections/users/auth-with-totp",
            None,
            json!({"mfaId": mfa, "code": codes[0]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let token = tok(&r);
    assert!(!token.is_empty());
    // A recovery code works once.
    let first = login(&app, "totp@example.com", "password123").await;
    let mfa = first.1["mfaId"].as_str().expect("mfaId").to_string();
    let r = app
        .post(
            "/api/collections/users/auth-with-totp",
            None,
            json!({"mfaId": mfa, "code": codes[1]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let first = login(&app, "totp@example.com", "password123").await;
    let mfa = first.1["mfaId"].as_str().expect("mfaId").to_string();
    let r = app
        .post(
            "/api/collections/users/auth-with-totp",
            None,
            json!({"mfaId": mfa, "code": codes[1]}),
        )
        .await;
    assert_error(&r, 400);
    // Disable with a recovery code; password alone signs in again.
    let d = app
        .post(
            "/api/collections/users/totp/disable",
            Some(&token),
            json!({"code": codes[2]}),
        )
        .await;
    assert_eq!(d.0, 204, "{}", d.1);
    assert_eq!(login(&app, "totp@example.com", "password123").await.0, 200);
}

/// Five wrong passwords, then refusal (even of the right one) for a growing interval, with
/// Retry-After; an unknown identity is treated the same; another identity is unaffected.
async fn progressive_lockout(app: TestApp) {
    app.user("lock@example.com").await;
    app.user("free@example.com").await;
    for who in ["lock@example.com", "ghost@example.com"] {
        for i in 0..5 {
            assert_eq!(
                login(&app, who, "wrong-pass-1").await.0,
                400,
                "{who} try {i}"
            );
        }
        let url = format!("{}/api/collections/users/auth-with-password", app.url);
        let r = app
            .client
            .post(&url)
            .json(&json!({"identity": who, "password": "password123"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 429, "{who}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("h")
            .parse()
            .expect("secs");
        assert!((1..=2).contains(&wait), "{wait}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["status"], 429);
        assert_eq!(login(&app, "free@example.com", "password123").await.0, 200);
        tokio::time::sleep(Duration::from_secs(wait)).await;
        assert_eq!(login(&app, who, "wrong-pass-1").await.0, 400);
        let r = app
            .client
            .post(&url)
            .json(&json!({"identity": who, "password": "password123"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 429);
        let wait2: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("h")
            .parse()
            .expect("secs");
        assert!(wait2 > wait, "the lock grows: {wait} then {wait2}");
    }
}

/// A configured rule answers 429 with Retry-After past its budget; other routes and health stay up.
async fn rate_limit_rules(app: TestApp) {
    app.collection(json!({"name": "rl", "type": "base", "listRule": "", "fields": [{"name": "t", "type": "text"}]}))
        .await;
    let bad = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"rules": [{"label": "bogus label!", "maxRequests": 0, "duration": 1}]}}),
        )
        .await;
    let d = assert_error(&bad, 400);
    assert_eq!(
        d["rateLimits"]["rules"]["0"]["label"]["code"],
        "validation_match_invalid"
    );
    assert!(d["rateLimits"]["rules"]["0"]["maxRequests"].is_object());
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"enabled": true, "rules": [{"label": "rl:list", "maxRequests": 3, "duration": 30, "audience": ""}]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let mut codes = vec![];
    let mut retry = None;
    for _ in 0..8 {
        let res = app
            .client
            .get(format!("{}/api/collections/rl/records", app.url))
            .send()
            .await
            .expect("send");
        codes.push(res.status().as_u16());
        if res.status().as_u16() == 429 {
            retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_string());
            let body: Value = res.json().await.expect("json");
            assert_eq!(
                body,
                json!({"data": {}, "message": "Too Many Requests.", "status": 429})
            );
        }
    }
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    let secs: u64 = retry.expect("Retry-After").parse().expect("int");
    assert!((1..=10).contains(&secs), "{secs}");
    assert_eq!(app.get("/api/health", None).await.0, 200);
    // Superusers are not limited.
    assert_eq!(
        app.get("/api/collections/rl/records", app.su()).await.0,
        200
    );
}

/// Impersonation (superusers only, non-refreshable) and the superuser IP allow-list.
async fn impersonate_and_superuser_ips(app: TestApp) {
    let (id, user_token) = app.user("imp@example.com").await;
    let denied = app
        .post(
            &format!("/api/collections/users/impersonate/{id}"),
            Some(&user_token),
            json!({}),
        )
        .await;
    assert_error(&denied, 403);
    let neg = app
        .post(
            &format!("/api/collections/users/impersonate/{id}"),
            app.su(),
            json!({"duration": -1}),
        )
        .await;
    assert!(assert_error(&neg, 400)["duration"].is_object());
    let r = app
        .post(
            &format!("/api/collections/users/impersonate/{id}"),
            app.su(),
            json!({"duration": 3600}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let t = tok(&r);
    let claims = basalt_service::auth::peek_claims(&t).expect("claims");
    assert_eq!(claims["refreshable"], json!(false));
    let exp = claims["exp"].as_i64().expect("exp") - chrono::Utc::now().timestamp();
    assert!((3590..=3600).contains(&exp), "{exp}");
    let again = app
        .post("/api/collections/users/auth-refresh", Some(&t), json!({}))
        .await;
    assert_eq!(tok(&again), t, "a non-refreshable token is echoed");
    let own = app
        .get(&format!("/api/collections/users/records/{id}"), Some(&t))
        .await;
    assert_eq!(own.0, 200);

    // Allow-list without this client's address: superuser tokens and sign-ins are refused.
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"superuserIPs": ["10.9.8.0/24"]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let s = app.get("/api/settings", app.su()).await;
    assert_error(&s, 403);
    let l = app
        .post(
            "/api/collections/_superusers/auth-with-password",
            None,
            json!({"identity": "admin@example.com", "password": "password123"}),
        )
        .await;
    assert_error(&l, 403);
    // Refused before the password is checked: a wrong one gets the same answer.
    let wrong = app
        .post(
            "/api/collections/_superusers/auth-with-password",
            None,
            json!({"identity": "admin@example.com", "password": "not-the-password"}),
        )
        .await;
    assert_eq!(wrong, l);
    assert_eq!(app.get("/api/health", None).await.0, 200);
    assert_eq!(login(&app, "imp@example.com", "password123").await.0, 200);
    // Restore through the store (as an operator would with the CLI).
    app.ctx.set_settings({
        let mut s = app.ctx.settings();
        s["superuserIPs"] = json!(["127.0.0.1", "::1"]);
        s
    });
    assert_eq!(app.get("/api/settings", app.su()).await.0, 200);
}

/// OAuth2 code flow against the in-test provider: sign-up (createRule, mapped fields, the avatar
/// downloaded into a file field), sign-in again links to the same record, linking by email,
/// external auths listed and cleaned up.
async fn oauth2_code_flow(app: TestApp) {
    let p = Provider::start("cid-1", "secret-1").await;
    let cfg = p.config("google", "cid-1", "secret-1");
    app.collection(json!({"name": "members", "type": "auth", "createRule": "",
        "listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id",
        "fields": [{"name": "name", "type": "text"},
                   {"name": "avatar", "type": "file", "maxSelect": 1, "mimeTypes": ["image/png"]}],
        "oauth2": {"enabled": true, "mappedFields": {"name": "name", "avatarURL": "avatar"}, "providers": [cfg]}}))
        .await;
    // The client secret is stored but never shown.
    let c = app.get("/api/collections/members", app.su()).await;
    assert_eq!(c.1["oauth2"]["providers"][0].get("clientSecret"), None);
    assert_eq!(c.1["oauth2"]["providers"][0]["clientId"], "cid-1");

    let redirect = "http://localhost:5173/callback";
    let sign_in = |user: ProviderUser, token: Option<String>| {
        let app = &app;
        let p = p.clone();
        async move {
            p.sign_in_as(user);
            let m = app.get("/api/collections/members/auth-methods", None).await;
            assert_eq!(m.0, 200, "{}", m.1);
            let prov = &m.1["oauth2"]["providers"][0];
            let auth_url = prov["authURL"].as_str().expect("authURL");
            assert!(auth_url.ends_with("&redirect_uri="), "{auth_url}");
            assert_eq!(prov["codeChallengeMethod"], "S256");
            let (code, state) = p.authorize(&format!("{auth_url}{redirect}")).await;
            assert_eq!(state, prov["state"].as_str().unwrap_or(""));
            app.post(
                "/api/collections/members/auth-with-oauth2",
                token.as_deref(),
                json!({"provider": "google", "code": code,
                       "codeVerifier": prov["codeVerifier"], "redirectURL": redirect,
                       "createData": {"emailVisibility": true}}),
            )
            .await
        }
    };
    let alice = ProviderUser {
        sub: "g-alice".into(),
        email: "alice@example.com".into(),
        name: "Alice A".into(),
    };
    let r = sign_in(alice.clone(), None).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["meta"]["isNew"], json!(true));
    assert_eq!(r.1["meta"]["id"], "g-alice");
    assert_eq!(r.1["meta"]["email"], "alice@example.com");
    assert_eq!(r.1["meta"]["accessToken"].as_str().map(str::len), Some(24));
    assert_eq!(r.1["record"]["name"], "Alice A", "mapped field");
    // The provider's picture is downloaded into the file field, as PocketBase does.
    let file = r.1["record"]["avatar"].as_str().unwrap_or("").to_string();
    assert!(
        file.starts_with("avatar_") && file.ends_with(".png"),
        "{}",
        r.1
    );
    let got = app
        .client
        .get(format!(
            "{}/api/files/members/{}/{file}",
            app.url,
            r.1["record"]["id"].as_str().unwrap_or("")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.bytes().await.unwrap().to_vec(),
        crate::servers::avatar_png()
    );
    assert_eq!(r.1["record"]["verified"], json!(true));
    let alice_id = r.1["record"]["id"].as_str().expect("id").to_string();
    let alice_token = tok(&r);
    let r = sign_in(alice.clone(), None).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["meta"]["isNew"], json!(false));
    assert_eq!(r.1["record"]["id"], json!(alice_id));

    // A bad code / wrong verifier → "Failed to fetch OAuth2 token."
    let r = app
        .post(
            "/api/collections/members/auth-with-oauth2",
            None,
            json!({"provider": "google", "code": "bogus", "codeVerifier": "x", "redirectURL": redirect}),
        )
        .await;
    assert_eq!(r.1["message"], "Failed to fetch OAuth2 token.");
    let r = app
        .post(
            "/api/collections/members/auth-with-oauth2",
            None,
            json!({"provider": "github", "code": "c", "redirectURL": redirect}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["provider"]["code"],
        "validation_invalid_provider"
    );

    // Linking by email: an existing verified member signs in with the provider for the first time.
    app.record(
        "members",
        json!({"email": "bob@example.com", "password": "password123", "passwordConfirm": "password123", "verified": true}),
    )
    .await;
    let r = sign_in(
        ProviderUser {
            sub: "g-bob".into(),
            email: "bob@example.com".into(),
            name: "Bob".into(),
        },
        None,
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["meta"]["isNew"], json!(false));
    let bob = app
        .post(
            "/api/collections/members/auth-with-password",
            None,
            json!({"identity": "bob@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(bob.0, 200, "a verified account keeps its password");

    // External auths: the owner sees its own links only; deleting the record removes them.
    let list = app
        .get_q(
            "/api/collections/_externalAuths/records",
            Some(&alice_token),
            &[("filter", &format!("recordRef = '{alice_id}'"))],
        )
        .await;
    assert_eq!(list.0, 200, "{}", list.1);
    assert_eq!(list.1["totalItems"], json!(1));
    assert_eq!(list.1["items"][0]["provider"], "google");
    assert_eq!(list.1["items"][0]["providerId"], "g-alice");
    let all = app
        .get(
            "/api/collections/_externalAuths/records",
            Some(&alice_token),
        )
        .await;
    assert_eq!(all.1["totalItems"], json!(1), "only its own");
    let del = app
        .delete(
            &format!("/api/collections/members/records/{alice_id}"),
            app.su(),
        )
        .await;
    assert_eq!(del.0, 204);
    let left = app
        .get("/api/collections/_externalAuths/records", app.su())
        .await;
    assert_eq!(
        left.1["totalItems"],
        json!(1),
        "bob's link only: {}",
        left.1
    );

    // A picture the field refuses (PNG where only JPEG goes): the account is made without it.
    let mut fields = app.get("/api/collections/members", app.su()).await.1["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        if f["name"] == "avatar" {
            f["mimeTypes"] = json!(["image/jpeg"]);
        }
    }
    let r = app
        .patch(
            "/api/collections/members",
            app.su(),
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = sign_in(
        ProviderUser {
            sub: "g-dave".into(),
            email: "dave@example.com".into(),
            name: "Dave".into(),
        },
        None,
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["record"]["avatar"], "", "{}", r.1);

    // createRule null: the provider user cannot sign up.
    app.patch(
        "/api/collections/members",
        app.su(),
        json!({"createRule": null}),
    )
    .await;
    let r = sign_in(
        ProviderUser {
            sub: "g-carol".into(),
            email: "carol@example.com".into(),
            name: "Carol".into(),
        },
        None,
    )
    .await;
    assert_error(&r, 403);
}

/// With no SMTP configured, mail lands in the dev mailbox folder.
async fn dev_mailbox(app: TestApp, dir: std::path::PathBuf) {
    app.user("box@example.com").await;
    let r = app
        .post(
            "/api/collections/users/request-verification",
            None,
            json!({"email": "box@example.com"}),
        )
        .await;
    assert_eq!(r.0, 204);
    for _ in 0..100 {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let files: Vec<_> = rd
                .flatten()
                .filter(|f| f.path().extension().is_some_and(|e| e == "eml"))
                .collect();
            if let Some(f) = files.first() {
                let text = std::fs::read_to_string(f.path()).expect("read");
                assert!(text.contains("To: box@example.com"), "{text}");
                assert!(text.contains("confirm-verification/"));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail in {}", dir.display());
}

/// Providers from PocketBase's table with their own request shapes, against the test provider
/// (which refuses a call made the wrong way): the authorization URL's scope and PKCE, the userinfo
/// call, the answer mapped to the record.
async fn oauth2_table_provider(app: TestApp) {
    // (provider, userinfo path, expected username) — Notion: a header; Linear: a GraphQL POST
    // without PKCE; Gitea: the email from the emails list beside the user.
    for (name, path, username) in [
        ("notion", "/notion/users/me", ""),
        ("linear", "/graphql", "lin"),
        ("gitea", "/gitea/user", "x-erin"),
    ] {
        let p = Provider::start("cid-n", "secret-n").await;
        let mut cfg = p.config(name, "cid-n", "secret-n");
        cfg["userInfoURL"] = json!(format!("{}{path}", p.url));
        let coll = format!("{name}_users");
        app.collection(json!({"name": coll, "type": "auth", "createRule": "",
            "fields": [{"name": "name", "type": "text"}, {"name": "username", "type": "text"}],
            "oauth2": {"enabled": true, "mappedFields": {"name": "name", "username": "username"},
                       "providers": [cfg]}}))
            .await;
        let sub = if name == "gitea" { "x-erin" } else { "n-erin" };
        p.sign_in_as(ProviderUser {
            sub: sub.into(),
            email: format!("erin.{name}@example.com"),
            name: "Erin N".into(),
        });
        let m = app
            .get(&format!("/api/collections/{coll}/auth-methods"), None)
            .await;
        let prov = &m.1["oauth2"]["providers"][0];
        let auth_url = prov["authURL"].as_str().expect("authURL");
        // Notion has no scopes, so no `scope` parameter; Linear refuses PKCE.
        assert_eq!(auth_url.contains("scope="), name != "notion", "{auth_url}");
        assert_eq!(
            auth_url.contains("code_challenge="),
            name != "linear",
            "{auth_url}"
        );
        let redirect = "http://localhost:5173/callback";
        let (code, _) = p.authorize(&format!("{auth_url}{redirect}")).await;
        let r = app
            .post(
                &format!("/api/collections/{coll}/auth-with-oauth2"),
                None,
                json!({"provider": name, "code": code, "codeVerifier": prov["codeVerifier"],
                       "redirectURL": redirect}),
            )
            .await;
        assert_eq!(r.0, 200, "{name}: {}", r.1);
        let expected_id = if name == "gitea" { "7" } else { sub };
        assert_eq!(r.1["meta"]["id"], expected_id, "{name}");
        assert_eq!(
            r.1["record"]["email"],
            format!("erin.{name}@example.com"),
            "{name}"
        );
        assert_eq!(r.1["record"]["name"], "Erin N", "{name}");
        assert_eq!(r.1["record"]["username"], username, "{name}");
        assert_eq!(r.1["record"]["verified"], json!(true), "{name}");
    }
}

/// A provider answer over 1 MiB fails the sign-in instead of being buffered whole.
async fn oauth2_oversized_answer_is_refused(app: TestApp) {
    let p = Provider::start("cid-h", "secret-h").await;
    let mut cfg = p.config("google", "cid-h", "secret-h");
    cfg["userInfoURL"] = json!(format!("{}/huge", p.url));
    app.collection(
        json!({"name": "huge_users", "type": "auth", "createRule": "",
        "oauth2": {"enabled": true, "providers": [cfg]}}),
    )
    .await;
    p.sign_in_as(ProviderUser {
        sub: "h".into(),
        email: "h@example.com".into(),
        name: "H".into(),
    });
    let m = app
        .get("/api/collections/huge_users/auth-methods", None)
        .await;
    let prov = &m.1["oauth2"]["providers"][0];
    let redirect = "http://localhost:5173/callback";
    let auth_url = prov["authURL"].as_str().expect("authURL");
    let (code, _) = p.authorize(&format!("{auth_url}{redirect}")).await;
    let r = app
        .post(
            "/api/collections/huge_users/auth-with-oauth2",
            None,
            json!({"provider": "google", "code": code, "codeVerifier": prov["codeVerifier"],
                   "redirectURL": redirect}),
        )
        .await;
    crate::helpers::assert_error(&r, 400);
    assert_eq!(r.1["message"], "Failed to fetch OAuth2 user.", "{}", r.1);
}

crate::both!(
    email_flows_through_smtp,
    otp_and_mfa,
    oauth2_code_flow,
    oauth2_table_provider,
    oauth2_oversized_answer_is_refused
);

mod sqlite_only {
    use super::*;
    use crate::helpers::spawn_app;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_enumeration() {
        no_account_enumeration(spawn_app(Backend::Sqlite).await).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn totp() {
        totp_second_factor(spawn_app(Backend::Sqlite).await).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lockout() {
        progressive_lockout(spawn_app(Backend::Sqlite).await).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limits() {
        rate_limit_rules(spawn_app(Backend::Sqlite).await).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn impersonation_and_ips() {
        impersonate_and_superuser_ips(spawn_app(Backend::Sqlite).await).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mailbox() {
        let dir =
            std::env::temp_dir().join(format!("basalt-mailbox-{}", basalt_core::id::random_id(8)));
        let app = crate::helpers::spawn_app_with(
            Backend::Sqlite,
            basalt_http::Options {
                mailbox: Some(dir.clone()),
                ..Default::default()
            },
        )
        .await;
        dev_mailbox(app, dir.clone()).await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
