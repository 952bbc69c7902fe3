//! The settings document's defaults and its typed view ([`Typed`]). A leaf module: the state holds a
//! `Typed` without reading anything else of the service.

use serde_json::{json, Value as Json};

/// The protocol's settings document with every default filled in.
pub fn defaults() -> Json {
    json!({
        "meta": {"appName": "Basalt", "appURL": "http://localhost:8090", "senderName": "Support", "senderAddress": "support@example.com", "hideControls": false},
        "logs": {"maxDataSize": 0, "maxDays": 5, "minLevel": 0, "logIP": true, "logAuthId": false},
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

/// The settings the service reads, typed, parsed once per change (`AppState::set_settings`) and
/// shared as an `Arc`: reading a setting never clones the JSON document. The document stays the
/// protocol's form for `GET/PATCH /api/settings`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Typed {
    pub meta: Meta,
    pub logs: LogsSettings,
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

/// `logs`: request logging (see the `logs` module).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogsSettings {
    /// Days entries are kept; 0 turns request logging off.
    pub max_days: i64,
    /// Entries below this level are not stored.
    pub min_level: i64,
    #[serde(rename = "logIP")]
    pub log_ip: bool,
    pub log_auth_id: bool,
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
        assert_eq!(t.logs.max_days, 5);
        assert!(t.logs.log_ip && !t.logs.log_auth_id);
        assert!(!t.smtp.enabled);
    }
}
