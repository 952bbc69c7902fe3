//! Passwords (argon2id; bcrypt accepted for imported PocketBase data), HS256 tokens in the protocol's
//! claim shape, and [`authenticate`], which turns an Authorization token into the caller.
//!
//! HS256 is written here on `hmac`+`sha2` rather than with `jsonwebtoken`: that crate now requires a
//! full crypto backend (RSA/EC) we do not use, and the protocol needs only HS256 with fixed claims.

pub mod flows;
pub mod mail;
pub mod mfa;
pub mod oauth2;

use std::sync::Arc;
use std::time::Duration;

use basalt_core::record::Data;
use basalt_core::schema::Collection;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

use crate::error::{ServiceError, ServiceResult};
use crate::records::load_record;
use crate::AppCtx;

pub use crate::caller::Caller;
pub use crate::limits;
use crate::limits::{pick_rule, Action, AUTH_BURST, AUTH_PER_SEC};
pub use crate::passwords::{
    hash_password, hash_password_blocking, verify_password, verify_password_blocking,
};
use crate::request::Req;

fn sign(input: &str, key: &str) -> String {
    let mut mac = match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(input.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

pub fn encode_token(claims: &Json, key: &str) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = sign(&input, key);
    format!("{input}.{sig}")
}

/// Reads claims without checking the signature (the key depends on the record the claims name).
pub fn peek_claims(token: &str) -> Option<Json> {
    let mut it = token.split('.');
    let (_h, p, _s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let bytes = B64.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks the signature (constant time) and expiry.
pub fn verify_token(token: &str, key: &str) -> bool {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let expected = sign(input, key);
    let ok: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()).into();
    if !ok {
        return false;
    }
    let exp = peek_claims(token)
        .and_then(|c| c.get("exp").and_then(Json::as_i64))
        .unwrap_or(0);
    exp > chrono::Utc::now().timestamp()
}

pub fn auth_key(coll: &Collection, rec: &Data) -> String {
    let tk = rec.get("tokenKey").and_then(Json::as_str).unwrap_or("");
    let secret = coll
        .auth
        .as_ref()
        .map(|a| a.auth_token.secret.as_str())
        .unwrap_or("");
    format!("{tk}{secret}")
}

pub fn new_auth_token(
    coll: &Collection,
    rec: &Data,
    refreshable: bool,
    duration: Option<i64>,
) -> String {
    let d = duration.filter(|d| *d > 0).unwrap_or_else(|| {
        coll.auth
            .as_ref()
            .map(|a| a.auth_token.duration)
            .unwrap_or(604800)
    });
    let claims = json!({
        "collectionId": coll.id,
        "exp": chrono::Utc::now().timestamp() + d,
        "id": rec.get("id").and_then(Json::as_str).unwrap_or(""),
        "refreshable": refreshable,
        "type": "auth",
    });
    encode_token(&claims, &auth_key(coll, rec))
}

/// The non-auth token types (§5): each signed with `tokenKey + <kind>Token.secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Verification,
    PasswordReset,
    EmailChange,
    File,
}

impl TokenKind {
    pub fn claim(self) -> &'static str {
        match self {
            TokenKind::Verification => "verification",
            TokenKind::PasswordReset => "passwordReset",
            TokenKind::EmailChange => "emailChange",
            TokenKind::File => "file",
        }
    }
    fn config(self, a: &basalt_core::schema::AuthOptions) -> &basalt_core::schema::TokenConfig {
        match self {
            TokenKind::Verification => &a.verification_token,
            TokenKind::PasswordReset => &a.password_reset_token,
            TokenKind::EmailChange => &a.email_change_token,
            TokenKind::File => &a.file_token,
        }
    }
}

fn typed_key(coll: &Collection, rec: &Data, kind: TokenKind) -> String {
    let tk = rec.get("tokenKey").and_then(Json::as_str).unwrap_or("");
    let secret = coll
        .auth
        .as_ref()
        .map(|a| kind.config(a).secret.as_str())
        .unwrap_or("");
    format!("{tk}{secret}")
}

/// A verification / password-reset / email-change / file token for the record, with extra claims.
pub fn new_typed_token(
    coll: &Collection,
    rec: &Data,
    kind: TokenKind,
    extra: &[(&str, Json)],
) -> String {
    let d = coll
        .auth
        .as_ref()
        .map(|a| kind.config(a).duration)
        .unwrap_or(1800);
    let mut claims = json!({
        "collectionId": coll.id,
        "exp": chrono::Utc::now().timestamp() + d,
        "id": rec.get("id").and_then(Json::as_str).unwrap_or(""),
        "type": kind.claim(),
    });
    for (k, v) in extra {
        claims[*k] = v.clone();
    }
    encode_token(&claims, &typed_key(coll, rec, kind))
}

/// Checks a typed token and returns its collection, current record and claims. Any failure (bad
/// signature, expired, wrong type, record gone or its tokenKey rotated) is `None`.
pub async fn verify_typed_token(
    ctx: &AppCtx,
    token: &str,
    kind: TokenKind,
) -> Option<(Arc<Collection>, Data, Json)> {
    let claims = peek_claims(token)?;
    if claims.get("type").and_then(Json::as_str) != Some(kind.claim()) {
        return None;
    }
    let coll = ctx.collection(claims.get("collectionId").and_then(Json::as_str)?)?;
    if !coll.is_auth() {
        return None;
    }
    let rec = load_record(ctx, &coll, claims.get("id").and_then(Json::as_str)?)
        .await
        .ok()
        .flatten()?;
    verify_token(token, &typed_key(&coll, &rec, kind)).then_some((coll, rec, claims))
}

pub async fn resolve_token(ctx: &AppCtx, raw: &str) -> Option<Caller> {
    let token = raw.trim();
    let token = match token.get(..7) {
        Some(p) if token.len() > 7 && p.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
        _ => token,
    };
    if token.is_empty() || token.len() > 4096 {
        return None;
    }
    let claims = peek_claims(token)?;
    if claims.get("type").and_then(Json::as_str) != Some("auth") {
        return None;
    }
    let coll = ctx.collection(claims.get("collectionId").and_then(Json::as_str)?)?;
    if !coll.is_auth() {
        return None;
    }
    let id = claims.get("id").and_then(Json::as_str)?;
    let rec = crate::records::load_record_cached(ctx, &coll, id)
        .await
        .ok()
        .flatten()?;
    if !verify_token(token, &auth_key(&coll, &rec)) {
        return None;
    }
    Some(Caller {
        collection: coll,
        record: rec,
        refreshable: claims
            .get("refreshable")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        token: token.to_string(),
    })
}

/// A superuser token or sign-in from an address outside `superuserIPs`.
pub fn superuser_ip_denied() -> ServiceError {
    crate::error::forbidden("You are not allowed to perform this request.")
}

/// Admits one request doing `action` on `coll` (or, with `None`, a request that is only a path, such
/// as `/api/settings`): the most specific configured rule (when `rateLimits.enabled`: `coll:action`,
/// `coll:auth`, `*:action`, `*:auth`, then the longest path label matching `req.path`), and the
/// built-in auth limit for auth actions. Superusers and excluded IPs are never limited. Called by the
/// service at the start of every operation that has an action, whatever the transport.
pub async fn admit(
    ctx: &AppCtx,
    req: &Req,
    coll: Option<&basalt_core::schema::Collection>,
    action: Option<Action>,
) -> ServiceResult<()> {
    let auth_action = action.is_some_and(Action::is_auth);
    if !auth_action && !ctx.rate_limits_on() {
        return Ok(());
    }
    let policy = ctx.policy();
    if policy.excluded_ips.iter().any(|n| n.contains(req.ip)) {
        return Ok(());
    }
    let ip = req.ip.to_string();
    if policy.rate_limits_enabled && !policy.rules.is_empty() && !req.is_superuser() {
        let tag = match (coll, action) {
            (Some(c), Some(a)) => Some((c.name.as_str(), a)),
            _ => None,
        };
        let coll_id = coll.map(|c| c.id.as_str());
        if let Some(rule) = pick_rule(
            &policy.rules,
            &req.method,
            &req.path,
            tag,
            coll_id,
            req.auth.is_some(),
        ) {
            // A tag rule (`*:auth`) counts per collection, a path rule per label.
            let bucket = if rule.label.starts_with('/') || rule.label.contains(' ') {
                rule.label.clone()
            } else {
                format!("{}|{}", rule.label, coll_id.unwrap_or(""))
            };
            ctx.rates
                .hit(
                    &bucket,
                    &ip,
                    rule.max_requests,
                    Duration::from_secs(rule.duration_secs),
                )
                .await
                .map_err(|w| refused(ctx, &rule.label, w))?;
        }
    }
    if auth_action {
        ctx.rates
            .hit(
                "builtin:auth",
                &ip,
                AUTH_BURST,
                Duration::from_secs(u64::from(AUTH_BURST / AUTH_PER_SEC)),
            )
            .await
            .map_err(|w| refused(ctx, "builtin:auth", w))?;
    }
    Ok(())
}

/// A sign-in's outcome as `basalt_auth_signins_total` labels it.
pub fn signin_outcome(res: &ServiceResult<flows::SignIn>) -> &'static str {
    match res {
        Ok(flows::SignIn::Token(_)) => "success",
        Ok(flows::SignIn::MfaRequired { .. }) => "mfa_required",
        Err(e) => match crate::metrics::outcome_of(e) {
            o @ ("refused" | "error") => o,
            _ => "failure",
        },
    }
}

/// A rate limit's refusal, counted by rule label.
fn refused(ctx: &AppCtx, rule: &str, wait: Duration) -> ServiceError {
    ctx.metrics
        .rate_limited
        .get_or_create(&crate::metrics::RuleLabel {
            rule: rule.to_string(),
        })
        .inc();
    limits::too_many(wait)
}

/// The caller behind an Authorization header value (with or without `Bearer `), for a request from
/// `ip`. A missing, malformed, expired or revoked token makes a guest, never an error (the protocol's
/// rule); a superuser token from outside `superuserIPs` is refused (403).
pub async fn authenticate(
    ctx: &AppCtx,
    authorization: Option<&str>,
    ip: std::net::IpAddr,
) -> ServiceResult<Option<Caller>> {
    let Some(h) = authorization else {
        return Ok(None);
    };
    let caller = resolve_token(ctx, h).await;
    if caller.as_ref().is_some_and(Caller::is_superuser) && !ctx.policy().superuser_ip_allowed(ip) {
        return Err(superuser_ip_denied());
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = encode_token(
            &json!({"id":"a","exp": chrono::Utc::now().timestamp() + 60, "type":"auth"}),
            "k1",
        );
        assert!(verify_token(&t, "k1"));
        assert!(!verify_token(&t, "k2"));
        let expired = encode_token(&json!({"exp": 1}), "k1");
        assert!(!verify_token(&expired, "k1"));
        assert_eq!(peek_claims(&t).unwrap()["id"], "a");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("secret123").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("secret123", &h));
        assert!(!verify_password("nope", &h));
        let b = bcrypt::hash("pbpass12", 4).unwrap();
        assert!(verify_password("pbpass12", &b));
    }
}
