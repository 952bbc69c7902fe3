//! The record cache: stored rows by `(collection id, record id)` for reads that need no query to
//! decide access (a public `viewRule`, a superuser, the auth record behind a token).
//!
//! Two levels: an in-process map (striped, bounded, entries expire after `ttl`) and, when Redis is
//! configured, Redis (`basalt:rec:{<collectionId>:<id>}:<generation>:<schema>`, JSON, same TTL) shared by
//! every node; the generation moves after a Redis outage (see `basalt_cluster::redis`).
//!
//! Invalidation, the part that must be right:
//! - the node that writes drops its entries and the Redis entries of every record the write touched
//!   *after* its commit and *before* it answers, so a node always reads its own writes;
//! - every node's event tail drops the entries of each event's record, so other nodes see a write
//!   within the event fan-out delay (a cluster message wakes their tails; measured in the multi-node
//!   test), or at worst the tail's poll interval;
//! - a schema change, truncate or restore clears a node's whole map (and other nodes' via the
//!   cluster message);
//! - a fill never resurrects an old row: each stripe has an epoch that every invalidation bumps; a
//!   reader notes the epoch before its database read and stores the row only if it is unchanged. In
//!   Redis an invalidation leaves a short-lived marker (`basalt:inv:…`, 10 s) and a fill is refused
//!   while the marker exists.
//! - `ttl` bounds the staleness of anything written behind Basalt's back (another process, a
//!   restore).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basalt_cluster::driver as redis;
use basalt_cluster::redis::Redis;
use basalt_core::sql::Value;
use basalt_store::Rows;

const STRIPES: usize = 64;
const INVALIDATION_MARK_MS: u64 = 10_000;

/// Cache settings (`[cache]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether reads may be served from the cache.
    pub enabled: bool,
    /// In-process entries at most (0: no in-process level).
    pub capacity: usize,
    /// How long an entry lives, in seconds.
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            capacity: 100_000,
            ttl_secs: 60,
        }
    }
}

struct Entry {
    rows: Arc<Rows>,
    at: Instant,
}

#[derive(Default)]
struct Stripe {
    map: HashMap<String, Entry>,
    epoch: u64,
}

pub struct RecordCache {
    cfg: CacheConfig,
    stripes: Vec<Mutex<Stripe>>,
    redis: Option<Arc<Redis>>,
    /// Reads served from a cache (either layer), and reads that missed both.
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Of the process layer's misses, those Redis served, and those it did not.
    pub redis_hits: AtomicU64,
    pub redis_misses: AtomicU64,
    /// Entries the process layer dropped for room.
    pub evictions: AtomicU64,
}

/// What a reader notes before its database read, to hand back to [`RecordCache::fill`].
pub struct Ticket {
    key: String,
    /// The Redis key: it names the collection's schema version, so rows cached before a schema
    /// change are never served after it.
    shared: String,
    /// The record's invalidation marker in Redis.
    marker: String,
    stripe: usize,
    epoch: u64,
}

fn key(coll: &str, id: &str) -> String {
    format!("{coll}:{id}")
}

/// Redis keys of one record share the hash tag `{<coll>:<id>}`, so the fill script's two keys live
/// in one slot of a Redis Cluster.
fn shared_key(gen: u64, coll: &str, schema: &str, id: &str) -> String {
    format!("basalt:rec:{{{coll}:{id}}}:{gen}:{schema}")
}

fn marker_key(coll: &str, id: &str) -> String {
    format!("basalt:inv:{{{coll}:{id}}}")
}

fn stripe_of(k: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    c: Vec<String>,
    r: Vec<Value>,
}

impl RecordCache {
    pub fn new(cfg: CacheConfig, redis: Option<Arc<Redis>>) -> RecordCache {
        RecordCache {
            cfg,
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Stripe::default()))
                .collect(),
            redis,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            redis_hits: AtomicU64::new(0),
            redis_misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.redis.as_ref().map_or(0, |r| r.generation())
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled && (self.cfg.capacity > 0 || self.redis.is_some())
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.ttl_secs.max(1))
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Stripe> {
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached row, or a ticket to fill the cache with after reading the database.
    /// `schema` is the collection's `updated` (its definition's version).
    pub async fn get(&self, coll: &str, schema: &str, id: &str) -> Result<Arc<Rows>, Ticket> {
        let k = key(coll, id);
        let i = stripe_of(&k);
        let epoch = {
            let mut s = self.lock(i);
            if let Some(e) = s.map.get(&k) {
                if e.at.elapsed() < self.ttl() {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.rows.clone());
                }
                s.map.remove(&k);
            }
            s.epoch
        };
        let ticket = Ticket {
            shared: shared_key(self.generation(), coll, schema, id),
            marker: marker_key(coll, id),
            key: k,
            stripe: i,
            epoch,
        };
        if let Some(r) = self.redis.as_ref().filter(|r| r.is_up()) {
            let got: Result<Option<String>, String> =
                r.query(redis::cmd("GET").arg(&ticket.shared)).await;
            if let Ok(Some(text)) = got {
                if let Ok(st) = serde_json::from_str::<Stored>(&text) {
                    let rows = Arc::new(Rows {
                        columns: st.c,
                        rows: vec![st.r],
                    });
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    self.redis_hits.fetch_add(1, Ordering::Relaxed);
                    self.put_local(&ticket, rows.clone());
                    return Ok(rows);
                }
            }
            self.redis_misses.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Err(ticket)
    }

    fn put_local(&self, t: &Ticket, rows: Arc<Rows>) -> bool {
        if self.cfg.capacity == 0 {
            return true;
        }
        let per = (self.cfg.capacity / STRIPES).max(1);
        let mut s = self.lock(t.stripe);
        if s.epoch != t.epoch {
            return false;
        }
        if s.map.len() >= per {
            // Evict what expired, else an arbitrary entry.
            let ttl = self.ttl();
            s.map.retain(|_, e| e.at.elapsed() < ttl);
            if s.map.len() >= per {
                if let Some(k) = s.map.keys().next().cloned() {
                    s.map.remove(&k);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        s.map.insert(
            t.key.clone(),
            Entry {
                rows,
                at: Instant::now(),
            },
        );
        true
    }

    /// Stores a row read from the database (one row; nothing is cached for "not found"), unless
    /// the record was invalidated since the ticket was taken.
    pub async fn fill(&self, t: Ticket, rows: &Rows) {
        if rows.rows.len() != 1 {
            return;
        }
        let shared = Arc::new(rows.clone());
        if !self.put_local(&t, shared) {
            return;
        }
        if let Some(r) = self.redis.as_ref().filter(|r| r.is_up()) {
            let body = serde_json::to_string(&Stored {
                c: rows.columns.clone(),
                r: rows.rows[0].clone(),
            })
            .unwrap_or_default();
            // SET unless an invalidation marker exists (the row may predate that write).
            let script = "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end \
                          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";
            let _: Result<i64, String> = r
                .query(
                    redis::cmd("EVAL")
                        .arg(script)
                        .arg(2)
                        .arg(&t.shared)
                        .arg(&t.marker)
                        .arg(body)
                        .arg(self.ttl().as_millis() as u64),
                )
                .await;
        }
    }

    /// Drops this node's entry for a record (the event tail calls this for every event).
    pub fn invalidate_local(&self, coll: &str, id: &str) {
        let k = key(coll, id);
        let i = stripe_of(&k);
        let mut s = self.lock(i);
        s.epoch += 1;
        s.map.remove(&k);
    }

    /// Drops the records a committed write touched, here and in Redis (the writer, before it answers).
    /// `keys`: (collection id, schema version, record id).
    pub async fn invalidate(&self, keys: &[(String, String, String)]) {
        for (c, _, id) in keys {
            self.invalidate_local(c, id);
        }
        if keys.is_empty() {
            return;
        }
        if let Some(r) = self.redis.as_ref().filter(|r| r.is_up()) {
            let mut p = redis::pipe();
            for (c, schema, id) in keys {
                p.cmd("SET")
                    .arg(marker_key(c, id))
                    .arg(1)
                    .arg("PX")
                    .arg(INVALIDATION_MARK_MS)
                    .ignore();
                p.cmd("DEL")
                    .arg(shared_key(r.generation(), c, schema, id))
                    .ignore();
            }
            let _: Result<(), String> = r.query_pipe(&p).await;
        }
    }

    /// Drops every in-process entry (schema change, truncate, restore, resync).
    pub fn clear(&self) {
        for i in 0..STRIPES {
            let mut s = self.lock(i);
            s.epoch += 1;
            s.map.clear();
        }
    }

    pub fn health(&self) -> serde_json::Value {
        let entries: usize = (0..STRIPES).map(|i| self.lock(i).map.len()).sum();
        serde_json::json!({
            "enabled": self.enabled(),
            "entries": entries,
            "hits": self.hits.load(Ordering::Relaxed),
            "misses": self.misses.load(Ordering::Relaxed),
            "redis": self.redis.is_some(),
        })
    }
}
