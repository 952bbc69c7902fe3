//! PostgreSQL store over tokio-postgres and a deadpool pool.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use crate::metrics::{since, Connections, StoreMetrics};
use crate::{Dialect, Result, Rows, Sql, Store, StoreError, Tx, Value};

pub struct PgStore {
    pool: Pool,
    /// One connection of the probes' own, so `/readyz` never waits behind user queries.
    probe: Pool,
    size: usize,
    desc: String,
    metrics: StoreMetrics,
}

/// How long a request waits for a free pool connection before it is answered 503 (all connections
/// busy), and for a new connection to be made (the server down or restarting).
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const POOL_CREATE: std::time::Duration = std::time::Duration::from_secs(5);

fn db_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
            return StoreError::Timeout;
        }
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            // `Key (col)=(…) already exists.`; for an expression index `Key (lower(col::text))=…`.
            let detail = format!(
                "{} {}",
                db.constraint().unwrap_or(""),
                db.detail().unwrap_or("")
            );
            let column = detail
                .find("Key (")
                .and_then(|i| detail[i + 5..].split(')').next())
                .map(|s| s.trim_matches('"').to_string())
                .unwrap_or_default();
            return StoreError::Unique { column, detail };
        }
        // Class 08 (connection exception), and the server shutting down or starting up (57P01-03).
        let code = db.code().code();
        if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
            return StoreError::Unavailable(format!("{code}: {}", db.message()));
        }
        return StoreError::Db(format!("{code}: {}", db.message()));
    }
    // No server answer at all: the connection is closed or could not be made.
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Db(e.to_string())
}

/// A pool failure: the server's own error classified as [`db_err`] does; no connection within
/// the pool's wait or create timeout means the database is unavailable.
fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(e),
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Connect(format!("invalid postgres url: {e}")))?;
        // A server that does not answer (not even a refusal) must not hold requests for minutes.
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = || {
            Manager::from_config(
                cfg.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            )
        };
        let size = std::thread::available_parallelism()
            .map(|n| n.get() * 4)
            .unwrap_or(8)
            .max(8);
        let pool = Pool::builder(manager())
            .max_size(size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_CREATE))
            .recycle_timeout(Some(POOL_CREATE))
            .build()
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let probe = Pool::builder(manager())
            .max_size(1)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_CREATE))
            .recycle_timeout(Some(POOL_CREATE))
            .build()
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let desc = format!("postgres {}", crate::redact(url));
        // Fail at start, with the url named, when the server is unreachable.
        let c = pool
            .get()
            .await
            .map_err(|e| StoreError::Connect(format!("{desc}: {e}")))?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| StoreError::Connect(format!("{desc}: {e}")))?;
        Ok(PgStore {
            pool,
            probe,
            size,
            desc,
            metrics: StoreMetrics::default(),
        })
    }

    /// A pool connection; the wait is recorded in `wait`.
    async fn client_for(&self, wait: &crate::metrics::Histogram) -> Result<Object> {
        let began = std::time::Instant::now();
        let c = self.pool.get().await.map_err(pool_err);
        wait.observe(since(began));
        c
    }

    /// A read with its deadline: past it the query is cancelled on the server.
    async fn read(&self, sql: &Sql) -> Result<Rows> {
        let c = self.client_for(&self.metrics.read_wait).await?;
        let run = run_query(&c, sql);
        tokio::pin!(run);
        let limit = std::time::Duration::from_millis(crate::READ_TIMEOUT_MS);
        match tokio::time::timeout(limit, &mut run).await {
            Ok(r) => r,
            Err(_) => {
                // Stop it on the server, and wait for its end so the connection is free again.
                let _ = c.cancel_token().cancel_query(NoTls).await;
                let _ = run.await;
                Err(StoreError::Timeout)
            }
        }
    }
}

fn params(sql: &Sql) -> Vec<Box<dyn ToSql + Sync + Send>> {
    sql.params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Value::Null => Box::new(Option::<String>::None),
                Value::Int(i) => Box::new(*i),
                Value::Real(f) => Box::new(*f),
                Value::Bool(b) => Box::new(*b),
                Value::Text(s) | Value::Json(s) => Box::new(s.clone()),
                Value::Blob(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

fn convert(rows: Vec<tokio_postgres::Row>, stmt: &tokio_postgres::Statement) -> Rows {
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            let v = match *t {
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)
                    .ok()
                    .flatten()
                    .map(Value::Bool),
                Type::INT8 => r
                    .try_get::<_, Option<i64>>(i)
                    .ok()
                    .flatten()
                    .map(Value::Int),
                Type::INT4 => r
                    .try_get::<_, Option<i32>>(i)
                    .ok()
                    .flatten()
                    .map(|x| Value::Int(x as i64)),
                Type::INT2 => r
                    .try_get::<_, Option<i16>>(i)
                    .ok()
                    .flatten()
                    .map(|x| Value::Int(x as i64)),
                Type::FLOAT8 => r
                    .try_get::<_, Option<f64>>(i)
                    .ok()
                    .flatten()
                    .map(Value::Real),
                Type::FLOAT4 => r
                    .try_get::<_, Option<f32>>(i)
                    .ok()
                    .flatten()
                    .map(|x| Value::Real(x as f64)),
                Type::JSONB | Type::JSON => r
                    .try_get::<_, Option<serde_json::Value>>(i)
                    .ok()
                    .flatten()
                    .map(|j| Value::Json(j.to_string())),
                _ => r
                    .try_get::<_, Option<String>>(i)
                    .ok()
                    .flatten()
                    .map(Value::Text),
            };
            row.push(v.unwrap_or(Value::Null));
        }
        out.push(row);
    }
    Rows { columns, rows: out }
}

/// A cached statement whose result columns changed type (after an online schema change, on this node
/// or another) fails with 0A000; the cache is dropped and the statement prepared again, once.
fn is_stale_plan(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.code() == &tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
            && d.message().contains("cached plan")
    })
}

async fn run_query(c: &Object, sql: &Sql) -> Result<Rows> {
    crate::check_params(sql)?;
    let p = params(sql);
    let refs: Vec<&(dyn ToSql + Sync)> = p
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let stmt = c.prepare_cached(&sql.text).await.map_err(db_err)?;
    match c.query(&stmt, &refs).await {
        Ok(rows) => Ok(convert(rows, &stmt)),
        Err(e) if is_stale_plan(&e) => {
            c.statement_cache.clear();
            let stmt = c.prepare_cached(&sql.text).await.map_err(db_err)?;
            let rows = c.query(&stmt, &refs).await.map_err(db_err)?;
            Ok(convert(rows, &stmt))
        }
        Err(e) => Err(db_err(e)),
    }
}

async fn run_exec(c: &Object, sql: &Sql) -> Result<u64> {
    crate::check_params(sql)?;
    if sql.params.is_empty() {
        c.batch_execute(&sql.text).await.map_err(db_err)?;
        return Ok(0);
    }
    let p = params(sql);
    let refs: Vec<&(dyn ToSql + Sync)> = p
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let stmt = c.prepare_cached(&sql.text).await.map_err(db_err)?;
    match c.execute(&stmt, &refs).await {
        Err(e) if is_stale_plan(&e) => {
            c.statement_cache.clear();
            let stmt = c.prepare_cached(&sql.text).await.map_err(db_err)?;
            c.execute(&stmt, &refs).await.map_err(db_err)
        }
        other => other.map_err(db_err),
    }
}

#[async_trait]
impl Store for PgStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    async fn query(&self, sql: &Sql) -> Result<Rows> {
        self.metrics
            .timed_read("postgresql", sql, self.read(sql))
            .await
    }
    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
    fn connections(&self) -> Connections {
        let st = self.pool.status();
        Connections {
            in_use: st.size.saturating_sub(st.available),
            max: st.max_size,
        }
    }
    fn read_concurrency(&self) -> usize {
        self.size
    }
    async fn ping(&self) -> Result<()> {
        let c = self.probe.get().await.map_err(pool_err)?;
        c.simple_query("SELECT 1").await.map_err(db_err)?;
        Ok(())
    }
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        // The guard exists before BEGIN is awaited: a cancelled begin still rolls back.
        let began = std::time::Instant::now();
        let tx = PgTx {
            client: Some(self.client_for(&self.metrics.write_wait).await?),
            metrics: self.metrics.clone(),
            began,
        };
        tx.c()?.batch_execute("BEGIN").await.map_err(db_err)?;
        Ok(Box::new(tx))
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
}

struct PgTx {
    client: Option<Object>,
    metrics: StoreMetrics,
    began: std::time::Instant,
}

impl PgTx {
    fn c(&self) -> Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn query(&mut self, sql: &Sql) -> Result<Rows> {
        let t = std::time::Instant::now();
        let span =
            tracing::debug_span!("db.query", db.system = "postgresql", db.statement = %sql.text);
        let res = tracing::Instrument::instrument(run_query(self.c()?, sql), span).await;
        self.metrics.writes.observe(since(t));
        res
    }
    async fn execute(&mut self, sql: &Sql) -> Result<u64> {
        let t = std::time::Instant::now();
        let span =
            tracing::debug_span!("db.execute", db.system = "postgresql", db.statement = %sql.text);
        let res = tracing::Instrument::instrument(run_exec(self.c()?, sql), span).await;
        self.metrics.writes.observe(since(t));
        res
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        let c = self
            .client
            .take()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))?;
        let res = c.batch_execute("COMMIT").await.map_err(db_err);
        self.metrics.transactions.observe(since(self.began));
        res
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            // The connection returns to the pool only after the rollback has run.
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    if let Err(e) = c.batch_execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "postgres rollback failed");
                    }
                });
            }
        }
    }
}
