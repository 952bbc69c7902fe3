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
    let ctx = Arc::new(AppState::new(
        store.clone(),
        opts.realtime,
        opts.mailbox,
        files,
    ));
    bootstrap::run(&ctx).await?;
    let ev = opts.events;
    let bus = basalt_events::EventBus::new(store.clone(), ev.clone()).await?;
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

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ctx.clone());
    // Realtime streams never end by themselves: close them when shutdown starts, so draining finishes
    // (the SDK reconnects elsewhere).
    let shutdown = async move {
        shutdown.await;
        ctx.realtime.close_all();
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
