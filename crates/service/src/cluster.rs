//! Many nodes as one: joining the cluster (registry, cross-node messages), reacting to other nodes'
//! changes, the probes (`/livez`, `/readyz`) and leaving it cleanly. See ARCHITECTURE.md "cluster".

use std::sync::Arc;
use std::time::Duration;

use basalt_cluster::bus::{ClusterBus, Msg};
use basalt_cluster::registry::{Registry, HEARTBEAT};
use basalt_events::EventBus;
use serde_json::{json, Value as Json};

use crate::error::{ServiceError, ServiceResult};
use crate::AppCtx;

/// What the binary configures for running among other nodes.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Whether this process joins the cluster (registry, messages): `basalt serve` does; one-shot
    /// commands (`superuser upsert`) and embedded uses do not.
    pub join: bool,
    /// `--redis-url`: one URL, or several (comma-separated) seed nodes of a Redis Cluster.
    pub redis_url: Option<String>,
    /// The PostgreSQL URL, for LISTEN/NOTIFY when Redis is not configured.
    pub database_url: Option<String>,
    /// The address other nodes and operators reach this node at (shown in the registry).
    pub address: String,
    /// The roles this node runs (`all`, `api`).
    pub role: String,
    pub cache: crate::cache::CacheConfig,
}

/// Shutdown timings (`[lifecycle]`).
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// How long a draining node keeps serving after `/readyz` turned 503.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish after the listener closed.
    pub deadline: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            drain_delay: Duration::from_secs(3),
            deadline: Duration::from_secs(20),
        }
    }
}

/// Registers this node, starts its heartbeat and the cross-node message bus.
pub async fn join(ctx: &AppCtx, bus: &Arc<EventBus>, opts: &ClusterOptions) -> ServiceResult<()> {
    let reg = Registry::new(
        ctx.store.clone(),
        bus.node_id(),
        &opts.address,
        if opts.role.is_empty() {
            "all"
        } else {
            &opts.role
        },
        env!("CARGO_PKG_VERSION"),
    );
    let floor = reg
        .beat(bus.dispatched())
        .await
        .map_err(ServiceError::from)?;
    bus.set_floor(floor);
    let _ = ctx.registry.set(reg.clone());
    ctx.realtime.set_node(bus.node_id());
    let b = bus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            match reg.beat(b.dispatched()).await {
                Ok(floor) => b.set_floor(floor),
                Err(e) => tracing::warn!(error = %e, "node registry: heartbeat failed"),
            }
        }
    });
    let pg = (ctx.dialect() == basalt_core::sql::Dialect::Postgres)
        .then(|| opts.database_url.clone())
        .flatten();
    let cb = ClusterBus::start(bus.node_id(), ctx.redis.clone(), pg, ctx.store.clone());
    let _ = ctx.cluster.set(cb.clone());
    tokio::spawn(follow(ctx.clone(), bus.clone(), cb));
    Ok(())
}

/// Applies other nodes' messages to this node.
async fn follow(ctx: AppCtx, bus: Arc<EventBus>, cb: Arc<ClusterBus>) {
    let mut rx = cb.subscribe();
    loop {
        let m = match rx.recv().await {
            Ok(m) => m,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Msg::Resync,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let r: ServiceResult<()> = async {
            match m {
                Msg::Events { .. } => bus.committed(),
                Msg::Collections => ctx.reload_collections().await?,
                Msg::Settings => crate::settings::load(&ctx).await?,
                Msg::Webhooks => reload_webhooks(&ctx).await,
                Msg::Resync => {
                    ctx.reload_collections().await?;
                    crate::settings::load(&ctx).await?;
                    reload_webhooks(&ctx).await;
                    bus.committed();
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e.0, "applying another node's change failed");
        }
    }
}

async fn reload_webhooks(ctx: &AppCtx) {
    if let Some(w) = ctx.webhooks.get() {
        if let Err(e) = w.reload().await {
            tracing::warn!(error = %e, "reloading webhooks failed");
        }
    }
}

/// Shutdown step 1: unready, and shown `draining` to the cluster at once.
pub async fn begin_drain(ctx: &AppCtx) {
    ctx.ready.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("draining: /readyz answers 503, requests are still served");
    if let (Some(r), Some(b)) = (ctx.registry.get(), ctx.events.get()) {
        r.set_state("draining");
        let _ = r.beat(b.dispatched()).await;
    }
}

/// Shutdown's last step: hand the sinks over and leave the registry.
pub async fn leave(ctx: &AppCtx) {
    if let Some(b) = ctx.events.get() {
        b.shutdown().await;
    }
    if let Some(r) = ctx.registry.get() {
        if let Err(e) = r.leave().await {
            tracing::warn!(error = %e, "leaving the node registry failed");
        }
    }
}

/// Whether this node takes traffic (`/readyz`): started, not draining, database reachable within 1 s.
pub async fn readiness(ctx: &AppCtx) -> Result<(), Json> {
    if !ctx.is_ready() {
        return Err(json!({"status": "draining"}));
    }
    match tokio::time::timeout(Duration::from_secs(1), ctx.store.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(json!({"status": "database unavailable", "error": e.to_string()})),
        Err(_) => Err(json!({"status": "database timed out"})),
    }
}

/// The superuser part of `/api/health` about the cluster.
pub fn health(ctx: &crate::AppState) -> Json {
    let me = ctx.registry.get();
    json!({
        "node": me.map(|r| r.id.clone()),
        "transport": ctx.cluster.get().map(|c| c.transport()).unwrap_or("none"),
        "redis": ctx.redis.as_ref().map(|r| r.health()),
        "cache": ctx.cache.health(),
        "nodes": me.map(|r| r.nodes()).unwrap_or_default(),
    })
}

/// The superuser part of `/api/health`: backups, events and sinks, realtime clients, the cluster.
pub fn status(ctx: &crate::AppState) -> serde_json::Map<String, Json> {
    let mut data = serde_json::Map::new();
    data.insert(
        "canBackup".into(),
        Json::Bool(ctx.store.can_backup() && !ctx.backups.busy()),
    );
    if let Some(bus) = ctx.events.get() {
        let mut ev = bus.health();
        if let (Some(o), Some(w)) = (ev.as_object_mut(), ctx.webhooks.get()) {
            o.insert("webhooks".into(), w.health());
        }
        data.insert("events".into(), ev);
    }
    data.insert(
        "realtime".into(),
        serde_json::json!({"clients": ctx.realtime.len()}),
    );
    data.insert("cluster".into(), health(ctx));
    data
}
