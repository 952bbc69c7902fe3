//! Basalt's HTTP edge: the PocketBase-protocol REST API on axum.
//!
//! Layout:
//! - [`state`]: the shared [`AppState`] (store, collection cache, settings).
//! - [`error`]: [`error::ApiError`], the one mapping from domain errors to `{status,message,data}`.
//! - [`auth`]: passwords, tokens and the [`auth::Auth`] extractor.
//! - [`records`]: the record read/write paths with rules, expand and fields.
//! - [`collections`]: collection management and its DDL ([`ddl`]).
//! - [`handlers`]: thin axum handlers; [`router`] wires them with CORS, body limits and panic catching.
//! - [`bootstrap`]: system tables and default collections on first start.
//!
//! **Architecture Invariant:** only this crate knows HTTP; the domain and store crates never see axum types.

pub mod auth;
pub mod backups;
pub mod batch;
pub mod bootstrap;
pub mod cache;
pub mod cluster;
pub mod collections;
pub mod ddl;
pub mod error;
pub mod files;
pub mod handlers;
pub mod realtime;
pub mod records;
pub mod settings;
pub mod state;
pub mod webhooks;

use std::sync::Arc;

pub use state::AppState;

/// The handle every handler receives.
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
}

/// Bootstraps with default options (SQLite or Postgres as given, no external sinks).
pub async fn build(store: Arc<dyn basalt_store::Store>) -> Result<AppCtx, error::ApiError> {
    build_with(store, Options::default()).await
}

/// Bootstraps system tables, loads the caches and starts the event bus, its sinks and the realtime
/// fan-out. A configured sink that cannot be reached is a startup error.
pub async fn build_with(
    store: Arc<dyn basalt_store::Store>,
    opts: Options,
) -> Result<AppCtx, error::ApiError> {
    use basalt_events::sink::Sink;
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("basalt-{}", basalt_core::id::random_id(12)))
    });
    let files = files::Files::new(data_dir).map_err(|e| {
        error::ApiError(basalt_core::Error::internal(format!("data directory: {e}")))
    })?;
    let redis = match &opts.cluster.redis_url {
        Some(url) => Some(
            basalt_cluster::redis::Redis::connect(url)
                .await
                .map_err(|e| {
                    error::ApiError(basalt_core::Error::internal(format!(
                        "redis is configured but unreachable: {e}"
                    )))
                })?,
        ),
        None => None,
    };
    let ctx = Arc::new(AppState::new(
        store.clone(),
        opts.realtime,
        opts.mailbox,
        files,
        redis,
        opts.cluster.cache.clone(),
    ));
    bootstrap::run(&ctx).await?;
    let ev = opts.events;
    let bus = basalt_events::EventBus::new(store.clone(), ev.clone()).await?;
    // Register before anything else reads the outbox, so other nodes' pruners keep what this
    // node's tail has yet to read.
    if opts.cluster.join {
        cluster::join(&ctx, &bus, &opts.cluster).await?;
    }
    let hooks =
        basalt_events::webhook::Webhooks::new(store, ev.webhooks.clone(), &ev.source).await?;
    tokio::spawn(hooks.clone().run());
    bus.add_sink(Arc::new(basalt_events::webhook::WebhookSink(hooks.clone())))
        .await?;
    let mut extra: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(k) = &ev.kafka {
        extra.push(Arc::new(basalt_events::kafka::KafkaSink::new(
            k.clone(),
            &ev.source,
        )));
    }
    if let Some(n) = &ev.nats {
        extra.push(Arc::new(basalt_events::nats::NatsSink::new(
            n.clone(),
            &ev.source,
        )));
    }
    for s in extra {
        s.probe().await.map_err(|e| {
            error::ApiError(basalt_core::Error::internal(format!(
                "events sink {} is configured but unreachable: {e}",
                s.name()
            )))
        })?;
        bus.add_sink(s).await?;
    }
    let _ = ctx.webhooks.set(hooks);
    bus.set_listener(Arc::new(realtime::Fanout(ctx.clone())));
    let _ = ctx.events.set(bus);
    tokio::spawn(backups::run_scheduler(ctx.clone()));
    Ok(ctx)
}

pub use handlers::router;

/// Serves until `shutdown` resolves, then drains (see [`serve_with`]) with no drain delay.
pub async fn serve(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let life = cluster::Lifecycle {
        drain_delay: std::time::Duration::ZERO,
        ..Default::default()
    };
    serve_with(ctx, listener, shutdown, life).await
}

/// Serves until `shutdown` resolves, then stops without failing a request:
/// 1. `/readyz` turns 503 and the registry shows the node `draining`; requests are still served
///    for `drain_delay`, long enough for load balancers to stop sending new ones;
/// 2. realtime streams are closed (clients reconnect, through the balancer, to another node);
/// 3. the listener closes and in-flight requests finish, for at most `deadline`;
/// 4. sink cursors are saved, sink leases released (another node takes over at once) and the
///    node leaves the registry.
pub async fn serve_with(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    life: cluster::Lifecycle,
) -> std::io::Result<()> {
    let app = router(ctx.clone());
    let began = Arc::new(tokio::sync::Notify::new());
    let c = ctx.clone();
    let b = began.clone();
    let drain = async move {
        shutdown.await;
        cluster::begin_drain(&c).await;
        tokio::time::sleep(life.drain_delay).await;
        // Realtime streams never end by themselves.
        c.realtime.close_all();
        tracing::info!("closing the listener; finishing in-flight requests");
        b.notify_one();
    };
    ctx.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = ctx.registry.get() {
        r.set_state("ready");
    }
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(drain);
    let deadline = life.deadline;
    let res = tokio::select! {
        r = server => r,
        _ = async { began.notified().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(deadline_ms = deadline.as_millis() as u64, "in-flight requests did not finish before the deadline");
            Ok(())
        }
    };
    cluster::leave(&ctx).await;
    res
}
