//! The sink contract and each sink's health counters.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use crate::Event;

/// A durable destination. The bus hands it batches in sequence order and moves the sink's cursor past
/// a batch only when `deliver` returned `Ok`; an `Err` makes the bus retry the same batch after a
/// backoff. A sink may therefore see an event twice (same id), never out of order per record.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Stable name: the cursor's key in `_event_cursors`.
    fn name(&self) -> &str;
    /// Whether the sink wants events now. A sink that does not (webhooks with none defined) has its
    /// cursor moved to the present without reading the outbox.
    fn active(&self) -> bool {
        true
    }
    /// Checks the target is reachable (startup); the default has nothing to check.
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }
    async fn deliver(&self, events: &[Arc<Event>]) -> Result<(), String>;
    /// Whether its section sets `reveal_pii`: the service then hands it events whose pii values
    /// are in clear (opened from [`Event::sealed`]) instead of their masks.
    fn reveals_pii(&self) -> bool {
        false
    }
}

/// Counters a sink runner keeps; read by `/api/health` (superusers) and ready for a metrics exporter.
#[derive(Default)]
pub struct SinkStats {
    pub name: String,
    /// Delivered up to here (in memory).
    pub cursor: AtomicI64,
    /// Saved in `_event_cursors` up to here: what a restart resumes from, and the prune limit.
    pub persisted: AtomicI64,
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub last_error: Mutex<Option<(String, String)>>,
    /// Whether this node holds the sink's lease (only the holder delivers; see `EventBus`).
    pub leader: std::sync::atomic::AtomicBool,
    /// When the lease ends (unix ms, this node's clock).
    pub lease_until: AtomicI64,
}

impl SinkStats {
    pub fn new(name: &str) -> Arc<SinkStats> {
        Arc::new(SinkStats {
            name: name.into(),
            ..Default::default()
        })
    }
    pub fn record_error(&self, e: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut g = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some((e.to_string(), basalt_core::time::now()));
    }
    pub fn clear_error(&self) {
        let mut g = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *g = None;
    }
    pub fn to_json(&self, high_water: i64) -> Json {
        let cursor = self.cursor.load(Ordering::Relaxed);
        let err = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "name": self.name,
            "leader": self.leader.load(Ordering::Relaxed),
            "cursor": cursor,
            "lag": (high_water - cursor).max(0),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "lastError": err.as_ref().map(|e| e.0.clone()),
            "lastErrorAt": err.as_ref().map(|e| e.1.clone()),
            "healthy": err.is_none(),
        })
    }
}

/// Exponential backoff with full jitter: a random wait in `[base/2, base]`, base doubling to `max`.
pub fn backoff(attempt: u32, min_ms: u64, max_ms: u64) -> std::time::Duration {
    use rand::Rng;
    let base = min_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(1);
    let ms = rand::thread_rng().gen_range(base / 2..=base);
    std::time::Duration::from_millis(ms)
}
