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
pub mod bootstrap;
pub mod collections;
pub mod ddl;
pub mod error;
pub mod handlers;
pub mod records;
pub mod settings;
pub mod state;

use std::sync::Arc;

pub use state::AppState;

/// The handle every handler receives.
pub type AppCtx = Arc<AppState>;

/// Opens the store, bootstraps system tables and loads the caches.
pub async fn build(store: Arc<dyn basalt_store::Store>) -> Result<AppCtx, error::ApiError> {
    let ctx = Arc::new(AppState::new(store));
    bootstrap::run(&ctx).await?;
    Ok(ctx)
}

pub use handlers::router;

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ctx);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
