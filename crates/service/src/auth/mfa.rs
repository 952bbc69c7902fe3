//! One-time codes by email (`request-otp` / `auth-with-otp`), the protocol's MFA gate (two different
//! methods joined by an `mfaId`), and TOTP authenticator apps as a Basalt second factor with
//! recovery codes.
//!
//! **Invariants:** OTPs and recovery codes are stored hashed (argon2id / SHA-256), never in clear;
//! a TOTP step is accepted once per record (`lastStep`); an MFA session is single-use, bound to one
//! record and expires after `mfa.duration`.

use std::sync::Arc;
use std::time::Duration;

use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_core::sql::Value;
use basalt_core::{Error, FieldError};
use rand::Rng;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use super::admit;
use super::flows::{
    auth_collection, begin_signin, body_str, check_fields, complete_signin, find_by_email, invalid,
    require_same_collection, SignIn, Signin,
};
use super::mail::{self, Template};
use crate::error::{bad, ServiceError, ServiceResult};
use crate::limits::{Action, SignInMethod};
use crate::records::load_record;
use crate::request::Req;
use crate::AppCtx;

const OTP_TRIES: u32 = 5;
/// Tries of one record's OTPs from all networks together per window.
const OTP_TRIES_ALL: u32 = 100;
const OTP_TRY_WINDOW: Duration = Duration::from_secs(180);
const RECOVERY_CODES: usize = 10;

fn sys(ctx: &AppCtx, name: &str) -> ServiceResult<Arc<Collection>> {
    ctx.collection(name)
        .ok_or_else(|| ServiceError(Error::internal(format!("missing system collection {name}"))))
}

/// Inserts a row into a system collection (no events: these rows hold secrets and sessions).
pub async fn insert_row(
    ctx: &AppCtx,
    name: &str,
    fields: Vec<(&str, Json)>,
) -> ServiceResult<String> {
    insert_row_with_id(ctx, name, basalt_core::id::new_record_id(), fields).await
}

async fn insert_row_with_id(
    ctx: &AppCtx,
    name: &str,
    id: String,
    fields: Vec<(&str, Json)>,
) -> ServiceResult<String> {
    let coll = sys(ctx, name)?;
    let now = basalt_core::time::now();
    let mut data = Data::new();
    data.insert("id".into(), Json::String(id.clone()));
    data.insert("created".into(), Json::String(now.clone()));
    data.insert("updated".into(), Json::String(now));
    for (k, v) in fields {
        data.insert(k.to_string(), v);
    }
    let mut tx = ctx.store.begin().await?;
    tx.execute(&crate::records::insert_sql(ctx, &coll, &data)?)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// Deletes one row; returns how many rows went (0 when another request took it first).
pub async fn delete_row(ctx: &AppCtx, name: &str, id: &str) -> ServiceResult<u64> {
    let mut s = ctx.sql();
    s.push("DELETE FROM ")
        .ident(name)
        .push(" WHERE \"id\" = ")
        .bind(Value::Text(id.to_string()));
    let mut tx = ctx.store.begin().await?;
    let n = tx.execute(&s).await?;
    tx.commit().await?;
    Ok(n)
}

async fn load_row(ctx: &AppCtx, name: &str, id: &str) -> ServiceResult<Option<Data>> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    load_record(ctx, &*sys(ctx, name)?, id).await
}

fn s<'a>(d: &'a Data, k: &str) -> &'a str {
    d.get(k).and_then(Json::as_str).unwrap_or("")
}

fn age(d: &Data) -> Duration {
    basalt_core::time::parse(s(d, "created"))
        .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .unwrap_or(Duration::MAX)
}

fn opt_i64(coll: &Collection, group: &str, key: &str, default: i64) -> i64 {
    coll.auth
        .as_ref()
        .and_then(|a| a.extra.get(group))
        .and_then(|g| g.get(key))
        .and_then(Json::as_i64)
        .unwrap_or(default)
}

fn opt_enabled(coll: &Collection, group: &str) -> bool {
    coll.auth
        .as_ref()
        .and_then(|a| a.extra.get(group))
        .and_then(|g| g.get("enabled"))
        .and_then(Json::as_bool)
        .unwrap_or(false)
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------- MFA gate ----------

/// What a successful first factor leads to.
pub enum Gate {
    /// No second factor needed (or this was it): issue the token.
    Pass,
    /// Answer 401 `{"mfaId"}`: a second, different method must follow.
    Challenge(String),
}

async fn totp_row(ctx: &AppCtx, coll: &Collection, rec_id: &str) -> ServiceResult<Option<Data>> {
    let mut q = ctx.sql();
    q.push("SELECT \"id\" FROM \"_totps\" WHERE \"collectionRef\" = ")
        .bind(Value::Text(coll.id.clone()))
        .push(" AND \"recordRef\" = ")
        .bind(Value::Text(rec_id.to_string()));
    match ctx.store.query(&q).await?.scalar() {
        Some(id) => load_row(ctx, "_totps", &id.into_string()).await,
        None => Ok(None),
    }
}

async fn mfa_required(ctx: &AppCtx, coll: &Arc<Collection>, rec: &Data) -> ServiceResult<bool> {
    if !opt_enabled(coll, "mfa") {
        return Ok(false);
    }
    let rule = coll
        .auth
        .as_ref()
        .and_then(|a| a.extra.get("mfa"))
        .and_then(|m| m.get("rule"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    if rule.trim().is_empty() {
        return Ok(true);
    }
    let info = basalt_core::filter::compile::RequestInfo {
        auth: Some((coll.clone(), rec.clone())),
        context: "default".into(),
        ..Default::default()
    };
    Ok(
        crate::records::fetch_with_rule(ctx, coll, s(rec, "id"), &Some(rule), &info, None)
            .await?
            .is_some(),
    )
}

fn invalid_mfa() -> ServiceError {
    bad("Invalid or expired MFA session.")
}

/// The protocol's MFA: when MFA applies to the record (collection `mfa` with its rule) or the record
/// has a confirmed TOTP, the first method answers a challenge and the second must differ (and be
/// TOTP when the record enrolled one).
pub async fn gate(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rec: &Data,
    method: &str,
    mfa_id: Option<&str>,
) -> ServiceResult<Gate> {
    let rec_id = s(rec, "id").to_string();
    let has_totp = totp_row(ctx, coll, &rec_id)
        .await?
        .is_some_and(|t| t.get("confirmed").and_then(Json::as_bool) == Some(true));
    let required = has_totp || mfa_required(ctx, coll, rec).await?;
    let mfa_id = mfa_id.filter(|m| !m.is_empty());
    if let Some(mid) = mfa_id {
        let row = load_row(ctx, "_mfas", mid).await?.ok_or_else(invalid_mfa)?;
        let dur = opt_i64(coll, "mfa", "duration", 600).max(1) as u64;
        if s(&row, "collectionRef") != coll.id
            || s(&row, "recordRef") != rec_id
            || age(&row) > Duration::from_secs(dur)
        {
            return Err(invalid_mfa());
        }
        let first = s(&row, "method");
        if first == method || (has_totp && first != "totp" && method != "totp") {
            return Err(bad("A different authentication method is required."));
        }
        if delete_row(ctx, "_mfas", mid).await? != 1 {
            return Err(invalid_mfa());
        }
        return Ok(Gate::Pass);
    }
    if !required {
        return Ok(Gate::Pass);
    }
    if method == "totp" {
        return Err(invalid_mfa());
    }
    let dur = opt_i64(coll, "mfa", "duration", 600).max(1) as u64;
    prune_rows(ctx, "_mfas", coll, &rec_id, Duration::from_secs(dur)).await?;
    let id = insert_row(
        ctx,
        "_mfas",
        vec![
            ("collectionRef", json!(coll.id)),
            ("recordRef", json!(rec_id)),
            ("method", json!(method)),
        ],
    )
    .await?;
    Ok(Gate::Challenge(id))
}

// ---------- OTP ----------

/// `POST /api/collections/{c}/request-otp` `{email}` → `{otpId}`, a fake id for an unknown email.
pub async fn request_otp(ctx: &AppCtx, req: &Req, c: &str, body: &Json) -> ServiceResult<Json> {
    let coll = auth_collection(ctx, c)?;
    admit(ctx, req, Some(&coll), Some(Action::RequestOtp)).await?;
    if !opt_enabled(&coll, "otp") {
        return Err(crate::error::forbidden(
            "The collection is not configured to allow OTP authentication.",
        ));
    }
    let email = body_str(body, "email");
    if email.is_empty() {
        return Err(invalid("email", FieldError::required()));
    }
    if !basalt_core::record::is_email(&email) {
        return Err(invalid(
            "email",
            FieldError::new(
                basalt_core::codes::IS_EMAIL,
                "Must be a valid email address.",
            ),
        ));
    }
    let otp_id = basalt_core::id::new_record_id();
    // A code is made and hashed either way, so the answer takes about as long for an unknown
    // email; the row is stored before answering (so the id works at once) and the mail goes out in
    // the background.
    let code = new_code(&coll);
    let hash = super::hash_password_blocking(code.clone()).await?;
    if let Some(rec) = find_by_email(ctx, &coll, &email).await? {
        if store_otp(ctx, &coll, &rec, &otp_id, hash).await? {
            let to = s(&rec, "email").to_string();
            let m = mail::render(ctx, &coll, &rec, Template::Otp, &to, &[("OTP", &code)]);
            mail::send_later(ctx, m);
        }
    }
    Ok(json!({"otpId": otp_id}))
}

/// A new OTP code of the collection's `otp.length` digits.
fn new_code(coll: &Collection) -> String {
    let len = opt_i64(coll, "otp", "length", 8).clamp(4, 16) as usize;
    let mut r = rand::thread_rng();
    (0..len)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect()
}

/// An OTP for the record of auth collection `c` with `email`, made by the server itself (the CLI's
/// `superuser otp`): its id and code, nothing mailed.
pub async fn issue_otp(ctx: &AppCtx, c: &str, email: &str) -> ServiceResult<(String, String)> {
    let coll = auth_collection(ctx, c)?;
    if !opt_enabled(&coll, "otp") {
        return Err(crate::error::bad(&format!(
            "OTP auth is not enabled for the {} collection",
            coll.name
        )));
    }
    let Some(rec) = find_by_email(ctx, &coll, email).await? else {
        return Err(crate::error::bad(&format!(
            "a record with email \"{email}\" doesn't exist in {}",
            coll.name
        )));
    };
    let code = new_code(&coll);
    let hash = super::hash_password_blocking(code.clone()).await?;
    let id = basalt_core::id::new_record_id();
    if !store_otp(ctx, &coll, &rec, &id, hash).await? {
        return Err(crate::error::bad("too many unexpired OTPs for this record"));
    }
    Ok((id, code))
}

/// Deletes the rows of `table` (`_mfas`, `_otps`) older than their collection's `<group>.duration`
/// (seconds, `default` when unset): the `__pbMFACleanup__` / `__pbOTPCleanup__` jobs. Returns how
/// many went.
pub async fn prune_expired(
    ctx: &AppCtx,
    table: &str,
    group: &str,
    default: i64,
) -> ServiceResult<u64> {
    let mut n = 0;
    let cols = ctx.collections();
    let mut tx = ctx.store.begin().await?;
    for coll in cols.list.iter().filter(|c| c.is_auth()) {
        let secs = opt_i64(coll, group, "duration", default).max(1);
        let cutoff =
            basalt_core::time::format(chrono::Utc::now() - chrono::Duration::seconds(secs));
        let mut d = ctx.sql();
        d.push("DELETE FROM ")
            .ident(table)
            .push(" WHERE \"collectionRef\" = ")
            .bind(Value::Text(coll.id.clone()))
            .push(" AND \"created\" < ")
            .bind(Value::Text(cutoff));
        n += tx.execute(&d).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Rows of `table` for the record older than `max_age` are deleted; returns how many remain.
async fn prune_rows(
    ctx: &AppCtx,
    table: &str,
    coll: &Collection,
    rec_id: &str,
    max_age: Duration,
) -> ServiceResult<i64> {
    let cutoff = basalt_core::time::format(
        chrono::Utc::now() - chrono::Duration::from_std(max_age).unwrap_or_default(),
    );
    let owner = |q: &mut basalt_core::sql::Sql| {
        q.push(" WHERE \"collectionRef\" = ")
            .bind(Value::Text(coll.id.clone()))
            .push(" AND \"recordRef\" = ")
            .bind(Value::Text(rec_id.to_string()));
    };
    let mut d = ctx.sql();
    d.push("DELETE FROM ").ident(table);
    owner(&mut d);
    d.push(" AND \"created\" < ").bind(Value::Text(cutoff));
    let mut tx = ctx.store.begin().await?;
    tx.execute(&d).await?;
    tx.commit().await?;
    let mut c = ctx.sql();
    c.push("SELECT COUNT(*) FROM ").ident(table);
    owner(&mut c);
    Ok(ctx.store.query(&c).await?.scalar_int())
}

/// Unexpired OTPs one record may hold; past it, request-otp answers a fake id and sends nothing
/// (no mail bombing).
const MAX_LIVE_OTPS: i64 = 10;

async fn store_otp(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rec: &Data,
    id: &str,
    hash: String,
) -> ServiceResult<bool> {
    let dur = opt_i64(coll, "otp", "duration", 180).max(1) as u64;
    if prune_rows(ctx, "_otps", coll, s(rec, "id"), Duration::from_secs(dur)).await?
        >= MAX_LIVE_OTPS
    {
        return Ok(false);
    }
    insert_row_with_id(
        ctx,
        "_otps",
        id.to_string(),
        vec![
            ("collectionRef", json!(coll.id)),
            ("recordRef", json!(s(rec, "id"))),
            ("password", json!(hash)),
            ("sentTo", json!(s(rec, "email"))),
        ],
    )
    .await?;
    Ok(true)
}

/// `POST /api/collections/{c}/auth-with-otp` `{otpId, password, mfaId?}`.
pub async fn auth_with_otp(ctx: &AppCtx, req: &Req, c: &str, body: &Json) -> ServiceResult<SignIn> {
    let res = auth_with_otp_inner(ctx, req, c, body).await;
    ctx.metrics.signin("otp", super::signin_outcome(&res));
    res
}

async fn auth_with_otp_inner(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let coll = begin_signin(ctx, req, c, SignInMethod::Otp).await?;
    if !opt_enabled(&coll, "otp") {
        return Err(crate::error::forbidden(
            "The collection is not configured to allow OTP authentication.",
        ));
    }
    let otp_id = body_str(body, "otpId");
    let code = body_str(body, "password");
    let mut errs = basalt_core::FieldErrors::new();
    if otp_id.is_empty() {
        errs.insert("otpId".into(), FieldError::required());
    }
    if code.is_empty() {
        errs.insert("password".into(), FieldError::required());
    }
    check_fields(errs)?;
    let fail = || bad("Invalid or expired OTP");
    let row = load_row(ctx, "_otps", &otp_id).await?;
    let Some(row) = row.filter(|r| s(r, "collectionRef") == coll.id) else {
        // Same work as a real check, so timing does not tell a fake id from a real one.
        let _ = super::verify_password_blocking(code, String::new()).await;
        return Err(fail());
    };
    // Tries per (record, client network), not per code: a new OTP does not reset them, and one who
    // guesses blocks only their own network. Across networks a higher ceiling slows distributed
    // guessing.
    let record = s(&row, "recordRef");
    let mine = format!("{record}|{}", crate::limits::network_of(req.ip));
    for (bucket, key, max) in [
        ("otp-tries", mine.as_str(), OTP_TRIES),
        ("otp-tries-all", record, OTP_TRIES_ALL),
    ] {
        if let Err(wait) = ctx.rates.hit(bucket, key, max, OTP_TRY_WINDOW).await {
            return Err(ServiceError(Error::too_many(
                "Too many attempts, please try again later with a new OTP.",
                wait,
            )));
        }
    }
    let dur = opt_i64(&coll, "otp", "duration", 180).max(1) as u64;
    if age(&row) > Duration::from_secs(dur) {
        delete_row(ctx, "_otps", &otp_id).await?;
        return Err(fail());
    }
    if !super::verify_password_blocking(code, s(&row, "password").to_string()).await {
        return Err(fail());
    }
    let rec = load_record(ctx, &coll, s(&row, "recordRef"))
        .await?
        .ok_or_else(fail)?;
    // Single use: of two concurrent requests with the right code only the one that deletes wins.
    if delete_row(ctx, "_otps", &otp_id).await? != 1 {
        return Err(fail());
    }
    let mut rec = rec;
    if !rec.get("verified").and_then(Json::as_bool).unwrap_or(false)
        && s(&row, "sentTo").eq_ignore_ascii_case(s(&rec, "email"))
    {
        let mut ch = Data::new();
        ch.insert("verified".into(), Json::Bool(true));
        rec = crate::records::system_update(ctx, &coll, s(&rec, "id"), ch).await?;
    }
    complete_signin(
        ctx,
        req,
        Signin {
            coll: &coll,
            rec,
            method: SignInMethod::Otp,
            mfa_id: mfa_id_of(body, &req.query),
            meta: None,
        },
    )
    .await
}

pub fn mfa_id_of(body: &Json, q: &serde_json::Map<String, Json>) -> Option<String> {
    let b = body_str(body, "mfaId");
    if !b.is_empty() {
        return Some(b);
    }
    q.get("mfaId")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

// ---------- TOTP ----------

fn build_totp(ctx: &AppCtx, secret_b32: &str, account: &str) -> ServiceResult<totp_rs::Totp> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32)
        .map_err(|e| ServiceError(Error::internal(format!("totp secret: {e:?}"))))?;
    let issuer = match ctx.config().meta.app_name.as_str() {
        "" => "Basalt".to_string(),
        n => n.replace(':', " "),
    };
    let account = if account.is_empty() {
        "account".to_string()
    } else {
        account.replace(':', " ")
    };
    totp_rs::Builder::new()
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| ServiceError(Error::internal(format!("totp: {e:?}"))))
}

/// Checks a TOTP code (once per step) or, when `allow_recovery`, a recovery code (once). Updates the
/// row on success.
async fn check_second_factor(
    ctx: &AppCtx,
    row: &Data,
    account: &str,
    code: &str,
    allow_recovery: bool,
) -> ServiceResult<bool> {
    let code = code.trim();
    let totp = build_totp(ctx, s(row, "secret"), account)?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let last: u64 = s(row, "lastStep").parse().unwrap_or(0);
    let id = s(row, "id");
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(step) = totp.check(code, now) {
            if step <= last {
                return Ok(false);
            }
            // Compare-and-set: a step is accepted once even under concurrent requests.
            return Ok(
                set_if(ctx, id, "lastStep", s(row, "lastStep"), &step.to_string()).await? == 1,
            );
        }
        return Ok(false);
    }
    if !allow_recovery {
        return Ok(false);
    }
    let mut codes: Vec<String> = serde_json::from_str(s(row, "recoveryCodes")).unwrap_or_default();
    let h = sha256_hex(&code.to_ascii_lowercase());
    let Some(pos) = codes
        .iter()
        .position(|c| bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), h.as_bytes())))
    else {
        return Ok(false);
    };
    codes.remove(pos);
    Ok(set_if(
        ctx,
        id,
        "recoveryCodes",
        s(row, "recoveryCodes"),
        &json!(codes).to_string(),
    )
    .await?
        == 1)
}

/// `UPDATE _totps SET col = new WHERE id = ? AND col = old`: the number of rows changed.
async fn set_if(ctx: &AppCtx, id: &str, col: &str, old: &str, new: &str) -> ServiceResult<u64> {
    let mut q = ctx.sql();
    q.push("UPDATE \"_totps\" SET ")
        .ident(col)
        .push(" = ")
        .bind(Value::Text(new.to_string()))
        .push(", \"updated\" = ")
        .bind(Value::Text(basalt_core::time::now()))
        .push(" WHERE \"id\" = ")
        .bind(Value::Text(id.to_string()))
        .push(" AND ")
        .ident(col)
        .push(" = ")
        .bind(Value::Text(old.to_string()));
    let mut tx = ctx.store.begin().await?;
    let n = tx.execute(&q).await?;
    tx.commit().await?;
    Ok(n)
}

async fn write_row(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    row: &Data,
    changes: Data,
) -> ServiceResult<()> {
    let mut data = row.clone();
    data.extend(changes);
    data.insert("updated".into(), json!(basalt_core::time::now()));
    let mut tx = ctx.store.begin().await?;
    tx.execute(&crate::records::update_sql(ctx, coll, id, &data)?)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn invalid_code() -> ServiceError {
    invalid(
        "code",
        FieldError::new(
            basalt_core::codes::INVALID_TOTP_CODE,
            "Invalid or expired code.",
        ),
    )
}

/// `POST /api/collections/{c}/totp/enroll` (the record itself): a new secret and its otpauth URI.
pub async fn totp_enroll(ctx: &AppCtx, req: &Req, c: &str) -> ServiceResult<Json> {
    let (coll, caller) = require_same_collection(ctx, req, c)?;
    let existing = totp_row(ctx, &coll, caller.id()).await?;
    if existing
        .as_ref()
        .is_some_and(|t| t.get("confirmed").and_then(Json::as_bool) == Some(true))
    {
        return Err(bad(
            "TOTP is already enabled; disable it first to enrol a new authenticator.",
        ));
    }
    let bytes: [u8; 20] = rand::thread_rng().gen();
    let secret = totp_rs::Secret::from(bytes.to_vec()).to_base32();
    let email = s(&caller.record, "email").to_string();
    let totp = build_totp(ctx, &secret, &email)?;
    let uri = totp
        .to_url()
        .map_err(|e| ServiceError(Error::internal(format!("totp url: {e:?}"))))?;
    if let Some(row) = existing {
        delete_row(ctx, "_totps", s(&row, "id")).await?;
    }
    insert_row(
        ctx,
        "_totps",
        vec![
            ("collectionRef", json!(coll.id)),
            ("recordRef", json!(caller.id())),
            ("secret", json!(secret)),
            ("confirmed", json!(false)),
            ("recoveryCodes", json!("[]")),
            ("lastStep", json!("0")),
        ],
    )
    .await?;
    Ok(json!({"secret": secret, "otpauthURI": uri}))
}

/// `POST /api/collections/{c}/totp/confirm` `{code}`: turns TOTP on; answers the recovery codes,
/// shown this once and stored hashed.
pub async fn totp_confirm(ctx: &AppCtx, req: &Req, c: &str, body: &Json) -> ServiceResult<Json> {
    let (coll, caller) = require_same_collection(ctx, req, c)?;
    let code = body_str(body, "code");
    if code.is_empty() {
        return Err(invalid("code", FieldError::required()));
    }
    let row = totp_row(ctx, &coll, caller.id())
        .await?
        .ok_or_else(|| bad("Enrol a TOTP authenticator first."))?;
    if row.get("confirmed").and_then(Json::as_bool) == Some(true) {
        return Err(bad("TOTP is already enabled."));
    }
    verify_code(ctx, req, &caller.record, &row, &code, false).await?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let hashed: Vec<String> = codes.iter().map(|c| sha256_hex(c)).collect();
    let row = load_row(ctx, "_totps", s(&row, "id"))
        .await?
        .ok_or_else(|| bad("Enrol a TOTP authenticator first."))?;
    let mut ch = Data::new();
    ch.insert("confirmed".into(), json!(true));
    ch.insert("recoveryCodes".into(), json!(json!(hashed).to_string()));
    write_row(ctx, &*sys(ctx, "_totps")?, s(&row, "id"), &row, ch).await?;
    Ok(json!({"recoveryCodes": codes}))
}

fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut r = rand::thread_rng();
    let mut part = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ALPHABET[r.gen_range(0..ALPHABET.len())]))
            .collect()
    };
    let a = part(5);
    let b = part(5);
    format!("{a}-{b}")
}

/// Checks a TOTP (or recovery) code of `rec` under the progressive lockout of its record and the
/// caller's network ([`crate::limits::Lockout`]): refused while locked, a failure counts, a success
/// clears.
async fn verify_code(
    ctx: &AppCtx,
    req: &Req,
    rec: &Data,
    row: &Data,
    code: &str,
    allow_recovery: bool,
) -> ServiceResult<()> {
    let key = format!("totp:{}", s(rec, "id"));
    let network = crate::limits::network_of(req.ip);
    ctx.lockout
        .check(&key, &network)
        .map_err(crate::limits::locked)?;
    if !check_second_factor(ctx, row, s(rec, "email"), code, allow_recovery).await? {
        ctx.lockout.fail(&key, &network);
        return Err(invalid_code());
    }
    ctx.lockout.success(&key, &network);
    Ok(())
}

/// `POST /api/collections/{c}/totp/disable` `{code}` (a current TOTP or a recovery code) → 204.
pub async fn totp_disable(ctx: &AppCtx, req: &Req, c: &str, body: &Json) -> ServiceResult<()> {
    let (coll, caller) = require_same_collection(ctx, req, c)?;
    let code = body_str(body, "code");
    if code.is_empty() {
        return Err(invalid("code", FieldError::required()));
    }
    let row = totp_row(ctx, &coll, caller.id())
        .await?
        .ok_or_else(|| bad("TOTP is not enabled."))?;
    if row.get("confirmed").and_then(Json::as_bool) == Some(true) {
        verify_code(ctx, req, &caller.record, &row, &code, true).await?;
    }
    delete_row(ctx, "_totps", s(&row, "id")).await?;
    Ok(())
}

/// `POST /api/collections/{c}/auth-with-totp` `{mfaId, code}`: the second factor.
pub async fn auth_with_totp(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let res = auth_with_totp_inner(ctx, req, c, body).await;
    ctx.metrics.signin("totp", super::signin_outcome(&res));
    res
}

async fn auth_with_totp_inner(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let coll = begin_signin(ctx, req, c, SignInMethod::Totp).await?;
    let mfa_id = mfa_id_of(body, &req.query).unwrap_or_default();
    let code = body_str(body, "code");
    if mfa_id.is_empty() {
        return Err(invalid("mfaId", FieldError::required()));
    }
    if code.is_empty() {
        return Err(invalid("code", FieldError::required()));
    }
    let mfa = load_row(ctx, "_mfas", &mfa_id)
        .await?
        .filter(|m| s(m, "collectionRef") == coll.id)
        .ok_or_else(invalid_mfa)?;
    let rec = load_record(ctx, &coll, s(&mfa, "recordRef"))
        .await?
        .ok_or_else(invalid_mfa)?;
    let rec_id = s(&rec, "id").to_string();
    let row = totp_row(ctx, &coll, &rec_id)
        .await?
        .filter(|t| t.get("confirmed").and_then(Json::as_bool) == Some(true))
        .ok_or_else(|| bad("TOTP is not enabled for this account."))?;
    verify_code(ctx, req, &rec, &row, &code, true).await?;
    complete_signin(
        ctx,
        req,
        Signin {
            coll: &coll,
            rec,
            method: SignInMethod::Totp,
            mfa_id: Some(mfa_id),
            meta: None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        let c = recovery_code();
        assert_eq!(c.len(), 11);
        assert_eq!(&c[5..6], "-");
        assert_ne!(recovery_code(), recovery_code());
    }

    #[test]
    fn rfc6238_vector_through_totp_rs() {
        // RFC 6238 appendix B, SHA-1, T = 59 s → 94287082 (8 digits); our 6-digit codes are its tail.
        let secret = totp_rs::Secret::from(b"12345678901234567890".to_vec());
        let t = totp_rs::Builder::new()
            .with_secret(secret)
            .with_digits(8)
            .with_account_name("a")
            .build()
            .unwrap();
        assert_eq!(t.generate(59).to_string(), "94287082");
    }
}
