//! Prometheus metrics: one registry per application (a node), assembled from the components' own
//! metrics, rendered in the Prometheus text format by [`render`].
//!
//! Two kinds of series:
//! - **recorded as they happen** (histograms and labelled counters held here or in the store):
//!   requests of every transport ([`RequestMetrics`], OpenTelemetry's HTTP names in Prometheus form),
//!   record operations by collection, action and outcome, sign-ins, rate-limit refusals, rule
//!   compilation, realtime fan-out, store statements and transactions;
//! - **read at scrape time** (`Scraped`, filled by `observe::render`): counters the components already keep as atomics (cache,
//!   lockout, sinks, webhooks, realtime clients) and gauges that are a query or a look at the system
//!   (outbox size and age, sink lag, connections, cluster nodes, process RSS, CPU and fds).
//!
//! **Invariant:** label values are bounded: routes are templates (never raw paths), methods outside
//! the known set are `_OTHER`, collections past [`MAX_COLLECTION_LABELS`] are `_other`, rate-limit
//! rules are the configured labels.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use basalt_store::metrics::Histogram;
use basalt_store::metrics::{latency, since, BYTES};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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
/// Prometheus form). Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct RequestMetrics(Arc<RequestFamilies>);

pub struct RequestFamilies {
    pub duration: Family<RequestLabels, Histogram>,
    pub active: Family<MethodLabel, Gauge>,
    pub request_size: Family<RouteLabels, Histogram>,
    pub response_size: Family<RouteLabels, Histogram>,
    /// `active`'s gauge of each method label, looked up once.
    active_by_method: Vec<Gauge>,
    /// The three histograms of each (method, status, route) seen, found with one cheap lookup keyed
    /// by the route text's address (transports pass the router's own long-lived template strings).
    routes: std::sync::RwLock<HashMap<RouteKey, RouteHandles, BuildFast>>,
}

type RouteKey = (u8, u16, usize, usize);

/// (collection name address, its length, action address, outcome address).
type OpKey = (usize, usize, usize, usize);

struct RouteHandles {
    route: Arc<str>,
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

/// A multiply-rotate hasher for the small integer keys above (SipHash costs more than the lookup).
#[derive(Default, Clone, Copy)]
struct Fast(u64);

impl std::hash::Hasher for Fast {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
}

type BuildFast = std::hash::BuildHasherDefault<Fast>;

/// The method labels, in the order of `active_by_method`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "_OTHER",
];

impl std::ops::Deref for RequestMetrics {
    type Target = RequestFamilies;
    fn deref(&self) -> &RequestFamilies {
        &self.0
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        fn bytes() -> Histogram {
            Histogram::new(BYTES)
        }
        let active: Family<MethodLabel, Gauge> = Family::default();
        let active_by_method = METHODS
            .iter()
            .map(|m| {
                active.get_or_create_owned(&MethodLabel {
                    http_request_method: m,
                })
            })
            .collect();
        RequestMetrics(Arc::new(RequestFamilies {
            duration: Family::new_with_constructor(latency),
            active,
            request_size: Family::new_with_constructor(bytes),
            response_size: Family::new_with_constructor(bytes),
            active_by_method,
            routes: Default::default(),
        }))
    }
}

/// One request in flight: counted in `active` until [`InFlight::finish`] (or drop).
pub struct InFlight {
    metrics: RequestMetrics,
    method: usize,
    began: Instant,
    done: bool,
}

impl RequestMetrics {
    pub fn start(&self, method: &str) -> InFlight {
        let label = method_label(method);
        let method = METHODS
            .iter()
            .position(|m| *m == label)
            .unwrap_or(METHODS.len() - 1);
        let on = basalt_store::metrics::enabled();
        if on {
            self.active_by_method[method].inc();
        }
        InFlight {
            metrics: self.clone(),
            method,
            began: Instant::now(),
            // Metrics off: nothing to record at the end.
            done: !on,
        }
    }
}

impl InFlight {
    /// Records the answer: its route template (`""` when no route matched), status and sizes.
    pub fn finish(
        mut self,
        route: &str,
        status: u16,
        request_bytes: u64,
        response_bytes: Option<u64>,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        let m = &self.metrics;
        m.active_by_method[self.method].dec();
        let key = (
            self.method as u8,
            status,
            route.as_ptr() as usize,
            route.len(),
        );
        let observe = |h: &RouteHandles| {
            h.duration.observe(since(self.began));
            h.request_size.observe(request_bytes as f64);
            if let Some(n) = response_bytes {
                h.response_size.observe(n as f64);
            }
        };
        {
            let g = m.routes.read().unwrap_or_else(|p| p.into_inner());
            // The text is compared too: an address may be reused by another string once freed.
            if let Some(h) = g.get(&key).filter(|h| &*h.route == route) {
                observe(h);
                return;
            }
        }
        let method = METHODS[self.method];
        let route: Arc<str> = Arc::from(route);
        let labels = RouteLabels {
            http_request_method: method,
            http_route: route.clone(),
        };
        let h = RouteHandles {
            duration: m.duration.get_or_create_owned(&RequestLabels {
                http_request_method: method,
                http_route: route.clone(),
                http_response_status_code: status,
            }),
            request_size: m.request_size.get_or_create_owned(&labels),
            response_size: m.response_size.get_or_create_owned(&labels),
            route,
        };
        observe(&h);
        let mut g = m.routes.write().unwrap_or_else(|p| p.into_inner());
        // Bounded like the families: routes are templates, statuses a few hundred at most.
        if g.len() < 4096 {
            g.insert(key, h);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.active_by_method[self.method].dec();
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
pub struct GraphqlLabels {
    /// `query`, `mutation`, `subscription`.
    pub operation: &'static str,
    /// `ok`, `errors` (the answer holds errors), `refused` (not run: syntax, validation, limits).
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
    /// GraphQL operations (HTTP; over the WebSocket, each operation when it ends).
    pub graphql: Family<GraphqlLabels, Histogram>,
    pub rate_limited: Family<RuleLabel, Counter>,
    pub rule_compile: Histogram,
    pub fanout: Histogram,
    pub collections: LabelCap,
    /// `records`' counter per (collection name, action, outcome) seen, found with one cheap lookup
    /// keyed by the addresses of the name (the snapshot's own string) and the static labels.
    ops: std::sync::RwLock<HashMap<OpKey, (Arc<str>, Counter), BuildFast>>,
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
            graphql: Family::new_with_constructor(latency),
            rate_limited: Family::default(),
            rule_compile: latency(),
            fanout: latency(),
            collections: LabelCap::new(MAX_COLLECTION_LABELS),
            ops: Default::default(),
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
            "basalt_graphql_operation_duration_seconds",
            "GraphQL operations by type and outcome (ok, errors, refused), from parse to answer",
            m.graphql.clone(),
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
        if !basalt_store::metrics::enabled() {
            return;
        }
        let outcome = match res {
            Ok(_) => "ok",
            Err(e) => outcome_of(e),
        };
        let key = (
            collection.as_ptr() as usize,
            collection.len(),
            action.as_ptr() as usize,
            outcome.as_ptr() as usize,
        );
        {
            let g = self.ops.read().unwrap_or_else(|p| p.into_inner());
            // The text is compared too: an address may be reused by another string once freed.
            if let Some((_, c)) = g.get(&key).filter(|(n, _)| &**n == collection) {
                c.inc();
                return;
            }
        }
        let c = self.records.get_or_create_owned(&RecordLabels {
            collection: self.collections.label(collection),
            action,
            outcome,
        });
        c.inc();
        let mut g = self.ops.write().unwrap_or_else(|p| p.into_inner());
        // Bounded: collection names are capped, and each schema change leaves a few stale keys.
        if g.len() >= 4096 {
            g.clear();
        }
        g.insert(key, (Arc::from(collection), c));
    }

    /// Times a GraphQL operation.
    pub fn graphql_op(&self, operation: &'static str, outcome: &'static str, secs: f64) {
        self.graphql
            .get_or_create(&GraphqlLabels { operation, outcome })
            .observe(secs);
    }

    /// Counts a sign-in's outcome (`success`, `mfa_required`, `failure`, `refused`, `error`).
    pub fn signin(&self, method: &'static str, outcome: &'static str) {
        self.signins
            .get_or_create(&SigninLabels { method, outcome })
            .inc();
    }

    /// Encodes every series in the Prometheus text format, with `snap` as the scrape-time values.
    pub async fn encode(&self, snap: Snapshot) -> String {
        let _one = self.scraping.lock().await;
        *self.scraped.snap.lock().unwrap_or_else(|p| p.into_inner()) = snap;
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// A failed operation's outcome label.
pub fn outcome_of(e: &crate::ServiceError) -> &'static str {
    use basalt_core::Error;
    match &e.0 {
        Error::Forbidden(_) | Error::Unauthorized(_) => "denied",
        Error::NotFound(_) => "not_found",
        Error::TooManyRequests { .. } => "refused",
        Error::Internal(_) | Error::Unavailable { .. } => "error",
        Error::Validation { .. } | Error::BadRequest(_) => "invalid",
    }
}

/// Values read at scrape time, set by [`render`] just before encoding.
#[derive(Debug, Default)]
struct Scraped {
    snap: Mutex<Snapshot>,
}

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
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
    /// Adds a gauge sample (series of one name are grouped).
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.add(false, name, help, labels, v);
    }
    /// Adds a counter sample; the name is given without `_total` (the encoder adds it).
    pub fn counter(
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
