//! Basalt's service layer: the application every transport (REST, realtime, and later GraphQL, gRPC,
//! the gateway) calls. It owns the rules, validation, the record read and write paths, collections,
//! the sign-in surface, rate limits and lockout (on typed actions), files, batch, backups, the
//! realtime hub and the cluster wiring.
//!
//! Layout:
//! - [`state`]: [`AppState`], the shared application (store, collection snapshot, settings, hub, …).
//! - [`request`]: [`request::Req`], the transport-neutral caller (IP, auth, query, headers).
//! - [`error`]: [`error::ServiceError`], the one error type every operation returns.
//! - [`crud`]: record operations as transports call them; [`records`]: the read/write paths under
//!   them (rules, expand, output, the one write path); [`collections`] + [`ddl`]: schema changes.
//! - [`auth`]: tokens, `authenticate`, `admit` (rate limits on a typed [`limits::Action`]), sign-in
//!   flows returning outcomes ([`auth::flows::SignIn`]), MFA, OAuth2, mail.
//! - Components the state holds, which never read the state: [`limits`] (policy, rates, lockout),
//!   [`hub`] (realtime clients), [`cache`], [`files`], [`roles`], [`metrics`] (the registry),
//!   [`logs`] (request logs store and writer); leaves: [`caller`], [`passwords`], [`cron`], [`error`],
//!   [`trace`] (trace context).
//! - [`observe`]: the `/metrics` scrape, the logs API and pruner (operations reading the state).
//!
//! **Architecture Invariant:** the top-level modules form no import cycle (`scripts/test.sh` checks
//! it): components below `state`, operations above it.
//! - [`files`], [`batch`], [`backups`], [`realtime`], [`cache`], [`cluster`], [`settings`],
//!   [`bootstrap`].
//!
//! **Architecture Invariant:** the service never sees a transport's types: no axum, tower, hyper or
//! `http` types in its code or its API (checked by `scripts/test.sh`). Outbound HTTP clients (OAuth2
//! code exchange, S3) stay inside the components that use them.

pub mod apidoc;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod batch;
pub mod bootstrap;
pub mod cache;
pub mod caller;
pub mod cluster;
pub mod collections;
pub mod config;
pub mod cron;
pub mod crons;
pub mod crud;
pub mod ddl;
pub mod error;
pub mod files;
pub mod hub;
pub mod keyring;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod observe;
pub mod passwords;
pub mod pbimport;
pub mod pii;
pub mod privacy;
pub mod realtime;
pub mod records;
pub mod request;
pub mod roles;
pub mod schemadiff;
pub mod settings;
pub mod state;
pub mod trace;
pub mod views;

use std::sync::Arc;

pub use error::{ServiceError, ServiceResult};
pub use request::Req;
pub use state::AppState;

/// The handle every operation receives.
pub type AppCtx = Arc<AppState>;

/// What the binary configures beyond the store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub events: basalt_events::EventsConfig,
    pub realtime: realtime::RealtimeConfig,
    /// Where mail goes when no SMTP server is configured (`<data dir>/mailbox`); `None` logs it only.
    pub mailbox: Option<std::path::PathBuf>,
    /// The data directory: local file storage (`storage/`), uploads in flight (`.tmp/`), local
    /// backups (`backups/`). `None`: a fresh folder under the system's temporary directory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Redis, the record cache, this node's registry entry, the drain timings.
    pub cluster: cluster::ClusterOptions,
    /// The modules this process runs (`--target`); `None`: all of them.
    pub target: Option<&'static roles::Target>,
    /// `[egress]`: the internal networks webhooks and OAuth2 may reach (none by default).
    pub egress: basalt_events::egress::EgressConfig,
    /// The commit the binary was built from (`basalt_build_info`); empty when unknown.
    pub commit: &'static str,
    /// `[pii]`: the master key ring (`None`: no pii fields can be created), and whether superusers
    /// must give an `X-Pii-Reason` header to see pii values in clear.
    pub pii_keys: Option<Arc<keyring::KeyRing>>,
    pub pii_require_reason: bool,
    /// `[pii] require_tls`: refuse plain HTTP from other hosts while pii fields exist.
    pub pii_require_tls: bool,
    /// `[graphql]`: the GraphQL endpoint's switches and limits (served by the transports).
    pub graphql: GraphqlOptions,
    /// `--public-dir`: static files served at `/` (when the folder exists), and whether a missing
    /// path answers its `index.html` (single-page apps).
    pub public_dir: Option<std::path::PathBuf>,
    pub index_fallback: bool,
}

/// `[graphql]`: whether `/api/graphql` is served, its browser page and introspection, and the limits a
/// query must pass before any SQL runs.
#[derive(Clone, Debug)]
pub struct GraphqlOptions {
    pub enabled: bool,
    /// The GraphiQL page at `GET /api/graphql` for browsers.
    pub graphiql: bool,
    /// `__schema` / `__type` queries.
    pub introspection: bool,
    /// Nesting of selection sets.
    pub max_depth: usize,
    /// Fields in one selection set, aliases counted (a query's breadth).
    pub max_breadth: usize,
    /// The estimated number of values a query may produce: each field counts once per record it is
    /// read for, a list multiplying by its `perPage` (default 30) and a multiple relation by its
    /// `maxSelect`.
    pub max_cost: u64,
}

impl Default for GraphqlOptions {
    fn default() -> Self {
        GraphqlOptions {
            enabled: true,
            graphiql: true,
            introspection: true,
            max_depth: 12,
            max_breadth: 200,
            max_cost: 250_000,
        }
    }
}

/// The overall deadline of an OAuth2/OIDC request.
const OUTBOUND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Bootstraps with default options (SQLite or Postgres as given, no external sinks).
pub async fn build(store: Arc<dyn basalt_store::Store>) -> Result<AppCtx, ServiceError> {
    build_with(store, Options::default()).await
}

/// Bootstraps system tables, loads the caches and starts the event bus, its sinks and the realtime
/// fan-out. A configured sink that cannot be reached is a startup error.
pub async fn build_with(
    store: Arc<dyn basalt_store::Store>,
    opts: Options,
) -> Result<AppCtx, ServiceError> {
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("basalt-{}", basalt_core::id::random_id(12)))
    });
    let files = files::Files::new(data_dir.clone())
        .map_err(|e| ServiceError(basalt_core::Error::internal(format!("data directory: {e}"))))?;
    let redis = match &opts.cluster.redis_url {
        Some(url) => Some(
            basalt_cluster::redis::Redis::connect(url)
                .await
                .map_err(|e| {
                    ServiceError(basalt_core::Error::internal(format!(
                        "redis is configured but unreachable: {e}"
                    )))
                })?,
        ),
        None => None,
    };
    let target = opts.target.unwrap_or(roles::Target::all());
    let egress = basalt_events::egress::Egress::new(&opts.egress, "basalt", OUTBOUND_TIMEOUT)
        .map_err(|e| ServiceError(basalt_core::Error::internal(e)))?;
    let mut state = AppState::new(
        store.clone(),
        opts.realtime,
        opts.mailbox,
        files,
        redis,
        opts.cluster.cache.clone(),
        egress,
    );
    state.target = target;
    state.build = (env!("CARGO_PKG_VERSION"), opts.commit);
    state.pii = opts.pii_keys.clone();
    state.pii_require_reason = opts.pii_require_reason;
    state.pii_require_tls = opts.pii_require_tls;
    state.reveal_events = opts.events.reveals_pii();
    state.graphql = opts.graphql.clone();
    state.public_dir = opts.public_dir.clone();
    state.index_fallback = opts.index_fallback;
    let ctx = Arc::new(state);
    bootstrap::run(&ctx).await?;
    let ev = opts.events;
    let bus = basalt_events::EventBus::new(store.clone(), ev.clone()).await?;
    // Register before anything else reads the outbox, so other nodes' pruners keep what this
    // node's tail has yet to read.
    if opts.cluster.join {
        cluster::join(&ctx, &bus, &opts.cluster).await?;
    }
    // The webhook definitions are served by the API on every role; deliveries and sinks run only
    // where the target says.
    let hooks =
        basalt_events::webhook::Webhooks::new(store, ev.webhooks.clone(), &ev.source, &ctx.egress)
            .await?;
    let _ = ctx.webhooks.set(hooks.clone());
    let logs_store = logs::open_store(&ctx.store, &data_dir).await?;
    let _ = ctx
        .logs
        .set(logs::RequestLogs::start(logs_store, &data_dir).await?);
    tokio::spawn(privacy::run_audit_writer(ctx.clone()));
    if target.runs(roles::Module::WebhookWorker) {
        tokio::spawn(hooks.clone().run());
    }
    if target.runs(roles::Module::Pruner) {
        tokio::spawn(privacy::run_migrations(ctx.clone()));
        bus.start_pruner();
    }
    if target.runs(roles::Module::Pruner) || target.runs(roles::Module::BackupScheduler) {
        tokio::spawn(crons::run_scheduler(ctx.clone()));
    }
    if target.runs(roles::Module::Sinks) {
        start_sinks(&ctx, &bus, &ev, &hooks).await?;
    }
    if target.runs(roles::Module::Realtime) {
        bus.set_listener(Arc::new(realtime::Fanout(ctx.clone())));
    }
    let _ = ctx.events.set(bus);
    Ok(ctx)
}

/// The durable sinks of the `[events]` section, each probed (a configured sink that cannot be
/// reached is a startup error naming it) and handed to the bus.
async fn start_sinks(
    ctx: &AppCtx,
    bus: &Arc<basalt_events::EventBus>,
    ev: &basalt_events::EventsConfig,
    hooks: &Arc<basalt_events::webhook::Webhooks>,
) -> ServiceResult<()> {
    bus.add_sink(Arc::new(basalt_events::webhook::WebhookSink(hooks.clone())))
        .await?;
    let extra = basalt_events::sinks::build(ev)
        .map_err(|e| ServiceError(basalt_core::Error::internal(e)))?;
    for s in extra {
        s.probe().await.map_err(|e| {
            ServiceError(basalt_core::Error::internal(format!(
                "events sink {} is configured but unreachable: {e}",
                s.name()
            )))
        })?;
        if s.reveals_pii() {
            tracing::warn!(
                sink = s.name(),
                "this events sink receives pii values in clear (reveal_pii)"
            );
            bus.add_sink(Arc::new(privacy::RevealSink::new(ctx, s)))
                .await?;
        } else {
            bus.add_sink(s).await?;
        }
    }
    Ok(())
}
