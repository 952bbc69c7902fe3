//! Webhooks: superusers register a target URL and a secret per collection and event type. Delivery is
//! two-staged so a slow or dead target never holds back anything else:
//! 1. the [`WebhookSink`] (a bus sink) turns each matching event into a row of `_webhook_deliveries`
//!    (unique per webhook and event, so a redelivered batch adds nothing);
//! 2. the [`Webhooks::run`] worker posts due rows, at most `concurrency` at a time per webhook, one
//!    record's deliveries strictly in order, retrying with exponential backoff and jitter; after
//!    `maxAttempts` a row becomes `dead` (the dead-letter list), which the API lists and replays.
//!
//! Each request is signed: `X-Basalt-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`. Receivers recompute it and reject timestamps more than 5 minutes from their clock
//! (the replay window), and de-duplicate on `X-Basalt-Event-Id`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use basalt_core::sql::{Dialect, Sql, Value};
use basalt_core::{Error, FieldError, FieldErrors};
use basalt_store::{Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};

use crate::config::WebhooksConfig;
use crate::sink::{backoff, Sink};
use crate::Event;

pub const SIGNATURE_HEADER: &str = "x-basalt-signature";
pub const EVENT_ID_HEADER: &str = "x-basalt-event-id";
/// Receivers should refuse signatures older than this (seconds).
pub const REPLAY_WINDOW_SECS: i64 = 300;

pub fn tables(d: Dialect) -> Vec<Sql> {
    let int = match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    };
    [
        "CREATE TABLE IF NOT EXISTS \"_webhooks\" (\"id\" TEXT PRIMARY KEY, \"data\" TEXT NOT NULL)".to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS \"_webhook_deliveries\" (\"id\" TEXT PRIMARY KEY, \"seq\" {int} NOT NULL, \
             \"webhook\" TEXT NOT NULL, \"record\" TEXT NOT NULL, \"event_id\" TEXT NOT NULL, \
             \"status\" TEXT NOT NULL, \"attempts\" {int} NOT NULL, \"next_at\" {int} NOT NULL, \
             \"last_error\" TEXT NOT NULL, \"created\" TEXT NOT NULL, \"updated\" TEXT NOT NULL, \"body\" TEXT NOT NULL)"
        ),
        "CREATE UNIQUE INDEX IF NOT EXISTS \"_webhook_deliveries_event\" ON \"_webhook_deliveries\" (\"webhook\", \"event_id\")".to_string(),
        "CREATE INDEX IF NOT EXISTS \"_webhook_deliveries_due\" ON \"_webhook_deliveries\" (\"status\", \"next_at\")".to_string(),
        "CREATE INDEX IF NOT EXISTS \"_webhook_deliveries_order\" ON \"_webhook_deliveries\" (\"webhook\", \"record\", \"seq\")".to_string(),
    ]
    .into_iter()
    .map(|t| {
        let mut s = Sql::new(d);
        s.push(&t);
        s
    })
    .collect()
}

/// A webhook as stored and as the API shows it (the secret is write-only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// A collection name or id, or `*` for every collection.
    pub collection: String,
    /// Any of `create`, `update`, `delete`.
    pub events: Vec<String>,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    pub created: String,
    pub updated: String,
}

impl Webhook {
    fn matches(&self, ev: &Event) -> bool {
        self.active
            && (self.collection == "*"
                || self.collection == ev.collection
                || self.collection == ev.collection_id)
            && self.events.iter().any(|e| e == ev.action.as_str())
    }
    /// The API view: everything but the secret.
    pub fn public(&self) -> Json {
        let mut w = self.clone();
        w.secret.clear();
        serde_json::to_value(w).unwrap_or(Json::Null)
    }
}

/// Signs a body: `t=<ts>,v1=<hex hmac>` over `"<ts>.<body>"`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; an empty signature would be refused.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = mac.finalize().into_bytes();
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Webhook definitions, the delivery worker and the dead-letter list.
pub struct Webhooks {
    store: Arc<dyn Store>,
    cfg: WebhooksConfig,
    source: String,
    hooks: RwLock<Arc<Vec<Webhook>>>,
    wake: Notify,
    inflight: Mutex<HashSet<String>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Outbound requests under the `[egress]` policy.
    egress: crate::egress::Egress,
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub dead: std::sync::atomic::AtomicU64,
}

impl Webhooks {
    pub async fn new(
        store: Arc<dyn Store>,
        cfg: WebhooksConfig,
        source: &str,
        egress: &crate::egress::Egress,
    ) -> Result<Arc<Webhooks>, StoreError> {
        let egress = egress
            .with(
                concat!("basalt-webhooks/", env!("CARGO_PKG_VERSION")),
                Duration::from_secs(120),
            )
            .map_err(StoreError::Connect)?;
        let w = Arc::new(Webhooks {
            store,
            cfg,
            source: source.into(),
            hooks: RwLock::new(Arc::new(Vec::new())),
            wake: Notify::new(),
            inflight: Mutex::new(HashSet::new()),
            limits: Mutex::new(HashMap::new()),
            egress,
            delivered: Default::default(),
            failed_attempts: Default::default(),
            dead: Default::default(),
        });
        w.reload().await?;
        Ok(w)
    }

    fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    /// Reloads the definitions after a change.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut q = Sql::new(self.dialect());
        q.push("SELECT \"data\" FROM \"_webhooks\" ORDER BY \"id\"");
        let list: Vec<Webhook> = self
            .store
            .query(&q)
            .await?
            .rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter_map(|v| serde_json::from_str(&v.into_string()).ok())
            .collect();
        *self.hooks.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
        Ok(())
    }

    pub fn list(&self) -> Arc<Vec<Webhook>> {
        self.hooks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, id: &str) -> Option<Webhook> {
        self.list().iter().find(|w| w.id == id).cloned()
    }

    /// Validates a definition (create: `existing` is None) and stores it.
    pub async fn save(
        &self,
        body: &Map<String, Json>,
        existing: Option<Webhook>,
        collection_exists: &(dyn Fn(&str) -> bool + Sync),
    ) -> basalt_core::error::Result<Webhook> {
        let now = basalt_core::time::now();
        let creating = existing.is_none();
        let mut w = existing.unwrap_or_else(|| Webhook {
            id: basalt_core::id::new_record_id(),
            name: String::new(),
            url: String::new(),
            secret: String::new(),
            collection: "*".into(),
            events: vec!["create".into(), "update".into(), "delete".into()],
            active: true,
            timeout_ms: None,
            max_attempts: None,
            concurrency: None,
            created: now.clone(),
            updated: now.clone(),
        });
        let mut errs = FieldErrors::new();
        let text = |k: &str, errs: &mut FieldErrors| -> Option<String> {
            match body.get(k) {
                None => None,
                Some(Json::String(s)) => Some(s.trim().to_string()),
                Some(_) => {
                    errs.insert(
                        k.into(),
                        FieldError::new(basalt_core::codes::INVALID_TYPE, "Must be a string."),
                    );
                    None
                }
            }
        };
        if let Some(v) = text("name", &mut errs) {
            w.name = v;
        }
        if let Some(v) = text("url", &mut errs) {
            w.url = v;
        }
        if let Some(v) = text("secret", &mut errs) {
            w.secret = v;
        }
        if let Some(v) = text("collection", &mut errs) {
            w.collection = v;
        }
        match body.get("events") {
            None => {}
            Some(Json::Array(a)) => {
                w.events = a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if w.events.len() != a.len()
                    || w.events.is_empty()
                    || w.events.iter().any(|e| crate::Action::parse(e).is_none())
                {
                    errs.insert(
                        "events".into(),
                        FieldError::new(
                            basalt_core::codes::INVALID_VALUE,
                            "Must be a non-empty list of create, update, delete.",
                        ),
                    );
                }
            }
            Some(_) => {
                errs.insert(
                    "events".into(),
                    FieldError::new(
                        basalt_core::codes::INVALID_VALUE,
                        "Must be a non-empty list of create, update, delete.",
                    ),
                );
            }
        }
        match body.get("active") {
            None => {}
            Some(Json::Bool(b)) => w.active = *b,
            Some(_) => {
                errs.insert(
                    "active".into(),
                    FieldError::new(basalt_core::codes::INVALID_TYPE, "Must be a boolean."),
                );
            }
        }
        let num = |k: &str, min: u64, max: u64, errs: &mut FieldErrors| -> Option<Option<u64>> {
            match body.get(k) {
                None => None,
                Some(Json::Null) => Some(None),
                Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                    Some(n) => Some(Some(n)),
                    None => {
                        errs.insert(
                            k.into(),
                            FieldError::new(
                                basalt_core::codes::OUT_OF_RANGE,
                                format!("Must be a whole number from {min} to {max}."),
                            ),
                        );
                        None
                    }
                },
            }
        };
        if let Some(v) = num("timeoutMs", 100, 120_000, &mut errs) {
            w.timeout_ms = v;
        }
        if let Some(v) = num("maxAttempts", 1, 100, &mut errs) {
            w.max_attempts = v.map(|n| n as u32);
        }
        if let Some(v) = num("concurrency", 1, 64, &mut errs) {
            w.concurrency = v.map(|n| n as usize);
        }
        if w.name.is_empty() {
            w.name = w.url.clone();
        }
        if w.name.chars().count() > 200 {
            errs.insert(
                "name".into(),
                FieldError::new(
                    basalt_core::codes::LENGTH_OUT_OF_RANGE,
                    "Must be at most 200 characters.",
                ),
            );
        }
        match reqwest::Url::parse(&w.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if let Err(e) = self.egress.check_url(&w.url) {
                    errs.entry("url".into()).or_insert(FieldError::new(
                        basalt_core::codes::INVALID_URL,
                        format!("Not allowed: {e}."),
                    ));
                }
            }
            _ => {
                errs.entry("url".into()).or_insert(FieldError::new(
                    basalt_core::codes::INVALID_URL,
                    "Must be an http or https URL.",
                ));
            }
        }
        if w.secret.chars().count() < 16 {
            errs.entry("secret".into()).or_insert(FieldError::new(
                basalt_core::codes::LENGTH_OUT_OF_RANGE,
                "Must be at least 16 characters.",
            ));
        }
        if w.collection != "*" && !collection_exists(&w.collection) {
            errs.entry("collection".into()).or_insert(FieldError::new(
                basalt_core::codes::MISSING_COLLECTION,
                "No such collection (use * for all).",
            ));
        }
        if !errs.is_empty() {
            let msg = if creating {
                "Failed to create webhook."
            } else {
                "Failed to update webhook."
            };
            return Err(Error::validation(msg, errs));
        }
        w.updated = now;
        let data = serde_json::to_string(&w).map_err(Error::internal)?;
        let d = self.dialect();
        let mut q = Sql::new(d);
        q.push("INSERT INTO \"_webhooks\" (\"id\", \"data\") VALUES (")
            .bind(Value::Text(w.id.clone()))
            .push(", ")
            .bind(Value::Text(data))
            .push(") ON CONFLICT (\"id\") DO UPDATE SET \"data\" = excluded.\"data\"");
        let mut tx = self.store.begin().await.map_err(store_err)?;
        tx.execute(&q).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        self.reload().await.map_err(store_err)?;
        Ok(w)
    }

    pub async fn delete(&self, id: &str) -> basalt_core::error::Result<bool> {
        let d = self.dialect();
        let mut tx = self.store.begin().await.map_err(store_err)?;
        let mut q = Sql::new(d);
        q.push("DELETE FROM \"_webhooks\" WHERE \"id\" = ")
            .bind(Value::Text(id.into()));
        let n = tx.execute(&q).await.map_err(store_err)?;
        let mut q = Sql::new(d);
        q.push("DELETE FROM \"_webhook_deliveries\" WHERE \"webhook\" = ")
            .bind(Value::Text(id.into()));
        tx.execute(&q).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        self.reload().await.map_err(store_err)?;
        Ok(n > 0)
    }

    /// Deliveries with the given status (`pending` or `dead`), oldest first, optionally for one webhook.
    pub async fn deliveries(
        &self,
        status: &str,
        webhook: Option<&str>,
        limit: i64,
    ) -> basalt_core::error::Result<Vec<Json>> {
        let mut q = Sql::new(self.dialect());
        q.push("SELECT \"id\", \"seq\", \"webhook\", \"record\", \"event_id\", \"status\", \"attempts\", \"next_at\", \"last_error\", \"created\", \"updated\", \"body\" FROM \"_webhook_deliveries\" WHERE \"status\" = ")
            .bind(Value::Text(status.into()));
        if let Some(w) = webhook {
            q.push(" AND \"webhook\" = ").bind(Value::Text(w.into()));
        }
        q.push(" ORDER BY \"seq\" LIMIT ").bind(Value::Int(limit));
        let rows = self.store.query(&q).await.map_err(store_err)?;
        Ok(rows
            .rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let mut n = || it.next().unwrap_or(Value::Null);
                let (id, seq, webhook, record, event_id, status, attempts, next_at, last_error, created, updated, body) =
                    (n(), n(), n(), n(), n(), n(), n(), n(), n(), n(), n(), n());
                json!({
                    "id": id.into_string(),
                    "seq": seq.as_i64(),
                    "webhook": webhook.into_string(),
                    "record": record.into_string(),
                    "eventId": event_id.into_string(),
                    "status": status.into_string(),
                    "attempts": attempts.as_i64(),
                    "nextAttemptAt": next_at.as_i64(),
                    "lastError": last_error.into_string(),
                    "created": created.into_string(),
                    "updated": updated.into_string(),
                    "event": serde_json::from_str::<Json>(&body.into_string()).unwrap_or(Json::Null),
                })
            })
            .collect())
    }

    /// Puts a dead delivery back in the queue (attempts reset). False when there is no such dead one.
    pub async fn replay(&self, delivery: &str) -> basalt_core::error::Result<bool> {
        let mut q = Sql::new(self.dialect());
        q.push("UPDATE \"_webhook_deliveries\" SET \"status\" = 'pending', \"attempts\" = 0, \"next_at\" = ")
            .bind(Value::Int(now_ms()))
            .push(", \"updated\" = ")
            .bind(Value::Text(basalt_core::time::now()))
            .push(" WHERE \"id\" = ")
            .bind(Value::Text(delivery.into()))
            .push(" AND \"status\" = 'dead'");
        let mut tx = self.store.begin().await.map_err(store_err)?;
        let n = tx.execute(&q).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        self.wake.notify_one();
        Ok(n > 0)
    }

    /// Queues deliveries for the events' matching webhooks (idempotent per webhook and event).
    async fn enqueue(&self, events: &[Arc<Event>]) -> Result<(), StoreError> {
        let hooks = self.list();
        if hooks.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let now = basalt_core::time::now();
        let at = now_ms();
        let mut tx = self.store.begin().await?;
        let mut any = false;
        for ev in events {
            let mut body: Option<String> = None;
            for h in hooks.iter().filter(|h| h.matches(ev)) {
                let body = body
                    .get_or_insert_with(|| ev.cloudevent(&self.source).to_string())
                    .clone();
                let mut q = Sql::new(d);
                q.push("INSERT INTO \"_webhook_deliveries\" (\"id\", \"seq\", \"webhook\", \"record\", \"event_id\", \"status\", \"attempts\", \"next_at\", \"last_error\", \"created\", \"updated\", \"body\") VALUES (");
                q.bind(Value::Text(basalt_core::id::new_record_id()))
                    .push(", ");
                q.bind(Value::Int(ev.seq)).push(", ");
                q.bind(Value::Text(h.id.clone())).push(", ");
                q.bind(Value::Text(format!(
                    "{}/{}",
                    ev.collection_id, ev.record_id
                )))
                .push(", ");
                q.bind(Value::Text(ev.id.clone())).push(", 'pending', 0, ");
                q.bind(Value::Int(at)).push(", '', ");
                q.bind(Value::Text(now.clone())).push(", ");
                q.bind(Value::Text(now.clone())).push(", ");
                q.bind(Value::Text(body))
                    .push(") ON CONFLICT (\"webhook\", \"event_id\") DO NOTHING");
                tx.execute(&q).await?;
                any = true;
            }
        }
        tx.commit().await?;
        if any {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn limit_for(&self, h: &Webhook) -> Arc<Semaphore> {
        let mut g = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(h.id.clone())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    h.concurrency.unwrap_or(self.cfg.concurrency).max(1),
                ))
            })
            .clone()
    }

    /// The delivery worker: runs until the process stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if let Err(e) = self.dispatch_due().await {
                tracing::warn!(error = %e, "webhooks: reading due deliveries failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn dispatch_due(self: &Arc<Self>) -> Result<(), StoreError> {
        if self.list().is_empty() {
            return Ok(());
        }
        let mut q = Sql::new(self.dialect());
        q.push("SELECT d.\"id\", d.\"webhook\", d.\"attempts\", d.\"body\", d.\"event_id\", d.\"next_at\" FROM \"_webhook_deliveries\" AS d WHERE d.\"status\" = 'pending' AND d.\"next_at\" <= ")
            .bind(Value::Int(now_ms()))
            .push(" AND NOT EXISTS (SELECT 1 FROM \"_webhook_deliveries\" AS e WHERE e.\"webhook\" = d.\"webhook\" AND e.\"record\" = d.\"record\" AND e.\"status\" = 'pending' AND e.\"seq\" < d.\"seq\") ORDER BY d.\"seq\" LIMIT 500");
        let rows = self.store.query(&q).await?;
        for r in rows.rows {
            let mut it = r.into_iter();
            let mut n = || it.next().unwrap_or(Value::Null);
            let (id, hook, attempts, body, event_id, next_at) = (
                n().into_string(),
                n().into_string(),
                n(),
                n().into_string(),
                n().into_string(),
                n().as_i64(),
            );
            let attempts = attempts.as_f64().unwrap_or(0.0) as u32;
            let Some(h) = self.get(&hook) else { continue };
            if !h.active {
                continue;
            }
            {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                if inflight.contains(&id) {
                    continue;
                }
                let Ok(permit) = self.limit_for(&h).try_acquire_owned() else {
                    continue;
                };
                inflight.insert(id.clone());
                let me = self.clone();
                tokio::spawn(async move {
                    // Many nodes run this worker: the one whose claim moves `next_at` sends.
                    match me.claim(&h, &id, next_at).await {
                        Ok(true) => me.attempt(&h, &id, attempts, body, &event_id).await,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "webhooks: claiming a delivery failed")
                        }
                    }
                    me.inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    drop(permit);
                    me.wake.notify_one();
                });
            }
        }
        Ok(())
    }

    /// Claims a due delivery for this node: moves its `next_at` past the attempt's timeout (plus a
    /// margin), but only if it still holds the value this node read. Another node's claim (or a
    /// recorded outcome) changed it otherwise. A node that dies mid-attempt leaves the delivery due
    /// again once the claim runs out: at least once, never lost.
    async fn claim(&self, h: &Webhook, id: &str, seen: i64) -> Result<bool, StoreError> {
        let timeout = h.timeout_ms.unwrap_or(self.cfg.timeout_ms) as i64;
        let mut q = Sql::new(self.dialect());
        q.push("UPDATE \"_webhook_deliveries\" SET \"next_at\" = ")
            .bind(Value::Int(now_ms() + timeout + 5_000))
            .push(" WHERE \"id\" = ")
            .bind(Value::Text(id.into()))
            .push(" AND \"status\" = 'pending' AND \"next_at\" = ")
            .bind(Value::Int(seen));
        let mut tx = self.store.begin().await?;
        let n = tx.execute(&q).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn attempt(&self, h: &Webhook, id: &str, attempts: u32, body: String, event_id: &str) {
        let ts = chrono::Utc::now().timestamp();
        let sig = sign(&h.secret, ts, body.as_bytes());
        // The write's trace continues in the receiver (the CloudEvent carries it as an extension).
        let traceparent = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("traceparent")?.as_str().map(str::to_string));
        let timeout = Duration::from_millis(h.timeout_ms.unwrap_or(self.cfg.timeout_ms));
        // Checked again at delivery: the allow-list may have changed since the hook was saved.
        let err = match self.egress.check_url(&h.url) {
            Err(e) => Some(e),
            Ok(()) => {
                let res = self
                    .egress
                    .client()
                    .post(&h.url)
                    .timeout(timeout)
                    .header("content-type", "application/cloudevents+json")
                    .header(EVENT_ID_HEADER, event_id)
                    .header("x-basalt-timestamp", ts.to_string())
                    .header(SIGNATURE_HEADER, sig);
                let res = match &traceparent {
                    Some(tp) => res.header("traceparent", tp),
                    None => res,
                };
                let res = res.body(body).send().await;
                match res {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("target answered {}", r.status().as_u16())),
                    Err(e) if e.is_timeout() => {
                        Some(format!("timed out after {} ms", timeout.as_millis()))
                    }
                    Err(e) => Some(format!("request failed: {}", error_chain(&e))),
                }
            }
        };
        let d = self.dialect();
        let mut q = Sql::new(d);
        match &err {
            None => {
                q.push("DELETE FROM \"_webhook_deliveries\" WHERE \"id\" = ")
                    .bind(Value::Text(id.into()));
            }
            Some(e) => {
                let attempts = attempts + 1;
                let max = h.max_attempts.unwrap_or(self.cfg.max_attempts).max(1);
                let dead = attempts >= max;
                let next = now_ms()
                    + backoff(
                        attempts - 1,
                        self.cfg.backoff_min_ms,
                        self.cfg.backoff_max_ms,
                    )
                    .as_millis() as i64;
                q.push("UPDATE \"_webhook_deliveries\" SET \"attempts\" = ")
                    .bind(Value::Int(attempts as i64))
                    .push(", \"status\" = ")
                    .bind(Value::Text(if dead { "dead" } else { "pending" }.into()))
                    .push(", \"next_at\" = ")
                    .bind(Value::Int(next))
                    .push(", \"last_error\" = ")
                    .bind(Value::Text(e.clone()))
                    .push(", \"updated\" = ")
                    .bind(Value::Text(basalt_core::time::now()))
                    .push(" WHERE \"id\" = ")
                    .bind(Value::Text(id.into()));
                use std::sync::atomic::Ordering::Relaxed;
                self.failed_attempts.fetch_add(1, Relaxed);
                if dead {
                    self.dead.fetch_add(1, Relaxed);
                    tracing::warn!(webhook = %h.id, delivery = id, error = %e, "webhook delivery moved to the dead-letter list");
                }
            }
        }
        if err.is_none() {
            self.delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // The outcome is recorded even when the database is briefly unavailable: retry a few times.
        for i in 0..5u32 {
            let r = async {
                let mut tx = self.store.begin().await?;
                tx.execute(&q).await?;
                tx.commit().await
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: recording a delivery outcome failed");
                    tokio::time::sleep(backoff(i, 100, 2_000)).await;
                }
            }
        }
    }

    pub fn health(&self) -> Json {
        use std::sync::atomic::Ordering::Relaxed;
        json!({
            "webhooks": self.list().len(),
            "delivered": self.delivered.load(Relaxed),
            "failedAttempts": self.failed_attempts.load(Relaxed),
            "dead": self.dead.load(Relaxed),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn store_err(e: StoreError) -> Error {
    match e {
        StoreError::BadValue(m) => Error::bad(m),
        other => Error::internal(other),
    }
}

/// The bus sink that turns events into queued deliveries.
pub struct WebhookSink(pub Arc<Webhooks>);

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhooks"
    }
    fn active(&self) -> bool {
        !self.0.list().is_empty()
    }
    async fn deliver(&self, events: &[Arc<Event>]) -> Result<(), String> {
        self.0.enqueue(events).await.map_err(|e| e.to_string())
    }
}
