//! Basalt storage: one [`Store`] trait with SQLite and PostgreSQL implementations.
//!
//! Layout:
//! - [`sqlite`]: rusqlite, one writer connection (transactions serialize on it) and a pool of reader
//!   connections with cached prepared statements; WAL journal; group fsync of the WAL before any commit is acknowledged, so an acknowledged
//!   commit survives a crash.
//! - [`postgres`]: tokio-postgres through a deadpool pool, statements prepared and cached per connection.
//!
//! **Architecture Invariant:** the store executes [`basalt_core::sql::Sql`] as given, binding its
//! parameters; it never formats a value into SQL text.

use async_trait::async_trait;
pub use basalt_core::sql::{Dialect, Sql, Value};

pub mod jsonb;
pub mod metrics;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint failed on `column` (the first column the driver names; for an index on an
    /// expression, the expression's column); `detail` is the driver's text, for logs.
    #[error("unique constraint failed: {detail}")]
    Unique { column: String, detail: String },
    #[error("database error: {0}")]
    Db(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// The database cannot be reached now (refused or lost connection, server shutting down,
    /// no pool connection within the wait): nothing was done; a retry later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: the write was not done.
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
    /// A read ran past its deadline and was interrupted.
    #[error("the query took too long")]
    Timeout,
    /// A value no backend can store as given (text with a NUL character): the request is at fault.
    #[error("invalid value: {0}")]
    BadValue(String),
    /// The operation does not exist for this backend.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Refuses parameters that PostgreSQL cannot store (NUL in text), on every backend alike, so the same
/// request gets the same answer whatever the database.
pub fn check_params(sql: &Sql) -> Result<()> {
    if sql
        .params
        .iter()
        .any(|v| matches!(v, Value::Text(s) | Value::Json(s) if s.contains('\0')))
    {
        return Err(StoreError::BadValue(
            "text must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

/// One result row: values in column order.
pub type Row = Vec<Value>;

/// Rows with their column names.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

impl Rows {
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
    /// The first column of the first row (`SELECT COUNT(*) …`, `… RETURNING id`), if any.
    pub fn scalar(self) -> Option<Value> {
        self.rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
    }
    /// [`Rows::scalar`] as an integer: 0 when absent or not a number.
    pub fn scalar_int(self) -> i64 {
        self.scalar().map_or(0, |v| v.as_i64())
    }
}

/// The longest a read ([`Store::query`]) may run before the database stops it with
/// [`StoreError::Timeout`]: client filters can be expensive, and a read must not hold a connection
/// for long.
pub const READ_TIMEOUT_MS: u64 = 5_000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;
    /// Runs a read-only query. On SQLite this runs on a reader connection and sees every committed write.
    async fn query(&self, sql: &Sql) -> Result<Rows>;
    /// Starts a read-write transaction. Dropping it without [`Tx::commit`] rolls back.
    async fn begin(&self) -> Result<Box<dyn Tx>>;
    /// How many reads run at once (read connections); callers size their admission by it.
    fn read_concurrency(&self) -> usize;
    /// The store's metrics ([`metrics::StoreMetrics`]).
    fn metrics(&self) -> &metrics::StoreMetrics;
    /// Connections in use now, of the most the store opens (read at scrape time).
    fn connections(&self) -> metrics::Connections;
    /// A cheap round trip to the database on a path no user query can occupy (the probes').
    async fn ping(&self) -> Result<()>;
    /// A short description for logs (never includes credentials).
    fn describe(&self) -> String;
    /// Whether [`Store::snapshot`] and [`Store::restore`] work here. PostgreSQL: no, its backups
    /// belong to its own tooling (pg_dump, base backups with WAL archiving).
    fn can_backup(&self) -> bool {
        false
    }
    /// Writes a transactionally consistent copy of the whole database to the new file `dest` while
    /// writes go on: every transaction acknowledged before the call is in it.
    async fn snapshot(&self, _dest: &std::path::Path) -> Result<()> {
        Err(StoreError::Unsupported(
            "this database is backed up with its own tooling".into(),
        ))
    }
    /// Rewrites the database files so that old versions of updated rows are gone from them (after
    /// values were encrypted in place). SQLite: `VACUUM` and a truncating WAL checkpoint, holding the
    /// writer. PostgreSQL: nothing (dead tuples are the server's, and autovacuum's, to reclaim).
    async fn scrub(&self) -> Result<()> {
        Ok(())
    }
    /// Replaces the database's content with the database file `src` (made by [`Store::snapshot`]),
    /// except the tables in `keep`, which keep their live rows. Writers wait meanwhile.
    async fn restore(&self, _src: &std::path::Path, _keep: &[&str]) -> Result<()> {
        Err(StoreError::Unsupported(
            "this database is restored with its own tooling".into(),
        ))
    }
}

#[async_trait]
pub trait Tx: Send {
    async fn query(&mut self, sql: &Sql) -> Result<Rows>;
    async fn execute(&mut self, sql: &Sql) -> Result<u64>;
    /// Inserts one row and returns its integer key. SQLite: the plain `INSERT`, then
    /// `last_insert_rowid()` (a `RETURNING` clause would cost an ephemeral table per statement).
    /// Other stores: the statement ends in `RETURNING <key>`, run as a query.
    async fn insert_rowid(&mut self, sql: &Sql) -> Result<i64> {
        Ok(self.query(sql).await?.scalar_int())
    }
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// When a SQLite commit is acknowledged (`[storage] synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// After the group's fsync: an acknowledged write survives `kill -9` and power loss (default).
    #[default]
    Full,
    /// After the group's WAL write, without fsync (fsync at checkpoints): an acknowledged write
    /// survives a crash of the process, not a power loss or kernel crash. What PocketBase and
    /// TrailBase run.
    Normal,
}

impl Synchronous {
    pub fn parse(s: &str) -> Option<Synchronous> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Some(Synchronous::Full),
            "normal" => Some(Synchronous::Normal),
            _ => None,
        }
    }
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Opens a store with default options (see [`open_with`]).
pub async fn open(
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> Result<std::sync::Arc<dyn Store>> {
    open_with(dir, database_url, Synchronous::Full).await
}

/// Opens a store from a database URL (`postgres://…`) or, when none is given, the SQLite file in `dir`
/// committing with `sync`.
pub async fn open_with(
    dir: &std::path::Path,
    database_url: Option<&str>,
    sync: Synchronous,
) -> Result<std::sync::Arc<dyn Store>> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?))
        }
        Some(url) => Err(StoreError::Connect(format!(
            "unsupported database url scheme in {:?}",
            redact(url)
        ))),
        None => {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Connect(format!("{}: {e}", dir.display())))?;
            Ok(std::sync::Arc::new(sqlite::SqliteStore::open_with(
                &dir.join("data.db"),
                sync,
            )?))
        }
    }
}

/// Hides the password of a URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
