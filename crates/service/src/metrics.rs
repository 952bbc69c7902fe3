//! Prometheus metrics: one registry per application (a node), assembled from the components' own
//! metrics, rendered in the Prometheus text format by [`render`].
//!
//! Two kinds of series:
//! - **recorded as they happen** (histograms and labelled counters held here or in the store):
//!   requests of every transport ([`RequestMetrics`], OpenTelemetry's HTTP names in Prometheus form),
//!   record operations by collection, action and outcome, sign-ins, rate-limit refusals, rule
//!   compilation, realtime fan-out, store statements and transactions;
//! - **read at scrape time** ([`Scraped`]): counters the components already keep as atomics (cache,
//!   lockout, sinks, webhooks, realtime clients) and gauges that are a query or a look at the system
//!   (outbox size and age, sink lag, connections, cluster nodes, process RSS, CPU and fds).
//!
//! **Invariant:** label values are bounded: routes are templates (never raw paths), methods outside
//! the known set are `_OTHER`, collections past [`MAX_COLLECTION_LABELS`] are `_other`, rate-limit
//! rules are the configured labels.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use basalt_store::metrics::{latency, since, BYTES};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::AppCtx;

/// Distinct collection names used as label values; later ones are counted as `_other`.
pub const MAX_COLLECTION_LABELS: usize = 100;

/// Hands out at most `max` distinct label values, then `_other`.
pub struct LabelCap {
    max: usize,
    seen: Mutex<HashSet<Arc<str>>>,
    other: Arc<str>,
}

impl LabelCap {
    pub fn new(max: usize) -> Self {
        LabelCap {
            max,
            seen: Mutex::new(HashSet::new()),
            other: Arc::from("_other"),
        }
    }
    pub fn label(&self, value: &str) -> Arc<str> {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.get(value) {
            return v.clone();
        }
        if g.len() >= self.max {
            return self.other.clone();
        }
        let v: Arc<str> = Arc::from(value);
        g.insert(v.clone());
        v
    }
}

/// The HTTP method as a bounded label (OpenTelemetry: unknown methods are `_OTHER`).
pub fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "_OTHER",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub http_request_method: &'static str,
    pub http_route: Arc<str>,
    pub http_response_status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub http_request_method: &'static str,
    pub http_route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub http_request_method: &'static str,
}

/// Requests of one server transport (`http_server_*`, OpenTelemetry's HTTP semantic conventions in
/// Prometheus form).
#[derive(Clone)]
pub struct RequestMetrics {
    pub duration: Family<RequestLabels, Histogram>,
    pub active: Family<MethodLabel, Gauge>,
    pub request_size: Family<RouteLabels, Histogram>,
    pub response_size: Family<RouteLabels, Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        fn bytes() -> Histogram {
            Histogram::new(BYTES)
        }
        RequestMetrics {
            duration: Family::new_with_constructor(latency),
            active: Family::default(),
            request_size: Family::new_with_constructor(bytes),
            response_size: Family::new_with_constructor(bytes),
        }
    }
}

/// One request in flight: counted in `active` until [`InFlight::finish`] (or drop).
pub struct InFlight {
    metrics: RequestMetrics,
    method: &'static str,
    began: Instant,
    done: bool,
}

impl RequestMetrics {
    pub fn start(&self, method: &str) -> InFlight {
        let method = method_label(method);
        self.active
            .get_or_create(&MethodLabel {
                http_request_method: method,
            })
            .inc();
        InFlight {
            metrics: self.clone(),
            method,
            began: Instant::now(),
            done: false,
        }
    }
}

impl InFlight {
    /// Records the answer: its route template (`""` when no route matched), status and sizes.
    pub fn finish(
        mut self,
        route: Arc<str>,
        status: u16,
        request_bytes: u64,
        response_bytes: Option<u64>,
    ) {
        self.done = true;
        let m = &self.metrics;
        m.active
            .get_or_create(&MethodLabel {
                http_request_method: self.method,
            })
            .dec();
        let labels = RouteLabels {
            http_request_method: self.method,
            http_route: route,
        };
        m.request_size
            .get_or_create(&labels)
            .observe(request_bytes as f64);
        if let Some(n) = response_bytes {
            m.response_size.get_or_create(&labels).observe(n as f64);
        }
        m.duration
            .get_or_create(&RequestLabels {
                http_request_method: self.method,
                http_route: labels.http_route,
                http_response_status_code: status,
            })
            .observe(since(self.began));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .active
                .get_or_create(&MethodLabel {
                    http_request_method: self.method,
                })
                .dec();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub collection: Arc<str>,
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SigninLabels {
    pub method: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// The application's metrics and its registry.
pub struct Metrics {
    registry: Registry,
    /// The REST API (and every HTTP route: realtime, files, probes).
    pub http: RequestMetrics,
    pub records: Family<RecordLabels, Counter>,
    pub signins: Family<SigninLabels, Counter>,
    pub rate_limited: Family<RuleLabel, Counter>,
    pub rule_compile: Histogram,
    pub fanout: Histogram,
    pub collections: LabelCap,
    scraped: Arc<Scraped>,
    /// One scrape at a time (the snapshot is shared).
    scraping: tokio::sync::Mutex<()>,
}

impl Metrics {
    pub fn new(store: &basalt_store::metrics::StoreMetrics) -> Metrics {
        let mut r = Registry::default();
        let http = RequestMetrics::default();
        r.register(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status",
            http.duration.clone(),
        );
        r.register(
            "http_server_active_requests",
            "HTTP server requests in flight",
            http.active.clone(),
        );
        r.register(
            "http_server_request_body_size_bytes",
            "Size of HTTP request bodies",
            http.request_size.clone(),
        );
        r.register(
            "http_server_response_body_size_bytes",
            "Size of HTTP response bodies (when known before streaming)",
            http.response_size.clone(),
        );
        let m = Metrics {
            http,
            records: Family::default(),
            signins: Family::default(),
            rate_limited: Family::default(),
            rule_compile: latency(),
            fanout: latency(),
            collections: LabelCap::new(MAX_COLLECTION_LABELS),
            scraped: Arc::new(Scraped::default()),
            scraping: tokio::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        r.register(
            "basalt_record_operations",
            "Record operations by collection, action (list, view, create, update, delete) and outcome (ok, denied, not_found, invalid, refused, error)",
            m.records.clone(),
        );
        r.register(
            "basalt_auth_signins",
            "Sign-ins by method and outcome (success, mfa_required, failure, refused)",
            m.signins.clone(),
        );
        r.register(
            "basalt_rate_limit_refusals",
            "Requests refused by a rate limit, by rule label",
            m.rate_limited.clone(),
        );
        r.register(
            "basalt_rule_compile_duration_seconds",
            "Compiling an access rule (with the request's values) into SQL",
            m.rule_compile.clone(),
        );
        r.register(
            "basalt_realtime_fanout_duration_seconds",
            "Delivering one event to the realtime clients subscribed to it",
            m.fanout.clone(),
        );
        store.register(&mut r);
        r.register_collector(Box::new(m.scraped.clone()));
        Metrics { registry: r, ..m }
    }

    /// Counts a record operation's outcome.
    pub fn record_op<T>(
        &self,
        collection: &str,
        action: &'static str,
        res: &crate::ServiceResult<T>,
    ) {
        let outcome = match res {
            Ok(_) => "ok",
            Err(e) => outcome_of(e),
        };
        self.records
            .get_or_create(&RecordLabels {
                collection: self.collections.label(collection),
                action,
                outcome,
            })
            .inc();
    }

    /// Counts a sign-in's outcome.
    pub fn signin(
        &self,
        method: &'static str,
        res: &crate::ServiceResult<crate::auth::flows::SignIn>,
    ) {
        use crate::auth::flows::SignIn;
        let outcome = match res {
            Ok(SignIn::Token(_)) => "success",
            Ok(SignIn::MfaRequired { .. }) => "mfa_required",
            Err(e) => match outcome_of(e) {
                "refused" | "error" => outcome_of(e),
                _ => "failure",
            },
        };
        self.signins
            .get_or_create(&SigninLabels { method, outcome })
            .inc();
    }
}

fn outcome_of(e: &crate::ServiceError) -> &'static str {
    use basalt_core::Error;
    match &e.0 {
        Error::Forbidden(_) | Error::Unauthorized(_) => "denied",
        Error::NotFound(_) => "not_found",
        Error::TooManyRequests { .. } => "refused",
        Error::Internal(_) => "error",
        Error::Validation { .. } | Error::BadRequest(_) => "invalid",
    }
}

/// Values read at scrape time, set by [`render`] just before encoding.
#[derive(Debug, Default)]
struct Scraped {
    snap: Mutex<Snapshot>,
}

#[derive(Debug, Default, Clone)]
struct Snapshot {
    counters: Vec<Series>,
    gauges: Vec<Series>,
}

#[derive(Debug, Clone)]
struct Series {
    name: &'static str,
    help: &'static str,
    points: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Snapshot {
    fn add(
        &mut self,
        counter: bool,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        let list = if counter {
            &mut self.counters
        } else {
            &mut self.gauges
        };
        match list.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((labels, v)),
            None => list.push(Series {
                name,
                help,
                points: vec![(labels, v)],
            }),
        }
    }
    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.add(false, name, help, labels, v);
    }
    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.add(true, name, help, labels, v);
    }
}

impl prometheus_client::collector::Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.snap.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for s in &snap.counters {
            // The text encoder adds `_total` to a counter's name.
            let mut me = encoder.encode_descriptor(s.name, s.help, None, MetricType::Counter)?;
            for (labels, v) in &s.points {
                ConstCounter::new(*v).encode(me.encode_family(labels)?)?;
            }
        }
        for s in &snap.gauges {
            let mut me = encoder.encode_descriptor(s.name, s.help, None, MetricType::Gauge)?;
            for (labels, v) in &s.points {
                ConstGauge::new(*v).encode(me.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Reads the scrape-time values, then encodes every series in the Prometheus text format.
pub async fn render(ctx: &AppCtx) -> String {
    let m = &ctx.metrics;
    let _one = m.scraping.lock().await;
    let snap = gather(ctx).await;
    *m.scraped.snap.lock().unwrap_or_else(|p| p.into_inner()) = snap;
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_labels_are_capped() {
        let cap = LabelCap::new(2);
        assert_eq!(&*cap.label("a"), "a");
        assert_eq!(&*cap.label("b"), "b");
        assert_eq!(&*cap.label("c"), "_other");
        assert_eq!(&*cap.label("a"), "a");
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "_OTHER");
    }
}
