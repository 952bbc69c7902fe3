//! The protocol's settings object, stored as one JSON document in `_params`. Secrets are kept but never
//! returned.

use basalt_core::sql::Value;
use serde_json::{Map, Value as Json};

use crate::error::{ServiceError, ServiceResult};

use crate::AppCtx;

pub use crate::config::{defaults, Typed};

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
    // Levels are any integer (debug is -4).
    if let (Json::Number(n), false) = (v, path == "logs.minLevel") {
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
    // As PocketBase does: every save prunes the request logs past `maxDays` (0: all of them).
    if let Some(l) = ctx.logs.get() {
        l.prune(ctx.config().logs.max_days).await?;
    }
    Ok(public_view(&s))
}
