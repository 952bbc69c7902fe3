//! The auth endpoints of §4: password sign-in (with lockout), refresh, auth methods, the email flows
//! (verification, password reset, email change), impersonation, and the one sign-in tail every method
//! shares ([`complete_signin`]: superuser IPs, authRule, MFA, new-login alert, token).
//!
//! **Invariants:** no endpoint answers differently for an unknown email (request-* always 204, the
//! OTP id is faked, wrong identity and wrong password give one error and one timing); every token
//! issue checks authRule; a password or email change rotates `tokenKey`, revoking every token.

use std::sync::Arc;
use std::time::Duration;

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_core::sql::Value;
use basalt_core::{Error, FieldError, FieldErrors};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use super::admit;
use super::mail::{self, Template};
use super::mfa::{self, Gate};
use super::{new_auth_token, new_typed_token, verify_typed_token, Caller, TokenKind};
use crate::error::{bad, forbidden, not_found, unauthorized, ServiceError, ServiceResult};
use crate::limits::{Action, SignInMethod};
use crate::records;
use crate::request::Req;
use crate::AppCtx;

/// Resend guard of the request-* mails, per record.
const RESEND_GUARD: Duration = Duration::from_secs(120);

pub fn auth_collection(ctx: &AppCtx, key: &str) -> ServiceResult<Arc<Collection>> {
    match ctx.collection(key) {
        None => Err(ServiceError(Error::NotFound(
            "Missing or invalid collection context.".into(),
        ))),
        Some(c) if !c.is_auth() => Err(ServiceError(Error::NotFound(
            "Missing or invalid auth collection context.".into(),
        ))),
        Some(c) => Ok(c),
    }
}

pub fn body_str(body: &Json, k: &str) -> String {
    match body.get(k) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A 400 with one field error, in the protocol's validation shape.
pub fn invalid(field: &str, err: FieldError) -> ServiceError {
    let mut f = FieldErrors::new();
    f.insert(field.into(), err);
    invalid_all(f)
}

/// A 400 with these field errors.
pub fn invalid_all(errs: FieldErrors) -> ServiceError {
    ServiceError(Error::validation(
        "An error occurred while validating the submitted data.",
        errs,
    ))
}

/// `Err` with the field errors, if any.
pub fn check_fields(errs: FieldErrors) -> ServiceResult<()> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid_all(errs))
    }
}

fn rec_str<'a>(d: &'a Data, k: &str) -> &'a str {
    d.get(k).and_then(Json::as_str).unwrap_or("")
}

pub async fn find_by_email(
    ctx: &AppCtx,
    coll: &Collection,
    email: &str,
) -> ServiceResult<Option<Data>> {
    let Some(f) = coll.field("email") else {
        return Ok(None);
    };
    let mut s = ctx.sql();
    s.push("SELECT \"id\" FROM ")
        .ident(&coll.name)
        .push(" WHERE ");
    crate::pii::eq_condition(ctx, coll, f, email, &mut s)?;
    s.push(" LIMIT 1");
    match ctx.store.query(&s).await?.scalar() {
        Some(id) => records::load_record(ctx, coll, &id.into_string()).await,
        None => Ok(None),
    }
}

/// The caller, who must be a record of collection `c` (401 without auth, 403 for another collection).
pub fn require_same_collection(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
) -> ServiceResult<(Arc<Collection>, Caller)> {
    let coll = auth_collection(ctx, c)?;
    let Some(caller) = req.auth.clone() else {
        return Err(unauthorized(
            "The request requires valid record authorization token.",
        ));
    };
    if caller.collection.id != coll.id {
        return Err(forbidden(&format!(
            "The request requires auth record from {} collection.",
            caller.collection.name
        )));
    }
    Ok((coll, caller))
}

/// Checks authRule for a record about to receive a token.
pub async fn check_auth_rule(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rec: &Data,
    requester_is_superuser: bool,
) -> ServiceResult<()> {
    let rule = coll.auth.as_ref().and_then(|a| a.auth_rule.clone());
    let deny =
        || forbidden("The request doesn't satisfy the collection requirements to authenticate.");
    match rule {
        None if requester_is_superuser => Ok(()),
        None => Err(deny()),
        Some(r) if r.trim().is_empty() => Ok(()),
        Some(r) => {
            let info = RequestInfo {
                auth: Some((coll.clone(), rec.clone())),
                context: "default".into(),
                ..Default::default()
            };
            let id = rec_str(rec, "id");
            match records::fetch_with_rule(ctx, coll, id, &Some(r), &info, None).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(deny()),
                Err(e) => Err(e),
            }
        }
    }
}

/// The protocol's auth answer `{record, token, meta?}`: the record shaped as its owner sees it
/// (expand, `fields`).
async fn auth_response(
    ctx: &AppCtx,
    req: &Req,
    coll: &Arc<Collection>,
    rec: Data,
    token: String,
    meta: Option<Json>,
) -> ServiceResult<Json> {
    let info = RequestInfo {
        auth: Some((coll.clone(), rec.clone())),
        route: format!("{} {}", req.method, req.path),
        ip: req.ip.to_string(),
        ..Default::default()
    };
    let out = records::render(ctx, coll, vec![rec], &req.query, &info).await?;
    let mut body = json!({"record": out.into_iter().next().unwrap_or_default(), "token": token});
    if let Some(m) = meta {
        body["meta"] = m;
    }
    Ok(records::shape(&req.query, body))
}

/// What a sign-in ends in.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the protocol's `{record, token, meta?}` body, already shaped by `fields`.
    Token(Json),
    /// The first factor passed; a second, different method must complete MFA session `mfa_id`.
    MfaRequired { mfa_id: String },
}

/// A successful first (or second) factor, on its way to a token.
pub struct Signin<'a> {
    pub coll: &'a Arc<Collection>,
    pub rec: Data,
    pub method: SignInMethod,
    pub mfa_id: Option<String>,
    pub meta: Option<Json>,
}

/// The start every sign-in shares, before any secret is checked: the auth collection, the rate limits
/// of `SignIn{method}` (configured rules and the built-in auth limit), and the superuser IP guard (a
/// `_superusers` sign-in from outside `superuserIPs` is refused, so the answer does not depend on the
/// password).
pub async fn begin_signin(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    method: SignInMethod,
) -> ServiceResult<Arc<Collection>> {
    let coll = auth_collection(ctx, c)?;
    admit(ctx, req, Some(&coll), Some(Action::SignIn(method))).await?;
    if coll.is_superusers() && !ctx.policy().superuser_ip_allowed(req.ip) {
        return Err(super::superuser_ip_denied());
    }
    Ok(coll)
}

/// The tail every sign-in shares (after [`begin_signin`]): authRule, the MFA gate, the new-login
/// alert, then a refreshable token.
pub async fn complete_signin(ctx: &AppCtx, req: &Req, s: Signin<'_>) -> ServiceResult<SignIn> {
    check_auth_rule(ctx, s.coll, &s.rec, req.is_superuser()).await?;
    if let Gate::Challenge(mfa_id) =
        mfa::gate(ctx, s.coll, &s.rec, s.method.name(), s.mfa_id.as_deref()).await?
    {
        return Ok(SignIn::MfaRequired { mfa_id });
    }
    login_alert(ctx, s.coll, &s.rec, req).await?;
    let token = new_auth_token(s.coll, &s.rec, true, None);
    auth_response(ctx, req, s.coll, s.rec, token, s.meta)
        .await
        .map(SignIn::Token)
}

/// Checks the caller may do `action` on auth collection `c` (rate limits) and returns it.
async fn auth_action(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    action: Action,
) -> ServiceResult<Arc<Collection>> {
    let coll = auth_collection(ctx, c)?;
    admit(ctx, req, Some(&coll), Some(action)).await?;
    Ok(coll)
}

/// Records the sign-in origin (IP + user agent); a new origin of a record that signed in before
/// gets the collection's login alert mail when `authAlert.enabled`.
async fn login_alert(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rec: &Data,
    client: &Req,
) -> ServiceResult<()> {
    let fp: String = Sha256::digest(format!("{}|{}", client.ip, client.user_agent).as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let rec_id = rec_str(rec, "id");
    let mut q = ctx.sql();
    q.push("SELECT \"fingerprint\" FROM \"_authOrigins\" WHERE \"collectionRef\" = ")
        .bind(Value::Text(coll.id.clone()))
        .push(" AND \"recordRef\" = ")
        .bind(Value::Text(rec_id.to_string()));
    let known: Vec<String> = ctx
        .store
        .query(&q)
        .await?
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .map(Value::into_string)
        .collect();
    if known.contains(&fp) {
        return Ok(());
    }
    let inserted = mfa::insert_row(
        ctx,
        "_authOrigins",
        vec![
            ("collectionRef", json!(coll.id)),
            ("recordRef", json!(rec_id)),
            ("fingerprint", json!(fp)),
        ],
    )
    .await;
    if let Err(e) = inserted {
        // A concurrent sign-in from the same origin inserted it first.
        tracing::debug!(error = ?e.0, "auth origin insert");
        return Ok(());
    }
    let enabled = coll
        .auth
        .as_ref()
        .and_then(|a| a.extra.get("authAlert"))
        .and_then(|a| a.get("enabled"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let email = rec_str(rec, "email");
    if enabled && !known.is_empty() && !email.is_empty() {
        let info = format!(
            "{} - {} {}",
            basalt_core::time::now(),
            client.ip,
            if client.user_agent.is_empty() {
                "(unknown client)"
            } else {
                &client.user_agent
            }
        );
        let m = mail::render(
            ctx,
            coll,
            rec,
            Template::LoginAlert,
            email,
            &[("ALERT_INFO", &info)],
        );
        mail::send_later(ctx, m);
    }
    Ok(())
}

pub async fn auth_with_password(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let res = auth_with_password_inner(ctx, req, c, body).await;
    ctx.metrics.signin("password", super::signin_outcome(&res));
    res
}

async fn auth_with_password_inner(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let coll = begin_signin(ctx, req, c, SignInMethod::Password).await?;
    let a = coll.auth.clone().ok_or_else(not_found)?;
    if !a.password_enabled {
        return Err(forbidden(
            "The collection is not configured to allow password authentication.",
        ));
    }
    let identity = body_str(body, "identity");
    let password = body_str(body, "password");
    let mut errs = FieldErrors::new();
    if identity.is_empty() {
        errs.insert("identity".into(), FieldError::required());
    }
    if password.is_empty() {
        errs.insert("password".into(), FieldError::required());
    }
    if identity.chars().count() > 255 {
        errs.insert(
            "identity".into(),
            FieldError::new(
                basalt_core::codes::LENGTH_TOO_LONG,
                "The length must be no more than 255.",
            ),
        );
    }
    check_fields(errs)?;
    let wanted = body_str(body, "identityField");
    let mut fields: Vec<String> = a.password_identity_fields.clone();
    if !wanted.is_empty() {
        if !fields.contains(&wanted) {
            return Err(invalid(
                "identityField",
                FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value."),
            ));
        }
        fields = vec![wanted];
    }
    // Progressive lockout per (identity, client network), whether or not the identity exists.
    let lock_key = format!(
        "pw:{}:{:x}",
        coll.id,
        Sha256::digest(identity.trim().to_lowercase().as_bytes())
    );
    let network = crate::limits::network_of(req.ip);
    ctx.lockout
        .check(&lock_key, &network)
        .map_err(crate::limits::locked)?;
    // Email first, as the protocol tries it.
    fields.sort_by_key(|f| f != "email");
    let mut found = None;
    for f in &fields {
        let Some(field) = coll.field(f) else {
            continue;
        };
        let mut s = ctx.sql();
        s.push("SELECT \"id\" FROM ")
            .ident(&coll.name)
            .push(" WHERE ");
        if f == "email" || field.pii.is_some() {
            // Emails match case-insensitively; pii fields by their blind index.
            crate::pii::eq_condition(ctx, &coll, field, &identity, &mut s)?;
        } else {
            s.ident(f).push(" = ").bind(Value::Text(identity.clone()));
        }
        s.push(" LIMIT 1");
        if let Some(id) = ctx.store.query(&s).await?.scalar() {
            found = records::load_record(ctx, &coll, &id.into_string()).await?;
            break;
        }
    }
    // No record (or no password): verified against a dummy hash, so timing does not reveal existence.
    let hash = found
        .as_ref()
        .map(|r| rec_str(r, "password"))
        .filter(|h| !h.is_empty())
        .unwrap_or_default()
        .to_string();
    let ok = super::verify_password_blocking(password, hash).await;
    let Some(rec) = found.filter(|_| ok) else {
        ctx.lockout.fail(&lock_key, &network);
        return Err(bad("Failed to authenticate."));
    };
    ctx.lockout.success(&lock_key, &network);
    complete_signin(
        ctx,
        req,
        Signin {
            coll: &coll,
            rec,
            method: SignInMethod::Password,
            mfa_id: mfa::mfa_id_of(body, &req.query),
            meta: None,
        },
    )
    .await
}

pub async fn auth_refresh(ctx: &AppCtx, req: &Req, c: &str) -> ServiceResult<Json> {
    let Some(caller) = req.auth.clone() else {
        return Err(unauthorized(
            "The request requires valid record authorization token.",
        ));
    };
    let coll = ctx.collection(c).ok_or_else(|| {
        ServiceError(Error::NotFound(
            "Missing or invalid collection context.".into(),
        ))
    })?;
    if coll.id != caller.collection.id {
        return Err(forbidden(&format!(
            "The request requires auth record from {} collection.",
            caller.collection.name
        )));
    }
    admit(ctx, req, Some(&coll), Some(Action::AuthRefresh)).await?;
    check_auth_rule(ctx, &coll, &caller.record, caller.is_superuser()).await?;
    let token = if caller.refreshable {
        new_auth_token(&coll, &caller.record, true, None)
    } else {
        caller.token.clone()
    };
    auth_response(ctx, req, &coll, caller.record, token, None).await
}

pub async fn auth_methods(ctx: &AppCtx, req: &Req, c: &str) -> ServiceResult<Json> {
    let coll = auth_action(ctx, req, c, Action::ListAuthMethods).await?;
    let a = coll.auth.clone().ok_or_else(not_found)?;
    // A disabled method reports duration 0, as the protocol does.
    let method = |k: &str| {
        let enabled = a
            .extra
            .get(k)
            .and_then(|v| v.get("enabled"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let duration = if enabled {
            a.extra
                .get(k)
                .and_then(|v| v.get("duration"))
                .cloned()
                .unwrap_or(json!(0))
        } else {
            json!(0)
        };
        json!({"duration": duration, "enabled": enabled})
    };
    let providers = super::oauth2::providers_for_methods(&ctx.egress, &coll).await;
    let legacy: Vec<Json> = providers
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["logo"] = json!("");
            p
        })
        .collect();
    let body = json!({
        "authProviders": legacy,
        "emailPassword": a.password_enabled && a.password_identity_fields.iter().any(|f| f == "email"),
        "mfa": method("mfa"),
        "oauth2": {"enabled": !providers.is_empty(), "providers": providers},
        "otp": method("otp"),
        "password": {"enabled": a.password_enabled, "identityFields": a.password_identity_fields},
        "usernamePassword": false,
    });
    Ok(records::shape(&req.query, body))
}

fn required_email(body: &Json, key: &str) -> ServiceResult<String> {
    let email = body_str(body, key);
    if email.is_empty() {
        return Err(invalid(key, FieldError::required()));
    }
    if !basalt_core::record::is_email(&email) {
        return Err(invalid(
            key,
            FieldError::new(
                basalt_core::codes::IS_EMAIL,
                "Must be a valid email address.",
            ),
        ));
    }
    Ok(email)
}

fn token_collection_mismatch() -> ServiceError {
    invalid(
        "token",
        FieldError::new(
            basalt_core::codes::TOKEN_COLLECTION_MISMATCH,
            "The provided token is for different auth collection.",
        ),
    )
}

fn invalid_token() -> ServiceError {
    invalid(
        "token",
        FieldError::new(
            basalt_core::codes::INVALID_TOKEN,
            "Invalid or expired token.",
        ),
    )
}

/// Takes one resend slot for (kind, record); false while the guard holds.
async fn resend_allowed(ctx: &AppCtx, kind: &str, coll: &Collection, rec: &Data) -> bool {
    let key = format!("{}:{}", coll.id, rec_str(rec, "id"));
    ctx.rates
        .hit(&format!("resend:{kind}"), &key, 1, RESEND_GUARD)
        .await
        .is_ok()
}

/// Mails the record a typed token (in the background) through the collection's template.
fn mail_token(
    ctx: &AppCtx,
    coll: &Collection,
    rec: &Data,
    kind: TokenKind,
    template: Template,
    to: &str,
    claims: &[(&str, Json)],
) {
    let token = new_typed_token(coll, rec, kind, claims);
    let m = mail::render(ctx, coll, rec, template, to, &[("TOKEN", &token)]);
    mail::send_later(ctx, m);
}

/// `POST request-verification {email}` → always 204.
pub async fn request_verification(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let coll = auth_action(ctx, req, c, Action::RequestVerification).await?;
    if coll.is_superusers() {
        return Err(bad("All superusers are verified by default."));
    }
    let email = required_email(body, "email")?;
    if let Some(rec) = find_by_email(ctx, &coll, &email).await? {
        let verified = rec.get("verified").and_then(Json::as_bool).unwrap_or(false);
        if !verified && resend_allowed(ctx, "verification", &coll, &rec).await {
            let to = rec_str(&rec, "email");
            let claims = [("email", json!(to))];
            mail_token(
                ctx,
                &coll,
                &rec,
                TokenKind::Verification,
                Template::Verification,
                to,
                &claims,
            );
        }
    }
    Ok(())
}

/// `POST confirm-verification {token}` → 204, the record verified.
pub async fn confirm_verification(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let coll = auth_action(ctx, req, c, Action::ConfirmVerification).await?;
    let token = body_str(body, "token");
    if token.is_empty() {
        return Err(invalid("token", FieldError::required()));
    }
    let (tc, rec, claims) = verify_typed_token(ctx, &token, TokenKind::Verification)
        .await
        .ok_or_else(invalid_token)?;
    if tc.id != coll.id {
        return Err(token_collection_mismatch());
    }
    if !claims["email"]
        .as_str()
        .is_some_and(|e| e.eq_ignore_ascii_case(rec_str(&rec, "email")))
    {
        return Err(invalid_token());
    }
    if !rec.get("verified").and_then(Json::as_bool).unwrap_or(false) {
        let mut ch = Data::new();
        ch.insert("verified".into(), Json::Bool(true));
        records::system_update(ctx, &coll, rec_str(&rec, "id"), ch).await?;
    }
    Ok(())
}

/// `POST request-password-reset {email}` → always 204.
pub async fn request_password_reset(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let coll = auth_action(ctx, req, c, Action::RequestPasswordReset).await?;
    let email = required_email(body, "email")?;
    if let Some(rec) = find_by_email(ctx, &coll, &email).await? {
        if resend_allowed(ctx, "password-reset", &coll, &rec).await {
            let to = rec_str(&rec, "email");
            let claims = [("email", json!(to))];
            mail_token(
                ctx,
                &coll,
                &rec,
                TokenKind::PasswordReset,
                Template::ResetPassword,
                to,
                &claims,
            );
        }
    }
    Ok(())
}

/// Validates a new password against the collection's password field (min/max length).
fn check_new_password(coll: &Collection, pw: &str, confirm: &str) -> ServiceResult<()> {
    let mut errs = FieldErrors::new();
    let f = coll.field("password");
    let min = f.and_then(|f| f.min.as_i64()).unwrap_or(8).max(1) as usize;
    let max = f
        .and_then(|f| f.max.as_i64())
        .filter(|m| *m > 0)
        .unwrap_or(255) as usize;
    let n = pw.chars().count();
    if pw.is_empty() {
        errs.insert("password".into(), FieldError::required());
    } else if n < min || n > max {
        errs.insert(
            "password".into(),
            FieldError::new(
                basalt_core::codes::LENGTH_OUT_OF_RANGE,
                format!("The length must be between {min} and {max}."),
            )
            .with_params(json!({"max": max, "min": min})),
        );
    }
    if confirm != pw {
        errs.insert(
            "passwordConfirm".into(),
            FieldError::new(basalt_core::codes::VALUES_MISMATCH, "Values don't match."),
        );
    }
    check_fields(errs)
}

/// `POST confirm-password-reset {token, password, passwordConfirm}` → 204. Rotates `tokenKey`.
pub async fn confirm_password_reset(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let coll = auth_action(ctx, req, c, Action::ConfirmPasswordReset).await?;
    let token = body_str(body, "token");
    if token.is_empty() {
        return Err(invalid("token", FieldError::required()));
    }
    let pw = body_str(body, "password");
    check_new_password(&coll, &pw, &body_str(body, "passwordConfirm"))?;
    let (tc, rec, claims) = verify_typed_token(ctx, &token, TokenKind::PasswordReset)
        .await
        .ok_or_else(invalid_token)?;
    if tc.id != coll.id {
        return Err(token_collection_mismatch());
    }
    let hash = super::hash_password_blocking(pw).await?;
    let mut ch = Data::new();
    ch.insert("password".into(), Json::String(hash));
    ch.insert(
        "tokenKey".into(),
        Json::String(basalt_core::id::random_id(50)),
    );
    if claims["email"]
        .as_str()
        .is_some_and(|e| e.eq_ignore_ascii_case(rec_str(&rec, "email")))
    {
        ch.insert("verified".into(), Json::Bool(true));
    }
    records::system_update(ctx, &coll, rec_str(&rec, "id"), ch).await?;
    Ok(())
}

/// `POST request-email-change {newEmail}` (the record itself) → 204; mails the new address.
pub async fn request_email_change(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let (coll, caller) = require_same_collection(ctx, req, c)?;
    admit(ctx, req, Some(&coll), Some(Action::RequestEmailChange)).await?;
    let new_email = required_email(body, "newEmail")?;
    if new_email.eq_ignore_ascii_case(rec_str(&caller.record, "email")) {
        return Err(invalid(
            "newEmail",
            FieldError::new(basalt_core::codes::NOT_IN_INVALID, "Must not be in list."),
        ));
    }
    if find_by_email(ctx, &coll, &new_email).await?.is_some() {
        return Err(invalid(
            "newEmail",
            FieldError::new(
                basalt_core::codes::EMAIL_EXISTS,
                "User email already exists.",
            ),
        ));
    }
    let rec = &caller.record;
    let claims = [
        ("email", json!(rec_str(rec, "email"))),
        ("newEmail", json!(new_email)),
    ];
    mail_token(
        ctx,
        &coll,
        rec,
        TokenKind::EmailChange,
        Template::ConfirmEmailChange,
        &new_email,
        &claims,
    );
    Ok(())
}

/// `POST confirm-email-change {token, password}` → 204: new email, verified, `tokenKey` rotated.
pub async fn confirm_email_change(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<()> {
    let coll = auth_action(ctx, req, c, Action::ConfirmEmailChange).await?;
    let token = body_str(body, "token");
    let password = body_str(body, "password");
    let mut errs = FieldErrors::new();
    if token.is_empty() {
        errs.insert("token".into(), FieldError::required());
    }
    if password.is_empty() {
        errs.insert("password".into(), FieldError::required());
    }
    check_fields(errs)?;
    let (tc, rec, claims) = verify_typed_token(ctx, &token, TokenKind::EmailChange)
        .await
        .ok_or_else(invalid_token)?;
    let new_email = claims["newEmail"].as_str().unwrap_or("").to_string();
    if tc.id != coll.id {
        return Err(token_collection_mismatch());
    }
    if new_email.is_empty()
        || !claims["email"]
            .as_str()
            .is_some_and(|e| e.eq_ignore_ascii_case(rec_str(&rec, "email")))
    {
        return Err(invalid_token());
    }
    if !super::verify_password_blocking(password, rec_str(&rec, "password").to_string()).await {
        return Err(invalid(
            "password",
            FieldError::new(
                basalt_core::codes::INVALID_PASSWORD,
                "Missing or invalid auth record password.",
            ),
        ));
    }
    if find_by_email(ctx, &coll, &new_email).await?.is_some() {
        return Err(invalid(
            "newEmail",
            FieldError::new(
                basalt_core::codes::EMAIL_EXISTS,
                "User email already exists.",
            ),
        ));
    }
    let mut ch = Data::new();
    ch.insert("email".into(), Json::String(new_email));
    ch.insert("verified".into(), Json::Bool(true));
    ch.insert(
        "tokenKey".into(),
        Json::String(basalt_core::id::random_id(50)),
    );
    records::system_update(ctx, &coll, rec_str(&rec, "id"), ch).await?;
    Ok(())
}

/// The longest impersonation token (30 days): it cannot be refreshed nor revoked short of rotating
/// the record's token key, so it must not outlive a normal session by much.
pub const MAX_IMPERSONATION_SECS: i64 = 30 * 24 * 3600;

/// `POST impersonate/{id} {duration}` (superusers only) → a non-refreshable token for the record.
pub async fn impersonate(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    id: &str,
    body: &Json,
) -> ServiceResult<Json> {
    req.require_superuser()?;
    let coll = auth_collection(ctx, c)?;
    let duration = match body.get("duration") {
        None | Some(Json::Null) => 0,
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(d) if (0..=MAX_IMPERSONATION_SECS).contains(&d) => d,
            Some(d) if d > MAX_IMPERSONATION_SECS => {
                return Err(invalid(
                    "duration",
                    FieldError::new(
                        basalt_core::codes::MAX_LESS_EQUAL_THAN_REQUIRED,
                        format!("Must be no more than {MAX_IMPERSONATION_SECS}."),
                    )
                    .with_params(json!({"max": MAX_IMPERSONATION_SECS})),
                ))
            }
            _ => {
                return Err(invalid(
                    "duration",
                    FieldError::new(
                        basalt_core::codes::MIN_GREATER_EQUAL_THAN_REQUIRED,
                        "Must be no less than 0.",
                    ),
                ))
            }
        },
    };
    let rec = records::load_record(ctx, &coll, id)
        .await?
        .ok_or_else(not_found)?;
    check_auth_rule(ctx, &coll, &rec, true).await?;
    let token = new_auth_token(&coll, &rec, false, Some(duration));
    auth_response(ctx, req, &coll, rec, token, None).await
}

/// `POST /api/settings/test/email {email, template, collection?}` (superusers) → 204 once sent.
pub async fn test_email(ctx: &AppCtx, req: &Req, body: &Json) -> ServiceResult<()> {
    req.require_superuser()?;
    let to = required_email(body, "email")?;
    let tpl = Template::parse(&body_str(body, "template")).ok_or_else(|| {
        invalid(
            "template",
            FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value."),
        )
    })?;
    let cname = body_str(body, "collection");
    let coll = auth_collection(
        ctx,
        if cname.is_empty() {
            "_superusers"
        } else {
            &cname
        },
    )?;
    let mut rec = Data::new();
    rec.insert("email".into(), json!(to));
    let m = mail::render(
        ctx,
        &coll,
        &rec,
        tpl,
        &to,
        &[
            ("TOKEN", "TEST_TOKEN"),
            ("OTP", "123456"),
            ("ALERT_INFO", "127.0.0.1 test"),
        ],
    );
    mail::send(ctx, &m).await?;
    Ok(())
}
