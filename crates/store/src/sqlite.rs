//! SQLite store: one writer connection guarded by an async mutex (transactions serialize there, as
//! SQLite allows one writer), and reader connections used round-robin for queries.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::{Dialect, Result, Rows, Sql, Store, StoreError, Tx, Value};

pub struct SqliteStore {
    path: String,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == 2067 || f.extended_code == 1555 {
            return StoreError::Unique(msg.clone().unwrap_or_default());
        }
    }
    StoreError::Db(e.to_string())
}

fn configure(c: &Connection) -> rusqlite::Result<()> {
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000;",
    )?;
    c.set_prepared_statement_cache_capacity(256);
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path)
            .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))?;
        configure(&writer).map_err(db_err)?;
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| StoreError::Connect(e.to_string()))?;
            configure(&r).map_err(db_err)?;
            r.execute_batch("PRAGMA query_only=1;").map_err(db_err)?;
            readers.push(Mutex::new(r));
        }
        Ok(SqliteStore {
            path: path.display().to_string(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers,
            next: AtomicUsize::new(0),
        })
    }
}

struct P<'a>(&'a Value);

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
            Value::Text(s) | Value::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn run_query(c: &Connection, sql: &Sql) -> Result<Rows> {
    let mut st = c.prepare_cached(&sql.text).map_err(db_err)?;
    let columns: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let n = columns.len();
    let params: Vec<P> = sql.params.iter().map(P).collect();
    let mut rows = st
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(match r.get_ref(i).map_err(db_err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        out.push(row);
    }
    Ok(Rows { columns, rows: out })
}

fn run_exec(c: &Connection, sql: &Sql) -> Result<u64> {
    if sql.params.is_empty() && !sql.text.contains('?') {
        // DDL and multi-statement batches.
        c.execute_batch(&sql.text).map_err(db_err)?;
        return Ok(c.changes());
    }
    let mut st = c.prepare_cached(&sql.text).map_err(db_err)?;
    let params: Vec<P> = sql.params.iter().map(P).collect();
    let n = st
        .execute(rusqlite::params_from_iter(params.iter()))
        .map_err(db_err)?;
    Ok(n as u64)
}

#[async_trait]
impl Store for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&self, sql: &Sql) -> Result<Rows> {
        // Reads are short; they run inline on the calling task with a free reader connection.
        let n = self.readers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            if let Ok(c) = self.readers[(start + k) % n].try_lock() {
                return run_query(&c, sql);
            }
        }
        let c = self.readers[start % n]
            .lock()
            .map_err(|_| StoreError::Db("reader poisoned".into()))?;
        run_query(&c, sql)
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let guard = self.writer.clone().lock_owned().await;
        guard.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        Ok(Box::new(SqliteTx { conn: Some(guard) }))
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }
}

struct SqliteTx {
    conn: Option<tokio::sync::OwnedMutexGuard<Connection>>,
}

#[async_trait]
impl Tx for SqliteTx {
    async fn query(&mut self, sql: &Sql) -> Result<Rows> {
        let c = self
            .conn
            .as_ref()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))?;
        run_query(c, sql)
    }
    async fn execute(&mut self, sql: &Sql) -> Result<u64> {
        let c = self
            .conn
            .as_ref()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))?;
        run_exec(c, sql)
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        let c = self
            .conn
            .take()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))?;
        // The commit fsyncs the WAL; keep it off the async workers.
        tokio::task::spawn_blocking(move || c.execute_batch("COMMIT").map_err(db_err))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if let Err(e) = c.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "sqlite rollback failed");
            }
        }
    }
}
