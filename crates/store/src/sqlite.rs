//! SQLite store: one writer connection guarded by an async mutex (transactions serialize there, as
//! SQLite allows one writer), and reader connections used round-robin for queries.
//!
//! Group commit: each `Tx` is a SAVEPOINT inside one open transaction. `commit` releases the savepoint
//! and queues its caller; the first caller of a group leads it: it waits while other writers are in
//! flight (begun or waiting for the writer), at most [`GROUP_WINDOW`], after first yielding
//! [`GROUP_YIELDS`] times so that requests ready to run join, then issues one `COMMIT` for the
//! whole group (`synchronous=FULL`: one WAL write and one fsync for the group; with `[storage]
//! synchronous = "normal"` the fsync waits for the next checkpoint) and answers every caller. The writer stays held during that fsync, so writers arriving meanwhile form the next group.
//! Checkpoints are the writer's too, but run after the group's callers are answered (once the WAL
//! holds [`CHECKPOINT_PAGES`]), so their copies and fsyncs overlap the answers going out instead of
//! delaying them (+6% creates/s at `normal`); the writer is still held, so each reaches the WAL's end.
//! No caller is answered before the COMMIT holding its write returned: an acknowledged write survives
//! `kill -9` and power loss. A `Tx` dropped without commit rolls back only its savepoint.
//!
//! Measured on the bench machine (docs/benchmarks.md): groups of ~31 under 32 concurrent creates with
//! the leader's yields ([`GROUP_YIELDS`]; ~13 at `full` and ~3 at `normal` without them). Variants
//! that were slower there and were dropped:
//! - committing each transaction with `synchronous=NORMAL` and batching fsyncs of the WAL separately
//!   (each commit then writes its pages to the WAL on its own);
//! - committing groups without fsync while a separate task fsyncs (groups shrink to ~4 because the
//!   writer is free again at once);
//! - at `normal`, COMMIT inline on the leader's task: -27% with checkpoints from a connection of
//!   their own (they never reach the WAL's end while writers go on: the WAL grew to 50 MB), -16% with
//!   the writer checkpointing after it (groups shrink while the worker is busy writing the WAL).

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::metrics::{since, Connections, StoreMetrics};
use crate::{Dialect, Result, Rows, Sql, Store, StoreError, Tx, Value, READ_TIMEOUT_MS};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A reader connection and the deadline its progress handler enforces (0: none).
struct Reader {
    conn: Connection,
    deadline: Arc<AtomicU64>,
}

impl Reader {
    fn query(&self, sql: &Sql, timeout_ms: u64) -> Result<Rows> {
        self.deadline
            .store(now_ms() + timeout_ms, Ordering::Relaxed);
        let r = run_query(&self.conn, sql);
        self.deadline.store(0, Ordering::Relaxed);
        // A read ends with no transaction open on its connection: one left open would pin that
        // reader to an old snapshot, and every later read there would miss newer commits. Our
        // reads always finish or reset their statement; this is checked all the same (one SQLite
        // call) because `sdk-tests/logs.test.mjs` twice saw a reader of `logs.db` answer as if
        // from an older snapshot, cause unknown. The error line says so if this is it.
        if !matches!(
            self.conn.transaction_state(None::<&str>),
            Ok(rusqlite::TransactionState::None)
        ) {
            tracing::error!(
                statement = %sql.text,
                "a sqlite reader kept a transaction open after a read; ending it"
            );
            end_reads(&self.conn);
        }
        r
    }
}

/// Ends whatever holds a reader connection's snapshot: its cached statements are finalized (a
/// statement still stepping holds its read) and an open transaction is rolled back.
fn end_reads(c: &Connection) {
    c.flush_prepared_statement_cache();
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
}

/// The writer connection and the released savepoints waiting for their group's COMMIT.
struct Writer {
    conn: Connection,
    pending: Vec<Waiter>,
}

type Waiter = tokio::sync::oneshot::Sender<Result<()>>;
type WriterGuard = tokio::sync::OwnedMutexGuard<Writer>;

pub struct SqliteStore {
    path: String,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    flow: Arc<Flow>,
    /// The read connections. A read waits (asynchronously) for one of `free`'s permits, so a permit
    /// guarantees a free connection, and runs on the blocking pool: however long a read takes, the
    /// async workers stay free for every other request.
    readers: Arc<Vec<Mutex<Reader>>>,
    free: Arc<tokio::sync::Semaphore>,
    /// The probes' own connection (`/readyz` never waits behind a user's read).
    probe: Arc<Mutex<Connection>>,
    read_timeout_ms: u64,
    next: AtomicUsize,
    metrics: StoreMetrics,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::OperationInterrupted {
            return StoreError::Timeout;
        }
        if f.code == rusqlite::ErrorCode::DiskFull {
            return StoreError::DiskFull(e.to_string());
        }
    }
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == 2067 || f.extended_code == 1555 {
            // `UNIQUE constraint failed: t.col` (or `t.a, t.b`).
            let detail = msg.clone().unwrap_or_default();
            let column = detail
                .rsplit('.')
                .next()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            return StoreError::Unique { column, detail };
        }
    }
    StoreError::Db(e.to_string())
}

fn configure(c: &Connection, sync: crate::Synchronous) -> rusqlite::Result<()> {
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-2000;",
        sync.pragma()
    ))?;
    c.set_prepared_statement_cache_capacity(256);
    register_functions(c)
}

/// SQL functions the filter compiler may emit on SQLite.
fn register_functions(c: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    // geoDistance(lonA, latA, lonB, latB) in km (haversine); NULL when an argument is not a number.
    c.create_scalar_function(
        "geo_distance",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let mut v = [0f64; 4];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = match ctx.get_raw(i) {
                    ValueRef::Integer(n) => n as f64,
                    ValueRef::Real(f) => f,
                    ValueRef::Text(t) => match std::str::from_utf8(t)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                    {
                        Some(f) => f,
                        None => return Ok(None),
                    },
                    _ => return Ok(None),
                };
            }
            Ok(Some(haversine_km(v[0], v[1], v[2], v[3])))
        },
    )
}

/// Great-circle distance between two lon/lat points, in km.
pub fn haversine_km(lon_a: f64, lat_a: f64, lon_b: f64, lat_b: f64) -> f64 {
    let (la, lb) = (lat_a.to_radians(), lat_b.to_radians());
    let dlat = lb - la;
    let dlon = (lon_b - lon_a).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    12742.0 * h.sqrt().asin()
}

impl SqliteStore {
    /// Sets the read deadline (default [`READ_TIMEOUT_MS`]).
    pub fn with_read_timeout(mut self, ms: u64) -> Self {
        self.read_timeout_ms = ms;
        self
    }

    /// A read: inline on a free connection when it is quick, else on the blocking pool.
    async fn read(&self, sql: &Sql) -> Result<Rows> {
        // Most reads take microseconds: tried inline first, on a connection free right now, with a
        // deadline of INLINE_READ_MS; one that runs past it is interrupted and run again on the
        // blocking pool with the full deadline, so no read holds an async worker for longer.
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(permit) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let n = self.readers.len();
                let inline = (0..n).find_map(|k| self.readers[(start + k) % n].try_lock().ok());
                if let Some(c) = inline {
                    match c.query(sql, INLINE_READ_MS) {
                        Err(StoreError::Timeout) => {}
                        done => return done,
                    }
                }
                permit
            }
            Err(_) => {
                let waited = Instant::now();
                let permit = self
                    .free
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Db("store closed".into()))?;
                self.metrics.read_wait.observe(since(waited));
                permit
            }
        };
        let (readers, sql, timeout) = (self.readers.clone(), sql.clone(), self.read_timeout_ms);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // Held until the read ends, even when the caller has gone: the permit counts connections.
            let _permit = permit;
            let n = readers.len();
            for k in 0..n {
                if let Ok(c) = readers[(start + k) % n].try_lock() {
                    return c.query(&sql, timeout);
                }
            }
            let c = readers[start % n]
                .lock()
                .map_err(|_| StoreError::Db("reader poisoned".into()))?;
            c.query(&sql, timeout)
        })
        .await
        .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }

    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, crate::Synchronous::Full)
    }

    /// Opens the database file committing with `sync` (see [`crate::Synchronous`]).
    pub fn open_with(path: &Path, sync: crate::Synchronous) -> Result<Self> {
        Self::open_paged(path, sync, None)
    }

    /// [`Self::open_with`], creating a new file with pages of `page_size` bytes (a power of two
    /// from 512 to 65536; an existing file keeps its own). Large pages suit a store of large rows:
    /// each page costs a WAL frame write and a checkpoint copy.
    pub fn open_paged(
        path: &Path,
        sync: crate::Synchronous,
        page_size: Option<u32>,
    ) -> Result<Self> {
        let mut writer = Connection::open(path)
            .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))?;
        if let Some(n) = page_size {
            writer
                .execute_batch(&format!("PRAGMA page_size={n};"))
                .map_err(db_err)?;
        }
        configure(&writer, sync).map_err(db_err)?;
        // Replaces SQLite's autocheckpoint: the writer checkpoints after a group's callers are
        // answered (see `lead`), not inside their COMMIT.
        writer.wal_hook(Some(wal_pages)).map_err(db_err)?;
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| StoreError::Connect(e.to_string()))?;
            configure(&r, sync).map_err(db_err)?;
            r.execute_batch("PRAGMA query_only=1;").map_err(db_err)?;
            // Interrupts a read that runs past its deadline (checked every 10,000 VM steps).
            let deadline = Arc::new(AtomicU64::new(0));
            let d = deadline.clone();
            r.progress_handler(
                10_000,
                Some(move || {
                    let until = d.load(Ordering::Relaxed);
                    until != 0 && now_ms() > until
                }),
            )
            .map_err(db_err)?;
            readers.push(Mutex::new(Reader { conn: r, deadline }));
        }
        let probe = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        probe
            .busy_timeout(std::time::Duration::from_secs(1))
            .map_err(db_err)?;
        Ok(SqliteStore {
            path: path.display().to_string(),
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn: writer,
                pending: Vec::new(),
            })),
            flow: Arc::new(Flow::default()),
            free: Arc::new(tokio::sync::Semaphore::new(readers.len())),
            readers: Arc::new(readers),
            probe: Arc::new(Mutex::new(probe)),
            read_timeout_ms: READ_TIMEOUT_MS,
            next: AtomicUsize::new(0),
            metrics: StoreMetrics::default(),
        })
    }
}

/// How long a read may run inline on the calling (async) task before it is moved to the blocking
/// pool (see `SqliteStore::query`).
pub const INLINE_READ_MS: u64 = 5;

/// The longest a group's leader waits for in-flight writers to join the group.
pub const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// How many times a group's leader yields to the runtime before it looks at the in-flight count.
/// A request runs from its body to its savepoint's release without yielding, so when the leader
/// first runs, the requests already read off their sockets have not begun yet and count as nothing:
/// the group closed at ~3 creates at `synchronous=normal`. Each yield lets every task that is ready
/// run once, so those requests join. Under 32 concurrent creates on one core, groups grew from 3.2
/// to 31 at `normal` and from 13 to 31 at `full`, with +19–30% and +5–9% creates/s (docs/benchmarks.md).
/// Idle, a yield costs microseconds: nothing else is ready to run.
pub const GROUP_YIELDS: usize = 3;

/// The count of in-flight writers, and a signal for when it drops to zero.
#[derive(Default)]
pub struct Flow {
    inflight: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Flow {
    fn writer_started(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    fn writer_done(&self) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no writer is in flight, or until `deadline`.
    async fn wait_idle(&self, deadline: tokio::time::Instant) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inflight.load(Ordering::Acquire) == 0
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return;
            }
        }
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
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Another program's SQLite database file (PocketBase's `data.db`), opened read-only: nothing is
/// written to it and its journal mode is left as it is.
pub struct ReadOnly(std::sync::Mutex<Connection>);

impl ReadOnly {
    pub fn open(path: &Path) -> Result<ReadOnly> {
        let c = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))?;
        Ok(ReadOnly(std::sync::Mutex::new(c)))
    }

    pub fn query(&self, sql: &Sql) -> Result<Rows> {
        let c = self
            .0
            .lock()
            .map_err(|_| StoreError::Db("reader poisoned".into()))?;
        run_query(&c, sql)
    }
}

fn run_query(c: &Connection, sql: &Sql) -> Result<Rows> {
    crate::check_params(sql)?;
    let mut st = c.prepare_cached(&sql.text).map_err(db_err)?;
    let columns: Vec<String> = st.column_names().map(str::to_string).collect();
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
    crate::check_params(sql)?;
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
        self.metrics.timed_read("sqlite", sql, self.read(sql)).await
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    fn connections(&self) -> Connections {
        let readers = self.readers.len();
        let writing = usize::from(self.writer.try_lock().is_err());
        Connections {
            in_use: readers - self.free.available_permits().min(readers) + writing,
            max: readers + 1,
        }
    }

    fn read_concurrency(&self) -> usize {
        self.readers.len()
    }

    async fn ping(&self) -> Result<()> {
        let probe = self.probe.clone();
        tokio::task::spawn_blocking(move || {
            let c = probe
                .lock()
                .map_err(|_| StoreError::Db("probe poisoned".into()))?;
            c.query_row("SELECT 1 FROM sqlite_master LIMIT 1", [], |_| Ok(()))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(()),
                    e => Err(db_err(e)),
                })
        })
        .await
        .map_err(|e| StoreError::Db(format!("probe task failed: {e}")))?
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        // In flight from before the lock wait, so a group leader knows this writer is coming.
        self.flow.writer_started();
        let began = Instant::now();
        let mut tx = SqliteTx {
            guard: None,
            writer: self.writer.clone(),
            flow: self.flow.clone(),
            metrics: self.metrics.clone(),
            began,
        };
        let mut g = self.writer.clone().lock_owned().await;
        self.metrics.write_wait.observe(since(began));
        if g.conn.is_autocommit() {
            // Released savepoints still waiting while no transaction is open were rolled back by
            // SQLite (an I/O, full-disk or memory error aborts the whole transaction): fail them.
            fail_lost(&mut g);
            g.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        }
        // Cached statements: preparing these two on every write cost ~2% of a create.
        g.conn
            .prepare_cached("SAVEPOINT basalt_tx")
            .and_then(|mut st| st.execute([]))
            .map_err(db_err)?;
        tx.guard = Some(g);
        Ok(Box::new(tx))
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    fn can_backup(&self) -> bool {
        true
    }

    async fn snapshot(&self, dest: &Path) -> Result<()> {
        // VACUUM INTO on a connection of its own reads one WAL snapshot (every acknowledged commit)
        // and never blocks the writer.
        let (src, dest) = (self.path.clone(), dest.display().to_string());
        tokio::task::spawn_blocking(move || {
            let c = Connection::open_with_flags(&src, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            c.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(db_err)?;
            c.execute("VACUUM INTO ?1", [dest]).map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
    }

    async fn scrub(&self) -> Result<()> {
        // As `restore`: the writer, with no transaction open and no group waiting.
        let mut g = self.writer.clone().lock_owned().await;
        while !g.conn.is_autocommit() || !g.pending.is_empty() {
            drop(g);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            g = self.writer.clone().lock_owned().await;
        }
        tokio::task::spawn_blocking(move || {
            let g = g;
            g.conn.execute_batch("VACUUM").map_err(db_err)?;
            // Readers finishing a snapshot can hold the log a moment: retry the truncation.
            for _ in 0..50 {
                let busy: i64 = g
                    .conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                    .map_err(db_err)?;
                if busy == 0 {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
    }

    async fn restore(&self, src: &Path, keep: &[&str]) -> Result<()> {
        // Holds the writer (no transaction open, no group waiting for its COMMIT) for the whole copy.
        let mut g = self.writer.clone().lock_owned().await;
        while !g.conn.is_autocommit() || !g.pending.is_empty() {
            drop(g);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            g = self.writer.clone().lock_owned().await;
        }
        let src = src.to_path_buf();
        let keep: Vec<String> = keep.iter().map(|t| t.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut g = g;
            restore_into(&mut g.conn, &src, &keep)
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
    }
}

/// Copies `src` page by page into the live database through the writer connection (the online backup
/// API, so readers switch to the new content at their next read), then puts back the live rows of the
/// `keep` tables.
fn restore_into(conn: &mut Connection, src: &Path, keep: &[String]) -> Result<()> {
    let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    for t in keep {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.{k}; CREATE TEMP TABLE {k} AS SELECT * FROM main.{t}",
            k = q(&format!("keep_{t}")),
            t = q(t)
        ))
        .map_err(db_err)?;
    }
    let source = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::BadValue(format!("not a database backup: {e}")))?;
    source
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| StoreError::BadValue(format!("not a database backup: {e}")))?;
    {
        let b = rusqlite::backup::Backup::new(&source, conn).map_err(db_err)?;
        b.run_to_completion(1024, std::time::Duration::ZERO, None)
            .map_err(db_err)?;
    }
    let tx = conn.transaction().map_err(db_err)?;
    for t in keep {
        let k = q(&format!("keep_{t}"));
        let exists: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        if exists == 1 {
            tx.execute_batch(&format!(
                "DELETE FROM main.{t}; INSERT INTO main.{t} SELECT * FROM temp.{k}",
                t = q(t)
            ))
            .map_err(db_err)?;
        } else {
            // A backup older than the table: keep the live rows all the same (the server's
            // bootstrap adds the table's constraints back only to new databases; the rows matter).
            tx.execute_batch(&format!(
                "CREATE TABLE main.{t} AS SELECT * FROM temp.{k}",
                t = q(t)
            ))
            .map_err(db_err)?;
        }
        tx.execute_batch(&format!("DROP TABLE temp.{k}"))
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

struct SqliteTx {
    guard: Option<WriterGuard>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    flow: Arc<Flow>,
    metrics: StoreMetrics,
    began: Instant,
}

impl SqliteTx {
    fn conn(&self) -> Result<&Connection> {
        self.guard
            .as_ref()
            .map(|g| &g.conn)
            .ok_or_else(|| StoreError::Db("transaction finished".into()))
    }
}

/// Answers every pending caller with an error: their transaction was rolled back before its COMMIT.
fn fail_lost(g: &mut Writer) {
    for w in g.pending.drain(..) {
        let _ = w.send(Err(StoreError::Db(
            "the transaction was rolled back by SQLite before commit".into(),
        )));
    }
}

/// Leads one group: lets in-flight writers join, then COMMITs the group (one fsync, off the async
/// workers, writer held), answers its callers and, when the WAL is due, checkpoints it.
async fn lead(writer: Arc<tokio::sync::Mutex<Writer>>, flow: Arc<Flow>, metrics: StoreMetrics) {
    // Writers whose requests are ready to run join before anything is checked (see GROUP_YIELDS).
    for _ in 0..GROUP_YIELDS {
        tokio::task::yield_now().await;
    }
    flow.wait_idle(tokio::time::Instant::now() + GROUP_WINDOW)
        .await;
    let mut g = writer.lock_owned().await;
    if g.conn.is_autocommit() {
        // Nothing open to commit: the group's transaction was rolled back under it.
        fail_lost(&mut g);
        return;
    }
    let started = std::time::Instant::now();
    let joined = tokio::task::spawn_blocking(move || {
        let mut g = g;
        WAL_PAGES.set(0);
        let res = g.conn.execute_batch("COMMIT").map_err(db_err);
        if res.is_err() && !g.conn.is_autocommit() {
            let _ = g.conn.execute_batch("ROLLBACK");
        }
        let waiters = std::mem::take(&mut g.pending);
        if let Err(e) = &res {
            tracing::error!(error = %e, "sqlite group commit failed");
        }
        metrics.group_size.observe(waiters.len() as f64);
        metrics.group_commit.observe(since(started));
        for w in waiters {
            let _ = w.send(res.clone());
        }
        // The callers have their answers; the checkpoint (and its fsyncs) runs while they are
        // written out, with the writer still held so it reaches the WAL's end.
        if WAL_PAGES.get() >= CHECKPOINT_PAGES {
            if let Err(e) = g
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                tracing::warn!(error = %e, "sqlite checkpoint failed");
            }
        }
    })
    .await;
    if joined.is_err() {
        tracing::error!("sqlite commit task failed");
    }
}

/// The writer checkpoints once the WAL holds this many pages (SQLite's own autocheckpoint default).
/// With time-ordered record ids, 2,000–8,000 measured no faster (docs/benchmarks.md, issue #13).
pub const CHECKPOINT_PAGES: i32 = 1000;

thread_local! {
    /// Pages in the WAL after the last COMMIT run on this thread (set by the writer's [`wal_pages`]
    /// hook, which SQLite calls inside that COMMIT, on the same thread).
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn wal_pages(_: &mut rusqlite::hooks::Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

#[async_trait]
impl Tx for SqliteTx {
    async fn query(&mut self, sql: &Sql) -> Result<Rows> {
        let t = Instant::now();
        let _span =
            tracing::debug_span!("db.query", db.system = "sqlite", db.statement = %sql.text)
                .entered();
        let res = run_query(self.conn()?, sql);
        self.metrics.writes.observe(since(t));
        res
    }
    async fn execute(&mut self, sql: &Sql) -> Result<u64> {
        let t = Instant::now();
        let _span =
            tracing::debug_span!("db.execute", db.system = "sqlite", db.statement = %sql.text)
                .entered();
        let res = run_exec(self.conn()?, sql);
        self.metrics.writes.observe(since(t));
        res
    }
    async fn insert_rowid(&mut self, sql: &Sql) -> Result<i64> {
        let t = Instant::now();
        let _span =
            tracing::debug_span!("db.execute", db.system = "sqlite", db.statement = %sql.text)
                .entered();
        let c = self.conn()?;
        let res = run_exec(c, sql).map(|_| c.last_insert_rowid());
        self.metrics.writes.observe(since(t));
        res
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        let mut g = self
            .guard
            .take()
            .ok_or_else(|| StoreError::Db("transaction finished".into()))?;
        if let Err(e) = g
            .conn
            .prepare_cached("RELEASE basalt_tx")
            .and_then(|mut st| st.execute([]))
        {
            let _ = g
                .conn
                .execute_batch("ROLLBACK TO basalt_tx; RELEASE basalt_tx");
            return Err(db_err(e));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        g.pending.push(tx);
        let leader = g.pending.len() == 1;
        drop(g);
        let (writer, flow, metrics, began) = (
            self.writer.clone(),
            self.flow.clone(),
            self.metrics.clone(),
            self.began,
        );
        drop(self); // leaves the in-flight count
        if leader {
            // Its own task, so a cancelled request cannot leave its group uncommitted.
            tokio::spawn(lead(writer, flow, metrics.clone()));
        }
        let res = rx
            .await
            .map_err(|_| StoreError::Db("commit outcome lost".into()))?;
        metrics.transactions.observe(since(began));
        res
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            if let Err(e) = g
                .conn
                .execute_batch("ROLLBACK TO basalt_tx; RELEASE basalt_tx")
            {
                tracing::warn!(error = %e, "sqlite savepoint rollback failed");
            }
        }
        self.flow.writer_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of its own for a test's database files, removed when the test ends (even failing).
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("basalt-store-{}", basalt_core::id::random_id(8)));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn join(&self, name: &str) -> std::path::PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sql(text: &str, params: Vec<Value>) -> Sql {
        let mut s = Sql::new(Dialect::Sqlite);
        s.push(text);
        s.params = params;
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_keeps_each_transaction_atomic_and_visible_once_acknowledged() {
        let dir = TempDir::new();
        let store = Arc::new(SqliteStore::open(&dir.join("t.db")).unwrap());
        let mut tx = store.begin().await.unwrap();
        tx.execute(&sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            vec![],
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tasks = vec![];
        for i in 0..200i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                tx.execute(&sql(
                    "INSERT INTO t (id, v) VALUES (?, 'a')",
                    vec![Value::Int(i)],
                ))
                .await
                .unwrap();
                tx.execute(&sql(
                    "INSERT INTO t (id, v) VALUES (?, 'b')",
                    vec![Value::Int(i + 1000)],
                ))
                .await
                .unwrap();
                if i % 5 == 0 {
                    drop(tx); // rolls back both inserts of this transaction only
                    return None;
                }
                tx.commit().await.unwrap();
                // Acknowledged: a reader connection sees it.
                let r = store
                    .query(&sql(
                        "SELECT COUNT(*) FROM t WHERE id = ? OR id = ?",
                        vec![Value::Int(i), Value::Int(i + 1000)],
                    ))
                    .await
                    .unwrap();
                assert_eq!(r.rows[0][0], Value::Int(2));
                Some(i)
            }));
        }
        let mut committed = 0;
        for t in tasks {
            if t.await.unwrap().is_some() {
                committed += 1;
            }
        }
        let r = store
            .query(&sql("SELECT COUNT(*) FROM t", vec![]))
            .await
            .unwrap();
        assert_eq!(r.rows[0][0], Value::Int(committed * 2));
        let r = store
            .query(&sql(
                "SELECT COUNT(*) FROM t WHERE id % 5 = 0 AND id < 1000",
                vec![],
            ))
            .await
            .unwrap();
        assert_eq!(
            r.rows[0][0],
            Value::Int(0),
            "rolled-back transactions left nothing"
        );
        // A read past its deadline is interrupted, and the reader works again afterwards.
        let slow = SqliteStore::open(&dir.join("t.db"))
            .unwrap()
            .with_read_timeout(200);
        let forever = sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", vec![]);
        let t = std::time::Instant::now();
        assert!(matches!(
            slow.query(&forever).await,
            Err(StoreError::Timeout)
        ));
        assert!(t.elapsed() < std::time::Duration::from_secs(3));
        for _ in 0..4 {
            assert!(slow
                .query(&sql("SELECT COUNT(*) FROM t", vec![]))
                .await
                .is_ok());
        }
        // A failing statement fails its own transaction, not the group.
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.execute(&sql("INSERT INTO t (id, v) VALUES (1, 'dup')", vec![]))
                .await,
            Err(StoreError::Unique { .. })
        ));
        drop(tx);
    }

    /// A reader whose statement was left stepping (its snapshot pinned) is put right by its next
    /// read, so the read after that sees the newest commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_left_in_a_transaction_is_reset_after_its_next_read() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.join("t.db")).unwrap();
        let write = |v: i64| {
            let store = &store;
            async move {
                let mut tx = store.begin().await.unwrap();
                tx.execute(&sql("INSERT INTO t (v) VALUES (?)", vec![Value::Int(v)]))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        };
        let mut tx = store.begin().await.unwrap();
        tx.execute(&sql("CREATE TABLE t (v INTEGER)", vec![]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        write(1).await;
        write(2).await;
        {
            // A cached statement stepped once and put back without a reset: its read stays open.
            let reader = store.readers[0].lock().unwrap();
            let mut st = reader.conn.prepare_cached("SELECT v FROM t").unwrap();
            let mut rows = st.query([]).unwrap();
            assert!(rows.next().unwrap().is_some());
            std::mem::forget(rows);
        }
        write(3).await;
        let reader = store.readers[0].lock().unwrap();
        let count = sql("SELECT COUNT(*) FROM t", vec![]);
        let pinned = reader.query(&count, 1000).unwrap();
        assert_eq!(pinned.rows[0][0], Value::Int(2), "the pinned snapshot");
        let fresh = reader.query(&count, 1000).unwrap();
        assert_eq!(fresh.rows[0][0], Value::Int(3));
        drop(reader);
    }

    /// Every reader sees every acknowledged commit, whatever it did before: quick reads, reads
    /// interrupted inline and finished on the blocking pool, deletes, and a WAL past a checkpoint
    /// (the request-log store's shape: 64 KiB pages, `normal`, one blob per batch).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_reader_sees_each_acknowledged_commit() {
        let dir = TempDir::new();
        let path = dir.join("logs.db");
        {
            // Made by another store first, as `basalt superuser upsert` does before `serve`.
            let first =
                SqliteStore::open_paged(&path, crate::Synchronous::Normal, Some(65536)).unwrap();
            let mut tx = first.begin().await.unwrap();
            tx.execute(&sql(
                "CREATE TABLE b (n INTEGER NOT NULL, body BLOB NOT NULL)",
                vec![],
            ))
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let store = SqliteStore::open_paged(&path, crate::Synchronous::Normal, None).unwrap();
        let slow = sql(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) SELECT count(*) FROM c, (SELECT COUNT(*) FROM b)",
            vec![],
        );
        let count = sql("SELECT COUNT(*), COALESCE(SUM(n), 0) FROM b", vec![]);
        let (mut rows, mut sum) = (0i64, 0i64);
        for round in 0..300i64 {
            let mut tx = store.begin().await.unwrap();
            // ~38 blobs of 48 pages and ~260 of one or two: the WAL passes CHECKPOINT_PAGES twice.
            let big = round % 8 == 0;
            let body = vec![(round % 251) as u8; if big { 3 << 20 } else { 4096 }];
            tx.execute(&sql(
                "INSERT INTO b (n, body) VALUES (?, ?)",
                vec![Value::Int(round), Value::Blob(body)],
            ))
            .await
            .unwrap();
            if round % 37 == 0 {
                tx.execute(&sql(
                    "DELETE FROM b WHERE n < ?",
                    vec![Value::Int(round - 20)],
                ))
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            let truth = store.query(&count).await.unwrap().rows[0].clone();
            (rows, sum) = (truth[0].as_i64(), truth[1].as_i64());
            if round % 7 == 0 {
                store.query(&slow).await.unwrap();
            }
            for k in 0..2 * store.readers.len() {
                let r = store.query(&count).await.unwrap();
                assert_eq!(
                    (r.rows[0][0].as_i64(), r.rows[0][1].as_i64()),
                    (rows, sum),
                    "round {round}, read {k}"
                );
            }
        }
        assert!(rows > 0 && sum > 0);
        drop(store);
    }
}
