//! The protocol's settings object, stored as one JSON document in `_params`. Secrets are kept but never
//! returned.

use basalt_core::sql::Value;
use serde_json::{json, Map, Value as Json};

use crate::error::{ServiceError, ServiceResult};

use crate::AppCtx;

pub fn defaults() -> Json {
    json!({
        "meta": {"appName": "Basalt", "appURL": "http://localhost:8090", "senderName": "Support", "senderAddress": "support@example.com", "hideControls": false},
        "logs": {"maxDays": 5, "minLevel": 0, "logIP": true, "logAuthId": false},
        "smtp": {"enabled": false, "port": 587, "host": "smtp.example.com", "username": "", "authMethod": "", "tls": false, "localName": ""},
        "s3": {"enabled": false, "bucket": "", "region": "", "endpoint": "", "accessKey": "", "forcePathStyle": false},
        "backups": {"cron": "", "cronMaxKeep": 3, "s3": {"enabled": false, "bucket": "", "region": "", "endpoint": "", "accessKey": "", "forcePathStyle": false}},
        "batch": {"enabled": false, "maxRequests": 50, "timeout": 3, "maxBodySize": 0},
        "rateLimits": {"enabled": false, "excludedIPs": [], "rules": [
            {"label": "*:auth", "audience": "", "duration": 3, "maxRequests": 2},
            {"label": "*:create", "audience": "", "duration": 5, "maxRequests": 20},
            {"label": "/api/batch", "audience": "", "duration": 1, "maxRequests": 3},
            {"label": "/api/", "audience": "", "duration": 10, "maxRequests": 300}
        ]},
        "trustedProxy": {"headers": [], "useLeftmostIP": false},
        "superuserIPs": []
    })
}

const SECRET_KEYS: [&str; 2] = ["password", "secret"];

/// Settings as returned to clients: secrets removed.
pub fn public_view(v: &Json) -> Json {
    let mut v = v.clone();
    strip(&mut v);
    v
}

fn strip(v: &mut Json) {
    if let Json::Object(o) = v {
        for k in SECRET_KEYS {
            o.remove(k);
        }
        for (_, x) in o.iter_mut() {
            strip(x);
        }
    }
}

fn merge(dst: &mut Json, src: &Json) {
    match (dst, src) {
        (Json::Object(d), Json::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => merge(x, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

pub async fn load(ctx: &AppCtx) -> ServiceResult<()> {
    let mut q = ctx.sql();
    q.push("SELECT value FROM _params WHERE key = 'settings'");
    let mut s = defaults();
    if let Some(v) = ctx.store.query(&q).await?.scalar() {
        if let Ok(stored) = serde_json::from_str::<Json>(&v.into_string()) {
            merge(&mut s, &stored);
        }
    }
    ctx.set_settings(s);
    Ok(())
}

/// Validates a partial settings body against the shape of the defaults: known top-level keys, and
/// each value of the same JSON type as its default.
fn validate(patch: &Map<String, Json>) -> Result<(), basalt_core::FieldErrors> {
    let d = defaults();
    let mut errs = basalt_core::FieldErrors::new();
    crate::limits::validate_settings(&Json::Object(patch.clone()), &mut errs);
    if let Some(cron) = patch
        .get("backups")
        .and_then(|b| b.get("cron"))
        .and_then(Json::as_str)
    {
        if !cron.is_empty() && crate::cron::Cron::parse(cron).is_none() {
            errs.insert(
                "backups.cron".into(),
                basalt_core::FieldError::new(
                    basalt_core::codes::INVALID_CRON,
                    "Invalid cron expression - must be a valid macro or to have exactly 5 space separated segments.",
                ),
            );
        }
    }
    for (k, v) in patch {
        match d.get(k) {
            None => {}
            Some(def) => check_shape(k, def, v, &mut errs),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Checks of the merged settings: enabled S3 storage names its bucket, region, endpoint and key.
fn validate_merged(s: &Json) -> Result<(), basalt_core::FieldErrors> {
    let mut errs = basalt_core::FieldErrors::new();
    for key in ["s3", "backups.s3"] {
        let mut v = Some(s);
        for part in key.split('.') {
            v = v.and_then(|x| x.get(part));
        }
        let Some(v) = v else { continue };
        if !v.get("enabled").and_then(Json::as_bool).unwrap_or(false) {
            continue;
        }
        for f in ["bucket", "region", "endpoint", "accessKey"] {
            if v.get(f).and_then(Json::as_str).unwrap_or("").is_empty() {
                errs.insert(
                    format!("{key}.{f}"),
                    basalt_core::FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
                );
            }
        }
    }
    let required = |errs: &mut basalt_core::FieldErrors, k: &str| {
        errs.insert(
            k.into(),
            basalt_core::FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
        );
    };
    let num = |p: &str, k: &str| {
        s.get(p)
            .and_then(|x| x.get(k))
            .and_then(Json::as_f64)
            .unwrap_or(0.0)
    };
    let on = |p: &str, k: &str| s.get(p).and_then(|x| x.get(k));
    if on("batch", "enabled").and_then(Json::as_bool) == Some(true) {
        if num("batch", "maxRequests") <= 0.0 {
            required(&mut errs, "batch.maxRequests");
        }
        if num("batch", "timeout") <= 0.0 {
            required(&mut errs, "batch.timeout");
        }
    }
    if !on("backups", "cron")
        .and_then(Json::as_str)
        .unwrap_or("")
        .is_empty()
        && num("backups", "cronMaxKeep") <= 0.0
    {
        required(&mut errs, "backups.cronMaxKeep");
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn check_shape(path: &str, def: &Json, v: &Json, errs: &mut basalt_core::FieldErrors) {
    let same = matches!(
        (def, v),
        (Json::Object(_), Json::Object(_))
            | (Json::Array(_), Json::Array(_))
            | (Json::String(_), Json::String(_))
            | (Json::Number(_), Json::Number(_))
            | (Json::Bool(_), Json::Bool(_))
    );
    if !same {
        errs.insert(
            path.to_string(),
            basalt_core::FieldError::new(basalt_core::codes::INVALID_VALUE, "Invalid value type."),
        );
        return;
    }
    if let (Json::Object(d), Json::Object(o)) = (def, v) {
        for (k, x) in o {
            if let Some(dd) = d.get(k) {
                check_shape(&format!("{path}.{k}"), dd, x, errs);
            }
        }
    }
    if let Json::Number(n) = v {
        if n.as_f64().is_some_and(|f| f < 0.0) {
            errs.insert(
                path.to_string(),
                basalt_core::FieldError::new(
                    basalt_core::codes::MIN_GREATER_EQUAL_THAN_REQUIRED,
                    "Must be no less than 0.",
                )
                .with_params(serde_json::json!({"threshold": 0})),
            );
        }
    }
}

pub async fn patch(ctx: &AppCtx, body: &Json) -> ServiceResult<Json> {
    let Some(obj) = body.as_object() else {
        return Err(crate::error::bad("Invalid settings."));
    };
    // Shape errors of the patch and rule errors of the merged result come back together.
    let mut errs = validate(obj).err().unwrap_or_default();
    let mut s = ctx.settings();
    for (k, v) in obj {
        if let Some(slot) = s.get_mut(k) {
            merge(slot, v);
        }
    }
    if let Err(more) = validate_merged(&s) {
        for (k, v) in more {
            errs.entry(k).or_insert(v);
        }
    }
    if !errs.is_empty() {
        return Err(ServiceError(basalt_core::Error::validation(
            "An error occurred while saving the new settings.",
            errs,
        )));
    }
    let mut tx = ctx.store.begin().await?;
    let mut del = ctx.sql();
    del.push("DELETE FROM _params WHERE key = 'settings'");
    tx.execute(&del).await?;
    let mut ins = ctx.sql();
    ins.push("INSERT INTO _params (key, value) VALUES ('settings', ")
        .bind(Value::Text(s.to_string()))
        .push(")");
    tx.execute(&ins).await?;
    tx.commit().await?;
    ctx.set_settings(s.clone());
    ctx.announce(basalt_cluster::bus::Msg::Settings).await;
    Ok(public_view(&s))
}

/// The settings the service reads, typed, parsed once per change (`AppState::set_settings`) and
/// shared as an `Arc`: reading a setting never clones the JSON document. The document stays the
/// protocol's form for `GET/PATCH /api/settings`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Typed {
    pub meta: Meta,
    pub smtp: Smtp,
    pub backups: BackupsSettings,
    pub batch: Batch,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub app_name: String,
    #[serde(rename = "appURL")]
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Smtp {
    pub enabled: bool,
    pub host: String,
    pub port: u64,
    pub username: String,
    pub password: String,
    pub auth_method: String,
    pub tls: bool,
    pub local_name: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackupsSettings {
    pub cron: String,
    pub cron_max_keep: u64,
    /// The protocol's S3 object (read by `files::S3Config::from_settings`).
    pub s3: Json,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Batch {
    pub enabled: bool,
    pub max_requests: u64,
    pub timeout: u64,
    pub max_body_size: u64,
}

impl Typed {
    /// The typed view of a settings document (already merged over [`defaults`] and validated).
    pub fn from_json(v: &Json) -> Typed {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "settings do not fit their types; using defaults");
            serde_json::from_value(defaults()).unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    #[test]
    fn the_defaults_parse_into_the_typed_view() {
        let t = Typed::from_json(&defaults());
        assert_eq!(t.meta.app_name, "Basalt");
        assert_eq!(t.meta.app_url, "http://localhost:8090");
        assert_eq!(t.smtp.port, 587);
        assert_eq!(t.batch.max_requests, 50);
        assert_eq!(t.backups.cron_max_keep, 3);
        assert!(!t.smtp.enabled);
    }
}
