//! The event bus: tails the outbox for in-process consumers, runs each durable sink from its own
//! cursor, and prunes what every consumer has acknowledged.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_store::Store;
use serde_json::{json, Value as Json};
use tokio::sync::{watch, Notify};

use crate::config::EventsConfig;
use crate::sink::{backoff, Sink, SinkStats};
use crate::{outbox, Event};

/// An in-process consumer the tail calls for each batch, in commit order, before it moves on: the
/// realtime hub. Writers can wait until their event has been through it ([`EventBus::wait_dispatched`]).
#[async_trait::async_trait]
pub trait Listener: Send + Sync + 'static {
    /// Whether anyone listens now; when not, the tail moves past new events without reading them.
    fn wants(&self) -> bool;
    async fn on_events(&self, events: &[Arc<Event>]);
}

pub struct EventBus {
    store: Arc<dyn Store>,
    pub config: EventsConfig,
    /// Pinged by the write path after each commit.
    committed: Notify,
    /// The tail's high-water mark: sinks wake when it moves.
    hwm: watch::Sender<i64>,
    listener: std::sync::OnceLock<Arc<dyn Listener>>,
    /// The tail's position: every event up to it went through the listener (or had none to go to).
    dispatched: watch::Sender<i64>,
    /// The highest sequence a writer of this process has committed (see [`EventBus::note_committed`]).
    last_committed: AtomicI64,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
    /// This process's node id: the owner name of the sink leases it holds.
    node: String,
    /// The lowest tail position among the cluster's live nodes (set by the node registry): the
    /// pruner never deletes an event another node's tail has not read. `i64::MAX` when alone.
    floor: AtomicI64,
}

/// How long a sink lease lasts; the holder renews it when less than half is left.
pub const LEASE_MS: i64 = 10_000;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl EventBus {
    /// Creates the bus; the tail starts at the present (in-process consumers see only new events).
    pub async fn new(
        store: Arc<dyn Store>,
        config: EventsConfig,
    ) -> Result<Arc<EventBus>, basalt_store::StoreError> {
        let start = outbox::high_water(store.as_ref()).await?;
        let (hwm, _) = watch::channel(start);
        let (dispatched, _) = watch::channel(start);
        let bus = Arc::new(EventBus {
            store,
            config,
            committed: Notify::new(),
            hwm,
            listener: std::sync::OnceLock::new(),
            dispatched,
            last_committed: AtomicI64::new(start),
            sinks: Mutex::new(Vec::new()),
            node: basalt_core::id::random_id(15),
            floor: AtomicI64::new(i64::MAX),
        });
        tokio::spawn(bus.clone().run_tail());
        Ok(bus)
    }

    /// Starts the pruner (the `pruner` module of a process's role): deletes events every consumer
    /// acknowledged, every `prune_ms`.
    pub fn start_pruner(self: &Arc<Self>) {
        tokio::spawn(self.clone().run_pruner());
    }

    /// This process's node id (random per start).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The tail's position (every event up to it went through the listener).
    pub fn dispatched(&self) -> i64 {
        *self.dispatched.borrow()
    }

    /// Sets the lowest tail position among the other live nodes (`i64::MAX`: none).
    pub fn set_floor(&self, seq: i64) {
        self.floor.store(seq, Ordering::Relaxed);
    }

    /// Saves each sink's cursor this node delivered past, and gives up its leases so another node
    /// takes the sinks over at once (graceful shutdown).
    pub async fn shutdown(&self) {
        let sinks: Vec<Arc<SinkStats>> =
            self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for s in sinks {
            let c = s.cursor.load(Ordering::Relaxed);
            if s.leader.load(Ordering::Relaxed) && s.persisted.load(Ordering::Relaxed) < c {
                if let Err(e) = self.save(&s, &s.name, c).await {
                    tracing::warn!(sink = %s.name, error = %e, "saving the cursor at shutdown failed");
                }
            }
            s.leader.store(false, Ordering::Relaxed);
        }
        if let Err(e) = outbox::release(self.store.as_ref(), &self.node).await {
            tracing::warn!(error = %e, "releasing sink leases at shutdown failed");
        }
    }

    /// Takes or renews this node's lease on a sink; `false` while another node holds it.
    async fn hold_lease(&self, stats: &SinkStats) -> bool {
        let now = now_ms();
        let held = stats.leader.load(Ordering::Relaxed);
        if held && stats.lease_until.load(Ordering::Relaxed) - now > LEASE_MS / 2 {
            return true;
        }
        match outbox::lease(
            self.store.as_ref(),
            &stats.name,
            &self.node,
            now,
            now + LEASE_MS,
        )
        .await
        {
            Ok(Some(seq)) => {
                stats.lease_until.store(now + LEASE_MS, Ordering::Relaxed);
                if !held {
                    // Resume from the durable cursor: the previous holder may have moved it.
                    stats.cursor.store(seq, Ordering::Relaxed);
                    stats.persisted.store(seq, Ordering::Relaxed);
                    stats.leader.store(true, Ordering::Relaxed);
                    tracing::info!(sink = %stats.name, cursor = seq, "this node now runs the sink");
                }
                true
            }
            Ok(None) => {
                if held {
                    stats.leader.store(false, Ordering::Relaxed);
                    tracing::warn!(sink = %stats.name, "another node took over the sink");
                }
                false
            }
            Err(e) => {
                stats.record_error(&format!("renewing the lease: {e}"));
                // Keep delivering only while the lease certainly still holds.
                held && stats.lease_until.load(Ordering::Relaxed) > now + 1_000
            }
        }
    }

    /// Called by the write path after a commit that appended events.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    /// Records that a local writer committed events up to `seq` (before it answers its client).
    pub fn note_committed(&self, seq: i64) {
        self.last_committed.fetch_max(seq, Ordering::SeqCst);
    }

    /// The highest sequence committed by this process's writers so far: a realtime subscription made
    /// now must not receive events up to it (their writes may already have been answered).
    pub fn last_committed(&self) -> i64 {
        self.last_committed.load(Ordering::SeqCst)
    }

    /// Sets the in-process consumer (once).
    pub fn set_listener(&self, l: Arc<dyn Listener>) {
        let _ = self.listener.set(l);
    }

    /// Waits (at most `timeout`) until the tail has handed every event up to `seq` to the listener,
    /// so a write's response follows its realtime fan-out, as in PocketBase.
    pub async fn wait_dispatched(&self, seq: i64, timeout: Duration) {
        self.committed.notify_one();
        let mut rx = self.dispatched.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v >= seq)).await;
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Starts a durable sink from its persisted cursor (a new sink starts at the present).
    pub async fn add_sink(
        self: &Arc<Self>,
        sink: Arc<dyn Sink>,
    ) -> Result<Arc<SinkStats>, basalt_store::StoreError> {
        let start = *self.hwm.borrow();
        let cursor = outbox::ensure_cursor(self.store.as_ref(), sink.name(), start).await?;
        let stats = SinkStats::new(sink.name());
        stats.cursor.store(cursor, Ordering::Relaxed);
        stats.persisted.store(cursor, Ordering::Relaxed);
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stats.clone());
        tokio::spawn(self.clone().run_sink(sink, stats.clone()));
        Ok(stats)
    }

    /// Each durable sink's counters (metrics), and the outbox's high-water mark.
    pub fn sinks(&self) -> (Vec<Arc<SinkStats>>, i64) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (sinks, *self.hwm.borrow())
    }

    pub fn health(&self) -> Json {
        let hwm = *self.hwm.borrow();
        let sinks: Vec<Json> = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.to_json(hwm))
            .collect();
        json!({
            "highWater": hwm,
            "tail": *self.dispatched.borrow(),
            "sinks": sinks,
        })
    }

    async fn run_tail(self: Arc<Self>) {
        let poll = Duration::from_millis(self.config.poll_ms.max(10));
        let mut failures = 0u32;
        let mut read_at = tokio::time::Instant::now();
        loop {
            let woken = tokio::select! {
                _ = self.committed.notified() => true,
                _ = tokio::time::sleep(poll) => false,
            };
            // On SQLite one writer commits events in sequence order, and a local writer notes its
            // sequence (`note_committed`) before it wakes the tail: that number is a committed
            // prefix, so a wake-up needs no query (one per group commit cost ~5% of a create). The
            // table is still read at least every `poll`, for events other processes wrote (CLI).
            let local = woken
                && self.store.dialect() == basalt_core::sql::Dialect::Sqlite
                && read_at.elapsed() < poll;
            if !local {
                read_at = tokio::time::Instant::now();
            }
            if let Err(e) = self.tail_once(local).await {
                failures += 1;
                tracing::warn!(error = %e, "event tail: reading the outbox failed");
                tokio::time::sleep(backoff(failures, 50, 5_000)).await;
            } else {
                failures = 0;
            }
        }
    }

    async fn tail_once(&self, local: bool) -> Result<(), basalt_store::StoreError> {
        let hwm = if local {
            self.last_committed
                .load(Ordering::SeqCst)
                .max(*self.hwm.borrow())
        } else {
            outbox::high_water(self.store.as_ref()).await?
        };
        let mut cursor = *self.dispatched.borrow();
        // Nobody listening: skip. Safe for realtime, whose subscriptions start after every event a
        // local writer committed before them (`last_committed`).
        if !self.listener.get().is_some_and(|l| l.wants()) {
            cursor = cursor.max(hwm);
        }
        while cursor < hwm {
            let batch =
                outbox::read(self.store.as_ref(), cursor, hwm, self.config.batch.max(1)).await?;
            let Some(last) = batch.last() else { break };
            cursor = last.seq;
            let batch: Vec<Arc<Event>> = batch.into_iter().map(Arc::new).collect();
            if let Some(l) = self.listener.get() {
                l.on_events(&batch).await;
            }
            self.dispatched.send_replace(cursor);
        }
        let cursor = hwm.max(cursor);
        self.dispatched.send_replace(cursor);
        self.hwm.send_if_modified(|v| {
            let changed = *v != hwm;
            *v = hwm;
            changed
        });
        Ok(())
    }

    async fn run_sink(self: Arc<Self>, sink: Arc<dyn Sink>, stats: Arc<SinkStats>) {
        let mut rx = self.hwm.subscribe();
        let mut attempt = 0u32;
        let store = self.store.clone();
        // Under load the cursor is saved at most every SAVE_EVERY (a crash repeats at most that much,
        // with the same event ids); when the sink catches up it is saved at once.
        const SAVE_EVERY: Duration = Duration::from_millis(250);
        // While idle the holder still wakes to renew its lease.
        let renew = Duration::from_millis((LEASE_MS / 3) as u64);
        let mut last_save = tokio::time::Instant::now();
        loop {
            // Only the lease holder delivers: many nodes run this loop, one sends.
            if !self.hold_lease(&stats).await {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                continue;
            }
            let hwm = *rx.borrow_and_update();
            if !sink.active() {
                stats.cursor.fetch_max(hwm, Ordering::Relaxed);
            }
            let cursor = stats.cursor.load(Ordering::Relaxed);
            if cursor >= hwm {
                if stats.persisted.load(Ordering::Relaxed) < cursor {
                    // Caught up with an unsaved cursor: save it once SAVE_EVERY has passed since the
                    // last save (not on every commit), unless new events come first.
                    let due = last_save + SAVE_EVERY;
                    if tokio::time::Instant::now() < due {
                        tokio::select! {
                            r = rx.changed() => if r.is_err() { return },
                            _ = tokio::time::sleep_until(due) => {}
                        }
                        continue;
                    }
                    if let Err(e) = self.save(&stats, sink.name(), cursor).await {
                        stats.record_error(&format!("saving the cursor: {e}"));
                        tokio::time::sleep(backoff(1, 100, 5_000)).await;
                        continue;
                    }
                    last_save = tokio::time::Instant::now();
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(renew) => {}
                }
                continue;
            }
            let batch =
                match outbox::read(store.as_ref(), cursor, hwm, self.config.batch.max(1)).await {
                    Ok(b) => b,
                    Err(e) => {
                        stats.record_error(&format!("reading the outbox: {e}"));
                        attempt += 1;
                        tokio::time::sleep(backoff(attempt, 100, 5_000)).await;
                        continue;
                    }
                };
            let Some(last) = batch.last().map(|e| e.seq) else {
                // Nothing between cursor and hwm (a gap): skip ahead.
                stats.cursor.store(hwm, Ordering::Relaxed);
                continue;
            };
            let batch: Vec<Arc<Event>> = batch.into_iter().map(Arc::new).collect();
            let span = tracing::info_span!(
                "sink.deliver",
                otel.kind = "producer",
                sink = sink.name(),
                events = batch.len(),
            );
            match tracing::Instrument::instrument(sink.deliver(&batch), span).await {
                Ok(()) => {
                    attempt = 0;
                    stats.cursor.store(last, Ordering::Relaxed);
                    stats
                        .delivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.clear_error();
                    if last_save.elapsed() >= SAVE_EVERY {
                        if let Err(e) = self.save(&stats, sink.name(), last).await {
                            stats.record_error(&format!("saving the cursor: {e}"));
                        }
                        last_save = tokio::time::Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(sink = sink.name(), error = %e, "sink delivery failed; will retry");
                    stats.record_error(&e);
                    attempt += 1;
                    tokio::time::sleep(backoff(
                        attempt,
                        self.config.retry_min_ms,
                        self.config.retry_max_ms,
                    ))
                    .await;
                }
            }
        }
    }

    async fn save(
        &self,
        stats: &SinkStats,
        name: &str,
        seq: i64,
    ) -> Result<(), basalt_store::StoreError> {
        if outbox::save_cursor(self.store.as_ref(), name, &self.node, seq).await? {
            stats.persisted.store(seq, Ordering::Relaxed);
        } else if stats.leader.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                sink = name,
                "lost the sink's lease; another node delivers from its cursor"
            );
        }
        Ok(())
    }

    /// The lowest position every consumer has acknowledged durably: each sink's saved cursor (read
    /// from the database, whichever node runs it), this node's tail, and the other nodes' tails.
    async fn acknowledged(&self) -> Result<i64, basalt_store::StoreError> {
        let names: Vec<String> = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let durable = outbox::min_cursor(self.store.as_ref(), &names)
            .await?
            .unwrap_or(i64::MAX);
        Ok(durable
            .min(*self.dispatched.borrow())
            .min(self.floor.load(Ordering::Relaxed)))
    }

    /// One pruning pass: deletes the events every sink, this node and the other nodes have
    /// acknowledged. The number deleted.
    pub async fn prune_now(&self) -> Result<u64, basalt_store::StoreError> {
        let upto = self.acknowledged().await?;
        let n = outbox::prune(self.store.as_ref(), upto).await?;
        if n > 0 {
            tracing::debug!(pruned = n, upto, "outbox pruned");
        }
        Ok(n)
    }

    async fn run_pruner(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.prune_ms.max(100));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.prune_now().await {
                tracing::warn!(error = %e, "outbox prune failed");
            }
        }
    }
}
