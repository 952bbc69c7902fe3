//! Observability operations: the `/metrics` scrape (the scrape-time values read from the state, then
//! the registry encoded), the request logs API and the logs pruner. The components they read
//! ([`crate::metrics`], [`crate::logs`]) never read the state.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::error::ServiceResult;
use crate::logs::RequestLogs;
use crate::metrics::Snapshot;
use crate::AppCtx;

/// Reads the scrape-time values, then encodes every series in the Prometheus text format.
pub async fn render(ctx: &AppCtx) -> String {
    let snap = gather(ctx).await;
    ctx.metrics.encode(snap).await
}

fn l(k: &'static str, v: impl Into<String>) -> Vec<(&'static str, String)> {
    vec![(k, v.into())]
}

async fn gather(ctx: &AppCtx) -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "basalt_build_info",
        "Version and commit of the running binary",
        vec![
            ("version", ctx.build.0.to_string()),
            ("commit", ctx.build.1.to_string()),
        ],
        1.0,
    );
    // Store connections.
    let c = ctx.store.connections();
    s.gauge(
        "basalt_store_connections",
        "Database connections by state",
        l("state", "in_use"),
        c.in_use as f64,
    );
    s.gauge(
        "basalt_store_connections",
        "Database connections by state",
        l("state", "idle"),
        c.max.saturating_sub(c.in_use) as f64,
    );
    s.gauge(
        "basalt_store_connections_max",
        "The most database connections the store opens",
        vec![],
        c.max as f64,
    );
    // Cache.
    let cache = &ctx.cache;
    let (hits, misses) = (
        cache.hits.load(Ordering::Relaxed),
        cache.misses.load(Ordering::Relaxed),
    );
    let (rh, rm) = (
        cache.redis_hits.load(Ordering::Relaxed),
        cache.redis_misses.load(Ordering::Relaxed),
    );
    let help = "Record cache lookups by layer (process, redis) and result";
    s.counter(
        "basalt_cache_requests",
        help,
        vec![("layer", "process".into()), ("result", "hit".into())],
        hits.saturating_sub(rh) as f64,
    );
    s.counter(
        "basalt_cache_requests",
        help,
        vec![("layer", "process".into()), ("result", "miss".into())],
        (misses + rh) as f64,
    );
    if ctx.redis.is_some() {
        s.counter(
            "basalt_cache_requests",
            help,
            vec![("layer", "redis".into()), ("result", "hit".into())],
            rh as f64,
        );
        s.counter(
            "basalt_cache_requests",
            help,
            vec![("layer", "redis".into()), ("result", "miss".into())],
            rm as f64,
        );
    }
    s.counter(
        "basalt_cache_evictions",
        "Entries the process cache dropped for room",
        l("layer", "process"),
        cache.evictions.load(Ordering::Relaxed) as f64,
    );
    if let Some(r) = &ctx.redis {
        s.gauge(
            "basalt_redis_up",
            "Whether Redis answers (1) or not (0)",
            vec![],
            f64::from(u8::from(r.is_up())),
        );
    }
    // Lockout.
    s.counter(
        "basalt_auth_lockouts",
        "Failed sign-ins that locked an identity for a network",
        vec![],
        ctx.lockout.engaged.load(Ordering::Relaxed) as f64,
    );
    s.counter(
        "basalt_auth_lockout_refusals",
        "Sign-in attempts refused while locked or slowed",
        vec![],
        ctx.lockout.refused.load(Ordering::Relaxed) as f64,
    );
    // Realtime.
    let hub = ctx.realtime.stats();
    let help = "Realtime clients connected to this node, by transport";
    s.gauge(
        "basalt_realtime_connections",
        help,
        l("transport", "sse"),
        hub.sse as f64,
    );
    s.gauge(
        "basalt_realtime_connections",
        help,
        l("transport", "websocket"),
        hub.websocket as f64,
    );
    s.gauge(
        "basalt_realtime_subscriptions",
        "Realtime subscriptions on this node",
        vec![],
        hub.subscriptions as f64,
    );
    s.counter(
        "basalt_realtime_dropped_clients",
        "Realtime clients disconnected because they could not keep up",
        vec![],
        hub.dropped as f64,
    );
    if crate::trace::enabled() {
        use crate::trace::{EXPORT_FAILURES, SPANS_DROPPED, SPANS_EXPORTED};
        let help = "Spans by fate: exported to the OTLP collector, or dropped (queue full: the collector is slow or down)";
        s.counter(
            "basalt_trace_spans",
            help,
            l("outcome", "exported"),
            SPANS_EXPORTED.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_trace_spans",
            help,
            l("outcome", "dropped"),
            SPANS_DROPPED.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_trace_export_failures",
            "OTLP export requests that failed",
            vec![],
            EXPORT_FAILURES.load(Ordering::Relaxed) as f64,
        );
    }
    if let Some(logs) = ctx.logs.get() {
        let help =
            "Request log entries by fate: written to the logs store, or dropped (queue full)";
        s.counter(
            "basalt_request_logs",
            help,
            l("outcome", "written"),
            logs.written.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_request_logs",
            help,
            l("outcome", "dropped"),
            logs.dropped.load(Ordering::Relaxed) as f64,
        );
    }
    if ctx.pii.is_some() {
        let help =
            "PII reveals by fate: written to _piiAudit (identical ones in a batch share a row), \
                    or dropped (queue full, or the write failed)";
        s.counter(
            "basalt_pii_reveals",
            help,
            l("outcome", "audited"),
            ctx.audit.written.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_pii_reveals",
            help,
            l("outcome", "dropped"),
            ctx.audit.dropped.load(Ordering::Relaxed) as f64,
        );
    }
    events(ctx, &mut s).await;
    cluster(ctx, &mut s);
    process(&mut s);
    s
}

async fn events(ctx: &AppCtx, s: &mut Snapshot) {
    let Some(bus) = ctx.events.get() else { return };
    let (sinks, hwm) = bus.sinks();
    let now = chrono::Utc::now();
    let age_after = |seq: i64| {
        let ctx = ctx.clone();
        async move {
            let mut q = ctx.sql();
            q.push("SELECT \"time\" FROM \"_events\" WHERE \"seq\" > ")
                .bind(basalt_core::sql::Value::Int(seq))
                .push(" ORDER BY \"seq\" LIMIT 1");
            let t = ctx.store.query(&q).await.ok()?.scalar()?.into_string();
            let t = chrono::DateTime::parse_from_rfc3339(&t).ok()?;
            Some(
                ((now - t.with_timezone(&chrono::Utc))
                    .num_milliseconds()
                    .max(0) as f64)
                    / 1000.0,
            )
        }
    };
    let mut q = ctx.sql();
    q.push("SELECT COUNT(*) FROM \"_events\"");
    if let Ok(rows) = ctx.store.query(&q).await {
        s.gauge(
            "basalt_outbox_events",
            "Events kept in the outbox (not yet pruned)",
            vec![],
            rows.scalar_int() as f64,
        );
    }
    s.gauge(
        "basalt_outbox_high_water",
        "The newest event's sequence number",
        vec![],
        hwm as f64,
    );
    let mut oldest = 0.0f64;
    for st in sinks {
        let cursor = st.cursor.load(Ordering::Relaxed);
        let lag = (hwm - cursor).max(0);
        let name = st.name.clone();
        let leader = st.leader.load(Ordering::Relaxed);
        s.gauge(
            "basalt_sink_leader",
            "Whether this node holds the sink's lease and delivers it",
            l("sink", name.clone()),
            f64::from(u8::from(leader)),
        );
        s.counter(
            "basalt_sink_delivered_events",
            "Events a sink delivered from this node",
            l("sink", name.clone()),
            st.delivered.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_sink_failures",
            "Failed delivery attempts of a sink",
            l("sink", name.clone()),
            st.failures.load(Ordering::Relaxed) as f64,
        );
        if !leader {
            continue;
        }
        let secs = if lag > 0 {
            age_after(cursor).await.unwrap_or(0.0)
        } else {
            0.0
        };
        oldest = oldest.max(secs);
        s.gauge(
            "basalt_sink_lag_events",
            "Events committed that the sink has not delivered",
            l("sink", name.clone()),
            lag as f64,
        );
        s.gauge(
            "basalt_sink_lag_seconds",
            "Age of the oldest event the sink has not delivered",
            l("sink", name),
            secs,
        );
    }
    s.gauge(
        "basalt_outbox_oldest_undelivered_seconds",
        "Age of the oldest event a sink this node runs has not delivered",
        vec![],
        oldest,
    );
    if let Some(w) = ctx.webhooks.get() {
        let help = "Webhook delivery attempts by outcome (delivered, failed, dead: moved to the dead letters)";
        s.counter(
            "basalt_webhook_deliveries",
            help,
            l("outcome", "delivered"),
            w.delivered.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_webhook_deliveries",
            help,
            l("outcome", "failed"),
            w.failed_attempts.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "basalt_webhook_deliveries",
            help,
            l("outcome", "dead"),
            w.dead.load(Ordering::Relaxed) as f64,
        );
    }
}

fn cluster(ctx: &AppCtx, s: &mut Snapshot) {
    let Some(reg) = ctx.registry.get() else {
        return;
    };
    let nodes = reg.nodes();
    let live = nodes.iter().filter(|n| n.live).count();
    s.gauge(
        "basalt_cluster_nodes",
        "Nodes in the registry with a live heartbeat",
        l("state", "live"),
        live as f64,
    );
    s.gauge(
        "basalt_cluster_nodes",
        "Nodes in the registry with a live heartbeat",
        l("state", "missing"),
        (nodes.len() - live) as f64,
    );
}

/// `process_*` as Prometheus's client libraries name them (Linux: from /proc).
fn process(s: &mut Snapshot) {
    if let Ok(st) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which is in parentheses and may hold spaces).
        if let Some(rest) = st.rsplit_once(") ").map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime: fields 14 and 15 (1-based) of the line, so 11 and 12 here; in clock ticks.
            // Clock ticks are 1/100 s on Linux (USER_HZ).
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            s.counter(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                vec![],
                (ticks(11) + ticks(12)) / 100.0,
            );
            // starttime (field 22): ticks after boot; boot time is `btime` in /proc/stat.
            let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let Some(b) = btime {
                s.gauge(
                    "process_start_time_seconds",
                    "Start time of the process, in seconds since the epoch",
                    vec![],
                    b + ticks(19) / 100.0,
                );
            }
        }
    }
    if let Ok(st) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = st
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            s.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                vec![],
                kb * 1024.0,
            );
        }
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        s.gauge(
            "process_open_fds",
            "Open file descriptors",
            vec![],
            d.count() as f64,
        );
    }
    if let Ok(lim) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(v) = lim
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok())
        {
            s.gauge(
                "process_max_fds",
                "The most file descriptors the process may open",
                vec![],
                v,
            );
        }
    }
}

fn logs_of(ctx: &crate::AppCtx) -> ServiceResult<&Arc<RequestLogs>> {
    ctx.logs.get().ok_or_else(|| {
        crate::ServiceError(basalt_core::Error::internal("request logs not started"))
    })
}

/// `GET /api/logs` (superusers): `page`, `perPage`, `filter`, `sort`, `skipTotal`.
pub async fn api_list(ctx: &crate::AppCtx, req: &crate::Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    let (page, per_page) = crate::crud::page_params(req)?;
    logs_of(ctx)?
        .list(
            page,
            per_page,
            req.q("filter"),
            req.q("sort"),
            req.qbool("skipTotal"),
        )
        .await
}

/// `GET /api/logs/stats` (superusers): `filter`.
pub async fn api_stats(ctx: &crate::AppCtx, req: &crate::Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    logs_of(ctx)?.stats(req.q("filter")).await
}

/// `GET /api/logs/{id}` (superusers).
pub async fn api_view(ctx: &crate::AppCtx, req: &crate::Req, id: &str) -> ServiceResult<Json> {
    req.require_superuser()?;
    logs_of(ctx)?.view(id).await
}

/// `DELETE /api/logs` (superusers).
pub async fn api_truncate(ctx: &crate::AppCtx, req: &crate::Req) -> ServiceResult<()> {
    req.require_superuser()?;
    logs_of(ctx)?.truncate().await
}
