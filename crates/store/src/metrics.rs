//! The store's metrics (Prometheus histograms and counters, prometheus-client), owned by each store and
//! registered by the application into its registry. Both backends record the same series:
//!
//! - `basalt_store_query_duration_seconds{kind}`: `read` ([`crate::Store::query`], the whole call:
//!   wait for a connection included) and `write` (each statement inside a transaction);
//! - `basalt_store_transaction_duration_seconds`: from `begin` to the acknowledged commit (SQLite:
//!   the group's fsync included);
//! - `basalt_store_connection_wait_seconds{kind}`: waiting for a connection (`read`: a reader or a
//!   pool connection, `write`: SQLite's writer or a pool connection);
//! - `basalt_store_read_timeouts_total`: reads stopped at their deadline;
//! - SQLite only: `basalt_store_group_commit_size` (transactions per group) and
//!   `basalt_store_group_commit_duration_seconds` (the group's COMMIT: WAL write and fsync).
//!
//! Connection gauges are read at scrape time from [`crate::Store::connections`].

use std::time::Instant;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Whether metrics are recorded (`[metrics] enabled`, `BASALT_METRICS=off`): process-wide, read with
/// one relaxed load at each observation. Off, histograms and the request counters record nothing
/// (the `/metrics` page still answers, with what is read at scrape time).
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A histogram with explicit buckets kept in atomics: an observation is one bucket search and two
/// relaxed atomic adds (prometheus-client's own takes a mutex), and nothing when metrics are off.
/// The count is the buckets' sum, so `_count` always equals the `+Inf` bucket.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds, the last one `+Inf`.
    bounds: Box<[f64]>,
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let bounds: Box<[f64]> = bounds
            .into_iter()
            .filter(|b| b.is_finite())
            .chain(std::iter::once(f64::INFINITY))
            .collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramInner {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        if !enabled() {
            return;
        }
        let h = &self.0;
        // The first bound >= v (a NaN lands in the first bucket, as prometheus-client's does).
        let i = h.bounds.partition_point(|b| *b < v).min(h.counts.len() - 1);
        h.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = h.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match h
                .sum
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
    }

    /// `(sum, count, [(upper bound, observations in that bucket alone)])`.
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let h = &self.0;
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(h.counts.iter())
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        (
            f64::from_bits(h.sum.load(Ordering::Relaxed)),
            count,
            buckets,
        )
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Latency buckets (seconds), 100 µs to 10 s: a read by id takes tens of microseconds here, a
/// request a slow client holds can take seconds. Explicit buckets, so series aggregate across nodes.
pub const LATENCY: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Size buckets (bytes): 64 B to 64 MiB by factors of 4.
pub const BYTES: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Buckets for counts of things in a group (1 to 512).
pub const COUNTS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub fn latency() -> Histogram {
    Histogram::new(LATENCY)
}

type Kind = [(&'static str, &'static str); 1];

#[derive(Clone)]
pub struct StoreMetrics {
    queries: Family<Kind, Histogram>,
    waits: Family<Kind, Histogram>,
    pub reads: Histogram,
    pub writes: Histogram,
    pub read_wait: Histogram,
    pub write_wait: Histogram,
    pub transactions: Histogram,
    pub read_timeouts: Counter,
    pub group_size: Histogram,
    pub group_commit: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        let queries = Family::<Kind, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let waits = Family::<Kind, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        StoreMetrics {
            reads: queries.get_or_create_owned(&[("kind", "read")]),
            writes: queries.get_or_create_owned(&[("kind", "write")]),
            read_wait: waits.get_or_create_owned(&[("kind", "read")]),
            write_wait: waits.get_or_create_owned(&[("kind", "write")]),
            queries,
            waits,
            transactions: latency(),
            read_timeouts: Counter::default(),
            group_size: Histogram::new(COUNTS),
            group_commit: latency(),
        }
    }
}

impl StoreMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "basalt_store_query_duration_seconds",
            "Statement duration: reads (wait for a connection included) and writes inside transactions",
            self.queries.clone(),
        );
        r.register(
            "basalt_store_connection_wait_seconds",
            "Time spent waiting for a database connection",
            self.waits.clone(),
        );
        r.register(
            "basalt_store_transaction_duration_seconds",
            "Read-write transactions from begin to the acknowledged commit",
            self.transactions.clone(),
        );
        r.register(
            "basalt_store_read_timeouts",
            "Reads stopped at their deadline",
            self.read_timeouts.clone(),
        );
        r.register(
            "basalt_store_group_commit_size",
            "SQLite: transactions committed together by one fsync",
            self.group_size.clone(),
        );
        r.register(
            "basalt_store_group_commit_duration_seconds",
            "SQLite: a group's COMMIT (WAL write and fsync)",
            self.group_commit.clone(),
        );
    }
}

impl StoreMetrics {
    /// Runs a read ([`crate::Store::query`]) in its `db.query` span, recording its duration and
    /// whether it hit the read deadline: the one place both backends time their reads.
    pub async fn timed_read(
        &self,
        system: &'static str,
        sql: &crate::Sql,
        read: impl std::future::Future<Output = crate::Result<crate::Rows>>,
    ) -> crate::Result<crate::Rows> {
        let began = Instant::now();
        let span = tracing::debug_span!("db.query", db.system = system, db.statement = %sql.text);
        let res = tracing::Instrument::instrument(read, span).await;
        self.reads.observe(since(began));
        if matches!(res, Err(crate::StoreError::Timeout)) {
            self.read_timeouts.inc();
        }
        res
    }
}

/// Seconds since `t`, for a histogram.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Connections of a store's pools, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connections {
    pub in_use: usize,
    pub max: usize,
}
