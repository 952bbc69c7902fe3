//! Shared application state: the store, the collection cache and settings.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use basalt_events::webhook::Webhooks;
use basalt_events::EventBus;

use basalt_core::filter::compile::Schema;
use basalt_core::schema::Collection;
use basalt_core::sql::{Dialect, Sql, Value};
use basalt_store::Store;
use serde_json::Value as Json;

use crate::error::ServiceResult;
use crate::hub::{Hub, RealtimeConfig};
use crate::limits::{Lockout, Policy, Rates};

pub struct AppState {
    pub store: Arc<dyn Store>,
    collections: RwLock<Arc<Collections>>,
    pub settings: RwLock<Json>,
    /// The typed view of `settings`, replaced with it.
    typed: RwLock<Arc<crate::config::Typed>>,
    /// The event bus, once started (after bootstrap created the outbox tables).
    pub events: OnceLock<Arc<EventBus>>,
    pub webhooks: OnceLock<Arc<Webhooks>>,
    pub realtime: Arc<Hub>,
    /// Settings parts the request path reads (rate limits, proxies, superuser IPs), parsed once.
    policy: RwLock<Arc<Policy>>,
    /// `policy.rate_limits_enabled`, readable without the lock (checked on every request).
    rate_limits_on: std::sync::atomic::AtomicBool,
    /// Token buckets: configured rate limits, the built-in auth limit, OTP tries, resend guards
    /// (in Redis, shared by the cluster, when Redis is configured).
    pub rates: Rates,
    /// The Redis component, when configured.
    pub redis: Option<Arc<basalt_cluster::redis::Redis>>,
    /// Rows by id for reads that need no query to decide access.
    pub cache: crate::cache::RecordCache,
    /// Cross-node messages (set once the app is built).
    pub cluster: OnceLock<Arc<basalt_cluster::bus::ClusterBus>>,
    /// This node's entry in the node registry (set once the app is built).
    pub registry: OnceLock<Arc<basalt_cluster::registry::Registry>>,
    /// Whether `/readyz` answers 200: false until started, and again once draining began.
    pub ready: std::sync::atomic::AtomicBool,
    /// Progressive lockout per (identity, client network) after failed secrets.
    pub lockout: Lockout,
    /// Admission of client reads that join relations ([`crate::limits::HeavyReads`]).
    pub heavy_reads: crate::limits::HeavyReads,
    /// Outbound OAuth2/OIDC requests under the `[egress]` policy (webhooks hold their own).
    pub egress: basalt_events::egress::Egress,
    /// The dev mailbox folder (mail is written here when no SMTP server is configured).
    pub mailbox: Option<std::path::PathBuf>,
    /// File storage (local or S3), uploads in flight, thumbnails.
    pub files: crate::files::Files,
    /// Backups in progress (one at a time).
    pub backups: Backups,
    /// The modules this process runs (`--target`).
    pub target: &'static crate::roles::Target,
    /// Request logs (set once the app is built).
    pub logs: OnceLock<Arc<crate::logs::RequestLogs>>,
    /// Prometheus metrics ([`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    /// The PII master key ring ([`crate::keyring`]); `None` when not configured.
    pub pii: Option<Arc<crate::keyring::KeyRing>>,
    /// `[pii] require_reason`: superusers see pii in clear only with an `X-Pii-Reason` header.
    pub pii_require_reason: bool,
    /// Some `[events]` sink sets `reveal_pii`: each write seals its pii values into its event
    /// (`pii::seal_event`).
    pub reveal_events: bool,
    /// `[pii] require_tls`: with pii fields, requests from other hosts must come over HTTPS.
    pub pii_require_tls: bool,
    /// `[graphql]` (see [`crate::GraphqlOptions`]).
    pub graphql: crate::GraphqlOptions,
    /// `--public-dir` / `--index-fallback` (see [`crate::Options`]).
    pub public_dir: Option<std::path::PathBuf>,
    pub index_fallback: bool,
    /// Reveals waiting to be written to `_piiAudit`.
    pub audit: crate::audit::Audit,
    /// The PII key rotation of this node, when one runs.
    pub rotation: crate::audit::Rotation,
    /// `(version, commit)` of the binary, for `basalt_build_info`.
    pub build: (&'static str, &'static str),
}

/// An immutable snapshot of every collection, indexed by id and by name.
#[derive(Default)]
pub struct Collections {
    pub list: Vec<Arc<Collection>>,
    by_key: HashMap<String, Arc<Collection>>,
    /// Whether any collection's rule reads `@request.headers`, `@request.query`, `@request.body`: only
    /// then are those parts copied into each request's `RequestInfo` (related collections' rules run
    /// in expand and in filters through relations, so all collections count).
    pub rules_read: [bool; 3],
    /// The PII key ring, for blind-index lookups in filters and rules.
    pii: Option<Arc<crate::keyring::KeyRing>>,
    /// Whether any collection has pii fields (request logs then redact filter literals).
    pub has_pii: bool,
}

impl Collections {
    pub fn new(list: Vec<Arc<Collection>>) -> Self {
        let mut by_key = HashMap::new();
        for c in &list {
            by_key.insert(c.id.clone(), c.clone());
            by_key.insert(c.name.clone(), c.clone());
            by_key.insert(c.name.to_ascii_lowercase(), c.clone());
        }
        let read = |part: &str| list.iter().any(|c| rules_mention(c, part));
        let rules_read = [
            read("@request.headers"),
            read("@request.query"),
            read("@request.body"),
        ];
        let has_pii = list
            .iter()
            .any(|c| c.fields.iter().any(|f| f.pii.is_some()));
        Collections {
            has_pii,
            list,
            by_key,
            rules_read,
            pii: None,
        }
    }
    pub fn with_pii(mut self, ring: Option<Arc<crate::keyring::KeyRing>>) -> Self {
        self.pii = ring;
        self
    }
    pub fn get(&self, key: &str) -> Option<Arc<Collection>> {
        self.by_key
            .get(key)
            .or_else(|| self.by_key.get(&key.to_ascii_lowercase()))
            .cloned()
    }
}

impl Schema for Collections {
    fn collection(&self, name_or_id: &str) -> Option<Arc<Collection>> {
        self.get(name_or_id)
    }
    fn blind_index(
        &self,
        coll: &Collection,
        field: &basalt_core::schema::Field,
        text: &str,
    ) -> Option<Vec<String>> {
        Some(self.pii.as_ref()?.index_all(&coll.id, &field.id, text))
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        realtime: RealtimeConfig,
        mailbox: Option<std::path::PathBuf>,
        files: crate::files::Files,
        redis: Option<Arc<basalt_cluster::redis::Redis>>,
        cache: crate::cache::CacheConfig,
        egress: basalt_events::egress::Egress,
    ) -> Self {
        let heavy_reads = crate::limits::HeavyReads::new(store.read_concurrency());
        let metrics = crate::metrics::Metrics::new(store.metrics());
        AppState {
            store,
            collections: RwLock::new(Arc::new(Collections::default())),
            settings: RwLock::new(Json::Null),
            typed: RwLock::new(Arc::default()),
            events: OnceLock::new(),
            webhooks: OnceLock::new(),
            realtime: Hub::new(realtime),
            policy: RwLock::new(Arc::new(Policy::default())),
            rate_limits_on: std::sync::atomic::AtomicBool::new(false),
            rates: Rates::new(redis.clone()),
            cache: crate::cache::RecordCache::new(cache, redis.clone()),
            redis,
            cluster: OnceLock::new(),
            registry: OnceLock::new(),
            ready: std::sync::atomic::AtomicBool::new(false),
            lockout: Lockout::default(),
            heavy_reads,
            egress,
            mailbox,
            files,
            backups: Default::default(),
            target: crate::roles::Target::all(),
            metrics,
            logs: OnceLock::new(),
            pii: None,
            pii_require_reason: false,
            reveal_events: false,
            pii_require_tls: false,
            graphql: crate::GraphqlOptions::default(),
            public_dir: None,
            index_fallback: true,
            audit: Default::default(),
            rotation: Default::default(),
            build: (env!("CARGO_PKG_VERSION"), "unknown"),
        }
    }

    /// After a commit that appended events up to `seq`: wakes the dispatcher and, when realtime
    /// clients are connected, waits (≤2 s) until the event went through their fan-out, so a client
    /// that sees the write's response has been sent its event, and one subscribing after it has not.
    pub async fn committed(&self, seq: i64) {
        if let Some(c) = self.cluster.get() {
            c.events_committed(seq);
        }
        if let Some(b) = self.events.get() {
            b.note_committed(seq);
            if self.realtime.is_empty() {
                b.committed();
            } else {
                b.wait_dispatched(seq, std::time::Duration::from_secs(2))
                    .await;
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    pub fn sql(&self) -> Sql {
        Sql::new(self.dialect())
    }

    pub fn collections(&self) -> Arc<Collections> {
        match self.collections.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn collection(&self, key: &str) -> Option<Arc<Collection>> {
        self.collections().get(key)
    }

    /// Reloads the collection cache from the database.
    pub async fn reload_collections(&self) -> ServiceResult<()> {
        let mut q = self.sql();
        q.push("SELECT data FROM _collections ORDER BY created, name");
        let rows = self.store.query(&q).await?;
        let mut list = Vec::with_capacity(rows.rows.len());
        for r in rows.rows {
            let text = r.into_iter().next().unwrap_or(Value::Null).into_string();
            let j: Json = serde_json::from_str(&text).map_err(basalt_core::Error::internal)?;
            list.push(Arc::new(Collection::from_storage_json(&j)?));
        }
        // Fields whose existing values are still being encrypted compare clear rows too.
        let m = basalt_core::pii::migrations_sql(self.dialect());
        let pending = basalt_core::pii::parse_migrations(self.store.query(&m).await?.scalar());
        for (c, f) in &pending {
            if let Some(coll) = list.iter_mut().find(|x| &x.id == c) {
                let coll = Arc::make_mut(coll);
                if let Some(p) = coll
                    .fields
                    .iter_mut()
                    .find(|x| &x.id == f)
                    .and_then(|x| x.pii.as_mut())
                {
                    p.pending = true;
                }
            }
        }
        // Fields whose pii is being removed stay pii-shaped (plain for callers) until decrypted.
        let d = basalt_core::pii::decryptions_sql(self.dialect());
        for (c, f, searchable) in
            basalt_core::pii::parse_decryptions(self.store.query(&d).await?.scalar())
        {
            if let Some(coll) = list.iter_mut().find(|x| x.id == c) {
                if let Some(field) = Arc::make_mut(coll).fields.iter_mut().find(|x| x.id == f) {
                    field.pii = Some(basalt_core::pii::Pii::decrypting(searchable));
                }
            }
        }
        let snap = Arc::new(Collections::new(list).with_pii(self.pii.clone()));
        match self.collections.write() {
            Ok(mut g) => *g = snap,
            Err(p) => *p.into_inner() = snap,
        }
        // Cached rows may have the old columns.
        self.cache.clear();
        Ok(())
    }

    /// Tells the other nodes (collections, settings, webhooks changed); best effort, see
    /// `basalt_cluster::bus`.
    pub async fn announce(&self, m: basalt_cluster::bus::Msg) {
        if let Some(c) = self.cluster.get() {
            c.publish(m).await;
        }
    }

    /// After a local schema change: reload, and have every other node reload.
    pub async fn collections_changed(&self) -> ServiceResult<()> {
        self.reload_collections().await?;
        self.announce(basalt_cluster::bus::Msg::Collections).await;
        Ok(())
    }

    /// Whether other nodes may write to this database, so the cache must follow the event tail.
    pub fn cache_follows_events(&self) -> bool {
        self.cache.enabled() && self.dialect() == Dialect::Postgres
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn rate_limits_on(&self) -> bool {
        self.rate_limits_on
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the settings and the policy derived from them.
    pub fn set_settings(&self, s: Json) {
        self.files.configure(&s);
        let p = Arc::new(Policy::from_settings(&s));
        self.rate_limits_on.store(
            p.rate_limits_enabled && !p.rules.is_empty(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let t = Arc::new(crate::config::Typed::from_json(&s));
        match self.typed.write() {
            Ok(mut g) => *g = t,
            Err(e) => *e.into_inner() = t,
        }
        match self.settings.write() {
            Ok(mut g) => *g = s,
            Err(e) => *e.into_inner() = s,
        }
        match self.policy.write() {
            Ok(mut g) => *g = p,
            Err(e) => *e.into_inner() = p,
        }
    }

    /// The typed settings (an `Arc`: no copy).
    pub fn config(&self) -> Arc<crate::config::Typed> {
        match self.typed.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The settings document (a copy: for the settings API and patches).
    pub fn settings(&self) -> Json {
        match self.settings.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Whether any rule of the collection contains `needle`.
pub fn rules_mention(coll: &Collection, needle: &str) -> bool {
    let auth_rules = coll
        .auth
        .iter()
        .flat_map(|a| [&a.auth_rule, &a.manage_rule]);
    [
        &coll.list_rule,
        &coll.view_rule,
        &coll.create_rule,
        &coll.update_rule,
        &coll.delete_rule,
    ]
    .into_iter()
    .chain(auth_rules)
    .any(|r| r.as_deref().is_some_and(|r| r.contains(needle)))
}

/// The backup/restore lock (one at a time).
#[derive(Default)]
pub struct Backups {
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl Backups {
    /// Whether a backup or restore runs now.
    pub fn busy(&self) -> bool {
        self.running.try_lock().is_err()
    }
}

/// Auth collections of the sign-in flows (sessions, codes, links): ordinary tables, written without
/// events.
pub const AUTH_SYSTEM: [&str; 5] = ["_externalAuths", "_mfas", "_otps", "_authOrigins", "_totps"];
