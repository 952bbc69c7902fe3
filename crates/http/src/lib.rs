//! Basalt's HTTP transport: the PocketBase-protocol REST API, realtime over SSE and WebSocket, and
//! file serving, on axum. Every handler decodes the request into a [`extract::Client`] (the service's
//! transport-neutral `Req`) and a body, calls `basalt-service`, and encodes the answer.
//!
//! Layout:
//! - [`handlers`]: [`router`] and the record, collection, settings and health handlers;
//!   [`auth`]: the sign-in routes; [`realtime`], [`files`], [`batch`], [`backups`], [`webhooks`],
//!   [`cluster`] (probes); [`graphql`]: `/api/graphql` over the same service calls.
//! - [`conn`]: the accept loop and its bounds on slow and greedy clients ([`conn::HttpLimits`]).
//! - [`error`]: the one mapping from errors to `{status,message,data}`; [`extract`]: the caller;
//!   [`limits`]: path-label rate limits for routes without a typed action.
//!
//! **Architecture Invariant:** no module imports another's handlers as a library; shared logic lives in
//! the service.

pub mod auth;
pub mod backups;
pub mod batch;
pub mod cluster;
pub mod conn;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod files;
pub mod graphql;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod pii;
pub mod public;
pub mod realtime;
pub mod webhooks;

use std::sync::Arc;

pub use basalt_service::{build, build_with, AppCtx, AppState, Options};

pub use handlers::router;

/// Serves `/metrics` alone on its own listener (`--metrics-http`) until the process ends.
pub async fn serve_metrics(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    access: metrics::MetricsAccess,
) -> std::io::Result<()> {
    let app = metrics::routes(ctx.clone(), access);
    conn::serve_connections(
        listener,
        app,
        conn::HttpLimits::default(),
        ctx.clone(),
        std::future::pending(),
    )
    .await
}

/// Serves until `shutdown` resolves, then drains (see [`serve_with`]) with no drain delay.
pub async fn serve(
    ctx: AppCtx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let life = basalt_service::cluster::Lifecycle {
        drain_delay: std::time::Duration::ZERO,
        ..Default::default()
    };
    serve_with(
        ctx,
        listener,
        shutdown,
        life,
        conn::HttpLimits::default(),
        metrics::MetricsAccess::default(),
    )
    .await
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
    life: basalt_service::cluster::Lifecycle,
    limits: conn::HttpLimits,
    access: metrics::MetricsAccess,
) -> std::io::Result<()> {
    let app = if ctx.target.runs(basalt_service::roles::Module::Api) {
        router(ctx.clone())
    } else {
        handlers::probes_router(ctx.clone())
    }
    .merge(metrics::routes(ctx.clone(), access));
    let began = Arc::new(tokio::sync::Notify::new());
    let c = ctx.clone();
    let b = began.clone();
    let drain = async move {
        shutdown.await;
        basalt_service::cluster::begin_drain(&c).await;
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
    let server = conn::serve_connections(listener, app, limits, ctx.clone(), drain);
    let deadline = life.deadline;
    let res = tokio::select! {
        r = server => r,
        _ = async { began.notified().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(deadline_ms = deadline.as_millis() as u64, "in-flight requests did not finish before the deadline");
            Ok(())
        }
    };
    basalt_service::cluster::leave(&ctx).await;
    res
}
