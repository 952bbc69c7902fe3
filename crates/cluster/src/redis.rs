//! The Redis component: `--redis-url` / `BASALT_REDIS_URL`.
//!
//! One URL (`redis://host:port/db`, `rediss://` for TLS is not built in) gives a connection manager
//! that reconnects by itself; several comma-separated URLs are the seed nodes of a Redis Cluster.
//! Every command has a short response timeout. A failed command marks Redis down; a pinger marks it
//! up again when it answers. While it is down, callers skip it: the cache reads the database and rate
//! limits fall back to this node's buckets. Health shows the state and the last error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct Redis {
    conn: Conn,
    /// The first URL: pub/sub subscribes there (a Redis Cluster forwards PUBLISH to every node).
    pub_url: String,
    up: AtomicBool,
    /// The shared keyspace generation (`basalt:gen`): a node that lost Redis bumps it when Redis
    /// answers again, since it may have missed deleting entries meanwhile; every node reads it on
    /// each ping, and cache keys carry it, so entries from before the outage are never read again.
    gen: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

const GEN_KEY: &str = "basalt:gen";

/// Per-command deadline: a hung Redis must not hold a request for long.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl Redis {
    /// Connects; an unreachable Redis is a startup error (it is configured, so it is expected).
    pub async fn connect(urls: &str) -> Result<Arc<Redis>, String> {
        let list: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let first = list.first().cloned().ok_or("empty Redis URL")?;
        let conn = if list.len() == 1 {
            let client = redis::Client::open(first.as_str()).map_err(|e| e.to_string())?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            let m = tokio::time::timeout(
                Duration::from_secs(5),
                ConnectionManager::new_with_config(client, cfg),
            )
            .await
            .map_err(|_| "timed out connecting".to_string())?
            .map_err(|e| e.to_string())?;
            Conn::Single(m)
        } else {
            let c = redis::cluster::ClusterClientBuilder::new(list.clone())
                .response_timeout(RESPONSE_TIMEOUT)
                .connection_timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| e.to_string())?;
            Conn::Cluster(c.get_async_connection().await.map_err(|e| e.to_string())?)
        };
        let r = Arc::new(Redis {
            conn,
            pub_url: first,
            up: AtomicBool::new(true),
            gen: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let g: Option<u64> = r.query(redis::cmd("GET").arg(GEN_KEY)).await?;
        r.gen.store(g.unwrap_or(0), Ordering::Relaxed);
        tokio::spawn(r.clone().pinger());
        Ok(r)
    }

    /// The keyspace generation (see the field).
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Relaxed)
    }

    /// Whether the last command or ping succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs one command with the response deadline, recording a failure in the health state.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, String> {
        let r = match self.conn.clone() {
            Conn::Single(mut c) => run(&mut c, cmd).await,
            Conn::Cluster(mut c) => run(&mut c, cmd).await,
        };
        r.inspect_err(|e| self.failed(e))
    }

    /// Runs a pipeline (replies ignored) with the response deadline, like [`Redis::query`].
    pub async fn query_pipe(&self, p: &redis::Pipeline) -> Result<(), String> {
        let r = match self.conn.clone() {
            Conn::Single(mut c) => run_pipe(&mut c, p).await,
            Conn::Cluster(mut c) => run_pipe(&mut c, p).await,
        };
        r.inspect_err(|e| self.failed(e))
    }

    fn failed(&self, e: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, "redis is unavailable; serving from the database and local limits until it returns");
        }
    }

    /// Every 500 ms: reads the keyspace generation (the liveness check), or, when Redis was down,
    /// moves it on (see the `gen` field) and marks Redis up again.
    async fn pinger(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let was_up = self.is_up();
            let mut cmd = redis::cmd(if was_up { "GET" } else { "INCR" });
            cmd.arg(GEN_KEY);
            let r = match self.conn.clone() {
                Conn::Single(mut c) => run::<Option<u64>>(&mut c, &cmd).await,
                Conn::Cluster(mut c) => run::<Option<u64>>(&mut c, &cmd).await,
            };
            match r {
                Ok(g) => {
                    self.gen.store(g.unwrap_or(0), Ordering::Relaxed);
                    if !self.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(generation = g.unwrap_or(0), "redis is back");
                    }
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    pub fn health(&self) -> serde_json::Value {
        serde_json::json!({
            "up": self.is_up(),
            "errors": self.errors.load(Ordering::Relaxed),
            "lastError": self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// A fresh pub/sub connection to the first URL.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let client = redis::Client::open(self.pub_url.as_str()).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
            .await
            .map_err(|_| "timed out connecting".to_string())?
            .map_err(|e| e.to_string())
    }
}

async fn run<T: FromRedisValue>(c: &mut impl ConnectionLike, cmd: &Cmd) -> Result<T, String> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, cmd.query_async::<T>(c)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn run_pipe(c: &mut impl ConnectionLike, p: &redis::Pipeline) -> Result<(), String> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, p.query_async::<()>(c)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
